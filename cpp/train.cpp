#include "train.hpp"

#include <cmath>

#include "barrier.hpp"
#include "rng.hpp"

namespace fastbp {

template <class T>
double line_search_step(Network<T>& net, const OptimConfig& oc, const T* X, Target<T> y, int n,
                        double loss0, std::vector<T>& p0, StopCheck* stop) {
  T* p = net.params();
  const T* g = net.grads();
  const std::size_t np = net.n_params();
  const double gg = sum_squares(g, np);
  p0.assign(p, p + np);
  double t = oc.lr;
  for (int it = 0; it < oc.max_iter; ++it, t *= oc.shrink) {
    if (stop && stop->requested()) break;
    for (std::size_t i = 0; i < np; ++i) p[i] = p0[i] - T(t) * g[i];
    const double loss = net.evaluate(X, y, n).loss / n;
    if (std::isfinite(loss) && loss <= loss0 - oc.c1 * t * gg) return t;
  }
  std::copy(p0.begin(), p0.end(), p);
  return 0;
}

template <class T>
std::pair<double, double> line_search_batch(Network<T>& net, const OptimConfig& oc, const T* X,
                                            Target<T> y, int n, StopCheck& stop) {
  const double loss0 = net.backward(X, y, n).loss / double(n);
  std::vector<T> scratch;
  const double step =
      std::isfinite(loss0) ? line_search_step(net, oc, X, y, n, loss0, scratch, &stop) : 0;
  return {loss0, step};
}

namespace {

// The epoch's sample order (rng.hpp: shared with the CUDA backend).
std::vector<long> sample_order(long N, const EpochConfig& ec) {
  std::vector<long> order(N);
  fastbp::sample_order(order.data(), N, ec.shuffle, ec.seed, ec.epoch);
  return order;
}

// One mini-batch, gathered from the data set in the epoch's order into contiguous rows: the
// forward and backward read it as a plain (n, d) matrix and aligned targets.
template <class T>
class BatchBuffer {
 public:
  BatchBuffer(int capacity, int d, int k, Target<T> y)
      : d_(d),
        k_(k),
        x_(std::size_t(capacity) * d),
        y_(y.dense ? std::size_t(capacity) * k : 0),
        labels_(y.labels ? capacity : 0) {}

  // Rows [r0, r1) of the batch whose samples are order[0], order[1], ...: each thread of a
  // team gathers its own rows.
  void gather(const T* X, Target<T> y, const long* order, int r0, int r1) {
    for (int i = r0; i < r1; ++i) {
      const long r = order[i];
      std::copy(X + r * d_, X + (r + 1) * d_, x_.data() + std::size_t(i) * d_);
      if (y.dense)
        std::copy(y.dense + r * k_, y.dense + (r + 1) * k_, y_.data() + std::size_t(i) * k_);
      if (y.labels) labels_[i] = y.labels[r];
    }
    at_ = x_.data();
    target_.dense = y_.empty() ? nullptr : y_.data();
    target_.labels = labels_.empty() ? nullptr : labels_.data();
  }
  // A batch of the one sample r (on one thread) is read in place: online learning copies nothing.
  void point_at(const T* X, Target<T> y, long r) {
    at_ = X + r * d_;
    target_.dense = y.dense ? y.dense + r * k_ : nullptr;
    target_.labels = y.labels ? y.labels + r : nullptr;
  }
  const T* x() const { return at_; }
  Target<T> target() const { return target_; }

 private:
  int d_, k_;
  LineVector<T> x_, y_;  // rows split among the team
  std::vector<int32_t> labels_;
  const T* at_ = nullptr;  // the batch's rows and targets: the buffers above, or the data set's
  Target<T> target_;
};

// A batch's results: loss sums and, per layer, the sum of squares of the weight gradient, the
// last entry that of the whole gradient. Each thread of a team holds its partial, on a cache
// line of its own.
struct alignas(64) BatchSums {
  LossSums loss;
  LineVector<double> sq;  // on lines of its own, as the struct
  explicit BatchSums(int layers = 0) : sq(layers + 1, 0.0) {}
  bool finite() const {
    bool ok = std::isfinite(loss.loss);
    for (double v : sq) ok = ok && std::isfinite(v);
    return ok;
  }
};

// The team's partials summed in thread order: every thread gets the same bits, so all take the
// same decisions.
void sum_partials(const std::vector<BatchSums>& partial, BatchSums& total) {
  total.loss = LossSums();
  std::fill(total.sq.begin(), total.sq.end(), 0.0);
  for (const BatchSums& p : partial) {
    total.loss.loss += p.loss.loss;
    total.loss.correct += p.loss.correct;
    for (std::size_t l = 0; l < total.sq.size(); ++l) total.sq[l] += p.sq[l];
  }
}

// What the epoch does to each batch's gradient before the step: clipping by global norm, by
// value, and annealed noise. The same for every part of the gradient.
struct GradientTransforms {
  const EpochConfig& ec;
  double clip_coef;  // from the global norm, 1: none
  int64_t noise_t;   // the noise schedule's step

  GradientTransforms(const EpochConfig& c, const BatchSums& sums, long batch)
      : ec(c),
        clip_coef(c.clip_norm > 0 ? clip_coefficient(std::sqrt(sums.sq.back()), c.clip_norm) : 1),
        noise_t(c.noise_t + batch) {}

  template <class T>
  void apply(T* g, std::size_t begin, std::size_t end) const {
    if (clip_coef < 1) scale_range(g, begin, end, clip_coef);
    if (ec.clip_value > 0) clip_value_range(g, begin, end, ec.clip_value);
    if (ec.noise) noise_range(g, begin, end, ec.noise_eta, ec.noise_gamma, ec.noise_seed, noise_t);
  }
};

// The epoch's statistics, recorded batch by batch (by one thread), and their means at the end.
class EpochTally {
 public:
  EpochTally(EpochStats& s, int layers, int64_t noise_t) : s_(s) {
    s.grad_norm_mean.assign(layers, 0.0);
    s.grad_norm_max.assign(layers, 0.0);
    s.noise_t = noise_t;
  }
  void record(const BatchSums& b, int n, bool noise, double step) {
    for (std::size_t l = 0; l < s_.grad_norm_mean.size(); ++l) {
      const double norm = std::sqrt(b.sq[l]);
      s_.grad_norm_mean[l] += norm;
      s_.grad_norm_max[l] = std::max(s_.grad_norm_max[l], norm);
    }
    loss_ += b.loss.loss;
    correct_ += b.loss.correct;
    steps_.add(step);
    s_.samples += n;
    ++s_.batches;
    if (noise) ++s_.noise_t;
  }
  void finish() {
    if (s_.batches == 0) return;
    for (double& norm : s_.grad_norm_mean) norm /= double(s_.batches);
    s_.loss = loss_ / double(s_.samples);
    s_.accuracy = correct_ / double(s_.samples);
    s_.mean_step = steps_.mean();
  }

 private:
  EpochStats& s_;
  double loss_ = 0, correct_ = 0;
  StepMean steps_;
};

// Per weight layer: ||W - W_start|| / ||W_start|| (the plain norm of the change if W_start = 0).
template <class T>
std::vector<double> update_ratios(const Network<T>& net, const T* p_start) {
  std::vector<double> ratio(net.n_layers());
  for (int l = 0; l < net.n_layers(); ++l) {
    const T* w = net.params() + net.w_offset(l);
    const T* w0 = p_start + net.w_offset(l);
    double diff = 0, base = 0;
    for (std::size_t i = 0, m = net.w_size(l); i < m; ++i) {
      diff += double(w[i] - w0[i]) * double(w[i] - w0[i]);
      base += double(w0[i]) * double(w0[i]);
    }
    ratio[l] = base > 0 ? std::sqrt(diff / base) : std::sqrt(diff);
  }
  return ratio;
}

// f(t, nt) on every thread t of a team of nt (OpenMP may start fewer than asked for), which
// first sizes the barrier; returns nt.
template <class F>
int run_team(int threads, SpinBarrier& barrier, F&& f) {
#ifdef _OPENMP
  if (threads > 1) {
    int team = 1;
#pragma omp parallel num_threads(threads)
    {
      const DenormalScope fp;  // every thread of the team, as the caller's (bindings.cpp)
#pragma omp single
      {
        team = omp_get_num_threads();
        barrier.reset(team);
      }
      f(omp_get_thread_num(), team);
    }
    return team;
  }
#endif
  (void)barrier;
  f(0, 1);
  return 1;
}

// LineSearchSGD's epoch, on one thread: its trial steps evaluate the whole batch.
template <class T>
EpochStats line_search_epoch(Network<T>& net, const OptimConfig& oc, const T* X, long N,
                             Target<T> y, const EpochConfig& ec, T* p_start, StopCheck& stop) {
  const int L = net.n_layers(), bs = int(std::min<long>(ec.batch_size, N));
  const std::vector<long> order = sample_order(N, ec);
  std::copy(net.params(), net.params() + net.n_params(), p_start);
  BatchBuffer<T> batch(bs, net.n_in(), net.n_out(), y);
  net.reserve(bs);
  BatchSums sums(L);
  std::vector<T> scratch;
  EpochStats s;
  EpochTally tally(s, L, ec.noise_t);
  for (long first = 0, b = 0; first < N; first += bs, ++b) {
    if (stop.requested()) break;
    const int n = int(std::min<long>(bs, N - first));
    batch.gather(X, y, order.data() + first, 0, n);
    sums.loss = net.rows_pass(batch.x(), batch.target(), n, 0, n);
    net.gradient_part(batch.x(), n, 0, 1, sums.sq.data());
    if (!sums.finite()) {
      s.finite = false;
      break;
    }
    GradientTransforms(ec, sums, b).apply(net.grads(), 0, net.n_params());
    const double step =
        line_search_step(net, oc, batch.x(), batch.target(), n, sums.loss.loss / n, scratch, &stop);
    if (stop.stopped()) break;  // the search was cut short: this batch took no step
    tally.record(sums, n, ec.noise, step);
  }
  s.stop = stop.reason();
  tally.finish();
  s.update_ratio = update_ratios(net, p_start);
  return s;
}

// The network's products for one epoch: in bfloat16 or not, and the packed copies of the
// weights the epoch keeps (Network::prepare_packed), freed at its end, however it ends; then
// float32 products again, which is what a network computes with outside an epoch (as
// Network::settle_after_fork assumes).
template <class T>
class ProductsScope {
 public:
  ProductsScope(Network<T>& net, bool bf16) : net_(net) { net_.set_bf16_products(bf16); }
  ~ProductsScope() {
    net_.release_packed();
    net_.set_bf16_products(false);
  }
  ProductsScope(const ProductsScope&) = delete;
  ProductsScope& operator=(const ProductsScope&) = delete;

 private:
  Network<T>& net_;
};

}  // namespace

template <class T>
EpochStats train_epoch(Network<T>& net, OptimizerState<T>& opt, const OptimConfig& oc, const T* X,
                       long N, Target<T> y, const EpochConfig& ec, T* p_start, StopCheck& stop) {
  require(N > 0, "the training set is empty");
  require(ec.batch_size > 0, "batch_size must be positive");
  require(opt.size() == net.n_params(), "the optimizer state belongs to another network");
  const ProductsScope<T> products(net, ec.bf16_products);
  if (oc.kind == Optim::line_search) return line_search_epoch(net, oc, X, N, y, ec, p_start, stop);

  // Everything the epoch needs is allocated here, before any thread starts: the order, one
  // mini-batch, the network's working memory, the optimizer's state and per-thread sums.
  const int L = net.n_layers(), bs = int(std::min<long>(ec.batch_size, N));
  const std::vector<long> order = sample_order(N, ec);
  std::copy(net.params(), net.params() + net.n_params(), p_start);
  BatchBuffer<T> batch(bs, net.n_in(), net.n_out(), y);
  opt.prepare(oc);
  const int threads = net.batch_threads(bs, true);
  net.reserve(bs, threads);
  const bool split_first = net.split_first_layer(bs, threads);  // reserved for any team size
  // packed copies of the weights, where its products run in fastbp's packed kernels
  net.prepare_packed(bs, threads, split_first);
  std::vector<BatchSums> partial(threads, BatchSums(L));
  SpinBarrier barrier;  // spins, then yields, then sleeps: see barrier.hpp
  EpochStats s;
  EpochTally tally(s, L, ec.noise_t);
  T* p = net.params();
  T* g = net.grads();
  // Thread 0's answer to stop.requested() before each batch, which every thread reads after the
  // next barrier; thread 0 writes the next one only after two more barriers, once all have read.
  bool halt = false;

  // Thread t of nt: its rows of every batch through the forward and backward chain, its part
  // of the gradient, and the clipping, noise and update of that part.
  auto run = [&](int t, int nt) {
    BatchSums sums(L);
    // The packed copies of the weights, where the epoch keeps them: the rows this thread
    // updates, now and after each step.
    net.pack_part(t, nt);
    for (long first = 0, b = 0; first < N; first += bs, ++b) {
      if (t == 0) halt = stop.requested();  // the caller's thread: its poll may take locks
      const int n = int(std::min<long>(bs, N - first));
      const int r0 = Network<T>::share(n, t, nt), r1 = Network<T>::share(n, t + 1, nt);
      if (n == 1 && nt == 1)
        batch.point_at(X, y, order[first]);
      else
        batch.gather(X, y, order.data() + first, r0, r1);
      barrier.wait(t);  // the last step is applied everywhere, the batch gathered, halt known
      if (halt) break;  // every thread, at the same batch
      const int split = split_first && nt > 1 ? nt : 0;
      if (split > 0) {
        net.first_layer_part(batch.x(), n, t, nt);
        barrier.wait(t);  // every part's share of the first product is known
      }
      partial[t].loss = net.rows_pass(batch.x(), batch.target(), n, r0, r1, split);
      barrier.wait(t);  // every row's dZ is known
      net.gradient_part(batch.x(), n, t, nt, partial[t].sq.data());
      barrier.wait(t);  // the whole gradient is known
      sum_partials(partial, sums);
      if (!sums.finite()) {  // every thread sees it, on the same batch
        if (t == 0) s.finite = false;
        break;
      }
      if (t == 0) tally.record(sums, n, ec.noise, oc.lr);
      const GradientTransforms transforms(ec, sums, b);
      const StepPlan<T> plan = opt.plan(b);
      net.for_each_part_range(t, nt, [&](std::size_t begin, std::size_t end) {
        transforms.apply(g, begin, end);
        OptimizerState<T>::apply(plan, p, g, begin, end);
      });
      if (first + bs < N) net.pack_part(t, nt);  // for the next batch
    }
  };
  s.threads = run_team(threads, barrier, run);
  s.stop = stop.reason();
  opt.commit(s.batches);
  tally.finish();
  s.update_ratio = update_ratios(net, p_start);
  return s;
}

#define FASTBP_INSTANTIATE(T)                                                                    \
  template EpochStats train_epoch<T>(Network<T>&, OptimizerState<T>&, const OptimConfig&,        \
                                     const T*, long, Target<T>, const EpochConfig&, T*,          \
                                     StopCheck&);                                                \
  template double line_search_step<T>(Network<T>&, const OptimConfig&, const T*, Target<T>, int, \
                                      double, std::vector<T>&, StopCheck*);                      \
  template std::pair<double, double> line_search_batch<T>(Network<T>&, const OptimConfig&,       \
                                                          const T*, Target<T>, int, StopCheck&);
FASTBP_INSTANTIATE(float)
FASTBP_INSTANTIATE(double)

}  // namespace fastbp
