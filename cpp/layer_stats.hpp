// The forward statistics of each weight layer (LayerStats), gathered over the chunks of one
// forward pass. Host code, shared by the CPU core (Network::layer_stats) and the CUDA backend,
// which downloads each chunk's pre-activations and activations and adds them here: one
// definition of every statistic, so that the two report the same numbers (up to the last bits
// of the sums, which each module's compiler may order differently).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <limits>
#include <utility>
#include <vector>

#include "activations.hpp"

namespace fastbp {

// What one forward pass over a sample shows of each weight layer l (n_layers entries each,
// input side first), over all n_samples x width_l entries of the layer pooled together:
struct LayerStats {
  // Share of saturated outputs, and share of dead units, as the layer's activation measures
  // them (activations.hpp); NaN where its activation has no such measure.
  std::vector<double> saturation, dead;
  // Mean and standard deviation (population, ddof 0) of the pre-activations Z_l and of the
  // activations A_l = f_l(Z_l); NaN or inf where a value is not finite.
  std::vector<double> pre_mean, pre_std, act_mean, act_std;
  // (n_layers, kHistBins), row-major: the share of A_l's entries in each bin of the layer's
  // activation kind (activations.hpp, Bins); a row sums to 1 less the share of NaN.
  std::vector<double> act_hist;
};

// Count, mean and sum of squared deviations of a stream of values, fed block by block: each
// block's own mean first, then Chan et al.'s update, so that a large mean does not cancel the
// variance away as it would in sum(x^2) - n mean^2.
struct Moments {
  double count = 0, mean = 0, m2 = 0;

  template <class T>
  void add(const T* x, std::size_t n) {
    if (n == 0) return;
    const long nn = long(n);
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (long i = 0; i < nn; ++i) sum += double(x[i]);
    const double block_mean = sum / double(n);
    double block_m2 = 0;
#pragma omp simd reduction(+ : block_m2)
    for (long i = 0; i < nn; ++i) {
      const double d = double(x[i]) - block_mean;
      block_m2 += d * d;
    }
    const double total = count + double(n), delta = block_mean - mean;
    m2 += block_m2 + delta * delta * count * double(n) / total;
    mean += delta * double(n) / total;
    count = total;
  }
  double stddev() const { return std::sqrt(m2 / count); }
};

// The edges as T, each rounded up to the nearest T, so that for every T value a, a >= edge
// holds in T exactly when it holds for the double edge: float compares are twice as wide.
template <class T>
std::array<T, kHistBins - 1> edges_as(const std::array<double, kHistBins - 1>& edges) {
  std::array<T, kHistBins - 1> out{};
  for (int k = 0; k < kHistBins - 1; ++k) {
    out[k] = T(edges[k]);
    if (double(out[k]) < edges[k])
      out[k] = std::nextafter(out[k], std::numeric_limits<T>::infinity());
  }
  return out;
}

// Adds to counts[b] the number of x's entries in bin b of the edges (activations.hpp, Bins):
// the bin of a is the number of edges <= a, which is what NumPy's searchsorted(edges, a,
// side="right") returns. NaN falls in no bin. Each block counts, per edge, the entries at or
// above it (loops that vectorise, no store-to-load chain through one bin's count); bin b holds
// those at or above edge b-1 but not edge b.
template <class T>
void add_to_histogram(const T* x, std::size_t n, const std::array<T, kHistBins - 1>& edges,
                      double* counts) {
  constexpr int kBlock = 4096;
  for (std::size_t first = 0; first < n; first += kBlock) {
    const int m = int(std::min<std::size_t>(kBlock, n - first));
    const T* block = x + first;
    int numbers = 0;  // entries that are not NaN
#pragma omp simd reduction(+ : numbers)
    for (int i = 0; i < m; ++i) numbers += block[i] == block[i];
    int above[kHistBins - 1];  // above[k]: entries >= edge k (NaN compares false)
    for (int k = 0; k < kHistBins - 1; ++k) {
      const T e = edges[k];
      int c = 0;
#pragma omp simd reduction(+ : c)
      for (int i = 0; i < m; ++i) c += block[i] >= e;
      above[k] = c;
    }
    counts[0] += numbers - above[0];
    for (int k = 1; k < kHistBins - 1; ++k) counts[k] += above[k - 1] - above[k];
    counts[kHistBins - 1] += above[kHistBins - 2];
  }
}

// Gathers a LayerStats over the chunks of one forward pass: add() each layer's pre-activations
// z and activations a for a chunk of rows (row-major, rows x width), then finish() with the
// total number of rows. Each layer's sums are its own: add() for different layers may run on
// different threads at once.
class LayerStatsBuilder {
 public:
  LayerStatsBuilder(std::vector<int> widths, std::vector<Act> acts)
      : widths_(std::move(widths)),
        acts_(std::move(acts)),
        saturated_(acts_.size(), 0.0),
        alive_(acts_.size()),
        pre_(acts_.size()),
        act_(acts_.size()),
        hist_(acts_.size() * kHistBins, 0.0) {
    for (std::size_t l = 0; l < acts_.size(); ++l) alive_[l].assign(widths_[l], 0);
  }

  template <class T>
  void add(int l, const T* z, const T* a, int rows) {
    const int w = widths_[l];
    const std::size_t count = std::size_t(rows) * w;
    pre_[l].add(z, count);
    act_[l].add(a, count);
    add_to_histogram(a, count, edges_as<T>(histogram_edges(activation_bins(acts_[l]))),
                     hist_.data() + std::size_t(l) * kHistBins);
    with_activation(acts_[l], [&](auto kind) {
      using A = decltype(kind);
      if constexpr (A::measure == Measure::saturation) {
        long saturated = 0;  // an integer count: the loop vectorises, and stays exact
        const long nn = long(count);
#pragma omp simd reduction(+ : saturated)
        for (long i = 0; i < nn; ++i) saturated += A::saturated(a[i]);
        saturated_[l] += double(saturated);
      } else if constexpr (A::measure == Measure::dead) {
        char* alive = alive_[l].data();
        for (int r = 0; r < rows; ++r) {
          const T* row = a + std::size_t(r) * w;
#pragma omp simd
          for (int j = 0; j < w; ++j) alive[j] |= char(A::active(row[j]));
        }
      }
    });
  }

  LayerStats finish(long n) const {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    LayerStats out;
    out.act_hist = hist_;
    for (std::size_t l = 0; l < acts_.size(); ++l) {
      const int w = widths_[l];
      const double entries = double(n) * w;
      const Measure measure = activation_measure(acts_[l]);
      out.saturation.push_back(measure == Measure::saturation && n > 0 ? saturated_[l] / entries
                                                                       : nan);
      if (measure == Measure::dead && n > 0) {
        int d = 0;
        for (char c : alive_[l]) d += !c;
        out.dead.push_back(double(d) / w);
      } else {
        out.dead.push_back(nan);
      }
      out.pre_mean.push_back(n > 0 ? pre_[l].mean : nan);
      out.pre_std.push_back(n > 0 ? pre_[l].stddev() : nan);
      out.act_mean.push_back(n > 0 ? act_[l].mean : nan);
      out.act_std.push_back(n > 0 ? act_[l].stddev() : nan);
      for (int b = 0; b < kHistBins; ++b) {
        double& share = out.act_hist[l * kHistBins + b];
        share = n > 0 ? share / entries : nan;
      }
    }
    return out;
  }

 private:
  std::vector<int> widths_;
  std::vector<Act> acts_;
  std::vector<double> saturated_;
  std::vector<std::vector<char>> alive_;
  std::vector<Moments> pre_, act_;
  std::vector<double> hist_;  // (layers, kHistBins) counts until finish()
};

}  // namespace fastbp
