// A dense network: layer shapes, one flat parameter buffer and one flat gradient buffer
// (W0 b0 W1 b1 ... with W_l of shape (n_in, n_out), row-major), forward and backward.
#pragma once
#include <mutex>
#include <vector>

#include "losses.hpp"

namespace fastbp {

template <class T>
class Network {
 public:
  // sizes: [n_in, hidden..., n_out]; hidden: one activation per hidden layer; out: the output
  // activation (softmax for cross-entropy, sigmoid for binary cross-entropy).
  Network(std::vector<int> sizes, std::vector<Act> hidden, Act out, Loss loss);

  int n_layers() const { return int(sizes_.size()) - 1; }
  int n_in() const { return sizes_.front(); }
  int n_out() const { return sizes_.back(); }
  const std::vector<int>& sizes() const { return sizes_; }
  Loss loss() const { return loss_; }

  T* params() { return params_.data(); }
  T* grads() { return grads_.data(); }
  std::size_t n_params() const { return params_.size(); }
  std::size_t w_offset(int l) const { return w_off_[l]; }
  std::size_t b_offset(int l) const { return w_off_[l] + std::size_t(sizes_[l]) * sizes_[l + 1]; }
  std::size_t w_size(int l) const { return std::size_t(sizes_[l]) * sizes_[l + 1]; }

  // X is (n, n_in), out is (n, n_out): output activations (probabilities for softmax).
  void forward(const T* X, long n, T* out);
  // Fills the gradients with those of the batch-mean loss over the n rows of X; returns sums.
  LossSums backward(const T* X, Target<T> y, int n);
  // Loss and correct-prediction sums over n rows, without gradients.
  LossSums evaluate(const T* X, Target<T> y, long n);
  // Per weight layer: share of saturated outputs (sigmoid/tanh) and of dead units (relu);
  // NaN where the measure does not apply.
  void activation_stats(const T* X, long n, double* saturation, double* dead);
  // Per weight layer: the L2 norm of its weight gradient.
  void weight_grad_norms(double* out) const;

  std::mutex& mutex() { return mutex_; }

 private:
  static constexpr int kChunk = 2048;  // rows per pass when no gradient is needed
  static constexpr int kMinRowsPerThread = 8;
  static constexpr double kBatchParallelMacs = 1 << 24;  // least work for a parallel backward
  static constexpr double kBatchParallelMacsSpinning = 1 << 21;
  void ensure_capacity(int n);
  void forward_batch(const T* X, int n);  // fills z_[l], a_[l]
  void forward_rows(const T* X, int r0, int r1);
  LossSums loss_rows(Target<T> y, int r0, int r1, T scale, bool gradient);
  void backprop_rows(int r0, int r1);
  void layer_gradient(const T* X, int l, int n, int part, int parts);
  int row_threads(int n) const;
  const T* layer_input(const T* X, int l) const { return l == 0 ? X : a_[l - 1].data(); }

  std::vector<int> sizes_;
  std::vector<Act> acts_;  // one per weight layer; the last is the output activation
  Loss loss_;
  std::vector<std::size_t> w_off_;
  std::vector<T> params_, grads_;
  // Working memory, sized for the largest batch seen so far and reused across batches.
  int capacity_ = 0;
  std::vector<std::vector<T>> z_, a_, dz_;  // per layer: pre-activation, activation, dLoss/dZ
  std::vector<LossSums> partial_;           // per-thread loss sums of a batch-parallel backward
  std::mutex mutex_;
};

}  // namespace fastbp
