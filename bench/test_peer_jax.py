"""The JAX peer of compare.py trains the same network as fastbp: after one epoch from the same
initial weights, with the same batch order (no shuffle) and a last partial batch, their weights
agree within float32 rounding (see compare.jax_check for the tolerances and why relu is replaced
by tanh). ``pytest bench/test_peer_jax.py``; skipped without jax."""

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("fastbp")

import compare  # noqa: E402  (bench/ is on sys.path: pytest's rootdir-relative import)


@pytest.mark.parametrize(
    "name",
    [
        "deep-narrow",  # sigmoid, SGD with momentum, cross-entropy, 208 = 6.5 batches of 32
        "tiny-online",  # tanh, plain SGD, mse with one output, batch 1
        "mnist-like",  # tanh (for relu), Adam, 832 = 6.5 batches of 128
    ],
)
def test_jax_matches_fastbp_after_one_epoch(name):
    r = compare.jax_check(name)
    assert r["samples"] % r["batch"] != 0 or r["batch"] == 1
    assert r["ok"], r


def test_the_check_sees_the_last_partial_batch():
    # The check above could not tell a dropped remainder from float32 rounding if the
    # remainder's step were tiny: it moves the weights by far more than the tolerance.
    import peer_jax

    cfg = compare.CONFIGS["deep-narrow"]
    X, y = compare.make_data(cfg, 6 * 32 + 16)
    init = compare.init_weights(cfg)
    with_rest = peer_jax.train_epochs(cfg, X, y, init)
    without = peer_jax.train_epochs(cfg, X[: 6 * 32], y[: 6 * 32], init)
    moved = max(float(np.max(np.abs(a[0] - b[0]))) for a, b in zip(with_rest, without))
    assert moved > 100 * compare.CHECK_MAX_SGD
