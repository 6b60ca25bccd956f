"""The optimizer state of the core: state_dict() / load_state_dict() resume training bit for bit,
and a bad dict is refused whole, with a ValueError naming the problem."""

import pickle

import numpy as np
import pytest

from fastbp import _core

NETWORKS = {np.float32: _core.Network32, np.float64: _core.Network64}
STATES = {np.float32: _core.OptimizerState32, np.float64: _core.OptimizerState64}

RULES = {
    # name: OptimConfig fields, the buffers the rule keeps (torch's names)
    "adam": (dict(kind=_core.Optim.adam, lr=1e-2, weight_decay=1e-3), {"exp_avg", "exp_avg_sq"}),
    "adamw": (dict(kind=_core.Optim.adamw, lr=1e-2, weight_decay=1e-2), {"exp_avg", "exp_avg_sq"}),
    "sgd_momentum": (
        dict(kind=_core.Optim.sgd, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3),
        {"momentum_buffer"},
    ),
    "sgd_nesterov": (
        dict(kind=_core.Optim.sgd, lr=0.05, momentum=0.9, nesterov=True),
        {"momentum_buffer"},
    ),
    "sgd_plain": (dict(kind=_core.Optim.sgd, lr=0.05), set()),
    "rmsprop_centered_momentum": (
        dict(kind=_core.Optim.rmsprop, lr=1e-2, alpha=0.9, momentum=0.8, centered=True),
        {"square_avg", "grad_avg", "momentum_buffer"},
    ),
    "rmsprop": (dict(kind=_core.Optim.rmsprop, lr=1e-2), {"square_avg"}),
    "adagrad": (dict(kind=_core.Optim.adagrad, lr=5e-2, lr_decay=0.01), {"sum"}),
}


def _config(fields):
    c = _core.OptimConfig()
    for k, v in fields.items():
        setattr(c, k, v)
    return c


def _setup(dtype, seed=0):
    net = NETWORKS[dtype]([6, 12, 8, 3], ["tanh", "relu"], "softmax", "cross_entropy")
    rng = np.random.default_rng(seed)
    net.params[:] = rng.normal(scale=0.5, size=net.n_params)
    X = rng.normal(size=(64, 6)).astype(dtype)
    y = rng.integers(0, 3, 64).astype(np.int32)
    return net, X, y


def _steps(net, opt, config, X, y, first, count):
    for t in range(first, first + count):
        rows = slice((t * 8) % 64, (t * 8) % 64 + 8)
        net.backward(X[rows], y[rows])
        opt.step(net, config)


def _epoch(net, opt, config, X, y, epoch):
    ec = _core.EpochConfig()
    ec.batch_size = 8
    ec.seed = 3
    ec.epoch = epoch
    start = np.empty(net.n_params, net.params.dtype)
    return _core.train_epoch(net, opt, config, X, y, start, ec)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("k", [0, 1, 5])
def test_resume_from_state_dict_is_bit_identical(rule, dtype, k):
    fields, buffers = RULES[rule]
    config = _config(fields)
    net_a, X, y = _setup(dtype)
    opt_a = STATES[dtype](net_a.n_params)
    _steps(net_a, opt_a, config, X, y, 0, k + 6)

    net_b, _, _ = _setup(dtype)
    opt_b = STATES[dtype](net_b.n_params)
    _steps(net_b, opt_b, config, X, y, 0, k)
    saved = pickle.loads(pickle.dumps(opt_b.state_dict()))
    assert saved["step"] == k and saved["momentum_fresh"] is False
    assert set(saved["buffers"]) == (buffers if k > 0 else set())
    for values in saved["buffers"].values():
        assert values.dtype == dtype and values.shape == (net_b.n_params,)
    del opt_b
    opt_c = STATES[dtype](net_b.n_params)
    opt_c.load_state_dict(saved)
    assert opt_c.steps == k
    _steps(net_b, opt_c, config, X, y, k, 6)

    assert net_b.params.tobytes() == net_a.params.tobytes()
    assert opt_c.steps == opt_a.steps == k + 6
    a, c = opt_a.state_dict(), opt_c.state_dict()
    assert set(a["buffers"]) == set(c["buffers"]) == buffers
    for name in buffers:
        assert a["buffers"][name].tobytes() == c["buffers"][name].tobytes()


@pytest.mark.parametrize("rule", ["adam", "sgd_momentum", "rmsprop_centered_momentum", "adagrad"])
def test_resume_between_epochs_is_bit_identical(rule):
    config = _config(RULES[rule][0])
    net_a, X, y = _setup(np.float32, seed=1)
    opt_a = STATES[np.float32](net_a.n_params)
    for epoch in range(3):
        _epoch(net_a, opt_a, config, X, y, epoch)

    net_b, _, _ = _setup(np.float32, seed=1)
    opt_b = STATES[np.float32](net_b.n_params)
    _epoch(net_b, opt_b, config, X, y, 0)
    opt_c = STATES[np.float32](net_b.n_params)
    opt_c.load_state_dict(opt_b.state_dict())
    for epoch in (1, 2):
        _epoch(net_b, opt_c, config, X, y, epoch)
    assert net_b.params.tobytes() == net_a.params.tobytes()
    assert opt_c.steps == opt_a.steps == 3 * 64 // 8


def test_state_dict_holds_copies():
    net, X, y = _setup(np.float64)
    opt = STATES[np.float64](net.n_params)
    config = _config(RULES["adam"][0])
    _steps(net, opt, config, X, y, 0, 2)
    d = opt.state_dict()
    d["buffers"]["exp_avg"][:] = 123.0
    assert not (opt.state_dict()["buffers"]["exp_avg"] == 123.0).any()


def test_load_converts_dtype_and_keeps_values():
    net, X, y = _setup(np.float32)
    opt = STATES[np.float32](net.n_params)
    _steps(net, opt, _config(RULES["adagrad"][0]), X, y, 0, 3)
    d = opt.state_dict()
    wide = {
        "step": np.int64(d["step"]),
        "momentum_fresh": np.bool_(False),
        "buffers": {k: v.astype(np.float64) for k, v in d["buffers"].items()},
    }
    other = STATES[np.float32](net.n_params)
    other.load_state_dict(wide)
    assert other.state_dict()["buffers"]["sum"].tobytes() == d["buffers"]["sum"].tobytes()
    assert other.steps == 3


def _good_dict(n):
    return {
        "step": 4,
        "momentum_fresh": False,
        "buffers": {"exp_avg": np.zeros(n), "exp_avg_sq": np.ones(n)},
    }


def _bad_dicts(n):
    def with_(change):
        d = _good_dict(n)
        change(d)
        return d

    return {
        "not a dict": ([1, 2], "state must be a dict"),
        "missing step": (with_(lambda d: d.pop("step")), "lacks the key 'step'"),
        "missing buffers": (with_(lambda d: d.pop("buffers")), "lacks the key 'buffers'"),
        "missing fresh": (with_(lambda d: d.pop("momentum_fresh")), "momentum_fresh"),
        "unknown key": (with_(lambda d: d.update(lr=0.1)), "unknown key 'lr'"),
        "negative step": (with_(lambda d: d.update(step=-1)), r"step'\] must be an int >= 0"),
        "float step": (with_(lambda d: d.update(step=4.0)), r"step'\] must be an int"),
        "nan step": (with_(lambda d: d.update(step=float("nan"))), r"step'\] must be an int"),
        "bool step": (with_(lambda d: d.update(step=True)), r"step'\] must be an int"),
        "huge step": (with_(lambda d: d.update(step=2**70)), r"step'\] must be an int >= 0"),
        "fresh not bool": (with_(lambda d: d.update(momentum_fresh=1)), "must be a bool"),
        "buffers not dict": (with_(lambda d: d.update(buffers=[1.0])), "must be a dict"),
        "unknown buffer": (
            with_(lambda d: d["buffers"].update(velocity=np.zeros(n))),
            "no optimizer has a buffer named 'velocity'",
        ),
        "short buffer": (
            with_(lambda d: d["buffers"].update(exp_avg_sq=np.zeros(n - 1))),
            f"'exp_avg_sq' has {n - 1} entries, n_params is {n}",
        ),
        "2-D buffer": (
            with_(lambda d: d["buffers"].update(exp_avg=np.zeros((n, 1)))),
            "must be 1-D",
        ),
        "string buffer": (
            with_(lambda d: d["buffers"].update(exp_avg=np.array(["a"] * n))),
            "real numbers",
        ),
        "complex buffer": (
            with_(lambda d: d["buffers"].update(exp_avg=np.zeros(n, complex))),
            "real numbers",
        ),
        "object buffer": (
            with_(lambda d: d["buffers"].update(exp_avg=np.array([None] * n))),
            "real numbers",
        ),
        "non-str name": (
            with_(lambda d: d["buffers"].update({3: np.zeros(n)})),
            "keys must be str",
        ),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(_bad_dicts(5)))
def test_bad_state_dict_is_refused_whole(dtype, case):
    net, X, y = _setup(dtype)
    opt = STATES[dtype](net.n_params)
    config = _config(RULES["adam"][0])
    _steps(net, opt, config, X, y, 0, 2)
    before = opt.state_dict()
    bad, message = _bad_dicts(net.n_params)[case]
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    assert after["step"] == before["step"] == 2
    assert after["momentum_fresh"] == before["momentum_fresh"]
    assert set(after["buffers"]) == set(before["buffers"])
    for name, values in before["buffers"].items():
        assert after["buffers"][name].tobytes() == values.tobytes()
    # and the state still steps as if nothing had happened
    net2, _, _ = _setup(dtype)
    opt2 = STATES[dtype](net2.n_params)
    _steps(net2, opt2, config, X, y, 0, 3)
    _steps(net, opt, config, X, y, 2, 1)
    assert net.params.tobytes() == net2.params.tobytes()


def test_good_dict_of_the_bad_cases_loads():
    opt = STATES[np.float64](5)
    opt.load_state_dict(_good_dict(5))
    assert opt.steps == 4
    assert set(opt.state_dict()["buffers"]) == {"exp_avg", "exp_avg_sq"}
