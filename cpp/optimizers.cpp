#include "optimizers.hpp"

#include <algorithm>
#include <cmath>

#include "rng.hpp"

namespace fastbp {

template <class T>
std::vector<T>& OptimizerState<T>::state(int i) {
  if (s_[i].size() != n_) s_[i].assign(n_, T(0));
  return s_[i];
}

template <class T>
void OptimizerState<T>::step(const OptimConfig& c, T* p, const T* g) {
  require(c.kind != Optim::line_search, "line search needs the batch: use the epoch loop");
  ++t_;
  const long n = long(n_);
  const T lr = T(c.lr), wd = T(c.weight_decay);
  switch (c.kind) {
    case Optim::sgd: {
      const T mom = T(c.momentum), damp = T(1 - c.dampening);
      if (c.momentum == 0) {
        parallel_for(n, [=](long i) { p[i] -= lr * (g[i] + wd * p[i]); });
        break;
      }
      const bool first = s_[0].empty();  // torch: the buffer starts as the first gradient
      T* buf = state(0).data();
      const bool nesterov = c.nesterov;
      parallel_for(n, [=](long i) {
        const T d = g[i] + wd * p[i];
        buf[i] = first ? d : mom * buf[i] + damp * d;
        p[i] -= lr * (nesterov ? d + mom * buf[i] : buf[i]);
      });
      break;
    }
    case Optim::adam:
    case Optim::adamw: {
      T* m = state(0).data();
      T* v = state(1).data();
      const T b1 = T(c.beta1), b2 = T(c.beta2), eps = T(c.eps);
      const T step_size = T(c.lr / (1 - std::pow(c.beta1, double(t_))));
      const T inv_sqrt_bc2 = T(1 / std::sqrt(1 - std::pow(c.beta2, double(t_))));
      const bool decoupled = c.kind == Optim::adamw;
      const T shrink = decoupled ? T(1) - lr * wd : T(1);
      const T coupled = decoupled ? T(0) : wd;
      parallel_for(n, [=](long i) {
        const T d = g[i] + coupled * p[i];
        p[i] *= shrink;
        m[i] = b1 * m[i] + (T(1) - b1) * d;
        v[i] = b2 * v[i] + (T(1) - b2) * d * d;
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
      });
      break;
    }
    case Optim::rmsprop: {
      T* sq = state(0).data();
      T* ga = c.centered ? state(1).data() : nullptr;
      T* buf = c.momentum > 0 ? state(2).data() : nullptr;
      const T alpha = T(c.alpha), eps = T(c.eps), mom = T(c.momentum);
      parallel_for(n, [=](long i) {
        const T d = g[i] + wd * p[i];
        sq[i] = alpha * sq[i] + (T(1) - alpha) * d * d;
        T var = sq[i];
        if (ga) {
          ga[i] = alpha * ga[i] + (T(1) - alpha) * d;
          var -= ga[i] * ga[i];
        }
        const T step = d / (std::sqrt(var) + eps);
        if (buf) {
          buf[i] = mom * buf[i] + step;
          p[i] -= lr * buf[i];
        } else {
          p[i] -= lr * step;
        }
      });
      break;
    }
    case Optim::adagrad: {
      T* sum = state(0).data();
      const T clr = T(c.lr / (1 + double(t_ - 1) * c.lr_decay)), eps = T(c.eps);
      parallel_for(n, [=](long i) {
        const T d = g[i] + wd * p[i];
        sum[i] += d * d;
        p[i] -= clr * d / (std::sqrt(sum[i]) + eps);
      });
      break;
    }
    case Optim::line_search:  // refused above
      break;
  }
}

template <class T>
double clip_grad_norm(T* g, std::size_t n, double max_norm) {
  const double norm = std::sqrt(sum_squares(g, n));
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1) parallel_for(long(n), [=](long i) { g[i] *= T(coef); });
  return norm;
}

template <class T>
void clip_grad_value(T* g, std::size_t n, double value) {
  const T v = T(value);
  parallel_for(long(n), [=](long i) { g[i] = std::min(std::max(g[i], -v), v); });
}

template <class T>
void add_gradient_noise(T* g, std::size_t n, double eta, double gamma, uint64_t seed, int64_t t) {
  const double std_dev = std::sqrt(eta / std::pow(1.0 + double(t), gamma));
  const CounterRng rng(seed, Stream::gradient_noise, uint64_t(t));
  parallel_for(long(n), [=, &rng](long i) { g[i] += T(std_dev * rng.normal(uint64_t(i))); });
}

#define FASTBP_INSTANTIATE(T)                                 \
  template class OptimizerState<T>;                           \
  template double clip_grad_norm<T>(T*, std::size_t, double); \
  template void clip_grad_value<T>(T*, std::size_t, double);  \
  template void add_gradient_noise<T>(T*, std::size_t, double, double, uint64_t, int64_t);
FASTBP_INSTANTIATE(float)
FASTBP_INSTANTIATE(double)

}  // namespace fastbp
