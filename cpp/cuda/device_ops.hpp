// What one thread of the device kernels computes, as FASTBP_HD functions over plain pointers.
// The CUDA executor (kernels.cu) launches them; the host executor (host_exec.hpp) runs the same
// functions in loops, so everything here is also checked on a machine without a GPU. The
// formulas themselves are the core's: activations.hpp, losses.hpp, the optimizer rules of
// optimizers.hpp and rng.hpp.
//
// Memory layout on the device (DeviceNetwork): the parameters are the CPU core's flat buffer,
// W_0 b_0 W_1 b_1 ..., so layer l's W_l (n_in x n_out) followed by b_l (n_out) is one
// ((n_in + 1) x n_out) row-major matrix Wb_l. Every layer input is stored with a column of
// ones after its n_in values (leading dimension padded_ld(n_in)), so that one product
// [X 1] Wb_l gives X W_l + b_l, and one product [X 1]^T dZ_l gives dW_l and db_l, written in
// place in the flat gradient buffer: no separate bias kernels.
#pragma once
#include <cstdint>
#include <type_traits>

#include "../losses.hpp"
#include "../optimizers.hpp"
#include "../rng.hpp"

namespace fastbp {
namespace device {

// Leading dimension of a layer input of n_in values: n_in + 1 (the ones) rounded up to whole
// 16-byte groups of floats, so that every row starts aligned.
inline int padded_ld(int n_in) { return (n_in + 1 + 3) / 4 * 4; }

// The Act of an activation struct.
template <class A>
constexpr Act act_of() {
#define FASTBP_ACT_OF(id, Type) \
  if constexpr (std::is_same_v<A, Type>) return Act::id;
  FASTBP_ACTIVATIONS(FASTBP_ACT_OF)
#undef FASTBP_ACT_OF
  return Act::identity;
}

// Whether loss L may have output activation A (a fused loss allows only its own).
template <class L, class A>
constexpr bool loss_allows() {
  return !L::fused || act_of<A>() == L::output;
}

// The epoch's state on the device: written by the host before the epoch's first batch, then
// advanced by the batches' kernels alone (a captured batch reads which batch it is from here),
// and read back once when the epoch ends.
struct EpochState {
  // Set by the host for the epoch.
  long long batch_size = 0, n_samples = 0;
  double clip_norm = 0, clip_value = 0;  // 0: off
  int noise = 0;
  int n_layers = 0;
  // Advanced by the batches.
  long long batch = 0;    // the batch the next gather takes
  long long current = 0;  // the batch whose update runs next: its plan and noise
  int stop = 0;           // a batch was not finite: every later kernel of the epoch returns at once
  int pad_ = 0;
  long long batches = 0, samples = 0, noise_steps = 0;  // recorded (finite) batches
  double loss = 0, correct = 0;                         // sums over the recorded batches
  double clip_coef = 1;                                 // of the current batch
  double batch_loss = 0;                                // the last batch's loss sum (line search)
};

static_assert(std::is_standard_layout_v<EpochState> && std::is_trivially_copyable_v<EpochState>,
              "EpochState is copied to and from the device as bytes");

// What the update of batch b needs besides the gradient: the optimizer rule with the constants
// of its step (OptimizerState::plan, computed on the host, as the CPU core does), and the
// gradient noise of that step (its standard deviation and stream, also from the host).
template <class Rule>
struct BatchPlan {
  using rule_type = Rule;
  Rule rule;
  CounterRng noise_rng;
  double noise_std;
};

// The transforms applied to a gradient entry before the update, in the CPU core's order:
// clipping by the global norm (coefficient), by value, then annealed noise.
struct Transform {
  double clip_coef = 1, clip_value = 0;
  bool noise = false;
};

// ---- the dense layer, for the small-layer kernels (one thread per output entry) ----------
// z[i, j] = b[j] + sum_k in[i, k] W[k, j] (b is row n_in of wb), and a[i, j] = f(z[i, j]) if a.
template <class A, class T>
FASTBP_HD FASTBP_INLINE void dense_forward_entry(const T* in, int ld_in, const T* wb, int n_in,
                                                 int n_out, T* z, T* a, int lda, int i, int j) {
  const T* x = in + std::size_t(i) * ld_in;
  T acc = wb[std::size_t(n_in) * n_out + j];
  for (int k = 0; k < n_in; ++k) acc += x[k] * wb[std::size_t(k) * n_out + j];
  z[std::size_t(i) * n_out + j] = acc;
  if (a) a[std::size_t(i) * lda + j] = A::forward(acc);
}

// gwb[r, j] = sum_i in[i, r] dz[i, j] for r in [0, n_in]: row n_in (the ones) is db[j].
template <class T>
FASTBP_HD FASTBP_INLINE void weight_grad_entry(const T* in, int ld_in, const T* dz, int n,
                                               int n_out, T* gwb, int r, int j) {
  T acc = 0;
  for (int i = 0; i < n; ++i)
    acc += in[std::size_t(i) * ld_in + r] * dz[std::size_t(i) * n_out + j];
  gwb[std::size_t(r) * n_out + j] = acc;
}

// dprev[i, c] = f'(zp, ap)[i, c] * sum_m dz[i, m] W[c, m]: the gradient reaching the previous
// layer's pre-activation (zp, ap: that layer's z and activations, ap with leading dim ldap).
template <class A, class T>
FASTBP_HD FASTBP_INLINE void input_grad_entry(const T* dz, const T* w, int n_out, const T* zp,
                                              const T* ap, int ldap, int n_in, T* dprev, int i,
                                              int c) {
  const T* d = dz + std::size_t(i) * n_out;
  const T* wc = w + std::size_t(c) * n_out;
  T acc = 0;
  for (int m = 0; m < n_out; ++m) acc += d[m] * wc[m];
  const std::size_t e = std::size_t(i) * n_in + c;
  if constexpr (!std::is_same_v<A, Identity>)
    acc *= A::derivative(zp[e], ap[std::size_t(i) * ldap + c]);
  dprev[e] = acc;
}

// ---- the output layer: one thread per row --------------------------------------------------
// a = f(z) for the row; with loss, the row's loss and correct count, and with d, dLoss/dz
// (scaled), chained through f' where the loss is not fused with its activation: the CPU
// core's loss_forward_backward, one row at a time.
template <class L, class A, class T>
FASTBP_HD FASTBP_INLINE void output_row(const T* z, T* a, int k, const T* t_dense,
                                        const int32_t* label, T scale, T* d, double* loss,
                                        double* correct) {
  if constexpr (std::is_same_v<A, Softmax>) {
    A::forward_row(z, a, k);
  } else {
    for (int j = 0; j < k; ++j) a[j] = A::forward(z[j]);
  }
  if (!loss) return;
  LossSums s;
  if constexpr (L::labels) {
    if (label)
      s = L::label_row(z, a, *label, k, scale, d);
    else
      s = L::dense_row(z, a, t_dense, k, scale, d);
  } else {
    s = L::dense_row(z, a, t_dense, k, scale, d);
  }
  *loss = s.loss;
  *correct = s.correct;
  if constexpr (!L::fused) {
    if (d) {
      if constexpr (std::is_same_v<A, Softmax>) {
        A::backward_row(a, d, k);
      } else if constexpr (!std::is_same_v<A, Identity>) {
        for (int j = 0; j < k; ++j) d[j] *= A::derivative(z[j], a[j]);
      }
    }
  }
}

// ---- sums over a flat buffer, a planned block at a time ----------------------------------
// Entry i's terms of a block's sums: x[i]^2 into s, or with x0 (the epoch's start parameters),
// (x[i] - x0[i])^2 into s and x0[i]^2 into s0.
template <class T>
FASTBP_HD FASTBP_INLINE void add_segment_terms(const T* x, const T* x0, long long i, double& s,
                                               double& s0) {
  if (x0) {
    const double diff = double(x[i]) - double(x0[i]);
    s += diff * diff;
    s0 += double(x0[i]) * double(x0[i]);
  } else {
    s += double(x[i]) * double(x[i]);
  }
}

// ---- the update: one thread per parameter entry ---------------------------------------------
// g[i] transformed (and written back, as the CPU core leaves it), then the rule's update.
template <class Rule, class T>
FASTBP_HD FASTBP_INLINE void update_entry(const BatchPlan<Rule>& plan, const Transform& tr, T* p,
                                          T* g, std::size_t i) {
  T gi = g[i];
  bool changed = false;
  if (tr.clip_coef < 1) {
    gi = scale_in_t<T>(tr.clip_coef) ? gi * T(tr.clip_coef) : T(double(gi) * tr.clip_coef);
    changed = true;
  }
  if (tr.clip_value > 0) {  // std::min(std::max(g, -v), v), NaN kept
    const T v = T(tr.clip_value);
    gi = gi < -v ? -v : (v < gi ? v : gi);
    changed = true;
  }
  if (tr.noise) {
    gi += T(plan.noise_std) * T(plan.noise_rng.normal(uint64_t(i)));  // as train.cpp
    changed = true;
  }
  if (changed) g[i] = gi;
  plan.rule.update(p, g, i);
}

// ---- the end of a batch: one thread, after the sums are reduced -----------------------------
// seg_sq holds, per layer l, the sums of squares of dW_l (entry 2l) and db_l (2l + 1); loss and
// correct the batch's sums over its n rows. A non-finite batch stops the epoch before its step
// (the CPU core's check: the loss, each layer's weight-gradient norm and the global norm);
// otherwise it is recorded (per-layer norm sums and maxima, losses), the clipping coefficient
// of its global norm is set, and the batch counter advances.
FASTBP_HD inline void finish_batch(EpochState& s, const double* seg_sq, double loss, double correct,
                                   int n, double* norm_sum, double* norm_max) {
  if (s.stop) return;
  const int L = s.n_layers;
  double total = 0;
  bool finite = loss - loss == 0;  // false for NaN and infinities
  for (int l = 0; l < L; ++l) {
    finite = finite && seg_sq[2 * l] - seg_sq[2 * l] == 0;
    total += seg_sq[2 * l] + seg_sq[2 * l + 1];
  }
  finite = finite && total - total == 0;
  s.batch_loss = loss;
  if (!finite) {
    s.stop = 1;
    return;
  }
  for (int l = 0; l < L; ++l) {
    const double norm = std::sqrt(seg_sq[2 * l]);
    norm_sum[l] += norm;
    norm_max[l] = norm_max[l] < norm ? norm : norm_max[l];
  }
  s.loss += loss;
  s.correct += correct;
  s.samples += n;
  s.batches += 1;
  if (s.noise) s.noise_steps += 1;
  s.clip_coef = s.clip_norm > 0 ? clip_coefficient(std::sqrt(total), s.clip_norm) : 1.0;
  s.current = s.batch;
  s.batch += 1;
}

}  // namespace device
}  // namespace fastbp
