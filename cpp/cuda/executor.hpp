// The primitives the device network and its epoch loop are written in, and their arguments.
// Two executors implement the same set:
//   CudaExec (cuda_exec.hpp, kernels.cu): device memory, one CUDA stream, cuBLAS, the kernels,
//            CUDA graphs;
//   HostExec (host_exec.hpp): host memory and the same per-thread functions (device_ops.hpp)
//            run in loops, GEMM by a column-major reference behind the same row-major mapping
//            as cuBLAS, and "graphs" that record the calls and replay them. It is the CUDA
//            backend's logic, checked where there is no GPU (fastbp._cuda_emu).
//
// Every operation is stream-ordered: it runs after the ones enqueued before it. Pointers are
// device pointers unless named host. Operations taking `stop` (a device int, may be null) do
// nothing once it is nonzero, so that an epoch stops updating after a non-finite batch without
// the host looking at each batch.
#pragma once
#include <cstddef>
#include <cstdint>

#include "device_ops.hpp"

namespace fastbp {
namespace device {

// Row-major C (M x N) = alpha op(A) op(B) + beta C, as cuBLAS (column-major) computes it: a
// row-major matrix is its transpose in column-major, so C^T = op(B)^T op(A)^T swaps the operands.
struct ColumnMajorGemm {
  bool trans_a, trans_b;
  int m, n, k;
  const void* a;
  int lda;
  const void* b;
  int ldb;
  void* c;
  int ldc;
};

inline ColumnMajorGemm as_column_major(bool trans_a, bool trans_b, int M, int N, int K,
                                       const void* A, int lda, const void* B, int ldb, void* C,
                                       int ldc) {
  return {trans_b, trans_a, N, M, K, B, ldb, A, lda, C, ldc};
}

// Contiguous blocks of a flat buffer, grouped by segment (the weight and bias blocks of each
// layer), for deterministic sums: one partial per block, then the partials of a segment in
// block order.
struct SegmentPlan {
  int n_blocks = 0, n_segments = 0;
  const long long* begin = nullptr;  // per block: its range [begin, end) in the buffer
  const long long* end = nullptr;
  const int* first = nullptr;  // per segment, and one past the last: its first block
};

// One mini-batch gathered from the data set in the epoch's order.
template <class T>
struct GatherArgs {
  const T* X = nullptr;  // (N, d) inputs
  int d = 0;
  const T* Y = nullptr;  // (N, k) dense targets, or
  int k = 0;
  const int32_t* labels = nullptr;    // (N,) class labels
  const int32_t* order = nullptr;     // (N,) the epoch's sample order
  const EpochState* state = nullptr;  // batch number from state->batch if set,
  long long first = 0;                // else the batch's first position in the order
  long long batch_size = 0;
  int n = 0;  // rows of this batch
  T* x_out = nullptr;
  int ld_x = 0;  // (n, ld_x): the inputs, the ones column left alone
  T* y_out = nullptr;
  int32_t* labels_out = nullptr;
  const int* stop = nullptr;
};

// A dense layer's forward on n rows: z = [in 1] Wb, and a = f(z) where a is set.
template <class T>
struct DenseForward {
  Act act = Act::identity;
  const T* in = nullptr;
  int ld_in = 0;
  const T* wb = nullptr;
  int n = 0, n_in = 0, n_out = 0;
  T* z = nullptr;
  T* a = nullptr;
  int lda = 0;
  const int* stop = nullptr;
};

// A dense layer's backward on n rows: gwb = [in 1]^T dz; and where dprev is set,
// dprev = (dz W^T) * f'(z_prev, in) with f the previous layer's activation `act_prev` (its
// activations are this layer's inputs `in`).
template <class T>
struct DenseBackward {
  const T* in = nullptr;
  int ld_in = 0;
  const T* wb = nullptr;
  const T* dz = nullptr;
  int n = 0, n_in = 0, n_out = 0;
  T* gwb = nullptr;
  Act act_prev = Act::identity;
  const T* z_prev = nullptr;
  T* dprev = nullptr;
  const int* stop = nullptr;
};

// The output layer: a = f(z) per row; with targets, each row's loss and correct count; with
// dz, the scaled gradient of the loss with respect to z.
template <class T>
struct OutputArgs {
  Loss loss = Loss::mse;
  Act act = Act::identity;
  const T* z = nullptr;
  T* a = nullptr;
  int n = 0, k = 0;
  const T* targets = nullptr;       // (n, k), or
  const int32_t* labels = nullptr;  // (n,); neither: no loss
  T scale = 1;
  T* dz = nullptr;
  double* row_loss = nullptr;
  double* row_correct = nullptr;
  const int* stop = nullptr;
};

// The end of a batch: segment sums from the partials, row sums, then finish_batch.
struct FinishArgs {
  EpochState* state = nullptr;
  const double* partials = nullptr;
  SegmentPlan plan;
  double* seg_sq = nullptr;  // scratch, one per segment
  const double* row_loss = nullptr;
  const double* row_correct = nullptr;
  int n = 0;
  double* norm_sum = nullptr;
  double* norm_max = nullptr;
};

// The update of n parameters: plans[state->current] and the state's transforms, or without a
// state plans[0] and `transform`.
template <class Rule, class T>
struct UpdateArgs {
  const BatchPlan<Rule>* plans = nullptr;
  const EpochState* state = nullptr;
  Transform transform;
  T* p = nullptr;
  T* g = nullptr;
  std::size_t n = 0;
};

// A rule that changes nothing: the transforms alone (line search, clipping and noise by hand).
template <class T>
struct NoRule {
  FASTBP_HD FASTBP_INLINE void update(T*, const T*, std::size_t) const {}
};

}  // namespace device
}  // namespace fastbp
