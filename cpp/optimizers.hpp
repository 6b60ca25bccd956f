// Update rules over flat buffers, following torch.optim exactly, and the gradient transforms
// applied before a step (clipping, annealed Gaussian noise). p, g and every state buffer
// have the same length n and layout as the network's parameter buffer.
//
// Each rule is one struct: its hyperparameters, its state buffers under torch's names, the
// constants k of the planned step, and
//   prepare(state)     allocates (once) and binds the buffers these settings use (state: the
//                      CPU's OptimizerState, or the CUDA backend's, whose buffers live on the GPU);
//   plan(step, fresh)  sets k for step number `step` (from 1); fresh: no step has been taken
//                      since the momentum buffer was allocated;
//   update(p, g, i)    entry i's update: the formula both backends run (FASTBP_HD).
// The CPU loop over a range of entries is apply_rule() in optimizers.cpp.
// To add a rule, write its struct and add it to FASTBP_OPTIMIZERS (and its hyperparameters to
// OptimConfig, which Python fills).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "common.hpp"
#include "fastmath.hpp"
#include "process.hpp"

namespace fastbp {

// X(enum name, rule), in the order of the Optim enum Python sees. Line search, which needs the
// batch and is no rule over flat buffers (train.hpp), comes after them.
#define FASTBP_OPTIMIZERS(X) \
  X(sgd, SGDRule)            \
  X(adam, AdamRule)          \
  X(adamw, AdamWRule)        \
  X(rmsprop, RMSPropRule)    \
  X(adagrad, AdaGradRule)

enum class Optim : int {
#define FASTBP_ENUM_ENTRY(id, Rule) id,
  FASTBP_OPTIMIZERS(FASTBP_ENUM_ENTRY)
#undef FASTBP_ENUM_ENTRY
      line_search
};

// The hyperparameters of every rule, as Python sets them (torch's argument names): X(type,
// name, default) for each, the one list behind the struct and both modules' bindings.
#define FASTBP_OPTIM_FIELDS(X)                      \
  X(double, lr, 0.01)                               \
  X(double, momentum, 0)                            \
  X(double, dampening, 0)                           \
  X(double, weight_decay, 0)                        \
  X(bool, nesterov, false)                          \
  X(double, beta1, 0.9) /* Adam, AdamW */           \
  X(double, beta2, 0.999)                           \
  X(double, eps, 1e-8)                              \
  X(double, alpha, 0.99) /* RMSProp */              \
  X(bool, centered, false)                          \
  X(double, lr_decay, 0) /* AdaGrad */              \
  X(double, c1, 1e-4)    /* line search (Armijo) */ \
  X(double, shrink, 0.5)                            \
  X(int, max_iter, 20)

#define FASTBP_CONFIG_FIELD(type, name, value) type name = value;

struct OptimConfig {
  Optim kind = Optim::sgd;  // an enum: bound and read apart from the list
  FASTBP_OPTIM_FIELDS(FASTBP_CONFIG_FIELD)
};

template <class T>
class OptimizerState;

// SGD with momentum, dampening, Nesterov and weight decay added to the gradient.
template <class T>
struct SGDRule {
  static constexpr const char* buffer_names[] = {"momentum_buffer"};
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  T* momentum_buffer = nullptr;  // with momentum only; torch starts it as the first gradient
  struct {
    T lr, weight_decay, momentum, one_minus_dampening;
    bool first;  // this step starts the momentum buffer
  } k{};

  explicit SGDRule(const OptimConfig& c)
      : lr(c.lr),
        momentum(c.momentum),
        dampening(c.dampening),
        weight_decay(c.weight_decay),
        nesterov(c.nesterov) {}
  template <class State>
  void prepare(State& state) {
    bool created = false;
    if (momentum != 0) momentum_buffer = state.buffer("momentum_buffer", &created);
    if (created) state.start_momentum();
  }
  void plan(double, bool fresh) {
    k.lr = T(lr);
    k.weight_decay = T(weight_decay);
    k.momentum = T(momentum);
    k.one_minus_dampening = T(1 - dampening);
    k.first = fresh;
  }
  FASTBP_HD FASTBP_INLINE void update(T* p, const T* g, std::size_t i) const {
    const T d = g[i] + k.weight_decay * p[i];
    if (!momentum_buffer) {
      p[i] -= k.lr * d;
      return;
    }
    T* buf = momentum_buffer;
    buf[i] = k.first ? d : k.momentum * buf[i] + k.one_minus_dampening * d;
    p[i] -= k.lr * (nesterov ? d + k.momentum * buf[i] : buf[i]);
  }
};

// Adam, and AdamW where decoupled: its weight decay shrinks p instead of adding to the gradient.
template <class T>
struct AdamRule {
  static constexpr const char* buffer_names[] = {"exp_avg", "exp_avg_sq"};
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
  T* exp_avg = nullptr;
  T* exp_avg_sq = nullptr;
  struct {  // step_size: lr over the first moment's bias correction; inv_sqrt_bc2: 1 / sqrt of
            // the second's; weight decay in the gradient (Adam) or as a shrink of p (AdamW)
    T beta1, beta2, eps, weight_decay, shrink, step_size, inv_sqrt_bc2;
  } k{};

  AdamRule(const OptimConfig& c, bool decoupled_decay)
      : lr(c.lr),
        beta1(c.beta1),
        beta2(c.beta2),
        eps(c.eps),
        weight_decay(c.weight_decay),
        decoupled(decoupled_decay) {}
  explicit AdamRule(const OptimConfig& c) : AdamRule(c, false) {}
  template <class State>
  void prepare(State& state) {
    exp_avg = state.buffer("exp_avg");
    exp_avg_sq = state.buffer("exp_avg_sq");
  }
  void plan(double step, bool) {
    k.beta1 = T(beta1);
    k.beta2 = T(beta2);
    k.eps = T(eps);
    k.step_size = T(lr / (1 - std::pow(beta1, step)));
    k.inv_sqrt_bc2 = T(1 / std::sqrt(1 - std::pow(beta2, step)));
    k.weight_decay = decoupled ? T(0) : T(weight_decay);
    k.shrink = decoupled ? T(1) - T(lr) * T(weight_decay) : T(1);
  }
  FASTBP_HD FASTBP_INLINE void update(T* p, const T* g, std::size_t i) const {
    T* m = exp_avg;
    T* v = exp_avg_sq;
    const T d = g[i] + k.weight_decay * p[i];
    p[i] *= k.shrink;
    m[i] = k.beta1 * m[i] + (T(1) - k.beta1) * d;
    v[i] = k.beta2 * v[i] + (T(1) - k.beta2) * d * d;
    p[i] -= k.step_size * m[i] / (std::sqrt(v[i]) * k.inv_sqrt_bc2 + k.eps);
  }
};

template <class T>
struct AdamWRule : AdamRule<T> {
  explicit AdamWRule(const OptimConfig& c) : AdamRule<T>(c, true) {}
};

// RMSProp: optionally centered (divides by the variance instead of the second moment) and with
// momentum on the scaled step.
template <class T>
struct RMSPropRule {
  static constexpr const char* buffer_names[] = {"square_avg", "grad_avg", "momentum_buffer"};
  double lr, alpha, eps, momentum, weight_decay;
  bool centered;
  T* square_avg = nullptr;
  T* grad_avg = nullptr;         // centered only
  T* momentum_buffer = nullptr;  // with momentum only
  struct {
    T lr, alpha, eps, momentum, weight_decay;
  } k{};

  explicit RMSPropRule(const OptimConfig& c)
      : lr(c.lr),
        alpha(c.alpha),
        eps(c.eps),
        momentum(c.momentum),
        weight_decay(c.weight_decay),
        centered(c.centered) {}
  template <class State>
  void prepare(State& state) {
    square_avg = state.buffer("square_avg");
    if (centered) grad_avg = state.buffer("grad_avg");
    if (momentum > 0) momentum_buffer = state.buffer("momentum_buffer");
  }
  void plan(double, bool) {
    k.lr = T(lr);
    k.alpha = T(alpha);
    k.eps = T(eps);
    k.momentum = T(momentum);
    k.weight_decay = T(weight_decay);
  }
  FASTBP_HD FASTBP_INLINE void update(T* p, const T* g, std::size_t i) const {
    const T d = g[i] + k.weight_decay * p[i];
    square_avg[i] = k.alpha * square_avg[i] + (T(1) - k.alpha) * d * d;
    T var = square_avg[i];
    if (grad_avg) {
      grad_avg[i] = k.alpha * grad_avg[i] + (T(1) - k.alpha) * d;
      var -= grad_avg[i] * grad_avg[i];
    }
    const T step = d / (std::sqrt(var) + k.eps);
    if (momentum_buffer) {
      momentum_buffer[i] = k.momentum * momentum_buffer[i] + step;
      p[i] -= k.lr * momentum_buffer[i];
    } else {
      p[i] -= k.lr * step;
    }
  }
};

// AdaGrad, its learning rate decayed to lr / (1 + (step - 1) lr_decay).
template <class T>
struct AdaGradRule {
  static constexpr const char* buffer_names[] = {"sum"};
  double lr, lr_decay, eps, weight_decay;
  T* sum = nullptr;
  struct {
    T lr, eps, weight_decay;
  } k{};

  explicit AdaGradRule(const OptimConfig& c)
      : lr(c.lr), lr_decay(c.lr_decay), eps(c.eps), weight_decay(c.weight_decay) {}
  template <class State>
  void prepare(State& state) {
    sum = state.buffer("sum");
  }
  void plan(double step, bool) {
    k.lr = T(lr / (1 + (step - 1) * lr_decay));
    k.eps = T(eps);
    k.weight_decay = T(weight_decay);
  }
  FASTBP_HD FASTBP_INLINE void update(T* p, const T* g, std::size_t i) const {
    const T d = g[i] + k.weight_decay * p[i];
    sum[i] += d * d;
    p[i] -= k.lr * d / (std::sqrt(sum[i]) + k.eps);
  }
};

// One step's rule, its buffers bound and its constants set: what each thread applies.
// monostate: no rule prepared yet.
#define FASTBP_RULE_TYPE(id, Rule) , Rule<T>
template <class T>
using StepPlan = std::variant<std::monostate FASTBP_OPTIMIZERS(FASTBP_RULE_TYPE)>;
#undef FASTBP_RULE_TYPE

// The rule that c names, its constants set from c and its buffers not bound yet (both
// backends' prepare). LineSearchSGD has no rule: its epoch loop searches along -g itself.
template <class T>
StepPlan<T> make_rule(const OptimConfig& c) {
  require(c.kind != Optim::line_search, "line search needs the batch: use the epoch loop");
  switch (c.kind) {
#define FASTBP_MAKE_RULE(id, Rule) \
  case Optim::id:                  \
    return Rule<T>(c);
    FASTBP_OPTIMIZERS(FASTBP_MAKE_RULE)
#undef FASTBP_MAKE_RULE
    case Optim::line_search:
      break;
  }
  return std::monostate{};
}

// f(rule) with the rule a plan holds; nothing while it holds none (both backends).
template <class Plan, class F>
void with_rule(Plan& plan, F&& f) {
  std::visit(
      [&](auto& rule) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(rule)>, std::monostate>) f(rule);
      },
      plan);
}

// An optimizer's state between steps, all a rule needs to resume exactly where it stopped.
template <class T>
struct OptimizerStateDict {
  long step = 0;
  bool momentum_fresh = false;
  std::map<std::string, LineVector<T>> buffers;  // by torch's names, n_params entries each
};

// The most steps a state may count (2**62 - 1 with 64-bit longs, 2**30 - 1 on Windows): far
// beyond any run, and far enough below the largest long that its step counts (t + 1 + a batch's
// index) never overflow. Epochs and steps that would pass it are refused (bindings).
constexpr long kMaxSteps = std::numeric_limits<long>::max() / 2;

template <class T>
class OptimizerState {
 public:
  explicit OptimizerState(std::size_t n) : n_(n) {}
  // Held by every use of the state from Python (a step, an epoch, state_dict, load_state_dict):
  // an epoch writes the buffers without the GIL, and load_state_dict replaces them.
  ForkSafeMutex& mutex() const { return mutex_; }
  std::size_t size() const { return n_; }
  long steps() const { return t_; }
  // One update of p from g. Line search is not a plain update (it needs the batch): see train.hpp.
  void step(const OptimConfig& c, T* p, const T* g);

  // step() in parts, for a team of threads: prepare(c) (one thread) makes the rule c names and
  // binds its buffers, allocated on first use; plan(ahead) gives that rule with the constants
  // of the step `ahead` steps after the next; apply() runs a plan on [begin, end); commit(k)
  // counts k applied steps.
  void prepare(const OptimConfig& c);
  StepPlan<T> plan(long ahead) const;  // reads only: safe from many threads
  static void apply(const StepPlan<T>& plan, T* p, const T* g, std::size_t begin, std::size_t end);
  void commit(long steps);

  // For the rules' prepare(): the buffer of that name, allocated as zeros on first use.
  T* buffer(const std::string& name, bool* created = nullptr);
  // For SGD's prepare(): its momentum buffer is new, the next step starts it (plan's `fresh`).
  void start_momentum() { momentum_fresh_ = true; }

  OptimizerStateDict<T> state_dict() const;
  // Replaces the whole state, or changes nothing and throws std::invalid_argument naming the
  // problem: a buffer name no rule knows, a length other than n_params, a negative step.
  void load_state_dict(OptimizerStateDict<T> d);

 private:
  std::size_t n_;
  long t_ = 0;
  bool momentum_fresh_ = false;  // the SGD momentum buffer holds no step yet
  // By torch's names; a team splits them into parts, as the parameters (common.hpp).
  std::map<std::string, LineVector<T>> buffers_;
  StepPlan<T> rule_;  // set by prepare()
  mutable ForkSafeMutex mutex_{"the optimizer state"};
};

#ifndef __CUDACC__  // nvcc's front end cannot size buffer_names here; no kernel needs this
// Whether some rule keeps a state buffer of this name (what load_state_dict accepts).
inline bool is_optimizer_buffer(const std::string& name) {
  bool known = false;
  auto check = [&](const auto& names) {
    for (const char* n : names) known = known || name == n;
  };
#define FASTBP_CHECK_BUFFERS(id, Rule) check(Rule<float>::buffer_names);
  FASTBP_OPTIMIZERS(FASTBP_CHECK_BUFFERS)
#undef FASTBP_CHECK_BUFFERS
  return known;
}

// A state dict an optimizer state of n parameters can load, or std::invalid_argument naming
// the problem: a negative step, a buffer name no rule knows, a length other than n. Both the
// CPU's OptimizerState and the CUDA backend's check with it before replacing anything.
template <class T>
void check_state_dict(const OptimizerStateDict<T>& d, std::size_t n) {
  require(d.step >= 0 && d.step <= kMaxSteps, "state_dict: step must be in [0, " +
                                                  std::to_string(kMaxSteps) + "], got " +
                                                  std::to_string(d.step));
  for (const auto& [name, values] : d.buffers) {
    require(is_optimizer_buffer(name),
            "state_dict: no optimizer has a buffer named '" + name + "'");
    require(values.size() == n, "state_dict: buffer '" + name + "' has " +
                                    std::to_string(values.size()) + " entries, n_params is " +
                                    std::to_string(n));
  }
}
#endif

// Global L2 norm of g (over all n entries) before clipping; scales g so the norm is at most
// max_norm (torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped at 1).
template <class T>
double clip_grad_norm(T* g, std::size_t n, double max_norm);
// The scale clip_grad_norm applies for a gradient of the given norm (1: none).
FASTBP_HD inline double clip_coefficient(double norm, double max_norm) {
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? coef : 1.0;
}
// g times the clipping coefficient: in T, as torch multiplies, unless the coefficient is
// below T's smallest normal (a float32 norm over 8e37 max_norm), which flushing subnormals
// would turn into 0 and with it the whole gradient: then in double, rounded once.
template <class T>
FASTBP_HD inline bool scale_in_t(double coef) {
  return coef >= (sizeof(T) == 4 ? 1.17549435082228750797e-38 : 2.22507385850720138309e-308);
}

template <class T>
void clip_grad_value(T* g, std::size_t n, double value);

// g += N(0, eta / (1 + t)^gamma) per entry, drawn from the counter-based stream (seed, t).
template <class T>
void add_gradient_noise(T* g, std::size_t n, double eta, double gamma, uint64_t seed, int64_t t);

// The transforms on entries [begin, end) only, for a team of threads that each own a part.
template <class T>
void scale_range(T* g, std::size_t begin, std::size_t end, double coef);
template <class T>
void clip_value_range(T* g, std::size_t begin, std::size_t end, double value);
// The annealed noise's standard deviation at step t: sqrt(eta / (1 + t)^gamma) (Neelakantan
// et al.), for the CPU core and the CUDA backend alike.
inline double noise_std(double eta, double gamma, int64_t t) {
  return std::sqrt(eta / std::pow(1.0 + double(t), gamma));
}

template <class T>
void noise_range(T* g, std::size_t begin, std::size_t end, double eta, double gamma, uint64_t seed,
                 int64_t t);

}  // namespace fastbp
