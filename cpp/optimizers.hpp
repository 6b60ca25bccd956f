// Update rules over flat buffers, following torch.optim exactly, and the gradient transforms
// applied before a step (clipping, annealed Gaussian noise). p, g and every state buffer
// have the same length n and layout as the network's parameter buffer.
#pragma once
#include <cstdint>
#include <vector>

#include "common.hpp"

namespace fastbp {

enum class Optim : int { sgd, adam, adamw, rmsprop, adagrad, line_search };

struct OptimConfig {
  Optim kind = Optim::sgd;
  double lr = 0.01;
  double momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam, AdamW
  double alpha = 0.99;                            // RMSProp
  bool centered = false;                          // RMSProp
  double lr_decay = 0;                            // AdaGrad
  double c1 = 1e-4, shrink = 0.5;                 // line search (Armijo)
  int max_iter = 20;
};

// The constants of one update, the same for every entry. apply() runs the update on any range
// of entries, so the threads of a team can each update the part of the parameters whose
// gradient they computed, without meeting first.
template <class T>
struct StepPlan {
  Optim kind = Optim::sgd;
  T lr = 0, wd = 0, mom = 0, damp = 0;   // SGD (wd also RMSProp, AdaGrad, coupled Adam)
  bool nesterov = false, first = false;  // first: the momentum buffer starts as the gradient
  T b1 = 0, b2 = 0, eps = 0, step_size = 0, inv_sqrt_bc2 = 0, shrink = 1;  // Adam, AdamW
  T alpha = 0;                                                             // RMSProp
  T* s[3] = {nullptr, nullptr, nullptr};                                   // state buffers
};

template <class T>
class OptimizerState {
 public:
  explicit OptimizerState(std::size_t n) : n_(n) {}
  std::size_t size() const { return n_; }
  long steps() const { return t_; }
  // One update of p from g. Line search is not a plain update (it needs the batch): see train.hpp.
  void step(const OptimConfig& c, T* p, const T* g);

  // step() in parts, for a team of threads: prepare() (one thread) allocates the state buffers
  // the rule needs; plan(c, ahead) gives the constants of the step `ahead` steps after the next;
  // apply() runs a plan on [begin, end); commit(k) counts k applied steps.
  void prepare(const OptimConfig& c);
  StepPlan<T> plan(const OptimConfig& c, long ahead);  // reads only: safe from many threads
  static void apply(const StepPlan<T>& s, T* p, const T* g, std::size_t begin, std::size_t end);
  void commit(long steps);

 private:
  std::vector<T>& state(int i);  // allocated on first use: plain SGD carries none
  std::size_t n_;
  long t_ = 0;
  bool momentum_fresh_ = false;  // the SGD momentum buffer holds no step yet
  std::vector<T> s_[3];
};

// Global L2 norm of g (over all n entries) before clipping; scales g so the norm is at most
// max_norm (torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped at 1).
template <class T>
double clip_grad_norm(T* g, std::size_t n, double max_norm);
// The scale clip_grad_norm applies for a gradient of the given norm (1: none).
double clip_coefficient(double norm, double max_norm);

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
template <class T>
void noise_range(T* g, std::size_t begin, std::size_t end, double eta, double gamma, uint64_t seed,
                 int64_t t);

}  // namespace fastbp
