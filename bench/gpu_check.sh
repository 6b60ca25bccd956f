#!/usr/bin/env bash
# fastbp's CUDA backend on a GPU machine in one call: build, GPU tests, a quick CPU subset, the
# GPU benchmark against PyTorch, a summary. For the device tool's machine (one H200, Python
# 3.12 with PyTorch, nvcc 13.0, CMake, ninja, nvidia-cublas; no package registry).
#
# Before the call, once, from the repository root on the machine the call is made from:
#     bash bench/gpu_wheels.sh        # puts the wheels the GPU machine lacks into .whl/
# The call (device tool `run`):
#     command:   bash bench/gpu_check.sh
#     carry:     [".whl"]
#     timeout_s: 480
# It finishes within DEADLINE seconds (default 450): every step has a timeout and gets at most
# the time left; a failing step does not stop the others. STEPS chooses steps (default all):
#     STEPS="build gputest cputest bench sanitize compile" bash bench/gpu_check.sh
# (the build is needed by every later step of the same call).
#
# Under $OUT (at most 8 files come back): env.log (nvidia-smi, versions), build.log,
# test_gpu.log, test_cpu.log, bench.log, bench.json, bench_compile.json, summary.txt. The
# summary (each step's exit status and time, then the benchmark against the goals) is printed
# last.
set -u
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=${OUT:-/tmp/fastbp-gpu-check}
mkdir -p "$OUT"
DEADLINE=${DEADLINE:-450}
STEPS=${STEPS:-"build gputest cputest bench sanitize compile"}
START=$(date +%s)
SITE=/tmp/fastbp-site      # carried wheels
TARGET=/tmp/fastbp-install # fastbp as pip installs it
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
STATUS=()

left() { echo $((DEADLINE - ($(date +%s) - START))); }
wanted() { [[ " $STEPS " == *" $1 "* ]]; }

# step NAME LOG LIMIT COMMAND...: runs COMMAND with output appended to LOG, within LIMIT
# seconds and the time left; records its exit status (124: timed out).
step() {
  local name=$1 log=$2 limit=$3
  shift 3
  local budget
  budget=$(left)
  ((budget > limit)) && budget=$limit
  if ((budget < 15)); then
    STATUS+=("$name: skipped (no time left)")
    echo "== $name: skipped, no time left" >>"$log"
    return
  fi
  local t0 rc
  t0=$(date +%s)
  echo "== $name ($*), limit ${budget}s" >>"$log"
  timeout -k 10 "$budget" "$@" >>"$log" 2>&1
  rc=$?
  STATUS+=("$name: exit $rc$( ((rc == 124 || rc == 137)) && echo ' (timed out)'), $(($(date +%s) - t0))s")
  echo "== $name: exit $rc" >>"$log"
}

# ---- environment ----
{
  echo "fastbp $(git -C "$REPO" describe --always --dirty 2>/dev/null)"
  nvidia-smi || echo "nvidia-smi failed"
  command -v nvcc >/dev/null || export PATH=$PATH:/usr/local/cuda/bin
  nvcc --version | tail -2
  cmake --version | head -1
  "$PY" -c "import sys, torch, numpy; print(sys.version); print('torch', torch.__version__, torch.version.cuda, torch.cuda.is_available()); print('numpy', numpy.__version__)"
  "$PY" -m pip list 2>/dev/null | grep -i -E "^(nvidia-cublas|pybind11|scikit-build-core|cmake|ninja|pytest|hypothesis) "
} >"$OUT/env.log" 2>&1
export PATH=$PATH:/usr/local/cuda/bin # nvcc, compute-sanitizer, where they are not on PATH yet

# ---- build: the carried wheels, then fastbp with its CUDA backend ----
if wanted build; then
  step wheels "$OUT/build.log" 60 "$PY" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$SITE" "$REPO"/.whl/*.whl
  export PYTHONPATH=$SITE
  rm -rf "$TARGET"
  step build "$OUT/build.log" 300 "$PY" -m pip install -v --no-build-isolation --no-deps --no-index \
    --no-cache-dir --target "$TARGET" "$REPO" -Cbuild-dir=/tmp/fastbp-build \
    -Ccmake.define.FASTBP_NATIVE=ON -Ccmake.define.FASTBP_CUDA=ON
fi
export PYTHONPATH=$TARGET:$SITE
step info "$OUT/build.log" 60 "$PY" -c "import json, fastbp; print(json.dumps(fastbp.build_info(), indent=1)); print('cuda_available', fastbp.cuda_available())"

# ---- tests: the installed package, from the repository's tests ----
if wanted gputest; then
  step test_gpu "$OUT/test_gpu.log" 200 "$PY" -m pytest -q -rs --durations=10 \
    -p no:cacheprovider tests/test_cuda.py
fi
if wanted cputest; then
  step test_cpu "$OUT/test_cpu.log" 90 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_network.py tests/test_optim.py tests/test_train.py
fi

# ---- benchmark: fastbp against eager PyTorch and a CUDA graph of its step; then, with the
# time left, the sanitizers and torch.compile (its compiling takes minutes) ----
if wanted bench; then
  step bench "$OUT/bench.log" 200 "$PY" bench/compare.py --device cuda \
    --peers fastbp,torch,torch.cudagraph --epochs 3 --run-budget 5 --run-timeout 60 \
    --json "$OUT/bench.json"
fi
if wanted sanitize && command -v compute-sanitizer >/dev/null 2>&1; then
  # Out-of-bounds accesses and shared-memory races, on a small workout of every kernel.
  step memcheck "$OUT/test_gpu.log" 120 compute-sanitizer --tool memcheck --error-exitcode 9 \
    "$PY" bench/gpu_sanitize.py
  step racecheck "$OUT/test_gpu.log" 120 compute-sanitizer --tool racecheck --error-exitcode 9 \
    "$PY" bench/gpu_sanitize.py
elif wanted sanitize; then
  STATUS+=("sanitize: skipped (no compute-sanitizer)")
fi
if wanted compile; then
  step bench_compile "$OUT/bench.log" 240 "$PY" bench/compare.py --device cuda \
    --peers torch.compile --config deep-narrow --config mnist-like --config wide --epochs 3 \
    --run-budget 10 --run-timeout 120 --json "$OUT/bench_compile.json"
fi

# ---- summary ----
{
  echo "fastbp GPU check: $(($(date +%s) - START)) s"
  for s in "${STATUS[@]}"; do echo "  $s"; done
  if [ -f "$OUT/test_gpu.log" ]; then
    echo "GPU tests: $(grep -E '[0-9]+ (passed|failed)' "$OUT/test_gpu.log" | tail -1)"
    grep -E '^(FAILED|ERROR) ' "$OUT/test_gpu.log" | head -20
    grep -E '(ERROR|RACECHECK) SUMMARY' "$OUT/test_gpu.log"
  fi
  if [ -f "$OUT/test_cpu.log" ]; then
    echo "CPU tests: $(grep -E '[0-9]+ (passed|failed)' "$OUT/test_cpu.log" | tail -1)"
  fi
  grep -E '^(GPU|machine):' "$OUT/bench.log" 2>/dev/null | head -2
  timeout 30 "$PY" bench/gpu_summary.py "$OUT/bench.json" "$OUT/bench_compile.json" 2>&1
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
