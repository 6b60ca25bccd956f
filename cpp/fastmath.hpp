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

FASTBP_HD FASTBP_INLINE int32_t bits_of(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(x);
#else
  int32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
#endif
}

// log(x) for a positive normal float (the Cephes logf polynomial, ~1 ulp).
FASTBP_HD FASTBP_INLINE float fast_log(float x) {
  const int32_t bits = bits_of(x);
  float e = float((bits >> 23) - 126);  // x = m 2^e, m in [0.5, 1)
  float m = float_from_bits((bits & 0x007fffff) | 0x3f000000);
  const bool low = m < 0.70710678f;  // m in [sqrt(1/2), sqrt(2)): log(m) near 0
  m = low ? m + m : m;
  e = low ? e - 1.0f : e;
  const float f = m - 1.0f, z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  const float r = p * f * z - 2.12194440e-4f * e - 0.5f * z;
  return f + r + 0.693359375f * e;
}

// cos(2 pi u) and sin(2 pi u) for u in [0, 1): the quarter turn u lies in, then the Cephes
// polynomials on [-pi/4, pi/4] around its middle (~1e-7 absolute).
FASTBP_HD FASTBP_INLINE void fast_cos_sin_turn(float u, float& c, float& s) {
  const float quarters = u * 4.0f;
  const float q = std::floor(quarters);
  const float a = (quarters - q - 0.5f) * 1.57079632679f;  // in [-pi/4, pi/4)
  const float z = a * a;
  const float sa = a + a * z * (-1.6666654611e-1f + z * (8.3321608736e-3f + z * -1.9515295891e-4f));
  const float ca =
      1.0f - 0.5f * z +
      z * z * (4.166664568298827e-2f + z * (-1.388731625493765e-3f + z * 2.443315711809948e-5f));
  // the middle of the quarter is pi/4 past its start: rotate (ca, sa) by it, then by q quarters
  const float c0 = 0.70710678118f * (ca - sa), s0 = 0.70710678118f * (ca + sa);
  const int quarter = int(q) & 3;
  c = quarter == 0 ? c0 : quarter == 1 ? -s0 : quarter == 2 ? -c0 : s0;
  s = quarter == 0 ? s0 : quarter == 1 ? c0 : quarter == 2 ? -s0 : -c0;
}

}  // namespace fastbp
