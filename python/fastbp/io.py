"""Saving and loading models: one versioned ``.npz`` file of plain arrays, no pickle inside.

``net.save(path)`` and ``est.save(path)`` write a file; :func:`load` gives back the
:class:`~fastbp.MLP`, :class:`~fastbp.MLPClassifier` or :class:`~fastbp.MLPRegressor` it
holds, and :func:`load_checkpoint` also the optimizer, noise and history saved with a network,
so that training resumes exactly where it stopped.

File format ``fastbp.model``, version 1
---------------------------------------
A NumPy ``.npz`` archive (``np.savez``: a zip of ``.npy`` arrays, each with a CRC-32 of its
bytes) that :func:`load` opens with ``allow_pickle=False``. Its arrays:

``header``
    uint8, the UTF-8 text of a JSON object (strict JSON: non-finite floats, tuples, NumPy
    arrays and the two objects an estimator parameter may hold are tagged objects,
    ``{"$float": "nan" | "inf" | "-inf"}``, ``{"$tuple": [...]}``, ``{"$array": name}``
    (with ``"object": true`` for an array of str that was of dtype object),
    ``{"$GradientNoise": {eta, gamma, seed, t}}``, ``{"$RandomState": {keys, pos, has_gauss,
    cached}}`` (``RandomState.get_state()``)). Its fields:

    - ``format``: ``"fastbp.model"``; ``format_version``: 1; ``fastbp_version``: the writer's.
    - ``kind``: ``"MLP"``, ``"MLPClassifier"`` or ``"MLPRegressor"``.
    - ``network``: ``layer_sizes``, ``activations`` (hidden), ``output_activation``, ``loss``,
      ``init``, ``dtype`` (``"float32"`` / ``"float64"``), ``seed`` (int or null).
    - ``arrays``: every other array of the file by name, ``{"dtype": ..., "shape": [...]}``
      (``dtype`` as NumPy's ``dtype.str``, e.g. ``"<f4"``).
    - ``optimizer``: null, or ``class`` (``"SGD"``, ``"Adam"``, ``"AdamW"``, ``"RMSProp"``,
      ``"AdaGrad"``, ``"LineSearchSGD"``), ``hyperparameters`` (torch.optim names) and
      ``state``: null (a fresh optimizer) or ``Optimizer.state_dict()``, ``{"dtype",
      "n_params", "core": {"step", "momentum_fresh", "buffers": {name: {"$array": ...}}}}``,
      its buffers in the arrays ``optimizer.state.core.buffers.<name>`` (torch's names).
    - ``grad_noise``: null, or ``eta``, ``gamma``, ``seed`` (the resolved seed) and ``t``.
    - ``history``: whether the array ``history`` holds the run's :class:`~fastbp.History`.
    - ``estimator`` (estimators only): ``params``, the scikit-learn parameters
      (``get_params()``), and ``fitted``, the fitted attributes.
    - ``data`` (optional, written by ``fastbp train --save``): how the model reads its data,
      for ``fastbp predict``: ``features`` (the input columns' names, or null), ``target``
      (the target column's name, or null), ``classes`` (the label names of the outputs, or
      null for regression), ``mean`` and ``scale`` (the standardisation ``(x - mean) / scale``
      learned on the training part, or null).
``weights_<l>``, ``biases_<l>``
    The parameters of weight layer ``l``: (n_in, n_out) and (n_out,), of the network's dtype.
``history``
    uint8, the UTF-8 text of ``History.to_json()``, when saved.
``fitted.<name>``, ``data.<name>``
    An estimator's fitted arrays (``classes_``, ``feature_names_in_``) and the arrays of the
    ``data`` record, referenced from the header by ``{"$array": ...}``.

:func:`load` reads a file of this version or an older one. It builds everything before it
returns and executes nothing from the file: the classes it may build are the fixed ones above.
A file it cannot use (truncated, corrupt, not a fastbp model, written by a newer fastbp, with
an array missing or of the wrong shape) gives one ValueError that names the problem.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from typing import IO, Any, NamedTuple, Union

import numpy as np

from .history import History
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
)
from .validation import check_dtype, check_layer_sizes, check_net, check_optional

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "SavedModel",
    "load",
    "load_checkpoint",
    "read_file",
    "save",
    "write_file",
]

FORMAT = "fastbp.model"
FORMAT_VERSION = 1

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]

OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSProp, AdaGrad, LineSearchSGD)
}
KINDS = ("MLP", "MLPClassifier", "MLPRegressor")
_ARRAY_KINDS = "biufU"  # bool, int, uint, float, str: the array dtypes a file may hold


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` reads: the model and, when they were saved with a
    network, the optimizer (with its state), the gradient noise and the history."""

    model: Any  # MLP, MLPClassifier or MLPRegressor
    optimizer: Optimizer | None
    grad_noise: GradientNoise | None
    history: History | None


class SavedModel(NamedTuple):
    """The parts of a model file, built and checked by :func:`read_file`. ``extra`` is the
    header's ``estimator`` record and ``data`` its ``data`` record, their tagged values
    decoded (None where absent)."""

    kind: str
    net: MLP
    optimizer: Optimizer | None
    grad_noise: GradientNoise | None
    history: History | None
    extra: dict[str, Any] | None
    data: dict[str, Any] | None


# ---- saving --------------------------------------------------------------------------------


def save(
    net: MLP,
    path: PathOrFile,
    *,
    optimizer: Optimizer | None = None,
    history: History | None = None,
    grad_noise: GradientNoise | None = None,
) -> None:
    """Write a network to ``path``; :meth:`MLP.save <fastbp.MLP.save>` is this function.

    Parameters
    ----------
    net : MLP
    path : str, os.PathLike or binary file object
        Written as given (no ``.npz`` is appended). A path is written to a temporary file
        in the same folder, then renamed over ``path``: an interrupted save leaves an earlier
        file whole.
    optimizer, history, grad_noise : optional
        Saved with the network (the optimizer with its state) so that
        ``Trainer.fit(..., initial_epoch=len(history))`` on what :func:`load_checkpoint`
        returns continues the run exactly.
    """
    if type(check_net(net)) is not MLP:
        raise TypeError(
            f"net must be a fastbp.MLP, not a subclass, which load could not rebuild; "
            f"got {type(net).__name__}"
        )
    check_optional(optimizer, "optimizer", Optimizer, "a fastbp optimizer")
    check_optional(history, "history", History, "a fastbp.History")
    check_optional(grad_noise, "grad_noise", GradientNoise, "a fastbp.GradientNoise")
    write_file(path, "MLP", net, optimizer=optimizer, grad_noise=grad_noise, history=history)


def write_file(
    path: PathOrFile,
    kind: str,
    net: MLP,
    *,
    optimizer: Optimizer | None = None,
    optimizer_state: bool = True,
    grad_noise: GradientNoise | None = None,
    history: History | None = None,
    extra: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Write the parts of a model file (the layer under :func:`save`, the estimators'
    ``save`` and ``fastbp train --save``). ``extra`` is the estimator record, ``data`` how the
    model reads its data: plain values, tuples, non-finite floats, ndarrays, a GradientNoise
    or a RandomState, nested in lists and dicts."""
    from . import __version__

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if history is not None and history.layer_activations != net.layer_activations:
        raise ValueError(
            f"history records a network with layer_activations {history.layer_activations}, "
            f"not this one's {net.layer_activations}"
        )
    arrays: dict[str, np.ndarray] = {}
    for layer, (w, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"weights_{layer}"], arrays[f"biases_{layer}"] = np.array(w), np.array(b)
    header: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastbp_version": __version__,
        "kind": kind,
        "network": {
            "layer_sizes": list(net.layer_sizes),
            "activations": list(net.activations),
            "output_activation": net.output_activation,
            "loss": net.loss,
            "init": net.init,
            "dtype": net.dtype.name,
            "seed": net.seed,
        },
        "optimizer": None,
        "grad_noise": None if grad_noise is None else _noise_record(grad_noise),
        "history": history is not None,
    }
    if history is not None:
        arrays["history"] = _text_array(history.to_json())
    header = _encode(header, "header", arrays)
    if optimizer is not None:
        if optimizer_state:
            _check_state_fits(optimizer, net, "optimizer")
        header["optimizer"] = _encode(
            _optimizer_record(optimizer, optimizer_state), "optimizer", arrays
        )
    if extra is not None:
        header["estimator"] = _encode(extra, "", arrays)
    if data is not None:
        header["data"] = _encode(data, "data", arrays)
    header["arrays"] = {
        name: {"dtype": a.dtype.str, "shape": list(a.shape)} for name, a in arrays.items()
    }
    _write(path, {"header": _text_array(json.dumps(header, allow_nan=False)), **arrays})


def _optimizer_record(optimizer: Optimizer, with_state: bool) -> dict[str, Any]:
    name = type(optimizer).__name__
    if OPTIMIZERS.get(name) is not type(optimizer):
        raise TypeError(
            f"optimizer must be one of fastbp's {list(OPTIMIZERS)} (not a subclass), got {name}"
        )
    state = optimizer.state_dict() if with_state else None
    return {"class": name, "hyperparameters": optimizer.hyperparameters(), "state": state}


def _check_state_fits(optimizer: Optimizer, net: MLP, name: str) -> None:
    """ValueError unless the optimizer's state (if any) is for ``net``, as its next step
    would require (Optimizer.state_for)."""
    mismatch = optimizer.state_mismatch(net)
    if mismatch:
        raise ValueError(f"{name}: its {mismatch}")


def _noise_record(noise: GradientNoise) -> dict[str, Any]:
    # The resolved seed: a noise drawn with seed=None goes on with the same stream.
    return {"eta": noise.eta, "gamma": noise.gamma, "seed": noise.resolved_seed, "t": noise.t}


def _text_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _encode(value: Any, where: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as strict JSON, tagging what JSON lacks (see the module docstring); an ndarray
    goes to ``arrays`` under its path in the record, ``where``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else {"$float": repr(v)}
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, f"{where}[{i}]", arrays) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]", arrays) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            str(k): _encode(v, f"{where}.{k}" if where else str(k), arrays)
            for k, v in value.items()
        }
    if isinstance(value, np.ndarray):
        return _encode_array(value, where, arrays)
    if isinstance(value, GradientNoise):
        return {"$GradientNoise": _noise_record(value)}
    if isinstance(value, np.random.RandomState):
        state: Any = value.get_state(legacy=True)  # ("MT19937", keys, pos, has_gauss, cached)
        _, keys, pos, has_gauss, cached = state
        record = {"keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "cached": cached}
        return {"$RandomState": record}
    raise TypeError(
        f"{where}: a {type(value).__name__} cannot be saved (a fastbp file holds numbers, "
        "strings, lists and arrays)"
    )


def _encode_array(value: np.ndarray, where: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    record: dict[str, Any] = {"$array": where}
    if value.dtype == object:  # scikit-learn keeps str labels and feature names so
        if not all(isinstance(v, str) for v in value.flat):
            raise TypeError(f"{where}: an array of Python objects other than str cannot be saved")
        value = value.astype(str)
        record["object"] = True
    elif value.dtype.kind not in _ARRAY_KINDS:
        raise TypeError(f"{where}: an array of dtype {value.dtype} cannot be saved")
    arrays[where] = np.ascontiguousarray(value)
    return record


def _write(path: PathOrFile, arrays: dict[str, Any]) -> None:
    """The file written whole beside the target, then renamed over it: a failed save leaves
    the earlier file. It gets the mode the target had (or a new file would get: 0o666 less
    the umask, where a temporary file has 0o600), and a symbolic link keeps pointing at the
    file it named, which is the one replaced."""
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    target = os.path.realpath(os.fspath(path))
    try:
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=os.path.dirname(target))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):  # the error to raise is the first one
            os.chmod(tmp, 0o600)  # Windows removes no read-only file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask: read from /proc on Linux, elsewhere set and put back at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---- loading -------------------------------------------------------------------------------


def load(path: PathOrFile) -> Any:
    """The network or estimator saved in ``path``: an :class:`~fastbp.MLP`,
    :class:`~fastbp.MLPClassifier` or :class:`~fastbp.MLPRegressor`, as saved.

    Raises
    ------
    OSError
        ``path`` cannot be opened (FileNotFoundError when it does not exist).
    ValueError
        The file is not a fastbp model this version can read: truncated or corrupt, another
        kind of file, written by a newer fastbp, or with a missing or malformed part. The
        message names the file and the problem.
    ImportError
        The file holds an estimator and scikit-learn is not installed.
    """
    return load_checkpoint(path).model


def load_checkpoint(path: PathOrFile) -> Checkpoint:
    """The model saved in ``path`` and, for a network, the optimizer, gradient noise and
    history saved with it (None where not saved); errors as :func:`load`.

    Examples
    --------
    Continue a run of ``k`` epochs saved with ``net.save(path, optimizer=opt,
    history=history, grad_noise=noise)``, in the same Trainer configuration::

        ck = fb.load_checkpoint(path)
        trainer = fb.Trainer(ck.model, ck.optimizer, grad_noise=ck.grad_noise, seed=seed)
        ck.history.extend(trainer.fit(X, y, initial_epoch=len(ck.history)))
    """
    saved = read_file(path)
    if saved.kind == "MLP":
        return Checkpoint(saved.net, saved.optimizer, saved.grad_noise, saved.history)
    try:
        from . import estimators
    except ImportError as err:
        raise ImportError(
            f"{_name(path)} holds an {saved.kind}, which needs scikit-learn: {err}"
        ) from None
    try:
        model = estimators.from_saved(saved)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{_name(path)}: {saved.kind}: {_message(err)}") from None
    return Checkpoint(model, None, None, None)


def read_file(path: PathOrFile) -> SavedModel:
    """The parts of a model file, each built and checked; errors as :func:`load`."""
    arrays = _read(path)
    try:
        return _build(arrays)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{_name(path)}: {_message(err)}") from None
    except RecursionError:  # JSON nested thousands deep: no file fastbp writes
        raise ValueError(f"{_name(path)}: the header is nested too deeply") from None


def _name(path: PathOrFile) -> str:
    if hasattr(path, "read"):
        return str(getattr(path, "name", "the file"))
    return os.fspath(path)


def _message(err: BaseException) -> str:
    return err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else repr(err)


def _read(path: PathOrFile) -> dict[str, np.ndarray]:
    """Every array of the archive, read and CRC-checked. Only opening ``path`` raises OSError;
    every other failure is the file's and becomes one ValueError."""
    name = _name(path)
    f: Any = path if hasattr(path, "read") else open(os.fspath(path), "rb")
    try:
        magic = f.read(4)
        f.seek(-len(magic), 1)
        if magic != b"PK\x03\x04":  # how every archive np.savez writes begins
            kind = "a single .npy array" if magic == b"\x93NUM" else "not an .npz archive"
            raise ValueError(f"{name}: not a fastbp model file ({kind})")
        # A damaged archive can fail anywhere (zipfile, numpy's header parser) with any
        # exception: to the caller all of them mean the same.
        try:
            archive = np.load(f, allow_pickle=False)
        except Exception as err:
            raise ValueError(f"{name}: the file is damaged or truncated ({err})") from None
        with archive:
            if "header" not in archive.files:
                raise ValueError(f"{name}: not a fastbp model file (it has no 'header' array)")
            # np.savez stores its arrays uncompressed, so none can be larger than the file: a
            # compressed member (a "zip bomb" among them) is refused before it is inflated.
            packed = [i.filename for i in archive.zip.infolist() if i.compress_type != 0]
            if packed:
                raise ValueError(
                    f"{name}: compressed members {packed[:5]}, which fastbp never writes"
                )
            arrays = {}
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except Exception as err:
                    if "allow_pickle" in str(err):
                        raise ValueError(
                            f"{name}: array {key!r} holds pickled Python objects, which fastbp "
                            "never writes and never loads"
                        ) from None
                    raise ValueError(
                        f"{name}: the file is damaged or truncated (array {key!r}: {err})"
                    ) from None
                if not isinstance(arrays[key], np.ndarray):  # a member without .npy's header
                    raise ValueError(f"{name}: member {key!r} is not a .npy array")
        return arrays
    finally:
        if f is not path:
            f.close()


def _build(arrays: dict[str, np.ndarray]) -> SavedModel:
    """The objects the arrays describe, all built before any is returned."""
    header = _header(arrays.pop("header"))
    _check_manifest(_field(header, "arrays", dict), arrays)
    net = _network(_field(header, "network", dict), arrays)
    optimizer = _optimizer(_field(header, "optimizer", (dict, type(None))), arrays)
    if optimizer is not None:
        _check_state_fits(optimizer, net, "the optimizer")
    noise = _gradient_noise(_field(header, "grad_noise", (dict, type(None))))
    history = None
    if _field(header, "history", bool):
        if "history" not in arrays:
            raise ValueError("array 'history' is missing")
        history = History.from_json(_text(arrays["history"], "history"))
        if history.layer_activations != net.layer_activations:
            raise ValueError("the history records another network than the one saved")
    extra = None
    if header["kind"] != "MLP":
        extra = _decode(_field(header, "estimator", dict), arrays)
        if optimizer is None:
            raise ValueError(f"an {header['kind']} file must hold its optimizer")
    data = _decode(header["data"], arrays) if "data" in header else None
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"header field 'data' must be an object, got {data!r}")
    return SavedModel(header["kind"], net, optimizer, noise, history, extra, data)


def _header(raw: np.ndarray) -> dict[str, Any]:
    try:
        header = json.loads(_text(raw, "header"))
    except json.JSONDecodeError as err:
        raise ValueError(f"not a fastbp model file (its header is not JSON: {err})") from None
    found = header.get("format") if isinstance(header, dict) else None
    if found != FORMAT:
        raise ValueError(f"not a fastbp model file (header format {found!r}, not {FORMAT!r})")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"header format_version must be a positive int, got {version!r}")
    if version > FORMAT_VERSION:
        from . import __version__

        raise ValueError(
            f"written by a newer fastbp ({header.get('fastbp_version')}, file format "
            f"version {version}); fastbp {__version__} reads versions up to {FORMAT_VERSION}: "
            "upgrade fastbp to load it"
        )
    if header.get("kind") not in KINDS:
        raise ValueError(f"header kind must be one of {list(KINDS)}, got {header.get('kind')!r}")
    return header


def _text(raw: np.ndarray, name: str) -> str:
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(
            f"array {name!r} must be UTF-8 text (uint8, 1-D), got {raw.dtype} {raw.shape}"
        )
    try:
        return raw.tobytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"array {name!r} is not UTF-8 text: {err}") from None


def _check_manifest(manifest: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """The arrays the header lists are those of the file, with their dtype and shape."""
    missing = sorted(set(manifest) - set(arrays))
    if missing:
        raise ValueError(f"arrays missing from the file: {missing}")
    extra = sorted(set(arrays) - set(manifest))
    if extra:
        raise ValueError(f"arrays the header does not list: {extra}")
    for name, entry in manifest.items():
        a = arrays[name]
        found = {"dtype": a.dtype.str, "shape": list(a.shape)}
        if entry != found:
            raise ValueError(f"array {name!r} is {found}, the header says {entry!r}")


def _field(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in record:
        raise ValueError(f"header field {key!r} is missing")
    value = record[key]
    if not isinstance(value, kind):
        raise ValueError(f"header field {key!r} has the wrong type: {value!r}")
    return value


NETWORK_FIELDS = (
    "layer_sizes",
    "activations",
    "output_activation",
    "loss",
    "init",
    "dtype",
    "seed",
)


def _network(spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> MLP:
    if sorted(spec) != sorted(NETWORK_FIELDS):
        raise ValueError(
            f"header network must have the fields {list(NETWORK_FIELDS)}, got {sorted(spec)}"
        )
    try:
        sizes = check_layer_sizes(spec["layer_sizes"])
        dtype = check_dtype(spec["dtype"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"the network it describes is invalid: {_message(err)}") from None
    # Every layer's arrays are checked before the network is built: the header's sizes
    # allocate nothing that the file's arrays do not hold.
    weights, biases = [], []
    for layer in range(len(sizes) - 1):
        n_in, n_out = sizes[layer], sizes[layer + 1]
        for kind, shape, out in (
            ("weights", (n_in, n_out), weights),
            ("biases", (n_out,), biases),
        ):
            key = f"{kind}_{layer}"
            if key not in arrays:
                raise ValueError(f"array {key!r} is missing")
            saved = arrays[key]
            if saved.shape != shape or saved.dtype != dtype:
                raise ValueError(
                    f"array {key!r} is {saved.dtype} {saved.shape}; the network needs "
                    f"{dtype} {shape}"
                )
            if not np.isfinite(saved).all():
                raise ValueError(f"array {key!r} holds NaN or infinite values")
            out.append(saved)
    expected = {
        f"{kind}_{layer}" for kind in ("weights", "biases") for layer in range(len(sizes) - 1)
    }
    stray = sorted(k for k in arrays if k.startswith(("weights_", "biases_")) and k not in expected)
    if stray:
        raise ValueError(f"arrays {stray} belong to no layer of the network")
    try:
        net = MLP(
            sizes,
            activation=spec["activations"],
            loss=spec["loss"],
            output_activation=spec["output_activation"],
            init=_decode(spec["init"], {}),
            dtype=dtype,
            seed=spec["seed"],
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"the network it describes is invalid: {_message(err)}") from None
    net.set_weights(weights, biases)
    return net


def _optimizer(record: dict[str, Any] | None, arrays: Mapping[str, np.ndarray]) -> Optimizer | None:
    if record is None:
        return None
    if sorted(record) != ["class", "hyperparameters", "state"]:
        raise ValueError(f"header optimizer must have class, hyperparameters and state: {record!r}")
    cls = OPTIMIZERS.get(record["class"]) if isinstance(record["class"], str) else None
    if cls is None:
        raise ValueError(
            f"header optimizer class must be one of {list(OPTIMIZERS)}, got {record['class']!r}"
        )
    hyper = _field(record, "hyperparameters", dict)
    names = [f.name for f in cls.hyperparameter_fields()]
    unknown = sorted(set(hyper) - set(names))
    if unknown:
        raise ValueError(f"{unknown} are not hyperparameters of {cls.__name__} ({names})")
    try:  # one added since the file was written takes its default
        optimizer = cls(**{k: _decode(v, {}) for k, v in hyper.items()})
    except (TypeError, ValueError) as err:
        raise ValueError(f"optimizer {cls.__name__}: {_message(err)}") from None
    state = _decode(record["state"], arrays)
    try:
        optimizer.load_state_dict(state)
    except (TypeError, ValueError) as err:
        raise ValueError(f"optimizer {cls.__name__} state: {_message(err)}") from None
    return optimizer


def _gradient_noise(record: dict[str, Any] | None) -> GradientNoise | None:
    if record is None:
        return None
    if sorted(record) != ["eta", "gamma", "seed", "t"]:
        raise ValueError(f"header grad_noise must have eta, gamma, seed and t: {record!r}")
    try:
        noise = GradientNoise(record["eta"], record["gamma"], seed=record["seed"])
        noise.t = record["t"]
    except (TypeError, ValueError) as err:
        raise ValueError(f"grad_noise: {_message(err)}") from None
    return noise


def _decode(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The inverse of :func:`_encode`; a malformed or unknown tag is an error."""
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    tags = [k for k in value if k.startswith("$")]
    if not tags:
        return {k: _decode(v, arrays) for k, v in value.items()}
    tag, body = tags[0], value[tags[0]]
    if tag == "$float" and body in ("nan", "inf", "-inf") and len(value) == 1:
        return float(body)
    if tag == "$tuple" and isinstance(body, list) and len(value) == 1:
        return tuple(_decode(v, arrays) for v in body)
    if tag == "$array" and isinstance(body, str) and body in arrays:
        a = arrays[body]
        if a.dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"array {body!r} has dtype {a.dtype}, which fastbp never writes")
        return a.astype(object) if value.get("object") is True else a
    if tag == "$GradientNoise" and isinstance(body, dict) and len(value) == 1:
        return _gradient_noise(body)
    if tag == "$RandomState" and isinstance(body, dict) and len(value) == 1:
        try:
            keys = np.array(body["keys"], dtype=np.uint32)
            pos, has_gauss, cached = body["pos"], body["has_gauss"], body["cached"]
            # numpy checks none of these, and reads keys[pos] (a segfault beyond 624)
            if keys.shape != (624,) or not (isinstance(pos, int) and 0 <= pos <= 624):
                raise ValueError("keys must be 624 words and pos in [0, 624]")
            if has_gauss not in (0, 1) or not math.isfinite(cached):
                raise ValueError("has_gauss must be 0 or 1 and cached finite")
            state = np.random.RandomState()
            state.set_state(("MT19937", keys, pos, has_gauss, cached))
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise ValueError(f"a saved RandomState is malformed: {err}") from None
        return state
    raise ValueError(f"header holds a malformed tagged value: {json.dumps(value)[:80]}")
