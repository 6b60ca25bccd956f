"""fastbp's own float32 products (cpp/gemm_packed.cpp) against OpenBLAS's sgemm, one thread.

Each cell is OpenBLAS's time over fastbp's for C = op(A) op(B) with the same arrays: above 1,
fastbp's packed kernels are faster. These ratios set where `gemm.cpp` hands a float32 product to
them (`packed_worth` in gemm_packed.hpp): A B and A^T B from 2^21 multiply-adds, A B^T from 2^18.
The reference is NumPy's matmul, on the OpenBLAS that NumPy ships; both run on one thread.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE taskset -c 1 python bench/packed_gemm.py

Needs a core with the kernels (``fastbp.build_info()["own_gemm"]``: the AVX-512 cores).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # NumPy's OpenBLAS on one thread, set before NumPy loads it
    os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import fastbp as fb  # noqa: E402

CASES = {"A B": (False, False), "A B^T": (False, True), "A^T B": (True, False)}


def ratio(M: int, N: int, K: int, ta: bool, tb: bool, repeats: int = 5, seconds: float = 0.02):
    """OpenBLAS's best time over fastbp's for C (M x N) = op(A) op(B), op(A) M x K."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C = np.zeros((M, N), np.float32)
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    calls = max(1, int(seconds * 50e9 / (2.0 * M * N * K)))  # ~seconds at 50 GFLOP/s

    def best(product) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                product()
            times.append(time.perf_counter() - start)
        return min(times)

    own = best(lambda: fb._core._packed_gemm(ta, tb, 1.0, A, B, 0.0, C, bfloat16=False))
    blas = best(lambda: np.matmul(opA, opB, out=C))
    return blas / own


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default="16,32,64,128,256", help="M values (comma-separated)")
    p.add_argument("--sizes", default="64,128,256,512,1024", help="N = K values")
    args = p.parse_args(argv)
    if not fb.build_info()["own_gemm"]:
        raise SystemExit("this core runs float32 products in OpenBLAS: nothing to compare")
    rows = [int(v) for v in args.rows.split(",")]
    sizes = [int(v) for v in args.sizes.split(",")]
    print("OpenBLAS time / fastbp time, one thread (> 1: fastbp's kernels faster)")
    for name, (ta, tb) in CASES.items():
        print(f"\n{name:7s}" + "".join(f"{'N=K=' + str(s):>10s}" for s in sizes))
        for M in rows:
            cells = "".join(f"{ratio(M, s, s, ta, tb):10.2f}" for s in sizes)
            print(f"M={M:<5d}" + cells)


if __name__ == "__main__":
    main()
