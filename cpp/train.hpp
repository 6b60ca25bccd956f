// The epoch loop: shuffle, gather each mini-batch, forward, backward, statistics, clip, noise,
// step. One call per epoch; the caller's data set is read in place.
#pragma once
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "network.hpp"
#include "optimizers.hpp"
#include "process.hpp"

namespace fastbp {

// What an epoch does besides the optimizer's step: X(type, name, default) for each setting, the
// one list behind the struct and both modules' bindings (as FASTBP_OPTIM_FIELDS).
#define FASTBP_EPOCH_FIELDS(X)                                                                \
  X(int, batch_size, 32)                                                                      \
  X(bool, shuffle, true)                                                                      \
  X(uint64_t, seed, 0) /* shuffling stream: the permutation is a function of (seed, epoch) */ \
  X(int64_t, epoch, 0)                                                                        \
  X(double, clip_norm, 0)  /* 0: no clipping by norm */                                       \
  X(double, clip_value, 0) /* 0: no clipping by value */                                      \
  X(bool, noise, false)                                                                       \
  X(double, noise_eta, 0.01)                                                                  \
  X(double, noise_gamma, 0.55)                                                                \
  X(uint64_t, noise_seed, 0)                                                                  \
  X(int64_t, noise_t, 0)        /* step count of the noise schedule at the epoch's start */   \
  X(bool, bf16_products, false) /* the products in bfloat16 (Network::set_bf16_products) */

struct EpochConfig {
  FASTBP_EPOCH_FIELDS(FASTBP_CONFIG_FIELD)
};

struct EpochStats {
  double loss = 0;      // mean per-sample training loss over the epoch
  double accuracy = 0;  // share of samples predicted right, during the epoch (classification)
  long samples = 0, batches = 0;
  std::vector<double> grad_norm_mean, grad_norm_max;  // per weight layer, before clipping
  std::vector<double> update_ratio;  // per weight layer: ||W_end - W_start|| / ||W_start||
  int64_t noise_t = 0;               // noise step count at the epoch's end
  bool finite = true;  // false: a batch gave a non-finite loss or gradient; stopped before its step
  double mean_step = 0;  // mean step size taken (the line search's accepted steps, else lr)
  int threads = 1;       // threads that shared each batch
  StopReason stop = StopReason::none;  // why the epoch ended before its last batch, if it did
};

// The mean of the steps an epoch's batches took. Where every batch took the same step (each rule
// but the line search; a line search accepting its first trial throughout), the step itself: a
// sum of thousands of copies divided by their count is off in the last bits.
class StepMean {
 public:
  void add(double step) {
    if (n_ == 0) first_ = step;
    same_ = same_ && step == first_;
    sum_ += step;
    ++n_;
  }
  double mean() const { return same_ ? first_ : sum_ / double(n_); }

 private:
  double sum_ = 0, first_ = 0;
  long n_ = 0;
  bool same_ = true;
};

// Refuses what would count an optimizer state past kMaxSteps (optimizers.hpp): `more` steps
// (`what`: one step, an epoch's) after the `steps` it has counted. The CPU and device bindings
// check every step and epoch with these before it starts.
inline void require_steps_left(long steps, long more, const char* what) {
  require(steps <= kMaxSteps - more, "the optimizer state has counted " + std::to_string(steps) +
                                         " steps: " + what + " more would pass its limit (" +
                                         std::to_string(kMaxSteps) + ")");
}
// An epoch's counters before it starts: its noise step, and its batches over N rows.
inline void require_epoch_counts(long steps, long N, const EpochConfig& ec) {
  require(ec.noise_t >= 0 && ec.noise_t <= kMaxSteps, "epoch_config.noise_t must be in [0, " +
                                                          std::to_string(kMaxSteps) + "], got " +
                                                          std::to_string(ec.noise_t));
  const long batch = std::max<long>(1, std::min<long>(ec.batch_size, N));
  require_steps_left(steps, (N + batch - 1) / batch, "an epoch");
}

// X is (N, n_in), y has N rows. opt and oc are the optimizer's state and hyperparameters.
// A team of threads shares each batch (Network::batch_threads); LineSearchSGD's epoch runs on
// one thread, as its trial steps evaluate the whole batch.
// p_start (n_params entries, the caller's) receives the parameters at the epoch's start: the
// update ratios are measured against it, and the caller can restore it if the epoch diverged.
// stop is asked before each batch: once it says stop, the epoch ends there, with the parameters
// and optimizer state of the last finished batch, and the statistics of the batches run
// (stats.stop says why).
template <class T>
EpochStats train_epoch(Network<T>& net, OptimizerState<T>& opt, const OptimConfig& oc, const T* X,
                       long N, Target<T> y, const EpochConfig& ec, T* p_start, StopCheck& stop);

// Armijo backtracking along -g on one batch, whose gradient net already holds:
// the first t in lr, lr*shrink, lr*shrink^2, ... (max_iter tries) with
// loss(p - t g) <= loss(p) - c1 t |g|^2 is taken; if none is, p is left unchanged.
// Returns the step taken (0 if none). p0 is scratch of n_params entries. stop (may be null) is
// asked before each try: once it says stop, p is left unchanged.
template <class T>
double line_search_step(Network<T>& net, const OptimConfig& oc, const T* X, Target<T> y, int n,
                        double loss0, std::vector<T>& p0, StopCheck* stop);

// One LineSearchSGD step by hand: the batch's gradient, then the search along it.
// Returns (loss before the step, step taken).
template <class T>
std::pair<double, double> line_search_batch(Network<T>& net, const OptimConfig& oc, const T* X,
                                            Target<T> y, int n, StopCheck& stop);

}  // namespace fastbp
