// exp and tanh for float32 written as branch-free arithmetic, so that loops over them
// vectorise (std::expf / std::tanhf are scalar library calls). Accuracy: within ~2 ulp of the
// correctly rounded result over the range used; the double versions are the standard ones,
// which the float64 gradient checks rely on.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

// FASTBP_HD marks the scalar functions that the CUDA backend compiles too (activation
// formulas, these approximations): host and device functions under nvcc, plain C++ here.
// Forced inlining: an out-of-line call inside a loop stops it from vectorising.
#if defined(__CUDACC__)
#define FASTBP_HD __host__ __device__
#define FASTBP_INLINE __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define FASTBP_HD
#define FASTBP_INLINE inline __attribute__((always_inline))
#else
#define FASTBP_HD
#define FASTBP_INLINE inline
#endif

namespace fastbp {

// The float with the given bit pattern (2^n from its exponent bits).
FASTBP_HD FASTBP_INLINE float float_from_bits(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

FASTBP_HD FASTBP_INLINE float fast_exp(float x) {
  // Clamped so 2^n stays a normal float: results below e^-86 or above e^88.5 saturate,
  // far beyond where a sigmoid, tanh or softmax can tell the difference.
  x = x < -86.0f ? -86.0f : (x > 88.5f ? 88.5f : x);  // NaN passes through to the result
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // x - n ln2 in two parts
  float p = 1.9875691500e-4f;                                   // Cephes expf minimax
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  n = n < -126.0f ? -126.0f : (n > 128.0f ? 128.0f : n);  // a NaN x: defined int below, p stays NaN
  if (n != n) n = 0.0f;
  const float scale = float_from_bits((int32_t(n) + 126) << 23);  // 2^(n-1): n may reach 128
  return p * scale * 2.0f;
}

FASTBP_HD FASTBP_INLINE double fast_exp(double x) { return std::exp(x); }

FASTBP_HD FASTBP_INLINE float fast_tanh(float x) {
  // Small |x|: odd minimax polynomial (no cancellation); otherwise 1 - 2 / (e^{2|x|} + 1).
  const float ax = std::fabs(x);
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * x + x;
  const float large = std::copysign(1.0f - 2.0f / (fast_exp(2.0f * ax) + 1.0f), x);
  return ax < 0.625f ? small : large;
}

FASTBP_HD FASTBP_INLINE double fast_tanh(double x) { return std::tanh(x); }

}  // namespace fastbp
