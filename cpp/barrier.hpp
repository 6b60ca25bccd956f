// A barrier for the threads of one parallel region: spin briefly, then yield, then sleep.
//
// The epoch loop's team meets three times per mini-batch (four where it splits the first layer
// by its inputs). libgomp's own barrier either sleeps at
// once (OMP_WAIT_POLICY=passive: waking a thread takes longer than a small batch's work) or
// spins without bound (active: with another busy process on the machine, a spinning thread
// holds the CPU its partner needs, and epochs take several times longer). This one:
//  - spins on pause instructions briefly: between the phases of a running batch, a partner
//    arrives within that, and the barrier costs far less than a wake-up;
//  - then yields the CPU between checks, up to kSpinMicros: a partner descheduled on this same
//    CPU runs at once, and an unrelated process loses little;
//  - then sleeps in the kernel (futex), for a partner that is far behind or done with the epoch.
// A thread that finds a partner on its own CPU sleeps at once (see sharing_cpu).
#pragma once
#include <atomic>
#include <chrono>
#include <climits>
#include <memory>
#include <thread>

#if defined(__linux__)
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastbp {

class SpinBarrier {
 public:
  static constexpr int kPauses = 64;       // a short spin (a pause's length varies by CPU)
  static constexpr int kSpinMicros = 100;  // then yielding, then sleeping

  // Not thread-safe: set the team size before the team's first wait.
  void reset(int n) {
    n_ = n;
    count_.store(0);
    cpu_.reset(new std::atomic<int>[std::size_t(n)]);
    for (int i = 0; i < n; ++i) cpu_[i].store(-1);
  }

  // Thread t of the team waits until all n have called wait().
  void wait(int t) {
    if (n_ <= 1) return;
    const bool shared = sharing_cpu(t);
    const unsigned phase = phase_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {  // the last to arrive
      count_.store(0, std::memory_order_relaxed);
      phase_.fetch_add(1, std::memory_order_seq_cst);
      if (sleepers_.load(std::memory_order_seq_cst) > 0) wake_all();
      return;
    }
    if (!shared && spin_until_changed(phase)) return;
    // Sleep. The sleeper count and the phase are read and written in opposite orders by the two
    // sides (both seq_cst), so either the last thread sees a sleeper and wakes it, or the sleeper
    // sees the new phase and never sleeps.
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    while (phase_.load(std::memory_order_seq_cst) == phase) sleep_while(phase);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  // Whether thread t runs on the CPU where another thread of the team last arrived. Spinning
  // there would only take the CPU from the thread it waits for. Sleeping instead lets the
  // kernel place the woken thread on an idle CPU: once the kernel has put two threads of a team
  // on one CPU, threads that never sleep can stay there, and the epoch runs on one CPU.
  bool sharing_cpu(int t) {
#if defined(__linux__)
    const int cpu = sched_getcpu();
    cpu_[t].store(cpu, std::memory_order_relaxed);
    for (int i = 0; i < n_; ++i)
      if (i != t && cpu_[i].load(std::memory_order_relaxed) == cpu) return true;
#else
    (void)t;
#endif
    return false;
  }

  // Spins kPauses times, then yields the CPU between checks until kSpinMicros: a
  // partner descheduled on this same CPU then runs at once, and both threads stay runnable, so
  // the kernel's load balancer can move one to an idle CPU. (Sleeping instead would let each
  // futex wake-up pull the woken thread next to its waker, and keep the pair on one CPU.)
  bool spin_until_changed(unsigned phase) const {
    using clock = std::chrono::steady_clock;
    for (int i = 0; i < kPauses; ++i) {
      if (phase_.load(std::memory_order_acquire) != phase) return true;
      cpu_relax();
    }
    const auto deadline = clock::now() + std::chrono::microseconds(kSpinMicros);
    for (;;) {
      if (phase_.load(std::memory_order_acquire) != phase) return true;
      std::this_thread::yield();
      if (clock::now() > deadline) return false;
    }
  }

  void sleep_while(unsigned phase) {
#if defined(__linux__)
    // Returns at once if the phase has already moved on; spurious wake-ups are re-checked.
    syscall(SYS_futex, reinterpret_cast<unsigned*>(&phase_), FUTEX_WAIT_PRIVATE, phase, nullptr,
            nullptr, 0);
#else
    (void)phase;
    std::this_thread::yield();
#endif
  }

  void wake_all() {
#if defined(__linux__)
    syscall(SYS_futex, reinterpret_cast<unsigned*>(&phase_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
            nullptr, 0);
#endif
  }

  static_assert(sizeof(std::atomic<unsigned>) == sizeof(unsigned), "futex word layout");
  int n_ = 1;
  std::unique_ptr<std::atomic<int>[]> cpu_;  // per thread: the CPU it last arrived on
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<unsigned> phase_{0};
  alignas(64) std::atomic<int> sleepers_{0};
};

}  // namespace fastbp
