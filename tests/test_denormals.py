"""Subnormal numbers: flushed to zero while fastbp computes (the default), kept on request, and
the caller's own floating-point state untouched either way."""

import platform

import numpy as np
import pytest

TINY32 = np.finfo(np.float32).tiny  # the smallest normal float32, 1.18e-38
# CPUs whose flush-to-zero control the core sets (cpp/denormals.hpp)
FLUSH_CONTROL = platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")


@pytest.fixture
def restore_flush(fb):
    before = fb.get_flush_denormals()
    yield before
    fb.set_flush_denormals(before)


def _deep_sigmoid(fb, depth=60, width=32, seed=0):
    """A network whose first-layer gradient lies in float32's subnormal range (~5e-39): each
    sigmoid layer shrinks the backward signal by up to 4x."""
    net = fb.MLP(
        [width] * (depth + 1) + [10], activation="sigmoid", loss="cross_entropy", seed=seed
    )
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((256, width)).astype(np.float32)
    y = rng.integers(0, 10, 256).astype(np.int32)
    return net, X, y


def _caller_keeps_subnormals():
    """Whether this thread computes with IEEE subnormals (no FTZ/DAZ), in float32 and float64."""
    f32 = np.float32(1e-40) * np.float32(1.0)  # numpy computes on this thread
    return bool(f32 != 0) and (5e-324 * 1.0) != 0.0


def test_flushing_is_on_by_default_and_settable(fb, restore_flush):
    assert restore_flush is True
    assert fb.build_info()["flush_denormals"] is True
    for value in (False, True, np.bool_(False)):
        fb.set_flush_denormals(value)
        assert fb.get_flush_denormals() is bool(value)
    with pytest.raises(TypeError, match="flush"):
        fb.set_flush_denormals(1)


@pytest.mark.skipif(not FLUSH_CONTROL, reason="no known flush-to-zero control on this CPU")
def test_deep_sigmoid_first_layer_gradient_flushes_to_exactly_zero(fb, restore_flush):
    net, X, y = _deep_sigmoid(fb)
    fb.set_flush_denormals(False)
    net.backward(X[:32], y[:32])
    kept = net.grad_norms()
    assert 0 < kept[0] < TINY32  # IEEE gradual underflow: tiny, subnormal entries, not zero
    g0 = np.abs(net.grad_weights[0])
    assert np.all(g0[g0 > 0] < TINY32)

    fb.set_flush_denormals(True)
    net.backward(X[:32], y[:32])
    flushed = net.grad_norms()
    assert flushed[0] == 0.0 and not np.any(net.grad_weights[0])
    # the output side, far from the subnormal range, is the same either way
    np.testing.assert_allclose(flushed[-3:], kept[-3:], rtol=1e-6)


@pytest.mark.skipif(not FLUSH_CONTROL, reason="no known flush-to-zero control on this CPU")
def test_flushed_gradient_is_reported_vanished_on_every_thread(fb, restore_flush, restore_threads):
    """Through the epoch loop, with a team of threads where OpenMP has one: each thread's rows
    flush, so the first layer's recorded norm is exactly 0, and diagnose calls it vanishing."""
    fb.set_num_threads(2)
    net, X, y = _deep_sigmoid(fb)
    history = fb.Trainer(net, fb.SGD(0.01), batch_size=64, epochs=2, progress=False).fit(X, y)
    assert np.all(history.grad_norms[:, 0] == 0.0)
    assert np.all(history.grad_norms[:, -1] > 1e-3)
    assert 0 in fb.diagnose(history).vanishing


@pytest.mark.parametrize("flush", [True, False])
def test_the_callers_floating_point_state_is_unchanged(fb, restore_flush, restore_threads, flush):
    fb.set_flush_denormals(flush)
    assert _caller_keeps_subnormals()
    for threads in (1, 2):
        fb.set_num_threads(threads)
        net, X, y = _deep_sigmoid(fb, depth=4)
        net.forward(X)
        net.backward(X, y)
        opt = fb.Adam(1e-3)
        opt.step(net)
        fb.clip_grad_norm(net, 1.0)
        fb.Trainer(net, opt, batch_size=64, epochs=1, progress=False).fit(X, y)
        assert _caller_keeps_subnormals()


@pytest.mark.skipif(not FLUSH_CONTROL, reason="no known flush-to-zero control on this CPU")
def test_a_caller_that_flushes_itself_keeps_flushing(fb, restore_flush):
    """The state is restored, not reset: a thread that set FTZ/DAZ (here through torch) has it
    again after a call that computed with IEEE subnormals."""
    torch = pytest.importorskip("torch")
    if not torch.set_flush_denormal(True):
        pytest.skip("torch cannot set flush-to-zero on this CPU")
    try:
        assert np.float32(1e-40) * np.float32(1.0) == 0
        fb.set_flush_denormals(False)
        net, X, y = _deep_sigmoid(fb)
        net.backward(X[:32], y[:32])
        assert net.grad_norms()[0] > 0  # fastbp computed with subnormals...
        assert np.float32(1e-40) * np.float32(1.0) == 0  # ...and the caller flushes again
    finally:
        torch.set_flush_denormal(False)
    assert _caller_keeps_subnormals()
