"""Optimizers, clipping, gradient noise and the line search.

Each optimizer is compared step by step with the NumPy transcription of torch's pseudo-code
(tests/reference.py) and with torch.optim itself, fed the very same gradients.
"""

import copy
import inspect
import math
import pickle

import numpy as np
import pytest
import reference as ref

FB_TO_TORCH = {
    "SGD": "SGD",
    "Adam": "Adam",
    "AdamW": "AdamW",
    "RMSProp": "RMSprop",
    "AdaGrad": "Adagrad",
}
FB_TO_REF = {
    "SGD": ref.RefSGD,
    "Adam": ref.RefAdam,
    "AdamW": ref.RefAdamW,
    "RMSProp": ref.RefRMSProp,
    "AdaGrad": ref.RefAdaGrad,
}
# defaults from the contract / torch, for building the reference with the same arguments
DEFAULTS = {
    "SGD": {},
    "Adam": dict(lr=1e-3),
    "AdamW": dict(lr=1e-3),
    "RMSProp": dict(lr=1e-2),
    "AdaGrad": dict(lr=1e-2),
}

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.05)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, betas=(0.0, 0.9))),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.85, 0.95), eps=1e-7, weight_decay=0.3)),
    ("AdamW", dict(lr=0.01, weight_decay=0.0)),
    ("RMSProp", dict()),
    ("RMSProp", dict(lr=0.005, alpha=0.9, eps=1e-6)),
    ("RMSProp", dict(lr=0.005, momentum=0.9)),
    ("RMSProp", dict(lr=0.005, centered=True)),
    ("RMSProp", dict(lr=0.002, alpha=0.95, momentum=0.5, centered=True, weight_decay=0.01)),
    ("RMSProp", dict(lr=0.005, weight_decay=0.1)),
    ("AdaGrad", dict()),
    ("AdaGrad", dict(lr=0.1, lr_decay=0.01)),
    ("AdaGrad", dict(lr=0.1, weight_decay=0.05, eps=1e-8)),
]


def case_id(c):
    name, kw = c
    return name + ("-" + "-".join(f"{k}={v}" for k, v in kw.items()) if kw else "-defaults")


N_STEPS = 30


def make_problem(fb, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(np.int64) + (X[:, 2] > 0.5)
    net = fb.MLP([4, 6, 3], activation="tanh", loss="cross_entropy", dtype=dtype, seed=seed)
    # biases away from zero so weight decay acts on every entry
    for b in net.biases:
        b[...] = rng.normal(0, 0.1, size=b.shape)
    return net, X, y


def batch(X, y, t, size=16):
    idx = (np.arange(size) + t * 7) % X.shape[0]
    return X[idx], y[idx]


def make_fb_opt(fb, name, kw):
    return getattr(fb, name)(**kw)


def make_ref_opt(name, kw):
    return FB_TO_REF[name](**{**DEFAULTS[name], **kw})


def make_torch_opt(torch, name, kw, param):
    return getattr(torch.optim, FB_TO_TORCH[name])([param], **{**DEFAULTS[name], **kw})


# ----------------------------------------------------------------------------------------------
# the reference itself against torch (no fastbp needed)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_optimizer_matches_torch(case):
    torch = pytest.importorskip("torch")
    name, kw = case
    rng = np.random.default_rng(1)
    p_ref = rng.normal(size=50)
    p = torch.tensor(p_ref.copy(), requires_grad=True)
    topt = make_torch_opt(torch, name, kw, p)
    ropt = make_ref_opt(name, kw)
    for _ in range(N_STEPS):
        g = rng.normal(size=50) * rng.uniform(0.01, 3)
        p.grad = torch.tensor(g)
        topt.step()
        ropt.step(p_ref, g)
        np.testing.assert_allclose(p_ref, p.detach().numpy(), rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# fastbp against the reference and against torch
# ----------------------------------------------------------------------------------------------


def run_fastbp(fb, name, kw, dtype="float64", steps=N_STEPS, lr_change=None):
    """Returns initial params, the gradient fed at each step and the params after each step."""
    net, X, y = make_problem(fb, dtype)
    opt = make_fb_opt(fb, name, kw)
    p0 = net.params.astype(np.float64)
    grads, params = [], []
    view = net.weights[0]
    for t in range(steps):
        if lr_change is not None and t == lr_change[0]:
            opt.lr = lr_change[1]
            assert opt.lr == lr_change[1]
        Xb, yb = batch(X, y, t)
        loss = net.backward(Xb, yb)
        assert math.isfinite(loss)
        grads.append(net.grads.astype(np.float64))
        opt.step(net)
        params.append(net.params.astype(np.float64))
    assert np.shares_memory(view, net.params), "step must update the parameters in place"
    np.testing.assert_array_equal(view, net.weights[0])
    return p0, grads, params


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_optimizer_matches_reference(fb, case):
    name, kw = case
    p0, grads, params = run_fastbp(fb, name, kw)
    ropt = make_ref_opt(name, kw)
    p = p0.copy()
    assert not np.allclose(params[-1], p0), "the optimizer did not move the parameters"
    for t, (g, got) in enumerate(zip(grads, params)):
        ropt.step(p, g)
        np.testing.assert_allclose(got, p, rtol=1e-10, atol=1e-13, err_msg=f"step {t}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_optimizer_matches_torch(fb, case):
    torch = pytest.importorskip("torch")
    name, kw = case
    p0, grads, params = run_fastbp(fb, name, kw)
    p = torch.tensor(p0.copy(), requires_grad=True)
    topt = make_torch_opt(torch, name, kw, p)
    for t, (g, got) in enumerate(zip(grads, params)):
        p.grad = torch.tensor(g)
        topt.step()
        np.testing.assert_allclose(
            got, p.detach().numpy(), rtol=1e-10, atol=1e-13, err_msg=f"step {t}"
        )


@pytest.mark.parametrize("case", [CASES[3], CASES[8], CASES[12], CASES[18], CASES[21]], ids=case_id)
def test_optimizer_float32_close_to_float64_reference(fb, case):
    name, kw = case
    p0, grads, params = run_fastbp(fb, name, kw, dtype="float32")
    ropt = make_ref_opt(name, kw)
    p = p0.copy()
    for t, (g, got) in enumerate(zip(grads, params)):
        ropt.step(p, g)
        np.testing.assert_allclose(got, p, rtol=1e-5, atol=1e-6, err_msg=f"step {t}")


def test_step_uses_current_gradient_buffer(fb):
    net = fb.MLP([3, 2], dtype="float64", seed=0)
    before = net.params.copy()
    g = np.linspace(-1, 1, net.n_params)
    net.grads[...] = g
    fb.SGD(lr=0.25).step(net)
    np.testing.assert_allclose(net.params, before - 0.25 * g, rtol=1e-15, atol=1e-16)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("SGD", dict(lr=0.1, momentum=0.9)),
        ("Adam", dict(lr=0.01)),
        ("AdaGrad", dict(lr=0.1, lr_decay=0.05)),
        ("RMSProp", dict(lr=0.01, momentum=0.5)),
    ],
)
def test_lr_change_mid_run(fb, name, kw):
    new_lr = kw["lr"] * 0.1
    p0, grads, params = run_fastbp(fb, name, kw, lr_change=(12, new_lr))
    ropt = make_ref_opt(name, kw)
    p = p0.copy()
    for t, (g, got) in enumerate(zip(grads, params)):
        if t == 12:
            ropt.lr = new_lr
        ropt.step(p, g)
        np.testing.assert_allclose(got, p, rtol=1e-10, atol=1e-13, err_msg=f"step {t}")
    # and the change really mattered: without it the trajectory differs
    p_const, _, params_const = run_fastbp(fb, name, kw)
    assert not np.allclose(params_const[-1], params[-1], rtol=1e-6)


def test_lr_change_matches_torch(fb):
    torch = pytest.importorskip("torch")
    kw = dict(lr=0.05, momentum=0.9, nesterov=True)
    p0, grads, params = run_fastbp(fb, "SGD", kw, lr_change=(10, 0.2))
    p = torch.tensor(p0.copy(), requires_grad=True)
    topt = torch.optim.SGD([p], **kw)
    for t, (g, got) in enumerate(zip(grads, params)):
        if t == 10:
            topt.param_groups[0]["lr"] = 0.2
        p.grad = torch.tensor(g)
        topt.step()
        np.testing.assert_allclose(got, p.detach().numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.01))])
def test_reset_clears_state(fb, name, kw):
    net, X, y = make_problem(fb)
    opt = make_fb_opt(fb, name, kw)
    for t in range(5):
        net.backward(*batch(X, y, t))
        opt.step(net)
    opt.reset()
    ropt = make_ref_opt(name, kw)  # fresh state: momentum buffer / bias correction anew
    p = net.params.copy()
    for t in range(5, 10):
        net.backward(*batch(X, y, t))
        ropt.step(p, net.grads.copy())
        opt.step(net)
        np.testing.assert_allclose(net.params, p, rtol=1e-10, atol=1e-13)


def test_default_arguments(fb):
    assert fb.Adam().lr == pytest.approx(1e-3)
    assert fb.AdamW().lr == pytest.approx(1e-3)
    assert fb.RMSProp().lr == pytest.approx(1e-2)
    assert fb.AdaGrad().lr == pytest.approx(1e-2)
    assert fb.LineSearchSGD().lr == pytest.approx(1.0)
    # AdamW's default weight decay is 1e-2 (torch): visible in the update
    p0, grads, params = run_fastbp(fb, "AdamW", {}, steps=3)
    ropt = ref.RefAdamW()
    p = p0.copy()
    for g, got in zip(grads, params):
        ropt.step(p, g)
        np.testing.assert_allclose(got, p, rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------------------------
# hyperparameter declarations: one list per rule gives config(), hyperparameters() and repr
# ----------------------------------------------------------------------------------------------

ALL_RULES = ["SGD", "Adam", "AdamW", "RMSProp", "AdaGrad", "LineSearchSGD"]
# a value per hyperparameter, none of them the core config's default, all valid together
NON_DEFAULT = {
    "lr": 0.125,
    "momentum": 0.5,
    "dampening": 0.5,
    "nesterov": False,
    "weight_decay": 0.25,
    "betas": (0.5, 0.75),
    "eps": 1e-5,
    "alpha": 0.875,
    "centered": True,
    "lr_decay": 0.0625,
    "c1": 0.375,
    "shrink": 0.25,
    "max_iter": 7,
}


@pytest.mark.parametrize("name", ALL_RULES)
def test_declared_hyperparameters_follow_the_signature(fb, name):
    cls = getattr(fb, name)
    signature = inspect.signature(cls)
    defaults = {k: p.default for k, p in signature.parameters.items() if p.default is not p.empty}
    opt = cls(lr=0.5) if "lr" not in defaults else cls()
    assert list(opt.hyperparameters()) == list(signature.parameters)
    assert {k: v for k, v in opt.hyperparameters().items() if k in defaults} == defaults


@pytest.mark.parametrize("name", ALL_RULES)
def test_every_hyperparameter_reaches_the_core_config(fb, name):
    cls = getattr(fb, name)
    values = {k: NON_DEFAULT[k] for k in inspect.signature(cls).parameters}
    config = cls(**values).config()
    fills = {f.name: f.fills for f in cls.hyperparameter_fields()}
    assert set(fills) == set(values)
    untouched = fb._core.OptimConfig()
    for key, attributes in fills.items():
        expected = values[key] if len(attributes) > 1 else (values[key],)
        got = tuple(getattr(config, a) for a in attributes)
        assert got == pytest.approx(expected), key
        if key != "nesterov":  # False here, since dampening is not 0: checked below
            assert got != tuple(getattr(untouched, a) for a in attributes), key
    if name == "SGD":
        assert cls(0.1, momentum=0.5, nesterov=True).config().nesterov is True


@pytest.mark.parametrize("name", ALL_RULES)
def test_repr_rebuilds_the_same_optimizer(fb, name):
    cls = getattr(fb, name)
    opt = cls(**{k: NON_DEFAULT[k] for k in inspect.signature(cls).parameters})
    again = eval(repr(opt), {name: cls})
    assert type(again) is cls and again.hyperparameters() == opt.hyperparameters()


def test_assigning_a_hyperparameter_checks_it(fb):
    opt = fb.SGD(0.1, momentum=0.9)
    with pytest.raises(ValueError, match="momentum"):
        opt.momentum = -0.5
    with pytest.raises(TypeError, match="nesterov"):
        opt.nesterov = 1
    assert opt.momentum == 0.9 and opt.nesterov is False
    opt.momentum = 0.5
    assert opt.config().momentum == 0.5


def test_copies_keep_the_hyperparameters(fb):
    opt = fb.Adam(lr=0.01, betas=(0.8, 0.9), eps=1e-6)
    for clone in (copy.copy(opt), copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert type(clone) is fb.Adam and clone.hyperparameters() == opt.hyperparameters()
        assert clone.state_dict() is None and clone.steps == 0


STATEFUL = {
    "sgd-momentum": lambda fb: fb.SGD(0.05, momentum=0.9, dampening=0.2, weight_decay=1e-3),
    "sgd-nesterov": lambda fb: fb.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda fb: fb.Adam(0.01, weight_decay=1e-3),
    "adamw": lambda fb: fb.AdamW(0.01),
    "rmsprop": lambda fb: fb.RMSProp(0.01, momentum=0.5, centered=True, weight_decay=1e-3),
    "adagrad": lambda fb: fb.AdaGrad(0.05, lr_decay=1e-2),
}
COPIES = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda opt: pickle.loads(pickle.dumps(opt)),
}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("name", list(STATEFUL))
def test_a_copied_optimizer_continues_exactly_on_a_copied_network(fb, name, how):
    """3 steps, copy the optimizer and the network, 3 more steps on each pair: the same
    weights bit for bit, so the copy held the moments, velocity and step count."""
    net, X, y = make_problem(fb)
    opt = STATEFUL[name](fb)
    for t in range(3):
        net.backward(*batch(X, y, t))
        opt.step(net)
    twin, clone = net.copy(), COPIES[how](opt)
    assert clone.steps == opt.steps == 3
    for t in range(3, 6):
        net.backward(*batch(X, y, t))
        opt.step(net)
        twin.backward(*batch(X, y, t))
        clone.step(twin)
    assert twin.params.tobytes() == net.params.tobytes()
    assert clone.steps == opt.steps == 6


def test_state_dict_round_trip_and_binding(fb):
    net, X, y = make_problem(fb)
    opt = fb.Adam(0.01)
    net.backward(X, y)
    opt.step(net)
    state = opt.state_dict()
    assert state["dtype"] == "float64" and state["n_params"] == net.n_params
    assert state["core"]["step"] == 1
    for buffer in state["core"]["buffers"].values():
        assert buffer.shape == (net.n_params,) and buffer.dtype == np.float64
    fresh = fb.Adam(0.01)
    fresh.load_state_dict(state)
    again = fresh.state_dict()
    assert again["core"]["step"] == 1
    for key, buffer in state["core"]["buffers"].items():
        assert again["core"]["buffers"][key].tobytes() == buffer.tobytes()
    with pytest.raises(ValueError, match="state is for 51 float64 parameters"):
        fresh.step(fb.MLP([4, 3], loss="cross_entropy", dtype="float64"))
    with pytest.raises(ValueError, match="float64"):
        fresh.step(fb.MLP([4, 6, 3], loss="cross_entropy", dtype="float32"))
    fresh.step(net.copy())  # binds to a network of its size and dtype
    with pytest.raises(ValueError, match="another network"):
        fresh.step(net)
    fresh.load_state_dict(None)
    assert fresh.steps == 0 and fresh.state_dict() is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.update(dtype="int8"), "dtype"),
        (lambda s: s.update(n_params=0), "n_params"),
        (lambda s: s.pop("core"), "record of state_dict"),
        (lambda s: s["core"]["buffers"].update(exp_avg=np.zeros(3)), "state\\['core'\\]"),
        # a state without one of Adam's moments would restart it as zeros at step > 0
        (lambda s: s["core"]["buffers"].pop("exp_avg_sq"), "holds the buffers \\['exp_avg'\\]"),
        (lambda s: s["core"]["buffers"]["exp_avg"].__setitem__(3, np.nan), "'exp_avg' holds NaN"),
        # a square sum below 0: sqrt(-1) = NaN parameters at the next step
        (
            lambda s: s["core"]["buffers"]["exp_avg_sq"].__setitem__(1, -1.0),
            "'exp_avg_sq' holds a negative square sum",
        ),
    ],
)
def test_load_state_dict_refuses_a_foreign_record(fb, edit, message):
    net, X, y = make_problem(fb)
    opt = fb.Adam(0.01)
    net.backward(X, y)
    opt.step(net)
    state = opt.state_dict()
    edit(state)
    fresh = fb.Adam(0.01)
    with pytest.raises((ValueError, TypeError), match=message):
        fresh.load_state_dict(state)
    assert fresh.state_dict() is None  # nothing half-loaded


@pytest.mark.parametrize(
    "source, target, match",
    [
        (("Adam", {}), ("SGD", dict(momentum=0.9)), "SGD keeps \\['momentum_buffer'\\]"),
        (("Adam", {}), ("AdaGrad", {}), "AdaGrad keeps \\['sum'\\]"),
        (("RMSProp", {}), ("RMSProp", dict(centered=True)), "'grad_avg', 'square_avg'"),
    ],
)
def test_another_optimizers_state_is_refused(fb, source, target, match):
    net, X, y = make_problem(fb)
    opt = getattr(fb, source[0])(0.01, **source[1])
    net.backward(X, y)
    opt.step(net)
    with pytest.raises(ValueError, match=match):
        getattr(fb, target[0])(0.01, **target[1]).load_state_dict(opt.state_dict())
    same = getattr(fb, source[0])(0.01, **source[1])
    same.load_state_dict(opt.state_dict())  # its own kind loads
    assert same.steps == 1


def test_a_state_its_optimizer_can_reach_loads(fb):
    # momentum set to 0 after some steps keeps its (unused) buffer; a huge gradient's square
    # is an infinite exp_avg_sq, which Adam goes on with: both are states worth saving
    net, X, y = make_problem(fb)
    sgd = fb.SGD(0.01, momentum=0.9)
    net.backward(X, y)
    sgd.step(net)
    sgd.momentum = 0.0
    again = fb.SGD(0.01)
    again.load_state_dict(sgd.state_dict())
    assert sorted(again.state_dict()["core"]["buffers"]) == ["momentum_buffer"]
    adam = fb.Adam(0.01)
    adam.step(net)
    state = adam.state_dict()
    state["core"]["buffers"]["exp_avg_sq"][0] = np.inf
    fb.Adam(0.01).load_state_dict(state)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSProp", "AdaGrad"])
def test_zero_eps_is_rejected(fb, name):
    # eps is added to sqrt(state): with eps = 0, a zero gradient gives 0 / 0 = NaN parameters
    with pytest.raises(ValueError, match=r"\beps\b"):
        getattr(fb, name)(eps=0.0)
    with pytest.raises(ValueError, match=r"\beps\b"):
        getattr(fb, name)().eps = 0.0


# ----------------------------------------------------------------------------------------------
# clipping
# ----------------------------------------------------------------------------------------------


def _torch_grads(torch, net):
    ts = []
    for a in list(net.grad_weights) + list(net.grad_biases):
        t = torch.zeros(a.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.tensor(np.array(a, dtype=np.float64))
        ts.append(t)
    return ts


@pytest.mark.parametrize("factor", [0.05, 0.5, 0.999, 2.0])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_clip_grad_norm_matches_torch(fb, factor, dtype):
    torch = pytest.importorskip("torch")
    net, X, y = make_problem(fb, dtype)
    net.backward(X, y)
    net.grads[...] *= 3.0
    total = math.sqrt(
        sum(
            np.sum(np.asarray(g, np.float64) ** 2)
            for g in list(net.grad_weights) + list(net.grad_biases)
        )
    )
    max_norm = factor * total
    ts = _torch_grads(torch, net)
    before = net.grads.copy()
    expected_total = float(torch.nn.utils.clip_grad_norm_(ts, max_norm))
    got_total = fb.clip_grad_norm(net, max_norm)
    tol = 1e-12 if dtype == "float64" else 1e-6
    assert isinstance(got_total, float)
    assert got_total == pytest.approx(expected_total, rel=tol)
    assert got_total == pytest.approx(total, rel=tol)
    for a, t in zip(list(net.grad_weights) + list(net.grad_biases), ts):
        np.testing.assert_allclose(
            np.asarray(a, np.float64), t.grad.numpy(), rtol=tol, atol=tol * 1e-3
        )
    # the same through the NumPy transcription
    mine = [before.astype(np.float64)]
    assert ref.clip_grad_norm(mine, max_norm) == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(net.grads.astype(np.float64), mine[0], rtol=tol, atol=tol * 1e-3)
    if factor > 1:
        np.testing.assert_array_equal(net.grads, before)  # no clipping: untouched
    else:
        new_total = math.sqrt(float(np.sum(net.grads.astype(np.float64) ** 2)))
        assert new_total == pytest.approx(max_norm, rel=1e-5)


def test_clip_grad_norm_counts_bias_gradients(fb):
    net = fb.MLP([2, 2], dtype="float64", seed=0)
    net.grad_weights[0][...] = 0.0
    net.grad_biases[0][...] = [3.0, 4.0]
    assert fb.clip_grad_norm(net, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(net.grad_biases[0], [0.6, 0.8], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_clip_grad_value_matches_torch(fb, dtype):
    torch = pytest.importorskip("torch")
    net, X, y = make_problem(fb, dtype)
    net.backward(X, y)
    g = net.grads.astype(np.float64)
    value = float(np.quantile(np.abs(g), 0.6))
    ts = _torch_grads(torch, net)
    torch.nn.utils.clip_grad_value_(ts, value)
    expected = np.clip(g, -value, value)
    ret = fb.clip_grad_value(net, value)
    assert ret is None or isinstance(ret, float)
    np.testing.assert_allclose(
        net.grads.astype(np.float64), expected, rtol=0 if dtype == "float64" else 1e-7, atol=0
    )
    for a, t in zip(list(net.grad_weights) + list(net.grad_biases), ts):
        np.testing.assert_allclose(
            np.asarray(a, np.float64), t.grad.numpy(), rtol=0 if dtype == "float64" else 1e-7
        )
    assert np.abs(net.grads).max() <= np.float32(value) * (1 + 1e-7)


# ----------------------------------------------------------------------------------------------
# gradient noise
# ----------------------------------------------------------------------------------------------


def _big_net(fb, dtype="float64"):
    return fb.MLP([300, 200, 50], activation="tanh", dtype=dtype, seed=0)  # 70,250 entries


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gradient_noise_variance_schedule(fb, dtype):
    net = _big_net(fb, dtype)
    eta, gamma = 0.3, 0.55
    noise = fb.GradientNoise(eta=eta, gamma=gamma, seed=1)
    assert noise.t == 0
    n = net.n_params
    for t in range(4):
        net.grads[...] = 0.0
        noise.apply(net)
        assert noise.t == t + 1
        g = net.grads.astype(np.float64)
        var = eta / (1.0 + t) ** gamma
        # sample variance: relative sd sqrt(2/n) ~ 0.5%; 5% is ~ 9 sigma yet catches std-vs-var,
        # an off-by-one in t (>= 18%) or a wrong exponent
        assert g.var() == pytest.approx(var, rel=0.05), f"t={t}"
        assert abs(g.mean()) < 5 * math.sqrt(var / n)
        kurt = np.mean((g - g.mean()) ** 4) / g.var() ** 2
        assert kurt == pytest.approx(3.0, abs=0.2), "noise is not Gaussian"
        # every gradient entry, biases included, gets noise
        assert all(np.all(b != 0) for b in net.grad_biases)


def test_gradient_noise_is_standard_normal_whatever_the_threads_and_dtype(
    fb, restore_threads, openmp
):
    """The counter-based stream gives each entry the same value on one thread or two (the
    entries are split between threads above 2^17 of them) and in float32 or float64; its
    quantiles are the normal distribution's."""
    sizes = [500, 400, 10]  # 204,410 entries
    draws = {}
    for dtype, threads in (("float64", 1), ("float64", 2), ("float32", 2)):
        fb.set_num_threads(threads)
        net = fb.MLP(sizes, dtype=dtype, seed=0)
        net.grads[...] = 0.0
        fb.GradientNoise(eta=1.0, gamma=0.0, seed=11).apply(net)
        draws[dtype, threads] = net.grads.copy()
    z = draws["float64", 1]
    assert draws["float64", 2].tobytes() == z.tobytes()
    np.testing.assert_array_equal(draws["float32", 2], z.astype(np.float32))
    # quantiles within a few standard errors of the normal's (n = 204,410)
    for q, expected in ((0.01, -2.3263), (0.1, -1.2816), (0.5, 0.0), (0.9, 1.2816), (0.99, 2.3263)):
        assert np.quantile(z, q) == pytest.approx(expected, abs=0.03), q
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01  # neighbours (one draw's pair) independent


def test_gradient_noise_is_added_not_replacing(fb):
    net = _big_net(fb)
    noise = fb.GradientNoise(eta=0.01, gamma=0.55, seed=3)
    net.grads[...] = 1.5
    noise.apply(net)
    g = net.grads
    assert g.mean() == pytest.approx(1.5, abs=5 * math.sqrt(0.01 / g.size))
    assert g.var() == pytest.approx(0.01, rel=0.05)


def test_gradient_noise_defaults_and_seed(fb):
    noise = fb.GradientNoise()
    assert noise.eta == pytest.approx(0.01) and noise.gamma == pytest.approx(0.55)
    a, b, c = _big_net(fb), _big_net(fb), _big_net(fb)
    for n in (a, b, c):
        n.grads[...] = 0.0
    na, nb, nc = (
        fb.GradientNoise(eta=0.1, seed=7),
        fb.GradientNoise(eta=0.1, seed=7),
        fb.GradientNoise(eta=0.1, seed=8),
    )
    for _ in range(2):
        na.apply(a)
        nb.apply(b)
        nc.apply(c)
    assert a.grads.tobytes() == b.grads.tobytes()
    assert not np.array_equal(a.grads, c.grads)
    # consecutive steps draw fresh noise
    d = _big_net(fb)
    nd = fb.GradientNoise(eta=0.1, seed=7)
    d.grads[...] = 0.0
    nd.apply(d)
    first = d.grads.copy()
    d.grads[...] = 0.0
    nd.apply(d)
    assert abs(np.corrcoef(first, d.grads)[0, 1]) < 0.05


# ----------------------------------------------------------------------------------------------
# line search
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_line_search_never_increases_full_batch_loss(fb, dtype):
    net, X, y = make_problem(fb, dtype, seed=4)
    opt = fb.LineSearchSGD(lr=1.0, c1=1e-4, shrink=0.5, max_iter=20)
    losses = [net.compute_loss(X, y)]
    slack = 1e-12 if dtype == "float64" else 1e-6
    for _ in range(30):
        net.backward(X, y)
        g = net.grads.astype(np.float64)
        p_old = net.params.astype(np.float64)
        ret = opt.step(net, X, y)
        assert math.isfinite(ret)
        new = net.compute_loss(X, y)
        assert new <= losses[-1] * (1 + slack) + slack, "loss increased"
        assert ret == pytest.approx(losses[-1], rel=1e-4) or ret == pytest.approx(new, rel=1e-4)
        if dtype == "float64":
            # the move is -alpha * g with alpha = lr * shrink^k (or 0), satisfying Armijo
            delta = net.params - p_old
            gg = float(g @ g)
            alpha = -float(delta @ g) / gg
            np.testing.assert_allclose(delta, -alpha * g, rtol=1e-8, atol=1e-14)
            if alpha > 0:
                k = math.log(alpha / 1.0) / math.log(0.5)
                assert abs(k - round(k)) < 1e-6 and 0 <= round(k) <= 20, alpha
                assert new <= losses[-1] - 1e-4 * alpha * gg + 1e-12
        losses.append(new)
    assert losses[-1] < 0.9 * losses[0]


# ----------------------------------------------------------------------------------------------
# degenerate but valid cases
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, buffer", [("RMSProp", "square_avg"), ("AdaGrad", "sum")])
def test_negative_square_sums_are_refused_for_every_rule(fb, name, buffer):
    net, X, y = make_problem(fb)
    opt = getattr(fb, name)(0.01)
    net.backward(X, y)
    opt.step(net)
    state = opt.state_dict()
    state["core"]["buffers"][buffer][0] = -1e-3
    with pytest.raises(ValueError, match=f"'{buffer}' holds a negative square sum"):
        getattr(fb, name)(0.01).load_state_dict(state)


def test_a_float32_clip_factor_below_the_smallest_normal_scales_not_zeroes(fb):
    """norm / max_norm = 7e40: the factor, 1.4e-41, is subnormal in float32, and the default
    subnormal flushing made it 0; the clipped gradient must have norm max_norm, as torch's."""
    net = fb.MLP([4, 6, 3], seed=0)  # float32
    net.set_grads(np.full(net.n_params, 1e30, np.float32))
    norm = fb.clip_grad_norm(net, 1e-10)
    assert norm == pytest.approx(1e30 * math.sqrt(net.n_params), rel=1e-6)
    assert np.linalg.norm(net.grads.astype(np.float64)) == pytest.approx(1e-10, rel=1e-5)
    # in training too (the same scaling): one SGD step of norm lr * max_norm = 0.1, where the
    # factor is 1e-39 and the clipped entries (~1e-30) are normal floats
    X, y = np.full((8, 4), 1e5), np.zeros(8)
    trained = fb.MLP([4, 6, 1], activation="relu", seed=0)
    probe = trained.copy()
    probe.backward(X, y)
    max_norm = fb.clip_grad_norm(probe, math.inf) * 1e-39
    start = np.array(trained.params, dtype=np.float64)
    fb.Trainer(
        trained,
        fb.SGD(0.1 / max_norm),
        batch_size=8,
        epochs=1,
        clip_norm=max_norm,
        progress=False,
    ).fit(X, y)
    step = np.linalg.norm(trained.params.astype(np.float64) - start)
    assert step == pytest.approx(0.1, rel=1e-3)


def test_infinite_clip_bounds_clip_nothing_as_in_torch(fb):
    net = fb.MLP([3, 4, 2], dtype="float64", seed=0)
    grads = np.random.default_rng(0).normal(size=net.n_params) * 1e3
    net.set_grads(grads)
    assert fb.clip_grad_norm(net, math.inf) == pytest.approx(np.linalg.norm(grads), rel=1e-12)
    fb.clip_grad_value(net, float("inf"))
    np.testing.assert_array_equal(net.grads, grads)
    for bad in (-math.inf, math.nan, 0.0):
        with pytest.raises(ValueError, match="max_norm"):
            fb.clip_grad_norm(net, bad)


def test_clip_grad_norm_of_zero_gradients(fb):
    net = fb.MLP([3, 4, 2], dtype="float64", seed=0)
    net.grads[...] = 0.0
    assert fb.clip_grad_norm(net, 1.0) == 0.0
    assert np.all(net.grads == 0)


def test_gradient_noise_eta_zero_is_a_no_op(fb):
    net = fb.MLP([3, 4, 2], dtype="float64", seed=0)
    net.grads[...] = 0.25
    fb.GradientNoise(eta=0.0, seed=0).apply(net)
    assert np.all(net.grads == 0.25)


def test_line_search_at_a_stationary_point(fb):
    net = fb.MLP([1, 1], loss="mse", dtype="float64", seed=0)
    net.weights[0][...] = 0.0
    net.biases[0][...] = 0.5
    X, Y = np.zeros((4, 1)), np.full((4, 1), 0.5)  # zero loss, zero gradient
    opt = fb.LineSearchSGD()
    loss = opt.step(net, X, Y)
    assert loss == 0.0
    assert np.all(np.isfinite(net.params))
    assert net.biases[0][0] == 0.5


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSProp", "AdaGrad"])
def test_adaptive_optimizers_with_zero_gradients_stay_finite(fb, name):
    net = fb.MLP([3, 4, 2], dtype="float64", seed=0)
    before = net.params.copy()
    opt = getattr(fb, name)(lr=0.1, **({"weight_decay": 0.0} if name == "AdamW" else {}))
    for _ in range(3):
        net.grads[...] = 0.0
        opt.step(net)
    assert np.all(np.isfinite(net.params))
    np.testing.assert_array_equal(net.params, before)


# ----------------------------------------------------------------------------------------------
# large flat buffers (past the core's parallel threshold), with two threads
# ----------------------------------------------------------------------------------------------

BIG_CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2)),
    ("Adam", dict(lr=0.01, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("RMSProp", dict(lr=0.002, momentum=0.5, centered=True, weight_decay=0.01)),
    ("AdaGrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.01)),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", BIG_CASES, ids=case_id)
def test_optimizer_large_buffer_two_threads(fb, restore_threads, case, dtype):
    fb.set_num_threads(2)
    name, kw = case
    rng = np.random.default_rng(0)
    net = fb.MLP([200, 300, 50], activation="tanh", loss="mse", dtype=dtype, seed=0)
    assert net.n_params > 1 << 16
    for b in net.biases:
        b[...] = rng.normal(0, 0.1, size=b.shape)
    opt = make_fb_opt(fb, name, kw)
    ropt = make_ref_opt(name, kw)
    p = net.params.astype(np.float64)
    X, Y = rng.normal(size=(64, 200)), rng.normal(size=(64, 50))
    tol = dict(rtol=1e-10, atol=1e-13) if dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    for t in range(6):
        net.backward(X, Y)
        g = net.grads.astype(np.float64)
        opt.step(net)
        ropt.step(p, g)
        np.testing.assert_allclose(net.params, p, err_msg=f"step {t}", **tol)
        if dtype == "float32":
            p[...] = net.params  # follow the float32 trajectory step by step


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_norms_and_clipping_large_buffer_two_threads(fb, restore_threads, dtype):
    fb.set_num_threads(2)
    rng = np.random.default_rng(1)
    net = fb.MLP([200, 300, 50], activation="tanh", loss="mse", dtype=dtype, seed=0)
    net.backward(rng.normal(size=(64, 200)), rng.normal(size=(64, 50)))
    g = net.grads.astype(np.float64)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(
        net.grad_norms(),
        [np.linalg.norm(np.asarray(w, np.float64)) for w in net.grad_weights],
        rtol=rtol,
    )
    total = np.linalg.norm(g)
    assert fb.clip_grad_norm(net, 0.3 * total) == pytest.approx(total, rel=rtol)
    np.testing.assert_allclose(
        net.grads, g * (0.3 * total / (total + 1e-6)), rtol=rtol, atol=1e-6 * np.abs(g).max()
    )
    fb.clip_grad_value(net, 1e-4)
    assert np.abs(net.grads).max() <= np.float32(1e-4) * (1 + 1e-7)
