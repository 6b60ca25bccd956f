// The network on a device: the CPU core's Network (network.hpp) with its buffers in device
// memory, written once over an executor (executor.hpp): CudaExec on a GPU, HostExec to check
// the same code on the host. Host code only: it never touches device memory except through
// the executor.
//
// Working memory, per layer l of a batch of up to capacity rows (device_ops.hpp explains the
// column of ones): in_[l] (capacity x padded_ld(n_l)) the layer's input (in_[0] the batch,
// in_[l] for l > 0 the activations of layer l - 1), z_[l] and dz_[l] (capacity x n_{l+1}),
// out_ (capacity x n_out) the output activations; targets of the batch; per-row loss sums.
//
// Invariant: no work is in flight between two calls: every public operation ends with the
// stream synchronised (the epoch once, at its end), so buffers can be read, freed or reused by
// anyone afterwards.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../layer_stats.hpp"
#include "../layout.hpp"
#include "executor.hpp"

namespace fastbp {
namespace device {

// n entries of T in device memory of one device, freed with it.
template <class T, class Exec>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::size_t n, int device)
      : p_(static_cast<T*>(Exec::allocate(n * sizeof(T), device))), n_(n), device_(device) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), device_(o.device_) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Exec::release(p_, device_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
      device_ = o.device_;
    }
    return *this;
  }
  ~DeviceBuffer() { Exec::release(p_, device_); }
  T* get() const { return p_; }
  std::size_t size() const { return n_; }
  // At least n entries (contents lost when it grows).
  void reserve(std::size_t n, int device) {
    if (n > n_ || device != device_) *this = DeviceBuffer(std::max(n, n_), device);
  }

 private:
  T* p_ = nullptr;
  std::size_t n_ = 0;
  int device_ = 0;
};

// Rows of input values (n, n_in), or targets, in host or device memory.
template <class T>
struct Rows {
  const T* data = nullptr;
  bool on_device = false;
};

template <class T>
struct Targets {
  const T* dense = nullptr;         // (n, n_out), or
  const int32_t* labels = nullptr;  // (n,)
  bool on_device = false;
  bool empty() const { return !dense && !labels; }
};

// Which kernels a layer's products use: cuBLAS, the fused small-layer kernels (one thread per
// output entry, bias and activation in the same kernel), or the choice by size.
enum class LayerPath { automatic, blas, fused };

template <class T, class Exec>
class DeviceNetwork {
 public:
  // Products of at most this many multiply-adds (and no side above kFusedMaxSide) take the fused
  // kernels: for small layers a cuBLAS call plus an activation kernel cost two launches for
  // work that is all latency.
  static constexpr double kFusedMaxMacs = double(1 << 20);
  static constexpr int kFusedMaxSide = 1024;
  // Rows per pass when no gradient is needed (forward, evaluate, activation statistics).
  static constexpr int kChunk = 8192;

  DeviceNetwork(std::vector<int> sizes, std::vector<Act> hidden, Act out, Loss loss, int device,
                bool allow_tf32)
      : sizes_(std::move(sizes)),
        acts_(std::move(hidden)),
        loss_(loss),
        device_(device),
        exec_(device),
        allow_tf32_(allow_tf32) {
    Layout layout = check_layout(sizes_, acts_, out, loss,
                                 std::numeric_limits<std::ptrdiff_t>::max() / sizeof(T));
    acts_ = std::move(layout.acts);
    w_off_ = std::move(layout.w_off);
    n_params_ = layout.n_params;
    const std::size_t total = n_params_;
    exec_.set_tf32(allow_tf32_);
    params_ = Buffer<T>(total, device_);
    grads_ = Buffer<T>(total, device_);
    exec_.zero(params_.get(), total * sizeof(T));
    exec_.zero(grads_.get(), total * sizeof(T));
    make_segment_plan();
    const char* graphs = std::getenv("FASTBP_CUDA_GRAPHS");
    use_graphs_ = !(graphs && std::string(graphs) == "0");
    exec_.synchronize();
  }

  // ---- structure, as Network ----
  int n_layers() const { return int(sizes_.size()) - 1; }
  int n_in() const { return sizes_.front(); }
  int n_out() const { return sizes_.back(); }
  const std::vector<int>& sizes() const { return sizes_; }
  Loss loss() const { return loss_; }
  Act activation(int l) const { return acts_[l]; }
  std::size_t n_params() const { return n_params_; }
  std::size_t w_offset(int l) const { return w_off_[l]; }
  std::size_t b_offset(int l) const { return w_off_[l] + w_size(l); }
  std::size_t w_size(int l) const { return std::size_t(sizes_[l]) * sizes_[l + 1]; }
  int device() const { return device_; }
  Exec& exec() { return exec_; }
  std::timed_mutex& mutex() { return mutex_; }
  T* params() { return params_.get(); }
  T* grads() { return grads_.get(); }

  bool allow_tf32() const { return allow_tf32_; }
  void set_allow_tf32(bool allow) {
    exec_.activate();
    exec_.set_tf32(allow);
    allow_tf32_ = allow;
  }
  bool use_graphs() const { return use_graphs_; }
  void set_use_graphs(bool use) { use_graphs_ = use; }
  LayerPath layer_path() const { return path_; }
  void set_layer_path(LayerPath p) { path_ = p; }
  // Whether layer l's products on n rows take the fused kernels.
  bool fused_layer(int l, int n) const {
    if (path_ != LayerPath::automatic) return path_ == LayerPath::fused;
    const int in = sizes_[l], out = sizes_[l + 1];
    return double(n) * (in + 1) * out <= kFusedMaxMacs && in <= kFusedMaxSide &&
           out <= kFusedMaxSide;
  }

  // ---- parameters and gradients, as host copies ----
  void get_params(T* host) { download(host, params(), n_params_); }
  void get_grads(T* host) { download(host, grads(), n_params_); }
  void set_params(const T* host) { upload(params(), host, n_params_); }
  void set_grads(const T* host) { upload(grads(), host, n_params_); }
  void copy_params_to(T* dev) {
    exec_.activate();
    exec_.copy(dev, params(), n_params_ * sizeof(T));
    exec_.synchronize();
  }
  void copy_params_from(const T* dev) {
    exec_.activate();
    exec_.copy(params(), dev, n_params_ * sizeof(T));
    exec_.synchronize();
  }

  // ---- computations, as Network ----
  void forward(Rows<T> X, long n, T* host_out) {
    exec_.activate();
    const int k = n_out();
    for (long r = 0; r < n; r += kChunk) {
      const int m = int(std::min<long>(kChunk, n - r));
      reserve(m);
      stage_inputs(X, r, m);
      forward_batch(m, nullptr);
      OutputArgs<T> o = output_args(m, nullptr);
      exec_.output(o);
      exec_.download(host_out + r * k, out_.get(), sizeof(T) * std::size_t(m) * k);
    }
  }

  LossSums backward(Rows<T> X, Targets<T> y, int n) {
    exec_.activate();
    reserve(n);
    stage_inputs(X, 0, n);
    const Targets<T> t = stage_targets(y, 0, n);
    forward_batch(n, nullptr);
    output_batch(t, n, true, nullptr);
    backward_batch(n, nullptr);
    return row_sums(n);
  }

  LossSums evaluate(Rows<T> X, Targets<T> y, long n) {
    exec_.activate();
    LossSums total;
    for (long r = 0; r < n; r += kChunk) {
      const int m = int(std::min<long>(kChunk, n - r));
      reserve(m);
      stage_inputs(X, r, m);
      const Targets<T> t = stage_targets(y, r, m);
      forward_batch(m, nullptr);
      output_batch(t, m, false, nullptr);
      const LossSums s = row_sums(m);
      total.loss += s.loss;
      total.correct += s.correct;
    }
    return total;
  }

  // As Network::layer_stats: the forward pass runs here; each chunk's pre-activations and
  // activations come to the host and gather there (layer_stats.hpp), so that both backends
  // report the same statistics from one implementation. Trainer.fit asks for them once an
  // epoch on a sample of 512 rows: a few megabytes over the bus even for wide layers.
  LayerStats layer_stats(Rows<T> X, long n) {
    exec_.activate();
    const int L = n_layers();
    LayerStatsBuilder stats(std::vector<int>(sizes_.begin() + 1, sizes_.end()), acts_);
    std::vector<T> z, a, padded;
    for (long r = 0; r < n; r += kChunk) {
      const int m = int(std::min<long>(kChunk, n - r));
      reserve(m);
      stage_inputs(X, r, m);
      forward_batch(m, nullptr);
      exec_.output(output_args(m, nullptr));
      for (int l = 0; l < L; ++l) {
        const std::size_t w = std::size_t(sizes_[l + 1]), ld = std::size_t(act_ld(l));
        z.resize(std::size_t(m) * w);
        a.resize(std::size_t(m) * w);
        padded.resize(std::size_t(m) * ld);
        download(z.data(), z_[l].get(), z.size());
        download(padded.data(), act_out(l), padded.size());
        for (int i = 0; i < m; ++i)  // drop the padding columns (device_ops.hpp)
          std::copy_n(padded.data() + i * ld, w, a.data() + i * w);
        stats.add(l, z.data(), a.data(), m);
      }
    }
    exec_.synchronize();
    return stats.finish(n);
  }

  // Per weight layer, the L2 norm of its weight gradient.
  void weight_grad_norms(double* out) {
    exec_.activate();
    const std::vector<double> sq = segment_totals(grads(), nullptr, nullptr);
    for (int l = 0; l < n_layers(); ++l) out[l] = std::sqrt(sq[2 * l]);
  }

  // The sum of squares of the whole gradient.
  double grad_squares() {
    double total = 0;
    for (double s : segment_totals(grads(), nullptr, nullptr)) total += s;
    return total;
  }

  double clip_grad_norm(double max_norm) {
    exec_.activate();
    const double norm = std::sqrt(grad_squares());
    Transform tr;
    tr.clip_coef = clip_coefficient(norm, max_norm);
    if (tr.clip_coef < 1) transform_grads(tr, 0, 0, 0, 0);
    return norm;
  }

  void clip_grad_value(double value) {
    exec_.activate();
    Transform tr;
    tr.clip_value = value;
    transform_grads(tr, 0, 0, 0, 0);
  }

  void add_gradient_noise(double eta, double gamma, uint64_t seed, int64_t t) {
    exec_.activate();
    Transform tr;
    tr.noise = true;
    transform_grads(tr, eta, gamma, seed, t);
  }

  bool params_finite() {
    exec_.activate();
    exec_.zero(flag_.get(), sizeof(int));
    exec_.flag_nonfinite(params(), n_params_, flag_.get());
    int flag = 0;
    download(&flag, flag_.get(), 1);
    return flag == 0;
  }

  // Per weight layer: ||W - W0|| / ||W0|| against the device copy p0 (norm of the change where
  // W0 is zero), as the CPU epoch reports.
  std::vector<double> update_ratios(const T* p0) {
    std::vector<double> base;
    const std::vector<double> diff = segment_totals(params(), p0, &base);
    std::vector<double> ratio(n_layers());
    for (int l = 0; l < n_layers(); ++l)
      ratio[l] = base[2 * l] > 0 ? std::sqrt(diff[2 * l] / base[2 * l]) : std::sqrt(diff[2 * l]);
    return ratio;
  }

  // ---- the pieces of a batch, for the epoch loop (device_train.hpp) ----
  void reserve(int n) {
    if (n <= capacity_) return;
    const int L = n_layers();
    in_.resize(L);
    z_.resize(L);
    dz_.resize(L);
    for (int l = 0; l < L; ++l) {
      const int ld = padded_ld(sizes_[l]);
      in_[l] = Buffer<T>(std::size_t(n) * ld, device_);
      exec_.fill_inputs(in_[l].get(), n, ld, sizes_[l]);
      z_[l] = Buffer<T>(std::size_t(n) * sizes_[l + 1], device_);
      dz_[l] = Buffer<T>(std::size_t(n) * sizes_[l + 1], device_);
    }
    out_ = Buffer<T>(std::size_t(n) * n_out(), device_);
    y_ = Buffer<T>(std::size_t(n) * n_out(), device_);
    labels_ = Buffer<int32_t>(std::size_t(n), device_);
    row_loss_ = Buffer<double>(std::size_t(n), device_);
    row_correct_ = Buffer<double>(std::size_t(n), device_);
    capacity_ = n;
    ++generation_;
  }
  // Changes whenever a working buffer moves: a captured graph of an older one is stale.
  long generation() const { return generation_; }

  T* input() { return in_[0].get(); }
  int input_ld() const { return padded_ld(n_in()); }
  T* batch_targets() { return y_.get(); }
  int32_t* batch_labels() { return labels_.get(); }
  double* row_loss() { return row_loss_.get(); }
  double* row_correct() { return row_correct_.get(); }
  const SegmentPlan& segment_plan() const { return seg_plan_; }
  double* partials() { return partials_.get(); }
  double* segment_scratch() { return seg_sq_.get(); }

  // Rows [first, first + m) of X into the input buffer (the ones column stays).
  void stage_inputs(Rows<T> X, long first, int m) {
    const std::size_t row = sizeof(T) * std::size_t(n_in());
    const std::size_t pitch = sizeof(T) * std::size_t(input_ld());
    const T* src = X.data + std::size_t(first) * n_in();
    if (X.on_device)
      exec_.copy_rows(input(), pitch, src, row, row, std::size_t(m));
    else
      exec_.upload_rows(input(), pitch, src, row, row, std::size_t(m));
  }

  // The targets of rows [first, first + m): device targets in place, host ones uploaded.
  Targets<T> stage_targets(Targets<T> y, long first, int m) {
    Targets<T> t;
    t.on_device = true;
    const int k = n_out();
    if (y.labels) {
      t.labels = y.labels + first;
      if (!y.on_device) {
        exec_.upload(labels_.get(), t.labels, sizeof(int32_t) * std::size_t(m));
        t.labels = labels_.get();
      }
    } else if (y.dense) {
      t.dense = y.dense + std::size_t(first) * k;
      if (!y.on_device) {
        exec_.upload(y_.get(), t.dense, sizeof(T) * std::size_t(m) * k);
        t.dense = y_.get();
      }
    }
    return t;
  }

  // z and activations of every layer for the n rows of the input buffer (the output layer's
  // activations are the output kernel's).
  void forward_batch(int n, const int* stop) {
    const int L = n_layers();
    for (int l = 0; l < L; ++l) {
      const int in = sizes_[l], out = sizes_[l + 1];
      const bool hidden = l + 1 < L;
      if (fused_layer(l, n)) {
        DenseForward<T> f;
        f.act = hidden ? acts_[l] : Act::identity;
        f.in = in_[l].get();
        f.ld_in = padded_ld(in);
        f.wb = params() + w_off_[l];
        f.n = n;
        f.n_in = in;
        f.n_out = out;
        f.z = z_[l].get();
        f.a = hidden ? in_[l + 1].get() : nullptr;
        f.lda = hidden ? padded_ld(out) : 0;
        f.stop = stop;
        exec_.dense_forward(f);
      } else {
        exec_.gemm(false, false, n, out, in + 1, T(1), in_[l].get(), padded_ld(in),
                   params() + w_off_[l], out, T(0), z_[l].get(), out);
        if (hidden)
          exec_.activation_forward(acts_[l], z_[l].get(), n, out, in_[l + 1].get(), padded_ld(out),
                                   stop);
      }
    }
  }

  OutputArgs<T> output_args(int n, const int* stop) {
    OutputArgs<T> o;
    o.loss = loss_;
    o.act = acts_.back();
    o.z = z_.back().get();
    o.a = out_.get();
    o.n = n;
    o.k = n_out();
    o.stop = stop;
    return o;
  }

  // The output activations, each row's loss and correct count, and with gradient dZ of the
  // output layer for the batch-mean loss (scale 1/n, as the CPU core).
  void output_batch(Targets<T> t, int n, bool gradient, const int* stop) {
    OutputArgs<T> o = output_args(n, stop);
    o.targets = t.dense;
    o.labels = t.labels;
    o.scale = T(1) / T(n);
    o.dz = gradient ? dz_.back().get() : nullptr;
    o.row_loss = row_loss_.get();
    o.row_correct = row_correct_.get();
    exec_.output(o);
  }

  // Gradients of every layer from dZ of the output layer, last to first.
  void backward_batch(int n, const int* stop) {
    for (int l = n_layers() - 1; l >= 0; --l) {
      const int in = sizes_[l], out = sizes_[l + 1];
      T* gwb = grads() + w_off_[l];
      if (fused_layer(l, n)) {
        DenseBackward<T> b;
        b.in = in_[l].get();
        b.ld_in = padded_ld(in);
        b.wb = params() + w_off_[l];
        b.dz = dz_[l].get();
        b.n = n;
        b.n_in = in;
        b.n_out = out;
        b.gwb = gwb;
        if (l > 0) {
          b.act_prev = acts_[l - 1];
          b.z_prev = z_[l - 1].get();
          b.dprev = dz_[l - 1].get();
        }
        b.stop = stop;
        exec_.dense_backward(b);
      } else {
        exec_.gemm(true, false, in + 1, out, n, T(1), in_[l].get(), padded_ld(in), dz_[l].get(),
                   out, T(0), gwb, out);
        if (l > 0) {
          exec_.gemm(false, true, n, in, out, T(1), dz_[l].get(), out, params() + w_off_[l], out,
                     T(0), dz_[l - 1].get(), in);
          exec_.activation_backward(acts_[l - 1], z_[l - 1].get(), in_[l].get(), padded_ld(in),
                                    dz_[l - 1].get(), n, in, stop);
        }
      }
    }
  }

  // The loss and correct sums of the last n rows, summed in row order on the host.
  LossSums row_sums(int n) {
    std::vector<double> loss(n), correct(n);
    download(loss.data(), row_loss_.get(), std::size_t(n));
    download(correct.data(), row_correct_.get(), std::size_t(n));
    LossSums s;
    for (int i = 0; i < n; ++i) {
      s.loss += loss[i];
      s.correct += correct[i];
    }
    return s;
  }

  // Per segment (W_l, b_l of each layer) the sum of x^2, or with x0 the sum of (x - x0)^2
  // (and of x0^2 into *base): partial sums on the device, totals on the host in block order.
  std::vector<double> segment_totals(const T* x, const T* x0, std::vector<double>* base) {
    const SegmentPlan& plan = seg_plan_;
    exec_.segment_sums(x, x0, plan, partials_.get(), nullptr);
    std::vector<double> partials(std::size_t(plan.n_blocks) * (x0 ? 2 : 1));
    download(partials.data(), partials_.get(), partials.size());
    std::vector<double> out(plan.n_segments, 0.0);
    if (base) base->assign(plan.n_segments, 0.0);
    for (int s = 0; s < plan.n_segments; ++s)
      for (int b = seg_first_host_[s]; b < seg_first_host_[s + 1]; ++b) {
        out[s] += partials[b];
        if (base) (*base)[s] += partials[plan.n_blocks + b];
      }
    return out;
  }

  // Host copies through the stream (complete when they return).
  template <class U>
  void download(U* host, const U* dev, std::size_t n) {
    exec_.download(host, dev, n * sizeof(U));
  }
  template <class U>
  void upload(U* dev, const U* host, std::size_t n) {
    exec_.activate();
    exec_.upload(dev, host, n * sizeof(U));
    exec_.synchronize();
  }

 private:
  template <class U>
  using Buffer = DeviceBuffer<U, Exec>;

  // Layer l's activations: the next layer's input, or for the last layer the outputs.
  T* act_out(int l) { return l + 1 < n_layers() ? in_[l + 1].get() : out_.get(); }
  int act_ld(int l) const { return l + 1 < n_layers() ? padded_ld(sizes_[l + 1]) : n_out(); }

  // g transformed in place (scaled, clipped by value or given noise), without an update.
  void transform_grads(const Transform& tr, double eta, double gamma, uint64_t seed, int64_t t) {
    BatchPlan<NoRule<T>> plan{NoRule<T>{}, CounterRng(seed, Stream::gradient_noise, uint64_t(t)),
                              tr.noise ? noise_std(eta, gamma, t) : 0.0};
    Buffer<BatchPlan<NoRule<T>>> plans(1, device_);
    exec_.upload(plans.get(), &plan, sizeof plan);
    UpdateArgs<NoRule<T>, T> u;
    u.plans = plans.get();
    u.transform = tr;
    u.p = params();
    u.g = grads();
    u.n = n_params_;
    exec_.update(u);
    exec_.synchronize();
  }

  // Blocks of at most kSegmentBlock entries over each layer's W and b (2 segments per layer).
  static constexpr long long kSegmentBlock = 16384;
  void make_segment_plan() {
    std::vector<long long> begin, end;
    seg_first_host_.clear();
    for (int l = 0; l < n_layers(); ++l)
      for (int part = 0; part < 2; ++part) {
        const long long b0 = part == 0 ? w_offset(l) : b_offset(l);
        const long long e0 = part == 0 ? b_offset(l) : b_offset(l) + sizes_[l + 1];
        seg_first_host_.push_back(int(begin.size()));
        for (long long s = b0; s < e0; s += kSegmentBlock) {
          begin.push_back(s);
          end.push_back(std::min(e0, s + kSegmentBlock));
        }
      }
    seg_first_host_.push_back(int(begin.size()));
    const int nb = int(begin.size()), ns = 2 * n_layers();
    seg_begin_ = Buffer<long long>(nb, device_);
    seg_end_ = Buffer<long long>(nb, device_);
    seg_first_ = Buffer<int>(ns + 1, device_);
    exec_.upload(seg_begin_.get(), begin.data(), sizeof(long long) * nb);
    exec_.upload(seg_end_.get(), end.data(), sizeof(long long) * nb);
    exec_.upload(seg_first_.get(), seg_first_host_.data(), sizeof(int) * (ns + 1));
    partials_ = Buffer<double>(2 * std::size_t(nb), device_);
    seg_sq_ = Buffer<double>(ns, device_);
    flag_ = Buffer<int>(1, device_);
    seg_plan_.n_blocks = nb;
    seg_plan_.n_segments = ns;
    seg_plan_.begin = seg_begin_.get();
    seg_plan_.end = seg_end_.get();
    seg_plan_.first = seg_first_.get();
  }

  std::vector<int> sizes_;
  std::vector<Act> acts_;  // one per weight layer; the last is the output activation
  Loss loss_;
  int device_;
  Exec exec_;
  bool allow_tf32_ = false;
  bool use_graphs_ = true;
  LayerPath path_ = LayerPath::automatic;
  std::vector<std::size_t> w_off_;
  std::size_t n_params_ = 0;
  Buffer<T> params_, grads_;
  int capacity_ = 0;
  long generation_ = 0;
  std::vector<Buffer<T>> in_, z_, dz_;
  Buffer<T> out_, y_;
  Buffer<int32_t> labels_;
  Buffer<double> row_loss_, row_correct_;
  SegmentPlan seg_plan_;
  std::vector<int> seg_first_host_;
  Buffer<long long> seg_begin_, seg_end_;
  Buffer<int> seg_first_;
  Buffer<double> partials_, seg_sq_;
  Buffer<int> flag_;
  std::timed_mutex mutex_;
};

}  // namespace device
}  // namespace fastbp
