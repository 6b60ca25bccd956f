#include "network.hpp"

#include <atomic>
#include <cmath>
#include <limits>

#include "gemm.hpp"

namespace fastbp {

template <class T>
Network<T>::Network(std::vector<int> sizes, std::vector<Act> hidden, Act out, Loss loss)
    : sizes_(std::move(sizes)), acts_(std::move(hidden)), loss_(loss) {
  require(sizes_.size() >= 2, "layer_sizes needs at least 2 entries (inputs and outputs)");
  for (int s : sizes_) require(s > 0, "layer_sizes entries must be positive");
  require(acts_.size() == sizes_.size() - 2, "one hidden activation per hidden layer is needed");
  for (Act a : acts_) require(a != Act::softmax, "softmax is only an output activation");
  require(loss != Loss::cross_entropy || out == Act::softmax,
          "cross_entropy needs the softmax output activation");
  require(loss != Loss::binary_cross_entropy || out == Act::sigmoid,
          "binary_cross_entropy needs the sigmoid output activation");
  require(loss != Loss::mse || out != Act::softmax, "mse does not take a softmax output");
  acts_.push_back(out);
  std::size_t total = 0;
  for (int l = 0; l < n_layers(); ++l) {
    w_off_.push_back(total);
    total += std::size_t(sizes_[l] + 1) * sizes_[l + 1];
  }
  params_.assign(total, T(0));
  grads_.assign(total, T(0));
  z_.resize(n_layers());
  a_.resize(n_layers());
}

template <class T>
void Network<T>::ensure_capacity(int n) {
  if (n <= capacity_) return;
  int widest = 0;
  for (int l = 0; l < n_layers(); ++l) {
    z_[l].resize(std::size_t(n) * sizes_[l + 1]);
    a_[l].resize(std::size_t(n) * sizes_[l + 1]);
    widest = std::max(widest, sizes_[l + 1]);
  }
  for (auto& d : delta_) d.resize(std::size_t(n) * widest);
  capacity_ = n;
}

// Z_l = A_{l-1} W_l + b_l, A_l = f_l(Z_l): X is (n, n_in), Z_l and A_l are (n, n_l).
template <class T>
void Network<T>::forward_batch(const T* X, int n) {
  ensure_capacity(n);
  for (int l = 0; l < n_layers(); ++l) {
    const int in = sizes_[l], out = sizes_[l + 1];
    T* z = z_[l].data();
    const T* b = params_.data() + b_offset(l);
    for (int i = 0; i < n; ++i) std::copy(b, b + out, z + std::size_t(i) * out);
    gemm<T>(false, false, n, out, in, T(1), layer_input(X, l), in, params_.data() + w_off_[l],
            out, T(1), z, out);
    output_forward(acts_[l], z, a_[l].data(), n, out);
  }
}

template <class T>
void Network<T>::forward(const T* X, long n, T* out) {
  const int k = n_out();
  for (long r = 0; r < n; r += kChunk) {
    const int m = int(std::min<long>(kChunk, n - r));
    forward_batch(X + r * n_in(), m);
    std::copy(a_.back().data(), a_.back().data() + std::size_t(m) * k, out + r * k);
  }
}

template <class T>
static Target<T> rows_from(Target<T> y, long first, int k) {
  Target<T> t;
  if (y.labels) t.labels = y.labels + first;
  if (y.dense) t.dense = y.dense + first * k;
  return t;
}

template <class T>
LossSums Network<T>::evaluate(const T* X, Target<T> y, long n) {
  LossSums total;
  const int k = n_out(), L = n_layers();
  for (long r = 0; r < n; r += kChunk) {
    const int m = int(std::min<long>(kChunk, n - r));
    forward_batch(X + r * n_in(), m);
    const LossSums s = loss_forward_backward<T>(loss_, acts_[L - 1], z_[L - 1].data(),
                                                a_[L - 1].data(), rows_from(y, r, k), m, k, T(0),
                                                nullptr);
    total.loss += s.loss;
    total.correct += s.correct;
  }
  return total;
}

// dZ_L from the loss; then for each layer, last to first:
//   gW_l = A_{l-1}^T dZ_l (n_in x n_out), gb_l = column sums of dZ_l,
//   dA_{l-1} = dZ_l W_l^T (n x n_in), dZ_{l-1} = dA_{l-1} * f'(Z_{l-1}).
template <class T>
LossSums Network<T>::backward(const T* X, Target<T> y, int n) {
  forward_batch(X, n);
  const int L = n_layers();
  T* dz = delta_[0].data();
  T* dprev = delta_[1].data();
  const LossSums s = loss_forward_backward<T>(loss_, acts_[L - 1], z_[L - 1].data(),
                                              a_[L - 1].data(), y, n, n_out(), T(1) / T(n), dz);
  for (int l = L - 1; l >= 0; --l) {
    const int in = sizes_[l], out = sizes_[l + 1];
    gemm<T>(true, false, in, out, n, T(1), layer_input(X, l), in, dz, out, T(0),
            grads_.data() + w_off_[l], out);
    T* gb = grads_.data() + b_offset(l);
    std::fill(gb, gb + out, T(0));
    for (int i = 0; i < n; ++i) {
      const T* row = dz + std::size_t(i) * out;
      for (int j = 0; j < out; ++j) gb[j] += row[j];
    }
    if (l > 0) {
      gemm<T>(false, true, n, in, out, T(1), dz, out, params_.data() + w_off_[l], out, T(0), dprev,
              in);
      activation_backward(acts_[l - 1], z_[l - 1].data(), a_[l - 1].data(), dprev,
                          std::size_t(n) * in);
      std::swap(dz, dprev);
    }
  }
  return s;
}

template <class T>
void Network<T>::weight_grad_sq(double* out) const {
  for (int l = 0; l < n_layers(); ++l) out[l] = sum_squares(grads_.data() + w_off_[l], w_size(l));
}

template <class T>
void Network<T>::activation_stats(const T* X, long n, double* saturation, double* dead) {
  const int L = n_layers();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> saturated(L, 0.0);
  std::vector<std::vector<char>> alive(L);
  for (int l = 0; l < L; ++l) alive[l].assign(sizes_[l + 1], 0);
  for (long r = 0; r < n; r += kChunk) {
    const int m = int(std::min<long>(kChunk, n - r));
    forward_batch(X + r * n_in(), m);
    for (int l = 0; l < L; ++l) {
      const int w = sizes_[l + 1];
      const T* a = a_[l].data();
      const std::size_t count = std::size_t(m) * w;
      if (acts_[l] == Act::sigmoid) {
        for (std::size_t i = 0; i < count; ++i) saturated[l] += a[i] < T(0.01) || a[i] > T(0.99);
      } else if (acts_[l] == Act::tanh) {
        for (std::size_t i = 0; i < count; ++i) saturated[l] += std::abs(a[i]) > T(0.99);
      } else if (acts_[l] == Act::relu) {
        for (std::size_t i = 0; i < count; ++i) alive[l][i % w] |= a[i] > T(0);
      }
    }
  }
  for (int l = 0; l < L; ++l) {
    const int w = sizes_[l + 1];
    const bool sat = acts_[l] == Act::sigmoid || acts_[l] == Act::tanh;
    saturation[l] = sat && n > 0 ? saturated[l] / (double(n) * w) : nan;
    if (acts_[l] == Act::relu && n > 0) {
      int d = 0;
      for (char c : alive[l]) d += !c;
      dead[l] = double(d) / w;
    } else {
      dead[l] = nan;
    }
  }
}

template class Network<float>;
template class Network<double>;

namespace {
const char* const kActivationNames[] = {"identity", "sigmoid", "tanh", "relu",  "leaky_relu",
                                        "elu",      "softplus", "gelu", "silu", "softmax"};
std::atomic<int> g_threads{0};  // 0: not set, use the OpenMP default
}  // namespace

Act parse_activation(const std::string& s) {
  for (int i = 0; i <= int(Act::softmax); ++i)
    if (s == kActivationNames[i]) return Act(i);
  throw std::invalid_argument("unknown activation '" + s + "'");
}

const char* activation_name(Act a) { return kActivationNames[int(a)]; }

Loss parse_loss(const std::string& s) {
  if (s == "mse") return Loss::mse;
  if (s == "cross_entropy") return Loss::cross_entropy;
  if (s == "binary_cross_entropy") return Loss::binary_cross_entropy;
  throw std::invalid_argument("unknown loss '" + s + "'");
}

int num_threads() {
#ifdef _OPENMP
  const int n = g_threads.load();
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}

void set_num_threads(int n) {
  require(n >= 1, "n must be >= 1");
  g_threads = n;
}

}  // namespace fastbp
