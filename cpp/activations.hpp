// The activations, one struct each: its forward a = f(z) beside its derivative f'(z, a), which
// may be cheaper from the output a (sigmoid and tanh need only a; elu, for z <= 0, has
// f' = a + 1). The scalar functions are FASTBP_HD, so the CUDA backend compiles these same
// formulas. Each lets a NaN through: a NaN anywhere in a network must show in its outputs.
//
// Besides the formulas each struct says
//   name       the string Python passes;
//   hidden     whether a hidden layer may use it (softmax is an output activation only);
//   auto_init  the initialisation init="auto" picks for the layer before it: "he" or "xavier";
//   measure    what activation_stats reports for its layers: the share of saturated outputs
//              (saturated(a): where f' nearly vanishes), the share of dead units (active(a):
//              no sample makes the unit active), or nothing;
//   bins       the bins of its outputs' histogram in layer_stats (Bins, below).
//
// To add an activation, write its struct and add it to FASTBP_ACTIVATIONS: the enum, the
// names, parsing, activation_table() (which Python reads) and the loops follow from the list.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "fastmath.hpp"

namespace fastbp {

enum class Measure { none, saturation, dead };

// The coarse histogram of a layer's outputs that layer_stats records each epoch (fastai's
// "colorful dimension"): kHistBins bins, fixed per activation kind so that epochs, layers and
// runs compare. Bin b holds the outputs a with edge[b-1] <= a < edge[b], where edge[-1] = -inf
// and edge[kHistBins-1] = +inf: outputs beyond the outer edges land in the end bins, NaN in none.
//   unit        [0, 1] in steps of 0.05: edges 0.05, 0.1, ..., 0.95 (sigmoid, softmax);
//   symmetric   [-1, 1] in steps of 0.1: edges -0.9, -0.8, ..., 0.9 (tanh);
//   log         below 1e-3 (the zeros of inactive units), then half-decades: edges 1e-3,
//               10^-2.5, 1e-2, ..., 10^5.5, 1e6 (relu, softplus: outputs >= 0);
//   signed_log  decades on either side of 0: edges -1e6, -1e5, ..., -1e-2, 0, 1e-2, ...,
//               1e5, 1e6 (identity, leaky_relu, elu, gelu, silu).
// The unbounded kinds use a log scale so that a signal growing through the layers stays in
// view (a forward explosion moves the mass a decade at a time) instead of piling up in a
// clipped end bin.
enum class Bins { unit, symmetric, log, signed_log };
constexpr int kHistBins = 20;

// The kHistBins - 1 inner edges of `bins`, increasing.
inline std::array<double, kHistBins - 1> histogram_edges(Bins bins) {
  std::array<double, kHistBins - 1> edges{};
  for (int k = 0; k < kHistBins - 1; ++k) {
    switch (bins) {
      case Bins::unit:
        edges[k] = (k + 1) / 20.0;
        break;
      case Bins::symmetric:
        edges[k] = (k - 9) / 10.0;
        break;
      case Bins::log:
        edges[k] = std::pow(10.0, -3.0 + 0.5 * k);
        break;
      case Bins::signed_log:  // k = 9 is 0; k = 9 -+ j is -+10^(j - 3)
        edges[k] = k == 9 ? 0.0 : (k < 9 ? -1.0 : 1.0) * std::pow(10.0, std::abs(k - 9) - 3.0);
        break;
    }
  }
  return edges;
}

template <class T>
FASTBP_HD FASTBP_INLINE int argmax(const T* v, int k) {  // the first maximum of v[0..k)
  int best = 0;
  for (int j = 1; j < k; ++j)
    if (v[best] < v[j]) best = j;
  return best;
}

struct Identity {
  static constexpr const char* name = "identity";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "xavier";
  static constexpr Measure measure = Measure::none;
  static constexpr Bins bins = Bins::signed_log;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {
    return z;
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T, T) {
    return T(1);
  }
};

struct Sigmoid {
  static constexpr const char* name = "sigmoid";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "xavier";
  static constexpr Measure measure = Measure::saturation;
  static constexpr Bins bins = Bins::unit;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {  // e^-z may overflow to inf: 1/inf = 0, no NaN
    return T(1) / (T(1) + fast_exp(-z));
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T, T a) {
    return a * (T(1) - a);
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static bool saturated(T a) {
    return a < T(0.01) || a > T(0.99);
  }
};

struct Tanh {
  static constexpr const char* name = "tanh";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "xavier";
  static constexpr Measure measure = Measure::saturation;
  static constexpr Bins bins = Bins::symmetric;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {
    return fast_tanh(z);
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T, T a) {
    return T(1) - a * a;
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static bool saturated(T a) {
    return std::fabs(a) > T(0.99);
  }
};

struct Relu {
  static constexpr const char* name = "relu";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "he";
  static constexpr Measure measure = Measure::dead;
  static constexpr Bins bins = Bins::log;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {  // a NaN compares false: it passes through
    return z <= T(0) ? T(0) : z;
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T z, T) {  // 0 at z <= 0: multiplies, so 0 * NaN
    return z > T(0) ? T(1) : T(0);                       // is still NaN
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static bool active(T a) {
    return a > T(0);
  }
};

struct LeakyRelu {
  static constexpr const char* name = "leaky_relu";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "he";
  static constexpr Measure measure = Measure::none;
  static constexpr Bins bins = Bins::signed_log;
  static constexpr double slope = 0.01;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {
    return z > T(0) ? z : T(slope) * z;
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T z, T) {
    return z > T(0) ? T(1) : T(slope);
  }
};

struct Elu {  // alpha = 1
  static constexpr const char* name = "elu";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "he";
  static constexpr Measure measure = Measure::none;
  static constexpr Bins bins = Bins::signed_log;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {
    return z > T(0) ? z : std::expm1(z);
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T z, T a) {
    return z > T(0) ? T(1) : a + T(1);
  }
};

struct Softplus {
  static constexpr const char* name = "softplus";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "xavier";
  static constexpr Measure measure = Measure::none;
  static constexpr Bins bins = Bins::log;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {  // log(1 + e^z) without overflow
    return (z < T(0) ? T(0) : z) + std::log1p(fast_exp(-std::fabs(z)));
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T z, T) {
    return Sigmoid::forward(z);
  }
};

struct Gelu {  // x Phi(x), the erf form
  static constexpr const char* name = "gelu";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "he";
  static constexpr Measure measure = Measure::none;
  static constexpr Bins bins = Bins::signed_log;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {
    return T(0.5) * z * (T(1) + std::erf(z * T(0.70710678118654752440)));
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T z, T) {  // Phi(z) + z phi(z)
    const T cdf = T(0.5) * (T(1) + std::erf(z * T(0.70710678118654752440)));
    const T pdf = T(0.39894228040143267794) * std::exp(T(-0.5) * z * z);
    return cdf + z * pdf;
  }
};

struct Silu {  // x sigmoid(x)
  static constexpr const char* name = "silu";
  static constexpr bool hidden = true;
  static constexpr const char* auto_init = "he";
  static constexpr Measure measure = Measure::none;
  static constexpr Bins bins = Bins::signed_log;
  template <class T>
  FASTBP_HD FASTBP_INLINE static T forward(T z) {
    return z * Sigmoid::forward(z);
  }
  template <class T>
  FASTBP_HD FASTBP_INLINE static T derivative(T z, T) {
    const T s = Sigmoid::forward(z);
    return s * (T(1) + z * (T(1) - s));
  }
};

// Row-wise: each output depends on its whole row of k, so softmax is no elementwise function
// and no hidden activation. Its forward and backward take one row.
struct Softmax {
  static constexpr const char* name = "softmax";
  static constexpr bool hidden = false;
  static constexpr const char* auto_init = "xavier";
  static constexpr Measure measure = Measure::none;
  static constexpr Bins bins = Bins::unit;
  template <class T>
  FASTBP_HD FASTBP_INLINE static void forward_row(const T* z, T* a, int k) {
    const T m = z[argmax(z, k)];  // shifted by the row maximum so exp never overflows
    T s = 0;
    for (int j = 0; j < k; ++j) s += (a[j] = std::exp(z[j] - m));
    const T inv = T(1) / s;
    for (int j = 0; j < k; ++j) a[j] *= inv;
  }
  // d (dLoss/da) becomes dLoss/dz: dz_j = a_j (d_j - sum_m a_m d_m).
  template <class T>
  FASTBP_HD FASTBP_INLINE static void backward_row(const T* a, T* d, int k) {
    T dot = 0;
    for (int j = 0; j < k; ++j) dot += a[j] * d[j];
    for (int j = 0; j < k; ++j) d[j] = a[j] * (d[j] - dot);
  }
};

// X(enum name, struct), in the order of activation_table(); softmax, the output-only one, last.
#define FASTBP_ACTIVATIONS(X) \
  X(identity, Identity)       \
  X(sigmoid, Sigmoid)         \
  X(tanh, Tanh)               \
  X(relu, Relu)               \
  X(leaky_relu, LeakyRelu)    \
  X(elu, Elu)                 \
  X(softplus, Softplus)       \
  X(gelu, Gelu)               \
  X(silu, Silu)               \
  X(softmax, Softmax)

enum class Act : int {
#define FASTBP_ENUM_ENTRY(id, Type) id,
  FASTBP_ACTIVATIONS(FASTBP_ENUM_ENTRY)
#undef FASTBP_ENUM_ENTRY
};

constexpr bool same_name(const char* a, const char* b) {
  return *a == *b && (*a == '\0' || same_name(a + 1, b + 1));
}
#define FASTBP_CHECK_NAME(id, Type) \
  static_assert(same_name(#id, Type::name), "the enum entry and the name of " #Type " differ");
FASTBP_ACTIVATIONS(FASTBP_CHECK_NAME)
#undef FASTBP_CHECK_NAME

// f(A{}) with A the struct of activation act: the one switch over the activations.
template <class F>
FASTBP_INLINE decltype(auto) with_activation(Act act, F&& f) {
  switch (act) {
#define FASTBP_CASE(id, Type) \
  case Act::id:               \
    return f(Type{});
    FASTBP_ACTIVATIONS(FASTBP_CASE)
#undef FASTBP_CASE
  }
  return f(Identity{});  // not reached: every Act has its case
}

inline const char* activation_name(Act act) {
  return with_activation(act, [](auto a) { return decltype(a)::name; });
}
inline bool activation_hidden(Act act) {
  return with_activation(act, [](auto a) { return decltype(a)::hidden; });
}
inline Measure activation_measure(Act act) {
  return with_activation(act, [](auto a) { return decltype(a)::measure; });
}
inline Bins activation_bins(Act act) {
  return with_activation(act, [](auto a) { return decltype(a)::bins; });
}

inline Act parse_activation(const std::string& name) {
#define FASTBP_PARSE(id, Type) \
  if (name == Type::name) return Act::id;
  FASTBP_ACTIVATIONS(FASTBP_PARSE)
#undef FASTBP_PARSE
  throw std::invalid_argument("unknown activation '" + name + "'");
}

// What Python needs to know of each activation, in the list's order.
struct ActivationInfo {
  std::string name;
  bool hidden;
  std::string auto_init;
  std::array<double, kHistBins - 1> hist_edges;
};
inline std::vector<ActivationInfo> activation_table() {
  return {
#define FASTBP_INFO(id, Type) \
  {Type::name, Type::hidden, Type::auto_init, histogram_edges(Type::bins)},
      FASTBP_ACTIVATIONS(FASTBP_INFO)
#undef FASTBP_INFO
  };
}

// a = f(z) over a (rows, cols) row-major block; a may be z. Elementwise activations run one
// vectorised loop over the whole block (split over threads when long); softmax goes row by row.
template <class T>
void activation_forward(Act act, const T* z, T* a, int rows, int cols) {
  const std::size_t n = std::size_t(rows) * cols;
  with_activation(act, [=](auto kind) {
    using A = decltype(kind);
    if constexpr (std::is_same_v<A, Softmax>) {
      for (int i = 0; i < rows; ++i)
        A::forward_row(z + std::size_t(i) * cols, a + std::size_t(i) * cols, cols);
    } else if constexpr (std::is_same_v<A, Identity>) {
      if (a != z) std::copy(z, z + n, a);
    } else {
      parallel_for(long(n), [=](long i) { a[i] = A::forward(z[i]); });
    }
  });
}

// d *= f'(z) over a (rows, cols) block: turns dLoss/da into dLoss/dz in place, given the
// forward's z and a.
template <class T>
void activation_backward(Act act, const T* z, const T* a, T* d, int rows, int cols) {
  const std::size_t n = std::size_t(rows) * cols;
  with_activation(act, [=](auto kind) {
    using A = decltype(kind);
    if constexpr (std::is_same_v<A, Softmax>) {
      for (int i = 0; i < rows; ++i)
        A::backward_row(a + std::size_t(i) * cols, d + std::size_t(i) * cols, cols);
    } else if constexpr (!std::is_same_v<A, Identity>) {
      parallel_for(long(n), [=](long i) { d[i] *= A::derivative(z[i], a[i]); });
    }
  });
}

}  // namespace fastbp
