#include "gemm_bf16.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>

// Only in the cores compiled for AVX-512 (v4, native): a variant holds no instruction above its
// level (tests/test_portable.py), and every CPU with AVX512-BF16 loads the v4 core.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && defined(__AVX512F__)
#define FASTBP_BF16_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace fastbp {

#ifdef FASTBP_BF16_KERNELS

namespace {

// Compiled for AVX512-BF16 whatever the variant's own flags: called only where the CPU has it.
#define FASTBP_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// Blocking, as in GotoBLAS / BLIS. The kernel computes an MR x NR tile of C from a panel of A
// (MR rows) and a panel of B (NR columns) over KC values of k, both packed as bfloat16 pairs:
// one 32-bit word holds the entries for k and k + 1, the two that VDPBF16PS multiplies and adds
// into one float32 lane. MR x 2 accumulators, 2 vectors of B and a broadcast fill 27 of the 32
// registers. A panel of B (KC x NR, 32 KB) stays in L1 and L2 while the kernel runs down a
// block of A (MC x KC, 264 KB, in L2); the block of B (KC x NC) is packed once and serves every
// block of A. KC = 512 rather than 256: C's tiles are read and written half as often (wide's
// bfloat16 epoch, bench/core_epoch.cpp: 2.15-2.17 s against 2.26-2.52 s; 384 and 768 between).
constexpr int MR = 12;
constexpr int NR = 32;
constexpr int KC = 512;   // even: pairs of k
constexpr int MC = 264;   // multiple of MR; blocks of A are balanced up to this many rows
constexpr int NC = 2048;  // multiple of NR
constexpr int KP = KC / 2;

FASTBP_BF16_TARGET inline __mmask16 first(int n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// r[i] word j -> r[j] word i.
FASTBP_BF16_TARGET inline void transpose16(__m512i (&r)[16]) {
  __m512i t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h)
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      t[8 * h + q] = _mm512_shuffle_i32x4(r[8 * h + q], r[8 * h + 4 + q], 0x88);
      t[8 * h + 4 + q] = _mm512_shuffle_i32x4(r[8 * h + q], r[8 * h + 4 + q], 0xdd);
    }
#pragma GCC unroll 8
  for (int q = 0; q < 8; ++q) {
    r[q] = _mm512_shuffle_i32x4(t[q], t[8 + q], 0x88);
    r[8 + q] = _mm512_shuffle_i32x4(t[q], t[8 + q], 0xdd);
  }
}

// Two rows r0, r1 (r1 may be null: zeros) of n <= 16 floats each -> n words (r0[j], r1[j]).
FASTBP_BF16_TARGET inline void pack_rows16(const float* r0, const float* r1, int n, uint32_t* out,
                                           int width) {
  const __mmask16 m = first(n);
  const __m512 lo = _mm512_maskz_loadu_ps(m, r0);
  const __m512 hi = r1 ? _mm512_maskz_loadu_ps(m, r1) : _mm512_setzero_ps();
  const __m512i both = __m512i(_mm512_cvtne2ps_pbh(hi, lo));  // lo's 16 entries, then hi's
  const __m512i interleave =
      _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                       21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  _mm512_mask_storeu_epi32(out, first(width), _mm512_permutexvar_epi16(interleave, both));
}

// 16 columns j .. j + 16 of op(X), each contiguous over k (op(X)(k, j) = X[j * ld + k]), over
// [k0, k0 + kc): kc/2 rows of words, row p at out + p * W, 16 pairs at a time transposed in
// registers. Only the columns in `load` are read (the others pack as 0); only the words of the
// columns in `store` are written.
FASTBP_BF16_TARGET void pack_columns16(const float* X, long ld, int k0, int kc, int j,
                                       __mmask16 load, __mmask16 store, uint32_t* out, long W) {
  for (int k = 0; k < kc; k += 32) {
    const int left = kc - k;
    __m512i r[16];
#pragma GCC unroll 16
    for (int q = 0; q < 16; ++q) {
      if (!(load & (1u << q))) {
        r[q] = _mm512_setzero_si512();
        continue;
      }
      const float* col = X + long(j + q) * ld + k0 + k;
      const __m512 lo = _mm512_maskz_loadu_ps(first(left), col);
      const __m512 hi = _mm512_maskz_loadu_ps(first(left - 16), col + 16);
      r[q] = __m512i(_mm512_cvtne2ps_pbh(hi, lo));  // word p: the pair (k + 2p, k + 2p + 1)
    }
    transpose16(r);
    const int pairs = std::min(16, (left + 1) / 2);
    for (int p = 0; p < pairs; ++p) _mm512_mask_storeu_epi32(out + (k / 2 + p) * W, store, r[p]);
  }
}

// Packs op(X)[k0 .. k0 + kc) x [j0 .. j0 + w) for w <= W as kc/2 rows of W words (the columns
// from w on are zero). op(X)(k, j) = X[k * ld + j] where `rows_contiguous` (the k-th row is
// contiguous over j), else X[j * ld + k].
template <int W>
FASTBP_BF16_TARGET void pack_panel(const float* X, long ld, bool rows_contiguous, int k0, int kc,
                                   int j0, int w, uint32_t* out) {
  const int kp = (kc + 1) / 2;
  if (rows_contiguous) {
    for (int p = 0; p < kp; ++p) {
      const int k = k0 + 2 * p;
      const float* r0 = X + long(k) * ld + j0;
      const float* r1 = 2 * p + 1 < kc ? r0 + ld : nullptr;
      for (int h = 0; h < W; h += 16)
        pack_rows16(r0 + h, r1 ? r1 + h : nullptr, std::max(0, std::min(16, w - h)),
                    out + long(p) * W + h, std::min(16, W - h));
    }
    return;
  }
  // Each column is contiguous over k; the columns from w on are written as zeros.
  for (int g = 0; g < W; g += 16)
    pack_columns16(X, ld, k0, kc, j0 + g, first(w - g), first(W - g), out + g, W);
}

// C tile (m <= R rows, n <= NR columns) = alpha A_panel B_panel + beta C over kp pairs, A's
// panel packed R rows wide. R = MR but for the last rows of a block.
template <int R>
FASTBP_BF16_TARGET __attribute__((noinline)) void kernel(int kp, const uint32_t* a,
                                                         const uint32_t* b, float* c, long ldc,
                                                         float alpha, float beta, int m, int n) {
  __m512 acc[R][2];
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    if (i < m) {  // C's tile, read or written at the end, on its way in meanwhile
      _mm_prefetch(reinterpret_cast<const char*>(c + long(i) * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + long(i) * ldc + 16), _MM_HINT_T0);
    }
  }
  for (int p = 0; p < kp; ++p) {
    const __m512bh b0 = __m512bh(_mm512_loadu_si512(b + long(p) * NR));
    const __m512bh b1 = __m512bh(_mm512_loadu_si512(b + long(p) * NR + 16));
    const uint32_t* ap = a + long(p) * R;
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512bh ai = __m512bh(_mm512_set1_epi32(int(ap[i])));
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
    }
  }
  const __mmask16 m0 = first(n), m1 = first(std::max(0, n - 16));
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
  for (int i = 0; i < R; ++i) {
    if (i >= m) break;
    float* ci = c + long(i) * ldc;
    __m512 o0 = _mm512_mul_ps(va, acc[i][0]), o1 = _mm512_mul_ps(va, acc[i][1]);
    if (beta != 0.0f) {
      o0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), o0);
      o1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), o1);
    }
    _mm512_mask_storeu_ps(ci, m0, o0);
    _mm512_mask_storeu_ps(ci + 16, m1, o1);
  }
}

// The rows of A's panel packed for the last m rows of a block: fewer lanes of work wasted.
constexpr int panel_rows(int m) { return m > 8 ? MR : m > 4 ? 8 : 4; }

// Packs rows [i0, i0 + m) of op(A)'s columns [pc, pc + kc) into one panel, R rows wide.
FASTBP_BF16_TARGET void pack_a(const float* A, int lda, bool ta, int pc, int kc, int i0, int m,
                               uint32_t* out) {
  switch (panel_rows(m)) {  // op(A)(i, k) is A[i * lda + k], or A[k * lda + i] if transposed
    case MR:
      return pack_panel<MR>(A, lda, ta, pc, kc, i0, m, out);
    case 8:
      return pack_panel<8>(A, lda, ta, pc, kc, i0, m, out);
    default:
      return pack_panel<4>(A, lda, ta, pc, kc, i0, m, out);
  }
}

FASTBP_BF16_TARGET void tile(int kp, const uint32_t* a, const uint32_t* b, float* c, long ldc,
                             float alpha, float beta, int m, int n) {
  switch (panel_rows(m)) {
    case MR:
      return kernel<MR>(kp, a, b, c, ldc, alpha, beta, m, n);
    case 8:
      return kernel<8>(kp, a, b, c, ldc, alpha, beta, m, n);
    default:
      return kernel<4>(kp, a, b, c, ldc, alpha, beta, m, n);
  }
}

constexpr std::size_t padded(int N) { return std::size_t(N + NR - 1) / NR * NR; }

// --- B packed whole, row by row of W, by the thread that owns those rows ----------------------
// The layout run() reads: for each block of k from pc (KC values, kp = (kc + 1) / 2 pairs), at
// word (pc / 2) * padded(N), its panels of NR columns, kp x NR words each, one after another.
// Entries never written (columns past N, the pair of an odd last k) stay as the caller zeroed
// them. Each call writes only the halves of words (k's of op(B)) or the words (j's of op(B))
// that come from its own rows of W, so threads that own different rows may pack at once.

// op(B) = W (R x C): k = row, j = column. Row r is the low (even r) or high half of the words of
// pair r / 2: 16 columns at a time, stored as 16-bit lanes under a mask.
FASTBP_BF16_TARGET void pack_rows(const float* W, int R, int C, int r0, int r1, uint16_t* out) {
  const std::size_t np = padded(C);
  for (int r = r0; r < r1; ++r) {
    const int pc = r / KC * KC, kp = (std::min(KC, R - pc) + 1) / 2, p = (r - pc) / 2;
    const __mmask32 half = (r & 1) ? 0xaaaaaaaau : 0x55555555u;
    uint16_t* row = out + 2 * (std::size_t(pc / 2) * np + std::size_t(p) * NR);
    for (int c = 0; c < C; c += 16) {
      const int n = std::min(16, C - c);
      const __m512 v = _mm512_maskz_loadu_ps(first(n), W + std::size_t(r) * C + c);
      __m512i w = _mm512_cvtepu16_epi32(__m256i(_mm512_cvtneps_pbh(v)));
      if (r & 1) w = _mm512_slli_epi32(w, 16);
      const __mmask32 lanes = n == 16 ? ~__mmask32(0) : __mmask32((1u << (2 * n)) - 1);
      // column c is word c % NR of panel c / NR
      uint16_t* dst = row + 2 * (std::size_t(c / NR * NR) * kp + c % NR);
      _mm512_mask_storeu_epi16(dst, half & lanes, w);
    }
  }
}

// op(B) = W^T (C x R): k = column of W, j = row. The pairs of row r are whole words of column r
// of op(B): 16 rows x 16 pairs at a time, transposed in registers, stored under a row mask.
FASTBP_BF16_TARGET void pack_rows_transposed(const float* W, int R, int C, int r0, int r1,
                                             uint16_t* out) {
  const std::size_t np = padded(R);
  for (int g = r0 / 16 * 16; g < r1; g += 16) {
    __mmask16 mine = 0;
    for (int q = 0; q < 16; ++q)
      if (g + q >= r0 && g + q < r1) mine |= __mmask16(1u << q);
    for (int pc = 0; pc < C; pc += KC) {
      const int kc = std::min(KC, C - pc), kp = (kc + 1) / 2;
      uint32_t* panel = reinterpret_cast<uint32_t*>(out) + std::size_t(pc / 2) * np +
                        std::size_t(g / NR * NR) * kp + g % NR;
      pack_columns16(W, C, pc, kc, g, mine, mine, panel, NR);
    }
  }
}

// The packed blocks of A and B, allocated once per thread at their largest (2.4 MB) and reused
// by every product on it: products run inside the epoch's team, where nothing may throw.
struct Workspace {
  std::unique_ptr<uint32_t[]> words;
  uint32_t* a() { return words.get(); }
  uint32_t* b() { return words.get() + std::size_t(KP) * MC; }
  bool ready() {
    if (!words) words.reset(new (std::nothrow) uint32_t[std::size_t(KP) * (MC + NC)]);
    return bool(words);
  }
};

// B packed whole (bf16_pack_rows): the block of k from pc and columns from j, whose panels hold
// kp pairs each.
inline const uint32_t* packed_panel(const uint16_t* packed, int N, int pc, int kp, int j) {
  const std::size_t words = std::size_t(pc / 2) * padded(N) + std::size_t(j) * kp;
  return reinterpret_cast<const uint32_t*>(packed) + words;
}

// B (ldb) is packed block by block here unless `packed` holds it packed whole.
FASTBP_BF16_TARGET bool run(bool ta, bool tb, int M, int N, int K, float alpha, const float* A,
                            int lda, const float* B, int ldb, const uint16_t* packed, float beta,
                            float* C, int ldc) {
  thread_local Workspace ws;
  if (!ws.ready()) return false;
  // Blocks of A of equal size, in whole panels: 256 rows are one block, not 264 + 0 or 240 + 16.
  const int blocks = (M + MC - 1) / MC;
  const int mc_max = ((M + blocks - 1) / blocks + MR - 1) / MR * MR;
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc), kp = (kc + 1) / 2;
      const float beta_k = pc == 0 ? beta : 1.0f;
      for (int ic = 0; ic < M; ic += mc_max) {
        const int mc = std::min(mc_max, M - ic);
        for (int ir = 0; ir < mc; ir += MR)
          pack_a(A, lda, ta, pc, kc, ic + ir, std::min(MR, mc - ir), ws.a() + std::size_t(ir) * kp);
        for (int jr = 0; jr < nc; jr += NR) {
          const uint32_t* b = ws.b() + std::size_t(jr) * kp;
          if (packed) {
            b = packed_panel(packed, N, pc, kp, jc + jr);
          } else if (ic == 0) {
            // Each panel of B is packed just before the first block of A runs over it, while
            // it is in L1, and kept for the next blocks. op(B)(k, j) is B[k * ldb + j], or
            // B[j * ldb + k] if transposed.
            pack_panel<NR>(B, ldb, !tb, pc, kc, jc + jr, std::min(NR, nc - jr),
                           ws.b() + std::size_t(jr) * kp);
          }
          for (int ir = 0; ir < mc; ir += MR)
            tile(kp, ws.a() + std::size_t(ir) * kp, b, C + long(ic + ir) * ldc + jc + jr, ldc,
                 alpha, beta_k, std::min(MR, mc - ir), std::min(NR, nc - jr));
        }
      }
    }
  }
  return true;
}

bool detect() {
  unsigned a, b, c, d;
  if (__get_cpuid_count(1, 0, &a, &b, &c, &d) == 0 || !(c & (1u << 27))) return false;  // OSXSAVE
  unsigned lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  if ((lo & 0xe6u) != 0xe6u) return false;  // the OS saves SSE, AVX and AVX-512 state
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  const bool f = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31);
  if (!(f && bw && vl) || a < 1) return false;
  __get_cpuid_count(7, 1, &a, &b, &c, &d);
  return a & (1u << 5);  // AVX512_BF16
}

}  // namespace

bool bf16_supported() {
  static const bool yes = detect();
  return yes;
}

bool gemm_bf16(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  return run(ta, tb, M, N, K, alpha, A, lda, B, ldb, nullptr, beta, C, ldc);
}

bool gemm_bf16_packed(bool ta, int M, int N, int K, float alpha, const float* A, int lda,
                      const uint16_t* packed_b, float beta, float* C, int ldc) {
  return run(ta, false, M, N, K, alpha, A, lda, nullptr, 0, packed_b, beta, C, ldc);
}

std::size_t bf16_packed_size(int K, int N) { return 2 * ((std::size_t(K) + 1) / 2) * padded(N); }

void bf16_pack_rows(const float* W, int R, int C, int r0, int r1, uint16_t* out) {
  pack_rows(W, R, C, r0, r1, out);
}

void bf16_pack_rows_transposed(const float* W, int R, int C, int r0, int r1, uint16_t* out) {
  pack_rows_transposed(W, R, C, r0, r1, out);
}

#else

bool bf16_supported() { return false; }

bool gemm_bf16(bool, bool, int, int, int, float, const float*, int, const float*, int, float,
               float*, int) {
  return false;
}

bool gemm_bf16_packed(bool, int, int, int, float, const float*, int, const uint16_t*, float, float*,
                      int) {
  return false;
}

std::size_t bf16_packed_size(int, int) { return 0; }
void bf16_pack_rows(const float*, int, int, int, int, uint16_t*) {}
void bf16_pack_rows_transposed(const float*, int, int, int, int, uint16_t*) {}

#endif

}  // namespace fastbp
