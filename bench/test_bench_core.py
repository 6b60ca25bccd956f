"""Core-operation benchmarks: forward, backward, one optimizer step, one epoch and predict, on a
few network sizes. For tracking regressions: ``pytest bench/`` (see conftest.py); each
benchmark runs well under a second or two.

Sizes:
  online  2-16-16-1 tanh, mse, batch 1           per-call overhead (the tiny-online config)
  small   64-128-128-10 relu, cross-entropy, batch 64
  medium  784-256-128-10 relu, cross-entropy, batch 256 (the mnist-like network)
"""

from __future__ import annotations

import numpy as np
import pytest

fb = pytest.importorskip("fastbp")

SIZES = {
    # name: layers, activation, loss, batch, epoch samples
    "online": ([2, 16, 16, 1], "tanh", "mse", 1, 1024),
    "small": ([64, 128, 128, 10], "relu", "cross_entropy", 64, 4096),
    "medium": ([784, 256, 128, 10], "relu", "cross_entropy", 256, 4096),
}
PREDICT_ROWS = 4096


def _trainer_cls():
    if hasattr(fb, "Trainer"):
        return fb.Trainer
    from fastbp.train import Trainer

    return Trainer


class Case:
    def __init__(self, name: str) -> None:
        layers, act, loss, batch, samples = SIZES[name]
        self.name, self.layers, self.batch = name, layers, batch
        rng = np.random.default_rng(0)
        self.X = rng.standard_normal((samples, layers[0]), dtype=np.float32)
        if loss == "cross_entropy":
            self.y = rng.integers(0, layers[-1], samples).astype(np.int32)
        else:
            self.y = rng.standard_normal((samples, layers[-1]), dtype=np.float32)
        self.Xb, self.yb = self.X[:batch], self.y[:batch]
        self.Xp = rng.standard_normal((PREDICT_ROWS, layers[0]), dtype=np.float32)
        self.net = fb.MLP(layers, activation=act, loss=loss, dtype="float32", seed=0)

    def info(self, benchmark, rows: int) -> None:
        benchmark.extra_info.update(
            layers=self.layers, batch=self.batch, rows=rows, threads=fb.get_num_threads()
        )


@pytest.fixture(scope="module", params=list(SIZES))
def case(request) -> Case:
    return Case(request.param)


@pytest.mark.benchmark(group="forward")
def test_forward(benchmark, case):
    case.info(benchmark, case.batch)
    out = benchmark(case.net.forward, case.Xb)
    assert out.shape == (case.batch, case.layers[-1])


@pytest.mark.benchmark(group="backward")
def test_backward(benchmark, case):
    case.info(benchmark, case.batch)
    loss = benchmark(case.net.backward, case.Xb, case.yb)
    assert np.isfinite(loss)


@pytest.mark.benchmark(group="step")
@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_step(benchmark, case, optimizer):
    net = case.net.copy()
    net.backward(case.Xb, case.yb)
    net.grads[...] *= 1e-6  # keep the weights sane over thousands of steps
    opt = fb.SGD(1e-3, momentum=0.9) if optimizer == "sgd_momentum" else fb.Adam(1e-3)
    case.info(benchmark, case.batch)
    benchmark.extra_info["n_params"] = net.n_params
    benchmark(opt.step, net)
    assert np.isfinite(net.params).all()


@pytest.mark.benchmark(group="epoch")
def test_epoch(benchmark, case):
    net = case.net.copy()
    trainer = _trainer_cls()(
        net,
        fb.SGD(1e-3, momentum=0.9),
        batch_size=case.batch,
        epochs=1,
        shuffle=True,
        seed=0,
        progress=False,
    )
    case.info(benchmark, len(case.X))
    history = benchmark.pedantic(trainer.fit, args=(case.X, case.y), rounds=5, warmup_rounds=1)
    assert np.isfinite(history.train_loss[-1])


@pytest.mark.benchmark(group="predict")
def test_predict(benchmark, case):
    case.info(benchmark, PREDICT_ROWS)
    out = benchmark(case.net.predict, case.Xp)
    assert len(out) == PREDICT_ROWS
