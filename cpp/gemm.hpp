// The one place that calls BLAS. Row-major: C (M x N) = alpha * op(A) op(B) + beta * C,
// op(A) is (M x K), op(B) is (K x N); lda/ldb/ldc are row strides of the stored matrices.
#pragma once
#include <string>

namespace fastbp {

template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc);

void set_blas_threads(int n);
std::string blas_core_name();

}  // namespace fastbp
