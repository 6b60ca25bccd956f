// The losses, one struct each, fused with their output activation. Z is the output layer's
// pre-activation (n x k), A its activation (softmax rows for cross-entropy, sigmoid for binary
// cross-entropy, f(Z) for mse). Targets are rows aligned with Z: dense (n x k) values or (n,)
// integer class labels.
//
// Each struct says
//   name     the string Python passes;
//   output   the output activation: the default one, or the only one where fused;
//   fused    true: the loss is written from the logits z and its gradient is dLoss/dz directly
//            (only `output` is allowed); false: the gradient is dLoss/da, chained through the
//            output activation's derivative, and any output activation is allowed;
//   labels   whether targets may be integer class labels (label_row) besides dense rows;
//   classification  whether its targets are classes: accuracy is counted (`correct`) and
//            Python's predict returns labels;
// and gives the per-sample loss of one row of k outputs, with, if d is not null,
// d = scale * its gradient (scale = 1/batch size gives the gradient of the batch mean).
//
// To add a loss, write its struct and add it to FASTBP_LOSSES.
#pragma once
#include <cmath>
#include <cstdint>

#include "activations.hpp"

namespace fastbp {

struct LossSums {
  double loss = 0;     // sum over the rows of the per-sample loss
  double correct = 0;  // classification: rows predicted right (binary: share of outputs per row)
};

// 1/2 sum_k (a_k - t_k)^2
struct MeanSquaredError {
  static constexpr const char* name = "mse";
  static constexpr Act output = Act::identity;
  static constexpr bool fused = false;
  static constexpr bool labels = false;
  static constexpr bool classification = false;
  template <class T>
  FASTBP_HD FASTBP_INLINE static LossSums dense_row(const T*, const T* a, const T* t, int k,
                                                    T scale, T* d) {
    double l = 0;
    for (int j = 0; j < k; ++j) {
      const T e = a[j] - t[j];
      l += double(e) * e;
      if (d) d[j] = scale * e;
    }
    return {0.5 * l, 0};
  }
};

// -log softmax(z)_y = logsumexp(z) - z_y, computed from the logits: never log(0). With
// probability rows t: sum_j t_j (logsumexp(z) - z_j).
struct CrossEntropy {
  static constexpr const char* name = "cross_entropy";
  static constexpr Act output = Act::softmax;
  static constexpr bool fused = true;
  static constexpr bool labels = true;
  static constexpr bool classification = true;
  template <class T>
  FASTBP_HD FASTBP_INLINE static double logsumexp(const T* z, int k) {
    const T m = z[argmax(z, k)];
    double se = 0;
    for (int j = 0; j < k; ++j) se += std::exp(double(z[j] - m));
    return double(m) + std::log(se);
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static LossSums label_row(const T* z, const T* a, int32_t c, int k,
                                                    T scale, T* d) {
    if (d) {
      for (int j = 0; j < k; ++j) d[j] = scale * a[j];
      d[c] -= scale;
    }
    return {logsumexp(z, k) - double(z[c]), double(argmax(z, k) == c)};
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static LossSums dense_row(const T* z, const T* a, const T* t, int k,
                                                    T scale, T* d) {
    const double lse = logsumexp(z, k);
    double l = 0, tsum = 0;
    for (int j = 0; j < k; ++j) {
      l += double(t[j]) * (lse - double(z[j]));
      tsum += t[j];
    }
    if (d)
      for (int j = 0; j < k; ++j) d[j] = scale * (a[j] * T(tsum) - t[j]);
    return {l, double(argmax(z, k) == argmax(t, k))};
  }
};

// sum_k of the logistic loss of z_k from the logits: max(z, 0) - t z + log(1 + e^-|z|).
struct BinaryCrossEntropy {
  static constexpr const char* name = "binary_cross_entropy";
  static constexpr Act output = Act::sigmoid;
  static constexpr bool fused = true;
  static constexpr bool labels = false;
  static constexpr bool classification = true;
  template <class T>
  FASTBP_HD FASTBP_INLINE static LossSums dense_row(const T* z, const T* a, const T* t, int k,
                                                    T scale, T* d) {
    double l = 0, hits = 0;
    for (int j = 0; j < k; ++j) {
      const double zj = z[j];
      l += (zj < 0.0 ? 0.0 : zj) - double(t[j]) * zj + std::log1p(std::exp(-std::fabs(zj)));
      hits += (zj > 0) == (t[j] >= T(0.5));
      if (d) d[j] = scale * (a[j] - t[j]);
    }
    return {l, hits / k};
  }
};

// X(enum name, struct), in the order of loss_names().
#define FASTBP_LOSSES(X)         \
  X(mse, MeanSquaredError)       \
  X(cross_entropy, CrossEntropy) \
  X(binary_cross_entropy, BinaryCrossEntropy)

enum class Loss : int {
#define FASTBP_ENUM_ENTRY(id, Type) id,
  FASTBP_LOSSES(FASTBP_ENUM_ENTRY)
#undef FASTBP_ENUM_ENTRY
};

#define FASTBP_CHECK_NAME(id, Type) \
  static_assert(same_name(#id, Type::name), "the enum entry and the name of " #Type " differ");
FASTBP_LOSSES(FASTBP_CHECK_NAME)
#undef FASTBP_CHECK_NAME

// f(L{}) with L the struct of loss `loss`: the one switch over the losses.
template <class F>
FASTBP_INLINE decltype(auto) with_loss(Loss loss, F&& f) {
  switch (loss) {
#define FASTBP_CASE(id, Type) \
  case Loss::id:              \
    return f(Type{});
    FASTBP_LOSSES(FASTBP_CASE)
#undef FASTBP_CASE
  }
  return f(MeanSquaredError{});  // not reached: every Loss has its case
}

inline Loss parse_loss(const std::string& name) {
#define FASTBP_PARSE(id, Type) \
  if (name == Type::name) return Loss::id;
  FASTBP_LOSSES(FASTBP_PARSE)
#undef FASTBP_PARSE
  throw std::invalid_argument("unknown loss '" + name + "'");
}

// What Python needs to know of each loss, in the list's order.
struct LossInfo {
  std::string name, output;
  bool fused, labels, classification;
};
inline std::vector<LossInfo> loss_table() {
  return {
#define FASTBP_INFO(id, Type) \
  {Type::name, activation_name(Type::output), Type::fused, Type::labels, Type::classification},
      FASTBP_LOSSES(FASTBP_INFO)
#undef FASTBP_INFO
  };
}
inline std::vector<std::string> loss_names() {
  std::vector<std::string> names;
  for (const LossInfo& l : loss_table()) names.push_back(l.name);
  return names;
}

// Whether the output activation `out` may go with `loss` ("" if so, else why not).
inline std::string loss_output_mismatch(Loss loss, Act out) {
  return with_loss(loss, [out](auto kind) {
    using L = decltype(kind);
    if (!L::fused || out == L::output) return std::string();
    return std::string(L::name) + " needs the " + activation_name(L::output) + " output activation";
  });
}
// Whether targets for `loss` may be integer class labels ("" if so, else why not).
inline std::string loss_labels_mismatch(Loss loss) {
  if (with_loss(loss, [](auto kind) { return decltype(kind)::labels; })) return "";
  std::string takers;
  for (const LossInfo& l : loss_table())
    if (l.labels) takers += (takers.empty() ? "" : " or ") + l.name;
  return "integer labels Y are for " + takers + " only";
}

template <class T>
struct Target {
  const T* dense = nullptr;         // (n x k), or
  const int32_t* labels = nullptr;  // (n,) class indices, for a loss that takes labels
};

template <class L, class T>
FASTBP_INLINE LossSums loss_row(const T* z, const T* a, Target<T> y, int i, int k, T scale, T* d) {
  if constexpr (L::labels) {
    if (y.labels) return L::label_row(z, a, y.labels[i], k, scale, d);
  }
  return L::dense_row(z, a, y.dense + std::size_t(i) * k, k, scale, d);
}

// Per-sample losses summed over the n rows; if dZ is given, dZ = scale * dLoss/dZ.
template <class T>
LossSums loss_forward_backward(Loss loss, Act out, const T* Z, const T* A, Target<T> y, int n,
                               int k, T scale, T* dZ) {
  return with_loss(loss, [&](auto kind) {
    using L = decltype(kind);
    LossSums s;
    for (int i = 0; i < n; ++i) {
      const std::size_t r = std::size_t(i) * k;
      const LossSums row = loss_row<L>(Z + r, A + r, y, i, k, scale, dZ ? dZ + r : nullptr);
      s.loss += row.loss;
      s.correct += row.correct;
    }
    if (!L::fused && dZ) activation_backward(out, Z, A, dZ, n, k);
    return s;
  });
}

}  // namespace fastbp
