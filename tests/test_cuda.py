"""The CUDA backend (``device="cuda"``) against the CPU core.

Two kinds of tests:
- import behaviour, ``build_info()["cuda"]``, ``cuda_available()`` and the ``device``
  argument's checks: they run everywhere;
- the backend's results against the CPU core's (forward, backward, optimizers, fits, errors):
  they run on every CUDA backend usable here, parametrised as ``backend``:
  ``"gpu"`` (fastbp._cuda on an NVIDIA GPU), and ``"emulated"`` (fastbp._cuda_emu: the same
  bindings, network, epoch loop and per-thread kernel code on a host emulation of the device,
  built with ``-Ccmake.define.FASTBP_CUDA_EMULATION=ON``), which checks the backend's logic on
  machines without a GPU. Each skips where it is not built or usable.

Tolerances (relative, ||gpu - cpu|| / ||cpu||): float64 1e-12 and float32 1e-5 for one
forward and backward; a few orders more for whole fits, whose differences in the last bits grow
with the steps.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastbp as fb
from fastbp import _backend

HIDDEN = [a["name"] for a in fb._core.activation_table() if a["hidden"]]
OUTPUTS = [a["name"] for a in fb._core.activation_table()]


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / (scale if scale > 0 else 1.0))


TOL = {"float64": 1e-12, "float32": 1e-5}


# ---- everywhere -------------------------------------------------------------------------------


def test_import_fastbp_never_imports_the_cuda_backend():
    code = (
        "import sys, fastbp; print(sorted(m for m in sys.modules if m.startswith('fastbp._cuda')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


def test_build_info_cuda_is_false_or_describes_the_build():
    info = fb.build_info()["cuda"]
    if importlib.util.find_spec("fastbp._cuda") is None:
        assert info is False
        return
    assert isinstance(info, dict)
    assert {"cuda_version", "architectures", "cublas_version", "available"} <= set(info)
    assert info["available"] is fb.cuda_available()
    if not info["available"]:
        assert info["unavailable_reason"]
    json.dumps(info)  # plain values only: `fastbp info` prints it


def test_cuda_available_is_a_bool_that_never_raises(monkeypatch):
    assert isinstance(fb.cuda_available(), bool)

    def broken() -> None:
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(_backend, "_cuda_module", broken)
    assert fb.cuda_available() is False


@pytest.mark.parametrize(
    "device, error",
    [
        (3, TypeError),
        (None, TypeError),
        ("tpu", ValueError),
        ("cuda:x", ValueError),
        ("cpu:1", ValueError),
        ("cuda:-1", ValueError),
    ],
)
def test_device_argument_is_checked(device, error):
    with pytest.raises(error, match="device"):
        fb.MLP([3, 2], device=device)


def test_device_cpu_spellings():
    assert fb.MLP([3, 2], device="CPU").device == "cpu"
    assert fb.MLP([3, 2]).to("cpu").device == "cpu"


def test_cuda_where_the_backend_is_not_built_says_so(monkeypatch):
    monkeypatch.setattr(_backend, "_module_name", lambda: "fastbp._no_such_backend")
    with pytest.raises(ValueError, match="built without its CUDA backend"):
        fb.MLP([3, 2], device="cuda")
    with pytest.raises(ValueError, match="built without its CUDA backend"):
        fb.MLP([3, 2]).to("cuda")
    assert fb.cuda_available() is False


def test_a_move_that_fails_on_the_device_changes_nothing(monkeypatch):
    # the GPU network's constructor fails (out of GPU memory): the network stays on the CPU,
    # whole and usable, instead of holding a CUDA backend beside its old CPU core
    import types

    from fastbp import network

    def out_of_memory(*args):
        raise MemoryError("cudaMalloc: out of memory")

    module = types.SimpleNamespace(
        __name__="fastbp._cuda", Network32=out_of_memory, Network64=out_of_memory
    )
    cuda = _backend.CudaBackend(module, 0)
    cpu_backend_for = network.backend_for
    monkeypatch.setattr(
        network, "backend_for", lambda d: cuda if d == "cuda" else cpu_backend_for(d)
    )
    net = fb.MLP([3, 4, 2], seed=0)
    before = np.array(net.params)
    with pytest.raises(MemoryError):
        net.to("cuda")
    assert net.device == "cpu" and net.backend is cpu_backend_for("cpu")
    np.testing.assert_array_equal(net.params, before)
    assert net.weights[0].shape == (3, 4)
    assert net.forward(np.zeros((1, 3), np.float32)).shape == (1, 2)
    assert net.to("cpu") is net


@pytest.mark.skipif(
    importlib.util.find_spec("fastbp._cuda") is None, reason="fastbp built without _cuda"
)
def test_cuda_without_a_usable_gpu_says_so(monkeypatch):
    monkeypatch.delenv(_backend.EMULATION_ENV, raising=False)
    if fb.cuda_available():
        pytest.skip("a GPU is usable here")
    with pytest.raises(ValueError, match="no CUDA device is usable"):
        fb.MLP([3, 2], device="cuda")
    net = fb.MLP([3, 2])
    with pytest.raises(ValueError, match="no CUDA device is usable"):
        net.to("cuda")
    assert net.device == "cpu"  # unchanged by the failed move


@pytest.mark.skipif(
    not os.environ.get("FASTBP_TEST_CUDA_MODULE"),
    reason="FASTBP_TEST_CUDA_MODULE names no separately built fastbp._cuda (.ci/run sets it)",
)
def test_a_separately_built_cuda_module_loads():
    """The CUDA module that .ci/run compiles on its own (not installed) links against the
    static CUDA runtime and the wheel's cuBLAS, loads, and answers without a GPU."""
    path = os.environ["FASTBP_TEST_CUDA_MODULE"]
    library = _backend.cublas_path("libcublas.so.13")
    if library is not None:
        ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
    name = "fastbp._cuda"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        count, why = module.device_count()
        assert count >= 0 and (count > 0 or why)
        info = module.build_info()
        assert info["cuda_runtime"] == "static" and info["emulated"] is False
        assert "80" in info["architectures"] and "90" in info["architectures"]
    finally:
        if saved is None:
            del sys.modules[name]
        else:
            sys.modules[name] = saved


# ---- the backends against the CPU core ------------------------------------------------------


@pytest.fixture(params=["emulated", "gpu"])
def backend(request, monkeypatch):
    """A usable CUDA backend (see the module docstring); tests use device="cuda"."""
    if request.param == "emulated":
        if importlib.util.find_spec("fastbp._cuda_emu") is None:
            pytest.skip("fastbp built without FASTBP_CUDA_EMULATION=ON")
        monkeypatch.setenv(_backend.EMULATION_ENV, "1")
    else:
        monkeypatch.delenv(_backend.EMULATION_ENV, raising=False)
        if not fb.cuda_available():
            pytest.skip("no usable CUDA GPU (or fastbp built without its CUDA backend)")
    return request.param


def pair(layers, dtype="float64", **kw):
    """The same network (same initial weights) on the CPU and on the device."""
    cpu = fb.MLP(layers, dtype=dtype, seed=0, **kw)
    gpu = fb.MLP(layers, dtype=dtype, seed=0, device="cuda", **kw)
    np.testing.assert_array_equal(gpu.params, cpu.params)
    return cpu, gpu


def data(n, n_in, n_out, loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    if loss == "cross_entropy":
        return X, rng.integers(0, n_out, n)
    if loss == "binary_cross_entropy":
        return X, (rng.random((n, n_out)) > 0.5).astype(float)
    return X, rng.normal(size=(n, n_out))


@pytest.mark.parametrize("path", ["fused", "blas"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "binary_cross_entropy"])
def test_forward_backward_every_activation(backend, loss, dtype, path):
    for activation in HIDDEN:
        cpu, gpu = pair([6, 9, 7, 3], dtype, activation=activation, loss=loss)
        gpu.core.layer_path = path
        X, Y = data(37, 6, 3, loss, seed=HIDDEN.index(activation))
        tol = TOL[dtype]
        assert rel(gpu.forward(X), cpu.forward(X)) < tol, activation
        loss_cpu, loss_gpu = cpu.backward(X, Y), gpu.backward(X, Y)
        assert abs(loss_gpu - loss_cpu) <= tol * abs(loss_cpu), activation
        assert rel(gpu.grads, cpu.grads) < tol, activation
        for g, c in zip(gpu.grad_weights + gpu.grad_biases, cpu.grad_weights + cpu.grad_biases):
            assert rel(g, c) < 10 * tol, activation
        np.testing.assert_allclose(gpu.grad_norms(), cpu.grad_norms(), rtol=10 * tol)
        ev_cpu, ev_gpu = cpu.evaluate(X, Y), gpu.evaluate(X, Y)
        assert ev_gpu.keys() == ev_cpu.keys()
        for key in ev_cpu:
            assert abs(ev_gpu[key] - ev_cpu[key]) <= tol * max(1.0, abs(ev_cpu[key])), activation


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_mse_with_every_output_activation(backend, dtype):
    for output in OUTPUTS:
        cpu, gpu = pair([4, 8, 5], dtype, activation="elu", loss="mse", output_activation=output)
        X, Y = data(23, 4, 5, "mse", seed=1)
        assert rel(gpu.forward(X), cpu.forward(X)) < TOL[dtype], output
        cpu.backward(X, Y), gpu.backward(X, Y)
        assert rel(gpu.grads, cpu.grads) < TOL[dtype], output


def test_cross_entropy_with_probability_rows_and_predict(backend):
    cpu, gpu = pair([5, 6, 4], activation="gelu", loss="cross_entropy")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(19, 5))
    P = rng.dirichlet(np.ones(4), size=19)
    assert abs(gpu.backward(X, P) - cpu.backward(X, P)) < 1e-12
    assert rel(gpu.grads, cpu.grads) < 1e-12
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))


def test_forward_in_chunks_and_layer_stats(backend):
    cpu, gpu = pair([3, 16, 16, 2], activation="relu", loss="mse")
    X = np.random.default_rng(4).normal(size=(20000, 3))  # beyond one device chunk (8192)
    assert rel(gpu.forward(X), cpu.forward(X)) < 1e-12
    for act in HIDDEN:  # every histogram kind; softmax through cross-entropy
        cpu, gpu = pair([3, 16, 16, 4], activation=act, loss="cross_entropy", init=("normal", 3.0))
        s_cpu, d_cpu = cpu.activation_stats(X[:9000])
        s_gpu, d_gpu = gpu.activation_stats(X[:9000])
        np.testing.assert_allclose(s_gpu, s_cpu, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(d_gpu, d_cpu, rtol=1e-12, equal_nan=True)
        stats_cpu, stats_gpu = cpu.layer_stats(X[:9000]), gpu.layer_stats(X[:9000])
        assert stats_gpu.keys() == stats_cpu.keys()
        for key in stats_cpu:
            np.testing.assert_allclose(
                stats_gpu[key], stats_cpu[key], rtol=1e-10, atol=1e-12, equal_nan=True, err_msg=key
            )


OPTIMIZERS = {
    "sgd": lambda: fb.SGD(0.05),
    "sgd-momentum-nesterov-wd": lambda: fb.SGD(
        0.05, momentum=0.9, nesterov=True, weight_decay=1e-3
    ),
    "sgd-dampening": lambda: fb.SGD(0.05, momentum=0.8, dampening=0.3),
    "adam": lambda: fb.Adam(0.01, weight_decay=1e-3),
    "adamw": lambda: fb.AdamW(0.01),
    "rmsprop": lambda: fb.RMSProp(0.01, momentum=0.5, centered=True, weight_decay=1e-3),
    "adagrad": lambda: fb.AdaGrad(0.05, lr_decay=0.01, weight_decay=1e-3),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_over_20_steps(backend, name, dtype):
    cpu, gpu = pair([5, 12, 3], dtype, activation="tanh", loss="cross_entropy")
    opt_cpu, opt_gpu = OPTIMIZERS[name](), OPTIMIZERS[name]()
    rng = np.random.default_rng(5)
    for _ in range(20):
        X, Y = rng.normal(size=(16, 5)), rng.integers(0, 3, 16)
        cpu.backward(X, Y), gpu.backward(X, Y)
        opt_cpu.step(cpu)
        opt_gpu.step(gpu)
    tol = 1e-10 if dtype == "float64" else 1e-4
    assert rel(gpu.params, cpu.params) < tol
    assert opt_gpu.steps == opt_cpu.steps == 20
    s_cpu, s_gpu = opt_cpu.state_dict(), opt_gpu.state_dict()
    assert s_gpu["core"]["step"] == s_cpu["core"]["step"]
    assert s_gpu["core"]["momentum_fresh"] == s_cpu["core"]["momentum_fresh"]
    assert s_gpu["core"]["buffers"].keys() == s_cpu["core"]["buffers"].keys()
    for key, value in s_cpu["core"]["buffers"].items():
        assert rel(s_gpu["core"]["buffers"][key], value) < 100 * tol, key


def fit_pair(trainer_kw=None, layers=(8, 12, 12, 3), loss="cross_entropy", net_kw=None, n=300):
    """A fit on the CPU and the same on the device: (history, net, trainer) for each."""
    X, Y = data(n, layers[0], layers[-1], loss, seed=7)
    Xv, Yv = data(90, layers[0], layers[-1], loss, seed=8)
    out = []
    for device in ("cpu", "cuda"):
        net = fb.MLP(
            list(layers), loss=loss, dtype="float64", seed=0, device=device, **(net_kw or {})
        )
        kw = dict(batch_size=32, epochs=6, seed=11, progress=False)
        kw.update(trainer_kw or {})
        given = kw.pop("optimizer", None)  # each run a fresh one of the same settings
        opt = type(given)(**given.hyperparameters()) if given else fb.Adam(0.01)
        trainer = fb.Trainer(net, opt, **kw)
        history = trainer.fit(X, Y, validation=(Xv, Yv))
        out.append((history, net, trainer))
    return out


def assert_same_run(cpu, gpu, tol=1e-9):
    (hc, nc, _), (hg, ng, _) = cpu, gpu
    assert hg.n_epochs == hc.n_epochs
    assert hg.best_epoch == hc.best_epoch and hg.stopped_epoch == hc.stopped_epoch
    assert hg.stop_reason == hc.stop_reason
    np.testing.assert_allclose(hg.train_loss, hc.train_loss, rtol=tol)
    np.testing.assert_allclose(hg.val_loss, hc.val_loss, rtol=tol)
    np.testing.assert_allclose(hg.lr, hc.lr, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(hg.grad_norms), np.asarray(hc.grad_norms), rtol=tol)
    np.testing.assert_allclose(np.asarray(hg.update_ratios), np.asarray(hc.update_ratios), rtol=tol)
    assert rel(ng.params, nc.params) < tol


def test_fit_with_early_stopping(backend):
    cpu, gpu = fit_pair(
        dict(epochs=30, early_stopping=fb.EarlyStopping("val_loss", patience=2)),
        net_kw=dict(activation="sigmoid"),
    )
    assert_same_run(cpu, gpu)
    assert gpu[0].stop_reason == "early_stopping"  # the data overfit quickly: it stops
    (_, _, tc), (hg, _, tg) = cpu, gpu
    X, Y = data(50, 8, 3, "cross_entropy", seed=9)
    ec, eg = tc.evaluate(X, Y), tg.evaluate(X, Y)
    assert abs(eg["loss"] - ec["loss"]) < 1e-9 and eg["accuracy"] == ec["accuracy"]
    report = fb.diagnose(hg)
    assert str(report)


def test_a_subnormal_float32_clip_factor_scales_on_the_device_too(backend):
    net = fb.MLP([4, 6, 3], seed=0, device="cuda")  # float32
    net.set_grads(np.full(net.n_params, 1e30, np.float32))
    fb.clip_grad_norm(net, 1e-10)  # factor 1.4e-41: subnormal in float32
    assert np.linalg.norm(net.grads.astype(np.float64)) == pytest.approx(1e-10, rel=1e-5)


def test_history_lr_is_the_epochs_rate_itself(backend):
    """On the device as on the CPU: the rate, not 38 copies of it summed and divided."""
    cpu, gpu = fit_pair(
        dict(epochs=3, batch_size=8, optimizer=fb.SGD(0.05), lr_schedule=fb.StepLR(1, 0.5))
    )
    assert gpu[0].lr == cpu[0].lr == [0.05, 0.025, 0.0125]
    # the line search too, where it accepts its first trial step on every batch
    cpu, gpu = fit_pair(dict(epochs=2, batch_size=3, optimizer=fb.LineSearchSGD(1e-3)))
    assert gpu[0].lr == cpu[0].lr == [1e-3, 1e-3]


@pytest.mark.parametrize(
    "kw",
    [
        dict(clip_norm=0.05),
        dict(clip_value=0.01, optimizer=fb.SGD(0.1, momentum=0.9)),
        dict(grad_noise=fb.GradientNoise(0.01, seed=5), optimizer=fb.RMSProp(0.01)),
        dict(
            clip_norm=0.5,
            clip_value=0.2,
            grad_noise=fb.GradientNoise(0.003, seed=6),
            optimizer=fb.AdaGrad(0.05),
        ),
        dict(batch_size=1000),  # one batch: nothing to capture
        dict(batch_size=64, shuffle=False, optimizer=fb.AdamW(0.02)),
    ],
    ids=["clip_norm", "clip_value", "noise", "all", "full-batch", "no-shuffle"],
)
def test_fit_transforms_and_settings(backend, kw):
    noise = kw.get("grad_noise")
    cpu_kw = dict(kw)
    if noise is not None:  # each run its own noise object, from the same seed
        cpu_kw["grad_noise"] = fb.GradientNoise(noise.eta, noise.gamma, seed=noise.seed)
    if "optimizer" in kw:
        cpu_kw["optimizer"] = type(kw["optimizer"])(**kw["optimizer"].hyperparameters())
    X, Y = data(300, 8, 3, "cross_entropy", seed=7)
    runs = []
    for device, settings in (("cpu", cpu_kw), ("cuda", kw)):
        net = fb.MLP([8, 12, 12, 3], loss="cross_entropy", dtype="float64", seed=0, device=device)
        settings = dict(settings)
        opt = settings.pop("optimizer", None) or fb.Adam(0.01)
        trainer = fb.Trainer(
            net, opt, epochs=4, seed=11, progress=False, **{"batch_size": 32, **settings}
        )
        runs.append((trainer.fit(X, Y), net, trainer))
    # The noise is drawn in float32 by polynomials whose multiply-adds a compiler may fuse or
    # not (the CPU core's vectorised loop, the device's per-entry draw): a value may differ by
    # one float ulp, 6e-8 of the noise.
    assert_same_run(*runs, tol=1e-9 if noise is None else 1e-7)
    if noise is not None:
        assert runs[1][2].grad_noise.t == runs[0][2].grad_noise.t > 0


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_fit_dense_targets(backend, loss):
    cpu, gpu = fit_pair(
        dict(epochs=4), layers=(5, 10, 4), loss=loss, net_kw=dict(activation="silu")
    )
    assert_same_run(cpu, gpu)


def test_fit_line_search(backend):
    cpu, gpu = fit_pair(dict(epochs=3, optimizer=fb.LineSearchSGD(1.0), clip_norm=2.0))
    assert_same_run(cpu, gpu)
    X, Y = data(40, 8, 3, "cross_entropy", seed=3)
    (_, nc, _), (_, ng, _) = cpu, gpu
    oc, og = fb.LineSearchSGD(0.5), fb.LineSearchSGD(0.5)
    assert abs(og.step(ng, X, Y) - oc.step(nc, X, Y)) < 1e-12
    assert og.last_step == oc.last_step
    assert rel(ng.params, nc.params) < 1e-9


def test_non_finite_epoch_stops_and_rolls_back(backend):
    runs = []
    for device in ("cpu", "cuda"):
        net = fb.MLP([8, 16, 3], loss="cross_entropy", dtype="float64", seed=0, device=device)
        X, Y = data(200, 8, 3, "cross_entropy")
        trainer = fb.Trainer(net, fb.SGD(1e30), batch_size=20, epochs=5, seed=1, progress=False)
        with pytest.warns(fb.NonFiniteWarning):
            history = trainer.fit(X, Y)
        runs.append((history, np.array(net.params)))
    (hc, pc), (hg, pg) = runs
    assert hg.stopped_epoch == hc.stopped_epoch and hg.stop_reason == "non_finite"
    assert hg.n_epochs == hc.n_epochs
    np.testing.assert_allclose(pg, pc, rtol=1e-12)
    assert np.isfinite(pg).all()


def test_same_seed_same_bits_and_graphs_change_nothing(backend):
    results = []
    for graphs in (True, True, False):
        net = fb.MLP([8, 12, 12, 3], loss="cross_entropy", seed=0, device="cuda")  # float32
        net.core.use_graphs = graphs
        X, Y = data(330, 8, 3, "cross_entropy", seed=7)
        history = fb.Trainer(
            net, fb.Adam(0.01), batch_size=32, epochs=3, seed=11, progress=False
        ).fit(X, Y)
        results.append((np.array(net.params), history.train_loss, net.core.graphs_captured))
    (p1, l1, g1), (p2, l2, _), (p3, l3, g3) = results
    np.testing.assert_array_equal(p1, p2)
    assert l1 == l2
    assert g1 >= 1 and g3 == 0  # captured once (per buffer layout), replayed per batch
    np.testing.assert_array_equal(p1, p3)
    assert l1 == l3


def test_each_fit_uploads_its_data_once(backend, monkeypatch):
    net = fb.MLP([8, 12, 3], loss="cross_entropy", device="cuda", seed=0)
    calls = []
    original = type(net.backend).upload

    def counting(self, *arrays):
        calls.append(len(arrays))
        return original(self, *arrays)

    monkeypatch.setattr(type(net.backend), "upload", counting)
    X, Y = data(100, 8, 3, "cross_entropy")
    fb.Trainer(net, fb.SGD(0.1), epochs=5, progress=False).fit(X, Y, validation=(X, Y))
    assert sorted(calls) == [1, 2, 2]  # the statistics' sample, the training set, validation


def test_writing_to_a_gpu_networks_weights_raises(backend):
    net = fb.MLP([3, 4, 2], device="cuda", seed=0)
    W = net.weights[0]
    assert isinstance(W, fb.network.HostCopy) and W.shape == (3, 4)
    for write in (
        lambda: net.weights[0].__setitem__(Ellipsis, 0.0),
        lambda: net.biases[1].__setitem__(0, 1.0),
        lambda: net.params.__setitem__(slice(None), 0.0),
        lambda: net.grads.__setitem__(0, 1.0),
        lambda: np.add(net.weights[0], 1, out=net.weights[0]),
    ):
        with pytest.raises(ValueError, match="set_weights"):
            write()
    w = net.weights[0]
    with pytest.raises(ValueError, match=r"to\('cpu'\)"):
        w += 1
    with pytest.raises(TypeError, match="replace the entry"):
        net.weights[0] = W
    # reading and arithmetic work, and give plain writable arrays
    doubled = 2 * W
    assert type(doubled) is np.ndarray
    doubled[...] = 0
    copied = W.copy()
    copied[0, 0] = 5.0
    assert float(np.abs(np.array(W)).sum()) > 0


def test_set_weights_set_params_to_and_copy(backend):
    for device in ("cpu", "cuda"):
        net = fb.MLP([3, 4, 2], dtype="float64", device=device, seed=0)
        rng = np.random.default_rng(0)
        ws = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
        bs = [rng.normal(size=4), rng.normal(size=2)]
        net.set_weights(ws, bs)
        for got, want in zip(net.weights + net.biases, ws + bs):
            np.testing.assert_array_equal(got, want)
        flat = rng.normal(size=net.n_params)
        net.set_params(flat)
        np.testing.assert_array_equal(net.params, flat)
        with pytest.raises(ValueError, match="shape"):
            net.set_params(flat[:-1])
        with pytest.raises(ValueError, match=r"weights\[1\]"):
            net.set_weights([ws[0], ws[0]], bs)
        with pytest.raises(TypeError, match="weights"):
            net.set_weights(ws[0], bs)
        clone = net.copy()
        assert clone.device == net.device
        np.testing.assert_array_equal(clone.params, net.params)
    cpu = fb.MLP([3, 4, 2], dtype="float64", seed=1)
    X, Y = data(10, 3, 2, "mse")
    cpu.backward(X, Y)
    params, grads = np.array(cpu.params), np.array(cpu.grads)
    assert cpu.to("cuda") is cpu and cpu.device == "cuda"
    np.testing.assert_array_equal(cpu.params, params)
    np.testing.assert_array_equal(cpu.grads, grads)
    assert cpu.to("cpu").device == "cpu"
    np.testing.assert_array_equal(cpu.params, params)
    cpu.weights[0][...] = 0  # views again
    assert not np.array(cpu.params)[:12].any()


def test_training_continues_across_a_move(backend):
    """Two epochs on the CPU, then the network (and its optimizer's state) to the device: the
    same as four epochs on the CPU."""
    X, Y = data(200, 8, 3, "cross_entropy", seed=2)
    ref = fb.MLP([8, 12, 3], loss="cross_entropy", dtype="float64", seed=0)
    opt_ref = fb.Adam(0.01)
    fb.Trainer(ref, opt_ref, epochs=4, seed=3, progress=False).fit(X, Y)
    net = fb.MLP([8, 12, 3], loss="cross_entropy", dtype="float64", seed=0)
    opt = fb.Adam(0.01)
    fb.Trainer(net, opt, epochs=2, seed=3, progress=False).fit(X, Y)
    net.to("cuda")
    fb.Trainer(net, opt, epochs=2, seed=3, progress=False).fit(X, Y, initial_epoch=2)
    assert opt.steps == opt_ref.steps
    assert rel(net.params, ref.params) < 1e-10


def test_by_hand_clipping_and_noise(backend):
    cpu, gpu = pair([5, 7, 3], activation="tanh", loss="cross_entropy")
    X, Y = data(30, 5, 3, "cross_entropy")
    for net in (cpu, gpu):
        net.backward(X, Y)
    assert abs(fb.clip_grad_norm(gpu, 0.1) - fb.clip_grad_norm(cpu, 0.1)) < 1e-12
    assert rel(gpu.grads, cpu.grads) < 1e-12
    fb.clip_grad_value(cpu, 0.01), fb.clip_grad_value(gpu, 0.01)
    assert rel(gpu.grads, cpu.grads) < 1e-12
    nc, ng = fb.GradientNoise(0.1, seed=4), fb.GradientNoise(0.1, seed=4)
    nc.apply(cpu), ng.apply(gpu)
    assert rel(gpu.grads, cpu.grads) < 1e-12


def test_save_load_and_checkpoint(backend, tmp_path):
    net = fb.MLP([4, 6, 2], loss="cross_entropy", dtype="float64", seed=0, device="cuda")
    opt = fb.Adam(0.01)
    X, Y = data(60, 4, 2, "cross_entropy")
    history = fb.Trainer(net, opt, epochs=2, seed=1, progress=False).fit(X, Y)
    net.save(tmp_path / "m.npz", optimizer=opt, history=history)
    ck = fb.load_checkpoint(tmp_path / "m.npz")
    assert ck.model.device == "cpu"
    np.testing.assert_array_equal(ck.model.params, net.params)
    np.testing.assert_array_equal(ck.model.to("cuda").forward(X), net.forward(X))
    for key, value in opt.state_dict()["core"]["buffers"].items():
        np.testing.assert_array_equal(ck.optimizer.state_dict()["core"]["buffers"][key], value)


def test_lr_find_on_the_device(backend):
    results = []
    for device in ("cpu", "cuda"):
        net = fb.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", seed=0, device=device)
        X, Y = data(200, 5, 3, "cross_entropy")
        results.append(fb.lr_find(net, X, Y, num_steps=30, seed=2))
    np.testing.assert_allclose(results[1].losses, results[0].losses, rtol=1e-9)
    assert results[1].suggestion == results[0].suggestion


def test_float32_fit_stays_close(backend):
    """float32 on the device against float32 on the CPU: not the same rounding, the same
    training."""
    X, Y = data(400, 10, 4, "cross_entropy", seed=1)
    losses = []
    for device in ("cpu", "cuda"):
        net = fb.MLP(
            [10, 32, 32, 4], activation="tanh", loss="cross_entropy", seed=0, device=device
        )
        h = fb.Trainer(
            net, fb.SGD(0.05, momentum=0.9), batch_size=32, epochs=3, seed=1, progress=False
        ).fit(X, Y)
        losses.append(h.train_loss)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)


def test_device_array_inputs_and_errors(backend):
    net = fb.MLP([3, 4, 2], loss="cross_entropy", dtype="float64", seed=0, device="cuda")
    module = net.backend.module
    X, Y = data(10, 3, 2, "cross_entropy")
    Xd, Yd = net.backend.upload(X, Y.astype(np.int32))
    assert Xd.shape == (10, 3) and Xd.dtype == "float64" and Yd.dtype == "int32"
    np.testing.assert_array_equal(Xd.to_numpy(), X)
    assert net.core.evaluate(Xd, Yd) == net.core.evaluate(X, Y.astype(np.int32))
    with pytest.raises(ValueError, match="label out of range"):
        net.core.evaluate(Xd, module.DeviceArray(np.full(10, 7, dtype=np.int32)))
    with pytest.raises(ValueError, match="features"):
        net.core.forward(module.DeviceArray(np.zeros((4, 5))))
    with pytest.raises(ValueError, match="dtype"):
        net.core.forward(module.DeviceArray(np.zeros((4, 3), dtype=np.float32)))
    with pytest.raises(TypeError):
        module.DeviceArray(np.zeros(3, dtype=np.int64))


def test_threads_train_two_gpu_networks_at_once(backend):
    """Each network has its own stream and buffers: two threads, two fits, the results of
    two fits in a row."""
    from concurrent.futures import ThreadPoolExecutor

    X, Y = data(300, 8, 3, "cross_entropy", seed=2)

    def run(seed):
        net = fb.MLP([8, 16, 3], loss="cross_entropy", seed=seed, device="cuda")
        fb.Trainer(net, fb.Adam(0.01), epochs=3, seed=seed, progress=False).fit(X, Y)
        return np.array(net.params)

    alone = [run(0), run(1)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(run, [0, 1]))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)


def test_no_warning_from_a_plain_gpu_fit(backend):
    net = fb.MLP([4, 5, 2], device="cuda", seed=0)
    X, Y = data(40, 4, 2, "mse")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fb.Trainer(net, fb.SGD(0.01), epochs=2, progress=False).fit(X, Y)
    assert repr(net).endswith("device='cuda')")


def test_stop_ends_a_gpu_fit_after_its_epoch(backend):
    # A GPU epoch is queued whole: the token is read when the epoch ends, not between batches.
    X, Y = data(200, 8, 3, "cross_entropy", seed=2)
    net = fb.MLP([8, 12, 3], loss="cross_entropy", seed=0, device="cuda")
    trainer = fb.Trainer(
        net,
        fb.Adam(0.01),
        epochs=6,
        batch_size=16,
        progress=False,
        callbacks=[lambda epoch, logs: trainer.stop() if epoch == stop_at else None],
    )
    stop_at = 1
    history = trainer.fit(X, Y)
    assert history.n_epochs == 2 and history.stop_reason == "stopped"
    assert history.stopped_epoch == 1 and np.isfinite(net.params).all()
    stop_at = -1
    assert trainer.fit(X, Y).n_epochs == 6  # the next fit starts with the token cleared


def test_a_daemon_thread_training_on_the_gpu_at_exit_leaves_a_clean_exit(backend):
    # The exit waits for the GPU epoch in flight instead of letting the thread come back into
    # a finalising interpreter (pybind11's GIL guard then ends the process) or calling into a
    # CUDA runtime being torn down. On the emulation the window is narrow and seldom hit; on a
    # GPU the runtime's teardown widens it.
    from isolated import describe, run_python

    done = run_python(
        """
        import threading, time, numpy as np, fastbp as fb
        rng = np.random.default_rng(0)
        X = rng.normal(size=(4000, 64)).astype(np.float32); y = rng.integers(0, 10, 4000)
        net = fb.MLP([64, 256, 256, 10], loss="cross_entropy", seed=0, device="cuda")
        trainer = fb.Trainer(net, fb.SGD(0.01), epochs=500, progress=False)
        threading.Thread(target=trainer.fit, args=(X, y), daemon=True).start()
        time.sleep(1.0)
        print("main ends", flush=True)
        """,
        env=dict(os.environ),  # the fixture's FASTBP_CUDA_EMULATION setting
    )
    assert done.returncode == 0 and done.stdout == "main ends\n", describe(done)
    assert done.stderr == "", describe(done)


def test_bf16_products_are_a_cpu_mode(backend):
    net = fb.MLP([8, 4], seed=0, device="cuda")
    with pytest.raises(ValueError, match="matmul_precision='bfloat16' is a CPU mode"):
        fb.Trainer(net, fb.SGD(lr=0.1), matmul_precision="bfloat16")
    # the module's own guard, for a configuration that did not come through Trainer
    opt = fb.SGD(lr=0.1)
    X, Y = np.ones((4, 8), np.float32), np.zeros((4, 4), np.float32)
    ec = fb._core.EpochConfig()
    ec.bf16_products = True
    with pytest.raises(ValueError, match="CUDA backend has none"):
        net.backend.train_epoch(
            net.core,
            opt.state_for(net),
            opt.config(),
            *net.backend.upload(X, Y),
            net.backend.snapshot(net.core),
            ec,
            None,
        )
