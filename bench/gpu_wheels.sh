#!/usr/bin/env bash
# The wheels bench/gpu_check.sh installs on the GPU machine, which has no package registry:
# scipy-openblas32 (fastbp's CPU core needs it, the machine's image lacks it) for its Python
# 3.12, and scikit-build-core and pybind11 at versions known to build fastbp. Into .whl/
# (git-ignored, about 8 MB), from the repository root, on a machine that reaches PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  scipy-openblas32==0.3.34.481.3
python3 -m pip download -q --no-deps --only-binary=:all: -d .whl \
  scikit-build-core==1.1.2 pybind11==3.1.0
ls -la .whl
