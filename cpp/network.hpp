// A dense network: layer shapes, one flat parameter buffer and one flat gradient buffer
// (W0 b0 W1 b1 ... with W_l of shape (n_in, n_out), row-major), forward and backward.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "layer_stats.hpp"
#include "layout.hpp"
#include "losses.hpp"
#include "process.hpp"

namespace fastbp {

template <class T>
class Network {
 public:
  // sizes: [n_in, hidden..., n_out]; hidden: one activation per hidden layer; out: the output
  // activation (softmax for cross-entropy, sigmoid for binary cross-entropy).
  Network(std::vector<int> sizes, std::vector<Act> hidden, Act out, Loss loss);

  // The largest layer (common.hpp).
  static constexpr long long kMaxSize = kMaxDim;
  // The most parameters: each buffer (parameters, gradients, optimizer state) must be a
  // std::vector, and numpy's views index them with ssize_t.
  static constexpr std::size_t kMaxParams = std::numeric_limits<std::ptrdiff_t>::max() / sizeof(T);

  int n_layers() const { return int(sizes_.size()) - 1; }
  int n_in() const { return sizes_.front(); }
  int n_out() const { return sizes_.back(); }
  const std::vector<int>& sizes() const { return sizes_; }
  Loss loss() const { return loss_; }

  T* params() { return params_.data(); }
  const T* params() const { return params_.data(); }
  T* grads() { return grads_.data(); }
  std::size_t n_params() const { return params_.size(); }
  std::size_t w_offset(int l) const { return w_off_[l]; }
  std::size_t b_offset(int l) const { return w_off_[l] + std::size_t(sizes_[l]) * sizes_[l + 1]; }
  std::size_t w_size(int l) const { return std::size_t(sizes_[l]) * sizes_[l + 1]; }

  // Whether the large products round their inputs to bfloat16 (gemm_packed.hpp); only for a
  // float network on a CPU with AVX512-BF16. The epoch loop sets it for its epoch.
  void set_bf16_products(bool on);
  // Packed copies of the weights for an epoch's team, where the products run in fastbp's packed
  // kernels (gemm_packed.hpp: a float network on an AVX-512 core), in the products' precision
  // (float32, or bfloat16 with bf16 products on): the forward and input-gradient products read
  // them instead of each thread packing every weight matrix for its rows, twice a batch.
  // prepare_packed(n, parts, split) allocates them for batches of n rows split `parts` ways
  // (before the team starts), for the layers whose products are large enough;
  // pack_part(part, parts) packs the part's rows of W (the rows it updates; nothing where no
  // copy was kept), and once every part has (and the team has met), the products use them,
  // until release_packed() frees them at the epoch's end (or set_bf16_products changes their
  // precision). Every update must be followed by the packing of its rows.
  void prepare_packed(int n, int parts, bool split);
  void pack_part(int part, int parts);
  void release_packed();

  // X is (n, n_in), out is (n, n_out): output activations (probabilities for softmax).
  // stop (may be null) is asked between chunks of rows: once it says stop, out is incomplete.
  void forward(const T* X, long n, T* out, StopCheck* stop = nullptr);
  // Fills the gradients with those of the batch-mean loss over the n rows of X; returns sums.
  LossSums backward(const T* X, Target<T> y, int n);
  // Loss and correct-prediction sums over n rows, without gradients; stop as for forward (the
  // sums then cover only some rows).
  LossSums evaluate(const T* X, Target<T> y, long n, StopCheck* stop = nullptr);
  // The forward signal of each weight layer over the n rows of X (layer_stats.hpp).
  LayerStats layer_stats(const T* X, long n);
  // Per weight layer: the L2 norm of its weight gradient.
  void weight_grad_norms(double* out) const;

  // A batch-parallel backward in pieces, for a caller that runs its own team (the epoch loop):
  // reserve(n, parts) once; each thread runs rows_pass() on its rows [r0, r1) of the n; after
  // all have, each runs gradient_part() on its part. Part p of P of layer l is the
  // weight-gradient rows share(n_in_l, p, P) and the bias entries share(n_out_l, p, P):
  // disjoint, so a thread can transform and apply its part (for_each_part_range) without
  // waiting for the others.
  //
  // Where split_first_layer(n, P) says so, each thread first runs first_layer_part() and, once
  // all have, rows_pass() with split = P: the first layer's product is then summed from the
  // parts' products over their own input rows of W_0, so that each thread reads only the rows
  // of W_0 that it alone updates. In a team that splits the first product by batch rows,
  // every thread reads all of W_0 and every update then writes lines that another core holds.
  void reserve(int n, int parts = 1);
  bool split_first_layer(int n, int parts) const;
  void first_layer_part(const T* X, int n, int part, int parts);
  LossSums rows_pass(const T* X, Target<T> y, int n, int r0, int r1, int split = 0);
  // sq (n_layers + 1 entries, may be null) receives per layer the sum of squares of the part's
  // weight-gradient entries, and last that of all the part's entries.
  void gradient_part(const T* X, int n, int part, int parts, double* sq);
  template <class F>
  void for_each_part_range(int part, int parts, F&& f) const {
    std::size_t begin = 0, end = 0;  // adjacent ranges are merged: one part of one is [0, n)
    auto add = [&](std::size_t b, std::size_t e) {
      if (b != end) {
        if (end > begin) f(begin, end);
        begin = b;
      }
      end = e;
    };
    for (int l = 0; l < n_layers(); ++l) {
      add(w_offset(l) + std::size_t(share(sizes_[l], part, parts)) * sizes_[l + 1],
          w_offset(l) + std::size_t(share(sizes_[l], part + 1, parts)) * sizes_[l + 1]);
      add(b_offset(l) + share(sizes_[l + 1], part, parts),
          b_offset(l) + share(sizes_[l + 1], part + 1, parts));
    }
    if (end > begin) f(begin, end);
  }
  // Threads worth using for a batch of n rows: a team of spinning threads (fastbp's epoch loop,
  // or OMP_WAIT_POLICY=active) meets much faster than sleeping ones wake, so smaller batches
  // are worth splitting among them.
  int batch_threads(int n, bool spinning) const;
  static int share(int size, int part, int parts) {  // no division on one thread: every batch
    return parts == 1 ? size * part : int(long(size) * part / parts);
  }

  // Held by every computation on the network: one at a time, and none half-done in a fork.
  ForkSafeMutex& mutex() { return mutex_; }
  // Called under the lock before each computation: in a child that fork() made while an epoch
  // ran, the epoch never ends, so its packed weight copies (which the products would read
  // instead of the parameters) and its products' precision are dropped here.
  void settle_after_fork();

 private:
  static constexpr int kChunk = 2048;  // rows per pass when no gradient is needed
  static constexpr int kMinRowsPerThread = 8;
  static constexpr int kMinForwardRows = 64;  // per thread, for a forward split by rows
  // Least size of W_0 for split_first_layer: the coherence traffic it saves must outweigh the
  // exchange of the parts' products and one more meeting of the team.
  static constexpr std::size_t kSplitFirstBytes = std::size_t(1) << 18;
  // Least inputs per part: a product over fewer runs well below the GEMM's speed (one thread,
  // 128 x K x 256 on Zen 4: 75 GFLOP/s at K = 32, 84 at 64, 94-98 from 128 on).
  static constexpr int kMinSplitInputs = 64;
  // Least work (multiply-adds) for a batch to be split: more where sleeping OpenMP threads must
  // be woken than where they spin (the epoch loop's barrier, or OMP_WAIT_POLICY=active).
  static constexpr double kBatchParallelMacs = 1 << 24;
  static constexpr double kBatchParallelMacsSpinning = 1 << 21;
  void ensure_capacity(int n);
  void forward_batch(const T* X, int n);                         // fills z_[l], a_[l]
  void forward_rows(const T* X, int r0, int r1, int first = 0);  // layers [first, L)
  LossSums loss_rows(Target<T> y, int r0, int r1, T scale, bool gradient);
  void backprop_rows(int r0, int r1);
  void layer_gradient(const T* X, int l, int n, int part, int parts, double* sq);
  const T* layer_input(const T* X, int l) const { return l == 0 ? X : a_[l - 1].data(); }

  std::vector<int> sizes_;
  std::vector<Act> acts_;  // one per weight layer; the last is the output activation
  Loss loss_;
  bool bf16_ = false;
  // Per layer: W_l packed as the forward product's op(B), W_l^T as the input gradient's
  // (gemm_packed.hpp); empty where the product is too small for the packed kernels, and
  // outside the epoch that keeps them (from prepare_packed to release_packed).
  std::vector<LineVector<std::uint32_t>> packed_w_, packed_wt_;
  static const std::uint32_t* packed(const std::vector<LineVector<std::uint32_t>>& copies, int l) {
    const std::size_t i = std::size_t(l);
    return i < copies.size() && !copies[i].empty() ? copies[i].data() : nullptr;
  }
  std::vector<std::size_t> w_off_;
  LineVector<T> params_, grads_;  // parts split among a team (common.hpp)
  // Working memory, sized for the largest batch seen so far and reused across batches.
  int capacity_ = 0;
  std::vector<LineVector<T>> z_, a_, dz_;  // per layer: pre-activation, activation, dLoss/dZ
  std::vector<LossSums> partial_;          // per-thread loss sums of a batch-parallel backward
  std::vector<LineVector<T>> first_part_;  // per part: its share of Z_0 (split_first_layer)
  ForkSafeMutex mutex_;
  std::uint64_t generation_ = fork_generation();  // the process that last computed here
};

}  // namespace fastbp
