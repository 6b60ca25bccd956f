"""fastbp's own product kernels (cpp/gemm_packed.cpp): in float32, which the AVX-512 cores run
for large float32 products in place of OpenBLAS's sgemm, and in bfloat16 (test_bf16.py: the
training mode). The reference is NumPy's product in float64 of the inputs rounded as the format
does; the kernels must match it to float32 summation error on every tile and block edge."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import fastbp as fb

needs_own_gemm = pytest.mark.skipif(
    not fb.build_info()["own_gemm"], reason="this core runs float32 products in OpenBLAS"
)
needs_bf16 = pytest.mark.skipif(
    not fb.build_info()["bfloat16"], reason="this CPU has no AVX512-BF16"
)
PRECISIONS = [
    pytest.param(False, marks=needs_own_gemm, id="float32"),
    pytest.param(True, marks=needs_bf16, id="bfloat16"),
]


def unrounded(x):
    return np.asarray(x, dtype=np.float64)


@pytest.mark.parametrize("bfloat16", PRECISIONS)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize(
    "M, N, K",
    [
        (1, 1, 1),
        (13, 33, 3),  # one row past a 12-row panel, one column past a 32-column panel
        (5, 17, 31),  # a 4- and an 8-row panel's worth, odd k
        (16, 40, 7),  # 13 to 16 rows left: two 8-row panels
        (256, 45, 70),  # 20 panels of 12 and two of 8
        (9, 64, 17),  # one value of k past a transposed group of 16
        (9, 64, 2),
        (300, 70, 1201),  # two blocks of rows, three blocks of k (the last not full, odd)
        (24, 2100, 40),  # two blocks of columns
    ],
)
def test_packed_gemm_matches_float64(rng, bfloat16, ta, tb, M, N, K):
    # The reference rounds the inputs as the format does (bfloat16, or not at all) and
    # multiplies in float64.
    rounding = ref.bfloat16 if bfloat16 else unrounded
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C = rng.standard_normal((M, N)).astype(np.float32)
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    want = 0.5 * (rounding(opA) @ rounding(opB)) - 2.0 * C
    exact = 0.5 * (opA @ opB) - 2.0 * C
    fb._core._packed_gemm(ta, tb, 0.5, A, B, -2.0, C, bfloat16=bfloat16)
    scale = np.sqrt(K) * 0.5 + 2.0  # the size of each entry's terms
    # float32 sums of K terms: ~2e-6 sqrt(K) here, as NumPy's float32 product (OpenBLAS); a
    # term missed or counted twice would be ~0.5
    assert np.max(np.abs(C - want)) <= 1e-5 * scale
    if bfloat16 and K >= 31:  # rounding 2K inputs moves each sum by ~2^-9 sqrt(K)
        assert np.max(np.abs(C - exact)) > 20 * np.max(np.abs(C - want))


@pytest.mark.parametrize("bfloat16", PRECISIONS)
def test_packed_gemm_beta_zero_ignores_c(rng, bfloat16):
    rounding = ref.bfloat16 if bfloat16 else unrounded
    A = rng.standard_normal((20, 40)).astype(np.float32)
    B = rng.standard_normal((40, 50)).astype(np.float32)
    C = np.full((20, 50), np.nan, np.float32)
    fb._core._packed_gemm(False, False, 1.0, A, B, 0.0, C, bfloat16=bfloat16)
    np.testing.assert_allclose(C, rounding(A) @ rounding(B), rtol=0, atol=1e-4)


@needs_own_gemm
def test_float32_gemm_reads_only_its_operands(rng):
    # Strided views are refused by the hook, so the kernels see exactly A and B; entries of C
    # outside (M, N) would be in other arrays: a product into the middle rows of a larger
    # buffer leaves the rows around it as they were.
    A = rng.standard_normal((37, 45)).astype(np.float32)
    B = rng.standard_normal((45, 70)).astype(np.float32)
    buf = np.full((39, 70), 7.0, np.float32)
    C = buf[1:38]
    assert C.flags.c_contiguous
    fb._core._packed_gemm(False, False, 1.0, A, B, 0.0, C, bfloat16=False)
    assert (buf[0] == 7.0).all() and (buf[38] == 7.0).all()
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=0, atol=1e-4)


@needs_own_gemm
@pytest.mark.parametrize("threads", [1, 2])
def test_trainer_float32_steps_match_float64(rng, restore_threads, threads):
    # Every product is large enough for the packed kernels (at least 2^21 multiply-adds a
    # thread), and the epoch keeps packed copies of W_0 (forward) and W_1 (forward, and
    # transposed for the input gradient). They must follow every update: on two threads 131
    # rows of W_1 split at 65, and the transposed copy's groups of 16 rows straddle the parts.
    # Three batches, so that stale copies would show.
    fb.set_num_threads(threads)
    sizes = [256, 131, 256]
    X = rng.standard_normal((384, sizes[0])).astype(np.float32)
    Y = rng.standard_normal((384, sizes[-1])).astype(np.float32)
    net = fb.MLP(sizes, activation="relu", loss="mse", seed=3)
    W, b = [w.copy() for w in net.weights], [v.copy() for v in net.biases]
    trainer = fb.Trainer(
        net, fb.SGD(lr=0.5), batch_size=128, epochs=1, shuffle=False, progress=False
    )
    trainer.fit(X, Y)
    want_w, want_b = W, b
    for i in range(3):
        rows = slice(128 * i, 128 * (i + 1))
        want_w, want_b = ref.sgd_step_relu_mse(X[rows], Y[rows], want_w, want_b, 0.5)
    for got, want, start in zip(net.weights, want_w, W):
        step = np.max(np.abs(want - start))
        assert np.max(np.abs(got - want)) <= 1e-4 * step  # float32 sums
    for got, want in zip(net.biases, want_b):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(fb.build_info()["own_gemm"], reason="this core has the kernels")
def test_core_refuses_without_the_kernels():
    with pytest.raises(ValueError, match="no float32 packed kernels"):
        one = np.ones((2, 2), np.float32)
        fb._core._packed_gemm(False, False, 1.0, one, one, 0.0, one.copy(), bfloat16=False)


def test_build_info_says_which_runs_the_float32_products():
    # the kernels are in the cores compiled for AVX-512: v4, and native on such a CPU
    info = fb.build_info()
    avx512 = "avx512f" in info["cpu_features"]
    assert info["own_gemm"] == (info["isa"] == "v4" or (info["isa"] == "native" and avx512))
