"""Bad inputs raise ValueError / TypeError naming the argument; nothing crashes the process."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

BAD = (ValueError, TypeError)


def named(arg):
    """Regex: the argument's name as a whole word (case-sensitive: 'X' is not 'max')."""
    return rf"(?<![A-Za-z0-9_]){arg}(?![A-Za-z0-9_])"


@pytest.fixture
def nets(fb):
    return {
        "mse": fb.MLP([3, 4, 2], activation="tanh", loss="mse", dtype="float64", seed=0),
        "ce": fb.MLP([3, 4, 3], activation="tanh", loss="cross_entropy", seed=0),
        "bce": fb.MLP([3, 4, 2], activation="tanh", loss="binary_cross_entropy", seed=0),
    }


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(5, 3))


# ----------------------------------------------------------------------------------------------
# construction
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sizes",
    [[], [3], [3, 0], [3, -2], [0, 3], [3, 4, 0, 2], [3, 2.5], [3, "4"], [3, None], "34", 5],
    ids=repr,
)
def test_bad_layer_sizes(fb, sizes):
    with pytest.raises(BAD, match=named("layer_sizes")):
        fb.MLP(sizes)


@pytest.mark.parametrize(
    "activation",
    ["foo", "", "RELU_", "softmax", 3, ["tanh"], ["tanh", "relu", "relu"], ["tanh", "nope"]],
    ids=repr,
)
def test_bad_activation(fb, activation):
    with pytest.raises(BAD, match=named("activation")):
        fb.MLP([3, 4, 4, 2], activation=activation)


@pytest.mark.parametrize("loss", ["hinge", "", "crossentropy", None, 1])
def test_bad_loss(fb, loss):
    with pytest.raises(BAD, match=named("loss")):
        fb.MLP([3, 2], loss=loss)


@pytest.mark.parametrize(
    "init",
    [
        "glorot",
        "",
        ("normal",),
        ("normal", -1.0),
        ("uniform", -1.0),
        ("uniform", float("nan")),
        ("laplace", 1.0),
        3,
    ],
    ids=repr,
)
def test_bad_init(fb, init):
    with pytest.raises(BAD, match=named("init")):
        fb.MLP([3, 2], init=init)


@pytest.mark.parametrize("dtype", ["float16", "int32", "bogus", "complex128", np.int64, bool, None])
def test_bad_dtype(fb, dtype):
    with pytest.raises(BAD, match=named("dtype")):
        fb.MLP([3, 2], dtype=dtype)


def test_cross_entropy_needs_two_outputs(fb):
    # a softmax over one output is 1 whatever the input: nothing would ever be learnt
    with pytest.raises(ValueError, match="layer_sizes.*at least 2 outputs.*binary_cross_entropy"):
        fb.MLP([3, 4, 1], loss="cross_entropy")


@pytest.mark.parametrize(
    "loss,out",
    [
        ("cross_entropy", "sigmoid"),
        ("cross_entropy", "identity"),
        ("binary_cross_entropy", "softmax"),
        ("binary_cross_entropy", "tanh"),
        ("mse", "foo"),
        ("cross_entropy", "foo"),
    ],
)
def test_output_activation_incompatible_with_loss(fb, loss, out):
    with pytest.raises(BAD, match=named("output_activation")):
        fb.MLP([3, 2], loss=loss, output_activation=out)


def test_accepted_constructions(fb):
    # the positive side of the checks above: these must not raise
    fb.MLP([3, 2])
    fb.MLP((3, 4, 2), activation=["tanh"])
    fb.MLP([np.int64(3), np.int32(2)])
    fb.MLP([3, 2], loss="cross_entropy", output_activation="softmax")
    fb.MLP([3, 2], loss="binary_cross_entropy", output_activation="sigmoid")
    for act in (
        "identity",
        "sigmoid",
        "tanh",
        "relu",
        "leaky_relu",
        "elu",
        "softplus",
        "gelu",
        "silu",
        "softmax",
    ):
        fb.MLP([3, 2], loss="mse", output_activation=act)
    fb.MLP([3, 2], dtype=np.float64)
    fb.MLP([3, 2], dtype=np.dtype("float32"))
    fb.MLP([3, 2], init=("normal", 0.1))
    fb.MLP([3, 2], init=("uniform", 0.1))


# ----------------------------------------------------------------------------------------------
# forward / backward inputs
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["forward", "backward", "compute_loss"])
@pytest.mark.parametrize(
    "case", ["1d", "3d", "features", "strings", "empty", "nan", "inf", "object", "scalar"]
)
def test_bad_X(nets, method, case):
    net = nets["mse"]
    good = np.random.default_rng(0).normal(size=(5, 3))
    bad = {
        "1d": good[0, :2],  # 1-D that cannot be one sample of 3 features
        "3d": good.reshape(5, 3, 1),
        "features": np.ones((5, 4)),
        "strings": np.array([["a", "b", "c"]] * 5),
        "empty": np.ones((0, 3)),
        "nan": np.where(np.eye(5, 3) > 0, np.nan, good),
        "inf": np.where(np.eye(5, 3) > 0, -np.inf, good),
        "object": np.array([[object()] * 3] * 5, dtype=object),
        "scalar": np.float64(1.0),
    }[case]
    Y = np.zeros((bad.shape[0] if np.ndim(bad) >= 1 else 5, 2))
    call = getattr(net, method)
    with pytest.raises(BAD, match=named("X")):
        call(bad) if method == "forward" else call(bad, Y)


@pytest.mark.parametrize("method", ["backward", "compute_loss"])
@pytest.mark.parametrize(
    "loss,Y",
    [
        ("mse", np.zeros((4, 2))),  # wrong number of rows
        ("mse", np.zeros((5, 3))),  # wrong number of outputs
        ("mse", np.zeros(5)),  # 1-D with n_out = 2
        ("mse", np.zeros((5, 2, 1))),  # 3-D
        ("mse", np.full((5, 2), np.nan)),
        ("mse", np.full((5, 2), np.inf)),
        ("mse", np.array([["a", "b"]] * 5)),
        ("bce", np.zeros((5, 3))),
        ("bce", np.full((5, 2), 2.0)),  # outside [0, 1]
        ("bce", np.full((5, 2), -0.5)),
        ("bce", np.array([[np.nan, 0.0]] * 5)),
        ("ce", np.array([0, 1, 2, 3, 0])),  # label == n_out
        ("ce", np.array([0, 1, -1, 2, 0])),  # negative
        ("ce", np.array([0, 1, 2, 1, 10**12])),  # huge
        ("ce", np.array([0.0, 1.0, 0.5, 1.0, 2.0])),  # non-integer floats
        ("ce", np.array([0.0, 1.0, np.nan, 1.0, 2.0])),
        ("ce", np.array([0, 1, 2, 1])),  # wrong length
        ("ce", np.zeros((5, 2))),  # probability rows of the wrong width
        ("ce", np.full((5, 3), np.nan)),
        ("ce", np.array(["0", "1", "2", "1", "0"])),
    ],
    ids=lambda v: v if isinstance(v, str) else f"shape{np.shape(v)}",
)
def test_bad_Y(nets, method, loss, Y):
    net = nets[loss]
    X = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(BAD, match=named("Y")):
        getattr(net, method)(X, Y)


def test_one_dimensional_X_is_one_sample(nets, X):
    """validation.check_X documents a 1-D X of n_features entries as a single sample."""
    net = nets["mse"]
    np.testing.assert_array_equal(net.forward(X[0]), net.forward(X[:1]))


def test_messages_name_the_argument_where_numpy_or_python_would_not(fb, nets):
    with pytest.raises(ValueError, match=named("X") + ".*rectangular"):
        nets["mse"].forward([[1, 2, 3], [1, 2]])
    y = np.array([1, "a"] * 10, dtype=object)
    with pytest.raises(TypeError, match="stratify.*one kind"):
        fb.split(np.zeros((20, 2)), y, stratify=True)
    with pytest.raises(TypeError, match="callbacks must be a list"):
        fb.Trainer(nets["mse"], fb.SGD(0.1), callbacks=5)
    assert fb.Trainer(nets["mse"], fb.SGD(0.1), callbacks=None).callbacks == []


def test_trainer_settings_changed_after_construction_are_checked_at_fit(fb, nets):
    # trainer.epochs = 0 made fit return an empty history; clip_norm = -1 turned clipping off
    X, y = np.zeros((4, 3)), np.zeros((4, 2))
    for name, value in (("epochs", 0), ("clip_norm", -1.0), ("batch_size", 0), ("shuffle", 1)):
        trainer = fb.Trainer(nets["mse"], fb.SGD(0.1), epochs=1, progress=False)
        setattr(trainer, name, value)
        with pytest.raises(BAD, match=named(name)):
            trainer.fit(X, y)
    trainer = fb.Trainer(nets["mse"], fb.SGD(0.1), epochs=1, clip_norm=1.0, progress=False)
    trainer.clip_norm = None  # off again: fine
    assert len(trainer.fit(X, y)) == 1


def test_durations_are_not_numbers(nets):
    # numpy counts timedelta64 among its numbers (np.number); datetime64 was refused already
    for key, Y in (("mse", np.zeros((2, 2))), ("ce", np.zeros(2, dtype=np.int64))):
        with pytest.raises(TypeError, match=named("X")):
            nets[key].forward(np.zeros((2, 3), "timedelta64[s]"))
        with pytest.raises(TypeError, match=named("Y")):
            nets[key].evaluate(np.zeros((2, 3)), Y.astype("timedelta64[s]"))


def test_empty_batch_backward(nets):
    for key, Y in (("mse", np.zeros((0, 2))), ("ce", np.zeros(0, dtype=np.int64))):
        with pytest.raises(BAD, match=named("X")):
            nets[key].backward(np.zeros((0, 3)), Y)


def test_state_unchanged_after_rejected_call(nets, X):
    net = nets["mse"]
    net.backward(X, np.zeros((5, 2)))
    params, grads = net.params.copy(), net.grads.copy()
    with pytest.raises(BAD):
        net.backward(np.where(X > 1, np.nan, X), np.zeros((5, 2)))
    np.testing.assert_array_equal(net.params, params)
    np.testing.assert_array_equal(net.grads, grads)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e300], ids=["nan", "inf", "beyond-float32"])
def test_setters_refuse_non_finite_values_and_change_nothing(nets, bad):
    net = nets["ce"]  # float32: 1e300 would become inf
    params, grads = net.params.copy(), net.grads.copy()
    flat = np.zeros(net.n_params)
    flat[7] = bad
    for setter in (net.set_params, net.set_grads):
        with pytest.raises(ValueError, match=named("flat")):
            setter(flat)
    ws = [np.zeros(w.shape) for w in net.weights]
    bs = [np.zeros(b.shape) for b in net.biases]
    bs[1][2] = bad
    with pytest.raises(ValueError, match=r"biases\[1\]"):
        net.set_weights(ws, bs)
    np.testing.assert_array_equal(net.params, params)
    np.testing.assert_array_equal(net.grads, grads)


# ----------------------------------------------------------------------------------------------
# optimizers and clipping
# ----------------------------------------------------------------------------------------------

ALL_OPTS = ["SGD", "Adam", "AdamW", "RMSProp", "AdaGrad", "LineSearchSGD"]


@pytest.mark.parametrize("name", ALL_OPTS)
@pytest.mark.parametrize("lr", [-0.1, float("nan"), "0.1"])
def test_bad_lr(fb, name, lr):
    with pytest.raises(BAD, match=named("lr")):
        getattr(fb, name)(lr=lr)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@pytest.mark.parametrize(
    "betas",
    [
        (1.0, 0.999),
        (0.9, 1.0),
        (-0.1, 0.9),
        (0.9, -0.5),
        (0.9, float("nan")),
        (0.9,),
        (0.9, 0.99, 0.9),
        0.9,
    ],
)
def test_bad_betas(fb, name, betas):
    with pytest.raises(BAD, match=named("betas")):
        getattr(fb, name)(lr=1e-3, betas=betas)


@pytest.mark.parametrize("name", ["SGD", "RMSProp"])
def test_negative_momentum(fb, name):
    with pytest.raises(BAD, match=named("momentum")):
        getattr(fb, name)(lr=0.1, momentum=-0.5)


def test_nesterov_needs_momentum_and_zero_dampening(fb):
    with pytest.raises(BAD, match=r"(?i)nesterov"):
        fb.SGD(lr=0.1, nesterov=True)
    with pytest.raises(BAD, match=r"(?i)nesterov"):
        fb.SGD(lr=0.1, momentum=0.9, dampening=0.5, nesterov=True)
    fb.SGD(lr=0.1, momentum=0.9, nesterov=True)  # valid


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSProp", "AdaGrad"])
def test_negative_weight_decay(fb, name):
    with pytest.raises(BAD, match=named("weight_decay")):
        getattr(fb, name)(lr=0.1, weight_decay=-1.0)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RMSProp", "AdaGrad"])
def test_negative_eps(fb, name):
    with pytest.raises(BAD, match=named("eps")):
        getattr(fb, name)(lr=0.1, eps=-1e-8)


def test_rmsprop_bad_alpha(fb):
    with pytest.raises(BAD, match=named("alpha")):
        fb.RMSProp(lr=0.01, alpha=-0.1)


def test_adagrad_negative_lr_decay(fb):
    with pytest.raises(BAD, match=named("lr_decay")):
        fb.AdaGrad(lr=0.01, lr_decay=-0.1)


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan")])
def test_clip_grad_norm_bad_max_norm(fb, nets, max_norm):
    net = nets["mse"]
    before = net.grads.copy()
    with pytest.raises(BAD, match=named("max_norm")):
        fb.clip_grad_norm(net, max_norm)
    np.testing.assert_array_equal(net.grads, before)


def test_line_search_bad_arguments(fb):
    with pytest.raises(BAD, match=named("c1")):
        fb.LineSearchSGD(c1=1.5)
    with pytest.raises(BAD, match=named("shrink")):
        fb.LineSearchSGD(shrink=1.0)
    with pytest.raises(BAD, match=named("shrink")):
        fb.LineSearchSGD(shrink=0.0)
    with pytest.raises(BAD, match=named("max_iter")):
        fb.LineSearchSGD(max_iter=0)


def test_line_search_step_validates_inputs(fb, nets, X):
    opt = fb.LineSearchSGD()
    with pytest.raises(BAD, match=named("X")):
        opt.step(nets["mse"], X[:, :2], np.zeros((5, 2)))
    with pytest.raises(BAD, match=named("Y")):
        opt.step(nets["mse"], X, np.zeros((4, 2)))


# ----------------------------------------------------------------------------------------------
# the interpreter survives the worst inputs
# ----------------------------------------------------------------------------------------------


def test_worst_inputs_never_crash_the_interpreter():
    script = textwrap.dedent("""
        import numpy as np
        import fastbp as fb
        outcomes = []
        def attempt(label, fn):
            try:
                fn()
                outcomes.append((label, "ok"))
            except (ValueError, TypeError, MemoryError, OverflowError) as e:
                outcomes.append((label, type(e).__name__))
        net = fb.MLP([3, 4, 2], loss="cross_entropy", seed=0)
        X = np.ones((5, 3))
        attempt("overflowing sizes", lambda: fb.MLP([10**10, 10**10]))
        attempt("huge layer", lambda: fb.MLP([2, 2**62]))
        attempt("2**63 size", lambda: fb.MLP([2, 2**63]))
        attempt("huge label", lambda: net.backward(X, np.array([2**40] * 5)))
        attempt("int64 min label", lambda: net.backward(X, np.full(5, np.iinfo(np.int64).min)))
        attempt("uint64 max label", lambda: net.backward(X, np.full(5, 2**64 - 1, np.uint64)))
        attempt("wrong features", lambda: net.forward(np.ones((5, 1000))))
        attempt("zero features", lambda: net.forward(np.ones((5, 0))))
        attempt("empty", lambda: net.backward(np.ones((0, 3)), np.zeros(0, np.int64)))
        attempt("none X", lambda: net.forward(None))
        attempt("list X", lambda: net.forward([[1.0, 2.0, 3.0]]))
        attempt("ragged", lambda: net.forward([[1.0, 2.0], [3.0]]))
        attempt("nan", lambda: net.backward(np.full((5, 3), np.nan), np.zeros(5, np.int64)))
        attempt("clip inf", lambda: fb.clip_grad_norm(net, float("inf")))
        attempt("threads 0", lambda: fb.set_num_threads(0))
        attempt("threads -1", lambda: fb.set_num_threads(-1))
        attempt("threads huge", lambda: fb.set_num_threads(2**40))
        fb.set_num_threads(1)
        # views outlive their network: they must keep the memory alive
        n2 = fb.MLP([50, 60, 7], seed=1)
        w, g, p = n2.weights[0], n2.grad_weights[1], n2.params
        expected = w.copy()
        n2.backward(np.ones((3, 50)), np.zeros((3, 7)))
        gexp = g.copy()
        del n2
        import gc; gc.collect()
        junk = [np.full(10**5, 7.0) for _ in range(50)]
        assert np.array_equal(w, expected), "weight view lost its memory"
        assert np.array_equal(g, gexp), "grad view lost its memory"
        w[...] = 1.0
        p[...] = 2.0
        # a copy outlives its original
        n3 = fb.MLP([5, 6, 2], seed=2)
        c = n3.copy()
        del n3
        gc.collect()
        c.backward(np.ones((2, 5)), np.zeros((2, 2)))
        print("SURVIVED", outcomes)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout={proc.stdout}\nstderr={proc.stderr}"
    assert "SURVIVED" in proc.stdout, proc.stderr
    # inputs that must be rejected rather than half-accepted
    for label in (
        "overflowing sizes",
        "huge label",
        "wrong features",
        "empty",
        "nan",
        "zero features",
        "none X",
        "ragged",
        "int64 min label",
        "uint64 max label",
    ):
        assert f"('{label}', 'ok')" not in proc.stdout, label


def test_lr_setter_validates(fb):
    opt = fb.SGD(lr=0.1)
    with pytest.raises(BAD, match=named("lr")):
        opt.lr = -1.0
    with pytest.raises(BAD, match=named("lr")):
        opt.lr = float("nan")
    assert opt.lr == 0.1
    opt.lr = 0.05
    assert opt.lr == 0.05


def test_other_bad_arguments(fb, nets):
    with pytest.raises(BAD, match=named("value")):
        fb.clip_grad_value(nets["mse"], -1.0)
    with pytest.raises(BAD, match=named("eta")):
        fb.GradientNoise(eta=-1.0)
    with pytest.raises(BAD, match=named("eta")):
        fb.GradientNoise(eta=float("nan"))
    with pytest.raises(BAD, match=named("seed")):
        fb.MLP([3, 2], seed="a")
    with pytest.raises(BAD):
        fb.set_num_threads(0)


def test_more_bad_arguments_are_named(fb):
    net = fb.MLP([3, 2], seed=0)
    with pytest.raises(BAD, match=named("seed")):
        fb.Trainer(net, fb.SGD(0.1), seed=2**64)
    with pytest.raises(BAD, match=named("batch_size")):
        fb.Trainer(net, fb.SGD(0.1), batch_size=2**40)
    with pytest.raises(BAD, match=named("max_norm")):
        fb.clip_grad_norm(net, 2**2000)
    with pytest.raises(TypeError, match="base class"):
        fb.Optimizer(0.1)
    noise = fb.GradientNoise()
    with pytest.raises(BAD, match=named("t")):
        noise.t = -1
    with pytest.raises(BAD, match=named("t")):  # the core's counters would overflow
        noise.t = 2**63
    trainer = fb.Trainer(net, fb.SGD(0.1), epochs=2, progress=False)
    X, y = np.zeros((4, 3)), np.zeros((4, 2))
    with pytest.raises(ValueError, match=named("initial_epoch")):  # was pybind11's TypeError
        trainer.fit(X, y, initial_epoch=2**63 - 1)  # after its first epoch
    assert len(trainer.fit(X, y, initial_epoch=fb._core.MAX_STEPS - 2)) == 2
    with pytest.raises(TypeError, match=named("init")):
        fb.MLP([3, 2], init=5)
    with pytest.raises(TypeError, match=named("history")):
        fb.diagnose(None)


# --- sizes beyond what the core can index, or memory can hold ---------------------------------
# BLAS (scipy-openblas32) takes 32-bit int dimensions, and the products' blocking rounds them up
# by less than 2**16: a layer or a batch beyond 2**31 - 2**16 is refused by name.
# MLP([2**31 - 1, 1]) used to overflow an int in the core's constructor (sizes_[l] + 1), and
# sizes >= 2**31 gave pybind11's "incompatible constructor arguments".


@pytest.mark.parametrize("size", [2**31 - 2**16 + 1, 2**31 - 1, 2**31, 2**40, 2**70])
def test_a_layer_beyond_32_bits_is_refused_by_name(fb, size):
    # 2**31 - 1 wide would overflow the blocking's N + NR - 1 and jc += NC in int
    with pytest.raises(
        ValueError, match=r"at most 2\*\*31 - 2\*\*16 = 2147418112.*got " + str(size)
    ):
        fb.MLP([4, size, 2])


def test_the_core_checks_sizes_itself(fb):
    from fastbp import _core

    with pytest.raises(ValueError, match=r"\[1, 2\*\*31 - 2\*\*16\].*got 2147418113"):
        _core.Network32([2**31 - 2**16 + 1, 1], [], "identity", "mse")
    # (MAX_DIM + 1) * MAX_DIM weights and more: the count is checked, nothing allocated
    with pytest.raises(ValueError, match="more parameters than one buffer can hold"):
        _core.Network32([_core.MAX_DIM, _core.MAX_DIM, 1], ["relu"], "identity", "mse")


def test_a_network_that_does_not_fit_in_memory_is_refused_before_allocating(fb, monkeypatch):
    import fastbp.validation

    monkeypatch.setattr(fastbp.validation, "available_memory", lambda: 2**30)
    with pytest.raises(MemoryError, match=r"2147418113 parameters need 32 GiB.*1 GiB"):
        fb.MLP([2**31 - 2**16, 1])  # ~2**31 parameters: float32 buffers, float64 draw
    fb.MLP([1000, 1000])  # 1 million parameters fit in 1 GiB


def test_available_memory_is_known_here(fb):
    from fastbp.validation import available_memory

    available = available_memory()
    assert available is None or 0 < available < 2**50


def test_a_batch_beyond_32_bits_is_refused_before_copying(fb):
    net = fb.MLP([2, 1])
    huge = np.broadcast_to(np.zeros((1, 2), np.float32), (2**31 - 2**16 + 1, 2))  # no memory
    with pytest.raises(ValueError, match=named("X") + r" has 2147418113 rows.*2\*\*31 - 2\*\*16"):
        net.backward(huge, np.zeros((0, 1)))
    with pytest.raises(ValueError, match=named("X") + r" has 2147418113 rows"):
        fb.LineSearchSGD().step(net, huge, np.zeros(1))


def test_line_search_max_iter_fits_the_core(fb):
    fb.LineSearchSGD(max_iter=2**31 - 1)
    with pytest.raises(ValueError, match=named("max_iter")):
        fb.LineSearchSGD(max_iter=2**31)


def test_a_gpu_network_needs_one_host_copy_of_its_parameters_not_two(monkeypatch):
    import fastbp.validation
    from fastbp.validation import check_network_memory

    n = 1000 * 1001  # parameters of [1000, 1000]
    # room for the float64 draw and one float32 copy (12 bytes each), not for two (16)
    monkeypatch.setattr(fastbp.validation, "available_memory", lambda: 14 * n)
    check_network_memory([1000, 1000], np.dtype("float32"), on_host=False)
    with pytest.raises(MemoryError, match="1001000 parameters need"):
        check_network_memory([1000, 1000], np.dtype("float32"))
