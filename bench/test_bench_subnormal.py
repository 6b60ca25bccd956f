"""Subnormal floats: one epoch of a deep sigmoid network, whose backward signals shrink by up to
4x per layer until the first layers' gradients are subnormal (below 1.18e-38 in float32), against
the same network with relu, whose gradients stay normal. Compare the two medians of the
"subnormal" group: their ratio is what subnormal arithmetic costs (plus sigmoid's exp).
``pytest bench/ -k subnormal``; ``python bench/compare.py --subnormal --no-compare`` gives the
ratio for fastbp and its peers, and the share of subnormal gradient entries.
"""

import numpy as np
import pytest

fb = pytest.importorskip("fastbp")

DEPTH, WIDTH, BATCH, SAMPLES = 60, 32, 32, 1024  # hidden layers, their width
TINY = float(np.finfo(np.float32).tiny)


def _trainer_cls():
    if hasattr(fb, "Trainer"):
        return fb.Trainer
    from fastbp.train import Trainer

    return Trainer


@pytest.mark.benchmark(group="subnormal")
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_epoch_deep(benchmark, activation):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((SAMPLES, WIDTH), dtype=np.float32)
    y = rng.integers(0, 10, SAMPLES).astype(np.int32)
    net = fb.MLP([WIDTH] * (DEPTH + 1) + [10], activation=activation, loss="cross_entropy", seed=0)
    trainer = _trainer_cls()(
        net, fb.SGD(0.01), batch_size=BATCH, epochs=1, shuffle=True, seed=0, progress=False
    )
    history = benchmark.pedantic(trainer.fit, args=(X, y), rounds=5, warmup_rounds=1)
    first = float(history.grad_norms[-1, 0])
    benchmark.extra_info.update(
        depth=DEPTH, width=WIDTH, batch=BATCH, rows=SAMPLES, first_layer_grad_norm=first
    )
    # The benchmark measures what it claims only if sigmoid's gradients do reach the subnormal
    # range (or zero, once the core flushes subnormals) and relu's do not.
    assert (first < TINY) if activation == "sigmoid" else (first > 1e-6)
