// The one place that calls BLAS. Row-major: C (M x N) = alpha * op(A) op(B) + beta * C
// (+ bias, a row of N added to every row of C, if given), op(A) is (M x K), op(B) is (K x N);
// lda/ldb/ldc are row strides of the stored matrices. Small products run in fastbp's own
// register-blocked kernels; large ones, split into panels over fastbp's threads, in fastbp's
// packed kernels on AVX-512 cores (float only, gemm_packed.hpp) and in BLAS otherwise; BLAS
// itself runs single-threaded. With `bf16` (float only, where bf16_supported()), the large
// products take bfloat16 inputs and sum in float32; small ones stay float32. `packed_b`, where
// given, is op(B) already packed for the packed kernels in the product's precision
// (gemm_packed.hpp: pack_rows*): B is then read only if the product runs elsewhere.
#pragma once
#include <cstdint>
#include <string>

namespace fastbp {

template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc, const T* bias = nullptr, bool bf16 = false,
          const std::uint32_t* packed_b = nullptr);

std::string blas_core_name();
int blas_num_threads();
// The MAX_THREADS OpenBLAS was built with, from its configuration string; a cautious 32 when
// the string does not say.
int blas_max_threads();

}  // namespace fastbp
