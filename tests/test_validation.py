"""fastbp.validation: the boundary policy (one wording, TypeError vs ValueError), the loss sets,
and the rule that modules reach each other through public names only."""

import ast
import pathlib

import numpy as np
import pytest

import fastbp as fb
from fastbp import validation

PACKAGE = pathlib.Path(fb.__file__).parent


# ----------------------------------------------------------------------------------------------
# the losses: every core loss is classification or regression, decided by an explicit set
# ----------------------------------------------------------------------------------------------


def test_every_loss_is_classification_or_regression():
    losses = set(validation.LOSSES)
    assert validation.CLASSIFICATION_LOSSES | validation.REGRESSION_LOSSES == losses
    assert not validation.CLASSIFICATION_LOSSES & validation.REGRESSION_LOSSES
    assert set(validation.DEFAULT_OUTPUT) == losses
    assert set(validation.FUSED_OUTPUT) <= losses


@pytest.mark.parametrize("loss", validation.LOSSES)
def test_classification_follows_the_set(loss):
    net = fb.MLP([3, 2], loss=loss, seed=0)
    X = np.zeros((4, 3))
    y = np.zeros(4, dtype=np.int64) if loss == "cross_entropy" else np.zeros((4, 2))
    classifier = loss in validation.CLASSIFICATION_LOSSES
    assert net.is_classifier == classifier
    assert ("accuracy" in net.evaluate(X, y)) == classifier


# ----------------------------------------------------------------------------------------------
# one wording for NaN and infinity
# ----------------------------------------------------------------------------------------------

NAN_X = np.array([[0.0, np.nan, 1.0]] * 4)


@pytest.mark.parametrize(
    "call",
    [
        lambda: fb.MLP([3, 2], seed=0).forward(NAN_X),
        lambda: fb.MLP([3, 2], seed=0).backward(np.zeros((4, 3)), np.full((4, 2), np.inf)),
        lambda: fb.Trainer(fb.MLP([3, 2], seed=0), fb.SGD(0.1)).fit(NAN_X, np.zeros((4, 2))),
        lambda: fb.split(NAN_X, np.zeros(4)),
        lambda: fb.split(np.eye(4, 3), np.array([0.0, 1.0, np.nan, 1.0])),
        lambda: fb.SGD(float("nan")),
        lambda: fb.Adam(betas=(0.9, float("inf"))),
        lambda: fb.datasets.spirals(noise=float("nan")),
        lambda: fb.EarlyStopping(min_delta=float("inf")),
    ],
    ids=["forward", "backward", "fit", "split X", "split y", "lr", "betas", "noise", "min_delta"],
)
def test_nan_and_inf_have_one_wording(call):
    with pytest.raises(ValueError, match=r"(contains|must not be) NaN or infinite"):
        call()


# ----------------------------------------------------------------------------------------------
# TypeError for a wrong type, ValueError for a wrong value
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: fb.Trainer(fb.MLP([3, 2]), fb.SGD(0.1), shuffle="yes"), "shuffle"),
        (lambda: fb.Trainer(fb.MLP([3, 2]), fb.SGD(0.1), progress=1), "progress"),
        (lambda: fb.Trainer([3, 2], fb.SGD(0.1)), "net"),
        (lambda: fb.EarlyStopping(restore_best="no"), "restore_best"),
        (lambda: fb.split(np.eye(4), np.zeros(4), shuffle=1), "shuffle"),
        (lambda: fb.split(np.eye(4), np.zeros(4), seed=1.5), "seed"),
        (lambda: fb.Adam(betas=0.9), "betas"),
        (lambda: fb.SGD(0.1, nesterov="no"), "nesterov"),
        (lambda: fb.diagnose(fb.History(["relu"]), window=2.5), "window"),
        (lambda: fb.clip_grad_norm("net", 1.0), "net"),
        (lambda: fb.GradientNoise().apply(None), "net"),
        (lambda: fb.datasets.xor(n_samples=10.0), "n_samples"),
    ],
)
def test_wrong_types_raise_type_error(call, name):
    with pytest.raises(TypeError, match=rf"\b{name}\b"):
        call()


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: fb.Adam(betas=(0.9, 0.99, 0.9)), "betas"),
        (lambda: fb.split(np.eye(4), np.zeros(4), seed=-1), "seed"),
        (lambda: fb.diagnose(fb.History(["relu"]), window=0), "window"),
        (lambda: fb.diagnose(fb.History(["relu"]), dead_share=-0.5), "dead_share"),
        (lambda: fb.split(np.eye(4), np.zeros(4), val=1.5), "val"),
    ],
)
def test_wrong_values_raise_value_error(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()


def test_two_sided_bounds_are_written_as_an_interval():
    with pytest.raises(ValueError, match=r"val must be in \[0, 1\), got 1.5"):
        fb.split(np.eye(4), np.zeros(4), val=1.5)
    with pytest.raises(ValueError, match=r"shrink must be in \(0, 1\), got 1"):
        fb.LineSearchSGD(shrink=1)


def test_huge_integers_for_a_real_are_named():
    with pytest.raises(ValueError, match="max_norm is too large for a float"):
        fb.clip_grad_norm(fb.MLP([3, 2]), 2**2000)


# ----------------------------------------------------------------------------------------------
# documented handles instead of private attributes
# ----------------------------------------------------------------------------------------------


def test_the_core_handle_is_what_the_optimizer_binds_to():
    net = fb.MLP([3, 2], seed=0)
    opt = fb.SGD(0.1)
    net.backward(np.zeros((2, 3)), np.zeros((2, 2)))
    opt.step(net)
    assert net.core.params is not None and net.core.n_params == net.n_params
    with pytest.raises(ValueError, match="net"):
        opt.step(fb.MLP([3, 2], seed=0))  # another core: refused


def test_resolved_seed_repeats_the_noise():
    seeded = fb.GradientNoise(seed=7)
    assert seeded.resolved_seed == 7
    drawn = fb.GradientNoise(eta=0.1)
    assert isinstance(drawn.resolved_seed, int) and 0 <= drawn.resolved_seed < 2**63
    again = fb.GradientNoise(eta=0.1, seed=drawn.resolved_seed)
    a, b = fb.MLP([5, 4], seed=0), fb.MLP([5, 4], seed=0)
    a.grads[...] = b.grads[...] = 0.0
    drawn.apply(a)
    again.apply(b)
    assert a.grads.tobytes() == b.grads.tobytes() and np.any(a.grads != 0)
    with pytest.raises(AttributeError):
        drawn.resolved_seed = 3


# Receivers of a private attribute other than self/cls: another instance of the class itself,
# inside its own method (MLP.copy, History.from_dict, History.extend, an estimator loaded).
OWN_INSTANCES = {
    ("network.py", "clone"),
    ("history.py", "history"),
    ("history.py", "other"),
    ("estimators.py", "est"),
}


def test_no_module_reaches_into_another_ones_privates():
    offences = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            if node.attr.startswith("__") or not isinstance(node.value, ast.Name):
                continue
            receiver = node.value.id
            if receiver in ("self", "cls") or (path.name, receiver) in OWN_INSTANCES:
                continue
            offences.append(f"{path.name}:{node.lineno} {receiver}.{node.attr}")
    assert not offences, offences
