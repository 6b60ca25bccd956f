"""fastbp: fast dense neural networks by backpropagation, with the gradients made visible."""

import os as _os

# Idle OpenMP threads sleep instead of spinning (unless the user chose otherwise): on a busy
# machine, spinning workers starve the threads doing the work and a step can run 100x slower.
# fastbp only opens parallel regions for work large enough to amortise the wake-up.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import scipy_openblas32 as _openblas  # noqa: E402, F401  (loads OpenBLAS for the core, RTLD_GLOBAL)

from . import _core, datasets  # noqa: E402
from .data import LeakWarning, Split, split
from .diagnostics import GradientReport, diagnose
from .history import History
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

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Set the threads of fastbp's parallel loops and matrix products (its BLAS calls run
    single-threaded inside them, so there is one thread pool)."""
    from .validation import check_scalar

    _core.set_num_threads(check_scalar(n, "n", min_value=1, integer=True))


def get_num_threads() -> int:
    """The number of threads fastbp's loops use."""
    return _core.get_num_threads()


def build_info() -> dict:
    """How the core was built: compiler, OpenMP, BLAS and its kernel, SIMD flags, CUDA."""
    info = dict(_core.build_info())
    info["version"] = __version__
    return info


__all__ = [
    "MLP", "SGD", "Adam", "AdamW", "RMSProp", "AdaGrad", "LineSearchSGD", "Optimizer",
    "clip_grad_norm", "clip_grad_value", "GradientNoise",
    "Trainer", "EarlyStopping", "Callback", "NonFiniteWarning", "History",
    "StepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau", "LRSchedule",
    "split", "Split", "LeakWarning", "diagnose", "GradientReport",
    "lr_find", "lr_sweep", "LRFinderResult", "SweepResult", "datasets",
    "set_num_threads", "get_num_threads", "build_info", "__version__",
]
