// Shared vocabulary of the core: thread count, parallel-loop policy, argument checks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "denormals.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastbp {

// Threads of fastbp's parallel loops and products (BLAS runs single-threaded inside them): the
// count set_num_threads asked for, else OpenMP's default (OMP_NUM_THREADS, or one per CPU), and
// never more than max_threads(): one in a child made by fork() (process.hpp).
int num_threads();
// Asks for n threads (n >= 1); returns the count fastbp will use, which is smaller than n
// beyond max_threads().
int set_num_threads(int n);
// For the calling thread only: n threads (n >= 1) instead of the process's count, or the
// process's count again (n = 0); returns the calling thread's previous setting (0: none). Two
// Python threads training at once (an estimator's n_threads) then never change each other's
// count, nor leave one behind for the process.
int set_local_num_threads(int n);
// The most threads a team may have. Every thread of a team calls BLAS at the same time, and
// OpenBLAS keeps working buffers for 2 x MAX_THREADS callers at once (its build setting; 64 in
// scipy-openblas32, so 128 callers): one more and it aborts the process ("too many memory
// regions"). A team of at most MAX_THREADS leaves room for a second one training at the same
// time (two networks in two Python threads, lr_sweep's n_jobs=2). One in a forked child.
int max_threads();

// Storage that starts on a cache line (64 bytes), for the buffers a team splits into parts
// (parameters, gradients, optimizer state, the batch's rows): where the parts' sizes are whole
// lines, no two threads then write the same line. glibc starts a large block 16 bytes into a
// page, which put every part boundary inside a line, and the threads' updates fought over those
// lines: aligned, deep-narrow's 2-thread epoch runs 12% faster and mnist-like's 7%
// (bench/core_epoch.cpp).
template <class T>
struct LineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kLine{64};
  LineAllocator() = default;
  template <class U>
  LineAllocator(const LineAllocator<U>&) noexcept {}
  // Whole lines, so that a buffer's last line is its own too (glibc rounds up itself; MSVC's
  // and macOS's aligned allocations need not).
  T* allocate(std::size_t n) {
    if (n > (std::size_t(-1) - 63) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new((n * sizeof(T) + 63) / 64 * 64, kLine));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, kLine); }
  template <class U>
  bool operator==(const LineAllocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const LineAllocator<U>&) const noexcept {
    return false;
  }
};
template <class T>
using LineVector = std::vector<T, LineAllocator<T>>;

// Inside a parallel region everything runs on the calling thread: no nested teams.
inline bool in_parallel() {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return false;
#endif
}

// The largest layer width and batch: BLAS takes 32-bit int dimensions, and the products'
// blocking rounds a dimension up by less than a block (gemm.cpp, gemm_packed.cpp), which must
// not overflow an int either. 2**31 - 2**16.
constexpr int kMaxDim = 0x7fff0000;

// Elementwise passes below this many elements run on one thread: waking a team costs more.
constexpr long kParallelMin = 1 << 17;

// Where part `part` of `parts` equal shares of [0, n) begins (part = parts: n), without the
// overflow of n * part.
inline std::size_t share_of(std::size_t n, int part, int parts) {
  const std::size_t p = std::size_t(part), q = std::size_t(parts);
  return n / q * p + (p < n % q ? p : n % q);
}

// f(begin, end) over contiguous ranges covering [0, n): one range per thread of fastbp's
// team when n is large enough to pay for waking them, else one range on the calling thread.
template <class F>
inline void parallel_ranges(std::size_t n, F&& f) {
#ifdef _OPENMP
  if (n >= std::size_t(kParallelMin) && num_threads() > 1 && !in_parallel()) {
#pragma omp parallel num_threads(num_threads())
    {
      const DenormalScope fp;  // a worker thread too computes as the setting says
      const int t = omp_get_thread_num(), team = omp_get_num_threads();
      f(share_of(n, t, team), share_of(n, t + 1, team));
    }
    return;
  }
#endif
  f(std::size_t(0), n);
}

// f(i) for i in [0, n): a plain loop the compiler can vectorise, split as parallel_ranges does.
template <class F>
inline void parallel_for(long n, F&& f) {
  parallel_ranges(std::size_t(n), [&](std::size_t begin, std::size_t end) {
#pragma omp simd
    for (std::size_t i = begin; i < end; ++i) f(long(i));
  });
}

inline void require(bool ok, const char* what) {  // no std::string built on the hot path
  if (!ok) throw std::invalid_argument(what);
}

inline void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

// Sum of x[i]^2 accumulated in double: vectorised, and split over threads when long.
template <class T>
double sum_squares(const T* x, std::size_t n) {
  const long nn = long(n);
  if (nn < 64) {
    // Short (a layer's row in online learning, where it lies on each sample's critical path):
    // eight lanes summed pairwise. A simd reduction would add its lanes one after another.
    double lane[8] = {};
    long i = 0;
    for (; i + 8 <= nn; i += 8)
      for (int k = 0; k < 8; ++k) lane[k] += double(x[i + k]) * double(x[i + k]);
    double rest = 0;
    for (; i < nn; ++i) rest += double(x[i]) * double(x[i]);
    return ((lane[0] + lane[4]) + (lane[2] + lane[6])) +
           ((lane[1] + lane[5]) + (lane[3] + lane[7])) + rest;
  }
#ifdef _OPENMP
  if (nn >= kParallelMin && num_threads() > 1 && !in_parallel()) {
    // Each thread's share summed apart, then the shares in thread order: OpenMP's reduction
    // adds them in the order the threads finish, which changes the last bits from run to run.
    constexpr int kStride = 64 / sizeof(double);  // a cache line per thread's sum
    const int threads = num_threads();
    std::vector<double> part(std::size_t(threads) * kStride, 0.0);
    int team = 1;
#pragma omp parallel num_threads(threads)
    {
      const DenormalScope fp;
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      if (t == 0) team = nt;
      double s = 0;
      const std::size_t end = share_of(n, t + 1, nt);
#pragma omp simd reduction(+ : s)
      for (std::size_t i = share_of(n, t, nt); i < end; ++i) s += double(x[i]) * double(x[i]);
      part[std::size_t(t) * kStride] = s;
    }
    double s = 0;
    for (int t = 0; t < team; ++t) s += part[std::size_t(t) * kStride];
    return s;
  }
#endif
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (long i = 0; i < nn; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

}  // namespace fastbp
