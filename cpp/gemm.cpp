#include "gemm.hpp"

#include <cblas.h>

#include <algorithm>

#include "common.hpp"

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

// Products up to this many multiply-adds skip BLAS: for the tiny matrices of small networks
// and batch size 1, the call and packing overhead costs more than the arithmetic.
constexpr double kSmallMacs = 1 << 12;

// The same product as plain loops, ordered so that the innermost loop runs over contiguous
// memory and vectorises.
template <class T>
void small_gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                int ldb, T beta, T* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    T* c = C + std::size_t(i) * ldc;
    if (beta == T(0))
      std::fill(c, c + N, T(0));
    else if (beta != T(1))
      for (int j = 0; j < N; ++j) c[j] *= beta;
  }
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

}  // namespace

template <class T>
void gemm(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb,
          T beta, T* C, int ldc) {
  (void)kBlasSingleThreaded;
  if (double(M) * N * K <= kSmallMacs) {
    small_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int threads = num_threads();
  if (threads == 1 || double(M) * N * K < kParallelMacs || in_parallel()) {
    blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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
        blas(ta, tb, count, N, K, alpha, a, lda, B, ldb, beta, C + std::size_t(first) * ldc, ldc);
      } else {  // columns [first, first+count) of C and of op(B)
        const T* b = tb ? B + std::size_t(first) * ldb : B + first;
        blas(ta, tb, M, count, K, alpha, A, lda, b, ldb, beta, C + first, ldc);
      }
    }
  }
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int,
                          float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*,
                           int, double, double*, int);

int blas_num_threads() { return scipy_openblas_get_num_threads(); }

std::string blas_core_name() {
  const char* name = scipy_openblas_get_corename();
  return name ? std::string(name) : std::string("unknown");
}

}  // namespace fastbp
