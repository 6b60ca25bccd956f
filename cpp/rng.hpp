// Counter-based random numbers: value = hash(seed, stream, counter). No state is shared, so the
// same seed gives the same numbers whatever the thread count or the order of evaluation. The
// functions are FASTBP_HD: the CUDA backend draws the same gradient noise on the device.
#pragma once
#include <cmath>
#include <cstdint>
#include <utility>

#include "fastmath.hpp"

namespace fastbp {

FASTBP_HD FASTBP_INLINE uint64_t mix64(uint64_t x) {  // splitmix64 finaliser: a bijection
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Independent streams for each use of randomness, so the same user seed given to shuffling and
// to gradient noise does not draw the same bits.
enum class Stream : uint64_t { shuffle = 1, gradient_noise = 2 };

struct CounterRng {
  uint64_t key;
  FASTBP_HD CounterRng(uint64_t seed, Stream purpose, uint64_t stream)
      : key(mix64(mix64(seed ^ (uint64_t(purpose) << 56)) ^ (stream * 0xD1B54A32D192ED03ull))) {}
  FASTBP_HD FASTBP_INLINE uint64_t bits(uint64_t counter) const {
    return mix64(key ^ mix64(counter));
  }
  // Uniform in (0, 1] from 53 bits (the CUDA benchmark's random fills).
  FASTBP_HD double uniform(uint64_t counter) const {
    return double((bits(counter) >> 11) + 1) * 0x1.0p-53;
  }
  // Two independent standard normals from counter j: Box-Muller on the two 24-bit uniforms of
  // one draw, u1 in (0, 1] (its log is finite; |z| stays below 5.8) and u2 in [0, 1). Single
  // precision (noise needs no more, in float64 networks too) and branch-free, so that a loop
  // over j vectorises: the gradient-noise step costs a few times less than with libm's double
  // log, sqrt and cos, one draw per normal.
  FASTBP_HD FASTBP_INLINE void normal_pair(uint64_t j, float& z0, float& z1) const {
    const uint64_t b = bits(j);
    const float u1 = float(int32_t(b >> 40) + 1) * 0x1.0p-24f;
    const float u2 = float(int32_t(b & 0xffffff)) * 0x1.0p-24f;
    const float r = std::sqrt(-2.0f * fast_log(u1));
    float c, s;
    fast_cos_sin_turn(u2, c, s);
    z0 = r * c;
    z1 = r * s;
  }
  // Normal i of the stream: the first (i even) or second (i odd) of pair i / 2, as the CPU's
  // vectorised loop draws them (the CUDA backend draws entry by entry).
  FASTBP_HD FASTBP_INLINE float normal(uint64_t i) const {
    float z0, z1;
    normal_pair(i / 2, z0, z1);
    return i % 2 ? z1 : z0;
  }
  // Uniform integer in [0, n) (n small enough that modulo bias is negligible: n << 2^64).
  FASTBP_HD uint64_t below(uint64_t counter, uint64_t n) const { return bits(counter) % n; }
};

// An epoch's sample order into order[0..N): 0..N-1, shuffled (Fisher-Yates) on the stream
// (seed, epoch) when asked, so that it depends on nothing else. Both backends take their
// mini-batches in this order (the CUDA backend draws it on the host and uploads it).
template <class Index>
void sample_order(Index* order, long N, bool shuffle, uint64_t seed, int64_t epoch) {
  for (long i = 0; i < N; ++i) order[i] = Index(i);
  if (!shuffle) return;
  const CounterRng rng(seed, Stream::shuffle, uint64_t(epoch));
  for (long i = N - 1; i > 0; --i)
    std::swap(order[i], order[rng.below(uint64_t(i), uint64_t(i + 1))]);
}

}  // namespace fastbp
