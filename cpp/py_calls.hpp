// What a call from Python into the core needs from the process around it: the count of calls
// in the core that the interpreter's exit waits for, and the StopCheck that lets Ctrl-C and
// Trainer.stop() end a long computation. Shared by both modules (bindings.cpp, cuda/bindings.cpp);
// each module counts its own calls and registers its own exit hook.
#pragma once
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>

#include "process.hpp"

namespace fastbp {

// --- Stopping, and the interpreter's exit ---
// A thread still inside the core when the interpreter exits crashes the process: OpenBLAS is
// torn down under it, or, coming back for the GIL of a finalizing interpreter, it is ended
// inside gil_scoped_release's destructor (std::terminate). So the exit (shut_down, registered
// with atexit) stops every computation at its next check, refuses new ones, and waits until no
// call is in the core.

// Raised instead of starting or finishing a computation once the interpreter exits. SystemExit
// ends a daemon thread quietly, as the interpreter itself would a moment later.
[[noreturn]] inline void raise_exiting() {
  PyErr_SetString(PyExc_SystemExit,
                  "fastbp: the interpreter is exiting; no computation starts or finishes now");
  throw pybind11::error_already_set();
}

// One call counted in g_calls_in_core, from before its GIL is released until after it is taken
// back. Made with the GIL held, as the shutdown flag is set: a call either starts before the
// flag and is waited for, or sees the flag and does not start.
class CallInCore {
 public:
  CallInCore() {
    if (shutting_down()) raise_exiting();
    g_calls_in_core.fetch_add(1, std::memory_order_acq_rel);
  }
  ~CallInCore() { g_calls_in_core.fetch_sub(1, std::memory_order_acq_rel); }
  CallInCore(const CallInCore&) = delete;
  CallInCore& operator=(const CallInCore&) = delete;
};

// Whether the calling thread is Python's main thread, the one where Python runs its signal
// handlers (after a fork, the thread that forked).
inline bool on_main_thread() {
  const pybind11::object main = pybind11::module_::import("threading").attr("main_thread")();
  return main.attr("ident").cast<unsigned long>() == PyThread_get_thread_ident();
}

// A lock another thread holds, waited for without the GIL. That thread's computation may hold
// it for minutes (an epoch), so on the main thread Python's signal handlers run every
// StopCheck::kPollInterval meanwhile, and what one raises (KeyboardInterrupt) ends the wait.
template <class Mutex>
void wait_for(std::unique_lock<Mutex>& lock) {
  bool main;
  {
    pybind11::gil_scoped_acquire gil;
    main = on_main_thread();
  }
  if (!main) return lock.lock();
  while (!lock.try_lock_for(StopCheck::kPollInterval)) {
    pybind11::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw pybind11::error_already_set();
  }
}

// f with the GIL released and `mutex` held (a network's, an optimizer state's), counted as a
// call in the core. The lock is waited for without the GIL: a computation holding it takes the
// GIL for a moment to run signal handlers. Nothing in f may touch Python objects.
template <class Mutex, class F>
auto without_gil_holding(Mutex& mutex, F&& f) {
  const CallInCore call;
  pybind11::gil_scoped_release release;
  std::unique_lock<Mutex> lock(mutex, std::try_to_lock);
  if (!lock.owns_lock()) wait_for(lock);
  return f();
}

// atexit runs after the interpreter has joined its non-daemon threads and before it tears itself
// down, so daemon threads can still take the GIL back and leave the core.
inline void shut_down() {
  g_shutting_down.store(true, std::memory_order_release);
  pybind11::gil_scoped_release release;
  while (g_calls_in_core.load(std::memory_order_acquire) > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// The StopCheck of a call from Python: the caller's token and the exit, and, on the main
// thread, Python's signal handlers, which the core's loops would otherwise keep from running
// until the call returns (Ctrl-C used to wait for the end of the epoch). At most every
// StopCheck::kPollInterval the poll takes the GIL for a moment and runs the handlers; what one
// raises (KeyboardInterrupt) stops the computation, and is raised when the call returns.
class PythonStop {
 public:
  explicit PythonStop(const StopToken* token = nullptr)
      : check_(token, on_main_thread() ? &poll : nullptr, this) {}
  PythonStop(const PythonStop&) = delete;
  PythonStop& operator=(const PythonStop&) = delete;

  StopCheck& check() { return check_; }

  // After the computation, with the GIL held: raises what a signal handler raised. With
  // complete_only, a computation cut short for another reason (the exit) raises too: an
  // incomplete result (a forward pass over some of the rows) is never returned.
  void raise_if_stopped(bool complete_only) {
    if (error_) throw *error_;
    if (complete_only && check_.stopped()) raise_exiting();
  }

 private:
  static bool poll(void* self) {
    pybind11::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() == 0) return false;
    static_cast<PythonStop*>(self)->error_.emplace();  // takes the handler's exception
    return true;
  }

  std::optional<pybind11::error_already_set> error_;
  StopCheck check_;
};

}  // namespace fastbp
