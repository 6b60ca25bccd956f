// The CUDA executor's kernels: each is a thin loop that hands its entries (or rows) to the
// per-thread functions of device_ops.hpp, which the host executor runs too. The reductions are
// deterministic (fixed block partition, fixed tree order, no atomics): the same seed gives the
// same bits on the same GPU, captured in a graph or not.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda_check.cuh"
#include "cuda_exec.hpp"

namespace fastbp {
namespace device {

namespace {

constexpr int kThreads = 256;  // threads per block of the elementwise kernels
constexpr int kReduce = 256;   // threads per block of the reductions (a power of two)

cudaStream_t stream_of(const CudaExec& e) { return static_cast<cudaStream_t>(e.stream()); }

__device__ __forceinline__ bool stopped(const int* stop) { return stop && *stop; }

// The sum of every thread's v, in the same order on every run; all threads get it.
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = kReduce / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();
  return total;
}

// The kernels over (rows x cols) entries index them in 32 bits (64-bit division is slow on a
// GPU): their launchers check that the entries fit.
constexpr std::size_t kMaxEntries = std::size_t(1) << 31;
void check_entries(std::size_t n, const char* what) {
  if (n >= kMaxEntries)
    throw std::invalid_argument(std::string(what) + ": more than 2^31 entries in one launch");
}

// A grid-stride loop over [0, total) in 32 bits.
#define FASTBP_GRID_LOOP(e, total)                                              \
  for (unsigned e = blockIdx.x * blockDim.x + threadIdx.x; e < unsigned(total); \
       e += gridDim.x * blockDim.x)

// f(kind) for the activations a hidden layer may have.
template <class F>
void with_hidden_activation(Act act, F&& f) {
  with_activation(act, [&](auto kind) {
    if constexpr (decltype(kind)::hidden) f(kind);
  });
}

// ---- kernels ----

template <class A, class T>
__global__ void activation_forward_kernel(const T* z, int n, int cols, T* a, int lda,
                                          const int* stop) {
  if (stopped(stop)) return;
  FASTBP_GRID_LOOP(e, unsigned(n) * unsigned(cols)) {
    const unsigned i = e / unsigned(cols), j = e - i * unsigned(cols);
    a[std::size_t(i) * lda + j] = A::forward(z[e]);
  }
}

template <class A, class T>
__global__ void activation_backward_kernel(const T* z, const T* a, int lda, T* d, int n, int cols,
                                           const int* stop) {
  if (stopped(stop)) return;
  FASTBP_GRID_LOOP(e, unsigned(n) * unsigned(cols)) {
    const unsigned i = e / unsigned(cols), j = e - i * unsigned(cols);
    d[e] *= A::derivative(z[e], a[std::size_t(i) * lda + j]);
  }
}

template <class A, class T>
__global__ void dense_forward_kernel(DenseForward<T> f) {
  if (stopped(f.stop)) return;
  FASTBP_GRID_LOOP(e, unsigned(f.n) * unsigned(f.n_out)) {
    const unsigned i = e / unsigned(f.n_out), j = e - i * unsigned(f.n_out);
    dense_forward_entry<A>(f.in, f.ld_in, f.wb, f.n_in, f.n_out, f.z, f.a, f.lda, int(i), int(j));
  }
}

// Two kinds of entries in one launch: first the weight gradient's (n_in + 1) x n_out, then the
// previous layer's n x n_in input gradient (when there is one). Both read dz only.
template <class A, class T>
__global__ void dense_backward_kernel(DenseBackward<T> b) {
  if (stopped(b.stop)) return;
  const unsigned weights = unsigned(b.n_in + 1) * unsigned(b.n_out);
  const unsigned inputs = b.dprev ? unsigned(b.n) * unsigned(b.n_in) : 0u;
  FASTBP_GRID_LOOP(e, weights + inputs) {
    if (e < weights) {
      const unsigned r = e / unsigned(b.n_out), j = e - r * unsigned(b.n_out);
      weight_grad_entry(b.in, b.ld_in, b.dz, b.n, b.n_out, b.gwb, int(r), int(j));
    } else {
      const unsigned f = e - weights, i = f / unsigned(b.n_in), c = f - i * unsigned(b.n_in);
      input_grad_entry<A>(b.dz, b.wb, b.n_out, b.z_prev, b.in, b.ld_in, b.n_in, b.dprev, int(i),
                          int(c));
    }
  }
}

template <class L, class A, class T>
__global__ void output_kernel(OutputArgs<T> o) {
  if (stopped(o.stop)) return;
  const bool loss = o.targets || o.labels;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < o.n; i += gridDim.x * blockDim.x) {
    const std::size_t r = std::size_t(i) * o.k;
    output_row<L, A>(o.z + r, o.a + r, o.k, o.targets ? o.targets + r : nullptr,
                     o.labels ? o.labels + i : nullptr, o.scale, o.dz ? o.dz + r : nullptr,
                     loss ? o.row_loss + i : nullptr, loss ? o.row_correct + i : nullptr);
  }
}

template <class T>
__global__ void gather_kernel(GatherArgs<T> g) {
  if (stopped(g.stop)) return;
  const long long first = g.state ? g.state->batch * g.batch_size : g.first;
  const int32_t* order = g.order + first;
  const unsigned d = unsigned(g.d), k = unsigned(g.k);
  const unsigned xs = unsigned(g.n) * d;
  const unsigned ys = g.Y ? unsigned(g.n) * k : 0u;
  const unsigned ls = g.labels ? unsigned(g.n) : 0u;
  FASTBP_GRID_LOOP(e, xs + ys + ls) {
    if (e < xs) {
      const unsigned i = e / d, j = e - i * d;
      g.x_out[std::size_t(i) * g.ld_x + j] = g.X[std::size_t(order[i]) * d + j];
    } else if (e < xs + ys) {
      const unsigned f = e - xs, i = f / k, j = f - i * k;
      g.y_out[f] = g.Y[std::size_t(order[i]) * k + j];
    } else {
      const unsigned i = e - xs - ys;
      g.labels_out[i] = g.labels[order[i]];
    }
  }
}

template <class T>
__global__ void fill_inputs_kernel(T* buf, int rows, int ld, int n_in) {
  FASTBP_GRID_LOOP(e, unsigned(rows) * unsigned(ld)) {
    buf[e] = int(e % unsigned(ld)) == n_in ? T(1) : T(0);
  }
}

// One block per planned block of the buffer.
template <class T>
__global__ void segment_sums_kernel(const T* x, const T* x0, SegmentPlan plan, double* partials,
                                    const int* stop) {
  __shared__ double shared[kReduce];
  if (stopped(stop)) return;
  const int b = blockIdx.x;
  double s = 0, s0 = 0;
  for (long long i = plan.begin[b] + threadIdx.x; i < plan.end[b]; i += kReduce)
    add_segment_terms(x, x0, i, s, s0);
  s = block_sum(s, shared);
  if (x0) s0 = block_sum(s0, shared);
  if (threadIdx.x == 0) {
    partials[b] = s;
    if (x0) partials[plan.n_blocks + b] = s0;
  }
}

// One block: the segments' sums (one thread per segment, its blocks in order), the rows' loss
// sums, then thread 0 finishes the batch.
__global__ void finish_kernel(FinishArgs f) {
  __shared__ double shared[kReduce];
  if (f.state->stop) return;
  for (int s = threadIdx.x; s < f.plan.n_segments; s += kReduce) {
    double sum = 0;
    for (int b = f.plan.first[s]; b < f.plan.first[s + 1]; ++b) sum += f.partials[b];
    f.seg_sq[s] = sum;
  }
  double loss = 0, correct = 0;
  for (int i = threadIdx.x; i < f.n; i += kReduce) {
    loss += f.row_loss[i];
    correct += f.row_correct[i];
  }
  loss = block_sum(loss, shared);
  correct = block_sum(correct, shared);  // block_sum's barriers also publish seg_sq
  if (threadIdx.x == 0)
    finish_batch(*f.state, f.seg_sq, loss, correct, f.n, f.norm_sum, f.norm_max);
}

template <class Rule, class T>
__global__ void update_kernel(UpdateArgs<Rule, T> u) {
  if (u.state && u.state->stop) return;
  const BatchPlan<Rule> plan = u.plans[u.state ? u.state->current : 0];
  Transform tr = u.transform;
  if (u.state) {
    tr.clip_coef = u.state->clip_coef;
    tr.clip_value = u.state->clip_value;
    tr.noise = u.state->noise != 0;
  }
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < u.n;
       i += std::size_t(gridDim.x) * blockDim.x)
    update_entry(plan, tr, u.p, u.g, i);
}

template <class T>
__global__ void step_from_kernel(T* p, const T* p0, const T* g, T t, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    p[i] = p0[i] - t * g[i];
}

template <class T>
__global__ void flag_nonfinite_kernel(const T* x, std::size_t n, int* flag) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    if (!(x[i] - x[i] == T(0))) *flag = 1;  // every writer writes 1: no race on the value
}

template <class T>
__global__ void fill_random_kernel(T* x, std::size_t n, uint64_t seed) {
  const CounterRng rng(seed, Stream::gradient_noise, 0);
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    x[i] = T(rng.uniform(i) - 0.5);
}

}  // namespace

// ---- launchers ----

template <class T>
void CudaExec::activation_forward(Act act, const T* z, int n, int cols, T* a, int lda,
                                  const int* stop) {
  if (n <= 0 || cols <= 0) return;
  check_entries(std::size_t(n) * cols, "activation_forward");
  with_hidden_activation(act, [&](auto kind) {
    using A = decltype(kind);
    activation_forward_kernel<A, T>
        <<<grid_for(std::size_t(n) * cols, kThreads), kThreads, 0, stream_of(*this)>>>(
            z, n, cols, a, lda, stop);
  });
  check_launch("activation_forward_kernel");
}

template <class T>
void CudaExec::activation_backward(Act act, const T* z, const T* a, int lda, T* d, int n, int cols,
                                   const int* stop) {
  if (n <= 0 || cols <= 0 || act == Act::identity) return;
  check_entries(std::size_t(n) * cols, "activation_backward");
  with_hidden_activation(act, [&](auto kind) {
    using A = decltype(kind);
    activation_backward_kernel<A, T>
        <<<grid_for(std::size_t(n) * cols, kThreads), kThreads, 0, stream_of(*this)>>>(
            z, a, lda, d, n, cols, stop);
  });
  check_launch("activation_backward_kernel");
}

template <class T>
void CudaExec::dense_forward(const DenseForward<T>& f) {
  if (f.n <= 0) return;
  check_entries(std::size_t(f.n) * f.n_out, "dense_forward");
  with_hidden_activation(f.act, [&](auto kind) {
    using A = decltype(kind);
    dense_forward_kernel<A, T>
        <<<grid_for(std::size_t(f.n) * f.n_out, kThreads), kThreads, 0, stream_of(*this)>>>(f);
  });
  check_launch("dense_forward_kernel");
}

template <class T>
void CudaExec::dense_backward(const DenseBackward<T>& b) {
  if (b.n <= 0) return;
  const std::size_t total =
      std::size_t(b.n_in + 1) * b.n_out + (b.dprev ? std::size_t(b.n) * b.n_in : 0);
  check_entries(total, "dense_backward");
  with_hidden_activation(b.act_prev, [&](auto kind) {
    using A = decltype(kind);
    dense_backward_kernel<A, T><<<grid_for(total, kThreads), kThreads, 0, stream_of(*this)>>>(b);
  });
  check_launch("dense_backward_kernel");
}

template <class T>
void CudaExec::output(const OutputArgs<T>& o) {
  if (o.n <= 0) return;
  with_loss(o.loss, [&](auto lk) {
    using L = decltype(lk);
    with_activation(o.act, [&](auto ak) {
      using A = decltype(ak);
      if constexpr (loss_allows<L, A>())
        output_kernel<L, A, T><<<grid_for(std::size_t(o.n), 128), 128, 0, stream_of(*this)>>>(o);
    });
  });
  check_launch("output_kernel");
}

template <class T>
void CudaExec::gather(const GatherArgs<T>& g) {
  if (g.n <= 0) return;
  const std::size_t total =
      std::size_t(g.n) * (std::size_t(g.d) + (g.Y ? g.k : 0)) + (g.labels ? std::size_t(g.n) : 0);
  gather_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream_of(*this)>>>(g);
  check_launch("gather_kernel");
}

template <class T>
void CudaExec::fill_inputs(T* buf, int rows, int ld, int n_in) {
  if (rows <= 0) return;
  check_entries(std::size_t(rows) * ld, "fill_inputs");
  fill_inputs_kernel<T>
      <<<grid_for(std::size_t(rows) * ld, kThreads), kThreads, 0, stream_of(*this)>>>(buf, rows, ld,
                                                                                      n_in);
  check_launch("fill_inputs_kernel");
}

template <class T>
void CudaExec::segment_sums(const T* x, const T* x0, const SegmentPlan& plan, double* partials,
                            const int* stop) {
  if (plan.n_blocks <= 0) return;
  segment_sums_kernel<T>
      <<<plan.n_blocks, kReduce, 0, stream_of(*this)>>>(x, x0, plan, partials, stop);
  check_launch("segment_sums_kernel");
}

void CudaExec::finish(const FinishArgs& f) {
  finish_kernel<<<1, kReduce, 0, stream_of(*this)>>>(f);
  check_launch("finish_kernel");
}

template <class Rule, class T>
void CudaExec::update(const UpdateArgs<Rule, T>& u) {
  if (u.n == 0) return;
  update_kernel<Rule, T><<<grid_for(u.n, kThreads), kThreads, 0, stream_of(*this)>>>(u);
  check_launch("update_kernel");
}

template <class T>
void CudaExec::step_from(T* p, const T* p0, const T* g, T t, std::size_t n) {
  if (n == 0) return;
  step_from_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream_of(*this)>>>(p, p0, g, t, n);
  check_launch("step_from_kernel");
}

template <class T>
void CudaExec::flag_nonfinite(const T* x, std::size_t n, int* flag) {
  if (n == 0) return;
  flag_nonfinite_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream_of(*this)>>>(x, n, flag);
  check_launch("flag_nonfinite_kernel");
}

double gemm_gflops(int device, int n, int reps, bool float64, bool tf32) {
  CudaExec exec(device);
  exec.set_tf32(tf32 && !float64);
  const std::size_t count = std::size_t(n) * n, bytes = count * (float64 ? 8 : 4);
  struct Buffer {
    void* p;
    int device;
    ~Buffer() { CudaExec::release(p, device); }
  } a{CudaExec::allocate(bytes, device), device}, b{CudaExec::allocate(bytes, device), device},
      c{CudaExec::allocate(bytes, device), device};
  cudaStream_t stream = stream_of(exec);
  const int grid = exec.grid_for(count, kThreads);
  auto product = [&] {
    if (float64)
      exec.gemm(false, false, n, n, n, 1.0, static_cast<const double*>(a.p), n,
                static_cast<const double*>(b.p), n, 0.0, static_cast<double*>(c.p), n);
    else
      exec.gemm(false, false, n, n, n, 1.0f, static_cast<const float*>(a.p), n,
                static_cast<const float*>(b.p), n, 0.0f, static_cast<float*>(c.p), n);
  };
  if (float64) {
    fill_random_kernel<double><<<grid, kThreads, 0, stream>>>(static_cast<double*>(a.p), count, 1);
    fill_random_kernel<double><<<grid, kThreads, 0, stream>>>(static_cast<double*>(b.p), count, 2);
  } else {
    fill_random_kernel<float><<<grid, kThreads, 0, stream>>>(static_cast<float*>(a.p), count, 1);
    fill_random_kernel<float><<<grid, kThreads, 0, stream>>>(static_cast<float*>(b.p), count, 2);
  }
  check_launch("fill_random_kernel");
  product();  // warm-up: cuBLAS picks and loads its kernel
  exec.synchronize();
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  float best_ms = 0;
  for (int r = 0; r < reps; ++r) {
    check(cudaEventRecord(start, stream), "cudaEventRecord");
    product();
    check(cudaEventRecord(stop, stream), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    if (r == 0 || ms < best_ms) best_ms = ms;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * double(n) * n * n / (double(best_ms) * 1e-3) / 1e9;
}

// ---- instantiations ----

#define FASTBP_EXEC_INSTANTIATE(T)                                                             \
  template void CudaExec::activation_forward<T>(Act, const T*, int, int, T*, int, const int*); \
  template void CudaExec::activation_backward<T>(Act, const T*, const T*, int, T*, int, int,   \
                                                 const int*);                                  \
  template void CudaExec::dense_forward<T>(const DenseForward<T>&);                            \
  template void CudaExec::dense_backward<T>(const DenseBackward<T>&);                          \
  template void CudaExec::output<T>(const OutputArgs<T>&);                                     \
  template void CudaExec::gather<T>(const GatherArgs<T>&);                                     \
  template void CudaExec::fill_inputs<T>(T*, int, int, int);                                   \
  template void CudaExec::segment_sums<T>(const T*, const T*, const SegmentPlan&, double*,     \
                                          const int*);                                         \
  template void CudaExec::step_from<T>(T*, const T*, const T*, T, std::size_t);                \
  template void CudaExec::flag_nonfinite<T>(const T*, std::size_t, int*);                      \
  template void CudaExec::update<NoRule<T>, T>(const UpdateArgs<NoRule<T>, T>&);

#define FASTBP_EXEC_INSTANTIATE_RULE(id, Rule)                                               \
  template void CudaExec::update<Rule<float>, float>(const UpdateArgs<Rule<float>, float>&); \
  template void CudaExec::update<Rule<double>, double>(const UpdateArgs<Rule<double>, double>&);

FASTBP_EXEC_INSTANTIATE(float)
FASTBP_EXEC_INSTANTIATE(double)
FASTBP_OPTIMIZERS(FASTBP_EXEC_INSTANTIATE_RULE)

}  // namespace device
}  // namespace fastbp
