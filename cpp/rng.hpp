// Counter-based random numbers: value = hash(seed, stream, counter). No state is shared, so the
// same seed gives the same numbers whatever the thread count or the order of evaluation. The
// functions are FASTBP_HD: the CUDA backend draws the same gradient noise on the device.
#pragma once
#include <cmath>
#include <cstdint>
#include <utility>

#include "fastmath.hpp"

namespace fastbp {

FASTBP_HD inline uint64_t mix64(uint64_t x) {  // splitmix64 finaliser: a bijection, good avalanche
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
  FASTBP_HD uint64_t bits(uint64_t counter) const { return mix64(key ^ mix64(counter)); }
  // Uniform in (0, 1]: never 0, so log() below is finite.
  FASTBP_HD double uniform(uint64_t counter) const {
    return double((bits(counter) >> 11) + 1) * 0x1.0p-53;
  }
  // Standard normal by Box-Muller on counters 2i and 2i+1.
  FASTBP_HD double normal(uint64_t i) const {
    const double u1 = uniform(2 * i), u2 = uniform(2 * i + 1);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
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
