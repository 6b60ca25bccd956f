#include "train.hpp"

#include <cmath>
#include <numeric>

#include "barrier.hpp"
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

namespace {
// One thread's share of a batch's results, on a cache line of its own.
struct alignas(64) ThreadPartial {
  LossSums loss;
  std::vector<double> sq;  // per layer: sum of squares of the weight gradient; last: of all
};
}  // namespace

template <class T>
EpochStats train_epoch(Network<T>& net, OptimizerState<T>& opt, const OptimConfig& oc, const T* X,
                       long N, Target<T> y, const EpochConfig& ec, T* p_start) {
  require(N > 0, "the training set is empty");
  require(ec.batch_size > 0, "batch_size must be positive");
  require(opt.size() == net.n_params(), "the optimizer state belongs to another network");
  const int L = net.n_layers(), d = net.n_in(), k = net.n_out();
  const int bs = int(std::min<long>(ec.batch_size, N));
  const std::size_t np = net.n_params();
  const bool search = oc.kind == Optim::line_search;

  std::vector<long> order(N);
  std::iota(order.begin(), order.end(), 0L);
  if (ec.shuffle) {  // Fisher-Yates on the counter-based stream (seed, epoch)
    const CounterRng rng(ec.seed, Stream::shuffle, uint64_t(ec.epoch));
    for (long i = N - 1; i > 0; --i)
      std::swap(order[i], order[rng.below(uint64_t(i), uint64_t(i + 1))]);
  }

  // Everything the epoch needs is allocated here, before any thread starts: one mini-batch of
  // inputs and targets, the network's working memory, the optimizer's state, per-thread sums
  // and, for line search, a scratch copy of the parameters.
  std::copy(net.params(), net.params() + np, p_start);
  std::vector<T> xb(std::size_t(bs) * d), yb(y.dense ? std::size_t(bs) * k : 0), scratch;
  std::vector<int32_t> lb(y.labels ? bs : 0);
  net.reserve(bs);
  if (!search) opt.prepare(oc);
  // One team for the whole epoch, meeting at a spin-then-sleep barrier: line search runs on
  // one thread, as its trial steps evaluate the whole batch.
  const int team = search ? 1 : net.batch_threads(bs, true);
  std::vector<ThreadPartial> partial(team);
  for (ThreadPartial& p : partial) p.sq.assign(L + 1, 0.0);
  SpinBarrier barrier;

  EpochStats s;
  s.grad_norm_mean.assign(L, 0.0);
  s.grad_norm_max.assign(L, 0.0);
  s.noise_t = ec.noise_t;
  double loss_sum = 0, correct = 0, step_sum = 0;

  // Thread t of nt: its rows of every batch through the forward and backward chain, its part
  // of the gradient, and the clipping, noise and update of that part. Every thread sums the
  // partial results in the same order, so all take the same decisions.
  auto run = [&](int t, int nt) {
    std::vector<double> sq(L + 1);
    for (long first = 0, batch = 0; first < N; first += bs, ++batch) {
      const int n = int(std::min<long>(bs, N - first));
      const int r0 = Network<T>::share(n, t, nt), r1 = Network<T>::share(n, t + 1, nt);
      for (int i = r0; i < r1; ++i) {
        const long r = order[first + i];
        std::copy(X + r * d, X + (r + 1) * d, xb.data() + std::size_t(i) * d);
        if (y.dense)
          std::copy(y.dense + r * k, y.dense + (r + 1) * k, yb.data() + std::size_t(i) * k);
        if (y.labels) lb[i] = y.labels[r];
      }
      Target<T> yt;
      yt.dense = y.dense ? yb.data() : nullptr;
      yt.labels = y.labels ? lb.data() : nullptr;

      barrier.wait(t);  // the last step is applied everywhere, and the batch is gathered
      partial[t].loss = net.rows_pass(xb.data(), yt, n, r0, r1);
      barrier.wait(t);  // every row's dZ is known
      net.gradient_part(xb.data(), n, t, nt, partial[t].sq.data());
      barrier.wait(t);  // the whole gradient is known

      LossSums ls;
      std::fill(sq.begin(), sq.end(), 0.0);
      for (const ThreadPartial& p : partial) {
        ls.loss += p.loss.loss;
        ls.correct += p.loss.correct;
        for (int l = 0; l <= L; ++l) sq[l] += p.sq[l];
      }
      bool finite = std::isfinite(ls.loss);
      for (int l = 0; l <= L; ++l) finite = finite && std::isfinite(sq[l]);
      if (!finite) {
        if (t == 0) s.finite = false;
        break;
      }
      if (t == 0) {
        for (int l = 0; l < L; ++l) {
          const double norm = std::sqrt(sq[l]);
          s.grad_norm_mean[l] += norm;
          s.grad_norm_max[l] = std::max(s.grad_norm_max[l], norm);
        }
        loss_sum += ls.loss;
        correct += ls.correct;
        s.samples += n;
        ++s.batches;
        if (ec.noise) ++s.noise_t;
      }

      const double coef = ec.clip_norm > 0 ? clip_coefficient(std::sqrt(sq[L]), ec.clip_norm) : 1;
      StepPlan<T> plan;
      if (!search) plan = opt.plan(batch);
      T* p = net.params();
      T* g = net.grads();
      net.for_each_part_range(t, nt, [&](std::size_t begin, std::size_t end) {
        if (coef < 1) scale_range(g, begin, end, coef);
        if (ec.clip_value > 0) clip_value_range(g, begin, end, ec.clip_value);
        if (ec.noise)
          noise_range(g, begin, end, ec.noise_eta, ec.noise_gamma, ec.noise_seed,
                      ec.noise_t + batch);
        if (!search) OptimizerState<T>::apply(plan, p, g, begin, end);
      });
      if (t == 0)
        step_sum +=
            search ? line_search_step(net, oc, xb.data(), yt, n, ls.loss / n, scratch) : oc.lr;
    }
  };
#ifdef _OPENMP
  if (team > 1) {
#pragma omp parallel num_threads(team)
    {
#pragma omp single
      {
        s.threads = omp_get_num_threads();  // OpenMP may start fewer threads than asked for
        barrier.reset(s.threads);
      }
      run(omp_get_thread_num(), s.threads);
    }
  } else {
    run(0, 1);
  }
#else
  run(0, 1);
#endif
  if (!search) opt.commit(s.batches);

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
