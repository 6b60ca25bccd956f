"""Argument checks at the public boundary, in one place.

Policy
------
- **Python checks everything a user can get wrong**, before the core is called, so that every
  error names the argument and says what was expected. The type decides the exception:
  ``TypeError`` when an argument has the wrong type (a str where a number is needed, an array
  of strings, a list where a network is needed), ``ValueError`` when its type is right and its
  value is not (out of bounds, wrong shape, NaN or infinite). NaN and infinity are reported in
  one wording, made by :func:`nan_or_inf`: "X contains NaN or infinite values" for arrays,
  "lr must not be NaN or infinite, got nan" for numbers.
- **The core checks only what protects memory**: array shapes and sizes against the network,
  label ranges (a label is an index), sizes that would overflow. Its exceptions arrive as
  ValueError / TypeError / MemoryError; it never judges a hyperparameter or a NaN.
- A relation between two arguments of one function (``nesterov`` needs ``momentum``;
  ``val + test < 1``) is checked by that function, in the same wording.
- Modules reach each other through public names only: the compiled network through
  :attr:`MLP.core <fastbp.MLP.core>`, the noise stream through
  :attr:`GradientNoise.resolved_seed <fastbp.GradientNoise.resolved_seed>`.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import numpy as np

from . import _core

if TYPE_CHECKING:
    from .network import MLP

T = TypeVar("T")

# The activations and losses are the core's: its table is the one list of them.
ACTIVATIONS = tuple(a["name"] for a in _core.activation_table() if a["hidden"])
OUTPUT_ACTIVATIONS = tuple(a["name"] for a in _core.activation_table())
AUTO_INIT = {a["name"]: a["auto_init"] for a in _core.activation_table()}
LOSSES = tuple(_core.loss_names())

CLASSIFICATION_LOSSES = frozenset(x["name"] for x in _core.loss_table() if x["classification"])
"""Losses whose targets are classes: accuracy is measured, ``predict`` returns labels."""
REGRESSION_LOSSES = frozenset(LOSSES) - CLASSIFICATION_LOSSES
"""Losses whose targets are real values."""
FUSED_OUTPUT = {x["name"]: x["output"] for x in _core.loss_table() if x["fused"]}
"""Losses computed from the logits with their output activation fused in: the only one allowed."""
DEFAULT_OUTPUT = {x["name"]: x["output"] for x in _core.loss_table()}
"""The output activation of ``output_activation=None``, by loss."""

MAX_SEED = 2**64 - 1
MAX_DIM = _core.MAX_DIM
"""The largest layer size and batch, 2**31 - 2**16: BLAS (scipy-openblas32) takes 32-bit int
dimensions, the core indexes a batch's rows with them, and the products' blocking rounds them
up by less than 2**16."""


def nan_or_inf(name: str, value: Any = None) -> ValueError:
    """The one error for NaN or infinity: in an array (``value`` None) or a number."""
    if value is None:
        return ValueError(f"{name} contains NaN or infinite values")
    return ValueError(f"{name} must not be NaN or infinite, got {value!r}")


def check_instance(value: Any, name: str, cls: type[T], what: str) -> T:
    """``value`` itself if it is a ``cls`` (described to the user as ``what``)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")
    return value


def check_optional(value: Any, name: str, cls: type[T], what: str) -> T | None:
    """None, or a ``cls`` (described to the user as ``what``)."""
    if value is not None and not isinstance(value, cls):
        raise TypeError(f"{name} must be {what} or None, got {type(value).__name__}")
    return value


def check_net(net: Any, name: str = "net") -> MLP:
    """``net`` itself if it is a :class:`~fastbp.MLP`."""
    from .network import MLP  # network.py imports this module

    return check_instance(net, name, MLP, "a fastbp.MLP")


def check_dtype(dtype: Any) -> np.dtype:
    """Resolve ``dtype`` to float32 or float64."""
    if dtype is None:  # np.dtype(None) is float64: a silent choice no user made
        raise TypeError("dtype must be 'float32' or 'float64', got None")
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


def check_bool(value: Any, name: str) -> bool:
    """A real bool (not 0/1, not a numpy bool array)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


@overload
def check_scalar(
    value: Any,
    name: str,
    *,
    min_value: float | None = ...,
    max_value: float | None = ...,
    min_inclusive: bool = ...,
    max_inclusive: bool = ...,
    integer: Literal[False] = ...,
) -> float: ...


@overload
def check_scalar(
    value: Any,
    name: str,
    *,
    min_value: float | None = ...,
    max_value: float | None = ...,
    min_inclusive: bool = ...,
    max_inclusive: bool = ...,
    integer: Literal[True],
) -> int: ...


def check_scalar(
    value: Any,
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    integer: bool = False,
) -> float | int:
    """A finite real number (float), or an integer (int), within the given bounds."""
    number: float | int
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if integer:
        if not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
        number = operator.index(value)
    else:
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            raise ValueError(
                f"{name} is too large for a float, got {type(value).__name__}"
            ) from None
        if not math.isfinite(number):
            raise nan_or_inf(name, value)
    below = min_value is not None and (number < min_value if min_inclusive else number <= min_value)
    above = max_value is not None and (number > max_value if max_inclusive else number >= max_value)
    if below or above:
        bounds = _interval(min_value, max_value, min_inclusive, max_inclusive)
        raise ValueError(f"{name} must be {bounds}, got {value!r}")
    return number


def _interval(
    low: float | None, high: float | None, low_inclusive: bool, high_inclusive: bool
) -> str:
    if low is not None and high is not None:
        return f"in {'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    if low is not None:
        return f"{'>=' if low_inclusive else '>'} {low}"
    return f"{'<=' if high_inclusive else '<'} {high}"


def check_pair(value: Any, name: str, **bounds: Any) -> tuple[float, float]:
    """A pair of real numbers, each checked by :func:`check_scalar` with ``bounds``."""
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"{name} must be a pair of numbers, got {type(value).__name__} {value!r}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair of numbers, got {len(value)} values: {value!r}")
    first, second = (check_scalar(v, f"{name}[{i}]", **bounds) for i, v in enumerate(value))
    return first, second


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


# ---- the network's structure -----------------------------------------------------------------

INITS = (
    "auto",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "orthogonal",
)


def check_layer_sizes(layer_sizes: Any) -> list[int]:
    """``[n_in, hidden..., n_out]``: at least two ints in [1, MAX_DIM]."""
    if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, Sequence):
        raise TypeError(f"layer_sizes must be a list of ints, got {type(layer_sizes).__name__}")
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least 2 entries [n_in, n_out], got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"layer_sizes entries must be ints, got {s!r}")
        if s <= 0:
            raise ValueError(f"layer_sizes entries must be positive, got {sizes}")
        if int(s) > MAX_DIM:
            raise ValueError(
                f"layer_sizes entries must be at most 2**31 - 2**16 = {MAX_DIM} (BLAS's "
                f"dimensions are 32-bit ints, less room for the products' blocking), got {s}"
            )
    return [int(s) for s in sizes]


def count_params(layer_sizes: Sequence[int]) -> int:
    """Weights and biases of a network of these sizes: sum of (n_in + 1) * n_out."""
    return sum((a + 1) * b for a, b in zip(layer_sizes, layer_sizes[1:]))


def available_memory() -> int | None:
    """Bytes this process can still allocate without being killed for it: the system's
    available memory (Linux: MemAvailable; elsewhere the physical memory), within the
    container's limit (cgroup) if there is one; None where unknown."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not limits and hasattr(os, "sysconf"):
        try:
            limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        except (ValueError, OSError):
            pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        (  # cgroup v1
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit():  # "max": no limit
            limits.append(max(0, int(limit) - usage))
        break
    return min(limits) if limits else None


def check_network_memory(layer_sizes: list[int], dtype: np.dtype, on_host: bool = True) -> None:
    """MemoryError, before anything is allocated, when a network of these sizes does not fit
    in host memory: its parameters and gradients in ``dtype`` (for a GPU network, whose both
    live on the device, one host copy of the parameters to upload), and its weights' initial
    draw in float64 (numpy draws them at that precision). The GPU's own memory is the CUDA
    backend's to check, when it allocates."""
    n = count_params(layer_sizes)
    need = n * ((2 if on_host else 1) * np.dtype(dtype).itemsize + 8)
    available = available_memory()
    if available is not None and need > available:
        raise MemoryError(
            f"layer_sizes {layer_sizes}: {n} parameters need {need / 2**30:.3g} GiB "
            f"(parameters and gradients in {np.dtype(dtype).name}, and the initial weights drawn "
            f"in float64); {available / 2**30:.3g} GiB of memory is available"
        )


def check_batch_rows(X: Any, name: str = "X") -> None:
    """That X's rows fit in one batch (at most MAX_DIM): checked before X is converted, which
    could copy it."""
    shape = np.shape(X)
    if shape and shape[0] > MAX_DIM:
        raise ValueError(
            f"{name} has {shape[0]} rows; one batch may have at most 2**31 - 2**16 = {MAX_DIM}"
        )


def check_activations(activation: Any, n_hidden: int) -> list[str]:
    """One hidden activation name per hidden layer, from one name or a list of them."""
    if isinstance(activation, str):
        return [check_choice(activation, "activation", ACTIVATIONS)] * n_hidden
    if not isinstance(activation, Sequence):
        raise TypeError(f"activation must be a str or a list of str, got {activation!r}")
    acts = list(activation)
    if len(acts) != n_hidden:
        raise ValueError(
            f"activation lists one name per hidden layer: {n_hidden} expected, got {len(acts)}"
        )
    return [check_choice(a, "activation", ACTIVATIONS) for a in acts]


def check_output_activation(output_activation: Any, loss: str) -> str:
    """The output activation for ``loss``: any for mse, the fused one for the others."""
    if output_activation is None:
        return DEFAULT_OUTPUT[loss]
    output_activation = check_choice(output_activation, "output_activation", OUTPUT_ACTIVATIONS)
    if loss in FUSED_OUTPUT and output_activation != FUSED_OUTPUT[loss]:
        raise ValueError(
            f"output_activation for loss={loss!r} must be None or "
            f"{FUSED_OUTPUT[loss]!r} (fused into the loss), got {output_activation!r}"
        )
    return output_activation


# The largest float divided by these is the largest scale whose draws stay finite: numpy's
# normal draws stay within 14 standard deviations (its ziggurat's tail ends there), and a
# uniform draw computes -limit + 2 * limit * u, so 2 * limit must be finite.
INIT_SCALE_DIVISOR = {"normal": 16.0, "uniform": 2.0}


def check_init(init: Any, dtype: np.dtype) -> str | tuple[str, float]:
    """A scheme name of INITS, or ``("normal", std)`` / ``("uniform", limit)`` whose draws
    stay finite in ``dtype``."""
    if isinstance(init, str):
        return check_choice(init, "init", INITS)
    if not isinstance(init, tuple):
        raise TypeError(f"init must be a str or a (kind, scale) tuple, got {init!r}")
    if len(init) == 2 and init[0] in ("normal", "uniform"):
        kind = init[0]
        largest = float(np.finfo(dtype).max) / INIT_SCALE_DIVISOR[kind]
        name = f"init[1] ({kind} {'std' if kind == 'normal' else 'limit'})"
        scale = check_scalar(init[1], name, min_value=0, min_inclusive=False)
        if scale > largest:
            raise ValueError(
                f"{name} must be at most {largest:.3g} in {np.dtype(dtype).name}, or the "
                f"weights drawn overflow to infinity; got {init[1]!r}"
            )
        return (kind, scale)
    raise ValueError(
        f"init must be one of {list(INITS)}, ('normal', std) or ('uniform', limit); got {init!r}"
    )


# ---- arrays ----------------------------------------------------------------------------------


def _as_numeric(a: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except ValueError as err:  # nested lists of different lengths
        raise ValueError(f"{name} must be a rectangular array of numbers: {err}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold numbers, got an array of dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind == "m":  # numpy counts durations among its numbers
        raise TypeError(f"{name} must hold numbers, got an array of dtype {arr.dtype}")
    return arr


def _all_finite(arr: np.ndarray) -> bool:
    """np.isfinite(arr).all() in slices: no temporary the size of the data set."""
    if not np.issubdtype(arr.dtype, np.inexact):
        return True
    flat = arr.reshape(-1)
    step = 1 << 20
    return all(np.isfinite(flat[i : i + step]).all() for i in range(0, flat.size, step))


def _as_dtype(arr: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``arr`` as a C-contiguous array of ``dtype``. A finite value beyond ``dtype``'s range
    (1e300 for float32) is refused here by name, rather than turned into an infinity with
    numpy's overflow warning."""
    largest = float(np.finfo(dtype).max)
    if np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize > np.dtype(dtype).itemsize:
        flat = arr.reshape(-1)
        step = 1 << 20
        for i in range(0, flat.size, step):
            part = np.abs(flat[i : i + step])
            if (part[np.isfinite(part)] > largest).any():
                raise ValueError(
                    f"{name} has values beyond {np.dtype(dtype).name}'s range (about "
                    f"+-{largest:.3g}); use a float64 network, or scale {name}"
                )
    return np.ascontiguousarray(arr, dtype=dtype)


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
    arr = _as_dtype(arr, dtype, name)
    if not _all_finite(arr):
        raise nan_or_inf(name)
    return arr


def check_Y(
    Y: Any, n_samples: int, n_out: int, loss: str, dtype: np.dtype, name: str = "Y"
) -> np.ndarray:
    """Return Y converted for the core: int32 labels (cross-entropy) or (n, n_out) of ``dtype``."""
    arr = _as_numeric(Y, name)
    if arr.shape[:1] != (n_samples,):
        raise ValueError(
            f"{name} must have one row per sample of X ({n_samples}), got shape {arr.shape}"
        )
    if loss == "cross_entropy" and arr.ndim == 1:
        if np.issubdtype(arr.dtype, np.floating):
            if not _all_finite(arr):
                raise nan_or_inf(name)
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
    arr = _as_dtype(arr, dtype, name)
    if not _all_finite(arr):
        raise nan_or_inf(name)
    if loss == "binary_cross_entropy" and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] for binary_cross_entropy")
    if loss == "cross_entropy" and (arr.min() < 0):
        raise ValueError(f"{name} probability rows must be non-negative")
    return arr


def _finite_as(arr: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """``arr`` as ``dtype``, every value finite there: NaN, infinity and values beyond the
    dtype's range are refused by name (a network never holds them by accident)."""
    arr = _as_dtype(arr, dtype, name)
    if not _all_finite(arr):
        raise nan_or_inf(name)
    return arr


def check_params_vector(values: Any, n_params: int, dtype: np.dtype, name: str) -> np.ndarray:
    """A network's flat parameters (or gradients): finite numbers, shape (n_params,), as
    ``dtype``."""
    arr = _as_numeric(values, name)
    if arr.shape != (n_params,):
        raise ValueError(f"{name} must have shape ({n_params},) (n_params), got {arr.shape}")
    return _finite_as(arr, dtype, name)


def check_layer_params(
    weights: Any, biases: Any, layer_sizes: list[int], dtype: np.dtype
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One weight matrix (n_in, n_out) and one bias vector (n_out,) per weight layer, of
    finite numbers."""
    n_layers = len(layer_sizes) - 1
    out = []
    for name, values in (("weights", weights), ("biases", biases)):
        if isinstance(values, (str, bytes, np.ndarray)) or not isinstance(values, Sequence):
            raise TypeError(
                f"{name} must be a list of arrays, one per weight layer; "
                f"got {type(values).__name__}"
            )
        if len(values) != n_layers:
            raise ValueError(
                f"{name} must hold {n_layers} arrays (one per layer), got {len(values)}"
            )
        arrays = []
        for layer, v in enumerate(values):
            arr = _as_numeric(v, f"{name}[{layer}]")
            n_in, n_out = layer_sizes[layer], layer_sizes[layer + 1]
            shape = (n_in, n_out) if name == "weights" else (n_out,)
            if arr.shape != shape:
                raise ValueError(f"{name}[{layer}] must have shape {shape}, got {arr.shape}")
            arrays.append(_finite_as(arr, dtype, f"{name}[{layer}]"))
        out.append(arrays)
    return out[0], out[1]


def check_inputs(net: MLP, X: Any, name: str = "X") -> np.ndarray:
    """Inputs converted for ``net``'s core: see :func:`check_X`."""
    return check_X(X, net.layer_sizes[0], net.dtype, name=name)


def check_data(
    net: MLP, X: Any, y: Any, x_name: str = "X", y_name: str = "y"
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets converted for ``net``'s core: see :func:`check_X`, :func:`check_Y`."""
    X = check_inputs(net, X, name=x_name)
    Y = check_Y(y, X.shape[0], net.layer_sizes[-1], net.loss, net.dtype, name=y_name)
    if net.device == "cpu" and (X.base is not None or Y.base is not None):
        X, Y = _apart_from(net, X, Y)
    return X, Y


def _apart_from(net: MLP, *arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays, each copied if it may overlap ``net``'s parameters or gradients: the core
    writes those while it reads the data (a batch taken from ``net.grads`` itself, say). An
    array owning its memory (``base`` None) cannot."""
    own = (net.params, net.grads)
    return [
        a.copy() if a.base is not None and any(np.may_share_memory(a, b) for b in own) else a
        for a in arrays
    ]


def check_validation_pair(net: MLP, validation: Any) -> tuple[np.ndarray, np.ndarray]:
    """A validation pair ``(X_val, y_val)`` converted for ``net``'s core."""
    if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
        raise TypeError(
            f"validation must be a pair (X_val, y_val), got {type(validation).__name__}"
        )
    X_val, y_val = validation
    return check_data(net, X_val, y_val, x_name="validation X", y_name="validation y")


def check_monitor(monitor: str, net: MLP, has_validation: bool) -> None:
    """Whether ``monitor`` can be measured when training ``net`` (with validation data or not)."""
    if monitor.startswith("val_") and not has_validation:
        raise ValueError(f"validation data is needed to monitor {monitor!r}")
    if monitor.endswith("accuracy") and net.loss not in CLASSIFICATION_LOSSES:
        raise ValueError(f"{monitor!r} needs a classification loss, not {net.loss!r}")


def check_split_arrays(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """X and y for :func:`~fastbp.split`: X numeric (n_samples, n_features), y one entry or
    row per sample; both kept in their own dtype (y may hold strings as class labels)."""
    X = _as_numeric(X, "X")
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ValueError(
            f"X must be 2-D (n_samples, n_features) with n_features >= 1; got shape {X.shape}"
        )
    if not _all_finite(X):
        raise nan_or_inf("X")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D; got shape {y.shape}")
    if len(y) != len(X):
        raise ValueError(f"X and y have different lengths: {len(X)} and {len(y)}")
    if np.issubdtype(y.dtype, np.inexact) and not _all_finite(y):
        raise nan_or_inf("y")
    return X, y
