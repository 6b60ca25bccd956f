// fastbp._cpu_features: what the CPU running this process can execute, so that fastbp can load
// the core compiled for the best instruction set it has. Built for the baseline instruction set
// (it runs before anything is known) and on the plain CPython API: it registers no pybind11
// types, so it never meets the core's registrations.
//
// A vector feature counts only if the operating system saves its registers on a context switch
// (XCR0): a CPU may have AVX-512 while a hypervisor or an old kernel leaves it disabled.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstdint>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#define FASTBP_X86_64 1
#if defined(_MSC_VER)
#include <immintrin.h>
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#if defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

namespace {

#ifdef FASTBP_X86_64

struct Regs {
  uint32_t a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(uint32_t leaf, uint32_t subleaf) {
  Regs r;
#if defined(_MSC_VER)
  int v[4];
  __cpuidex(v, int(leaf), int(subleaf));
  r = {uint32_t(v[0]), uint32_t(v[1]), uint32_t(v[2]), uint32_t(v[3])};
#else
  __cpuid_count(leaf, subleaf, r.a, r.b, r.c, r.d);
#endif
  return r;
}

// The register state the OS saves (XCR0); only valid when CPUID reports OSXSAVE.
uint64_t xcr0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  uint32_t lo, hi;
  __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
#endif
}

#if defined(__APPLE__)
// macOS gives a thread the AVX-512 state on its first AVX-512 instruction, so XCR0 lacks it
// until then; the kernel says whether it will.
bool macos_has(const char* name) {
  int value = 0;
  size_t size = sizeof value;
  return sysctlbyname(name, &value, &size, nullptr, 0) == 0 && value != 0;
}
#endif

bool bit(uint32_t reg, int n) { return (reg >> n) & 1u; }

// Names as in /proc/cpuinfo and GCC's -m options; fastbp/_dispatch.py maps them to x86-64
// microarchitecture levels.
std::vector<std::string> detect() {
  std::vector<std::string> f;
  const uint32_t max_leaf = cpuid(0, 0).a;
  const Regs l1 = cpuid(1, 0);
  const Regs l7 = max_leaf >= 7 ? cpuid(7, 0) : Regs();
  const Regs e1 = cpuid(0x80000000u, 0).a >= 0x80000001u ? cpuid(0x80000001u, 0) : Regs();

  const bool osxsave = bit(l1.c, 27);
  const uint64_t xcr = osxsave ? xcr0() : 0;
  const bool os_avx = (xcr & 0x6) == 0x6;  // XMM and YMM state
#if defined(__APPLE__)
  const bool os_avx512 = os_avx && macos_has("hw.optional.avx512f");
#else
  const bool os_avx512 = os_avx && (xcr & 0xe0) == 0xe0;  // opmask, ZMM0-15 high, ZMM16-31
#endif

  auto add = [&f](bool present, const char* name) {
    if (present) f.emplace_back(name);
  };
  add(bit(l1.d, 26), "sse2");
  add(bit(l1.c, 0), "sse3");
  add(bit(l1.c, 9), "ssse3");
  add(bit(l1.c, 19), "sse4.1");
  add(bit(l1.c, 20), "sse4.2");
  add(bit(l1.c, 23), "popcnt");
  add(bit(l1.c, 13), "cx16");
  add(bit(e1.c, 0), "lahf");
  add(bit(l1.c, 22), "movbe");
  add(bit(e1.c, 5), "lzcnt");
  add(bit(l7.b, 3), "bmi1");
  add(bit(l7.b, 8), "bmi2");
  add(osxsave, "osxsave");
  add(os_avx && bit(l1.c, 28), "avx");
  add(os_avx && bit(l7.b, 5), "avx2");
  add(os_avx && bit(l1.c, 12), "fma");
  add(os_avx && bit(l1.c, 29), "f16c");
  add(os_avx512 && bit(l7.b, 16), "avx512f");
  add(os_avx512 && bit(l7.b, 17), "avx512dq");
  add(os_avx512 && bit(l7.b, 28), "avx512cd");
  add(os_avx512 && bit(l7.b, 30), "avx512bw");
  add(os_avx512 && bit(l7.b, 31), "avx512vl");
  return f;
}

#else

std::vector<std::string> detect() { return {}; }  // one core variant: nothing to choose

#endif

PyObject* features(PyObject*, PyObject*) {
  const std::vector<std::string> names = detect();
  PyObject* out = PyTuple_New(Py_ssize_t(names.size()));
  if (!out) return nullptr;
  for (std::size_t i = 0; i < names.size(); ++i) {
    PyObject* s = PyUnicode_FromString(names[i].c_str());
    if (!s) {
      Py_DECREF(out);
      return nullptr;
    }
    PyTuple_SET_ITEM(out, Py_ssize_t(i), s);
  }
  return out;
}

PyMethodDef methods[] = {
    {"features", features, METH_NOARGS,
     "features() -> tuple of str: the instruction-set extensions this CPU has and the OS "
     "enables (x86-64 only; empty elsewhere)."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT,
                      "_cpu_features",
                      "CPU features, for choosing fastbp's core variant (private).",
                      -1,
                      methods,
                      nullptr,
                      nullptr,
                      nullptr,
                      nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__cpu_features() { return PyModule_Create(&module); }
