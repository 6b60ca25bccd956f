#include "gemm_packed.hpp"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>

// Only in the cores compiled for AVX-512 (v4, native): a variant holds no instruction above its
// level (tests/test_portable.py), and every CPU with AVX512-BF16 loads the v4 core.
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && defined(__AVX512F__)
#define FASTBP_PACKED_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace fastbp {

#ifdef FASTBP_PACKED_KERNELS

namespace {

// Compiled for AVX512-BF16 whatever the variant's own flags. Only the Bf16 format's code holds
// its instructions, and it is called only where the CPU has them: the float32 code is the same
// templates on F32, which uses no bfloat16 intrinsic, and the compiler makes bfloat16
// instructions from nothing else (checked: `objdump -d -C` of this file built with
// -march=x86-64-v4 shows VDPBF16PS, VCVTNE2PS2BF16 and VCVTNEPS2BF16 in Bf16 functions only).
#define FASTBP_PACKED_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// Blocking, as in GotoBLAS / BLIS. The kernel computes an MR x NR tile of C from a panel of A
// (MR rows) and a panel of B (NR columns) over KC values of k, both packed into 32-bit words
// in one of two formats (F32, Bf16 below). MR x 2 accumulators, 2 vectors of B and a broadcast
// fill 27 of the 32 registers. A panel of B (KC x NR) stays in L2 while the kernel runs down a
// block of A (MC x KC, in L2); the block of B (KC x NC) is packed once and serves every block
// of A. KC = 512 rather than 256: C's tiles are read and written half as often (wide's bfloat16
// epoch, bench/core_epoch.cpp: 2.15-2.17 s against 2.26-2.52 s; 384 and 768 between; float32
// products on wide's shapes: 1.00-1.14x OpenBLAS's at 512, 0.98-1.05x at 256).
constexpr int MR = 12;
constexpr int NR = 32;
constexpr int KC = 512;   // even: pairs of k
constexpr int MC = 264;   // multiple of MR; blocks of A are balanced up to this many rows
constexpr int NC = 2048;  // multiple of NR

FASTBP_PACKED_TARGET inline __mmask16 first(int n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// The two formats of the packed panels: how many values of k a word holds, how a column
// contiguous over k becomes 16 words, how rows contiguous over j become a row of words, and
// the kernel's multiply-add of a broadcast word of A by a vector of B.
//
// F32: one float32 value a word; the products are float32 FMAs, as in BLAS.
struct F32 {
  static constexpr int kPer = 1;
  // Words for k .. k + 16 of a column (left values of k remain; the others read as 0).
  FASTBP_PACKED_TARGET static __m512i column(const float* col, int left) {
    return _mm512_castps_si512(_mm512_maskz_loadu_ps(first(left), col));
  }
  // Words p .. of one row of out (width words), from row k of X, n values from it.
  FASTBP_PACKED_TARGET static void row(const float* r, long /*ld*/, int /*left*/, int n,
                                       uint32_t* out, int width) {
    for (int h = 0; h < width; h += 16)
      _mm512_mask_storeu_epi32(out + h, first(width - h),
                               _mm512_castps_si512(_mm512_maskz_loadu_ps(first(n - h), r + h)));
  }
  FASTBP_PACKED_TARGET static __m512 madd(__m512 acc, __m512i a, __m512i b) {
    return _mm512_fmadd_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), acc);
  }
};

// Bf16: bfloat16 pairs, one word holding the entries for k and k + 1: exactly what VDPBF16PS
// multiplies and adds into one float32 lane. Rounded to nearest even (VCVTNE2PS2BF16).
struct Bf16 {
  static constexpr int kPer = 2;
  FASTBP_PACKED_TARGET static __m512i column(const float* col, int left) {
    const __m512 lo = _mm512_maskz_loadu_ps(first(left), col);
    const __m512 hi = _mm512_maskz_loadu_ps(first(left - 16), col + 16);
    return __m512i(_mm512_cvtne2ps_pbh(hi, lo));  // word p: the pair (k + 2p, k + 2p + 1)
  }
  // Rows k and k + 1 (if left > 1; else zeros) -> words (r[j], r[ld + j]), 16 at a time.
  FASTBP_PACKED_TARGET static void row(const float* r, long ld, int left, int n, uint32_t* out,
                                       int width) {
    const __m512i interleave =
        _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int h = 0; h < width; h += 16) {
      const __mmask16 m = first(n - h);
      const __m512 lo = _mm512_maskz_loadu_ps(m, r + h);
      const __m512 hi = left > 1 ? _mm512_maskz_loadu_ps(m, r + ld + h) : _mm512_setzero_ps();
      const __m512i both = __m512i(_mm512_cvtne2ps_pbh(hi, lo));  // lo's 16 entries, then hi's
      _mm512_mask_storeu_epi32(out + h, first(width - h),
                               _mm512_permutexvar_epi16(interleave, both));
    }
  }
  FASTBP_PACKED_TARGET static __m512 madd(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, __m512bh(a), __m512bh(b));
  }
};

// Rows of words that kc values of k pack into.
template <class Fmt>
constexpr int words(int kc) {
  return (kc + Fmt::kPer - 1) / Fmt::kPer;
}

// r[i] word j -> r[j] word i.
FASTBP_PACKED_TARGET inline void transpose16(__m512i (&r)[16]) {
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

// 16 columns j .. j + 16 of op(X), each contiguous over k (op(X)(k, j) = X[j * ld + k]), over
// [k0, k0 + kc): words(kc) rows of words, row p at out + p * W, 16 words of each column at a
// time transposed in registers. Only the columns in `load` are read (the others pack as 0);
// only the words of the columns in `store` are written.
template <class Fmt>
FASTBP_PACKED_TARGET void pack_columns16(const float* X, long ld, int k0, int kc, int j,
                                         __mmask16 load, __mmask16 store, uint32_t* out, long W) {
  constexpr int step = 16 * Fmt::kPer;
  for (int k = 0; k < kc; k += step) {
    const int left = kc - k;
    __m512i r[16];
#pragma GCC unroll 16
    for (int q = 0; q < 16; ++q)
      r[q] = load & (1u << q) ? Fmt::column(X + long(j + q) * ld + k0 + k, left)
                              : _mm512_setzero_si512();
    transpose16(r);
    const int rows = std::min(16, words<Fmt>(left));
    for (int p = 0; p < rows; ++p)
      _mm512_mask_storeu_epi32(out + (k / Fmt::kPer + p) * W, store, r[p]);
  }
}

// Packs op(X)[k0 .. k0 + kc) x [j0 .. j0 + w) for w <= W as words(kc) rows of W words (the
// columns from w on are zero). op(X)(k, j) = X[k * ld + j] where `rows_contiguous` (the k-th
// row is contiguous over j), else X[j * ld + k].
template <class Fmt, int W>
FASTBP_PACKED_TARGET void pack_panel(const float* X, long ld, bool rows_contiguous, int k0, int kc,
                                     int j0, int w, uint32_t* out) {
  if (rows_contiguous) {
    for (int p = 0; p < words<Fmt>(kc); ++p) {
      const int k = k0 + Fmt::kPer * p;
      Fmt::row(X + long(k) * ld + j0, ld, k0 + kc - k, w, out + long(p) * W, W);
    }
    return;
  }
  // Each column is contiguous over k; the columns from w on are written as zeros.
  for (int g = 0; g < W; g += 16)
    pack_columns16<Fmt>(X, ld, k0, kc, j0 + g, first(w - g), first(W - g), out + g, W);
}

// C tile (m <= R rows, n <= NR columns) = alpha A_panel B_panel + beta C over kw rows of
// words, A's panel packed R rows wide. R = MR but for the last rows of a block.
template <class Fmt, int R>
FASTBP_PACKED_TARGET __attribute__((noinline)) void kernel(int kw, const uint32_t* a,
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
  for (int p = 0; p < kw; ++p) {
    const __m512i b0 = _mm512_loadu_si512(b + long(p) * NR);
    const __m512i b1 = _mm512_loadu_si512(b + long(p) * NR + 16);
    const uint32_t* ap = a + long(p) * R;
#pragma GCC unroll 12
    for (int i = 0; i < R; ++i) {
      const __m512i ai = _mm512_set1_epi32(int(ap[i]));
      acc[i][0] = Fmt::madd(acc[i][0], ai, b0);
      acc[i][1] = Fmt::madd(acc[i][1], ai, b1);
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

// The rows of the panel from row i of a block of mc: MR, but the last 13 to 16 rows go as two
// panels of 8 rather than 12 and 1 to 4: the 4-row tile shares each load of B among 4 rows and
// runs at ~80% of the 12-row one (wide's 256 rows a thread: 20 x 12 + 2 x 8).
constexpr int panel_height(int i, int mc) {
  return mc - i > MR && mc - i <= MR + 4 ? 8 : std::min(MR, mc - i);
}

// Packs rows [i0, i0 + m) of op(A)'s columns [pc, pc + kc) into one panel, R rows wide.
template <class Fmt>
FASTBP_PACKED_TARGET void pack_a(const float* A, int lda, bool ta, int pc, int kc, int i0, int m,
                                 uint32_t* out) {
  switch (panel_rows(m)) {  // op(A)(i, k) is A[i * lda + k], or A[k * lda + i] if transposed
    case MR:
      return pack_panel<Fmt, MR>(A, lda, ta, pc, kc, i0, m, out);
    case 8:
      return pack_panel<Fmt, 8>(A, lda, ta, pc, kc, i0, m, out);
    default:
      return pack_panel<Fmt, 4>(A, lda, ta, pc, kc, i0, m, out);
  }
}

template <class Fmt>
FASTBP_PACKED_TARGET void tile(int kw, const uint32_t* a, const uint32_t* b, float* c, long ldc,
                               float alpha, float beta, int m, int n) {
  switch (panel_rows(m)) {
    case MR:
      return kernel<Fmt, MR>(kw, a, b, c, ldc, alpha, beta, m, n);
    case 8:
      return kernel<Fmt, 8>(kw, a, b, c, ldc, alpha, beta, m, n);
    default:
      return kernel<Fmt, 4>(kw, a, b, c, ldc, alpha, beta, m, n);
  }
}

constexpr std::size_t padded(int N) { return std::size_t(N + NR - 1) / NR * NR; }

// --- B packed whole, row by row of W, by the thread that owns those rows ----------------------
// The layout run() reads: for each block of k from pc (KC values, kw = words(kc) rows of
// words), at word (pc / kPer) * padded(N), its panels of NR columns, kw x NR words each, one
// after another. Entries never written (columns past N, the pair of an odd last k) stay as the
// caller zeroed them. Each call writes only the words (or, for bfloat16 pairs, the halves of
// words) that come from its own rows of W, so threads that own different rows may pack at once.

template <class Fmt>
std::size_t block_offset(int pc, int N) {
  return std::size_t(pc / Fmt::kPer) * padded(N);
}

// op(B) = W (R x C): k = row, j = column. In float32, row r is one row of words of its block;
// in bfloat16 it is the low (even r) or high half of the words of pair r / 2. 16 columns at a
// time, stored under a mask.
template <class Fmt>
FASTBP_PACKED_TARGET void pack_rows(const float* W, int R, int C, int r0, int r1, uint32_t* out) {
  for (int r = r0; r < r1; ++r) {
    const int pc = r / KC * KC, kw = words<Fmt>(std::min(KC, R - pc)), p = (r - pc) / Fmt::kPer;
    uint32_t* row = out + block_offset<Fmt>(pc, C) + std::size_t(p) * NR;
    for (int c = 0; c < C; c += 16) {
      const int n = std::min(16, C - c);
      const __m512 v = _mm512_maskz_loadu_ps(first(n), W + std::size_t(r) * C + c);
      // column c is word c % NR of panel c / NR
      uint32_t* dst = row + std::size_t(c / NR * NR) * kw + c % NR;
      if constexpr (Fmt::kPer == 1) {
        _mm512_mask_storeu_ps(dst, first(n), v);
      } else {
        __m512i w = _mm512_cvtepu16_epi32(__m256i(_mm512_cvtneps_pbh(v)));
        if (r & 1) w = _mm512_slli_epi32(w, 16);
        const __mmask32 half = (r & 1) ? 0xaaaaaaaau : 0x55555555u;
        const __mmask32 lanes = n == 16 ? ~__mmask32(0) : __mmask32((1u << (2 * n)) - 1);
        _mm512_mask_storeu_epi16(dst, half & lanes, w);
      }
    }
  }
}

// op(B) = W^T (C x R): k = column of W, j = row. Row r's words are whole words of column r of
// op(B): 16 rows x 16 words at a time, transposed in registers, stored under a row mask.
template <class Fmt>
FASTBP_PACKED_TARGET void pack_rows_transposed(const float* W, int R, int C, int r0, int r1,
                                               uint32_t* out) {
  for (int g = r0 / 16 * 16; g < r1; g += 16) {
    __mmask16 mine = 0;
    for (int q = 0; q < 16; ++q)
      if (g + q >= r0 && g + q < r1) mine |= __mmask16(1u << q);
    for (int pc = 0; pc < C; pc += KC) {
      const int kw = words<Fmt>(std::min(KC, C - pc));
      uint32_t* panel = out + block_offset<Fmt>(pc, R) + std::size_t(g / NR * NR) * kw + g % NR;
      pack_columns16<Fmt>(W, C, pc, std::min(KC, C - pc), g, mine, mine, panel, NR);
    }
  }
}

// The packed blocks of A and B, allocated once per thread at their largest (4.7 MB, for
// float32) and reused by every product on it, in either format: products run inside the
// epoch's team, where nothing may throw.
struct Workspace {
  std::unique_ptr<uint32_t[]> words;
  uint32_t* a() { return words.get(); }
  uint32_t* b() { return words.get() + std::size_t(KC) * MC; }
  bool ready() {
    if (!words) words.reset(new (std::nothrow) uint32_t[std::size_t(KC) * (MC + NC)]);
    return bool(words);
  }
};

// This thread's one workspace, whichever format its products run in.
Workspace& workspace() {
  thread_local Workspace ws;
  return ws;
}

// B (ldb) is packed block by block here unless `packed` holds it packed whole (pack_rows*).
template <class Fmt>
FASTBP_PACKED_TARGET bool run(bool ta, bool tb, int M, int N, int K, float alpha, const float* A,
                              int lda, const float* B, int ldb, const uint32_t* packed, float beta,
                              float* C, int ldc) {
  Workspace& ws = workspace();
  if (!ws.ready()) return false;
  // Blocks of A of equal size, in whole panels: 256 rows are one block, not 264 + 0 or 240 + 16.
  const int blocks = (M + MC - 1) / MC;
  const int mc_max = ((M + blocks - 1) / blocks + MR - 1) / MR * MR;
  for (int jc = 0; jc < N; jc += NC) {
    const int nc = std::min(NC, N - jc);
    for (int pc = 0; pc < K; pc += KC) {
      const int kc = std::min(KC, K - pc), kw = words<Fmt>(kc);
      const float beta_k = pc == 0 ? beta : 1.0f;
      for (int ic = 0; ic < M; ic += mc_max) {
        const int mc = std::min(mc_max, M - ic);
        for (int ir = 0, h = 0; ir < mc; ir += h) {
          h = panel_height(ir, mc);
          pack_a<Fmt>(A, lda, ta, pc, kc, ic + ir, h, ws.a() + std::size_t(ir) * kw);
        }
        for (int jr = 0; jr < nc; jr += NR) {
          const uint32_t* b = ws.b() + std::size_t(jr) * kw;
          if (packed) {
            b = packed + block_offset<Fmt>(pc, N) + std::size_t(jc + jr) * kw;
          } else if (ic == 0) {
            // Each panel of B is packed just before the first block of A runs over it, while
            // it is in L1, and kept for the next blocks. op(B)(k, j) is B[k * ldb + j], or
            // B[j * ldb + k] if transposed.
            pack_panel<Fmt, NR>(B, ldb, !tb, pc, kc, jc + jr, std::min(NR, nc - jr),
                                ws.b() + std::size_t(jr) * kw);
          }
          for (int ir = 0, h = 0; ir < mc; ir += h) {
            h = panel_height(ir, mc);
            tile<Fmt>(kw, ws.a() + std::size_t(ir) * kw, b, C + long(ic + ir) * ldc + jc + jr, ldc,
                      alpha, beta_k, h, std::min(NR, nc - jr));
          }
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

bool own_gemm_built() { return true; }

bool bf16_supported() {
  static const bool yes = detect();
  return yes;
}

// f(Fmt{}) for the format `bf16` names.
template <class F>
auto with_format(bool bf16, F&& f) {
  return bf16 ? f(Bf16{}) : f(F32{});
}

bool gemm_packed(bool bf16, bool ta, bool tb, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, const uint32_t* packed_b, float beta, float* C,
                 int ldc) {
  return with_format(bf16, [&](auto fmt) {
    return run<decltype(fmt)>(ta, tb, M, N, K, alpha, A, lda, B, ldb, packed_b, beta, C, ldc);
  });
}

std::size_t packed_b_words(bool bf16, int K, int N) {
  return with_format(bf16, [&](auto fmt) { return std::size_t(words<decltype(fmt)>(K)); }) *
         padded(N);
}

void pack_rows(bool bf16, const float* W, int R, int C, int r0, int r1, uint32_t* out) {
  with_format(bf16, [&](auto fmt) { pack_rows<decltype(fmt)>(W, R, C, r0, r1, out); });
}

void pack_rows_transposed(bool bf16, const float* W, int R, int C, int r0, int r1, uint32_t* out) {
  with_format(bf16, [&](auto fmt) { pack_rows_transposed<decltype(fmt)>(W, R, C, r0, r1, out); });
}

#else

bool own_gemm_built() { return false; }
bool bf16_supported() { return false; }

bool gemm_packed(bool, bool, bool, int, int, int, float, const float*, int, const float*, int,
                 const uint32_t*, float, float*, int) {
  return false;
}

std::size_t packed_b_words(bool, int, int) { return 0; }
void pack_rows(bool, const float*, int, int, int, int, uint32_t*) {}
void pack_rows_transposed(bool, const float*, int, int, int, int, uint32_t*) {}

#endif

}  // namespace fastbp
