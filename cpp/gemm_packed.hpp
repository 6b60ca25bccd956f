// fastbp's own products for float32 networks, GotoBLAS / BLIS-style (packed panels, a 12 x 32
// register tile), in two precisions:
// - float32: the large products of float32 networks on AVX-512 CPUs, in place of
//   OpenBLAS's sgemm, which they beat by a few percent on the shapes of training (1.00-1.14x on
//   wide's, 1.03-1.08x on mnist-like's, one thread);
// - mixed precision: the inputs rounded to bfloat16 (round to nearest even), the
//   products and their sums float32. On CPUs with AVX512-BF16 (AMD Zen 4 and later, Intel
//   Cooper Lake and Sapphire Rapids) one instruction (VDPBF16PS) does twice the multiply-adds of
//   a float32 FMA, so large products run up to twice as fast as float32.
// Built into the AVX-512 cores (v4, native) only; everywhere else gemm_packed returns false (the
// caller then runs BLAS), bf16_supported() is false and nothing else here is called.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastbp {

// Whether this core has the packed kernels (the AVX-512 cores): gemm_packed runs, not BLAS.
bool own_gemm_built();

// Whether this CPU and OS run AVX512-BF16 (and the AVX-512 F/BW/VL it builds on).
bool bf16_supported();

// Whether a product is worth running here rather than in BLAS, in bfloat16 or float32, with
// op(B) = B^T or not. Below 32 columns, 32 terms per sum or 12 rows the kernel's tiles (12 x 32,
// over pairs of k in bfloat16) are mostly padding; under 2^18 multiply-adds its packing of both
// operands costs more than it saves. In float32, against OpenBLAS's small-matrix kernels, A B
// and A^T B need 2^21 (one thread, NumPy's OpenBLAS as reference: 0.63-0.86x at 2^18-2^19,
// 0.93-1.08x at 2^20-2^21, 0.97-1.18x above); A B^T, where OpenBLAS is slow, gains from 2^18
// (1.09-1.57x).
inline bool packed_worth(bool bf16, bool trans_b, long M, long N, long K) {
  const double macs = double(M) * N * K;
  return M >= 12 && N >= 32 && K >= 32 && macs >= double(1 << 18) &&
         (bf16 || trans_b || macs >= double(1 << 21));
}

// Row-major, single-threaded: C (M x N) = alpha op(A) op(B) + beta C, with op(A) (M x K) and
// op(B) (K x N), in float32, or with op(A) and op(B) rounded to bfloat16 where `bf16` (only
// call so where bf16_supported()). op(B) comes from B (ldb, trans_b) or, where `packed_b` is
// given, from that whole op(B) packed in the product's format by the functions below (B and
// trans_b are then not read). False, with C untouched, where this core has no such kernels
// (below AVX-512) or this thread's working memory (4.7 MB, once, for both formats) could not
// be allocated.
bool gemm_packed(bool bf16, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                 const float* A, int lda, const float* B, int ldb, const uint32_t* packed_b,
                 float beta, float* C, int ldc);

// A weight matrix W (R x C, row-major) packed as gemm_packed's packed_b: pack_rows as
// op(B) = W (K = R, N = C: a forward product X W), pack_rows_transposed as op(B) = W^T (K = C,
// N = R: an input gradient dZ W^T). `out` has packed_b_words(bf16, K, N) words, zeroed once;
// each call packs rows [r0, r1) of W and writes nothing that comes from other rows, so the
// threads that own different rows of W can pack them at the same time.
std::size_t packed_b_words(bool bf16, int K, int N);
void pack_rows(bool bf16, const float* W, int R, int C, int r0, int r1, uint32_t* out);
void pack_rows_transposed(bool bf16, const float* W, int R, int C, int r0, int r1, uint32_t* out);

}  // namespace fastbp
