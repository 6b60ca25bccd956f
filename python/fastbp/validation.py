"""Input validation at the public boundary: one place that checks and converts arrays and
hyperparameters, so that every error names the argument and the problem."""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core

if TYPE_CHECKING:
    from .network import MLP

# The activations and losses are the core's: its table is the one list of them.
ACTIVATIONS = tuple(a["name"] for a in _core.activation_table() if a["hidden"])
OUTPUT_ACTIVATIONS = tuple(a["name"] for a in _core.activation_table())
AUTO_INIT = {a["name"]: a["auto_init"] for a in _core.activation_table()}
LOSSES = tuple(_core.loss_names())
DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype: Any) -> np.dtype:
    """Resolve ``dtype`` to float32 or float64."""
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if resolved not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {list(choices)}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_scalar(
    value: Any,
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    integer: bool = False,
) -> Any:
    """Check that ``value`` is a finite real (or integer) number within the given bounds."""
    kinds = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise ValueError(f"{name} must be finite, got {value!r}")
    if min_value is not None:
        below = value < min_value if min_inclusive else value <= min_value
        if below:
            op = ">=" if min_inclusive else ">"
            raise ValueError(f"{name} must be {op} {min_value}, got {value!r}")
    if max_value is not None:
        above = value > max_value if max_inclusive else value >= max_value
        if above:
            op = "<=" if max_inclusive else "<"
            raise ValueError(f"{name} must be {op} {max_value}, got {value!r}")
    return int(value) if integer else float(value)


def check_bool(value: Any, name: str) -> bool:
    """A real bool (not 0/1, not a numpy bool array)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_pair(value: Any, name: str, **bounds: Any) -> tuple[float, float]:
    """A pair of real numbers, each checked by :func:`check_scalar` with ``bounds``."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a pair of numbers, got {type(value).__name__} {value!r}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair of numbers, got {len(value)} values: {value!r}")
    first, second = (check_scalar(v, f"{name}[{i}]", **bounds) for i, v in enumerate(value))
    return first, second


MAX_SEED = 2**64 - 1


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """None, or an integer seed in [0, 2**64)."""
    if seed is None:
        return None
    return check_scalar(seed, name, min_value=0, max_value=MAX_SEED, integer=True)


def resolve_seed(seed: int | None) -> int:
    """A concrete 63-bit seed: the given one, or a fresh one from the OS."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
    return int(seed)


def _as_numeric(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got an array of dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    return arr


def _all_finite(arr: np.ndarray) -> bool:
    """np.isfinite(arr).all() in slices: no temporary the size of the data set."""
    flat = arr.reshape(-1)
    step = 1 << 20
    return all(np.isfinite(flat[i : i + step]).all() for i in range(0, flat.size, step))


def check_X(X: Any, n_features: int, dtype: np.dtype, name: str = "X") -> np.ndarray:
    """Return X as a C-contiguous (n_samples, n_features) array of ``dtype``.

    A 1-D X is taken as one sample when the network has more than one input, and as one
    feature per sample when it has exactly one. Non-contiguous and Fortran-ordered arrays are
    copied into C order; arrays already right are passed through without a copy.
    """
    arr = _as_numeric(X, name)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1) if n_features == 1 else arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one sample is needed, got shape {arr.shape}")
    if arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features per sample, the network expects {n_features}"
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not _all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_Y(Y: Any, n_samples: int, n_out: int, loss: str, dtype: np.dtype, name: str = "Y"):
    """Return Y converted for the core: int32 labels (cross-entropy) or (n, n_out) of ``dtype``."""
    arr = _as_numeric(Y, name)
    if arr.shape[:1] != (n_samples,):
        raise ValueError(
            f"{name} must have one row per sample of X ({n_samples}), got shape {arr.shape}"
        )
    if loss == "cross_entropy" and arr.ndim == 1:
        if np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} contains NaN or infinite values")
            if not np.all(arr == np.round(arr)):
                raise ValueError(f"{name} labels must be whole numbers, got non-integer values")
        if arr.size and (arr.min() < 0 or arr.max() >= n_out):
            raise ValueError(
                f"{name} labels must lie in [0, {n_out}) for {n_out} outputs; "
                f"got values in [{arr.min()}, {arr.max()}]"
            )
        return np.ascontiguousarray(arr, dtype=np.int32)
    if arr.ndim == 1 and n_out == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_out:
        raise ValueError(
            f"{name} must have shape ({n_samples}, {n_out}) for loss={loss!r}, got {arr.shape}"
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if not _all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinite values")
    if loss == "binary_cross_entropy" and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] for binary_cross_entropy")
    if loss == "cross_entropy" and (arr.min() < 0):
        raise ValueError(f"{name} probability rows must be non-negative")
    return arr


def check_data(
    net: MLP, X: Any, Y: Any, x_name: str = "X", y_name: str = "Y"
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets converted for ``net``'s core: see :func:`check_X`, :func:`check_Y`."""
    X = check_X(X, net.layer_sizes[0], net.dtype, name=x_name)
    return X, check_Y(Y, X.shape[0], net.layer_sizes[-1], net.loss, net.dtype, name=y_name)


def check_validation_pair(net: MLP, validation: Any) -> tuple[np.ndarray, np.ndarray]:
    """A validation pair ``(X_val, y_val)`` converted for ``net``'s core."""
    if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
        raise TypeError("validation must be a pair (X_val, y_val)")
    return check_data(net, *validation, x_name="validation X", y_name="validation y")
