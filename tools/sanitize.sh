#!/usr/bin/env bash
# The test suite, or part of it, under AddressSanitizer and UndefinedBehaviorSanitizer.
#
#   bash tools/sanitize.sh                      # the whole suite (~10x slower than usual)
#   bash tools/sanitize.sh tests/test_fuzz.py   # any pytest arguments
#   FASTBP_FUZZ_EXAMPLES=500 bash tools/sanitize.sh tests/test_fuzz.py   # a longer fuzz hunt
#
# Builds fastbp (the core for this machine, and the CUDA backend's host emulation) with
# FASTBP_SANITIZE=ON into .venv-sanitize/ and build-sanitize/, then runs pytest with the ASan
# runtime preloaded (Python itself is not instrumented, so the runtime must come first). Any
# report (out-of-bounds access, use after free, signed overflow, misaligned or invalid value)
# stops the run with a non-zero exit. Leak detection is off: CPython keeps much of its memory
# until exit, which LeakSanitizer would report. GCC or Clang on Linux.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-sanitize
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet scikit-build-core pybind11 scipy-openblas32 numpy
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet --no-build-isolation -e ".[test]" -Cbuild-dir=build-sanitize \
  -Ccmake.build-type=RelWithDebInfo -Ccmake.define.FASTBP_SANITIZE=ON \
  -Ccmake.define.FASTBP_NATIVE=ON -Ccmake.define.FASTBP_CUDA_EMULATION=ON

cxx=${CXX:-c++}
asan=$("$cxx" -print-file-name=libasan.so)
stdcxx=$("$cxx" -print-file-name=libstdc++.so)
if [ ! -e "$asan" ]; then
  echo "sanitize.sh: $cxx has no libasan.so (install GCC's libasan, or set CXX)" >&2
  exit 2
fi

export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_init_order=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# libstdc++ preloaded too: ASan intercepts the C++ exception runtime, which must resolve first.
LD_PRELOAD="$asan:$stdcxx" python -m pytest -p no:cacheprovider -q "$@"
