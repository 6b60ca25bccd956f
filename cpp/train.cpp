#include "train.hpp"

#include <cmath>
#include <numeric>

#include "rng.hpp"

namespace fastbp {

template <class T>
double line_search_step(Network<T>& net, const OptimConfig& oc, const T* X, Target<T> y, int n,
                        double loss0, std::vector<T>& p0) {
  T* p = net.params();
  const T* g = net.grads();
  const std::size_t np = net.n_params();
  const double gg = sum_squares(g, np);
  p0.assign(p, p + np);
  double t = oc.lr;
  for (int it = 0; it < oc.max_iter; ++it, t *= oc.shrink) {
    for (std::size_t i = 0; i < np; ++i) p[i] = p0[i] - T(t) * g[i];
    const double loss = net.evaluate(X, y, n).loss / n;
    if (std::isfinite(loss) && loss <= loss0 - oc.c1 * t * gg) return t;
  }
  std::copy(p0.begin(), p0.end(), p);
  return 0;
}

template <class T>
std::pair<double, double> line_search_batch(Network<T>& net, const OptimConfig& oc, const T* X,
                                            Target<T> y, int n) {
  const double loss0 = net.backward(X, y, n).loss / double(n);
  std::vector<T> scratch;
  const double step = std::isfinite(loss0) ? line_search_step(net, oc, X, y, n, loss0, scratch) : 0;
  return {loss0, step};
}

template <class T>
EpochStats train_epoch(Network<T>& net, OptimizerState<T>& opt, const OptimConfig& oc, const T* X,
                       long N, Target<T> y, const EpochConfig& ec, T* p_start) {
  require(N > 0, "the training set is empty");
  require(ec.batch_size > 0, "batch_size must be positive");
  require(opt.size() == net.n_params(), "the optimizer state belongs to another network");
  const int L = net.n_layers(), d = net.n_in(), k = net.n_out();
  const int bs = int(std::min<long>(ec.batch_size, N));
  const std::size_t np = net.n_params();

  std::vector<long> order(N);
  std::iota(order.begin(), order.end(), 0L);
  if (ec.shuffle) {  // Fisher-Yates on the counter-based stream (seed, epoch)
    const CounterRng rng(ec.seed, Stream::shuffle, uint64_t(ec.epoch));
    for (long i = N - 1; i > 0; --i)
      std::swap(order[i], order[rng.below(uint64_t(i), uint64_t(i + 1))]);
  }

  // Working memory for the whole epoch: one mini-batch of inputs and targets and, for line
  // search, a scratch copy of the parameters.
  std::copy(net.params(), net.params() + np, p_start);
  std::vector<T> xb(std::size_t(bs) * d), yb(y.dense ? std::size_t(bs) * k : 0), scratch;
  std::vector<int32_t> lb(y.labels ? bs : 0);
  std::vector<double> norms(L);

  EpochStats s;
  s.grad_norm_mean.assign(L, 0.0);
  s.grad_norm_max.assign(L, 0.0);
  s.noise_t = ec.noise_t;
  double loss_sum = 0, correct = 0, step_sum = 0;
  for (long first = 0; first < N; first += bs) {
    const int n = int(std::min<long>(bs, N - first));
    for (int i = 0; i < n; ++i) {
      const long r = order[first + i];
      std::copy(X + r * d, X + (r + 1) * d, xb.data() + std::size_t(i) * d);
      if (y.dense)
        std::copy(y.dense + r * k, y.dense + (r + 1) * k, yb.data() + std::size_t(i) * k);
      if (y.labels) lb[i] = y.labels[r];
    }
    Target<T> yt;
    yt.dense = y.dense ? yb.data() : nullptr;
    yt.labels = y.labels ? lb.data() : nullptr;

    const LossSums ls = net.backward(xb.data(), yt, n);
    net.weight_grad_norms(norms.data());
    bool finite = std::isfinite(ls.loss);
    for (int l = 0; l < L; ++l) finite = finite && std::isfinite(norms[l]);
    if (!finite) {
      s.finite = false;
      break;
    }
    for (int l = 0; l < L; ++l) {
      s.grad_norm_mean[l] += norms[l];
      s.grad_norm_max[l] = std::max(s.grad_norm_max[l], norms[l]);
    }
    loss_sum += ls.loss;
    correct += ls.correct;
    s.samples += n;
    ++s.batches;

    if (ec.clip_norm > 0) clip_grad_norm(net.grads(), np, ec.clip_norm);
    if (ec.clip_value > 0) clip_grad_value(net.grads(), np, ec.clip_value);
    if (ec.noise)
      add_gradient_noise(net.grads(), np, ec.noise_eta, ec.noise_gamma, ec.noise_seed, s.noise_t++);
    if (oc.kind == Optim::line_search) {
      step_sum += line_search_step(net, oc, xb.data(), yt, n, ls.loss / n, scratch);
    } else {
      opt.step(oc, net.params(), net.grads());
      step_sum += oc.lr;
    }
  }

  if (s.batches > 0) {
    for (int l = 0; l < L; ++l) s.grad_norm_mean[l] /= double(s.batches);
    s.loss = loss_sum / double(s.samples);
    s.accuracy = correct / double(s.samples);
    s.mean_step = step_sum / double(s.batches);
  }
  s.update_ratio.resize(L);
  for (int l = 0; l < L; ++l) {
    const T* w = net.params() + net.w_offset(l);
    const T* w0 = p_start + net.w_offset(l);
    double diff = 0, base = 0;
    for (std::size_t i = 0, m = net.w_size(l); i < m; ++i) {
      diff += double(w[i] - w0[i]) * double(w[i] - w0[i]);
      base += double(w0[i]) * double(w0[i]);
    }
    s.update_ratio[l] = base > 0 ? std::sqrt(diff / base) : std::sqrt(diff);
  }
  return s;
}

#define FASTBP_INSTANTIATE(T)                                                                    \
  template EpochStats train_epoch<T>(Network<T>&, OptimizerState<T>&, const OptimConfig&,        \
                                     const T*, long, Target<T>, const EpochConfig&, T*);         \
  template double line_search_step<T>(Network<T>&, const OptimConfig&, const T*, Target<T>, int, \
                                      double, std::vector<T>&);                                  \
  template std::pair<double, double> line_search_batch<T>(Network<T>&, const OptimConfig&,       \
                                                          const T*, Target<T>, int);
FASTBP_INSTANTIATE(float)
FASTBP_INSTANTIATE(double)

}  // namespace fastbp
