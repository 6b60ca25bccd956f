// The optimizer state on a device and the epoch loop there: train.hpp's train_epoch with the
// whole epoch on the device.
//
// One epoch: the sample order is drawn on the host (rng.hpp's sample_order, the CPU core's
// permutation) and uploaded, with every batch's plan (the optimizer rule with the constants of
// its step, and the noise of that step: OptimizerState::plan, as the CPU computes them) and
// the epoch's settings (EpochState). Each batch is then gather, forward, output and loss,
// backward, the gradient's per-layer sums of squares, finish (records the batch's statistics,
// detects a non-finite batch, sets the clipping coefficient, advances the batch counter) and
// update (clipping, noise, the rule): kernels and cuBLAS calls in one stream, no host round
// trip. Every full batch is the same sequence reading its batch number from device memory, so
// it is captured once in a CUDA graph and replayed per batch; the last, partial batch runs
// uncaptured. The statistics come back once, when the epoch ends.
//
// LineSearchSGD needs host decisions at every trial step, so its epoch runs uncaptured and
// reads the batch's loss and gradient norm back per batch.
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "../train.hpp"
#include "device_network.hpp"

namespace fastbp {
namespace device {

// OptimizerState with its buffers on the device; the rules (and their prepare and plan) are
// the CPU core's.
template <class T, class Exec>
class DeviceOptimizerState {
 public:
  DeviceOptimizerState(std::size_t n, int device) : n_(n), device_(device) {}
  // Held by every use from Python (as OptimizerState's): an epoch uses the buffers without
  // the GIL, and load_state_dict replaces them.
  std::timed_mutex& mutex() const { return mutex_; }
  std::size_t size() const { return n_; }
  int device() const { return device_; }
  long steps() const { return t_; }

  // For the rules' prepare(): the buffer of that name, allocated as zeros on first use.
  T* buffer(const std::string& name, bool* created = nullptr) {
    auto it = buffers_.find(name);
    if (created) *created = it == buffers_.end();
    if (it != buffers_.end()) return it->second.get();
    DeviceBuffer<T, Exec> b(n_, device_);
    const std::vector<T> zeros(n_, T(0));
    Exec::upload_sync(b.get(), zeros.data(), n_ * sizeof(T), device_);
    return buffers_.emplace(name, std::move(b)).first->second.get();
  }
  void start_momentum() { momentum_fresh_ = true; }

  void prepare(const OptimConfig& c) {
    rule_ = make_rule<T>(c);
    with_rule(rule_, [&](auto& rule) { rule.prepare(*this); });
  }
  // The rule with the constants of the step `ahead` steps after the next (as OptimizerState).
  StepPlan<T> plan(long ahead) const {
    StepPlan<T> p = rule_;
    with_rule(
        p, [&](auto& rule) { rule.plan(double(t_ + 1 + ahead), momentum_fresh_ && ahead == 0); });
    return p;
  }
  void commit(long steps) {
    t_ += steps;
    if (steps > 0) momentum_fresh_ = false;
  }

  // One update of the network's parameters from its gradients.
  void step(DeviceNetwork<T, Exec>& net, const OptimConfig& c) {
    require(net.n_params() == n_, "the optimizer state belongs to another network");
    net.exec().activate();
    prepare(c);
    with_plans(
        net, 1, [](long) { return Noise{}; },
        [&](const auto* plans) {
          using Rule = typename std::remove_pointer_t<decltype(plans)>::rule_type;
          UpdateArgs<Rule, T> u;
          u.plans = plans;
          u.p = net.params();
          u.g = net.grads();
          u.n = n_;
          net.exec().update(u);
          net.exec().synchronize();
        });
    commit(1);
  }

  // The noise of a step: its standard deviation and stream (none by default).
  struct Noise {
    CounterRng rng{0, Stream::gradient_noise, 0};
    double std = 0;
  };
  // The plans of `count` batches (batch b: plan(b) and noise_of(b)) uploaded for the rule
  // prepared, then f(the plans on the device), a `const BatchPlan<Rule>*`.
  template <class NoiseOf, class F>
  void with_plans(DeviceNetwork<T, Exec>& net, long count, NoiseOf&& noise_of, F&& f) {
    with_rule(rule_, [&](const auto& prepared) {
      using Rule = std::decay_t<decltype(prepared)>;
      std::vector<BatchPlan<Rule>> plans;
      plans.reserve(std::size_t(count));
      for (long b = 0; b < count; ++b) {
        const Noise noise = noise_of(b);
        plans.push_back({std::get<Rule>(plan(b)), noise.rng, noise.std});
      }
      const std::size_t bytes = plans.size() * sizeof(BatchPlan<Rule>);
      plans_.reserve(bytes, device_);
      net.exec().upload(plans_.get(), plans.data(), bytes);
      f(reinterpret_cast<const BatchPlan<Rule>*>(plans_.get()));
    });
  }
  const void* plans_buffer() const { return plans_.get(); }
  int rule_index() const { return int(rule_.index()); }

  // Copies of the state, by torch's buffer names.
  OptimizerStateDict<T> state_dict() const {
    OptimizerStateDict<T> d;
    d.step = t_;
    d.momentum_fresh = momentum_fresh_;
    for (const auto& [name, b] : buffers_) {
      LineVector<T> host(n_);
      Exec::download_sync(host.data(), b.get(), n_ * sizeof(T), device_);
      d.buffers[name] = std::move(host);
    }
    return d;
  }

  // Replaces the whole state, or changes nothing and throws (as OptimizerState).
  void load_state_dict(const OptimizerStateDict<T>& d) {
    check_state_dict(d, n_);
    std::map<std::string, DeviceBuffer<T, Exec>> buffers;
    for (const auto& [name, values] : d.buffers) {
      DeviceBuffer<T, Exec> b(n_, device_);
      Exec::upload_sync(b.get(), values.data(), n_ * sizeof(T), device_);
      buffers.emplace(name, std::move(b));
    }
    buffers_ = std::move(buffers);
    t_ = d.step;
    momentum_fresh_ = d.momentum_fresh;
    rule_ = std::monostate();  // its pointers were into the buffers replaced: prepare() again
  }

 private:
  std::size_t n_;
  int device_;
  long t_ = 0;
  bool momentum_fresh_ = false;
  std::map<std::string, DeviceBuffer<T, Exec>> buffers_;
  mutable std::timed_mutex mutex_;
  StepPlan<T> rule_;
  DeviceBuffer<unsigned char, Exec> plans_;
};

// Data uploaded once per fit: (N, d) inputs and (N, k) or (N,) targets on the device.
template <class T>
struct DeviceData {
  const T* X = nullptr;
  long N = 0;
  Targets<T> y;  // on_device
};

// What stays on the device between the epochs of one network: the epoch state, the order, the
// per-layer statistics, and the captured batch with what it was captured for.
template <class T, class Exec>
struct EpochWorkspace {
  DeviceBuffer<EpochState, Exec> state;
  DeviceBuffer<int32_t, Exec> order;
  DeviceBuffer<double, Exec> layer_stats;  // norm sums, then norm maxima
  DeviceBuffer<T, Exec> search_start;      // the parameters before a line search's trials
  typename Exec::Graph graph;
  struct Key {
    const void* X = nullptr;
    const void* Y = nullptr;
    const void* labels = nullptr;
    const void* order = nullptr;
    const void* plans = nullptr;
    long N = 0;
    int batch_size = 0, rule = -1;
    long generation = -1;
    bool tf32 = false;
    int path = -1;
    bool operator==(const Key& o) const {
      return X == o.X && Y == o.Y && labels == o.labels && order == o.order && plans == o.plans &&
             N == o.N && batch_size == o.batch_size && rule == o.rule &&
             generation == o.generation && tf32 == o.tf32 && path == o.path;
    }
  } key;
  std::vector<int32_t> order_host;
  int graphs_captured = 0;  // for tests: how often a batch was captured
};

template <class T, class Exec>
class DeviceTrainer {
 public:
  DeviceTrainer(DeviceNetwork<T, Exec>& net, EpochWorkspace<T, Exec>& ws) : net_(net), ws_(ws) {}

  EpochStats epoch(DeviceOptimizerState<T, Exec>& opt, const OptimConfig& oc,
                   const DeviceData<T>& data, const EpochConfig& ec, T* p_start) {
    require(data.N > 0, "the training set is empty");
    require(ec.batch_size > 0, "batch_size must be positive");
    require(opt.size() == net_.n_params(), "the optimizer state belongs to another network");
    require(data.N < (1L << 31), "the training set has too many rows for the CUDA backend");
    Exec& exec = net_.exec();
    exec.activate();
    const long N = data.N;
    const int bs = int(std::min<long>(ec.batch_size, N));
    const long n_batches = (N + bs - 1) / bs, n_full = N / bs;
    net_.reserve(bs);
    prepare_epoch(N, ec, bs);
    net_.copy_params_to(p_start);
    if (oc.kind == Optim::line_search) return line_search_epoch(oc, data, ec, bs, p_start);

    opt.prepare(oc);
    auto noise_of = [&](long b) { return noise_at(ec, b); };
    opt.with_plans(net_, n_batches, noise_of, [&](const auto* plans) {
      using Rule = typename std::remove_pointer_t<decltype(plans)>::rule_type;
      auto batch = [&](int n) { run_batch<Rule>(data, plans, bs, n); };
      if (n_full > 1 && net_.use_graphs() && exec.graphs_supported())
        replay(data, bs, opt, n_full, [&] { batch(bs); });
      else
        for (long b = 0; b < n_full; ++b) batch(bs);
      if (N > n_full * bs) batch(int(N - n_full * bs));
    });

    EpochStats out = end_epoch(ec, p_start, oc.lr, &opt);  // every batch's step: the rate
    exec.synchronize();
    return out;
  }

 private:
  // The order, the epoch state and zeroed statistics on the device.
  void prepare_epoch(long N, const EpochConfig& ec, int bs) {
    Exec& exec = net_.exec();
    const int L = net_.n_layers();
    ws_.state.reserve(1, net_.device());
    ws_.order.reserve(std::size_t(N), net_.device());
    ws_.layer_stats.reserve(2 * std::size_t(L), net_.device());
    ws_.order_host.resize(std::size_t(N));
    sample_order(ws_.order_host.data(), N, ec.shuffle, ec.seed, ec.epoch);
    exec.upload(ws_.order.get(), ws_.order_host.data(), sizeof(int32_t) * std::size_t(N));
    EpochState s;
    s.batch_size = bs;
    s.n_samples = N;
    s.clip_norm = ec.clip_norm;
    s.clip_value = ec.clip_value;
    s.noise = ec.noise ? 1 : 0;
    s.n_layers = L;
    exec.upload(ws_.state.get(), &s, sizeof s);
    exec.zero(ws_.layer_stats.get(), sizeof(double) * 2 * std::size_t(L));
  }

  using Noise = typename DeviceOptimizerState<T, Exec>::Noise;
  // The gradient noise of batch b of the epoch (train.cpp's GradientTransforms).
  static Noise noise_at(const EpochConfig& ec, long b) {
    Noise p;
    if (ec.noise) {
      const int64_t t = ec.noise_t + b;
      p.rng = CounterRng(ec.noise_seed, Stream::gradient_noise, uint64_t(t));
      p.std = noise_std(ec.noise_eta, ec.noise_gamma, t);
    }
    return p;
  }

  EpochState read_state() {
    EpochState s;
    net_.download(&s, ws_.state.get(), 1);
    return s;
  }

  // The epoch's statistics from the device's state and per-layer norms, with the mean step the
  // batches took (StepMean's, as the CPU reports it). opt (null for the line search, which has no
  // state) counts the batches' steps first, whatever may throw after.
  EpochStats end_epoch(const EpochConfig& ec, const T* p_start, double mean_step,
                       DeviceOptimizerState<T, Exec>* opt = nullptr) {
    const int L = net_.n_layers();
    const EpochState s = read_state();
    if (opt) opt->commit(long(s.batches));
    std::vector<double> layer(2 * std::size_t(L));
    net_.download(layer.data(), ws_.layer_stats.get(), layer.size());
    EpochStats out;
    out.grad_norm_mean.assign(layer.begin(), layer.begin() + L);
    out.grad_norm_max.assign(layer.begin() + L, layer.begin() + 2 * L);
    out.batches = long(s.batches);
    out.samples = long(s.samples);
    out.noise_t = ec.noise_t + s.noise_steps;
    out.finite = s.stop == 0;
    out.threads = 1;
    if (s.batches > 0) {
      for (double& m : out.grad_norm_mean) m /= double(s.batches);
      out.loss = s.loss / double(s.samples);
      out.accuracy = s.correct / double(s.samples);
      out.mean_step = mean_step;
    }
    out.update_ratio = net_.update_ratios(p_start);
    return out;
  }

  // The device address of the state's stop flag (computed, never dereferenced here).
  int* stop_flag() {
    return reinterpret_cast<int*>(reinterpret_cast<char*>(ws_.state.get()) +
                                  offsetof(EpochState, stop));
  }

  void gather(const DeviceData<T>& data, int bs, int n, const EpochState* state, long long first) {
    GatherArgs<T> g;
    g.X = data.X;
    g.d = net_.n_in();
    g.Y = data.y.dense;
    g.k = net_.n_out();
    g.labels = data.y.labels;
    g.order = ws_.order.get();
    g.state = state;
    g.first = first;
    g.batch_size = bs;
    g.n = n;
    g.x_out = net_.input();
    g.ld_x = net_.input_ld();
    g.y_out = net_.batch_targets();
    g.labels_out = net_.batch_labels();
    g.stop = stop_flag();
    net_.exec().gather(g);
  }

  Targets<T> batch_targets(const DeviceData<T>& data) {
    Targets<T> t;
    t.on_device = true;
    if (data.y.labels)
      t.labels = net_.batch_labels();
    else
      t.dense = net_.batch_targets();
    return t;
  }

  // Forward and backward of a batch gathered by the epoch state, then the batch's sums.
  void gradient_batch(const DeviceData<T>& data, int bs, int n) {
    int* stop = stop_flag();
    gather(data, bs, n, ws_.state.get(), 0);
    net_.forward_batch(n, stop);
    net_.output_batch(batch_targets(data), n, true, stop);
    net_.backward_batch(n, stop);
    net_.exec().segment_sums(net_.grads(), static_cast<const T*>(nullptr), net_.segment_plan(),
                             net_.partials(), stop);
    FinishArgs f;
    f.state = ws_.state.get();
    f.partials = net_.partials();
    f.plan = net_.segment_plan();
    f.seg_sq = net_.segment_scratch();
    f.row_loss = net_.row_loss();
    f.row_correct = net_.row_correct();
    f.n = n;
    f.norm_sum = ws_.layer_stats.get();
    f.norm_max = ws_.layer_stats.get() + net_.n_layers();
    net_.exec().finish(f);
  }

  template <class Rule>
  void run_batch(const DeviceData<T>& data, const BatchPlan<Rule>* plans, int bs, int n) {
    gradient_batch(data, bs, n);
    UpdateArgs<Rule, T> u;
    u.plans = plans;
    u.state = ws_.state.get();
    u.p = net_.params();
    u.g = net_.grads();
    u.n = net_.n_params();
    net_.exec().update(u);
  }

  // n_full batches from the captured batch, capturing it first unless the one captured before
  // was for the same data, buffers and settings. Before a capture one batch runs directly:
  // every kernel and cuBLAS routine is then loaded (CUDA loads modules lazily, at first use)
  // and set up before the capture begins. If capturing fails, the batches run directly.
  template <class Batch>
  void replay(const DeviceData<T>& data, int bs, const DeviceOptimizerState<T, Exec>& opt,
              long n_full, Batch&& batch) {
    Exec& exec = net_.exec();
    typename EpochWorkspace<T, Exec>::Key key;
    key.X = data.X;
    key.Y = data.y.dense;
    key.labels = data.y.labels;
    key.order = ws_.order.get();
    key.plans = opt.plans_buffer();
    key.N = data.N;
    key.batch_size = bs;
    key.rule = opt.rule_index();
    key.generation = net_.generation();
    key.tf32 = net_.allow_tf32();
    key.path = int(net_.layer_path());
    long done = 0;
    if (!(ws_.graph.valid() && ws_.key == key)) {
      ws_.graph = typename Exec::Graph();
      batch();
      done = 1;
      try {
        exec.begin_capture();
        batch();
        ws_.graph = exec.end_capture();
        ws_.key = key;
        ++ws_.graphs_captured;
      } catch (const std::exception&) {
        exec.abort_capture();
        ws_.graph = typename Exec::Graph();
      }
    }
    if (!ws_.graph.valid()) {
      for (long b = done; b < n_full; ++b) batch();
      return;
    }
    for (long b = done; b < n_full; ++b) exec.launch(ws_.graph);
  }

  // LineSearchSGD's epoch (train.cpp's line_search_epoch): per batch the gradient on the
  // device, then the Armijo trials, each decided on the host.
  EpochStats line_search_epoch(const OptimConfig& oc, const DeviceData<T>& data,
                               const EpochConfig& ec, int bs, T* p_start) {
    Exec& exec = net_.exec();
    const long N = data.N;
    DeviceBuffer<BatchPlan<NoRule<T>>, Exec> plan(1, net_.device());
    StepMean steps;
    for (long first = 0, b = 0; first < N; first += bs, ++b) {
      const int n = int(std::min<long>(bs, N - first));
      gradient_batch(data, bs, n);
      const EpochState s = read_state();
      if (s.stop) break;
      // The batch's transforms: clipping by the coefficient finish set, by value, noise.
      const Noise noise = noise_at(ec, b);
      const BatchPlan<NoRule<T>> p{NoRule<T>{}, noise.rng, noise.std};
      exec.upload(plan.get(), &p, sizeof p);
      UpdateArgs<NoRule<T>, T> u;
      u.plans = plan.get();
      u.transform.clip_coef = s.clip_coef;
      u.transform.clip_value = ec.clip_value;
      u.transform.noise = ec.noise;
      u.p = net_.params();
      u.g = net_.grads();
      u.n = net_.n_params();
      exec.update(u);
      steps.add(search(oc, n, s.batch_loss / n, batch_targets(data)));
    }
    return end_epoch(ec, p_start, steps.mean());
  }

 public:
  // Armijo backtracking along -g on the batch in the input buffer, targets t (train.cpp's
  // line_search_step): the first step in lr, lr*shrink, ... with
  // loss(p - step g) <= loss0 - c1 step |g|^2 is taken; if none is, p is left unchanged.
  // Returns the step taken (0 if none).
  double search(const OptimConfig& oc, int n, double loss0, Targets<T> t) {
    Exec& exec = net_.exec();
    const double gg = net_.grad_squares();
    ws_.search_start.reserve(net_.n_params(), net_.device());
    T* p0 = ws_.search_start.get();
    exec.copy(p0, net_.params(), net_.n_params() * sizeof(T));
    double step = oc.lr;
    for (int it = 0; it < oc.max_iter; ++it, step *= oc.shrink) {
      exec.step_from(net_.params(), p0, net_.grads(), T(step), net_.n_params());
      net_.forward_batch(n, nullptr);
      net_.output_batch(t, n, false, nullptr);
      const double loss = net_.row_sums(n).loss / n;
      if (std::isfinite(loss) && loss <= loss0 - oc.c1 * step * gg) return step;
    }
    exec.copy(net_.params(), p0, net_.n_params() * sizeof(T));
    exec.synchronize();
    return 0;
  }

 private:
  DeviceNetwork<T, Exec>& net_;
  EpochWorkspace<T, Exec>& ws_;
};

}  // namespace device
}  // namespace fastbp
