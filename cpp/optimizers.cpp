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
void OptimizerState<T>::prepare(const OptimConfig& c) {
  require(c.kind != Optim::line_search, "line search needs the batch: use the epoch loop");
  switch (c.kind) {
    case Optim::sgd:
      if (c.momentum != 0 && s_[0].empty()) {  // torch: the buffer starts as the first gradient
        state(0);
        momentum_fresh_ = true;
      }
      break;
    case Optim::adam:
    case Optim::adamw:
      state(0);
      state(1);
      break;
    case Optim::rmsprop:
      state(0);
      if (c.centered) state(1);
      if (c.momentum > 0) state(2);
      break;
    case Optim::adagrad:
      state(0);
      break;
    case Optim::line_search:
      break;
  }
}

template <class T>
StepPlan<T> OptimizerState<T>::plan(const OptimConfig& c, long ahead) {
  const double t = double(t_ + 1 + ahead);  // this step's number, from 1
  StepPlan<T> s;
  s.kind = c.kind;
  s.lr = T(c.lr);
  s.wd = T(c.weight_decay);
  s.mom = T(c.momentum);
  s.damp = T(1 - c.dampening);
  s.nesterov = c.nesterov;
  s.first = momentum_fresh_ && ahead == 0;
  s.eps = T(c.eps);
  switch (c.kind) {
    case Optim::adam:
    case Optim::adamw:
      s.b1 = T(c.beta1);
      s.b2 = T(c.beta2);
      s.step_size = T(c.lr / (1 - std::pow(c.beta1, t)));
      s.inv_sqrt_bc2 = T(1 / std::sqrt(1 - std::pow(c.beta2, t)));
      if (c.kind == Optim::adamw) {  // decoupled decay shrinks p; Adam adds wd p to the gradient
        s.shrink = T(1) - s.lr * s.wd;
        s.wd = T(0);
      }
      break;
    case Optim::rmsprop:
      s.alpha = T(c.alpha);
      break;
    case Optim::adagrad:
      s.lr = T(c.lr / (1 + (t - 1) * c.lr_decay));
      break;
    default:
      break;
  }
  // The buffers this rule and these settings use (prepare() allocated them).
  auto buffer = [&](int i, bool used) {
    return used && s_[i].size() == n_ ? s_[i].data() : nullptr;
  };
  const bool adam = c.kind == Optim::adam || c.kind == Optim::adamw;
  s.s[0] = buffer(0, c.kind != Optim::sgd || c.momentum != 0);
  s.s[1] = buffer(1, adam || (c.kind == Optim::rmsprop && c.centered));
  s.s[2] = buffer(2, c.kind == Optim::rmsprop && c.momentum > 0);
  return s;
}

template <class T>
void OptimizerState<T>::apply(const StepPlan<T>& s, T* p, const T* g, std::size_t begin,
                              std::size_t end) {
  const T lr = s.lr, wd = s.wd;
  switch (s.kind) {
    case Optim::sgd: {
      if (s.mom == T(0)) {
#pragma omp simd
        for (std::size_t i = begin; i < end; ++i) p[i] -= lr * (g[i] + wd * p[i]);
        break;
      }
      T* buf = s.s[0];
      const T mom = s.mom, damp = s.damp;
      const bool first = s.first, nesterov = s.nesterov;
#pragma omp simd
      for (std::size_t i = begin; i < end; ++i) {
        const T d = g[i] + wd * p[i];
        buf[i] = first ? d : mom * buf[i] + damp * d;
        p[i] -= lr * (nesterov ? d + mom * buf[i] : buf[i]);
      }
      break;
    }
    case Optim::adam:
    case Optim::adamw: {
      T* m = s.s[0];
      T* v = s.s[1];
      const T b1 = s.b1, b2 = s.b2, eps = s.eps, step_size = s.step_size;
      const T inv_sqrt_bc2 = s.inv_sqrt_bc2, shrink = s.shrink;
#pragma omp simd
      for (std::size_t i = begin; i < end; ++i) {
        const T d = g[i] + wd * p[i];
        p[i] *= shrink;
        m[i] = b1 * m[i] + (T(1) - b1) * d;
        v[i] = b2 * v[i] + (T(1) - b2) * d * d;
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
      }
      break;
    }
    case Optim::rmsprop: {
      T* sq = s.s[0];
      T* ga = s.s[1];
      T* buf = s.s[2];
      const T alpha = s.alpha, eps = s.eps, mom = s.mom;
      for (std::size_t i = begin; i < end; ++i) {
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
      }
      break;
    }
    case Optim::adagrad: {
      T* sum = s.s[0];
      const T eps = s.eps;
#pragma omp simd
      for (std::size_t i = begin; i < end; ++i) {
        const T d = g[i] + wd * p[i];
        sum[i] += d * d;
        p[i] -= lr * d / (std::sqrt(sum[i]) + eps);
      }
      break;
    }
    case Optim::line_search:  // refused by prepare()
      break;
  }
}

template <class T>
void OptimizerState<T>::commit(long steps) {
  t_ += steps;
  if (steps > 0) momentum_fresh_ = false;
}

template <class T>
void OptimizerState<T>::step(const OptimConfig& c, T* p, const T* g) {
  prepare(c);
  const StepPlan<T> s = plan(c, 0);
  parallel_ranges(n_, [&](std::size_t begin, std::size_t end) { apply(s, p, g, begin, end); });
  commit(1);
}

double clip_coefficient(double norm, double max_norm) {
  return std::min(1.0, max_norm / (norm + 1e-6));
}

template <class T>
void scale_range(T* g, std::size_t begin, std::size_t end, double coef) {
  const T c = T(coef);
#pragma omp simd
  for (std::size_t i = begin; i < end; ++i) g[i] *= c;
}

template <class T>
void clip_value_range(T* g, std::size_t begin, std::size_t end, double value) {
  const T v = T(value);
#pragma omp simd
  for (std::size_t i = begin; i < end; ++i) g[i] = std::min(std::max(g[i], -v), v);
}

template <class T>
void noise_range(T* g, std::size_t begin, std::size_t end, double eta, double gamma, uint64_t seed,
                 int64_t t) {
  const double std_dev = std::sqrt(eta / std::pow(1.0 + double(t), gamma));
  const CounterRng rng(seed, Stream::gradient_noise, uint64_t(t));
  for (std::size_t i = begin; i < end; ++i) g[i] += T(std_dev * rng.normal(uint64_t(i)));
}

template <class T>
double clip_grad_norm(T* g, std::size_t n, double max_norm) {
  const double norm = std::sqrt(sum_squares(g, n));
  const double coef = clip_coefficient(norm, max_norm);
  if (coef < 1)
    parallel_ranges(n, [=](std::size_t b, std::size_t e) { scale_range(g, b, e, coef); });
  return norm;
}

template <class T>
void clip_grad_value(T* g, std::size_t n, double value) {
  parallel_ranges(n, [=](std::size_t b, std::size_t e) { clip_value_range(g, b, e, value); });
}

template <class T>
void add_gradient_noise(T* g, std::size_t n, double eta, double gamma, uint64_t seed, int64_t t) {
  parallel_ranges(n,
                  [=](std::size_t b, std::size_t e) { noise_range(g, b, e, eta, gamma, seed, t); });
}

#define FASTBP_INSTANTIATE(T)                                                              \
  template class OptimizerState<T>;                                                        \
  template double clip_grad_norm<T>(T*, std::size_t, double);                              \
  template void clip_grad_value<T>(T*, std::size_t, double);                               \
  template void add_gradient_noise<T>(T*, std::size_t, double, double, uint64_t, int64_t); \
  template void scale_range<T>(T*, std::size_t, std::size_t, double);                      \
  template void clip_value_range<T>(T*, std::size_t, std::size_t, double);                 \
  template void noise_range<T>(T*, std::size_t, std::size_t, double, double, uint64_t, int64_t);
FASTBP_INSTANTIATE(float)
FASTBP_INSTANTIATE(double)

}  // namespace fastbp
