// Subnormal numbers during the core's work. A subnormal operand or result costs some CPUs
// (Intel's, among others) a microcode assist of ~100 cycles, and vanishing gradients are exactly
// where they appear: a deep sigmoid network's first-layer gradients reach below 1e-38 in float32
// and its epochs took 4-8 times as long. So while the core computes, its threads flush subnormal
// results to zero and read subnormal operands as zero (x86: FTZ and DAZ in MXCSR; aarch64: FZ in
// FPCR), unless set_flush_denormals(false) asks for IEEE gradual underflow. Either way each
// thread's setting is put back when the work is done: the caller's thread, and the OpenMP
// workers that other libraries may share, leave a core call as they entered it.
#pragma once
#include <atomic>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#include <xmmintrin.h>
#define FASTBP_FPENV_X86 1
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTBP_FPENV_ARM64 1
#endif

namespace fastbp {

// The process-wide choice, read at the start of every scope below (true: flush, the default).
inline std::atomic<bool>& flush_denormals_setting() {
  static std::atomic<bool> flush{true};
  return flush;
}
inline bool flush_denormals() { return flush_denormals_setting().load(std::memory_order_relaxed); }
inline void set_flush_denormals(bool on) { flush_denormals_setting().store(on); }

// For the lifetime of the object, the calling thread flushes subnormals or keeps them, as the
// setting says; the destructor restores the thread's previous state. Cheap when nothing changes
// (a nested scope on a thread already set): the control register is only written on a change.
class DenormalScope {
 public:
  DenormalScope() : DenormalScope(flush_denormals()) {}
  explicit DenormalScope(bool flush) {
    saved_ = read();
    const uint64_t wanted = flush ? (saved_ | kBits) : (saved_ & ~kBits);
    changed_ = wanted != saved_;
    if (changed_) write(wanted);
  }
  ~DenormalScope() {
    if (changed_) write(saved_);
  }
  DenormalScope(const DenormalScope&) = delete;
  DenormalScope& operator=(const DenormalScope&) = delete;

 private:
#if defined(FASTBP_FPENV_X86)
  static constexpr uint64_t kBits = 0x8040;  // MXCSR: FTZ (bit 15), DAZ (bit 6)
  static uint64_t read() { return _mm_getcsr(); }
  static void write(uint64_t v) { _mm_setcsr(unsigned(v)); }
#elif defined(FASTBP_FPENV_ARM64)
  static constexpr uint64_t kBits = uint64_t(1) << 24;  // FPCR.FZ: inputs and results
  static uint64_t read() {
    uint64_t v;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(v));
    return v;
  }
  static void write(uint64_t v) { __asm__ __volatile__("msr fpcr, %0" : : "r"(v)); }
#else  // no known control: arithmetic keeps its default (IEEE) behaviour
  static constexpr uint64_t kBits = 0;
  static uint64_t read() { return 0; }
  static void write(uint64_t) {}
#endif
  uint64_t saved_ = 0;
  bool changed_ = false;
};

}  // namespace fastbp
