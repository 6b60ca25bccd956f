// Losses fused with their output activation. Z is the output layer's pre-activation (n x k),
// A its activation (softmax rows for cross-entropy, sigmoid for binary cross-entropy, f(Z) for
// mse). Targets are rows aligned with Z: dense (n x k) values or (n,) integer class labels.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "activations.hpp"

namespace fastbp {

template <class T>
struct Target {
  const T* dense = nullptr;         // (n x k), or
  const int32_t* labels = nullptr;  // (n,) class indices, cross-entropy only
};

// Row-wise softmax, shifted by the row maximum so exp never overflows.
template <class T>
void softmax_rows(const T* Z, T* A, int n, int k) {
  for (int i = 0; i < n; ++i) {
    const T* z = Z + std::size_t(i) * k;
    T* a = A + std::size_t(i) * k;
    const T m = *std::max_element(z, z + k);
    T s = 0;
    for (int j = 0; j < k; ++j) s += (a[j] = std::exp(z[j] - m));
    const T inv = T(1) / s;
    for (int j = 0; j < k; ++j) a[j] *= inv;
  }
}

template <class T>
void output_forward(Act out, const T* Z, T* A, int n, int k) {
  if (out == Act::softmax)
    softmax_rows(Z, A, n, k);
  else
    activation_forward(out, Z, A, std::size_t(n) * k);
}

template <class T>
inline int argmax(const T* v, int k) {
  return int(std::max_element(v, v + k) - v);
}

struct LossSums {
  double loss = 0;     // sum over the rows of the per-sample loss
  double correct = 0;  // classification: rows predicted right (binary: share of outputs per row)
};

// Per-sample losses summed over the n rows; if dZ is given, dZ = scale * dLoss/dZ
// (scale = 1/batch size gives the gradient of the batch mean).
template <class T>
LossSums loss_forward_backward(Loss loss, Act out, const T* Z, const T* A, Target<T> y, int n,
                               int k, T scale, T* dZ) {
  LossSums s;
  for (int i = 0; i < n; ++i) {
    const std::size_t r = std::size_t(i) * k;
    const T* z = Z + r;
    const T* a = A + r;
    T* d = dZ ? dZ + r : nullptr;
    switch (loss) {
      case Loss::mse: {
        const T* t = y.dense + r;
        double l = 0;
        for (int j = 0; j < k; ++j) {
          const T e = a[j] - t[j];
          l += double(e) * e;
          if (d) d[j] = scale * e;
        }
        s.loss += 0.5 * l;
        break;
      }
      case Loss::cross_entropy: {
        // -log softmax(z)_y = logsumexp(z) - z_y, computed from the logits: never log(0).
        const T m = *std::max_element(z, z + k);
        double se = 0;
        for (int j = 0; j < k; ++j) se += std::exp(double(z[j] - m));
        const double lse = double(m) + std::log(se);
        if (y.labels) {
          const int c = y.labels[i];
          s.loss += lse - double(z[c]);
          s.correct += argmax(z, k) == c;
          if (d) {
            for (int j = 0; j < k; ++j) d[j] = scale * a[j];
            d[c] -= scale;
          }
        } else {
          const T* t = y.dense + r;
          double l = 0, tsum = 0;
          for (int j = 0; j < k; ++j) {
            l += double(t[j]) * (lse - double(z[j]));
            tsum += t[j];
          }
          s.loss += l;
          s.correct += argmax(z, k) == argmax(t, k);
          if (d)
            for (int j = 0; j < k; ++j) d[j] = scale * (a[j] * T(tsum) - t[j]);
        }
        break;
      }
      case Loss::binary_cross_entropy: {
        // logistic loss from logits: max(z,0) - y z + log(1 + e^-|z|)
        const T* t = y.dense + r;
        double l = 0, hits = 0;
        for (int j = 0; j < k; ++j) {
          const double zj = z[j];
          l += std::max(zj, 0.0) - double(t[j]) * zj + std::log1p(std::exp(-std::abs(zj)));
          hits += (zj > 0) == (t[j] >= T(0.5));
          if (d) d[j] = scale * (a[j] - t[j]);
        }
        s.loss += l;
        s.correct += hits / k;
        break;
      }
    }
  }
  // mse with a non-identity output activation: chain through f'(z). Softmax mixes a row's
  // outputs: dz_j = a_j (d_j - sum_m a_m d_m).
  if (dZ && loss == Loss::mse) {
    if (out == Act::softmax) {
      for (int i = 0; i < n; ++i) {
        const T* a = A + std::size_t(i) * k;
        T* d = dZ + std::size_t(i) * k;
        T dot = 0;
        for (int j = 0; j < k; ++j) dot += a[j] * d[j];
        for (int j = 0; j < k; ++j) d[j] = a[j] * (d[j] - dot);
      }
    } else {
      activation_backward(out, Z, A, dZ, std::size_t(n) * k);
    }
  }
  return s;
}

}  // namespace fastbp
