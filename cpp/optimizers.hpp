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

template <class T>
class OptimizerState {
 public:
  explicit OptimizerState(std::size_t n) : n_(n) {}
  std::size_t size() const { return n_; }
  long steps() const { return t_; }
  // One update of p from g. Line search is not a plain update (it needs the batch): see train.hpp.
  void step(const OptimConfig& c, T* p, const T* g);

 private:
  std::vector<T>& state(int i);  // allocated on first use: plain SGD carries none
  std::size_t n_;
  long t_ = 0;
  std::vector<T> s_[3];
};

// Global L2 norm of g (over all n entries) before clipping; scales g so the norm is at most
// max_norm (torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), capped at 1).
template <class T>
double clip_grad_norm(T* g, std::size_t n, double max_norm);

template <class T>
void clip_grad_value(T* g, std::size_t n, double value);

// g += N(0, eta / (1 + t)^gamma) per entry, drawn from the counter-based stream (seed, t).
template <class T>
void add_gradient_noise(T* g, std::size_t n, double eta, double gamma, uint64_t seed, int64_t t);

}  // namespace fastbp
