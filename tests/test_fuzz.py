"""Random inputs to forward, backward and fit: a clean ValueError or TypeError, or a result that
is finite and consistent, never a crash.

Hypothesis draws the network (sizes, activations, loss, dtype), the arrays (dtype, shape,
memory layout, values with NaN, infinities and huge numbers mixed in) and the training
settings. Bounded so that the module adds well under 30 s: few examples each, no deadline
(a shared machine's pauses are not failures), and the database off so that a run does not
depend on the ones before it. FASTBP_FUZZ_EXAMPLES=n runs n examples per test instead (a
longer hunt, or the sanitizer job's).
"""

import math
import os
import warnings

import numpy as np
import pytest

import fastbp as fb

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BAD = (ValueError, TypeError)
FUZZ = settings(
    max_examples=int(os.environ.get("FASTBP_FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus", "gelu", "silu"]
OUTPUTS = {
    "mse": [None, "identity", "sigmoid", "tanh", "relu", "softmax", "gelu"],
    "cross_entropy": [None, "softmax"],
    "binary_cross_entropy": [None, "sigmoid"],
}
# Values a user's array may hold: ordinary ones, and those that must be refused or survive.
SPECIAL = [0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e-45, 1e38, -3e38, 1e300, 5e-324]


@st.composite
def networks(draw):
    n_in = draw(st.integers(1, 6))
    hidden = draw(st.lists(st.integers(1, 7), max_size=2))
    n_out = draw(st.integers(1, 4))
    loss = draw(st.sampled_from(sorted(OUTPUTS)))
    if loss == "cross_entropy":
        n_out = max(n_out, 2)
    net = fb.MLP(
        [n_in, *hidden, n_out],
        activation=[draw(st.sampled_from(HIDDEN)) for _ in hidden],
        loss=loss,
        output_activation=draw(st.sampled_from(OUTPUTS[loss])),
        dtype=draw(st.sampled_from(["float32", "float64"])),
        seed=draw(st.integers(0, 2**32)),
    )
    return net


@st.composite
def arrays(draw, rows, cols, special=True):
    """An array meant as (rows, cols) values, though not always: its dtype, shape and memory
    layout vary, and with ``special`` it may hold NaN, infinities, huge and tiny numbers."""
    rows = draw(st.sampled_from([rows, rows, rows, 0, rows + 1]))
    dtype = draw(st.sampled_from(["float64", "float32", "float16", "int64", "int8", "bool"]))
    values = draw(
        st.lists(
            st.floats(-4, 4) | (st.sampled_from(SPECIAL) if special else st.floats(-4, 4)),
            min_size=rows * cols * 2,
            max_size=rows * cols * 2,
        )
    )
    base = np.array(values, dtype=np.float64).reshape(rows, 2 * cols) if rows else None
    if base is None:
        base = np.zeros((0, 2 * cols))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a cast of NaN or 1e300 to an int is a user's choice
        base = base.astype(dtype)
    layout = draw(
        st.sampled_from(["C", "F", "strided", "1-D", "3-D", "list", "scalar", "complex", "str"])
    )
    a = base[:, ::2]  # (rows, cols), not contiguous
    if layout == "scalar":
        return a.reshape(-1)[:1].reshape(()) if a.size else np.float64(1.0)
    if layout == "complex":
        return a.astype(np.complex128)
    if layout == "str":
        return a.astype(str)
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "1-D":
        return a.reshape(-1)
    if layout == "3-D":
        return a.reshape(rows, cols, 1)
    if layout == "list":
        return a.tolist()
    return a


def moderate(a):
    """Whether every value of ``a`` is finite and small enough that no activation overflows."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(arr).all() and (np.abs(arr) <= 4).all())


def outputs_are_sane(net, X, out):
    n = np.asarray(X).reshape(-1, net.layer_sizes[0]).shape[0] if np.ndim(X) == 1 else len(X)
    assert out.shape == (n, net.layer_sizes[-1]) and out.dtype == net.dtype
    if moderate(X):
        assert np.isfinite(out).all()
        if net.output_activation == "softmax":
            np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-3)


@FUZZ
@given(data=st.data())
def test_forward(data):
    net = data.draw(networks())
    X = data.draw(arrays(data.draw(st.integers(1, 5)), net.layer_sizes[0]))
    try:
        out = net.forward(X)
    except BAD:
        return
    outputs_are_sane(net, X, out)
    # each row on its own gives the same output: rows are independent
    rows = np.asarray(X, dtype=net.dtype).reshape(len(out), -1)
    if moderate(rows):
        tol = 1e-4 if net.dtype == np.float32 else 1e-10
        np.testing.assert_allclose(net.forward(rows[-1:]), out[-1:], rtol=tol, atol=tol)


def targets(draw, net, rows):
    """Targets for ``net``'s loss, sometimes wrong: labels out of range, a wrong shape, NaN."""
    n_out, loss = net.layer_sizes[-1], net.loss
    kind = draw(st.sampled_from(["right", "right", "labels", "wrong"]))
    if kind == "labels" or (kind == "right" and loss == "cross_entropy"):
        low, high = (-2, n_out + 2) if kind == "labels" else (0, n_out - 1)
        labels = draw(st.lists(st.integers(low, high), min_size=rows, max_size=rows))
        return np.array(labels, dtype=draw(st.sampled_from(["int64", "int32", "float64"])))
    if kind == "right":
        values = draw(st.lists(st.floats(0, 1), min_size=rows * n_out, max_size=rows * n_out))
        return np.array(values).reshape(rows, n_out)
    return draw(arrays(rows, n_out))


@FUZZ
@given(data=st.data())
def test_backward(data):
    net = data.draw(networks())
    rows = data.draw(st.integers(1, 5))
    X = data.draw(arrays(rows, net.layer_sizes[0]))
    Y = targets(data.draw, net, rows)
    before = (np.array(net.params), np.array(net.grads))
    try:
        loss = net.backward(X, Y)
    except BAD:
        # a refused call changes nothing
        np.testing.assert_array_equal(net.params, before[0])
        np.testing.assert_array_equal(net.grads, before[1])
        return
    assert isinstance(loss, float)
    np.testing.assert_array_equal(net.params, before[0])
    if moderate(X) and moderate(Y):
        assert math.isfinite(loss) and loss >= 0
        assert np.isfinite(net.grads).all()
        # the loss of the backward is the loss of the same forward, without gradients
        tol = 1e-4 if net.dtype == np.float32 else 1e-10
        assert net.compute_loss(X, Y) == pytest.approx(loss, rel=tol, abs=tol)


OPTIMIZERS = [
    lambda: fb.SGD(0.1, momentum=0.9),
    lambda: fb.Adam(0.01),
    lambda: fb.AdamW(0.01),
    lambda: fb.RMSProp(0.01, centered=True),
    lambda: fb.AdaGrad(0.1),
    lambda: fb.LineSearchSGD(1.0, max_iter=8),
    lambda: fb.SGD(1e6),  # diverges
]


@FUZZ
@given(data=st.data())
def test_fit(data):
    net = data.draw(networks())
    rows = data.draw(st.integers(1, 24))
    X = data.draw(arrays(rows, net.layer_sizes[0], special=data.draw(st.booleans())))
    Y = targets(data.draw, net, rows)
    validation = None
    if data.draw(st.booleans()):
        validation = (data.draw(arrays(3, net.layer_sizes[0])), targets(data.draw, net, 3))
    trainer = fb.Trainer(
        net,
        data.draw(st.sampled_from(OPTIMIZERS))(),
        batch_size=data.draw(st.integers(1, 40)),
        epochs=data.draw(st.integers(1, 3)),
        clip_norm=data.draw(st.sampled_from([None, 1.0])),
        clip_value=data.draw(st.sampled_from([None, 0.5])),
        grad_noise=data.draw(st.sampled_from([None, fb.GradientNoise(0.1, seed=1)])),
        early_stopping=data.draw(st.sampled_from([None, fb.EarlyStopping("train_loss", 1)])),
        shuffle=data.draw(st.booleans()),
        seed=0,
        progress=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            history = trainer.fit(X, Y, validation=validation)
        except BAD:
            return
    diverged = [w for w in caught if issubclass(w.category, fb.NonFiniteWarning)]
    assert len(caught) == len(diverged), [str(w.message) for w in caught]
    # whatever happened, the weights are finite, and the history says what it did
    assert np.isfinite(net.params).all()
    assert 1 <= history.n_epochs + (history.stop_reason == "non_finite") <= trainer.epochs
    if diverged:
        assert history.stop_reason == "non_finite"
    else:
        assert np.isfinite(history.train_loss).all()
        if validation is not None and moderate(validation[0]):
            assert np.isfinite(history.val_loss).all()
