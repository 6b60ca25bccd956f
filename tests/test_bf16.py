"""Mixed precision: Trainer(matmul_precision="bfloat16").

The reference rounds the products' inputs to bfloat16 (round to nearest even, written in
reference.py from the format: the top 16 bits of a float32) and multiplies in float64. The core
must match it to float32 summation error, and be measurably farther from the unrounded float64
products: that shows the rounding happened, and only there. (The kernels themselves, in both
formats: test_packed_gemm.py.)
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

import fastbp as fb

needs_bf16 = pytest.mark.skipif(
    not fb.build_info()["bfloat16"], reason="this CPU has no AVX512-BF16"
)


def test_bf16_rounding_reference_is_right():
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1); 1 + 3 * 2^-8 goes up to 1 + 2^-6
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7, -2.5e-3], np.float32)
    assert ref.bfloat16(x)[:4].tolist() == [1.0, 1.0, 1 + 2**-6, 1 + 2**-7]
    assert abs(ref.bfloat16(x)[4] / x[4] - 1) <= 2**-9


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
        want_w, want_b = ref.sgd_step_relu_mse(X[rows], Y[rows], want_w, want_b, 0.5, ref.bfloat16)
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
