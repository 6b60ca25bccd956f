#include "gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <utility>

#include "common.hpp"
#include "fastmath.hpp"
#include "gemm_packed.hpp"

namespace fastbp {

namespace {

// OpenBLAS runs single-threaded: fastbp parallelises a large product itself, over its own
// OpenMP team, by splitting C into panels. One thread pool, not two, so BLAS workers never
// spin against fastbp's elementwise threads on the same cores.
const bool kBlasSingleThreaded = (scipy_openblas_set_num_threads(1), true);

// Products smaller than this many multiply-adds run on the calling thread.
constexpr double kParallelMacs = 1 << 18;

void blas(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void blas(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
          const double* B, int ldb, double beta, double* C, int ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// The product on the calling thread: where worth it, fastbp's own kernels (bfloat16 where
// asked; float32 on AVX-512 cores), else BLAS.
void product(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
             const float* B, int ldb, float beta, float* C, int ldc, bool bf16,
             const std::uint32_t* packed_b) {
  if (packed_worth(bf16, tb, M, N, K) &&
      gemm_packed(bf16, ta, tb, M, N, K, alpha, A, lda, B, ldb, packed_b, beta, C, ldc))
    return;
  blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void product(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
             const double* B, int ldb, double beta, double* C, int ldc, bool,
             const std::uint32_t*) {
  blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// C = beta C + bias in every row (C = bias where beta is 0, whatever C held).
template <class T>
void scale_add_rows(int M, int N, T beta, const T* bias, T* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    T* c = C + std::size_t(i) * ldc;
    if (beta == T(0)) {
      if (bias)
        std::copy(bias, bias + N, c);
      else
        std::fill(c, c + N, T(0));
    } else {
#pragma omp simd
      for (int j = 0; j < N; ++j) c[j] = beta * c[j] + (bias ? bias[j] : T(0));
    }
  }
}

#if defined(__GNUC__) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define FASTBP_SMALL_KERNELS 1
#endif
#endif

#ifdef FASTBP_SMALL_KERNELS
// Small products: register-blocked kernels written with the compiler's vector types, so that
// each core variant gets its own vector width (AVX-512: 16 floats, AVX: 8, SSE and NEON: 4).
// For the matrices of small networks with small batches (a few rows of tens of columns, as in
// online learning) OpenBLAS's call, checks and packing cost more than the arithmetic; these
// kernels keep a block of C in registers, read A and B in place, and add the bias in the same
// pass. (From tens of rows on, OpenBLAS's own small-matrix kernels are as fast: see kSmallMacs.)
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif
// Vector registers: accumulators, B's vectors and a broadcast must fit in them.
#if defined(__AVX512F__) || defined(__aarch64__)
constexpr int kRegisters = 32;
#else
constexpr int kRegisters = 16;
#endif

template <class T, int N>
struct VecOf {
  typedef T type __attribute__((vector_size(N * sizeof(T))));
};
template <class T, int N>
using Vec = typename VecOf<T, N>::type;
template <class T>
constexpr int kLanes = kVectorBytes / int(sizeof(T));
template <class T>
using Full = Vec<T, kLanes<T>>;

template <class V, class T>
FASTBP_INLINE V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <class V, class T>
FASTBP_INLINE void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}

// The first n lanes of a vector (0 < n < lanes; the others read as 0, written not at all), with
// the masked loads and stores of AVX-512 and AVX2. Without them (SSE, NEON) the columns left
// over after whole vectors are done one at a time.
#if defined(__AVX512F__)
#define FASTBP_MASKED_LANES 1
FASTBP_INLINE Full<float> load_first(const float* p, int n) {
  return Full<float>(_mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p));
}
FASTBP_INLINE Full<double> load_first(const double* p, int n) {
  return Full<double>(_mm512_maskz_loadu_pd(__mmask8((1u << n) - 1), p));
}
FASTBP_INLINE void store_first(float* p, Full<float> v, int n) {
  _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), __m512(v));
}
FASTBP_INLINE void store_first(double* p, Full<double> v, int n) {
  _mm512_mask_storeu_pd(p, __mmask8((1u << n) - 1), __m512d(v));
}
#elif defined(__AVX2__)
#define FASTBP_MASKED_LANES 1
FASTBP_INLINE __m256i first_lanes(int n, int width) {  // n lanes of `width` 32-bit words each
  const __m256i word = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n * width), word);
}
FASTBP_INLINE Full<float> load_first(const float* p, int n) {
  return Full<float>(_mm256_maskload_ps(p, first_lanes(n, 1)));
}
FASTBP_INLINE Full<double> load_first(const double* p, int n) {
  return Full<double>(_mm256_maskload_pd(p, first_lanes(n, 2)));
}
FASTBP_INLINE void store_first(float* p, Full<float> v, int n) {
  _mm256_maskstore_ps(p, first_lanes(n, 1), __m256(v));
}
FASTBP_INLINE void store_first(double* p, Full<double> v, int n) {
  _mm256_maskstore_pd(p, first_lanes(n, 2), __m256d(v));
}
#endif

// --- C = op(A) B, B's rows contiguous: forward (A W) and weight gradient (A^T dZ) -------------
// Element (i, k) of op(A) is a[i * ars + k * acs], so one kernel reads A or A^T in place.
// Narrow tiles would wait on each multiply-add's latency: over a long enough k they keep U sets
// of accumulators, each summing every U-th k, added at the end. U depends on the width and K
// only, never on the rows in a tile, so that a row's result does not depend on the rows
// computed beside it.
template <int NV>
constexpr int AxpySums = NV >= 4   ? 1
                         : NV >= 2 ? 2
                                   : 4;

// A tile of MR rows by NV vectors (the last one with `last` lanes), accumulated over all of k
// in registers: C = alpha acc + beta C + bias.
template <class T, int NV, int MR, int U>
struct AxpyTile {
  using V = Full<T>;
  static constexpr int L = kLanes<T>;

  FASTBP_INLINE static V load_b(const T* p, int v, int last) {
#ifdef FASTBP_MASKED_LANES
    if (v == NV - 1 && last < L) return load_first(p, last);
#else
    (void)v, (void)last;
#endif
    return load<V>(p);
  }

  FASTBP_INLINE static void steps(int k0, int k1, const T* a, long ars, long acs, const T* b,
                                  long ldb, int last, V (&acc)[MR][NV]) {
    for (int k = k0; k < k1; ++k) {
      const T* bk = b + long(k) * ldb;
      V bv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) bv[v] = load_b(bk + v * L, v, last);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const T ar = a[r * ars + long(k) * acs];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[r][v] += ar * bv[v];
      }
    }
  }

  FASTBP_INLINE static void run(int K, const T* a, long ars, long acs, const T* b, long ldb,
                                T alpha, T beta, const T* bias, T* c, long ldc, int last) {
    V acc[U][MR][NV];
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u)
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[u][r][v] = V{};
    int k = 0;
    if constexpr (U > 1) {
      for (; k + U <= K; k += U)
#pragma GCC unroll 4
        for (int u = 0; u < U; ++u) steps(k + u, k + u + 1, a, ars, acs, b, ldb, last, acc[u]);
    }
    steps(k, K, a, ars, acs, b, ldb, last, acc[0]);
#pragma GCC unroll 4
    for (int u = 1; u < U; ++u)
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[0][r][v] += acc[u][r][v];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        T* cp = c + r * ldc + v * L;
        V out = alpha == T(1) ? acc[0][r][v] : alpha * acc[0][r][v];
        if (beta != T(0)) out += beta * load_b(cp, v, last);
        if (bias) out += load_b(bias + v * L, v, last);
#ifdef FASTBP_MASKED_LANES
        if (v == NV - 1 && last < L) {
          store_first(cp, out, last);
          continue;
        }
#endif
        store(cp, out);
      }
    }
  }
};

// Rows [0, M) of one block of columns, MR at a time, the rest one at a time. A function of its
// own per width, so that each keeps its accumulators in registers.
template <class T, int NV, int U>
__attribute__((noinline)) void axpy_rows(int M, int K, const T* a, long ars, long acs, const T* b,
                                         long ldb, T alpha, T beta, const T* bias, T* c, long ldc,
                                         int last) {
  // U * MR * NV accumulators, NV vectors of B and a broadcast fit the registers.
  constexpr int MR = std::min((kRegisters - NV - 1) / (NV * U), 8);
  int i = 0;
  for (; i + MR <= M; i += MR)
    AxpyTile<T, NV, MR, U>::run(K, a + i * ars, ars, acs, b, ldb, alpha, beta, bias, c + i * ldc,
                                ldc, last);
  for (; i < M; ++i)
    AxpyTile<T, NV, 1, U>::run(K, a + i * ars, ars, acs, b, ldb, alpha, beta, bias, c + i * ldc,
                               ldc, last);
}

template <class T, int NV>
FASTBP_INLINE void axpy_columns(int M, int K, const T* a, long ars, long acs, const T* b, long ldb,
                                T alpha, T beta, const T* bias, T* c, long ldc, int last) {
  constexpr int U = AxpySums<NV>;
  if (U > 1 && K >= 2 * U)
    axpy_rows<T, NV, U>(M, K, a, ars, acs, b, ldb, alpha, beta, bias, c, ldc, last);
  else
    axpy_rows<T, NV, 1>(M, K, a, ars, acs, b, ldb, alpha, beta, bias, c, ldc, last);
}

template <class T>
void small_axpy(int M, int N, int K, T alpha, const T* a, long ars, long acs, const T* b, long ldb,
                T beta, const T* bias, T* c, long ldc) {
  constexpr int L = kLanes<T>;
  constexpr int NV = kRegisters >= 32 ? 4 : 2;  // wide blocks: MR rows share each load of B
  auto at = [&](int j) { return bias ? bias + j : nullptr; };
  int j = 0;
  for (; j + NV * L <= N; j += NV * L)
    axpy_columns<T, NV>(M, K, a, ars, acs, b + j, ldb, alpha, beta, at(j), c + j, ldc, L);
  for (; j + L <= N; j += L)
    axpy_columns<T, 1>(M, K, a, ars, acs, b + j, ldb, alpha, beta, at(j), c + j, ldc, L);
  if (j == N) return;
#ifdef FASTBP_MASKED_LANES
  axpy_columns<T, 1>(M, K, a, ars, acs, b + j, ldb, alpha, beta, at(j), c + j, ldc, N - j);
#else
  for (; j < N; ++j)  // one column at a time: its entries are dot products of K terms
    for (int i = 0; i < M; ++i) {
      T s = 0;
      for (int k = 0; k < K; ++k) s += a[i * ars + k * acs] * b[long(k) * ldb + j];
      T& out = c[i * ldc + j];
      out = alpha * s + (beta != T(0) ? beta * out : T(0)) + (bias ? bias[j] : T(0));
    }
#endif
}

// --- C = A B^T with few rows of A: the input gradient dZ W^T of a small batch ------------------
// Each entry is the dot product of a row of A and a row of B. A tile of L entries (one row of
// A, L rows of B) keeps one accumulator per entry, holding partial sums over L positions of k;
// at the end a tree of shuffles folds the L accumulators into one vector of the L sums.

// Lane i of a fold of two vectors x, y whose lanes form groups of g (one group per dot
// product): for each group of x, then each group of y, its lower half (or its upper half).
// Adding the two halves gives groups of g / 2.
constexpr int fold_lane(int L, int g, bool upper, int i) {
  const int half = g / 2, groups = L / g, group = i / half;
  return (group / groups) * L + (group % groups) * g + (upper ? half : 0) + i % half;
}

template <int L, int g, class V, std::size_t... I>
FASTBP_INLINE V fold(V x, V y, std::index_sequence<I...>) {
  return __builtin_shufflevector(x, y, fold_lane(L, g, false, int(I))...) +
         __builtin_shufflevector(x, y, fold_lane(L, g, true, int(I))...);
}

// v[0..n) with lanes in groups of g; afterwards lane q of v[0] holds the sum of the lanes of
// the input v[q] (call with n = g = L).
template <int L, int n, int g, class V>
FASTBP_INLINE void fold_all(V* v) {
  if constexpr (n > 1) {
#pragma GCC unroll 16
    for (int p = 0; p < n / 2; ++p)
      v[p] = fold<L, g>(v[2 * p], v[2 * p + 1], std::make_index_sequence<std::size_t(L)>());
    fold_all<L, n / 2, g / 2>(v);
  }
}

// Row a of A against rows j0 .. j0 + L of B (the rows from `rows` on repeat the last one: their
// sums are not stored): C[j0 + q] = alpha a . b_q + beta C + bias.
template <class T>
FASTBP_INLINE void dot_tile(int K, const T* a, const T* b, long ldb, int rows, T alpha, T beta,
                            const T* bias, T* c) {
  constexpr int L = kLanes<T>;
  using V = Full<T>;
  const T* row[L];
#pragma GCC unroll 16
  for (int q = 0; q < L; ++q) row[q] = b + long(q < rows ? q : rows - 1) * ldb;
  V acc[L];
#pragma GCC unroll 16
  for (int q = 0; q < L; ++q) acc[q] = V{};
  int k = 0;
  for (; k + L <= K; k += L) {
    const V av = load<V>(a + k);
#pragma GCC unroll 16
    for (int q = 0; q < L; ++q) acc[q] += av * load<V>(row[q] + k);
  }
#ifdef FASTBP_MASKED_LANES
  if (k < K) {
    const V av = load_first(a + k, K - k);
#pragma GCC unroll 16
    for (int q = 0; q < L; ++q) acc[q] += av * load_first(row[q] + k, K - k);
  }
  fold_all<L, L, L>(acc);
  V out = alpha == T(1) ? acc[0] : alpha * acc[0];
  if (rows == L) {
    if (beta != T(0)) out += beta * load<V>(c);
    if (bias) out += load<V>(bias);
    store(c, out);
  } else {
    if (beta != T(0)) out += beta * load_first(c, rows);
    if (bias) out += load_first(bias, rows);
    store_first(c, out, rows);
  }
#else
  fold_all<L, L, L>(acc);
  T sum[L];
  store(sum, acc[0]);
  for (int q = 0; q < rows; ++q) {
    for (int t = k; t < K; ++t) sum[q] += a[t] * row[q][t];
    c[q] = alpha * sum[q] + (beta != T(0) ? beta * c[q] : T(0)) + (bias ? bias[q] : T(0));
  }
#endif
}

template <class T>
void small_dot(int M, int N, int K, T alpha, const T* a, long lda, const T* b, long ldb, T beta,
               const T* bias, T* c, long ldc) {
  constexpr int L = kLanes<T>;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; j += L)
      dot_tile(K, a + i * lda, b + j * ldb, ldb, std::min(L, N - j), alpha, beta,
               bias ? bias + j : nullptr, c + i * ldc + j);
}

// Products up to this many multiply-adds use the kernels above instead of BLAS; from about
// there on OpenBLAS's small-matrix kernels are as fast on Zen 4 (bench: 16 x 64 x 64 at 0.8-1x).
constexpr int kSmallMacs = 1 << 12;
// A B^T with fewer rows of A than this uses the dot-product tiles (up to kSmallDotMacs);
// with more, OpenBLAS's kernels, which share each load of B between rows, are faster.
constexpr int kSmallDotRows = 4;
constexpr int kSmallDotMacs = 1 << 16;

// Whether the product was done here.
template <class T>
bool small_product(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                   int ldb, T beta, const T* bias, T* C, int ldc) {
  const long macs = long(M) * N * K;
  // A B^T with one column in B^T's rows (a layer of one output) is A times a row of B.
  const bool row_b = tb && K == 1 && ldb == 1;
  if (!tb || row_b) {
    if (macs > kSmallMacs) return false;
    small_axpy(M, N, K, alpha, A, ta ? 1 : lda, ta ? lda : 1, B, row_b ? N : ldb, beta, bias, C,
               ldc);
    return true;
  }
  if (ta || M >= kSmallDotRows || macs > kSmallDotMacs) return false;
  small_dot(M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc);
  return true;
}
#else
template <class T>
bool small_product(bool, bool, int, int, int, T, const T*, int, const T*, int, T, const T*, T*,
                   int) {
  return false;
}
#endif

// Products up to this many multiply-adds skip BLAS even without the kernels above: for the
// tiny matrices of small networks and batch size 1, the call and packing overhead costs more
// than the arithmetic.
constexpr double kLoopMacs = 1 << 12;

// The same product as plain loops, ordered so that the innermost loop runs over contiguous
// memory and vectorises.
template <class T>
void loop_gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
               int ldb, T beta, const T* bias, T* C, int ldc) {
  scale_add_rows(M, N, beta, bias, C, ldc);
  if (!tb) {  // C[i,:] += alpha * op(A)[i,k] * B[k,:]
    for (int i = 0; i < M; ++i) {
      T* c = C + std::size_t(i) * ldc;
      for (int k = 0; k < K; ++k) {
        const T a = alpha * (ta ? A[std::size_t(k) * lda + i] : A[std::size_t(i) * lda + k]);
        const T* b = B + std::size_t(k) * ldb;
#pragma omp simd
        for (int j = 0; j < N; ++j) c[j] += a * b[j];
      }
    }
  } else {  // C[i,j] += alpha * dot(op(A)[i,:], B[j,:])
    for (int i = 0; i < M; ++i) {
      T* c = C + std::size_t(i) * ldc;
      for (int j = 0; j < N; ++j) {
        const T* b = B + std::size_t(j) * ldb;
        T acc = 0;
        if (ta) {
          for (int k = 0; k < K; ++k) acc += A[std::size_t(k) * lda + i] * b[k];
        } else {
          const T* a = A + std::size_t(i) * lda;
#pragma omp simd reduction(+ : acc)
          for (int k = 0; k < K; ++k) acc += a[k] * b[k];
        }
        c[j] += alpha * acc;
      }
    }
  }
}

// The product by loops or BLAS, split over fastbp's threads when large.
template <class T>
void large_product(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                   int ldb, T beta, const T* bias, T* C, int ldc, bool bf16,
                   const std::uint32_t* packed_b) {
  if (double(M) * N * K <= kLoopMacs) {
    loop_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc);
    return;
  }
  if (bias) {  // BLAS has no bias: C = beta C + bias first, then C += op(A) op(B)
    scale_add_rows(M, N, beta, bias, C, ldc);
    beta = T(1);
  }
  const int threads = num_threads();
  if (threads == 1 || double(M) * N * K < kParallelMacs || in_parallel()) {
    product(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bf16, packed_b);
    return;
  }
  // Panels of C along its longer side, in multiples of 16 (whole SIMD registers).
  const bool by_rows = M >= N;
  const int extent = by_rows ? M : N;
  const int parts = std::min(threads, std::max(1, extent / 16));
  const int step = ((extent + parts - 1) / parts + 15) / 16 * 16;
#pragma omp parallel num_threads(parts)
  {
    const DenormalScope fp;
#pragma omp for schedule(static, 1)
    for (int p = 0; p < parts; ++p) {
      const int first = p * step;
      const int count = std::min(step, extent - first);
      if (count <= 0) continue;
      if (by_rows) {  // rows [first, first+count) of C and of op(A)
        const T* a = ta ? A + first : A + std::size_t(first) * lda;
        product(ta, tb, count, N, K, alpha, a, lda, B, ldb, beta, C + std::size_t(first) * ldc, ldc,
                bf16, packed_b);
      } else {  // columns [first, first+count) of C and of op(B)
        const T* b = tb ? B + std::size_t(first) * ldb : B + first;
        product(ta, tb, M, count, K, alpha, A, lda, b, ldb, beta, C + first, ldc, bf16, nullptr);
      }
    }
  }
}

}  // namespace

template <class T>
void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
          T beta, T* C, int ldc, const T* bias, bool bf16, const std::uint32_t* packed_b) {
  (void)kBlasSingleThreaded;
  if (small_product(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc)) return;
  large_product(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, bias, C, ldc, bf16, packed_b);
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int,
                          float, float*, int, const float*, bool, const std::uint32_t*);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*,
                           int, double, double*, int, const double*, bool, const std::uint32_t*);

int blas_num_threads() { return scipy_openblas_get_num_threads(); }

int blas_max_threads() {
  const char* config = scipy_openblas_get_config();  // "OpenBLAS 0.3.x ... MAX_THREADS=64"
  const char* key = config ? std::strstr(config, "MAX_THREADS=") : nullptr;
  const int n = key ? std::atoi(key + std::strlen("MAX_THREADS=")) : 0;
  return n > 0 ? n : 32;
}

std::string blas_core_name() {
  const char* name = scipy_openblas_get_corename();
  return name ? std::string(name) : std::string("unknown");
}

}  // namespace fastbp
