"""fastbp: fast dense neural networks by backpropagation, with the gradients made visible."""

import scipy_openblas32 as _openblas  # noqa: F401  (loads OpenBLAS for the core, RTLD_GLOBAL)

from . import _core
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

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Set the threads used by fastbp's own loops and by its BLAS."""
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
