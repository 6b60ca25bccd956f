// What the core knows of the process it runs in: whether it is a child made by fork(). The
// state here is the core's only process-wide state besides the thread count; each flag is set
// from one place, and read with plain atomic loads on the hot path.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>
#include <thread>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace fastbp {

// --- fork ---
// libgomp's thread pool does not survive fork(): the child inherits a pool whose threads exist
// only in the parent, and its first parallel region waits for them forever. The copy of libgomp
// may be shared with other libraries (scikit-learn's and fastbp's wheels can carry the same
// one), so whether a pool exists is not fastbp's to know. A forked child therefore runs on one
// thread (num_threads()), and never enters libgomp's pool. Forks are counted by a
// pthread_atfork child handler: it runs in every child, however it was forked (os.fork,
// multiprocessing, joblib, a C library), before any code of the child's, and only increments an
// atomic, which is async-signal-safe.
inline std::atomic<uint64_t> g_forks{0};

inline uint64_t fork_generation() { return g_forks.load(std::memory_order_acquire); }
inline bool forked_child() { return fork_generation() > 0; }

// Once per process, when the module loads.
inline void install_fork_handler() {
#if defined(__unix__) || defined(__APPLE__)
  static const int installed =
      pthread_atfork(nullptr, nullptr, [] { g_forks.fetch_add(1, std::memory_order_acq_rel); });
  (void)installed;
#endif
}

// A mutex that a forked child can use even if a thread of the parent held it at fork: that
// thread does not exist in the child, so the child's first locker starts from a fresh mutex
// (the memory it guarded is as the fork found it, possibly in the middle of a step).
class ForkSafeMutex {
 public:
  void lock() {
    if (generation_.load(std::memory_order_acquire) != fork_generation()) renew();
    mutex_.lock();
  }
  void unlock() { mutex_.unlock(); }

 private:
  static constexpr uint64_t kRenewing = ~uint64_t(0);

  // Exactly one thread rebuilds the mutex: the one that moves generation_ to kRenewing; the
  // others wait until it is done. (A fork in the middle leaves kRenewing, which the
  // grandchild's first locker renews in turn.)
  void renew() {
    const uint64_t now = fork_generation();
    uint64_t seen = generation_.load(std::memory_order_acquire);
    while (seen != now) {
      if (generation_.compare_exchange_weak(seen, kRenewing, std::memory_order_acq_rel)) {
        new (&mutex_) std::mutex;  // the old one's owner is gone with the parent's threads
        generation_.store(now, std::memory_order_release);
        return;
      }
      if (seen == kRenewing) {
        std::this_thread::yield();
        seen = generation_.load(std::memory_order_acquire);
      }
    }
  }

  std::mutex mutex_;
  std::atomic<uint64_t> generation_{fork_generation()};
};

}  // namespace fastbp
