#include "optimizers.hpp"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "rng.hpp"

namespace fastbp {

// The rule is taken by value: its pointers and constants are locals the loop keeps in
// registers, not memory that the stores to p and the buffers might alias.
template <class Rule, class T>
void apply_rule(Rule rule, T* p, const T* g, std::size_t begin, std::size_t end) {
#pragma omp simd
  for (std::size_t i = begin; i < end; ++i) rule.update(p, g, i);
}

template <class T>
T* OptimizerState<T>::buffer(const std::string& name, bool* created) {
  LineVector<T>& b = buffers_[name];
  if (created) *created = b.size() != n_;
  if (b.size() != n_) b.assign(n_, T(0));
  return b.data();
}

template <class T>
void OptimizerState<T>::prepare(const OptimConfig& c) {
  rule_ = make_rule<T>(c);
  with_rule(rule_, [&](auto& rule) { rule.prepare(*this); });
}

template <class T>
StepPlan<T> OptimizerState<T>::plan(long ahead) const {
  StepPlan<T> plan = rule_;
  with_rule(plan,
            [&](auto& rule) { rule.plan(double(t_ + 1 + ahead), momentum_fresh_ && ahead == 0); });
  return plan;
}

template <class T>
void OptimizerState<T>::apply(const StepPlan<T>& plan, T* p, const T* g, std::size_t begin,
                              std::size_t end) {
  with_rule(plan, [&](const auto& rule) { apply_rule(rule, p, g, begin, end); });
}

template <class T>
void OptimizerState<T>::commit(long steps) {
  t_ += steps;
  if (steps > 0) momentum_fresh_ = false;
}

template <class T>
void OptimizerState<T>::step(const OptimConfig& c, T* p, const T* g) {
  prepare(c);
  const StepPlan<T> s = plan(0);
  parallel_ranges(n_, [&](std::size_t begin, std::size_t end) { apply(s, p, g, begin, end); });
  commit(1);
}

template <class T>
OptimizerStateDict<T> OptimizerState<T>::state_dict() const {
  return {t_, momentum_fresh_, buffers_};
}

template <class T>
void OptimizerState<T>::load_state_dict(OptimizerStateDict<T> d) {
  check_state_dict(d, n_);
  buffers_ = std::move(d.buffers);
  t_ = d.step;
  momentum_fresh_ = d.momentum_fresh;
  rule_ = std::monostate();  // its pointers were into the buffers replaced: prepare() again
}

template <class T>
void scale_range(T* g, std::size_t begin, std::size_t end, double coef) {
  if (scale_in_t<T>(coef)) {
    const T c = T(coef);
#pragma omp simd
    for (std::size_t i = begin; i < end; ++i) g[i] *= c;
  } else {
#pragma omp simd
    for (std::size_t i = begin; i < end; ++i) g[i] = T(double(g[i]) * coef);
  }
}

template <class T>
void clip_value_range(T* g, std::size_t begin, std::size_t end, double value) {
  const T v = T(value);
#pragma omp simd
  for (std::size_t i = begin; i < end; ++i) g[i] = std::min(std::max(g[i], -v), v);
}

// Entry i gets the first (i even) or second (i odd) normal of pair i / 2 of the stream (seed, t):
// the same value whichever range, and so whichever thread, computes it.
template <class T>
void noise_range(T* g, std::size_t begin, std::size_t end, double eta, double gamma, uint64_t seed,
                 int64_t t) {
  const T std_dev = T(noise_std(eta, gamma, t));
  const CounterRng rng(seed, Stream::gradient_noise, uint64_t(t));
  constexpr std::size_t kPairs = 64;  // normals drawn into a buffer, then added
  float z[2 * kPairs];
  for (std::size_t j0 = begin / 2; 2 * j0 < end; j0 += kPairs) {
#pragma omp simd
    for (std::size_t q = 0; q < kPairs; ++q) rng.normal_pair(j0 + q, z[2 * q], z[2 * q + 1]);
    const std::size_t i0 = std::max(begin, 2 * j0), i1 = std::min(end, 2 * (j0 + kPairs));
#pragma omp simd
    for (std::size_t i = i0; i < i1; ++i) g[i] += std_dev * T(z[i - 2 * j0]);
  }
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
