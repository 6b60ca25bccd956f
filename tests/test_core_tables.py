"""The core's tables of activations and losses, and NaN propagation through every activation.

These talk to the compiled core (``fastbp._core``) directly: the tables are what the Python
layer reads, and a NaN must reach the outputs whatever the Python layer does around it.
"""

import numpy as np
import pytest

from fastbp import _core

ACTIVATIONS = [
    # name, hidden, auto_init: the table Python reads, in its order
    ("identity", True, "xavier"),
    ("sigmoid", True, "xavier"),
    ("tanh", True, "xavier"),
    ("relu", True, "he"),
    ("leaky_relu", True, "he"),
    ("elu", True, "he"),
    ("softplus", True, "xavier"),
    ("gelu", True, "he"),
    ("silu", True, "he"),
    ("softmax", False, "xavier"),
]
HIDDEN = [name for name, hidden, _ in ACTIVATIONS if hidden]
NETWORKS = {np.float32: _core.Network32, np.float64: _core.Network64}


def test_activation_table_is_the_documented_list():
    table = _core.activation_table()
    keys = ("auto_init", "hidden", "hist_edges", "name")
    assert [tuple(sorted(row)) for row in table] == [keys] * len(table)
    assert all(len(r["hist_edges"]) == 19 for r in table)  # their values: test_network.py
    assert [(r["name"], r["hidden"], r["auto_init"]) for r in table] == ACTIVATIONS


def test_loss_names_and_table_agree():
    assert _core.loss_names() == ["mse", "cross_entropy", "binary_cross_entropy"]
    table = {row["name"]: row for row in _core.loss_table()}
    assert list(table) == _core.loss_names()
    assert table["mse"] == dict(
        name="mse", output="identity", fused=False, labels=False, classification=False
    )
    assert table["cross_entropy"] == dict(
        name="cross_entropy", output="softmax", fused=True, labels=True, classification=True
    )
    assert table["binary_cross_entropy"] == dict(
        name="binary_cross_entropy",
        output="sigmoid",
        fused=True,
        labels=False,
        classification=True,
    )


def test_python_reads_the_loss_properties_from_the_core():
    from fastbp import validation

    assert validation.CLASSIFICATION_LOSSES == {"cross_entropy", "binary_cross_entropy"}
    assert validation.REGRESSION_LOSSES == {"mse"}
    assert validation.FUSED_OUTPUT == {
        "cross_entropy": "softmax",
        "binary_cross_entropy": "sigmoid",
    }
    assert validation.DEFAULT_OUTPUT == {**validation.FUSED_OUTPUT, "mse": "identity"}


@pytest.mark.parametrize("name", ["swish", "", "ReLU", "softmax "])
def test_unknown_activation_is_rejected(name):
    with pytest.raises(ValueError, match="unknown activation"):
        _core.Network64([2, 3, 1], [name], "identity", "mse")


def test_softmax_is_no_hidden_activation():
    with pytest.raises(ValueError, match="softmax is only an output activation"):
        _core.Network64([2, 3, 1], ["softmax"], "identity", "mse")


@pytest.mark.parametrize(
    "loss, output", [("cross_entropy", "sigmoid"), ("binary_cross_entropy", "softmax")]
)
def test_fused_losses_need_their_output_activation(loss, output):
    with pytest.raises(ValueError, match=f"{loss} needs the"):
        _core.Network64([2, 3, 2], ["tanh"], output, loss)


def test_integer_labels_only_for_a_loss_that_takes_them():
    net = _core.Network64([2, 3, 2], ["tanh"], "identity", "mse")
    with pytest.raises(ValueError, match="integer labels Y are for cross_entropy only"):
        net.backward(np.zeros((4, 2)), np.zeros(4, np.int32))


def _nan_network(dtype, hidden, output, loss, where):
    net = NETWORKS[dtype]([3, 5, 4, 2], [hidden, hidden], output, loss)
    rng = np.random.default_rng(0)
    net.params[:] = rng.normal(size=net.n_params)
    (w0, b0), _, _ = net.layer_views(False)
    if where == "weight":
        w0[1, 2] = np.nan
    else:
        b0[3] = np.nan
    X = rng.normal(size=(6, 3)).astype(dtype)
    if loss == "cross_entropy":
        Y = np.array([0, 1, 0, 1, 1, 0], np.int32)
    else:
        Y = rng.uniform(size=(6, 2)).astype(dtype)
    return net, X, Y


@pytest.mark.parametrize("where", ["weight", "bias"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_nan_parameter_gives_nan_everywhere(hidden, dtype, where):
    """A NaN parameter in the first layer reaches every output, the loss and every gradient,
    whatever the hidden activation (relu used to turn it into 0: a silent wrong result)."""
    for output, loss in [("identity", "mse"), ("softmax", "cross_entropy")]:
        net, X, Y = _nan_network(dtype, hidden, output, loss, where)
        assert np.isnan(net.forward(X)).all()
        assert np.isnan(net.evaluate(X, Y)[0])
        assert np.isnan(net.backward(X, Y)[0])
        assert np.isnan(net.grads).all()
        assert np.isnan(net.weight_grad_norms()).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("output", [name for name, _, _ in ACTIVATIONS])
def test_nan_reaches_through_every_output_activation(output, dtype):
    net, X, Y = _nan_network(dtype, "tanh", output, "mse", "weight")
    assert np.isnan(net.forward(X)).all()
    assert np.isnan(net.evaluate(X, Y)[0])
    assert np.isnan(net.backward(X, Y)[0])
    assert np.isnan(net.grads).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_finite_network_stays_finite(hidden, dtype):
    """The counterpart of the NaN tests: without a NaN, nothing turns into one."""
    net, X, Y = _nan_network(dtype, hidden, "identity", "mse", "weight")
    net.params[np.isnan(net.params)] = 0.5
    assert np.isfinite(net.forward(X)).all()
    assert np.isfinite(net.backward(X, Y)[0]) and np.isfinite(net.grads).all()
