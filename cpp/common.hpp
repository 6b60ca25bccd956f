// Shared vocabulary of the core: activation and loss kinds, thread count, parallel-loop policy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastbp {

enum class Act : int { identity, sigmoid, tanh, relu, leaky_relu, elu, softplus, gelu, silu, softmax };
enum class Loss : int { mse, cross_entropy, binary_cross_entropy };

Act parse_activation(const std::string& name);
const char* activation_name(Act a);
Loss parse_loss(const std::string& name);

// Threads used by fastbp's own parallel loops (BLAS threads are set alongside, in gemm.cpp).
int num_threads();
void set_num_threads(int n);

// Elementwise passes below this many elements run on one thread: waking a team costs more.
constexpr std::size_t kParallelMin = 1 << 15;

inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

}  // namespace fastbp
