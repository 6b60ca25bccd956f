"""fb.MLP: forward, backward, gradients, dtypes, init, views, determinism.

The reference (tests/reference.py) is a float64 NumPy implementation written from the contract;
it is itself checked against torch autograd (when torch is installed) and finite differences.
"""

import math

import numpy as np
import pytest
import reference as ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ACTS = ref.ACTIVATIONS
LOSSES = ref.LOSSES


def test_reference_covers_every_activation_and_loss_of_the_core(fb):
    """ACTS and LOSSES parametrize the tests below: an activation or a loss the core gains
    must gain a float64 reference too, or it would go untested."""
    table = fb._core.activation_table()
    assert {a["name"] for a in table if a["hidden"]} == set(ACTS)
    assert set(fb._core.loss_names()) == set(LOSSES)
    z = np.linspace(-3.0, 3.0, 12).reshape(2, 6)
    for entry in table:  # output-only ones (softmax) have a reference forward too
        assert np.isfinite(ref.activation(entry["name"], z)).all(), entry["name"]
    assert set(ref.DEFAULT_OUTPUT) == set(LOSSES)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def make_targets(rng, n, n_out, loss, kind="default"):
    if loss == "cross_entropy":
        if kind == "rows":
            P = rng.uniform(0.05, 1.0, size=(n, n_out))
            return P / P.sum(axis=1, keepdims=True)
        return rng.integers(0, n_out, size=n).astype(np.int64)
    if loss == "binary_cross_entropy":
        if kind == "hard":
            return rng.integers(0, 2, size=(n, n_out)).astype(np.float64)
        return rng.uniform(0.0, 1.0, size=(n, n_out))
    return rng.normal(size=(n, n_out))


def smooth_point(sizes, hidden, out_act, rng, n=6, margin=1e-2):
    """Draw (X, params) whose pre-activations keep `margin` away from the kinks at 0."""
    acts = list(hidden) if not isinstance(hidden, str) else [hidden] * (len(sizes) - 2)
    acts = acts + [out_act]
    for _ in range(200):
        X = rng.normal(size=(n, sizes[0]))
        Ws, bs = ref.random_params(sizes, rng)
        zs, _ = ref.mlp_forward(X, Ws, bs, acts[:-1], out_act)
        if all(name not in ref.KINKED or np.min(np.abs(z)) > margin for z, name in zip(zs, acts)):
            return X, Ws, bs
    raise AssertionError("could not find a smooth point")  # pragma: no cover


def build(
    fb,
    sizes,
    activation="tanh",
    loss="mse",
    output_activation=None,
    dtype="float64",
    seed=0,
    params=None,
    init="auto",
):
    net = fb.MLP(
        sizes,
        activation=activation,
        loss=loss,
        output_activation=output_activation,
        init=init,
        dtype=dtype,
        seed=seed,
    )
    if params is not None:
        ref.load_params(net, *params)
    return net


def rel_err(a, b):
    a = np.ravel(np.asarray(a, np.float64))
    b = np.ravel(np.asarray(b, np.float64))
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-30)


def finite_difference(net, X, Y, eps=1e-6):
    """Central differences of net.backward's returned loss w.r.t. every weight and bias entry."""
    gW, gb = [], []
    for arrays, out in ((net.weights, gW), (net.biases, gb)):
        for view in arrays:
            g = np.empty(view.shape)
            for idx in np.ndindex(view.shape):
                old = view[idx]
                view[idx] = old + eps
                lp = net.backward(X, Y)
                view[idx] = old - eps
                lm = net.backward(X, Y)
                view[idx] = old
                g[idx] = (lp - lm) / (2 * eps)
            out.append(g)
    return gW, gb


# (hidden activation, loss, output activation) combinations
COMBOS = (
    [(h, loss, None) for h in ACTS for loss in LOSSES]
    + [("tanh", "mse", o) for o in ACTS if o != "identity"]
    + [("relu", "mse", o) for o in ("sigmoid", "softplus", "gelu")]
)


def combo_id(c):
    return f"{c[0]}-{c[1]}-{c[2] or 'default'}"


# ----------------------------------------------------------------------------------------------
# the reference itself, against torch autograd (no fastbp needed)
# ----------------------------------------------------------------------------------------------

TORCH_ACT = {
    "identity": lambda t, F: t,
    "sigmoid": lambda t, F: t.sigmoid(),
    "tanh": lambda t, F: t.tanh(),
    "relu": lambda t, F: F.relu(t),
    "leaky_relu": lambda t, F: F.leaky_relu(t, 0.01),
    "elu": lambda t, F: F.elu(t, 1.0),
    "softplus": lambda t, F: F.softplus(t, threshold=1000.0),  # torch: linear past 20
    "gelu": lambda t, F: F.gelu(t, approximate="none"),
    "silu": lambda t, F: F.silu(t),
}


@pytest.mark.parametrize("name", ACTS)
def test_reference_activation_matches_torch(name):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    x = np.concatenate([np.linspace(-30, -0.01, 101), np.linspace(0.01, 30, 101)])
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = TORCH_ACT[name](t, F)
    (d,) = torch.autograd.grad(y.sum(), t)
    np.testing.assert_allclose(ref.activation(name, x), y.detach().numpy(), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(
        ref.activation_derivative(name, x), d.numpy(), rtol=1e-12, atol=1e-15
    )


def test_reference_relu_derivative_at_zero_is_zero():
    assert ref.activation_derivative("relu", np.array([0.0]))[0] == 0.0


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_reference_backprop_matches_torch_autograd(combo):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    hidden, loss, out = combo
    out_act = out or ref.DEFAULT_OUTPUT[loss]
    rng = np.random.default_rng(7)
    sizes = [3, 5, 4, 3]
    X, Ws, bs = smooth_point(sizes, hidden, out_act, rng)
    Y = make_targets(rng, X.shape[0], sizes[-1], loss)
    value, gW, gb = ref.mlp_loss_and_grads(X, Y, Ws, bs, hidden, loss, out)

    tW = [torch.tensor(W, requires_grad=True) for W in Ws]
    tb = [torch.tensor(b, requires_grad=True) for b in bs]
    a = torch.tensor(X)
    for li in range(len(Ws)):
        z = a @ tW[li] + tb[li]
        a = TORCH_ACT[hidden](z, F) if li < len(Ws) - 1 else z
    n = X.shape[0]
    if loss == "mse":
        o = TORCH_ACT[out_act](a, F)
        L = 0.5 * ((o - torch.tensor(Y)) ** 2).sum() / n
    elif loss == "cross_entropy":
        L = F.cross_entropy(a, torch.tensor(Y))
    else:
        L = F.binary_cross_entropy_with_logits(a, torch.tensor(Y), reduction="sum") / n
    L.backward()
    assert value == pytest.approx(L.item(), rel=1e-12)
    for li in range(len(Ws)):
        np.testing.assert_allclose(gW[li], tW[li].grad.numpy(), rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(gb[li], tb[li].grad.numpy(), rtol=1e-10, atol=1e-14)


# ----------------------------------------------------------------------------------------------
# gradients: finite differences and the reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_gradient_check_finite_differences(fb, combo):
    hidden, loss, out = combo
    out_act = out or ref.DEFAULT_OUTPUT[loss]
    rng = np.random.default_rng(11)
    sizes = [3, 4, 3]
    X, Ws, bs = smooth_point(sizes, hidden, out_act, rng)
    Y = make_targets(rng, X.shape[0], sizes[-1], loss)
    net = build(fb, sizes, hidden, loss, out, params=(Ws, bs))
    net.backward(X, Y)
    gW, gb = ref.get_grads(net)
    fW, fb_ = finite_difference(net, X, Y)
    err = rel_err(ref.flatten(gW + gb), ref.flatten(fW + fb_))
    assert err < 1e-6, f"relative error {err:.3e} for {combo_id(combo)}"


@pytest.mark.parametrize("loss,kind", [("cross_entropy", "rows"), ("binary_cross_entropy", "hard")])
def test_gradient_check_other_target_kinds(fb, loss, kind):
    rng = np.random.default_rng(5)
    sizes = [4, 5, 3]
    X, Ws, bs = smooth_point(sizes, "gelu", ref.DEFAULT_OUTPUT[loss], rng)
    Y = make_targets(rng, X.shape[0], sizes[-1], loss, kind)
    net = build(fb, sizes, "gelu", loss, params=(Ws, bs))
    net.backward(X, Y)
    gW, gb = ref.get_grads(net)
    fW, fb_ = finite_difference(net, X, Y)
    assert rel_err(ref.flatten(gW + gb), ref.flatten(fW + fb_)) < 1e-6


def test_gradient_check_deep_mixed_activations(fb):
    rng = np.random.default_rng(3)
    sizes = [3, 4, 4, 4, 4, 2]
    hidden = ["tanh", "gelu", "silu", "softplus"]
    X, Ws, bs = smooth_point(sizes, hidden, "softmax", rng)
    Y = make_targets(rng, X.shape[0], sizes[-1], "cross_entropy")
    net = build(fb, sizes, hidden, "cross_entropy", params=(Ws, bs))
    assert list(net.activations) == hidden
    net.backward(X, Y)
    gW, gb = ref.get_grads(net)
    fW, fb_ = finite_difference(net, X, Y)
    assert rel_err(ref.flatten(gW + gb), ref.flatten(fW + fb_)) < 1e-6


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_backward_matches_reference(fb, combo):
    hidden, loss, out = combo
    out_act = out or ref.DEFAULT_OUTPUT[loss]
    rng = np.random.default_rng(21)
    sizes = [5, 7, 6, 4]
    X, Ws, bs = smooth_point(sizes, hidden, out_act, rng, n=9)
    Y = make_targets(rng, X.shape[0], sizes[-1], loss)
    net = build(fb, sizes, hidden, loss, out, params=(Ws, bs))
    value = net.backward(X, Y)
    rv, rW, rb = ref.mlp_loss_and_grads(X, Y, Ws, bs, hidden, loss, out)
    assert isinstance(value, float)
    assert value == pytest.approx(rv, rel=1e-12, abs=1e-15)
    gW, gb = ref.get_grads(net)
    for li in range(len(Ws)):
        np.testing.assert_allclose(gW[li], rW[li], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(gb[li], rb[li], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("hidden", ACTS)
def test_backward_matches_reference_large_odd_shapes(fb, hidden, dtype):
    """Sizes that are not multiples of any SIMD width or block size, batch > thread chunk."""
    rng = np.random.default_rng(31)
    sizes = [37, 129, 65, 11]
    Ws, bs = ref.random_params(sizes, rng)
    X = rng.normal(size=(257, 37))
    for loss in LOSSES:
        Y = make_targets(rng, 257, 11, loss)
        net = build(fb, sizes, hidden, loss, dtype=dtype, params=(Ws, bs))
        value = net.backward(X, Y)
        rv, rW, rb = ref.mlp_loss_and_grads(X, Y, Ws, bs, hidden, loss)
        got = ref.flatten(net.grad_weights + net.grad_biases)
        want = ref.flatten(rW + rb)
        if dtype == "float64":
            assert value == pytest.approx(rv, rel=1e-11)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
            np.testing.assert_allclose(
                net.forward(X),
                ref.mlp_output(X, Ws, bs, hidden, ref.DEFAULT_OUTPUT[loss]),
                rtol=1e-11,
                atol=1e-13,
            )
        else:
            assert value == pytest.approx(rv, rel=1e-4)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_backward_single_layer_no_hidden(fb):
    rng = np.random.default_rng(0)
    Ws, bs = ref.random_params([6, 3], rng)
    X = rng.normal(size=(10, 6))
    Y = rng.integers(0, 3, size=10)
    net = build(fb, [6, 3], loss="cross_entropy", params=(Ws, bs))
    assert net.n_layers == 1
    value = net.backward(X, Y)
    rv, rW, rb = ref.mlp_loss_and_grads(X, Y, Ws, bs, [], "cross_entropy")
    assert value == pytest.approx(rv, rel=1e-12)
    np.testing.assert_allclose(net.grad_weights[0], rW[0], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(net.grad_biases[0], rb[0], rtol=1e-10, atol=1e-14)


def test_leaky_relu_and_relu_slopes_match_reference_on_negative_inputs(fb):
    """The kinked activations against the analytic reference, with many negative inputs."""
    rng = np.random.default_rng(8)
    sizes = [4, 16, 2]
    for act in ("relu", "leaky_relu", "elu"):
        Ws, bs = ref.random_params(sizes, rng)
        bs[0] -= 1.0  # push most hidden units negative
        X = rng.normal(size=(12, 4))
        Y = rng.normal(size=(12, 2))
        net = build(fb, sizes, act, "mse", params=(Ws, bs))
        net.backward(X, Y)
        rv, rW, rb = ref.mlp_loss_and_grads(X, Y, Ws, bs, act, "mse")
        np.testing.assert_allclose(net.grad_weights[0], rW[0], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(net.grad_biases[0], rb[0], rtol=1e-10, atol=1e-14)


def test_relu_derivative_is_zero_at_exactly_zero(fb):
    # hidden pre-activation exactly 0: relu'(0) = 0, so no gradient flows to the first layer
    net = build(fb, [1, 1, 1], "relu", "mse")
    net.weights[0][...] = 1.0
    net.biases[0][...] = 0.0
    net.weights[1][...] = 1.0
    net.biases[1][...] = 0.5
    net.backward(np.zeros((1, 1)), np.zeros((1, 1)))
    assert net.grad_biases[0][0] == 0.0
    assert net.grad_biases[1][0] == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# forward, loss, predict
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_forward_matches_reference(fb, combo):
    hidden, loss, out = combo
    out_act = out or ref.DEFAULT_OUTPUT[loss]
    rng = np.random.default_rng(4)
    sizes = [5, 8, 3]
    Ws, bs = ref.random_params(sizes, rng, scale=2.0)
    X = rng.normal(size=(7, 5)) * 2
    net = build(fb, sizes, hidden, loss, out, params=(Ws, bs))
    assert net.output_activation == out_act
    out_ = net.forward(X)
    assert out_.shape == (7, 3)
    assert out_.dtype == np.float64
    np.testing.assert_allclose(
        out_, ref.mlp_output(X, Ws, bs, hidden, out_act), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("loss", LOSSES)
def test_compute_loss_equals_backward_loss_and_leaves_grads(fb, loss):
    rng = np.random.default_rng(9)
    sizes = [4, 6, 3]
    Ws, bs = ref.random_params(sizes, rng)
    X = rng.normal(size=(11, 4))
    Y = make_targets(rng, 11, 3, loss)
    net = build(fb, sizes, "silu", loss, params=(Ws, bs))
    net.grads[...] = 7.0
    value = net.compute_loss(X, Y)
    assert np.all(net.grads == 7.0), "compute_loss must not touch the gradients"
    assert value == pytest.approx(net.backward(X, Y), rel=1e-13)
    assert value == pytest.approx(ref.mlp_loss(X, Y, Ws, bs, "silu", loss), rel=1e-12)


def test_predict(fb):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 4))
    ce = build(fb, [4, 5, 3], loss="cross_entropy", seed=1)
    p = ce.predict(X)
    assert p.dtype == np.int64 and p.shape == (20,)
    np.testing.assert_array_equal(p, np.argmax(ce.forward(X), axis=1))
    bce = build(fb, [4, 5, 2], loss="binary_cross_entropy", seed=1)
    q = bce.predict(X)
    assert np.issubdtype(q.dtype, np.integer) and q.shape == (20, 2)
    np.testing.assert_array_equal(q, (bce.forward(X) > 0.5).astype(q.dtype))
    mse = build(fb, [4, 5, 2], loss="mse", seed=1)
    np.testing.assert_array_equal(mse.predict(X), mse.forward(X))


def test_mse_accepts_1d_targets_when_single_output(fb):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 3))
    y = rng.normal(size=8)
    net = build(fb, [3, 4, 1], loss="mse", seed=0)
    a = net.backward(X, y)
    g1 = net.grads.copy()
    b = net.backward(X, y.reshape(-1, 1))
    assert a == b
    np.testing.assert_array_equal(g1, net.grads)


def test_softmax_outputs_are_probabilities(fb):
    rng = np.random.default_rng(1)
    net = build(fb, [3, 6, 5], "relu", "cross_entropy", seed=3)
    P = net.forward(rng.normal(size=(10, 3)) * 10)
    assert np.all(P >= 0) and np.all(P <= 1)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_property_forward_backward_random_shapes(fb, data):
    depth = data.draw(st.integers(1, 4), label="weight layers")
    sizes = data.draw(
        st.lists(st.integers(1, 7), min_size=depth + 1, max_size=depth + 1), label="layer sizes"
    )
    loss = data.draw(st.sampled_from(LOSSES), label="loss")
    if loss == "cross_entropy" and sizes[-1] < 2:
        sizes[-1] = 2
    hidden = data.draw(
        st.lists(
            st.sampled_from(["tanh", "sigmoid", "softplus", "gelu", "silu", "identity"]),
            min_size=depth - 1,
            max_size=depth - 1,
        ),
        label="activations",
    )
    n = data.draw(st.integers(1, 9), label="batch")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    rng = np.random.default_rng(seed)
    Ws, bs = ref.random_params(sizes, rng)
    X = rng.normal(size=(n, sizes[0]))
    Y = make_targets(rng, n, sizes[-1], loss)
    net = build(fb, sizes, hidden if depth > 1 else "tanh", loss, params=(Ws, bs))
    out_act = ref.DEFAULT_OUTPUT[loss]
    np.testing.assert_allclose(
        net.forward(X), ref.mlp_output(X, Ws, bs, hidden, out_act), rtol=1e-11, atol=1e-13
    )
    value = net.backward(X, Y)
    rv, rW, rb = ref.mlp_loss_and_grads(X, Y, Ws, bs, hidden, loss)
    assert value == pytest.approx(rv, rel=1e-11, abs=1e-14)
    np.testing.assert_allclose(
        ref.flatten(net.grad_weights + net.grad_biases), ref.flatten(rW + rb), rtol=1e-9, atol=1e-13
    )


# ----------------------------------------------------------------------------------------------
# float32 vs float64, input dtypes and layouts
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hidden,loss",
    [
        ("tanh", "cross_entropy"),
        ("relu", "mse"),
        ("gelu", "binary_cross_entropy"),
        ("elu", "mse"),
        ("silu", "cross_entropy"),
    ],
)
def test_float32_agrees_with_float64(fb, hidden, loss):
    rng = np.random.default_rng(13)
    sizes = [6, 10, 8, 3]
    X, Ws, bs = smooth_point(sizes, hidden, ref.DEFAULT_OUTPUT[loss], rng, n=16, margin=1e-2)
    Y = make_targets(rng, 16, 3, loss)
    n64 = build(fb, sizes, hidden, loss, dtype="float64", params=(Ws, bs))
    n32 = build(fb, sizes, hidden, loss, dtype="float32", params=(Ws, bs))
    assert n32.dtype == np.float32 and n64.dtype == np.float64
    assert n32.params.dtype == np.float32 and n32.grads.dtype == np.float32
    o32 = n32.forward(X)
    assert o32.dtype == np.float32
    np.testing.assert_allclose(o32, n64.forward(X), rtol=1e-4, atol=1e-5)
    l32, l64 = n32.backward(X, Y), n64.backward(X, Y)
    assert l32 == pytest.approx(l64, rel=1e-4)
    g32 = ref.flatten(n32.grad_weights + n32.grad_biases)
    g64 = ref.flatten(n64.grad_weights + n64.grad_biases)
    np.testing.assert_allclose(g32, g64, rtol=1e-4, atol=1e-4 * np.abs(g64).max())


def test_default_dtype_is_float32(fb):
    net = fb.MLP([3, 4, 2])
    assert net.dtype == np.float32
    assert all(w.dtype == np.float32 for w in net.weights)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_noncontiguous_and_fortran_inputs(fb, dtype):
    rng = np.random.default_rng(17)
    net = build(fb, [5, 6, 3], "tanh", "cross_entropy", dtype=dtype, seed=2)
    base = rng.normal(size=(12, 10)).astype(dtype)
    Xc = np.ascontiguousarray(base[:, ::2])
    y = rng.integers(0, 3, size=24)
    variants = {
        "strided": base[:, ::2],
        "fortran": np.asfortranarray(Xc),
        "transposed": np.ascontiguousarray(Xc.T).T,
        "reversed_rows": np.ascontiguousarray(Xc[::-1])[::-1],
    }
    ref_out = net.forward(Xc)
    ref_loss = net.backward(Xc, y[::2])
    ref_grads = net.grads.copy()
    for name, X in variants.items():
        assert not X.flags.c_contiguous, name
        np.testing.assert_array_equal(net.forward(X), ref_out, err_msg=name)
        assert net.backward(X, y[::2]) == ref_loss, name
        np.testing.assert_array_equal(net.grads, ref_grads, err_msg=name)
    # strided labels / targets too
    assert net.backward(Xc, y[::2].copy()) == net.backward(Xc, y[::2])


def test_float64_input_on_float32_network_and_vice_versa(fb):
    rng = np.random.default_rng(3)
    X64 = rng.normal(size=(9, 4))
    y = rng.integers(0, 2, size=9)
    n32 = build(fb, [4, 5, 2], "relu", "cross_entropy", dtype="float32", seed=1)
    np.testing.assert_array_equal(n32.forward(X64), n32.forward(X64.astype(np.float32)))
    assert n32.backward(X64, y) == n32.backward(X64.astype(np.float32), y)
    n64 = build(fb, [4, 5, 2], "relu", "cross_entropy", dtype="float64", seed=1)
    X32 = X64.astype(np.float32)
    np.testing.assert_array_equal(n64.forward(X32), n64.forward(X32.astype(np.float64)))


# ----------------------------------------------------------------------------------------------
# numerical stability and target forms
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_extreme_logits_are_finite(fb, dtype):
    net = build(fb, [2, 3], loss="cross_entropy", dtype=dtype)
    net.weights[0][...] = [[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]]
    net.biases[0][...] = 0.0
    X = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    y = np.array([1, 0, 0])  # worst, best, worst case labels
    P = net.forward(X)
    assert np.all(np.isfinite(P))
    value = net.backward(X, y)
    assert math.isfinite(value)
    # -log softmax(z)_y = logsumexp(z) - z_y: samples 0 and 2 -> 2e4, sample 1 -> ~0
    assert value == pytest.approx((2e4 + 0.0 + 2e4) / 3, rel=1e-6)
    assert np.all(np.isfinite(net.grads))
    Z = X @ np.array(net.weights[0], np.float64)
    expected = ref.loss_grad_logits("cross_entropy", Z, y)
    np.testing.assert_allclose(net.grad_biases[0], expected.sum(axis=0), atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_cross_entropy_extreme_logits_are_finite(fb, dtype):
    net = build(fb, [1, 2], loss="binary_cross_entropy", dtype=dtype)
    net.weights[0][...] = [[1e4, -1e4]]
    net.biases[0][...] = 0.0
    X = np.array([[1.0], [1.0]])
    Y = np.array(
        [
            [0.0, 1.0],  # both wrong: loss 1e4 each
            [1.0, 0.0],
        ]
    )  # both right: loss ~0
    out = net.forward(X)
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))
    value = net.backward(X, Y)
    assert math.isfinite(value)
    assert value == pytest.approx((2e4 + 0.0) / 2, rel=1e-6)
    assert np.all(np.isfinite(net.grads))
    # d/dz = (sigmoid(z) - y) / n: +-1/2 for the wrong sample, 0 for the right one
    np.testing.assert_allclose(net.grad_biases[0], [0.5, -0.5], atol=1e-6)


def test_mse_large_values_finite(fb):
    net = build(fb, [2, 3, 1], "tanh", "mse", output_activation="sigmoid")
    net.weights[0][...] = 1e3
    net.weights[1][...] = 1e3
    X = np.array([[5.0, 5.0], [-5.0, -5.0]])
    value = net.backward(X, np.array([0.0, 1.0]))
    assert math.isfinite(value) and np.all(np.isfinite(net.grads))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_probability_rows_equal_int_labels_for_one_hot(fb, dtype):
    rng = np.random.default_rng(6)
    net = build(fb, [4, 6, 5], "tanh", "cross_entropy", dtype=dtype, seed=4)
    X = rng.normal(size=(13, 4))
    y = rng.integers(0, 5, size=13)
    a = net.backward(X, y)
    ga = net.grads.copy()
    b = net.backward(X, ref.one_hot(y, 5))
    assert a == pytest.approx(b, rel=1e-6 if dtype == "float32" else 1e-14)
    np.testing.assert_allclose(
        net.grads,
        ga,
        rtol=1e-5 if dtype == "float32" else 1e-13,
        atol=1e-7 if dtype == "float32" else 1e-16,
    )
    assert net.compute_loss(X, ref.one_hot(y, 5).astype(np.float32)) == pytest.approx(a, rel=1e-5)


def test_integer_labels_accept_other_integer_dtypes(fb):
    rng = np.random.default_rng(6)
    net = build(fb, [4, 5, 3], "tanh", "cross_entropy", seed=4)
    X = rng.normal(size=(7, 4))
    y = rng.integers(0, 3, size=7)
    a = net.backward(X, y)
    assert net.backward(X, y.astype(np.int32)) == a
    assert net.backward(X, y.astype(np.uint8)) == a


# ----------------------------------------------------------------------------------------------
# initialisation
# ----------------------------------------------------------------------------------------------


def _first_weights(fb, init, sizes=(300, 500), activation="tanh"):
    net = fb.MLP(list(sizes), activation=activation, init=init, dtype="float64", seed=123)
    return net, np.array(net.weights[0])


@pytest.mark.parametrize("sizes", [(300, 500), (600, 200)])
@pytest.mark.parametrize("scheme", ["xavier_uniform", "he_uniform"])
def test_uniform_init_limits(fb, scheme, sizes):
    net, W = _first_weights(fb, scheme, sizes)
    fan_in, fan_out = sizes
    limit = (
        math.sqrt(6.0 / (fan_in + fan_out))
        if scheme == "xavier_uniform"
        else math.sqrt(6.0 / fan_in)
    )
    assert np.abs(W).max() <= limit
    assert np.abs(W).max() > 0.99 * limit
    assert W.std() == pytest.approx(limit / math.sqrt(3.0), rel=0.02)
    assert abs(W.mean()) < 5 * W.std() / math.sqrt(W.size)
    assert all(np.all(b == 0) for b in net.biases)


@pytest.mark.parametrize("sizes", [(300, 500), (600, 200)])
@pytest.mark.parametrize("scheme", ["xavier_normal", "he_normal", "lecun_normal"])
def test_normal_init_std(fb, scheme, sizes):
    net, W = _first_weights(fb, scheme, sizes)
    fan_in, fan_out = sizes
    std = {
        "xavier_normal": math.sqrt(2.0 / (fan_in + fan_out)),
        "he_normal": math.sqrt(2.0 / fan_in),
        "lecun_normal": math.sqrt(1.0 / fan_in),
    }[scheme]
    assert W.std() == pytest.approx(std, rel=0.02)
    assert abs(W.mean()) < 5 * std / math.sqrt(W.size)


def test_orthogonal_init(fb):
    _, W = _first_weights(fb, "orthogonal", (64, 64))
    np.testing.assert_allclose(W.T @ W, np.eye(64), atol=1e-10)
    _, W = _first_weights(fb, "orthogonal", (80, 30))  # tall: orthonormal columns
    np.testing.assert_allclose(W.T @ W, np.eye(30), atol=1e-10)
    _, W = _first_weights(fb, "orthogonal", (30, 80))  # wide: orthonormal rows
    np.testing.assert_allclose(W @ W.T, np.eye(30), atol=1e-10)
    net = fb.MLP([20, 20, 20], activation="tanh", init="orthogonal", dtype="float32", seed=1)
    for w in net.weights:
        np.testing.assert_allclose(w.T.astype(np.float64) @ w, np.eye(20), atol=1e-5)


def test_explicit_normal_and_uniform_init(fb):
    _, W = _first_weights(fb, ("normal", 0.05), (300, 400))
    assert W.std() == pytest.approx(0.05, rel=0.02)
    assert abs(W.mean()) < 5 * 0.05 / math.sqrt(W.size)
    _, W = _first_weights(fb, ("uniform", 0.3), (300, 400))
    assert np.abs(W).max() <= 0.3 and np.abs(W).max() > 0.299
    assert W.std() == pytest.approx(0.3 / math.sqrt(3.0), rel=0.02)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", ["normal", "uniform"])
def test_init_scales_that_would_overflow_are_rejected(fb, kind, dtype):
    # ("normal", 1e39) used to give float32 networks infinite weights without a word.
    huge = {"float32": 1e39, "float64": 1e308}[dtype]
    with pytest.raises(ValueError, match=r"init\[1\].*overflow"):
        fb.MLP([3, 2], init=(kind, huge), dtype=dtype)
    largest = float(np.finfo(dtype).max) / (16.0 if kind == "normal" else 2.0)
    with pytest.raises(ValueError, match="init"):
        fb.MLP([3, 2], init=(kind, largest * 1.01), dtype=dtype)
    net = fb.MLP([300, 200, 2], init=(kind, largest), dtype=dtype, seed=0)  # the largest allowed
    assert np.isfinite(net.params).all()
    assert np.abs(net.weights[0]).max() > largest / 100  # really drawn at that scale


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "init",
    [
        "auto",
        "xavier_uniform",
        "xavier_normal",
        "he_uniform",
        "he_normal",
        "lecun_normal",
        "orthogonal",
        ("normal", 1e30),
        ("uniform", 1e30),
    ],
    ids=str,
)
def test_every_init_scheme_gives_finite_weights(fb, init, dtype):
    for sizes in ([1, 1], [1, 700, 1], [513, 3, 129]):
        net = fb.MLP(sizes, activation="relu", init=init, dtype=dtype, seed=1)
        assert np.isfinite(net.params).all(), sizes
        assert all(np.any(w != 0) for w in net.weights), sizes


def test_auto_init(fb):
    net = fb.MLP([400, 300, 10], activation="relu", dtype="float64", seed=0)
    W = np.array(net.weights[0])
    assert W.std() == pytest.approx(math.sqrt(2.0 / 400), rel=0.03)  # he_normal
    net = fb.MLP([400, 300, 10], activation="tanh", dtype="float64", seed=0)
    W = np.array(net.weights[0])
    limit = math.sqrt(6.0 / 700)
    assert np.abs(W).max() <= limit and W.std() == pytest.approx(limit / math.sqrt(3), rel=0.03)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_determinism_same_seed_same_bits(fb, dtype):
    kw = dict(activation="gelu", loss="cross_entropy", dtype=dtype)
    a = fb.MLP([7, 9, 4], seed=42, **kw)
    b = fb.MLP([7, 9, 4], seed=42, **kw)
    c = fb.MLP([7, 9, 4], seed=43, **kw)
    assert a.params.tobytes() == b.params.tobytes()
    assert not np.array_equal(a.params, c.params)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(31, 7))
    y = rng.integers(0, 4, size=31)
    la, lb = a.backward(X, y), b.backward(X, y)
    assert la == lb
    assert a.grads.tobytes() == b.grads.tobytes()
    assert a.forward(X).tobytes() == b.forward(X).tobytes()
    # repeated calls on one network are bit-identical too
    assert a.backward(X, y) == la


# ----------------------------------------------------------------------------------------------
# views, norms, copy
# ----------------------------------------------------------------------------------------------


def test_weights_and_grads_are_writable_views(fb):
    net = build(fb, [4, 5, 3], "tanh", "mse", seed=0)
    assert net.params.ndim == 1 and net.grads.ndim == 1
    assert net.params.size == net.grads.size == net.n_params == 4 * 5 + 5 + 5 * 3 + 3
    shapes = [(4, 5), (5, 3)]
    for li in range(2):
        for view, flat in (
            (net.weights[li], net.params),
            (net.biases[li], net.params),
            (net.grad_weights[li], net.grads),
            (net.grad_biases[li], net.grads),
        ):
            assert view.flags.writeable
            assert np.shares_memory(view, flat)
        assert net.weights[li].shape == shapes[li] and net.grad_weights[li].shape == shapes[li]
        assert net.biases[li].shape == (shapes[li][1],)
    assert net.params.flags.writeable and net.grads.flags.writeable
    # params and grads share one layout: each W/b sits at the same offset in both buffers
    p0 = net.params.__array_interface__["data"][0]
    g0 = net.grads.__array_interface__["data"][0]
    for pv, gv in zip(net.weights + net.biases, net.grad_weights + net.grad_biases):
        assert (pv.__array_interface__["data"][0] - p0) == (gv.__array_interface__["data"][0] - g0)


def test_writing_weights_changes_forward(fb):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3))
    net = build(fb, [3, 4, 2], "tanh", "mse", seed=0)
    w = net.weights[0]
    w[...] = 0.0
    net.biases[0][...] = 0.25
    expected = np.tanh(0.25) * np.array(net.weights[1]).sum(axis=0) + net.biases[1]
    np.testing.assert_allclose(net.forward(X), np.tile(expected, (4, 1)), rtol=1e-12)
    # writing through the flat buffer shows in the per-layer views and in forward
    net.params[...] = 0.0
    assert np.all(net.weights[1] == 0)
    np.testing.assert_array_equal(net.forward(X), np.zeros((4, 2)))
    # the view object taken earlier is still the live memory
    net.weights[0][0, 0] = 3.0
    assert w[0, 0] == 3.0


def test_grad_views_are_refreshed_in_place(fb):
    rng = np.random.default_rng(1)
    net = build(fb, [3, 4, 2], "tanh", "mse", seed=0)
    gw = net.grad_weights[0]
    flat = net.grads
    net.backward(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    first = gw.copy()
    assert np.any(first != 0)
    net.backward(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    assert not np.array_equal(gw, first), "the gradient view must see the new backward"
    np.testing.assert_array_equal(gw, net.grad_weights[0])
    assert np.shares_memory(flat, net.grad_weights[1])


def test_grad_norms(fb):
    rng = np.random.default_rng(2)
    for dtype in ("float32", "float64"):
        net = build(fb, [5, 8, 6, 3], "relu", "cross_entropy", dtype=dtype, seed=0)
        net.backward(rng.normal(size=(10, 5)), rng.integers(0, 3, size=10))
        norms = net.grad_norms()
        assert isinstance(norms, np.ndarray) and norms.dtype == np.float64
        assert norms.shape == (3,)
        expected = [np.linalg.norm(np.asarray(g, np.float64)) for g in net.grad_weights]
        np.testing.assert_allclose(norms, expected, rtol=1e-6 if dtype == "float32" else 1e-12)
        # writing the gradient view is reflected
        net.grad_weights[1][...] = 0.0
        assert net.grad_norms()[1] == 0.0


def test_copy_is_independent(fb):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 3))
    y = rng.integers(0, 2, size=6)
    net = build(fb, [3, 4, 2], "tanh", "cross_entropy", seed=0)
    net.backward(X, y)
    twin = net.copy()
    assert twin.layer_sizes == net.layer_sizes and twin.loss == net.loss
    assert twin.activations == net.activations and twin.dtype == net.dtype
    np.testing.assert_array_equal(twin.params, net.params)
    assert not np.shares_memory(twin.params, net.params)
    assert not np.shares_memory(twin.grads, net.grads)
    before = net.params.copy()
    grads_before = net.grads.copy()
    twin.weights[0][...] += 1.0
    twin.backward(X * 2, y)
    np.testing.assert_array_equal(net.params, before)
    np.testing.assert_array_equal(net.grads, grads_before)
    assert not np.array_equal(twin.forward(X), net.forward(X))


def test_attributes(fb):
    net = fb.MLP(
        [4, 6, 5, 3], activation=["tanh", "relu"], loss="cross_entropy", dtype="float64", seed=0
    )
    assert list(net.layer_sizes) == [4, 6, 5, 3]
    assert list(net.activations) == ["tanh", "relu"]
    assert net.output_activation == "softmax"
    assert net.loss == "cross_entropy"
    assert net.n_layers == 3
    assert len(net.weights) == len(net.biases) == len(net.grad_weights) == 3
    assert fb.MLP([2, 3], loss="binary_cross_entropy").output_activation == "sigmoid"
    assert fb.MLP([2, 3], loss="mse").output_activation == "identity"
    assert fb.MLP([2, 3], loss="mse", output_activation="tanh").output_activation == "tanh"


@pytest.mark.parametrize("name", ["weights", "biases", "grad_weights", "grad_biases"])
def test_replacing_a_layer_view_raises_instead_of_doing_nothing(fb, name):
    # With a list, net.weights[0] = W replaced the list entry and left the network as it was.
    net = fb.MLP([3, 4, 2], dtype="float64", seed=0)
    params, grads = net.params.copy(), net.grads.copy()
    views = getattr(net, name)
    with pytest.raises(TypeError, match=rf"net\.{name}\[0\]\[\.\.\.\] = "):
        views[0] = np.zeros_like(views[0])
    with pytest.raises(TypeError, match=name):
        del views[-1]
    with pytest.raises(TypeError):
        views[:1][0] = np.zeros_like(views[0])  # a slice is as read-only
    with pytest.raises(AttributeError):
        setattr(net, name, [np.zeros_like(v) for v in views])
    np.testing.assert_array_equal(net.params, params)
    np.testing.assert_array_equal(net.grads, grads)
    views[0][...] = 7.0  # the way to write: into the view
    assert np.all(getattr(net, name)[0] == 7.0)


def test_layer_views_behave_like_lists_of_views(fb):
    net = fb.MLP([3, 4, 5, 2], dtype="float64", seed=0)
    w = net.weights
    assert len(w) == 3 and [a.shape for a in w] == [(3, 4), (4, 5), (5, 2)]
    assert w[-1] is w[2] and all(np.shares_memory(a, net.params) for a in w)
    assert [a.shape for a in w[1:]] == [(4, 5), (5, 2)] and len(w[::2]) == 2
    both = net.weights + net.biases
    assert isinstance(both, list) and len(both) == 6 and both[3] is net.biases[0]
    assert len([np.zeros(1)] + net.grad_biases) == 4
    assert w == list(w) and w == net.weights and w != list(w[:2])
    assert np.shares_memory(net.grad_weights[0], net.grads)


# ----------------------------------------------------------------------------------------------
# memory ownership and unusual-but-valid inputs
# ----------------------------------------------------------------------------------------------


def test_forward_returns_fresh_array_not_a_workspace_view(fb):
    rng = np.random.default_rng(0)
    net = build(fb, [3, 5, 2], "tanh", "mse", seed=0)
    X1, X2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    o1 = net.forward(X1)
    keep = o1.copy()
    o2 = net.forward(X2)
    net.backward(X2, rng.normal(size=(4, 2)))
    np.testing.assert_array_equal(o1, keep)
    assert not np.shares_memory(o1, o2)
    assert not np.shares_memory(o1, net.params) and not np.shares_memory(o1, net.grads)
    o1[...] = 123.0  # writing the result must not disturb the network
    np.testing.assert_array_equal(net.forward(X2), o2)


def test_fresh_network_has_zero_gradients(fb):
    for dtype in ("float32", "float64"):
        net = fb.MLP([30, 40, 5], dtype=dtype, seed=0)
        assert np.all(net.grads == 0)
        np.testing.assert_array_equal(net.grad_norms(), np.zeros(2))


def test_readonly_and_big_endian_inputs(fb):
    rng = np.random.default_rng(0)
    net = build(fb, [3, 4, 2], "tanh", "mse", seed=0)
    X = rng.normal(size=(6, 3))
    Y = rng.normal(size=(6, 2))
    expected_out, expected_loss = net.forward(X), net.backward(X, Y)
    g = net.grads.copy()
    Xr, Yr = X.copy(), Y.copy()
    Xr.setflags(write=False)
    Yr.setflags(write=False)
    np.testing.assert_array_equal(net.forward(Xr), expected_out)
    assert net.backward(Xr, Yr) == expected_loss
    Xb, Yb = X.astype(">f8"), Y.astype(">f8")
    np.testing.assert_array_equal(net.forward(Xb), expected_out)
    assert net.backward(Xb, Yb) == expected_loss
    np.testing.assert_array_equal(net.grads, g)
    # Fortran-ordered targets and broadcast (zero-stride) inputs
    assert net.backward(X, np.asfortranarray(Y)) == expected_loss
    Xz = np.broadcast_to(X[:1], (6, 3))
    np.testing.assert_array_equal(net.forward(Xz), np.repeat(net.forward(X[:1]), 6, axis=0))


def test_binary_cross_entropy_1d_targets_single_output(fb):
    rng = np.random.default_rng(1)
    net = build(fb, [3, 4, 1], "tanh", "binary_cross_entropy", seed=0)
    X = rng.normal(size=(7, 3))
    y = rng.integers(0, 2, size=7).astype(np.float64)
    a = net.backward(X, y)
    g = net.grads.copy()
    assert net.backward(X, y.reshape(-1, 1)) == a
    np.testing.assert_array_equal(net.grads, g)
    Ws, bs = ref.get_params(net)
    assert a == pytest.approx(ref.mlp_loss(X, y, Ws, bs, "tanh", "binary_cross_entropy"), rel=1e-12)


def test_batch_of_one(fb):
    rng = np.random.default_rng(2)
    sizes = [4, 3, 3]
    Ws, bs = ref.random_params(sizes, rng)
    X = rng.normal(size=(1, 4))
    y = np.array([2])
    net = build(fb, sizes, "silu", "cross_entropy", params=(Ws, bs))
    value = net.backward(X, y)
    rv, rW, rb = ref.mlp_loss_and_grads(X, y, Ws, bs, "silu", "cross_entropy")
    assert value == pytest.approx(rv, rel=1e-12)
    np.testing.assert_allclose(
        ref.flatten(net.grad_weights + net.grad_biases),
        ref.flatten(rW + rb),
        rtol=1e-10,
        atol=1e-14,
    )


def test_gradient_check_mse_with_softmax_output(fb):
    # DESIGN: mse accepts any output activation, softmax too (its Jacobian mixes a row)
    rng = np.random.default_rng(8)
    sizes = [4, 5, 3]
    X, Ws, bs = smooth_point(sizes, "tanh", "softmax", rng)
    Y = rng.uniform(0, 1, (X.shape[0], 3))
    net = build(fb, sizes, "tanh", "mse", "softmax", params=(Ws, bs))
    out = net.forward(X)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    loss = net.backward(X, Y)
    assert loss == pytest.approx(0.5 * np.sum((out - Y) ** 2) / X.shape[0], rel=1e-12)
    gW, gb = ref.get_grads(net)
    fW, fb_ = finite_difference(net, X, Y)
    assert rel_err(ref.flatten(gW + gb), ref.flatten(fW + fb_)) < 1e-6


# --------------------------------------------------------------------------------------------
# layer_stats: the forward signal of each layer, against a float64 NumPy computation.

# The histogram bins as documented (cpp/activations.hpp, fastbp.history.hist_edges), written
# out here independently of the core.
_UNIT = np.arange(1, 20) / 20
_SYMMETRIC = (np.arange(19) - 9) / 10
_LOG = 10.0 ** (-3 + 0.5 * np.arange(19))
_SIGNED_LOG = np.concatenate([-(10.0 ** np.arange(6, -3, -1)), [0.0], 10.0 ** np.arange(-2, 7)])
SPEC_EDGES = {
    "identity": _SIGNED_LOG,
    "sigmoid": _UNIT,
    "tanh": _SYMMETRIC,
    "relu": _LOG,
    "leaky_relu": _SIGNED_LOG,
    "elu": _SIGNED_LOG,
    "softplus": _LOG,
    "gelu": _SIGNED_LOG,
    "silu": _SIGNED_LOG,
    "softmax": _UNIT,
}


def reference_layer_stats(X, weights, biases, hidden, output):
    """Per layer, pooled over samples and units: mean and std of Z and A, bin shares of A."""
    zs, outs = ref.mlp_forward(X, weights, biases, hidden, output)
    names = list(hidden) + [output]
    out = {k: [] for k in ("pre_mean", "pre_std", "act_mean", "act_std", "hist")}
    for z, a, name in zip(zs, outs[1:], names):
        out["pre_mean"].append(z.mean())
        out["pre_std"].append(z.std())
        out["act_mean"].append(a.mean())
        out["act_std"].append(a.std())
        bins = np.searchsorted(SPEC_EDGES[name], a.ravel(), side="right")
        out["hist"].append(np.bincount(bins, minlength=20) / a.size)
    return {k: np.array(v) for k, v in out.items()}


def test_histogram_edges_are_the_documented_ones(fb):
    from fastbp.history import HIST_BINS, hist_edges

    assert HIST_BINS == 20
    for name, edges in SPEC_EDGES.items():
        np.testing.assert_allclose(hist_edges(name), edges, rtol=1e-15)
    with pytest.raises(ValueError, match="activation"):
        hist_edges("swish")


@pytest.mark.parametrize(
    "hidden, output",
    [
        (["relu", "tanh", "sigmoid"], "softmax"),
        (["leaky_relu", "elu", "softplus"], "identity"),
        (["gelu", "silu", "identity"], "sigmoid"),
    ],
)
def test_layer_stats_match_a_float64_reference(fb, rng, hidden, output):
    # 2500 rows: two of the core's chunks of 2048, so the chunks' moments must combine.
    sizes = [7, 13, 9, 11, 3]
    loss = {"softmax": "cross_entropy", "identity": "mse", "sigmoid": "binary_cross_entropy"}
    net = fb.MLP(sizes, activation=hidden, loss=loss[output], dtype="float64", seed=0)
    Ws, bs = ref.random_params(sizes, rng, scale=2.0)
    bs = [b + 0.5 for b in bs]  # means away from 0
    ref.load_params(net, Ws, bs)
    X = rng.normal(1.0, 2.0, size=(2500, 7))
    got = net.layer_stats(X)
    want = reference_layer_stats(X, Ws, bs, hidden, output)
    np.testing.assert_allclose(got["preactivation_mean"], want["pre_mean"], rtol=1e-11)
    np.testing.assert_allclose(got["preactivation_std"], want["pre_std"], rtol=1e-11)
    np.testing.assert_allclose(got["activation_mean"], want["act_mean"], rtol=1e-11)
    np.testing.assert_allclose(got["activation_std"], want["act_std"], rtol=1e-11)
    assert got["activation_hist"].shape == (4, 20)
    # The core's exp and tanh may differ from NumPy's in the last bit: a value that close to an
    # edge may fall on its other side. None does here, so the counts agree exactly.
    entries = X.shape[0] * np.array(sizes[1:])[:, None]
    np.testing.assert_array_equal(
        np.round(got["activation_hist"] * entries), np.round(want["hist"] * entries)
    )
    np.testing.assert_allclose(got["activation_hist"].sum(axis=1), 1.0, rtol=1e-12)
    # the saturation and dead shares are those of activation_stats, from the same pass
    saturation, dead = net.activation_stats(X)
    np.testing.assert_array_equal(got["saturation"], saturation)
    np.testing.assert_array_equal(got["dead"], dead)


def test_layer_stats_in_float32_agree_with_float64(fb, rng):
    sizes = [10, 32, 32, 4]
    Ws, bs = ref.random_params(sizes, rng, scale=1.5)
    X = rng.standard_normal((600, 10))
    nets = {}
    for dtype in ("float32", "float64"):
        nets[dtype] = fb.MLP(sizes, activation="relu", loss="cross_entropy", dtype=dtype, seed=0)
        ref.load_params(
            nets[dtype], [W.astype(np.float32) for W in Ws], [b.astype(np.float32) for b in bs]
        )
    s32, s64 = (nets[d].layer_stats(X.astype(np.float32)) for d in ("float32", "float64"))
    for key in ("preactivation_mean", "preactivation_std", "activation_mean", "activation_std"):
        np.testing.assert_allclose(s32[key], s64[key], rtol=1e-4, atol=1e-6)
    # a float32 rounding may move a value across an edge: a few entries of 600 x 32 at most
    np.testing.assert_allclose(s32["activation_hist"], s64["activation_hist"], atol=5 / 600)


def test_layer_stats_keep_the_spread_under_a_large_mean(fb):
    # sum(x^2) - n mean^2 would cancel to noise here: mean 1e6, standard deviation 1e-3.
    net = fb.MLP([1, 1], loss="mse", dtype="float64", seed=0)
    net.weights[0][...] = 1e-3
    net.biases[0][...] = 1e6
    X = np.resize([-1.0, 1.0], 4096)[:, None]
    s = net.layer_stats(X)
    np.testing.assert_allclose(s["preactivation_std"], [1e-3], rtol=1e-6)
    np.testing.assert_allclose(s["activation_mean"], [1e6], rtol=1e-15)
    # 1e6 + 1e-3 in the last bin (from 1e6 up), 1e6 - 1e-3 in the one below
    np.testing.assert_array_equal(s["activation_hist"][0, -2:], [0.5, 0.5])


def test_layer_stats_show_a_non_finite_signal(fb, rng):
    net = fb.MLP([3, 4, 2], activation="tanh", loss="mse", dtype="float64", seed=0)
    net.weights[0][0, 1] = np.nan
    s = net.layer_stats(rng.standard_normal((50, 3)))
    assert np.isnan(s["preactivation_std"]).all() and np.isnan(s["activation_mean"]).all()
    # the NaN outputs of unit 1 are in no bin; the other three units' are
    np.testing.assert_allclose(s["activation_hist"][0].sum(), 0.75)
    assert s["activation_hist"][1].sum() == 0.0  # every output mixes in unit 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_histogram_bins_values_next_to_the_edges_as_the_double_edges_do(fb, dtype):
    # identity output, W = 1, b = 0: the outputs are X itself, so values one ulp either side of
    # each edge (in the network's dtype) test the binning exactly. The values beside the edge 0
    # are subnormal: with subnormals flushed (the default) they would be 0.
    net = fb.MLP([1, 1], loss="mse", dtype=dtype.__name__, seed=0)
    net.weights[0][...] = 1.0
    net.biases[0][...] = 0.0
    edges = SPEC_EDGES["identity"].astype(dtype)
    values = np.concatenate(
        [edges, np.nextafter(edges, dtype(-np.inf)), np.nextafter(edges, dtype(np.inf))]
    )
    flush = fb.get_flush_denormals()
    fb.set_flush_denormals(False)
    try:
        hist = net.layer_stats(values[:, None])["activation_hist"][0]
    finally:
        fb.set_flush_denormals(flush)
    bins = np.searchsorted(SPEC_EDGES["identity"], values.astype(np.float64), side="right")
    np.testing.assert_array_equal(hist * len(values), np.bincount(bins, minlength=20))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_histogram_puts_nan_in_no_bin_and_infinities_in_the_end_bins(fb, dtype):
    # identity output, W = inf, b = -inf: z = x * inf - inf is -inf for x < 0 and NaN for
    # x >= 0 (inf - inf, 0 * inf); the ones with W = 1, b = 0 pass x through.
    X = np.array([[-1.0], [0.0], [2.0], [-3.0], [0.5], [7.0]], dtype=dtype)
    net = fb.MLP([1, 2], loss="mse", dtype=dtype.__name__, seed=0)
    net.weights[0][...] = np.array([[np.inf, 1.0]])
    net.biases[0][...] = np.array([-np.inf, 0.0])
    hist = net.layer_stats(X)["activation_hist"][0] * X.size * 2
    z = np.concatenate([np.where(X[:, 0] < 0, -np.inf, np.nan), X[:, 0]]).astype(np.float64)
    finite = z[~np.isnan(z)]
    expected = np.bincount(
        np.searchsorted(SPEC_EDGES["identity"], finite, side="right"), minlength=20
    )
    np.testing.assert_allclose(hist, expected, atol=1e-9)
    assert expected[0] == 2 and expected.sum() == 8  # the two -inf; the four NaN nowhere


def test_a_batch_that_is_a_view_of_the_gradients_gives_the_same_gradients(fb):
    """backward writes the gradients while it reads X: a view of them is copied first."""
    for dtype in ("float64", "float32"):
        net = fb.MLP([3, 3, 3], dtype=dtype, seed=0)
        net.grad_weights[0][...] = np.arange(9.0).reshape(3, 3) / 10
        X = net.grad_weights[0]
        ref = net.copy()
        ref.backward(np.array(X), np.zeros((3, 3)))
        net.backward(X, np.zeros((3, 3)))
        np.testing.assert_array_equal(net.grads, ref.grads)


def test_pickle_and_deepcopy_keep_the_gradients_as_copy_does(fb):
    import copy
    import pickle

    net = fb.MLP([3, 4, 2], seed=0)
    net.backward(np.ones((2, 3)), np.ones((2, 2)))
    assert np.abs(net.grads).sum() > 0
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net)), net.copy()):
        np.testing.assert_array_equal(other.grads, net.grads)
        np.testing.assert_array_equal(other.params, net.params)
    state = net.__getstate__()
    del state["grads"]  # a pickle written before the gradients were kept
    old = fb.MLP.__new__(fb.MLP)
    old.__setstate__(state)
    assert not old.grads.any() and np.array_equal(old.params, net.params)
