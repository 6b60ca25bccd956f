#!/usr/bin/env python
"""fastbp against scikit-learn, PyTorch (eager and torch.compile) and JAX: the same network,
data, batch size, optimizer and dtype (float32), and the same initial weights (but for
scikit-learn, which draws its own), trained for a few epochs by each library (issues #4 and
"Lead the compiled peers too").

    python bench/compare.py                       # all four configurations, all installed peers
    python bench/compare.py --config wide --epochs 2 --peers fastbp,torch,jax
    python bench/compare.py --quick               # smoke test: fewer samples, one epoch
    python bench/compare.py --memory --scaling --json results.json
    python bench/compare.py --check --no-compare  # the JAX peer trains what fastbp trains
    python bench/compare.py --width-sweep --depth-sweep --threads-sweep --no-compare
    python bench/compare.py --subnormal --no-compare
    python bench/compare.py --device cuda         # on a GPU: fastbp vs PyTorch (bench/gpu_peers.py)

On machines that set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE globally, run it as
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/compare.py``.

Every measurement (one library on one configuration) runs in its own subprocess, so that the
thread pools of the libraries (OpenMP, fastbp's OpenBLAS, numpy's OpenBLAS, torch's intra-op
pool, XLA's) never compete, and peak memory is that of one library. Each library trains one
warm-up epoch, then ``--epochs`` timed epochs: more for a fast one, so that they take at least
``--min-time`` seconds (tiny-online's epoch takes milliseconds, and a shared machine's speed
changes from one moment to the next); fewer for a slow one, so that one measurement stays
within ``--run-budget`` seconds. The table gives the median seconds per epoch. Compile time is
never part of an epoch: it is reported apart ("compile s").

Columns: s/epoch (median); GFLOP/s = 6 x multiply-adds per sample x samples / s (forward 2,
backward 4: the input gradient of the first layer is counted although nobody computes it);
%GEMM = that rate as a share of this machine's float32 GEMM rate (best of a few 2048-cube
numpy matmuls on the same number of threads); "fastbp x" = peer s/epoch / fastbp s/epoch (above
1: fastbp is faster); loss = mean training loss over (up to) 10,000 training rows after
training (the warm-up and the "epochs" timed epochs, so libraries timed for more epochs reach a
lower loss), computed the same way for every library (a check that all of them learn the task);
"other CPUs" = how many CPUs other processes (and the hypervisor's steal) kept busy on average
while the run was timed, from /proc/stat: above 0.1 (marked "!") the timing is suspect.
A second table names the fastest peer of each configuration and fastbp's speed over it.
A peer that cannot run here shows "n/a" and the reason; the suite goes on.

Per library:
  fastbp   fastbp.Trainer(...).fit: one core call per epoch (shuffle, gather, forward, backward,
           step in C++), plus its per-epoch Python work (statistics on 512 rows); the time per
           epoch is the wall time between the trainer's epoch-end callbacks. The core-call time
           (history.epoch_time) is kept in the JSON as "core_s".
  sklearn  MLPClassifier / MLPRegressor, alpha=0, max_iter=1 + warm_start=True: each fit() is
           one epoch (checked: n_iter_ == 1 and t_ grows by n_samples). Note: sklearn builds a new
           optimizer at every fit(), so momentum / Adam moments restart each epoch (the work per
           epoch is the same).
  torch    eager CPU, nn.Sequential, the fastest plain loop: preloaded tensors, one randperm
           gather per epoch, slicing, zero_grad(set_to_none=True), loss.backward(), opt.step()
           with the fused update (fused=True; foreach=True where this torch lacks it).
           The mse configuration uses nn.MSELoss (mean over the batch of sum_k e^2, i.e. twice
           fastbp's 1/2 sum_k e^2 for one output) with half the learning rate: the same updates.
  torch.compile
           the same loop with the per-batch step (zero_grad, forward, loss, backward, step)
           under torch.compile(dynamic=False), inductor on CPU: one static graph per batch shape
           (full batches, the last partial one); dynamo splits the step where torch.optim asks it
           to. Compile time = first epoch minus the median timed epoch, on an empty inductor
           cache; a second warm-up epoch precedes the timed ones. If compiling fails (no C++
           compiler, ...), "n/a" with the reason.
  jax      bench/peer_jax.py: the whole epoch is one jax.jit-compiled function (permutation,
           one gather, a lax.scan over the full batches, the last partial batch as a second
           traced step inside the same function: exact, no padding), data on the device,
           parameters and optimizer state donated; torch.optim's update rules written out.
           Compile time = lower() + compile(). XLA:CPU has no thread setting: with --threads
           below the CPU count the worker is pinned to that many CPUs. --check (and
           bench/test_peer_jax.py) compares its weights after one epoch with fastbp's.

Other modes (add --no-compare to run only them): --memory, --scaling (as before); --check;
--width-sweep / --depth-sweep: GFLOP/s of fastbp and --sweep-peers as the layers widen (32 to
2048, 4 weight layers) or deepen (2 to 64 weight layers of 256), samples set for about
--sweep-gflop GFLOP per epoch; --threads-sweep: --sweep-config on 1, 2, 4, ... all CPUs, every
library pinned to its CPUs; --subnormal: a 60-hidden-layer sigmoid network (width 32, batch 32,
plain SGD) against the same with relu, per library (fastbp with its default subnormal flushing
and without: fb.set_flush_denormals(False)), and how small fastbp's gradients get.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Any, NamedTuple

import numpy as np

RESULT_TAG = "@@RESULT@@"
FASTBP_NO_FLUSH = "fastbp (no flush)"  # fb.set_flush_denormals(False): IEEE gradual underflow
# The environment as the user gave it. Workers get exactly this: importing a library can change
# os.environ for the rest of the process and its children (fastbp sets OMP_WAIT_POLICY=PASSIVE
# when unset, sklearn sets KMP_* variables), which would silently change how the *other*
# libraries' OpenMP runtimes behave in later workers. The parent process imports none of them.
CLEAN_ENV = dict(os.environ)
WATCHED_ENV = ("OMP_", "GOMP_", "KMP_", "OPENBLAS_", "MKL_")

# name: layers, hidden activation, batch, samples, optimizer, loss (exactly as issue #4 lists)
CONFIGS: dict[str, dict[str, Any]] = {
    "deep-narrow": dict(
        layers=[64] + [64] * 20 + [10],
        activation="sigmoid",
        batch=32,
        samples=10_000,
        optimizer=("sgd", dict(lr=0.01, momentum=0.9)),
        loss="cross_entropy",
    ),
    "mnist-like": dict(
        layers=[784, 256, 128, 10],
        activation="relu",
        batch=128,
        samples=60_000,
        optimizer=("adam", dict(lr=1e-3)),
        loss="cross_entropy",
    ),
    "wide": dict(
        layers=[1024, 2048, 2048, 10],
        activation="relu",
        batch=512,
        samples=20_000,
        optimizer=("adam", dict(lr=1e-3)),
        loss="cross_entropy",
    ),
    "tiny-online": dict(
        layers=[2, 16, 16, 1],
        activation="tanh",
        batch=1,
        samples=5_000,
        optimizer=("sgd", dict(lr=0.01, momentum=0.0)),
        loss="mse",
    ),
}
PEERS = ("fastbp", "sklearn", "torch", "torch.compile", "jax")
PEER_MODULE = {
    "fastbp": "fastbp",
    "sklearn": "sklearn",
    "torch": "torch",
    "torch.compile": "torch",
    "jax": "jax",
    "torch.cudagraph": "torch",
}
COMPILED = ("torch.compile", "jax")  # peers whose compile time is reported apart
SKLEARN_ACT = {"sigmoid": "logistic", "relu": "relu", "tanh": "tanh"}
LOSS_ROWS = 10_000  # rows on which the final training loss is computed


# --------------------------------------------------------------------------------- helpers
def available(peer: str) -> bool:
    """Whether the peer's library is installed (found without importing it: see CLEAN_ENV)."""
    return importlib.util.find_spec(PEER_MODULE[peer]) is not None


def macs_per_sample(layers: list[int]) -> int:
    return sum(a * b for a, b in zip(layers[:-1], layers[1:]))


def gflops(layers: list[int], samples: int, seconds: float) -> float:
    return 6.0 * macs_per_sample(layers) * samples / seconds / 1e9


def quick_samples(cfg: dict[str, Any]) -> int:
    return max(cfg["samples"] // 10, 4 * cfg["batch"], 256)


def make_data(cfg: dict[str, Any], samples: int, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal float32 inputs; targets from a fixed random teacher network
    (n_in -> 32 tanh -> n_out): argmax labels (int32) for classification, the (standardised)
    teacher output (float32, shape (n,) for one output) for regression."""
    n_in, n_out = cfg["layers"][0], cfg["layers"][-1]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, n_in), dtype=np.float32)
    W1 = (rng.standard_normal((n_in, 32)) / np.sqrt(n_in)).astype(np.float32)
    W2 = (rng.standard_normal((32, n_out)) / np.sqrt(32)).astype(np.float32)
    b2 = (0.1 * rng.standard_normal(n_out)).astype(np.float32)
    out = np.empty((samples, n_out), np.float32)
    for i in range(0, samples, 8192):  # chunks: no large float64 temporaries
        out[i : i + 8192] = np.tanh(2.0 * (X[i : i + 8192] @ W1)) @ W2 + b2
    if cfg["loss"] == "cross_entropy":
        return X, out.argmax(axis=1).astype(np.int32)
    y = (out - out.mean(0)) / out.std(0)
    return X, (y[:, 0] if n_out == 1 else y).astype(np.float32)


def init_weights(cfg: dict[str, Any], seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Initial (W, b) per layer, as fastbp's init="auto" draws them: He normal for relu,
    Glorot uniform otherwise (the output layer uses the scheme of the hidden activation too);
    shared by fastbp and torch so that both start from the same network."""
    rng = np.random.default_rng(seed)
    layers = cfg["layers"]
    out = []
    for n_in, n_out in zip(layers[:-1], layers[1:]):
        if cfg["activation"] == "relu":
            W = rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out))
        else:
            lim = np.sqrt(6.0 / (n_in + n_out))
            W = rng.uniform(-lim, lim, (n_in, n_out))
        out.append((W.astype(np.float32), np.zeros(n_out, np.float32)))
    return out


def train_loss(
    cfg: dict[str, Any], outputs: np.ndarray, y: np.ndarray
) -> tuple[float, float | None]:
    """(mean loss, accuracy or None) from a library's outputs: probabilities for
    classification, predictions for regression."""
    if cfg["loss"] == "cross_entropy":
        p = np.clip(outputs.astype(np.float64), 1e-12, 1.0)
        loss = float(-np.mean(np.log(p[np.arange(len(y)), y])))
        return loss, float(np.mean(outputs.argmax(1) == y))
    e = outputs.reshape(len(y), -1).astype(np.float64) - y.reshape(len(y), -1)
    return float(0.5 * np.mean(np.sum(e * e, axis=1))), None


class Budget(NamedTuple):
    """The wall time one library's timed epochs of one configuration may take (max_s,
    --run-budget) and should at least take (min_s, --min-time)."""

    max_s: float
    min_s: float = 0.0


def n_timed_epochs(warmup_s: float, epochs: int, budget: Budget) -> int:
    """Timed epochs after a warm-up epoch that took warmup_s: ``epochs``, more when they would
    take less than budget.min_s (as timeit's autorange: an epoch of a few milliseconds is timed
    many times, so that the median is not that of one moment of a shared machine), fewer when
    they would take more than budget.max_s; at least 1."""
    per = max(warmup_s, 1e-9)
    wanted = max(epochs, math.ceil(budget.min_s / per))
    return max(1, min(wanted, int(budget.max_s / per)))


def vm_status(key: str) -> int | None:
    """VmRSS / VmHWM of this process in bytes (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    hwm = vm_status("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class Interference:
    """CPU time that other processes (and the hypervisor: steal) took while a measurement ran,
    from /proc/stat: the machine's busy time minus this process's own CPU time. On a shared
    machine this flags timings that others disturbed (Linux only; zeros elsewhere)."""

    def __init__(self) -> None:
        self.foreign = self.steal = 0.0
        self.wall = 0.0

    @staticmethod
    def _snap() -> tuple[float, float, float, float]:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            hz = os.sysconf("SC_CLK_TCK")
            busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / hz
            steal = (v[7] if len(v) > 7 else 0) / hz
        except (OSError, ValueError, IndexError):
            busy = steal = float("nan")
        return time.perf_counter(), busy, steal, ru.ru_utime + ru.ru_stime

    def __enter__(self) -> Interference:
        self._start = self._snap()
        return self

    def __exit__(self, *exc: Any) -> None:
        end = self._snap()
        self.wall += end[0] - self._start[0]
        self.foreign += max(0.0, (end[1] - self._start[1]) - (end[3] - self._start[3]))
        self.steal += end[2] - self._start[2]

    def result(self) -> dict[str, float]:
        w = max(self.wall, 1e-9)
        # average number of CPUs busy with other work during the measurement
        return dict(
            foreign_cpus=self.foreign / w,
            steal_cpus=self.steal / w,
            foreign_s=self.foreign + self.steal,
            wall_s=self.wall,
        )


def limit_numpy_blas(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
    except ImportError:
        pass


# --------------------------------------------------------------------------------- fastbp
def fastbp_trainer_cls() -> Any:
    import fastbp as fb

    if hasattr(fb, "Trainer"):
        return fb.Trainer
    from fastbp.train import Trainer

    return Trainer


def fastbp_net(cfg: dict[str, Any], threads: int, device: str = "cpu") -> tuple[Any, Any]:
    import fastbp as fb

    fb.set_num_threads(threads)
    net = fb.MLP(
        cfg["layers"],
        activation=cfg["activation"],
        loss=cfg["loss"],
        dtype="float32",
        seed=0,
        device=device,
    )
    init = init_weights(cfg)
    net.set_weights([W for W, _ in init], [b for _, b in init])
    kind, hp = cfg["optimizer"]
    opt = fb.SGD(hp["lr"], momentum=hp["momentum"]) if kind == "sgd" else fb.Adam(hp["lr"])
    return net, opt


def run_fastbp(cfg, X, y, threads, epochs, budget, device="cpu", matmul_precision="highest"):
    """fastbp's epochs on the CPU, or with device="cuda" on the GPU (--device cuda); with
    matmul_precision="bfloat16", in mixed precision (--bf16)."""
    from fastbp.train import Callback

    Trainer = fastbp_trainer_cls()
    net, opt = fastbp_net(cfg, threads, device)

    def trainer(n_epochs, seed, callbacks=()):
        return Trainer(
            net,
            opt,
            batch_size=cfg["batch"],
            epochs=n_epochs,
            shuffle=True,
            seed=seed,
            callbacks=callbacks,
            progress=False,
            matmul_precision=matmul_precision,
        )

    t0 = time.perf_counter()
    trainer(1, 0).fit(X, y)
    warmup = time.perf_counter() - t0
    n = n_timed_epochs(warmup, epochs, budget)

    class Clock(Callback):
        def __init__(self):
            self.stamps = []

        def on_train_begin(self, trainer):
            self.stamps.append(time.perf_counter())

        def on_epoch_end(self, trainer, epoch, logs):
            self.stamps.append(time.perf_counter())

    clock = Clock()
    with Interference() as noise:
        hist = trainer(n, 1, [clock]).fit(X, y)
    times = list(np.diff(clock.stamps))
    rows = min(len(X), LOSS_ROWS)
    loss, acc = train_loss(cfg, net.forward(X[:rows]), y[:rows])
    gpu = dict(graphs_captured=net.core.graphs_captured) if device == "cuda" else {}
    return dict(
        times=times,
        core_s=list(map(float, hist.epoch_time)),
        warmup_s=warmup,
        loss=loss,
        accuracy=acc,
        core_train_loss=float(hist.train_loss[-1]),
        first_layer_grad_norm=[float(g) for g in np.asarray(hist.grad_norms)[:, 0]],
        **gpu,
        **noise.result(),
    )


# --------------------------------------------------------------------------------- sklearn
def sklearn_model(cfg: dict[str, Any]) -> Any:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    kind, hp = cfg["optimizer"]
    kw = dict(
        hidden_layer_sizes=tuple(cfg["layers"][1:-1]),
        activation=SKLEARN_ACT[cfg["activation"]],
        solver=kind,
        batch_size=cfg["batch"],
        learning_rate_init=hp["lr"],
        alpha=0.0,
        max_iter=1,
        shuffle=True,
        random_state=0,
        tol=0.0,
        n_iter_no_change=10**9,
        warm_start=True,
        early_stopping=False,
    )
    if kind == "sgd":
        kw.update(momentum=hp["momentum"], nesterovs_momentum=False, learning_rate="constant")
    else:
        kw.update(beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    cls = MLPClassifier if cfg["loss"] == "cross_entropy" else MLPRegressor
    return cls(**kw)


def run_sklearn(cfg, X, y, threads, epochs, budget):
    from sklearn.exceptions import ConvergenceWarning

    limit_numpy_blas(threads)
    warnings.simplefilter("ignore", ConvergenceWarning)
    model = sklearn_model(cfg)
    t0 = time.perf_counter()
    model.fit(X, y)
    warmup = time.perf_counter() - t0
    n = n_timed_epochs(warmup, epochs, budget)
    times = []
    noise = Interference()
    for _ in range(n):
        t_before = model.t_
        t0 = time.perf_counter()
        with noise:
            model.fit(X, y)
        times.append(time.perf_counter() - t0)
        if model.n_iter_ != 1 or model.t_ - t_before != len(X):
            raise RuntimeError(
                f"sklearn fit() did not run exactly one epoch "
                f"(n_iter_={model.n_iter_}, t_ grew by {model.t_ - t_before})"
            )
    rows = min(len(X), LOSS_ROWS)
    Xr = X[:rows]
    out = model.predict_proba(Xr) if cfg["loss"] == "cross_entropy" else model.predict(Xr)
    loss, acc = train_loss(cfg, out, y[:rows])
    return dict(
        times=times,
        warmup_s=warmup,
        loss=loss,
        accuracy=acc,
        dtype=str(model.coefs_[0].dtype),
        one_epoch_per_fit=True,
        **noise.result(),
    )


# --------------------------------------------------------------------------------- torch
def torch_sequential(cfg: dict[str, Any], init: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    """The configuration's network as a torch.nn.Sequential on the CPU, from the weights
    `init` (the same initial weights every library starts from)."""
    import torch
    from torch import nn

    act = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}[cfg["activation"]]
    mods: list[Any] = []
    for i, (W, b) in enumerate(init):
        lin = nn.Linear(W.shape[0], W.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if i < len(init) - 1:
            mods.append(act())
    return nn.Sequential(*mods)


def torch_model(cfg: dict[str, Any], threads: int) -> tuple[Any, Any, Any]:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    model = torch_sequential(cfg, init_weights(cfg))
    kind, hp = cfg["optimizer"]
    if cfg["loss"] == "cross_entropy":
        loss_fn, lr = nn.CrossEntropyLoss(), hp["lr"]
    else:
        loss_fn, lr = nn.MSELoss(), hp["lr"] / 2  # MSELoss = 2 x (1/2 sum_k e^2) for one output
    rule, kw = (
        (torch.optim.SGD, dict(lr=lr, momentum=hp["momentum"]))
        if kind == "sgd"
        else (torch.optim.Adam, dict(lr=lr))
    )
    # its fastest update: one fused kernel over every parameter where this torch has it for
    # the CPU (as gpu_peers.py on the GPU), else the multi-tensor loop; the default is a loop
    # over the parameters, 4-13% of an epoch slower
    try:
        opt = rule(model.parameters(), fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        opt = rule(model.parameters(), foreach=True, **kw)
    return model, opt, loss_fn


def run_torch(cfg, X, y, threads, epochs, budget, compiled=False):
    import torch

    model, opt, loss_fn = torch_model(cfg, threads)
    Xt = torch.from_numpy(X)
    yt = (
        torch.from_numpy(y.astype(np.int64))
        if cfg["loss"] == "cross_entropy"
        else torch.from_numpy(y.reshape(len(y), -1))
    )
    N, bs = len(X), cfg["batch"]

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()

    if compiled:
        # One static graph per batch shape (the full batch and the remainder): dynamic=True
        # would trade the full batches' speed for one graph that fits both.
        step = torch.compile(step, dynamic=False)

    def epoch():
        perm = torch.randperm(N)
        Xs, ys = Xt[perm], yt[perm]
        for i in range(0, N, bs):
            step(Xs[i : i + bs], ys[i : i + bs])

    torch.manual_seed(0)
    t0 = time.perf_counter()
    try:
        epoch()
    except Exception as e:  # inductor without a working C++ compiler, an unsupported op...
        if not compiled:
            raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return dict(error=f"n/a: torch.compile failed: {type(e).__name__}: {reason}"[:300])
    warmup = time.perf_counter() - t0
    if compiled:
        # The first epoch compiled every graph (both batch shapes, the optimizer's first step
        # and its later ones); a second warm-up epoch gives the steady time for the budget.
        t0 = time.perf_counter()
        epoch()
        warmup_steady = time.perf_counter() - t0
    n = n_timed_epochs(warmup_steady if compiled else warmup, epochs, budget)
    times = []
    noise = Interference()
    for _ in range(n):
        t0 = time.perf_counter()
        with noise:
            epoch()
        times.append(time.perf_counter() - t0)
    rows = min(N, LOSS_ROWS)
    with torch.inference_mode():
        out = model(Xt[:rows])
        if cfg["loss"] == "cross_entropy":
            out = torch.softmax(out, dim=1)
    loss, acc = train_loss(cfg, out.numpy(), y[:rows])
    extra = {}
    if compiled:
        extra["compile_s"] = max(0.0, warmup - statistics.median(times))
    return dict(
        times=times,
        warmup_s=warmup,
        loss=loss,
        accuracy=acc,
        torch_threads=torch.get_num_threads(),
        **extra,
        **noise.result(),
    )


def run_torch_compile(cfg, X, y, threads, epochs, budget):
    return run_torch(cfg, X, y, threads, epochs, budget, compiled=True)


# --------------------------------------------------------------------------------- jax
def run_jax(cfg, X, y, threads, epochs, budget):
    """XLA:CPU has no thread-count setting: run_worker pins a JAX worker to ``threads`` CPUs
    (its thread pool sizes itself from the CPUs the process may use)."""
    import jax
    import peer_jax

    jax.config.update("jax_platforms", "cpu")
    run = peer_jax.build(cfg, X, y, init_weights(cfg))
    params, state = run.params, run.state

    def epoch(key):
        nonlocal params, state
        params, state, loss = run.epoch(params, state, run.X, run.Y, key)
        jax.block_until_ready((params, state, loss))

    t0 = time.perf_counter()
    epoch(jax.random.key(0))
    warmup = time.perf_counter() - t0
    n = n_timed_epochs(warmup, epochs, budget)
    times = []
    noise = Interference()
    for e in range(n):
        key = jax.random.key(1 + e)  # made before the clock starts, as the other peers' data
        t0 = time.perf_counter()
        with noise:
            epoch(key)
        times.append(time.perf_counter() - t0)
    rows = min(len(X), LOSS_ROWS)
    loss, acc = train_loss(cfg, run.predict(params, X[:rows]), y[:rows])
    return dict(
        times=times,
        warmup_s=warmup,
        compile_s=run.compile_s,
        loss=loss,
        accuracy=acc,
        **noise.result(),
    )


RUNNERS = {
    "fastbp": run_fastbp,
    "sklearn": run_sklearn,
    "torch": run_torch,
    "torch.compile": run_torch_compile,
    "jax": run_jax,
}


# --------------------------------------------------------------------------------- memory
def memory_run(cfg: dict[str, Any], peer: str, X, y, threads: int) -> dict[str, Any]:
    """Peak RSS growth over one fresh epoch of training (network, optimizer and working
    memory all created inside the measured window; the data set is already loaded)."""
    import gc

    if peer == "torch.compile":
        return dict(error="n/a: not measured (the compiler's own memory would dominate)")
    if peer == "torch":
        import torch  # noqa: F401  (import before the baseline)
    elif peer == "jax":
        import jax
        import peer_jax

        jax.config.update("jax_platforms", "cpu")
        # Compiled before the baseline: the window holds what an epoch needs (fresh
        # parameters, optimizer state, working memory), not the compiler's own memory.
        run = peer_jax.build(cfg, X, y, init_weights(cfg))
    elif peer == "sklearn":
        import sklearn.neural_network  # noqa: F401
    else:
        import fastbp  # noqa: F401

        fastbp_trainer_cls()
    gc.collect()
    base = vm_status("VmRSS")
    exact = reset_peak_rss()
    if not exact:
        base = peak_rss()
    t0 = time.perf_counter()
    if peer == "fastbp":
        net, opt = fastbp_net(cfg, threads)
        fastbp_trainer_cls()(
            net, opt, batch_size=cfg["batch"], epochs=1, shuffle=True, seed=0, progress=False
        ).fit(X, y)
    elif peer == "sklearn":
        from sklearn.exceptions import ConvergenceWarning

        limit_numpy_blas(threads)
        warnings.simplefilter("ignore", ConvergenceWarning)
        sklearn_model(cfg).fit(X, y)
    elif peer == "jax":
        params = peer_jax.device_params(init_weights(cfg))
        state = peer_jax.initial_state(cfg, params)
        jax.block_until_ready(run.epoch(params, state, run.X, run.Y, jax.random.key(0)))
    else:
        import torch

        model, opt, loss_fn = torch_model(cfg, threads)
        Xt = torch.from_numpy(X)
        yt = (
            torch.from_numpy(y.astype(np.int64))
            if cfg["loss"] == "cross_entropy"
            else torch.from_numpy(y.reshape(len(y), -1))
        )
        perm = torch.randperm(len(X))
        Xs, ys = Xt[perm], yt[perm]
        for i in range(0, len(X), cfg["batch"]):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xs[i : i + cfg["batch"]]), ys[i : i + cfg["batch"]]).backward()
            opt.step()
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    n_params = sum(a * b + b for a, b in zip(cfg["layers"][:-1], cfg["layers"][1:]))
    return dict(
        peak_growth_bytes=int(peak - base),
        exact_window=exact,
        seconds=seconds,
        data_bytes=int(X.nbytes + y.nbytes),
        param_bytes=4 * n_params,
    )


# --------------------------------------------------------------------------------- scaling
def forward_run(peer: str, threads: int, samples: int, reps: int) -> dict[str, Any]:
    """Inference on `samples` rows with the mnist-like network: fastbp net.forward vs torch
    under inference_mode (both return probabilities)."""
    cfg = CONFIGS["mnist-like"]
    rng = np.random.default_rng(7)
    X = rng.standard_normal((samples, cfg["layers"][0]), dtype=np.float32)
    if peer == "fastbp":
        net, _ = fastbp_net(cfg, threads)
        fn = lambda: net.forward(X)  # noqa: E731
    else:
        import torch

        model, _, _ = torch_model(cfg, threads)
        model.eval()
        Xt = torch.from_numpy(X)

        def fn():
            with torch.inference_mode():
                return torch.softmax(model(Xt), dim=1).numpy()

    fn()
    times = []
    noise = Interference()
    for _ in range(reps):
        t0 = time.perf_counter()
        with noise:
            fn()
        times.append(time.perf_counter() - t0)
    return dict(times=times, samples=samples, **noise.result())


# --------------------------------------------------------------------------------- check
# Tolerances of --check. Almost every weight agrees to float32 rounding (99.9% within 2e-7 in
# all four configurations); a few Adam weights differ more: Adam divides by sqrt(v), so where a
# gradient component is near zero, rounding changes that weight's step by a fraction of lr
# (torch and fastbp differ by as much: up to 1.2e-4 in wide at lr 1e-3).
CHECK_Q999 = 1e-6  # the 99.9th percentile of |difference| over all weights and biases
CHECK_MAX_SGD = 1e-5  # the largest |difference|, SGD
CHECK_MAX_ADAM_LR = 0.5  # the largest |difference|, Adam, as a multiple of lr


def jax_check(name: str, threads: int = 1, samples: int | None = None) -> dict[str, Any]:
    """One epoch of configuration `name` without shuffling, from the same initial weights, by
    fastbp and by the JAX peer; the largest weight and bias difference per layer.

    relu is replaced by tanh (same layers, batch, optimizer, loss): a relu pre-activation
    within rounding of 0 legitimately sends two float32 libraries apart (mnist-like, 6th batch:
    |z| = 1.8e-7 on a 784-term sum). The sample count leaves a last partial batch."""
    import jax
    import peer_jax

    jax.config.update("jax_platforms", "cpu")
    cfg = dict(CONFIGS[name])
    if cfg["activation"] == "relu":
        cfg["activation"] = "tanh"
    bs = cfg["batch"]
    n = samples or (6 * bs + bs // 2 if bs > 1 else 300)
    X, y = make_data(cfg, n)
    init = init_weights(cfg)
    net, opt = fastbp_net(cfg, threads)
    fastbp_trainer_cls()(net, opt, batch_size=bs, epochs=1, shuffle=False, progress=False).fit(X, y)
    jw = peer_jax.train_epochs(cfg, X, y, init, epochs=1, shuffle=False)
    diff_w = [np.abs(W - w).ravel() for (W, _), w in zip(jw, net.weights)]
    diff_b = [np.abs(b - bb) for (_, b), bb in zip(jw, net.biases)]
    every = np.concatenate(diff_w + diff_b)
    worst, q999 = float(np.max(every)), float(np.quantile(every, 0.999))
    change = [float(np.max(np.abs(w - W0))) for w, (W0, _) in zip(net.weights, init)]
    kind, hp = cfg["optimizer"]
    max_allowed = CHECK_MAX_ADAM_LR * hp["lr"] if kind == "adam" else CHECK_MAX_SGD
    return dict(
        config=name,
        activation=cfg["activation"],
        optimizer=cfg["optimizer"][0],
        samples=n,
        batch=bs,
        max_abs_diff=worst,
        q999_abs_diff=q999,
        max_abs_diff_weights=[float(d.max()) for d in diff_w],
        max_abs_diff_biases=[float(d.max()) for d in diff_b],
        max_weight_change=max(change),
        max_allowed=max_allowed,
        q999_allowed=CHECK_Q999,
        ok=bool(worst <= max_allowed and q999 <= CHECK_Q999),
    )


def grad_floor_run(cfg: dict[str, Any], X, y, threads: int, epochs: int) -> dict[str, Any]:
    """How small fastbp's weight gradients get: ``epochs`` epochs of per-batch backward + step
    from the benchmark's initial weights (a Python loop: not timed), recording the L2 norm of
    the first layer's weight gradient (in float64) and the share of weight-gradient entries
    that are subnormal (0 < |g| < 1.18e-38 in float32)."""
    net, opt = fastbp_net(cfg, threads)
    tiny = np.finfo(np.float32).tiny
    rng = np.random.default_rng(0)
    bs, n = cfg["batch"], len(X)
    first_norms = []
    subnormal = np.zeros(len(net.weights))
    entries = np.zeros(len(net.weights))
    for _ in range(epochs):
        order = rng.permutation(n)
        for i in range(0, n, bs):
            idx = order[i : i + bs]
            net.backward(X[idx], y[idx])
            first_norms.append(float(np.linalg.norm(net.grad_weights[0].astype(np.float64))))
            for layer, g in enumerate(net.grad_weights):
                a = np.abs(g)
                subnormal[layer] += np.count_nonzero((a > 0) & (a < tiny))
                entries[layer] += a.size
            opt.step(net)
    return dict(
        batches=len(first_norms),
        min_first_layer_grad_norm=min(first_norms),
        median_first_layer_grad_norm=float(np.median(first_norms)),
        subnormal_share_first_layer=float(subnormal[0] / entries[0]),
        subnormal_share_all_layers=float(subnormal.sum() / entries.sum()),
        subnormal_share_per_layer=list(map(float, subnormal / entries)),
    )


# --------------------------------------------------------------------------------- worker
def worker(spec: dict[str, Any]) -> dict[str, Any]:
    threads = spec["threads"]
    if spec["kind"] == "info":
        import fastbp

        src = os.path.dirname(os.path.abspath(fastbp.__file__))
        rev = subprocess.run(
            ["git", "-C", src, "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return dict(
            build=fastbp.build_info(),
            commit=rev.stdout.strip() if rev.returncode == 0 else None,
            env={k: v for k, v in sorted(os.environ.items()) if k.startswith(WATCHED_ENV)},
        )
    limit_numpy_blas(1)  # data generation must not start numpy's BLAS thread pool
    if spec["kind"] == "gemm_cuda":
        import gpu_peers

        return gpu_peers.gemm_rates(reps=spec.get("reps", 10))
    if spec["kind"] == "gemm":
        limit_numpy_blas(threads)
        a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((2048, 2048), dtype=np.float32)
        a @ b
        best = float("inf")
        for _ in range(spec.get("reps", 5)):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        return dict(seconds=best, gflops=2 * 2048**3 / best / 1e9)
    if spec["kind"] == "forward":
        return forward_run(spec["peer"], threads, spec["samples"], spec.get("reps", 5))
    if spec["kind"] == "check":
        return jax_check(spec["config"], threads)
    cfg = spec.get("cfg") or CONFIGS[spec["config"]]  # sweeps pass their network inline
    X, y = make_data(cfg, spec["samples"])
    if spec["kind"] == "memory":
        return memory_run(cfg, spec["peer"], X, y, threads)
    if spec["kind"] == "bf16_accuracy":
        return bf16_accuracy_run(cfg, X, y, threads, spec)
    if spec["kind"] == "grad_floor":
        if spec.get("keep_subnormals"):
            import fastbp

            fastbp.set_flush_denormals(False)
        return grad_floor_run(cfg, X, y, threads, spec["epochs"])
    if spec.get("keep_subnormals"):
        import fastbp

        fastbp.set_flush_denormals(False)  # IEEE gradual underflow: the cost without flushing
    if spec.get("flush_denormal"):
        import torch

        if not torch.set_flush_denormal(True):
            return dict(error="n/a: torch.set_flush_denormal is not supported on this CPU")
    budget = Budget(spec["budget"], spec.get("min_time", 0.0))
    if spec.get("device") == "cuda" and spec["peer"] == "fastbp":
        result = run_fastbp(cfg, X, y, threads, spec["epochs"], budget, device="cuda")
    elif spec.get("device") == "cuda":
        import gpu_peers

        run = gpu_peers.RUNNERS[spec["peer"]]
        init = init_weights(cfg)
        result = run(cfg, X, y, spec["epochs"], budget, init, n_timed_epochs, train_loss)
    elif spec.get("matmul_precision"):
        result = run_fastbp(
            cfg,
            X,
            y,
            threads,
            spec["epochs"],
            budget,
            matmul_precision=spec["matmul_precision"],
        )
    else:
        result = RUNNERS[spec["peer"]](cfg, X, y, threads, spec["epochs"], budget)
    result["cpus"] = len(usable_cpus())
    return result


class BusyProcesses:
    """n processes that loop on the CPU for as long as the block runs (--busy)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> BusyProcesses:
        cmd = [sys.executable, "-c", "while True: pass"]
        self.procs = [subprocess.Popen(cmd, env=CLEAN_ENV) for _ in range(self.n)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def run_worker(spec: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; returns its result or {"error": ...}.

    spec["pin"] = n runs the worker on the first n usable CPUs only (the thread sweep pins every
    library so); a JAX worker is pinned to ``threads`` CPUs whenever that is fewer than all,
    because pinning is the only way to give XLA:CPU fewer threads. A torch.compile worker gets
    a fresh inductor cache (unless TORCHINDUCTOR_CACHE_DIR is set), so that its compile time is
    that of a first run, not of a cache hit from the previous measurement."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", json.dumps(spec)]
    pin = spec.get("pin")
    if pin is None and spec.get("peer") == "jax" and spec["threads"] < len(usable_cpus()):
        pin = spec["threads"]
    preexec = None
    if pin and hasattr(os, "sched_setaffinity"):
        chosen = usable_cpus()[:pin]

        def preexec() -> None:
            os.sched_setaffinity(0, chosen)

    env, cache = CLEAN_ENV, None
    if spec.get("peer") == "torch.compile" and "TORCHINDUCTOR_CACHE_DIR" not in CLEAN_ENV:
        cache = tempfile.mkdtemp(prefix="fastbp-bench-inductor-")
        env = dict(CLEAN_ENV, TORCHINDUCTOR_CACHE_DIR=cache)
    try:
        p = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            preexec_fn=preexec,
        )
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout:.0f} s")
    finally:
        if cache:
            shutil.rmtree(cache, ignore_errors=True)
    for line in p.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    return dict(error=" | ".join(tail) or f"exit status {p.returncode}")


# --------------------------------------------------------------------------------- report
NOISY = 0.1  # other processes busy on this many CPUs on average: the timing is suspect


def fmt_noise(r: dict[str, Any]) -> str:
    """Average CPUs that other processes (+ steal) used while the run was timed; '!' when
    that may have distorted it."""
    if "foreign_cpus" not in r:
        return "-"
    other = r["foreign_cpus"] + r.get("steal_cpus", 0.0)
    if r.get("wall_s", 1.0) < 0.05:  # /proc/stat counts in 10 ms ticks: too few to divide
        return "-"
    # short runs need a few ticks of other work before they count as noisy
    return f"{other:.2f}" + ("!" if other > NOISY and r.get("foreign_s", 1.0) > 0.05 else "")


def fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.3f}" if s >= 0.1 else f"{s * 1e3:.2f}ms"


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "  ".join(
        h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))
    )
    print(line)
    print("-" * len(line))
    for r in rows:
        print(
            "  ".join(
                str(c).ljust(w) if i < 2 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(r, widths))
            )
        )


def machine_info(threads: int) -> dict[str, Any]:
    info: dict[str, Any] = dict(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        threads=threads,
        processor=None,
    )
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["processor"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        info["processor"] = platform.processor()
    from importlib import metadata

    for mod, dist in (
        ("numpy", "numpy"),
        ("sklearn", "scikit-learn"),
        ("torch", "torch"),
        ("jax", "jax"),
        ("jaxlib", "jaxlib"),
        ("fastbp", "fastbp"),
    ):
        if importlib.util.find_spec(mod) is not None:  # no import: see CLEAN_ENV
            try:
                info[mod] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                info[mod] = "unknown"
    if "fastbp" in info:
        r = run_worker(dict(kind="info", threads=threads))
        if "build" in r:
            info["fastbp_build"] = r["build"]
            info["fastbp_commit"] = r.get("commit")
            info["fastbp_env_after_import"] = r.get("env")
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    info["env"] = {k: v for k, v in sorted(CLEAN_ENV.items()) if k.startswith(WATCHED_ENV)}
    return info


def compare(args: argparse.Namespace, peers: list[str], gemm: float | None) -> list[dict]:
    results = []
    for rnd, name in ((k, n) for k in range(args.rounds) for n in args.config):
        cfg = CONFIGS[name]
        samples = quick_samples(cfg) if args.quick else cfg["samples"]
        for peer in peers:
            spec = dict(
                kind="train",
                config=name,
                peer=peer,
                threads=args.threads,
                samples=samples,
                epochs=args.epochs,
                budget=args.run_budget,
                min_time=args.min_time,
            )
            if args.device == "cuda":
                spec["device"] = "cuda"
            t0 = time.perf_counter()
            r = run_worker(spec, timeout=args.run_timeout)
            r.update(config=name, peer=peer, samples=samples, batch=cfg["batch"], round=rnd)
            if "times" in r:
                r["s_per_epoch"] = statistics.median(r["times"])
                r["gflops"] = gflops(cfg["layers"], samples, r["s_per_epoch"])
                r["gemm_share"] = r["gflops"] / gemm if gemm else None
                r["epochs_timed"] = len(r["times"])
            print(
                (f"  round {rnd + 1}" if args.rounds > 1 else "")
                + f"  {name:12s} {peer:13s} "
                + (
                    f"{fmt_s(r.get('s_per_epoch'))} s/epoch x {r.get('epochs_timed')}"
                    if "times" in r
                    else fmt_error(r)
                )
                + f"  ({time.perf_counter() - t0:.0f} s; other CPUs {fmt_noise(r)})",
                file=sys.stderr,
                flush=True,
            )
            results.append(r)
            if args.json:  # what has run so far survives a run cut short
                with open(args.json, "w") as f:
                    json.dump(dict(partial=True, gemm=gemm, results=results), f, default=str)
    return results


def fmt_error(r: dict[str, Any]) -> str:
    return r["error"] if fail_label(r) == "n/a" else f"FAILED: {r['error']}"


def fail_label(r: dict[str, Any]) -> str:
    """ "n/a" for a peer that cannot run here (the reason follows), else "FAILED"."""
    return "n/a" if str(r.get("error", "")).startswith("n/a") else "FAILED"


def fmt_compile(r: dict[str, Any]) -> str:
    c = r.get("compile_s")
    return "-" if c is None else f"{c:.1f}"


def best_peer(by: dict, name: str, peers: list[str]) -> tuple[float, str] | None:
    """(s/epoch, name) of the fastest library other than fastbp on configuration `name`."""
    others = [
        (by[(name, p)]["s_per_epoch"], p)
        for p in peers
        if p != "fastbp" and "s_per_epoch" in by.get((name, p), {})
    ]
    return min(others) if others else None


def merge_rounds(results: list[dict]) -> list[dict]:
    """One result per (configuration, library) from the rounds of --rounds: s/epoch (and the
    figures derived from it) the median of the rounds' medians, the rest from the first round
    that ran; `round_s` lists every round's s/epoch. A library that failed in every round keeps
    its first failure."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["config"], r["peer"]), []).append(r)
    merged = []
    for runs in groups.values():
        ok = [r for r in runs if "s_per_epoch" in r]
        if not ok:
            merged.append(runs[0])
            continue
        m = dict(ok[0])
        m["round_s"] = [r["s_per_epoch"] for r in ok]
        m["times"] = [t for r in ok for t in r.get("times", [])]
        if "foreign_cpus" in m:  # the noisiest round's, so that the table's "!" flags it
            noisiest = max(ok, key=lambda r: r.get("foreign_cpus", 0) + r.get("steal_cpus", 0))
            for key in ("foreign_cpus", "steal_cpus", "foreign_s"):
                if key in noisiest:
                    m[key] = noisiest[key]
        m["s_per_epoch"] = statistics.median(m["round_s"])
        scale = ok[0]["s_per_epoch"] / m["s_per_epoch"]
        m["gflops"] = ok[0]["gflops"] * scale
        m["gemm_share"] = ok[0]["gemm_share"] * scale if ok[0].get("gemm_share") else None
        m["epochs_timed"] = sum(r["epochs_timed"] for r in ok)
        merged.append(m)
    return merged


def round_ratios(results: list[dict], name: str) -> list[float | None]:
    """Per round of --rounds: the best peer's s/epoch on configuration `name` in that round over
    fastbp's in that round; None for a round where fastbp or every peer failed."""
    ratios: list[float | None] = []
    for k in sorted({r.get("round", 0) for r in results}):
        ran = [
            r
            for r in results
            if r.get("round", 0) == k and r["config"] == name and "s_per_epoch" in r
        ]
        fb = [r["s_per_epoch"] for r in ran if r["peer"] == "fastbp"]
        others = [r["s_per_epoch"] for r in ran if r["peer"] != "fastbp"]
        ratios.append(min(others) / fb[0] if fb and others else None)
    return ratios


def report_compare(all_results: list[dict], peers: list[str]) -> None:
    results = merge_rounds(all_results)
    rounds = len({r.get("round", 0) for r in all_results})
    by = {(r["config"], r["peer"]): r for r in results}
    rows = []
    for name in dict.fromkeys(r["config"] for r in results):
        fb = by.get((name, "fastbp"), {}).get("s_per_epoch")
        for peer in peers:
            r = by.get((name, peer))
            if r is None:
                continue
            if "s_per_epoch" not in r:
                label = fail_label(r)
                reason = r.get("error", "")
                reason = reason[len("n/a: ") :] if label == "n/a" else reason
                rows.append([name, peer, "-", label, "-", "-", "-", "-", "-", "-", reason[:70]])
                continue
            s = r["s_per_epoch"]
            if peer == "fastbp":
                ratio = "1.00"
            else:
                ratio = f"{s / fb:.2f}" if fb else "-"
            acc = r.get("accuracy")
            rows.append(
                [
                    name,
                    peer,
                    str(r["epochs_timed"]),
                    fmt_s(s),
                    fmt_compile(r),
                    f"{r['gflops']:.2f}",
                    f"{100 * r['gemm_share']:.1f}%" if r.get("gemm_share") else "-",
                    ratio,
                    f"{r['loss']:.4f}",
                    "-" if acc is None else f"{acc:.3f}",
                    fmt_noise(r),
                ]
            )
    print_table(
        rows,
        [
            "config",
            "library",
            "epochs",
            "s/epoch",
            "compile s",
            "GFLOP/s",
            "%GEMM",
            "fastbp x",
            "loss",
            "acc",
            "other CPUs",
        ],
    )
    print(
        "(compile s: tracing + compiling, not in s/epoch; jax: the whole epoch (lower + compile);"
        " torch.compile: first epoch minus the median epoch, on an empty inductor cache)"
    )
    if any(fmt_noise(r).endswith("!") for r in results):
        print(
            f"! other processes kept more than {NOISY} CPUs busy during that run: rerun it on "
            "a quiet machine"
        )
    print()
    summary = []
    for name in dict.fromkeys(r["config"] for r in results):
        fb = by.get((name, "fastbp"), {}).get("s_per_epoch")
        best = best_peer(by, name, peers)
        if fb and best:
            best_s, best_p = best
            row = [name, best_p, fmt_s(best_s), fmt_s(fb), f"{best_s / fb:.2f}"]
            if rounds > 1:
                per_round = round_ratios(all_results, name)
                ran = [x for x in per_round if x is not None]
                row.append(
                    " ".join("-" if x is None else f"{x:.2f}" for x in per_round)
                    + (f" (median {statistics.median(ran):.2f})" if ran else "")
                )
            summary.append(row)
    if summary:
        print(
            "fastbp vs the best peer of each configuration (ratio = fastbp's speed / the best "
            "peer's = peer s/epoch / fastbp s/epoch; >1: fastbp faster)"
            + (
                f"; s/epoch: median of {rounds} rounds, each round running every library in "
                "turn; per round: that round's best peer over that round's fastbp"
                if rounds > 1
                else ""
            )
        )
        header = ["config", "best peer", "peer s/epoch", "fastbp s/epoch", "ratio"]
        print_table(summary, header + (["per round"] if rounds > 1 else []))
        ran = {r["peer"] for r in results if "s_per_epoch" in r}
        missing = [p for p in peers if p != "fastbp" and p not in ran]
        if missing:
            print(f"(not in the running for best peer: {', '.join(missing)}; see above)")


def memory(args: argparse.Namespace, peers: list[str]) -> list[dict]:
    out = []
    for name in args.config:
        cfg = CONFIGS[name]
        samples = quick_samples(cfg) if args.quick else cfg["samples"]
        for peer in peers:
            r = run_worker(
                dict(kind="memory", config=name, peer=peer, threads=args.threads, samples=samples)
            )
            r.update(config=name, peer=peer)
            out.append(r)
            print(
                f"  memory {name:12s} {peer:13s} "
                + (
                    f"{r['peak_growth_bytes'] / 2**20:.1f} MiB"
                    if "peak_growth_bytes" in r
                    else fmt_error(r)
                ),
                file=sys.stderr,
                flush=True,
            )
    rows = []
    for r in out:
        if "peak_growth_bytes" not in r:
            rows.append([r["config"], r["peer"], fail_label(r), "-", "-", "-"])
            continue
        rows.append(
            [
                r["config"],
                r["peer"],
                f"{r['peak_growth_bytes'] / 2**20:.1f}",
                f"{r['param_bytes'] / 2**20:.1f}",
                f"{r['data_bytes'] / 2**20:.1f}",
                "VmHWM reset" if r["exact_window"] else "ru_maxrss (upper bound)",
            ]
        )
    print(
        "Peak RSS growth during one fresh epoch of fit (network + optimizer + working memory;"
        " the data set is loaded before)"
    )
    print_table(rows, ["config", "library", "peak growth MiB", "params MiB", "data MiB", "method"])
    return out


def scaling(args: argparse.Namespace, peers: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    quick = args.quick
    # 1. threads: wide configuration, 1 vs 2 threads (vs --threads when that is larger)
    wide = CONFIGS["wide"]
    samples = quick_samples(wide) if quick else wide["samples"]
    tlist = sorted({1, max(2, args.threads)})
    thread_rows, out["threads"] = [], []
    for peer in [p for p in ("fastbp", "torch") if p in peers]:
        base = None
        for t in tlist:
            r = run_worker(
                dict(
                    kind="train",
                    config="wide",
                    peer=peer,
                    threads=t,
                    samples=samples,
                    epochs=args.scaling_epochs,
                    budget=args.run_budget,
                )
            )
            r.update(peer=peer, threads=t)
            if "times" in r:
                r["s_per_epoch"] = statistics.median(r["times"])
                r["gflops"] = gflops(wide["layers"], samples, r["s_per_epoch"])
                base = base or r["s_per_epoch"]
                thread_rows.append(
                    [
                        peer,
                        str(t),
                        fmt_s(r["s_per_epoch"]),
                        f"{r['gflops']:.1f}",
                        f"{base / r['s_per_epoch']:.2f}",
                        fmt_noise(r),
                    ]
                )
            else:
                thread_rows.append([peer, str(t), "FAILED", "-", "-", "-"])
            out["threads"].append(r)
            print(
                f"  scaling threads {peer} {t}: {fmt_s(r.get('s_per_epoch'))}",
                file=sys.stderr,
                flush=True,
            )
    gemm1 = run_worker(dict(kind="gemm", threads=1, reps=3)).get("gflops")
    out["gemm_gflops_1_thread"] = gemm1
    print(
        f"Thread scaling, wide ({samples} samples)"
        + (f"; GEMM peak at 1 thread {gemm1:.1f} GFLOP/s" if gemm1 else "")
    )
    print_table(thread_rows, ["library", "threads", "s/epoch", "GFLOP/s", "speedup", "other CPUs"])
    print()

    # 2. time per epoch vs samples (mnist-like, fastbp): is it linear?
    mn = CONFIGS["mnist-like"]
    full = quick_samples(mn) if quick else mn["samples"]
    sizes = [full // 8, full // 4, full // 2, full]
    rows, out["samples"] = [], []
    for n in sizes:
        r = run_worker(
            dict(
                kind="train",
                config="mnist-like",
                peer="fastbp",
                threads=args.threads,
                samples=n,
                epochs=args.scaling_epochs,
                budget=args.run_budget,
            )
        )
        r.update(samples=n)
        if "times" in r:
            r["s_per_epoch"] = statistics.median(r["times"])
            rows.append(
                [
                    str(n),
                    fmt_s(r["s_per_epoch"]),
                    f"{r['s_per_epoch'] / n * 1e6:.2f}",
                    f"{gflops(mn['layers'], n, r['s_per_epoch']):.1f}",
                    fmt_noise(r),
                ]
            )
        else:
            rows.append([str(n), "FAILED", "-", "-", "-"])
        out["samples"].append(r)
        print(f"  scaling samples {n}: {fmt_s(r.get('s_per_epoch'))}", file=sys.stderr, flush=True)
    print(
        f"Time per epoch vs samples, fastbp, mnist-like, {args.threads} threads "
        "(linear: constant us/sample)"
    )
    print_table(rows, ["samples", "s/epoch", "us/sample", "GFLOP/s", "other CPUs"])
    print()

    # 3. forward (inference) on 100,000 rows, mnist-like network, fastbp vs torch
    n = 10_000 if quick else 100_000
    rows, out["forward"] = [], []
    macs = macs_per_sample(mn["layers"])
    fb_s = None
    for peer in [p for p in ("fastbp", "torch") if p in peers]:
        r = run_worker(dict(kind="forward", peer=peer, threads=args.threads, samples=n, reps=5))
        r.update(peer=peer)
        if "times" in r:
            s = min(r["times"])
            r["best_s"] = s
            fb_s = s if peer == "fastbp" else fb_s
            rows.append(
                [
                    peer,
                    fmt_s(s),
                    f"{2 * macs * n / s / 1e9:.1f}",
                    f"{s / fb_s:.2f}" if fb_s else "-",
                    fmt_noise(r),
                ]
            )
        else:
            rows.append([peer, "FAILED", "-", "-", "-"])
        out["forward"].append(r)
    print(
        f"Forward on {n} rows, mnist-like network ({args.threads} threads; best of 5; "
        "torch under inference_mode; GFLOP/s = 2 x MACs)"
    )
    print_table(rows, ["library", "seconds", "GFLOP/s", "vs fastbp", "other CPUs"])
    return out


def check(args: argparse.Namespace) -> tuple[list[dict], bool]:
    """--check: the JAX peer against fastbp, one epoch without shuffling (see jax_check)."""
    out, rows = [], []
    for name in args.config:
        r = run_worker(dict(kind="check", config=name, threads=args.threads))
        r.setdefault("config", name)
        out.append(r)
        if "max_abs_diff" not in r:
            rows.append([name, "-", "-", "-", "-", "-", "-", fmt_error(r)[:70]])
            continue
        rows.append(
            [
                name,
                r["activation"],
                r["optimizer"],
                f"{r['samples']} / {r['batch']}",
                f"{r['q999_abs_diff']:.1e} ({r['q999_allowed']:.0e})",
                f"{r['max_abs_diff']:.1e} ({r['max_allowed']:.0e})",
                f"{r['max_weight_change']:.1e}",
                "ok" if r["ok"] else "DIFFERS",
            ]
        )
    print(
        "JAX peer vs fastbp: one epoch, no shuffle, same initial weights (relu replaced by tanh); "
        "|difference| over all weights and biases (allowed in parentheses)"
    )
    print_table(
        rows,
        [
            "config",
            "activation",
            "optimizer",
            "samples / batch",
            "99.9th pct",
            "max",
            "max change",
            "",
        ],
    )
    return out, all(r.get("ok") for r in out)


def sweep_cfg(width: int, depth: int, batch: int) -> dict[str, Any]:
    """`depth` weight layers: input `width`, depth - 1 hidden relu layers of `width`, 10
    classes; SGD with momentum (the cheapest update: the sweeps are about the layers)."""
    return dict(
        layers=[width] * depth + [10],
        activation="relu",
        batch=batch,
        optimizer=("sgd", dict(lr=0.01, momentum=0.9)),
        loss="cross_entropy",
    )


def sweep_samples(cfg: dict[str, Any], gflop: float, max_samples: int) -> int:
    """Enough samples for about `gflop` GFLOP per epoch, at least 16 batches (so that per-epoch
    costs, such as fastbp's statistics on 512 rows, stay small), at most max_samples, a multiple
    of the batch size (no partial batch to compile twice)."""
    bs = cfg["batch"]
    n = int(gflop * 1e9 / (6 * macs_per_sample(cfg["layers"])))
    n = min(max(n, 16 * bs), max_samples)
    return max(bs, n // bs * bs)


def sweep_peers(args: argparse.Namespace) -> list[str]:
    names = [p.strip() for p in args.sweep_peers.split(",") if p.strip()]
    return [p for p in names if p != "fastbp" and available(p)]


def run_points(
    args: argparse.Namespace, label: str, points: list[tuple[str, dict[str, Any], int]]
) -> list[dict]:
    """Time fastbp and each sweep peer on every point (name, network, samples); print one row
    per point with each library's GFLOP/s, the best peer and fastbp's speed over it."""
    peers = sweep_peers(args)
    out, rows = [], []
    for name, cfg, samples in points:
        point: dict[str, Any] = dict(point=name, layers=cfg["layers"], samples=samples, runs={})
        for peer in ["fastbp"] + peers:
            r = run_worker(
                dict(
                    kind="train",
                    cfg=cfg,
                    peer=peer,
                    threads=args.threads,
                    samples=samples,
                    epochs=args.scaling_epochs,
                    budget=args.run_budget,
                )
            )
            if "times" in r:
                r["s_per_epoch"] = statistics.median(r["times"])
                r["gflops"] = gflops(cfg["layers"], samples, r["s_per_epoch"])
            point["runs"][peer] = r
            print(
                f"  {label} {name:>6s} {peer:13s} "
                + (f"{r['gflops']:.1f} GFLOP/s" if "gflops" in r else fmt_error(r)),
                file=sys.stderr,
                flush=True,
            )
        timed = {p: r for p, r in point["runs"].items() if "gflops" in r}
        best = max(((timed[p]["gflops"], p) for p in peers if p in timed), default=None)
        fb = timed.get("fastbp")
        point["best_peer"] = best[1] if best else None
        point["fastbp_over_best"] = fb["gflops"] / best[0] if fb and best else None
        rows.append(
            [name, str(samples)]
            + [
                f"{timed[p]['gflops']:.1f}" if p in timed else fail_label(point["runs"][p])
                for p in ["fastbp"] + peers
            ]
            + [best[1] if best else "-", f"{point['fastbp_over_best']:.2f}" if best and fb else "-"]
            + [fmt_noise(fb) if fb else "-"]
        )
        out.append(point)
    print_table(
        rows,
        [label, "samples", "fastbp"] + peers + ["best peer", "fastbp/best", "other CPUs"],
    )
    print("(GFLOP/s per library; fastbp/best = fastbp's GFLOP/s over the best peer's)")
    return out


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def non_negative(text: str) -> float:
    """An argparse type: a finite number of at least 0."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def width_sweep(args: argparse.Namespace) -> list[dict]:
    points = []
    for w in int_list(args.widths):
        cfg = sweep_cfg(w, args.sweep_depth, args.sweep_batch)
        points.append((str(w), cfg, sweep_samples(cfg, args.sweep_gflop, args.sweep_max_samples)))
    print(
        f"GFLOP/s as width grows: {args.sweep_depth} weight layers (width -> ... -> width -> 10) "
        f"relu, batch {args.sweep_batch}, SGD momentum, {args.threads} threads"
    )
    return run_points(args, "width", points)


def depth_sweep(args: argparse.Namespace) -> list[dict]:
    points = []
    for d in int_list(args.depths):
        cfg = sweep_cfg(args.sweep_width, d, args.sweep_batch)
        points.append((str(d), cfg, sweep_samples(cfg, args.sweep_gflop, args.sweep_max_samples)))
    print(
        f"GFLOP/s as depth grows: width {args.sweep_width}, depth = weight layers (the last "
        f"one -> 10) relu, batch {args.sweep_batch}, SGD momentum, {args.threads} threads"
    )
    return run_points(args, "depth", points)


def threads_sweep(args: argparse.Namespace) -> list[dict]:
    """Every library pinned to the first t usable CPUs and told to use t threads (JAX by the
    pinning alone), t from --thread-counts."""
    name = args.sweep_config
    cfg = CONFIGS[name]
    samples = quick_samples(cfg) if args.quick else cfg["samples"]
    counts = int_list(args.thread_counts) if args.thread_counts else default_thread_counts()
    out, rows = [], []
    for peer in ["fastbp"] + sweep_peers(args):
        base = None
        for t in counts:
            r = run_worker(
                dict(
                    kind="train",
                    config=name,
                    peer=peer,
                    threads=t,
                    pin=t,
                    samples=samples,
                    epochs=args.scaling_epochs,
                    budget=args.run_budget,
                )
            )
            r.update(peer=peer, threads=t)
            if "times" in r:
                r["s_per_epoch"] = statistics.median(r["times"])
                r["gflops"] = gflops(cfg["layers"], samples, r["s_per_epoch"])
                if t == counts[0]:
                    base = r["s_per_epoch"]
                speedup = base / r["s_per_epoch"] if base else None
                rows.append(
                    [
                        peer,
                        str(t),
                        fmt_s(r["s_per_epoch"]),
                        f"{r['gflops']:.1f}",
                        f"{speedup:.2f}" if speedup else "-",
                        f"{100 * speedup * counts[0] / t:.0f}%" if speedup else "-",
                        fmt_noise(r),
                    ]
                )
            else:
                rows.append([peer, str(t), fail_label(r), "-", "-", "-", "-"])
            out.append(r)
            print(
                f"  threads {peer} {t}: {fmt_s(r.get('s_per_epoch'))}", file=sys.stderr, flush=True
            )
    print(
        f"Thread scaling, {name} ({samples} samples); each run pinned to its first t CPUs; "
        f"speedup over {counts[0]} thread(s), efficiency = speedup x {counts[0]} / t"
    )
    print_table(
        rows, ["library", "threads", "s/epoch", "GFLOP/s", "speedup", "efficiency", "other CPUs"]
    )
    return out


def default_thread_counts() -> list[int]:
    """1, 2, 4, ... up to the usable CPUs, and that count itself."""
    top = len(usable_cpus())
    counts = [1]
    while counts[-1] * 2 <= top:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == top else counts + [top]


def subnormal_cfg(activation: str, args: argparse.Namespace) -> dict[str, Any]:
    """--subnormal's network: input and `--subnormal-depth` hidden layers of width
    `--subnormal-width`, 10 classes, plain SGD (lr 0.01), cross-entropy."""
    w = args.subnormal_width
    return dict(
        layers=[w] * (args.subnormal_depth + 1) + [10],
        activation=activation,
        batch=args.subnormal_batch,
        optimizer=("sgd", dict(lr=0.01, momentum=0.0)),
        loss="cross_entropy",
    )


def subnormal(args: argparse.Namespace) -> dict[str, Any]:
    """A deep sigmoid network, whose backward signals shrink by up to 4x per layer into the
    subnormal range, against the same network with relu, whose do not: time per epoch of
    each, and how small fastbp's gradients got."""
    samples = args.subnormal_samples
    # (label, library, flush switch): fastbp flushes subnormals by default (its "no flush" run
    # keeps IEEE gradual underflow, fb.set_flush_denormals(False)); torch's switch sets FTZ/DAZ
    # on the calling thread, where torch computes at width 32 and batch 32.
    libs: list[tuple[str, str, bool]] = [
        ("fastbp", "fastbp", True),
        (FASTBP_NO_FLUSH, "fastbp", False),
    ]
    for peer in sweep_peers(args):
        libs.append((peer, peer, False))
        if peer == "torch":
            libs.append(("torch+flush_denormal", "torch", True))
    out: dict[str, Any] = dict(
        samples=samples, configs={a: subnormal_cfg(a, args) for a in ("sigmoid", "relu")}
    )
    out["runs"], rows = [], []
    for label, peer, ftz in libs:
        per_act = {}
        for act in ("sigmoid", "relu"):
            r = run_worker(
                dict(
                    kind="train",
                    cfg=out["configs"][act],
                    peer=peer,
                    threads=args.threads,
                    samples=samples,
                    epochs=args.subnormal_epochs,
                    budget=args.run_budget,
                    flush_denormal=ftz and peer == "torch",
                    keep_subnormals=not ftz and peer == "fastbp",
                )
            )
            if "times" in r:
                r["s_per_epoch"] = statistics.median(r["times"])
            r.update(library=label, activation=act)
            per_act[act] = r
            out["runs"].append(r)
            print(
                f"  subnormal {label} {act}: "
                + (fmt_s(r["s_per_epoch"]) if "s_per_epoch" in r else fmt_error(r)),
                file=sys.stderr,
                flush=True,
            )
        sig, rel = per_act["sigmoid"], per_act["relu"]
        if "s_per_epoch" in sig and "s_per_epoch" in rel:
            ratio = f"{sig['s_per_epoch'] / rel['s_per_epoch']:.2f}"
        else:
            ratio = fail_label(sig if "s_per_epoch" not in sig else rel)
        rows.append(
            [
                label,
                fmt_s(sig.get("s_per_epoch")),
                fmt_s(rel.get("s_per_epoch")),
                ratio,
                fmt_noise(sig),
            ]
        )
    depth, w = args.subnormal_depth, args.subnormal_width
    print(
        f"Subnormals: {depth} hidden layers of {w}, batch {args.subnormal_batch}, plain SGD, "
        f"{samples} samples, {args.threads} threads; sigmoid vs relu"
    )
    print_table(rows, ["library", "sigmoid s/epoch", "relu s/epoch", "sigmoid/relu", "other CPUs"])
    print()
    floor_rows = []
    out["fastbp_gradients"] = {}
    runs = [(lab, a) for lab in ("fastbp", FASTBP_NO_FLUSH) for a in ("sigmoid", "relu")]
    for label, act in runs:
        g = run_worker(
            dict(
                kind="grad_floor",
                cfg=out["configs"][act],
                threads=args.threads,
                samples=samples,
                epochs=1 + args.subnormal_epochs,
                keep_subnormals=label == FASTBP_NO_FLUSH,
            )
        )
        out["fastbp_gradients"][f"{label} {act}"] = g
        run = next(r for r in out["runs"] if r["library"] == label and r["activation"] == act)
        hist = run.get("first_layer_grad_norm")
        if "min_first_layer_grad_norm" not in g:
            floor_rows.append([label, act, fmt_error(g)[:60], "-", "-", "-", "-", "-"])
            continue
        floor_rows.append(
            [
                label,
                act,
                f"{g['min_first_layer_grad_norm']:.2e}",
                f"{g['median_first_layer_grad_norm']:.2e}",
                f"{min(hist):.2e}" if hist else "-",
                f"{100 * g['subnormal_share_first_layer']:.1f}%",
                f"{100 * g['subnormal_share_all_layers']:.1f}%",
                f"{sum(v > 0.5 for v in g['subnormal_share_per_layer'])} of "
                f"{len(g['subnormal_share_per_layer'])}",
            ]
        )
    print(
        "fastbp's first-layer weight gradient (float32 subnormal: below 1.18e-38): per-batch L2 "
        "norm from a replay of the same training (backward + step per batch), the timed run's "
        "per-epoch mean, and the share of subnormal weight-gradient entries"
    )
    print_table(
        floor_rows,
        [
            "library",
            "activation",
            "min norm",
            "median norm",
            "min epoch mean",
            "subnormal 1st layer",
            "subnormal all layers",
            "layers > half subnormal",
        ],
    )
    return out


def bf16_accuracy_run(cfg, X, y, threads: int, spec: dict[str, Any]) -> dict[str, Any]:
    """fastbp trained for spec["epochs"] epochs on the first spec["train"] rows of (X, y) at
    spec["matmul_precision"], from compare's initial weights, shuffled by spec["seed"]; the
    accuracy on the rows after them, which training never saw."""
    net, opt = fastbp_net(cfg, threads)
    n = spec["train"]
    trainer = fastbp_trainer_cls()(
        net,
        opt,
        batch_size=cfg["batch"],
        epochs=spec["epochs"],
        seed=spec["seed"],
        progress=False,
        matmul_precision=spec["matmul_precision"],
    )
    t0 = time.perf_counter()
    history = trainer.fit(X[:n], y[:n])
    return dict(
        seconds=time.perf_counter() - t0,
        train_loss=float(history.train_loss[-1]),
        test_accuracy=float(trainer.evaluate(X[n:], y[n:])["accuracy"]),
    )


def bf16(args: argparse.Namespace) -> dict[str, Any]:
    """fastbp in float32 and in mixed precision (Trainer(matmul_precision="bfloat16")): epoch
    times, alternating in --bf16-rounds rounds, on the configurations of --config; then the
    held-out accuracy of mnist-like after --bf16-epochs epochs at each precision."""
    import fastbp

    if not fastbp.build_info()["bfloat16"]:
        print("bfloat16 products: n/a, this CPU has no AVX512-BF16\n")
        return dict(error="no AVX512-BF16")
    precisions = ("highest", "bfloat16")
    out: dict[str, Any] = dict(runs=[], accuracy=[])
    rows = []
    for name in args.config:
        cfg = CONFIGS[name]
        if cfg["batch"] == 1:  # no product is large enough to run in bfloat16
            continue
        samples = quick_samples(cfg) if args.quick else cfg["samples"]
        times: dict[str, list[float]] = {p: [] for p in precisions}
        for _ in range(args.bf16_rounds):
            for prec in precisions:
                r = run_worker(
                    dict(
                        kind="train",
                        config=name,
                        peer="fastbp",
                        threads=args.threads,
                        samples=samples,
                        epochs=args.epochs,
                        budget=args.run_budget,
                        matmul_precision=prec,
                    )
                )
                r.update(config=name, matmul_precision=prec)
                out["runs"].append(r)
                if "times" in r:
                    times[prec].append(statistics.median(r["times"]))
                shown = fmt_s(times[prec][-1]) if "times" in r else fmt_error(r)
                print(
                    f"  bf16 {name} {prec}: {shown}",
                    file=sys.stderr,
                    flush=True,
                )
        med = {p: statistics.median(t) if t else None for p, t in times.items()}
        # Each round's ratio compares two runs made one after the other: this VM's slow and
        # fast minutes move both.
        ratios = [a / b for a, b in zip(times["highest"], times["bfloat16"])]
        gain = f"{statistics.median(ratios):.2f}" if ratios else "-"
        per_round = " ".join(f"{r:.2f}" for r in ratios)
        rows.append([name, fmt_s(med["highest"]), fmt_s(med["bfloat16"]), gain, per_round])
    print(
        f"bfloat16 products: fastbp's s/epoch in float32 and with matmul_precision='bfloat16', "
        f"{args.threads} threads, medians of {args.bf16_rounds} alternating rounds (speed-up: "
        "the median of the rounds' own ratios)"
    )
    print_table(rows, ["config", "float32", "bfloat16", "speed-up", "rounds"])
    print()
    cfg = CONFIGS["mnist-like"]
    train = 6000 if args.quick else cfg["samples"]
    acc_rows, mean = [], {}
    for prec in precisions:
        accs, losses = [], []
        for seed in range(1, args.bf16_seeds + 1):
            r = run_worker(
                dict(
                    kind="bf16_accuracy",
                    config="mnist-like",
                    threads=args.threads,
                    samples=train + 10_000,
                    train=train,
                    epochs=args.bf16_epochs,
                    matmul_precision=prec,
                    seed=seed,
                )
            )
            r.update(matmul_precision=prec, seed=seed)
            out["accuracy"].append(r)
            if "test_accuracy" in r:
                accs.append(100 * r["test_accuracy"])
                losses.append(r["train_loss"])
        if accs:
            mean[prec] = statistics.mean(accs)
            acc_rows.append(
                [
                    prec,
                    f"{mean[prec]:.2f}%",
                    " ".join(f"{a:.2f}" for a in accs),
                    f"{statistics.mean(losses):.4f}",
                ]
            )
        else:
            acc_rows.append([prec, fmt_error(r), "-", "-"])
    diff = f"{mean['bfloat16'] - mean['highest']:+.2f} points" if len(mean) == 2 else "-"
    print(
        f"mnist-like after {args.bf16_epochs} epochs on {train} samples, accuracy on 10000 "
        f"held-out samples, mean over shuffling seeds 1-{args.bf16_seeds} (bfloat16 - float32: "
        f"{diff})"
    )
    print_table(acc_rows, ["precision", "mean accuracy", "per seed", "mean train loss"])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--config",
        action="append",
        choices=list(CONFIGS),
        help="configuration to run (repeatable; default: all)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="timed epochs per library after one warm-up epoch (default 3; 1 with --quick)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads for every library (default: os.cpu_count())",
    )
    p.add_argument("--quick", action="store_true", help="fewer samples, one epoch: a smoke test")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the whole comparison this many times, every library in turn within each "
        "configuration and round, and report the median s/epoch and each round's ratio: a "
        "shared machine's slow minutes then move one round, not the table (default 1)",
    )
    p.add_argument(
        "--peers",
        default=None,
        help="comma-separated libraries among " + ",".join(PEERS) + " (default: all installed; "
        "with --device cuda among fastbp,torch,torch.compile,torch.cudagraph)",
    )
    p.add_argument(
        "--run-budget",
        type=non_negative,
        default=40.0,
        help="seconds one library may spend on the timed epochs of one configuration; "
        "a slower peer times fewer epochs (at least 1)",
    )
    p.add_argument(
        "--min-time",
        type=non_negative,
        default=None,
        help="seconds one library's timed epochs of one configuration should at least take: "
        "a fast epoch is timed more than --epochs times (default 0.5; 0 with --quick)",
    )
    p.add_argument("--memory", action="store_true", help="also measure peak RSS growth during fit")
    p.add_argument(
        "--scaling",
        action="store_true",
        help="also measure thread scaling (wide), epoch time vs samples (mnist-like) "
        "and forward on 100,000 rows vs torch inference",
    )
    p.add_argument(
        "--scaling-epochs",
        type=int,
        default=2,
        help="timed epochs per scaling or sweep run (1 with --quick)",
    )
    p.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the main comparison (to run only the other modes asked for)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="also check the JAX peer against fastbp: one epoch without shuffling from the "
        "same weights (relu replaced by tanh); exit status 1 if they differ",
    )
    g = p.add_argument_group(
        "how the cost grows (fastbp and --sweep-peers; each sweep takes 1-3 minutes on 2 cores)"
    )
    g.add_argument(
        "--width-sweep", action="store_true", help="GFLOP/s as the width grows (--widths)"
    )
    g.add_argument(
        "--depth-sweep", action="store_true", help="GFLOP/s as the depth grows (--depths)"
    )
    g.add_argument(
        "--threads-sweep",
        action="store_true",
        help="time per epoch of --sweep-config on 1 .. all CPUs (--thread-counts); each run "
        "pinned to its CPUs",
    )
    g.add_argument(
        "--sweep-peers",
        default="torch,jax",
        help="peers timed in the sweeps and --subnormal, besides fastbp (default: torch,jax)",
    )
    g.add_argument("--widths", default="32,64,128,256,512,1024,2048", help="width sweep points")
    g.add_argument("--sweep-depth", type=int, default=4, help="weight layers in the width sweep")
    g.add_argument("--depths", default="2,4,8,16,32,64", help="depth sweep points (weight layers)")
    g.add_argument("--sweep-width", type=int, default=256, help="width in the depth sweep")
    g.add_argument("--sweep-batch", type=int, default=128, help="batch size in the sweeps")
    g.add_argument(
        "--sweep-gflop",
        type=float,
        default=4.0,
        help="work per sweep epoch in GFLOP, which sets the samples (at least 16 batches, at "
        "most --sweep-max-samples; default 4, 1 with --quick)",
    )
    g.add_argument("--sweep-max-samples", type=int, default=16384, help="see --sweep-gflop")
    g.add_argument(
        "--sweep-config",
        choices=list(CONFIGS),
        default="mnist-like",
        help="configuration of the threads sweep (default mnist-like)",
    )
    g.add_argument(
        "--thread-counts", help="threads sweep points, e.g. 1,2 (default 1, 2, 4, ..., all CPUs)"
    )
    g = p.add_argument_group("subnormals")
    g.add_argument(
        "--subnormal",
        action="store_true",
        help="time a deep sigmoid network against the same with relu, and report how small "
        "fastbp's gradients get (subnormal: below 1.18e-38)",
    )
    g.add_argument("--subnormal-depth", type=int, default=60, help="hidden layers (default 60)")
    g.add_argument("--subnormal-width", type=int, default=32, help="their width (default 32)")
    g.add_argument("--subnormal-batch", type=int, default=32, help="batch size (default 32)")
    g.add_argument(
        "--subnormal-samples", type=int, default=4096, help="samples per epoch (default 4096)"
    )
    g.add_argument(
        "--subnormal-epochs",
        type=int,
        default=3,
        help="timed epochs after a warm-up epoch (default 3; 1 with --quick)",
    )
    g = p.add_argument_group("bfloat16 products")
    g.add_argument(
        "--bf16",
        action="store_true",
        help="fastbp in float32 against Trainer(matmul_precision='bfloat16'): epoch times and "
        "mnist-like's held-out accuracy (CPUs with AVX512-BF16)",
    )
    g.add_argument(
        "--bf16-rounds", type=int, default=3, help="alternating rounds of the timing (default 3)"
    )
    g.add_argument(
        "--bf16-epochs", type=int, default=10, help="epochs of the accuracy runs (default 10)"
    )
    g.add_argument(
        "--bf16-seeds",
        type=int,
        default=3,
        help="shuffling seeds of the accuracy runs, each in both precisions (default 3)",
    )
    p.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="run N busy-looping processes beside every measurement (after the GEMM "
        "peak): how each library copes with a machine it does not have to itself",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the main comparison on a GPU, fastbp's CUDA backend against PyTorch "
        "(eager, torch.compile, a CUDA graph of the step: bench/gpu_peers.py); %%GEMM against "
        "the GPU's measured float32 GEMM rate",
    )
    p.add_argument(
        "--run-timeout",
        type=float,
        default=1800.0,
        help="seconds after which one measurement's process is stopped (default 1800)",
    )
    p.add_argument("--json", metavar="PATH", help="write all results to PATH")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._worker:
        result = worker(json.loads(args._worker))
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    args.config = args.config or list(CONFIGS)
    args.threads = args.threads or os.cpu_count() or 1
    args.epochs = args.epochs or (1 if args.quick else 3)
    if args.min_time is None:
        args.min_time = 0.0 if args.quick else 0.5
    if args.quick:
        args.scaling_epochs = 1
        args.subnormal_epochs = 1
        args.sweep_gflop = min(args.sweep_gflop, 1.0)
    known = PEERS + ("torch.cudagraph",) if args.device == "cuda" else PEERS
    if args.peers is None:
        args.peers = (
            "fastbp,torch,torch.compile,torch.cudagraph"
            if args.device == "cuda"
            else ",".join(PEERS)
        )
    peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    if args.device == "cuda":
        gpu_bad = [
            s for s in peers if s not in ("fastbp", "torch", "torch.compile", "torch.cudagraph")
        ]
        if gpu_bad:
            p.error(f"--device cuda runs fastbp and PyTorch only; not {gpu_bad}")
    bad = [s for s in peers + args.sweep_peers.split(",") if s.strip() and s.strip() not in known]
    if bad:
        p.error(f"unknown peers {bad}; choose among {list(PEERS)}")
    missing = [s for s in peers if not available(s)]
    for s in missing:
        print(f"note: {s} is not installed; skipped", file=sys.stderr)
    peers = [s for s in peers if s not in missing]
    if not peers:
        p.error(
            "name at least one library with --peers"
            if not missing
            else "none of the requested libraries is installed"
        )

    info = machine_info(args.threads)
    if args.device == "cuda":
        gemm_r = run_worker(dict(kind="gemm_cuda", threads=args.threads, reps=10))
        gemm = gemm_r.get("gflops")
        print(
            f"GPU: {gemm_r.get('device_name', '?')}; float32 GEMM (8192^3, best of 10): "
            + (
                f"{gemm:.0f} GFLOP/s (fastbp's cuBLAS call "
                f"{gemm_r.get('fastbp_cublas', 0):.0f}, TF32 "
                f"{gemm_r.get('fastbp_cublas_tf32', 0):.0f}; torch {gemm_r.get('torch', 0):.0f})"
                if gemm
                else f"FAILED ({gemm_r})"
            )
        )
    else:
        gemm_r = run_worker(dict(kind="gemm", threads=args.threads, reps=5))
        gemm = gemm_r.get("gflops")
    print(
        f"machine: {info.get('processor')}, {info['cpu_count']} CPUs; threads {args.threads}; "
        + (
            ""
            if args.device == "cuda"
            else "float32 GEMM (2048^3, numpy, best of 5): "
            + (f"{gemm:.1f} GFLOP/s" if gemm else f"FAILED ({gemm_r.get('error')})")
        )
    )
    print(
        "versions: "
        + ", ".join(
            f"{m} {info[m]}"
            for m in ("numpy", "sklearn", "torch", "jax", "jaxlib", "fastbp")
            if m in info
        )
        + (f" ({info['fastbp_commit']})" if "fastbp_commit" in info else "")
    )
    print(f"environment: {info['env'] or 'no OMP_/GOMP_/KMP_/OPENBLAS_/MKL_ variables'}")
    after = info.get("fastbp_env_after_import")
    if after is not None and after != info["env"]:
        print(
            f"note: importing fastbp changes its own process's environment to {after} "
            "(each library runs in its own process here, with the environment above)"
        )
    load = info.get("loadavg", (0.0,))[0]
    if load > 0.5:
        print(
            f"warning: load average {load:.2f} before starting: other processes compete for "
            "the CPUs and distort the timings",
            file=sys.stderr,
        )
    print()

    out: dict[str, Any] = dict(
        machine=info,
        gemm=gemm_r,
        quick=args.quick,
        threads=args.threads,
        epochs=args.epochs,
        run_budget=args.run_budget,
        min_time=args.min_time,
        busy=args.busy,
        configs={n: CONFIGS[n] for n in args.config},
        peers=peers,
    )
    if args.busy:
        print(
            f"busy: {args.busy} busy-looping processes run beside every measurement (their CPU "
            "shows as 'other CPUs')\n"
        )
    status = 0
    if args.check and not available("jax"):
        print("--check: n/a, jax is not installed\n", file=sys.stderr)
    elif args.check:
        out["check"], ok = check(args)
        status = 0 if ok else 1
        print()
    with BusyProcesses(args.busy):
        if not args.no_compare:
            results = compare(args, peers, gemm)
            report_compare(results, peers)
            out["results"] = results
            if args.rounds > 1:
                out["merged"] = merge_rounds(results)
            print()
        if args.memory:
            out["memory"] = memory(args, peers)
            print()
        if args.scaling:
            out["scaling"] = scaling(args, peers)
            print()
        if args.width_sweep:
            out["width_sweep"] = width_sweep(args)
            print()
        if args.depth_sweep:
            out["depth_sweep"] = depth_sweep(args)
            print()
        if args.threads_sweep:
            out["threads_sweep"] = threads_sweep(args)
            print()
        if args.subnormal:
            out["subnormal"] = subnormal(args)
            print()
        if args.bf16:
            out["bf16"] = bf16(args)
            print()
    try:
        out["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"\nresults written to {args.json}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
