// Each activation's forward and derivative, side by side. All are elementwise over n values.
// forward: a = f(z).  backward: dz = da * f'(z), where f' may be cheaper from the output a
// (sigmoid and tanh need only a; elu, for z <= 0, has f'(z) = a + 1).
#pragma once
#include <cmath>
#include <cstddef>

#include "common.hpp"
#include "fastmath.hpp"

namespace fastbp {

template <class T>
FASTBP_INLINE T
sigmoid(T z) {  // exp(-z) may overflow to inf for very negative z: 1/inf = 0, no NaN
  return T(1) / (T(1) + fast_exp(-z));
}

template <class T>
FASTBP_INLINE T softplus(T z) {  // log(1 + e^z) without overflow
  return std::max(z, T(0)) + std::log1p(fast_exp(-std::abs(z)));
}

template <class T>
FASTBP_INLINE T gelu(T z) {
  return T(0.5) * z * (T(1) + std::erf(z * T(0.70710678118654752440)));
}

template <class T>
FASTBP_INLINE T gelu_grad(T z) {  // Phi(z) + z * phi(z)
  const T cdf = T(0.5) * (T(1) + std::erf(z * T(0.70710678118654752440)));
  const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * z * z);
  return cdf + z * pdf;
}

constexpr double kLeakySlope = 0.01;

// a[i] = f(z[i]) for i < n.
template <class T>
void activation_forward(Act act, const T* z, T* a, std::size_t n) {
  const long nn = long(n);
  switch (act) {
    case Act::identity:
      if (a != z) std::copy(z, z + n, a);
      break;
    case Act::sigmoid:
      parallel_for(nn, [=](long i) { a[i] = sigmoid(z[i]); });
      break;
    case Act::tanh:
      parallel_for(nn, [=](long i) { a[i] = fast_tanh(z[i]); });
      break;
    case Act::relu:
      parallel_for(nn, [=](long i) { a[i] = z[i] > T(0) ? z[i] : T(0); });
      break;
    case Act::leaky_relu:
      parallel_for(nn, [=](long i) { a[i] = z[i] > T(0) ? z[i] : T(kLeakySlope) * z[i]; });
      break;
    case Act::elu:
      parallel_for(nn, [=](long i) { a[i] = z[i] > T(0) ? z[i] : std::expm1(z[i]); });
      break;
    case Act::softplus:
      parallel_for(nn, [=](long i) { a[i] = softplus(z[i]); });
      break;
    case Act::gelu:
      parallel_for(nn, [=](long i) { a[i] = gelu(z[i]); });
      break;
    case Act::silu:
      parallel_for(nn, [=](long i) { a[i] = z[i] * sigmoid(z[i]); });
      break;
    case Act::softmax:  // row-wise, in losses.hpp; never thrown here (this may run in a team)
      break;
  }
}

// d[i] *= f'(z[i]) for i < n: turns dL/da into dL/dz in place.
template <class T>
void activation_backward(Act act, const T* z, const T* a, T* d, std::size_t n) {
  const long nn = long(n);
  switch (act) {
    case Act::identity:
      break;
    case Act::sigmoid:
      parallel_for(nn, [=](long i) { d[i] *= a[i] * (T(1) - a[i]); });
      break;
    case Act::tanh:
      parallel_for(nn, [=](long i) { d[i] *= T(1) - a[i] * a[i]; });
      break;
    case Act::relu:
      parallel_for(nn, [=](long i) { d[i] = z[i] > T(0) ? d[i] : T(0); });
      break;
    case Act::leaky_relu:
      parallel_for(nn, [=](long i) { d[i] *= z[i] > T(0) ? T(1) : T(kLeakySlope); });
      break;
    case Act::elu:
      parallel_for(nn, [=](long i) { d[i] *= z[i] > T(0) ? T(1) : a[i] + T(1); });
      break;
    case Act::softplus:
      parallel_for(nn, [=](long i) { d[i] *= sigmoid(z[i]); });
      break;
    case Act::gelu:
      parallel_for(nn, [=](long i) { d[i] *= gelu_grad(z[i]); });
      break;
    case Act::silu:
      parallel_for(nn, [=](long i) {
        const T s = sigmoid(z[i]);
        d[i] *= s * (T(1) + z[i] * (T(1) - s));
      });
      break;
    case Act::softmax:  // row-wise, in losses.hpp
      break;
  }
}

}  // namespace fastbp
