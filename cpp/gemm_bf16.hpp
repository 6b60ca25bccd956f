// Mixed-precision products for float32 networks: the inputs of each product are rounded to
// bfloat16 (round to nearest even), the products and their sums are float32. On CPUs with
// AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids) one instruction
// (VDPBF16PS) does twice the multiply-adds of a float32 FMA, so large products run up to twice
// as fast as float32 BLAS. Built into the AVX-512 cores (v4, native) only; everywhere else
// bf16_supported() is false and nothing here is called.
#pragma once

namespace fastbp {

// Whether this CPU and OS run AVX512-BF16 (and the AVX-512 F/BW/VL it builds on).
bool bf16_supported();

// Row-major, single-threaded: C (M x N) = alpha op(A) op(B) + beta C, with op(A) (M x K) and
// op(B) (K x N) rounded to bfloat16. Only call where bf16_supported(). False, with C untouched,
// where this thread's working memory (2.4 MB, once) could not be allocated.
bool gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
               int lda, const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace fastbp
