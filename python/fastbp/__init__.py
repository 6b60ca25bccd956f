"""fastbp: fast dense neural networks by backpropagation, with the gradients made visible."""

import os as _os
import warnings as _warnings
from typing import Any as _Any

import scipy_openblas32 as _openblas  # noqa: F401  (loads OpenBLAS for the core, RTLD_GLOBAL)

from . import _dispatch


def _load_core() -> None:
    """Import the compiled core with idle OpenMP threads set to sleep, not spin, unless the user
    chose a policy (OMP_WAIT_POLICY=active gains up to ~25% on a dedicated machine). On a busy
    machine spinning workers starve the threads doing the work: a step ran 3-14x slower. The
    variable is read once, when the core's OpenMP runtime starts, and then put back as it was,
    so it does not leak into other libraries or child processes."""
    unset = "OMP_WAIT_POLICY" not in _os.environ
    if unset:
        _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        _dispatch.load_core()  # the core variant for this CPU, as fastbp._core
    finally:
        if unset:
            del _os.environ["OMP_WAIT_POLICY"]


_load_core()

from . import _core, datasets, lab  # noqa: E402  (the core is loaded, under its OpenMP policy)
from ._backend import cuda_available
from .data import LeakWarning, Split, split
from .diagnostics import GradientReport, diagnose
from .history import History
from .io import Checkpoint, load, load_checkpoint
from .lr import LRFinderResult, SweepResult, lr_find, lr_sweep
from .network import MLP
from .optim import (
    SGD,
    AdaGrad,
    Adam,
    AdamW,
    GradientNoise,
    LineSearchSGD,
    Optimizer,
    RMSProp,
    clip_grad_norm,
    clip_grad_value,
)
from .schedules import CosineAnnealingLR, ExponentialLR, LRSchedule, ReduceLROnPlateau, StepLR
from .train import Callback, EarlyStopping, NonFiniteWarning, Trainer

# The version is written once, in pyproject.toml; the build compiles it into the core, which
# spares every import the cost of importlib.metadata (tens of milliseconds).
__version__: str = _core.build_info().get("version") or "0+unknown"


def set_num_threads(n: int) -> None:
    """Set the threads of fastbp's parallel loops and matrix products (its BLAS calls run
    single-threaded inside them, so there is one thread pool).

    A team has at most ``build_info()["max_threads"]`` threads: OpenBLAS's ``MAX_THREADS``
    (64 in scipy-openblas32). Every thread of a team calls BLAS at once, and OpenBLAS aborts the
    process when more threads call it at once than it has buffers for (twice ``MAX_THREADS``,
    which leaves room for two teams training at the same time). A larger ``n`` is clamped, with
    a RuntimeWarning; :func:`get_num_threads` reports the count in use. Without ``set_num_threads``
    fastbp uses OpenMP's default (``OMP_NUM_THREADS``, or one thread per CPU), clamped the same
    way.

    In a child process made by ``fork()`` (``os.fork``, multiprocessing's and joblib's "fork"
    start method) after fastbp was imported, fastbp runs on one thread: the OpenMP thread pool
    of the parent does not exist in the child, and using it there would wait forever.
    """
    from .validation import check_scalar

    n = check_scalar(n, "n", min_value=1, integer=True)
    used = _core.set_num_threads(min(n, 2**31 - 1))
    if used < n:
        why = (
            "in a process made by fork() fastbp runs on one thread (OpenMP's threads do not "
            "survive fork; the 'spawn' and 'forkserver' start methods of multiprocessing "
            "give full teams)"
            if _core.forked_child()
            else f"fastbp runs at most {_core.max_threads()} threads, as many as OpenBLAS "
            "supports calling it at once (its MAX_THREADS)"
        )
        _warnings.warn(f"set_num_threads({n}): {why}; using {used}", RuntimeWarning, stacklevel=2)


def get_num_threads() -> int:
    """The number of threads fastbp's loops use (see :func:`set_num_threads`)."""
    return _core.get_num_threads()


def set_flush_denormals(flush: bool) -> None:
    """Whether fastbp's computations flush subnormal numbers to zero (the default: True).

    Subnormals (float32 below 1.18e-38, float64 below 2.2e-308) cost some CPUs ~100 cycles per
    operation, and a vanishing gradient is where they appear: a deep sigmoid network's epochs
    took 4-8 times as long as a ReLU network's of the same shape. While fastbp computes
    (training, forward, backward, optimizer steps, clipping), its threads therefore treat
    subnormal inputs and results as zero (FTZ and DAZ on x86, FZ on aarch64). A gradient that
    small is then reported as exactly 0, which :func:`diagnose` calls vanishing. Pass False for
    IEEE gradual underflow (tiny but nonzero gradients, at their cost in time).

    Only fastbp's own work is affected: each thread's setting is restored when a call returns,
    so your thread and other libraries compute as before. The setting is process-wide.
    """
    from .validation import check_bool

    _core.set_flush_denormals(check_bool(flush, "flush"))


def get_flush_denormals() -> bool:
    """Whether fastbp's computations flush subnormal numbers to zero (see
    :func:`set_flush_denormals`)."""
    return _core.get_flush_denormals()


def __getattr__(name: str) -> _Any:
    """MLPClassifier and MLPRegressor, imported on first use: they need scikit-learn, which
    ``import fastbp`` must not import."""
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")


def build_info() -> dict[str, _Any]:
    """How the core was built and which copy of it runs.

    Keys: ``compiler``; ``openmp`` (its version, or None when built without OpenMP);
    ``threads`` (how many fastbp uses now: always 1 without OpenMP), ``max_threads`` (the
    most it will use: see :func:`set_num_threads`); ``blas``, ``blas_core``
    (OpenBLAS's kernel for this CPU), ``blas_threads``; ``simd`` (the vector extensions the
    running core was compiled for); ``own_gemm`` (whether the large float32
    products run in fastbp's own kernels rather than OpenBLAS's: in the AVX-512 cores, ``v4``
    and ``native``); ``bfloat16`` (whether this CPU runs
    ``Trainer(matmul_precision="bfloat16")``: it needs AVX512-BF16); ``isa`` (the core variant
    running: ``baseline``, ``v2``, ``v3``, ``v4`` or ``native``), ``isa_built`` (the variants
    installed, best first), ``isa_choice`` (``"auto"``, or the ``FASTBP_ISA`` setting that
    forced it), ``cpu_features`` (what this CPU and operating system support); ``version``;
    ``cuda``:
    False when fastbp was built without its CUDA backend, else a dict: ``cuda_version``,
    ``architectures`` (the GPU code built, e.g. ``"80-real,90"``: machine code for compute
    capability 8.0 and 9.0, and PTX for newer GPUs), ``cublas_version`` (built against) and,
    when the module loads, ``cublas_runtime_version``, ``driver_version``, ``devices`` (GPU
    names), ``available`` (:func:`cuda_available`) and ``unavailable_reason``;
    ``flush_denormals`` (see :func:`set_flush_denormals`).
    """
    from ._backend import cuda_build_info

    info = dict(_core.build_info())
    info["cuda"] = cuda_build_info()
    info.update(_dispatch.info())
    info["threads"] = _core.get_num_threads()
    info["max_threads"] = _core.max_threads()
    info["flush_denormals"] = _core.get_flush_denormals()
    info["version"] = __version__
    return info


__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "AdamW",
    "RMSProp",
    "AdaGrad",
    "LineSearchSGD",
    "Optimizer",
    "clip_grad_norm",
    "clip_grad_value",
    "GradientNoise",
    "Trainer",
    "EarlyStopping",
    "Callback",
    "NonFiniteWarning",
    "History",
    "load",
    "load_checkpoint",
    "Checkpoint",
    "StepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "ReduceLROnPlateau",
    "LRSchedule",
    "split",
    "Split",
    "LeakWarning",
    "diagnose",
    "GradientReport",
    "lr_find",
    "lr_sweep",
    "LRFinderResult",
    "SweepResult",
    "datasets",
    "lab",
    "set_num_threads",
    "get_num_threads",
    "set_flush_denormals",
    "get_flush_denormals",
    "build_info",
    "cuda_available",
    "__version__",
]
