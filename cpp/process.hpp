// What the core knows of the process it runs in: whether it is a child made by fork(), whether
// the process is shutting down, and how a long computation is asked to stop between two steps.
// The state here is the core's only process-wide state besides the thread count; each flag is
// set from one place, and read with plain atomic loads on the hot path.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
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

// Calls running in the core with Python's GIL released (the bindings count them, so that the
// interpreter's exit can wait for them: see shutting_down()).
inline std::atomic<int> g_calls_in_core{0};

// Once per process, when the module loads. In the child, no thread is in the core: the one
// thread there is the one that forked, which was running Python.
inline void install_fork_handler() {
#if defined(__unix__) || defined(__APPLE__)
  static const int installed = pthread_atfork(nullptr, nullptr, [] {
    g_forks.fetch_add(1, std::memory_order_acq_rel);
    g_calls_in_core.store(0, std::memory_order_release);
  });
  (void)installed;
#endif
}

// A mutex that a forked child can use even if a thread of the parent held it at fork: that
// thread does not exist in the child, so the child's first locker starts from a fresh mutex
// (the memory it guarded is as the fork found it, possibly in the middle of a step). A thread
// that locks it again while holding it (a Python signal handler, run by a computation's poll on
// the computation's own thread, calling into the same network) gets an exception instead of
// waiting for itself forever.
class ForkSafeMutex {
 public:
  // `what` names the object it guards in the error of a re-entrant lock.
  explicit ForkSafeMutex(const char* what = "the network") : what_(what) {}
  void lock() {
    if (!try_lock()) mutex_.lock();
    owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  }
  bool try_lock() {
    if (generation_.load(std::memory_order_acquire) != fork_generation()) renew();
    if (!mutex_.try_lock()) {
      // Only this thread ever stores its own id, so the comparison needs no ordering.
      if (owner_.load(std::memory_order_relaxed) == std::this_thread::get_id())
        throw std::runtime_error(std::string(what_) +
                                 " is busy with a computation on this same thread (called again "
                                 "from a signal handler?)");
      return false;
    }
    owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    return true;
  }
  // try_lock(), then waiting up to `timeout` for the thread that holds it.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    if (!try_lock() && !mutex_.try_lock_for(timeout)) return false;
    owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    return true;
  }
  void unlock() {
    owner_.store(std::thread::id(), std::memory_order_relaxed);
    mutex_.unlock();
  }

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
        new (&mutex_) std::timed_mutex;  // its owner is gone with the parent's threads
        owner_.store(std::thread::id(), std::memory_order_relaxed);
        generation_.store(now, std::memory_order_release);
        return;
      }
      if (seen == kRenewing) {
        std::this_thread::yield();
        seen = generation_.load(std::memory_order_acquire);
      }
    }
  }

  const char* what_;
  std::timed_mutex mutex_;
  std::atomic<std::thread::id> owner_{};
  std::atomic<uint64_t> generation_{fork_generation()};
};

// --- shutdown ---
// Set once the interpreter begins to exit (the bindings' atexit handler): every loop stops at
// its next check and no new computation starts, and the exit waits until g_calls_in_core is 0,
// so that no thread is inside the core, or in BLAS, when the interpreter and its libraries are
// torn down.
inline std::atomic<bool> g_shutting_down{false};

inline bool shutting_down() { return g_shutting_down.load(std::memory_order_acquire); }

// --- stopping a long computation ---
enum class StopReason : int {
  none,
  requested,    // the caller's token was set (Trainer.stop(), from any thread)
  interrupted,  // the caller's poll said stop (the bindings: a Python signal handler raised)
  shutdown,     // the process is exiting
};

// A request to stop, set from any thread: Python's Trainer.stop() sets the one its fit passes.
struct StopToken {
  std::atomic<bool> flag{false};
};

// Asks a long computation (an epoch, a line search, a forward pass over many rows) to stop
// between two of its steps, keeping the result of the last finished one. requested() reads the
// token and the shutdown flag every time, and calls the caller's poll at most every
// kPollInterval. The poll may take locks (the bindings take Python's GIL), so only one thread
// calls requested(): in a team, thread 0, which is the caller's own thread.
class StopCheck {
 public:
  using Poll = bool (*)(void* context);  // true: stop
  using clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kPollInterval{25};

  StopCheck() = default;
  StopCheck(const StopToken* token, Poll poll, void* context)
      : token_(token), poll_(poll), context_(context), next_poll_(clock::now() + kPollInterval) {}

  // Whether to stop now. Once it has said yes, it keeps saying so.
  bool requested() {
    if (reason_ != StopReason::none) return true;
    if (shutting_down()) {
      reason_ = StopReason::shutdown;
    } else if (token_ && token_->flag.load(std::memory_order_relaxed)) {
      reason_ = StopReason::requested;
    } else if (poll_ && --calls_to_clock_ <= 0) {
      const clock::time_point now = clock::now();
      pace(now);
      if (now >= next_poll_) {
        next_poll_ = now + kPollInterval;
        if (poll_(context_)) reason_ = StopReason::interrupted;
      }
    }
    return reason_ != StopReason::none;
  }
  // Why it said stop; none if it never did.
  StopReason reason() const { return reason_; }
  bool stopped() const { return reason_ != StopReason::none; }

 private:
  const StopToken* token_ = nullptr;
  Poll poll_ = nullptr;
  void* context_ = nullptr;
  // Reads the clock every `stride_` calls only: between online-learning batches of a fraction
  // of a microsecond, a clock read would cost a few percent. The stride keeps the reads about
  // kClockEvery apart, from the pace of the calls since the last read.
  static constexpr std::chrono::microseconds kClockEvery{500};
  void pace(clock::time_point now) {
    if (last_clock_ != clock::time_point{}) {
      const auto per_call = (now - last_clock_) / stride_;
      stride_ = per_call.count() > 0
                    ? int(std::min<long long>(1024, std::max<long long>(1, kClockEvery / per_call)))
                    : std::min(1024, stride_ * 2);
    }
    last_clock_ = now;
    calls_to_clock_ = stride_;
  }
  clock::time_point next_poll_{}, last_clock_{};
  int stride_ = 1, calls_to_clock_ = 0;
  StopReason reason_ = StopReason::none;
};

}  // namespace fastbp
