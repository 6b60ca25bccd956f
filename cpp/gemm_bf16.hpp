// Mixed-precision products for float32 networks: the inputs of each product are rounded to
// bfloat16 (round to nearest even), the products and their sums are float32. On CPUs with
// AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids) one instruction
// (VDPBF16PS) does twice the multiply-adds of a float32 FMA, so large products run up to twice
// as fast as float32 BLAS. Built into the AVX-512 cores (v4, native) only; everywhere else
// bf16_supported() is false and nothing here is called.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastbp {

// Whether this CPU and OS run AVX512-BF16 (and the AVX-512 F/BW/VL it builds on).
bool bf16_supported();

// Whether a product is worth rounding to bfloat16: below these sizes the kernel's tiles (12 x 32
// over pairs of k) are mostly padding, or its packing costs more than it saves.
inline bool bf16_worth(long M, long N, long K) {
  return M >= 12 && N >= 32 && K >= 32 && double(M) * N * K >= double(1 << 18);
}

// Row-major, single-threaded: C (M x N) = alpha op(A) op(B) + beta C, with op(A) (M x K) and
// op(B) (K x N) rounded to bfloat16. Only call where bf16_supported(). False, with C untouched,
// where this thread's working memory (2.4 MB, once) could not be allocated.
bool gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
               int lda, const float* B, int ldb, float beta, float* C, int ldc);

// The same with op(B) = B, given packed whole by the functions below (B need not be at hand).
bool gemm_bf16_packed(bool trans_a, int M, int N, int K, float alpha, const float* A, int lda,
                      const uint16_t* packed_b, float beta, float* C, int ldc);

// A weight matrix W (R x C, row-major) packed as gemm_bf16_packed reads it: bf16_pack_rows as
// op(B) = W (K = R, N = C: a forward product X W), bf16_pack_rows_transposed as op(B) = W^T
// (K = C, N = R: an input gradient dZ W^T). `out` has bf16_packed_size(K, N) entries, zeroed
// once; each call packs rows [r0, r1) of W and writes nothing that comes from other rows, so
// the threads that own different rows of W can pack them at the same time.
std::size_t bf16_packed_size(int K, int N);
void bf16_pack_rows(const float* W, int R, int C, int r0, int r1, uint16_t* out);
void bf16_pack_rows_transposed(const float* W, int R, int C, int r0, int r1, uint16_t* out);

}  // namespace fastbp
