"""The GPU side of bench/compare.py (``--device cuda``): fastbp's CUDA backend and PyTorch on
the same GPU, the same four configurations, data, initial weights and float32 arithmetic.

Peers (each in its own process, as on the CPU):
  fastbp           MLP(..., device="cuda") trained by Trainer.fit: the data uploaded once per
                   fit (before the first epoch's clock starts), each epoch one call (shuffle,
                   gather, forward, backward, statistics, clipping, update on the device, a
                   CUDA graph replayed per batch), plus fastbp's per-epoch work (statistics on
                   512 rows).
  torch            the fastest plain eager loop: data preloaded on the GPU, one randperm gather
                   per epoch on the GPU, slicing, zero_grad(set_to_none=True), backward, and the
                   fused optimizer (fused=True where torch has it, else foreach).
  torch.compile    the same step under torch.compile (inductor, dynamic=False); compile time
                   reported apart.
  torch.cudagraph  the whole step (forward, loss, backward, optimizer with capturable=True)
                   captured in one CUDA graph on static batch tensors after a warm-up, and
                   replayed per full batch; the last partial batch runs eagerly. The warm-up's
                   steps are undone (weights and optimizer state put back in place), so all
                   peers train the same network.
Every epoch ends with torch.cuda.synchronize() (fastbp's epoch call returns when its
statistics are back, i.e. when the GPU is done).

The GEMM rate ("% of GEMM" in the table) is the best float32 product rate measured on this GPU:
an 8192-cube through fastbp's own cuBLAS call (full float32, no TF32), and through
torch.matmul with TF32 off; the higher of the two.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

# Where the PyTorch peers run: "cuda" (set to "cpu" only to check this file's loops on a
# machine without a GPU; the CUDA-graph peer needs a GPU).
DEVICE = "cuda"


def _sync(torch) -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _torch():
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # float32 products, as fastbp's default
    torch.backends.cudnn.allow_tf32 = False
    return torch


def gemm_rates(n: int = 8192, reps: int = 10) -> dict[str, Any]:
    """Float32 GEMM GFLOP/s on this GPU: through fastbp's cuBLAS call and through torch."""
    out: dict[str, Any] = {"n": n}
    try:
        from fastbp import _backend

        module = _backend.backend_for("cuda").module
        out["fastbp_cublas"] = module.gemm_gflops(0, n, reps, "float32", False)
        out["fastbp_cublas_tf32"] = module.gemm_gflops(0, n, reps, "float32", True)
    except Exception as err:  # reported, and the other measurement still runs
        out["fastbp_error"] = f"{type(err).__name__}: {err}"
    try:
        torch = _torch()
        a = torch.rand(n, n, device="cuda") - 0.5
        b = torch.rand(n, n, device="cuda") - 0.5
        a @ b
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(reps):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            stop.record()
            stop.synchronize()
            best = min(best, start.elapsed_time(stop) / 1e3)
        out["torch"] = 2.0 * n**3 / best / 1e9
        out["device_name"] = torch.cuda.get_device_name(0)
    except Exception as err:
        out["torch_error"] = f"{type(err).__name__}: {err}"
    rates = [out[k] for k in ("fastbp_cublas", "torch") if k in out]
    out["gflops"] = max(rates) if rates else None
    return out


# ---- torch -------------------------------------------------------------------------------------


def _optimizers(torch, params, cfg, lr, capturable=False):
    """The optimizer, fastest implementation first: fused kernels where this torch has them,
    else foreach (Adam capturable for a CUDA graph)."""
    kind, hp = cfg["optimizer"]
    params = list(params)
    for fused in (DEVICE == "cuda", False):
        extra = dict(fused=True) if fused else dict(foreach=DEVICE == "cuda")
        if capturable and kind == "adam":
            extra["capturable"] = True
        try:
            if kind == "sgd":
                yield torch.optim.SGD(params, lr=lr, momentum=hp["momentum"], **extra)
            else:
                yield torch.optim.Adam(params, lr=lr, **extra)
        except (TypeError, RuntimeError, ValueError):
            continue


def _model(torch, cfg, init):
    from compare import torch_sequential  # bench/ is this worker's script directory

    return torch_sequential(cfg, init).to(DEVICE)


def run_torch(cfg, X, y, epochs, budget, init, n_timed, loss_of, variant="eager"):
    torch = _torch()
    from torch import nn

    model = _model(torch, cfg, init)
    _, hp = cfg["optimizer"]
    if cfg["loss"] == "cross_entropy":
        loss_fn, lr = nn.CrossEntropyLoss(), hp["lr"]
        yt = torch.from_numpy(y.astype(np.int64)).to(DEVICE)
    else:
        loss_fn, lr = nn.MSELoss(), hp["lr"] / 2  # MSELoss = 2 x (1/2 sum_k e^2) for one output
        yt = torch.from_numpy(y.reshape(len(y), -1)).to(DEVICE)
    Xt = torch.from_numpy(X).to(DEVICE)
    N, bs = len(X), cfg["batch"]
    failures = []
    for opt in _optimizers(torch, model.parameters(), cfg, lr, capturable=variant == "cudagraph"):

        def step(xb, yb, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            opt.step()

        full_step = step
        if variant == "compile":
            full_step = torch.compile(step, dynamic=False)
        elif variant == "cudagraph":
            try:
                full_step = _captured(torch, model, opt, loss_fn, Xt[:bs], yt[:bs])
            except Exception as err:  # e.g. a fused optimizer this torch cannot capture
                failures.append(f"{type(err).__name__}: {err}"[:200])
                torch.cuda.synchronize()
                continue
        break
    else:
        raise RuntimeError(f"no optimizer could be captured: {failures}")

    def epoch():
        perm = torch.randperm(N, device=DEVICE)
        Xs, ys = Xt[perm], yt[perm]
        for i in range(0, N, bs):
            xb, yb = Xs[i : i + bs], ys[i : i + bs]
            (full_step if len(xb) == bs else step)(xb, yb)
        _sync(torch)

    torch.manual_seed(0)
    t0 = time.perf_counter()
    epoch()
    warmup = time.perf_counter() - t0
    steady = warmup
    if variant == "compile":  # the first epoch compiled: a second one gives the steady time
        t0 = time.perf_counter()
        epoch()
        steady = time.perf_counter() - t0
    times = []
    for _ in range(n_timed(steady, epochs, budget)):
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
    rows = min(N, 10_000)
    with torch.inference_mode():
        out = model(Xt[:rows])
        if cfg["loss"] == "cross_entropy":
            out = torch.softmax(out, dim=1)
    loss, acc = loss_of(cfg, out.float().cpu().numpy(), y[:rows])
    extra = {"optimizer": f"{type(opt).__name__}({', '.join(_impl(opt))})"}
    if variant == "compile":
        extra["compile_s"] = max(0.0, warmup - statistics.median(times))
    if failures:
        extra["capture_failures"] = failures
    return dict(times=times, warmup_s=warmup, loss=loss, accuracy=acc, **extra)


def _impl(opt) -> list[str]:
    return [k for k in ("fused", "foreach", "capturable") if opt.defaults.get(k)]


def _captured(torch, model, opt, loss_fn, x0, y0):
    """A step function replaying one CUDA graph of the whole step on static batch tensors."""
    static_x, static_y = x0.clone(), y0.clone()
    params = [p.detach().clone() for p in model.parameters()]
    graph = torch.cuda.CUDAGraph()
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up, as torch's documentation asks before a capture
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                loss_fn(model(static_x), static_y).backward()
                opt.step()
        torch.cuda.current_stream().wait_stream(side)
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            loss_fn(model(static_x), static_y).backward()
            opt.step()
    finally:
        # Undo the warm-up in place (the graph holds these tensors): the weights as they were,
        # the optimizer's state as before its first step.
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), params):
                p.copy_(p0)
            for state in opt.state.values():
                for value in state.values():
                    if torch.is_tensor(value):
                        value.zero_()

    def step(xb, yb):
        static_x.copy_(xb)
        static_y.copy_(yb)
        graph.replay()

    return step


RUNNERS = {  # fastbp's GPU runs are compare.run_fastbp(..., device="cuda")
    "torch": lambda *a: run_torch(*a, variant="eager"),
    "torch.compile": lambda *a: run_torch(*a, variant="compile"),
    "torch.cudagraph": lambda *a: run_torch(*a, variant="cudagraph"),
}
