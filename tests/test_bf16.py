"""Mixed precision: Trainer(matmul_precision="bfloat16") and the bfloat16 product kernels.

The reference rounds the products' inputs to bfloat16 (round to nearest even, written here from
the format: the top 16 bits of a float32) and multiplies in float64. The core must match it to
float32 summation error, and be measurably farther from the unrounded float64 products: that
shows the rounding happened, and only there.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import fastbp as fb

needs_bf16 = pytest.mark.skipif(
    not fb.build_info()["bfloat16"], reason="this CPU has no AVX512-BF16"
)


def bf16(x):
    """float32 -> nearest bfloat16 (ties to even), as float64."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def test_bf16_rounding_reference_is_right():
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1); 1 + 3 * 2^-8 goes up to 1 + 2^-6
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7, -2.5e-3], np.float32)
    assert bf16(x)[:4].tolist() == [1.0, 1.0, 1 + 2**-6, 1 + 2**-7]
    assert abs(bf16(x)[4] / x[4] - 1) <= 2**-9


@needs_bf16
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize(
    "M, N, K",
    [
        (1, 1, 1),
        (13, 33, 3),  # one row past a 12-row panel, one column past a 32-column panel
        (5, 17, 31),  # a 4- and an 8-row panel's worth
        (16, 40, 7),  # 13 to 16 rows left: two 8-row panels
        (256, 45, 70),  # 20 panels of 12 and two of 8, odd k
        (9, 64, 2),
        (300, 70, 1201),  # two blocks of rows, three blocks of k (the last odd)
        (24, 2100, 40),  # two blocks of columns
    ],
)
def test_bf16_gemm_matches_rounded_float64(rng, ta, tb, M, N, K):
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C = rng.standard_normal((M, N)).astype(np.float32)
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    want = 0.5 * (bf16(opA) @ bf16(opB)) - 2.0 * C
    exact = 0.5 * (opA @ opB) - 2.0 * C
    fb._core._packed_gemm(ta, tb, 0.5, A, B, -2.0, C, bfloat16=True)
    scale = np.sqrt(K) * 0.5 + 2.0  # the size of each entry's terms
    assert np.max(np.abs(C - want)) <= 1e-5 * scale
    if K >= 31:  # rounding 2K inputs moves each sum by ~2^-9 sqrt(K): far past float32 error
        assert np.max(np.abs(C - exact)) > 20 * np.max(np.abs(C - want))


@needs_bf16
def test_bf16_gemm_beta_zero_ignores_c(rng):
    A = rng.standard_normal((20, 40)).astype(np.float32)
    B = rng.standard_normal((40, 50)).astype(np.float32)
    C = np.full((20, 50), np.nan, np.float32)
    fb._core._packed_gemm(False, False, 1.0, A, B, 0.0, C, bfloat16=True)
    np.testing.assert_allclose(C, bf16(A) @ bf16(B), rtol=0, atol=1e-4)


@needs_bf16
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "sizes, batches",
    [
        ([128, 128, 64], 1),
        # Three batches: the bfloat16 copies of the weights that the epoch keeps must follow
        # every update. On two threads 131 rows of W_1 split at 65: one pair of rows (one word
        # of the forward copy) is packed by both threads, a half each, and the transposed
        # copy's groups of 16 rows straddle the parts.
        ([97, 131, 64], 3),
    ],
)
def test_trainer_bf16_steps_match_rounded_reference(rng, restore_threads, threads, sizes, batches):
    # Every product of these networks is large enough for the bfloat16 kernels, whether the
    # batch is split over one thread or two.
    fb.set_num_threads(threads)
    X = rng.standard_normal((128 * batches, sizes[0])).astype(np.float32)
    Y = rng.standard_normal((128 * batches, sizes[-1])).astype(np.float32)
    net = fb.MLP(sizes, activation="relu", loss="mse", seed=3)
    W, b = [w.copy() for w in net.weights], [v.copy() for v in net.biases]
    trainer = fb.Trainer(
        net,
        fb.SGD(lr=0.5),
        batch_size=128,
        epochs=1,
        shuffle=False,
        progress=False,
        matmul_precision="bfloat16",
    )
    trainer.fit(X, Y)
    want_w, want_b, exact_w, exact_b = W, b, W, b
    for i in range(batches):
        rows = slice(128 * i, 128 * (i + 1))
        want_w, want_b = ref.sgd_step_relu_mse(X[rows], Y[rows], want_w, want_b, 0.5, bf16)
        exact_w, exact_b = ref.sgd_step_relu_mse(X[rows], Y[rows], exact_w, exact_b, 0.5)
    for got, want, exact, start in zip(net.weights, want_w, exact_w, W):
        step = np.max(np.abs(exact - start))
        err = np.max(np.abs(got - want))
        assert err <= 2e-3 * step  # float32 sums and a few inputs rounded the other way
        assert np.max(np.abs(got - exact)) > 5 * err  # and the products were in bfloat16
    for got, want in zip(net.biases, want_b):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@needs_bf16
def test_bf16_is_for_training_only(rng):
    X = rng.standard_normal((256, 128)).astype(np.float32)
    y = rng.integers(0, 10, 256)
    net = fb.MLP([128, 128, 10], activation="relu", loss="cross_entropy", seed=0)
    trainer = fb.Trainer(
        net, fb.Adam(), batch_size=64, epochs=2, progress=False, matmul_precision="bfloat16"
    )
    history = trainer.fit(X, y, validation=(X, y))
    assert history.train_loss[-1] < history.train_loss[0]
    # Predictions after fit are float32 products again: the float64 forward of the same weights.
    out = net.forward(X)
    want = ref.mlp_output(X, net.weights, net.biases, "relu", "softmax")
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-6)
    # Validation ran through the same float32 evaluation.
    assert history.val_loss[-1] == pytest.approx(trainer.evaluate(X, y)["loss"], rel=1e-6)


@needs_bf16
@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: fb.SGD(lr=0.05, momentum=0.9),
        lambda: fb.Adam(lr=1e-3),
        lambda: fb.LineSearchSGD(lr=1.0),
    ],
    ids=["sgd", "adam", "line_search"],
)
def test_bf16_training_reaches_float32_accuracy(rng, make_optimizer):
    # 4 classes from a random linear teacher; a network whose hidden products all run in
    # bfloat16
    X = rng.standard_normal((4000, 128)).astype(np.float32)
    y = np.argmax(X @ rng.standard_normal((128, 4)), axis=1)
    train, test = slice(0, 3000), slice(3000, None)
    accuracy, weights = {}, {}
    for precision in ("highest", "bfloat16"):
        net = fb.MLP([128, 256, 256, 4], activation="relu", loss="cross_entropy", seed=1)
        trainer = fb.Trainer(
            net,
            make_optimizer(),
            batch_size=128,
            epochs=8,
            seed=0,
            progress=False,
            matmul_precision=precision,
        )
        trainer.fit(X[train], y[train])
        accuracy[precision] = trainer.evaluate(X[test], y[test])["accuracy"]
        weights[precision] = net.weights[1].copy()
    assert accuracy["highest"] > 0.7
    assert abs(accuracy["bfloat16"] - accuracy["highest"]) <= 0.03
    assert not np.array_equal(weights["bfloat16"], weights["highest"])


def test_matmul_precision_is_validated(rng):
    net = fb.MLP([4, 3], seed=0)
    with pytest.raises(ValueError, match="matmul_precision"):
        fb.Trainer(net, fb.SGD(lr=0.1), matmul_precision="float16")
    with pytest.raises(TypeError, match="matmul_precision"):
        fb.Trainer(net, fb.SGD(lr=0.1), matmul_precision=None)
    net64 = fb.MLP([4, 3], dtype="float64", seed=0)
    with pytest.raises(ValueError, match="matmul_precision='bfloat16' needs a float32 network"):
        fb.Trainer(net64, fb.SGD(lr=0.1), matmul_precision="bfloat16")
    assert fb.Trainer(net64, fb.SGD(lr=0.1)).matmul_precision == "highest"


def test_bf16_on_a_cpu_without_it_is_a_clear_error(monkeypatch):
    info = dict(fb._core.build_info(), bfloat16=False)
    monkeypatch.setattr(fb._core, "build_info", lambda: info)
    with pytest.raises(ValueError, match="AVX512-BF16"):
        fb.Trainer(fb.MLP([4, 3], seed=0), fb.SGD(lr=0.1), matmul_precision="bfloat16")


@pytest.mark.skipif(fb.build_info()["bfloat16"], reason="this CPU has AVX512-BF16")
def test_core_refuses_bf16_without_the_cpu_feature():
    with pytest.raises(ValueError, match="AVX512-BF16"):
        fb._core._packed_gemm(
            False,
            False,
            1.0,
            np.ones((2, 2), np.float32),
            np.ones((2, 2), np.float32),
            0.0,
            np.ones((2, 2), np.float32),
            bfloat16=True,
        )
