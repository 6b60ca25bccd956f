"""`History`: what happened in each epoch of a training run.

`Trainer.fit` fills one with `History.record` after every epoch; `diagnose`
and the functions in `fastbp.plot` read it. It saves to and loads from JSON.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import IO, Any

import numpy as np

from . import _core

__all__ = ["HIST_BINS", "History", "hist_edges"]

_SCALARS = ("train_loss", "lr", "time")
_OPTIONAL_SCALARS = ("val_loss", "train_accuracy", "val_accuracy")
_PER_LAYER = (
    "grad_norms",
    "grad_norms_max",
    "update_ratios",
    "saturation",
    "dead",
    "preactivation_mean",
    "preactivation_std",
    "activation_mean",
    "activation_std",
)
_HIST = "activation_hist"  # the one series of shape (n_epochs, n_layers, HIST_BINS)
_STAT_KEYS = frozenset(_SCALARS + _OPTIONAL_SCALARS + _PER_LAYER + (_HIST,))
_STOP_REASONS = (
    None,
    "early_stopping",
    "non_finite",
    "callback",
    "stopped",
    "interrupted",
    "error",
)
_FORMAT = "fastbp.History"
# 2: "layer_activations" (1 said "activations"); 3: the forward statistics (pre-activation and
# activation mean and std, activation histograms), NaN when reading an older record.
_VERSION = 3

_HIST_EDGES = {a["name"]: np.array(a["hist_edges"]) for a in _core.activation_table()}
HIST_BINS = len(next(iter(_HIST_EDGES.values()))) + 1
"""Bins of ``History.activation_hist``, the same for every activation (fixed by the core)."""


def hist_edges(activation: str) -> np.ndarray:
    """The inner bin edges of ``History.activation_hist`` for a layer with this activation.

    Bin ``b`` holds the outputs ``a`` with ``edges[b - 1] <= a < edges[b]``, the first bin
    everything below ``edges[0]`` and the last everything from ``edges[-1]`` up; NaN is in no
    bin. The bins, fixed per activation kind by the core (``cpp/activations.hpp``):

    - sigmoid, softmax: [0, 1] in steps of 0.05;
    - tanh: [-1, 1] in steps of 0.1;
    - relu, softplus: below 1e-3 (the zeros of inactive units), then half-decades from 1e-3 to
      1e6;
    - identity, leaky_relu, elu, gelu, silu: decades on either side of 0, from 1e-2 to 1e6 in
      size (edges -1e6, ..., -1e-2, 0, 1e-2, ..., 1e6).

    Parameters
    ----------
    activation : str
        An activation name, e.g. an entry of ``History.layer_activations``.

    Returns
    -------
    ndarray of shape (HIST_BINS - 1,)
        Increasing edges.
    """
    if not isinstance(activation, str) or activation not in _HIST_EDGES:
        raise ValueError(f"activation must be one of {sorted(_HIST_EDGES)}, got {activation!r}")
    return _HIST_EDGES[activation].copy()


class History:
    """Per-epoch record of a training run: losses, learning rate and gradient statistics.

    Parameters
    ----------
    layer_activations : list of str
        Activation of each weight layer's output, input side first, the output
        activation included (e.g. ``["relu", "relu", "softmax"]``): its length is
        the number of weight layers. This is :attr:`MLP.layer_activations
        <fastbp.MLP.layer_activations>`, not ``MLP.activations`` (hidden layers only).

    Attributes
    ----------
    layer_activations : list of str
        As given.
    n_layers : int
        Number of weight layers.
    train_loss, epoch_time : list of float
        One entry per epoch: mean training loss, seconds taken.
    lr : list of float
        One entry per epoch: the mean step size taken in the epoch. With
        :class:`~fastbp.LineSearchSGD`, the mean over the epoch's mini-batches
        of the step the line search accepted (0 for a batch where none
        qualified); with every other optimizer, the epoch's learning rate (after
        any schedule). For adaptive rules (Adam, RMSProp, ...) it is the rate,
        not the size of the parameter change.
    val_loss, train_accuracy, val_accuracy : list of float
        One entry per epoch, or empty when never recorded; NaN for an epoch
        that lacked a value after the first epoch that had one.
    grad_norms : ndarray of shape (n_epochs, n_layers)
        Per weight layer, the mean over the epoch's mini-batches of the L2 norm
        of the weight gradient.
    grad_norms_max : ndarray of shape (n_epochs, n_layers)
        Per weight layer, the largest mini-batch weight-gradient norm.
    update_ratios : ndarray of shape (n_epochs, n_layers)
        ``||W_end - W_start|| / ||W_start||`` over the epoch.
    saturation : ndarray of shape (n_epochs, n_layers)
        Share of outputs within 0.01 of the activation's bounds (sigmoid, tanh);
        NaN where it does not apply.
    dead : ndarray of shape (n_epochs, n_layers)
        Share of ReLU units that output 0 on every sample checked; NaN where it
        does not apply.
    preactivation_mean, preactivation_std : ndarray of shape (n_epochs, n_layers)
        Mean and standard deviation of the layer's pre-activations ``Z = A_prev W + b``
        over all its entries (samples and units pooled) on the sample of training rows
        the trainer checks after each epoch (``fastbp.train.STATS_SAMPLE`` rows).
    activation_mean, activation_std : ndarray of shape (n_epochs, n_layers)
        The same for the layer's outputs ``A = f(Z)`` (the output layer's: the
        probabilities of softmax and sigmoid outputs).
    activation_hist : ndarray of shape (n_epochs, n_layers, HIST_BINS)
        Share of the layer's outputs in each bin of its activation kind (see
        `hist_edges`), on the same sample: fastai's "colorful dimension".
    best_epoch : int or None
        0-based epoch with the lowest validation loss, or the lowest training
        loss when there is no validation loss; None before any epoch or when
        every loss is NaN. Assigning a value (as early stopping with
        ``min_delta`` may) overrides this; assigning None restores it.
    stopped_epoch : int or None
        0-based epoch at which training stopped early; None if all epochs ran. A fit
        stopped or interrupted during an epoch does not record that epoch: ``stopped_epoch``
        is then ``len(history)`` (on a GPU, which stops between epochs, ``len(history) - 1``).
    stop_reason : str or None
        Why training stopped early: ``"early_stopping"``, ``"non_finite"``, ``"callback"``,
        ``"stopped"`` by :meth:`Trainer.stop`,
        ``"interrupted"`` by KeyboardInterrupt (Ctrl-C) or the interpreter's exit, ``"error"``
        by another exception that ended the fit (a callback's, a signal handler's), which
        ``fit`` raises.

    Notes
    -----
    Per-layer arrays always have shape ``(n_epochs, n_layers)``, ``(0, n_layers)``
    before the first epoch (``activation_hist`` one more axis of HIST_BINS); a statistic
    not recorded in an epoch is NaN there, as in records written before version 3.
    ``len(history)`` is the number of epochs.
    """

    def __init__(self, layer_activations: Sequence[str]) -> None:
        if (
            isinstance(layer_activations, str)
            or not isinstance(layer_activations, Sequence)
            or not all(isinstance(a, str) for a in layer_activations)
        ):
            raise TypeError("layer_activations must be a list of str, one per weight layer")
        self.layer_activations = list(layer_activations)
        if not self.layer_activations:
            raise ValueError("layer_activations must name at least one weight layer")
        self.n_layers = len(self.layer_activations)
        self.train_loss: list[float] = []
        self.lr: list[float] = []
        self.epoch_time: list[float] = []
        self.val_loss: list[float] = []
        self.train_accuracy: list[float] = []
        self.val_accuracy: list[float] = []
        self._per_layer: dict[str, list[np.ndarray]] = {key: [] for key in _PER_LAYER + (_HIST,)}
        self._best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.stop_reason: str | None = None

    def record(self, stats: dict[str, Any]) -> None:
        """Append one epoch.

        Parameters
        ----------
        stats : dict
            ``train_loss`` (float) is required. Optional: ``val_loss``,
            ``train_accuracy``, ``val_accuracy`` (float or None), ``lr``,
            ``time`` (float), ``grad_norms``, ``grad_norms_max``,
            ``update_ratios``, ``saturation``, ``dead``, ``preactivation_mean``,
            ``preactivation_std``, ``activation_mean``, ``activation_std`` (array-like
            of shape (n_layers,)) and ``activation_hist`` (array-like of shape
            (n_layers, HIST_BINS)). Missing entries are recorded as NaN.
        """
        if not isinstance(stats, Mapping):
            raise TypeError(f"stats must be a dict, got {type(stats).__name__}")
        unknown = set(stats) - _STAT_KEYS
        if unknown:
            raise ValueError(
                f"stats has unknown keys {sorted(unknown)}; allowed: {sorted(_STAT_KEYS)}"
            )
        if stats.get("train_loss") is None:
            raise ValueError("stats must contain 'train_loss'")
        # Every value is converted before any is appended: a bad one leaves no half epoch.
        rows = {key: self._layer_row(key, stats.get(key)) for key in _PER_LAYER}
        rows[_HIST] = self._hist_row(_HIST, stats.get(_HIST))
        series = {
            "train_loss": _to_float(stats["train_loss"], "train_loss"),
            "lr": _to_float(stats.get("lr"), "lr"),
            "epoch_time": _to_float(stats.get("time"), "time"),
        }
        optional = {
            key: None if stats.get(key) is None else _to_float(stats[key], key)
            for key in _OPTIONAL_SCALARS
        }
        epoch = self.n_epochs
        for key, value in series.items():
            getattr(self, key).append(value)
        for key, maybe in optional.items():
            _append_optional(getattr(self, key), maybe, epoch)
        for key, row in rows.items():
            self._per_layer[key].append(row)

    def extend(self, other: History) -> None:
        """Append the epochs of ``other``, the record of the run's continuation
        (``Trainer.fit(..., initial_epoch=len(self))``), in place.

        A series recorded in one part only is NaN in the other. ``stopped_epoch`` and
        ``stop_reason`` become ``other``'s, its epochs counted after this history's;
        ``best_epoch`` is ``other``'s likewise when it was set (by early stopping, whose
        weights are then those of that epoch), otherwise again derived from the joined losses.

        Raises
        ------
        TypeError
            ``other`` is not a History.
        ValueError
            ``other`` records another network (its ``layer_activations`` differ).
        """
        if not isinstance(other, History):
            raise TypeError(f"other must be a History, got {type(other).__name__}")
        if other.layer_activations != self.layer_activations:
            raise ValueError(
                f"other records a network with layer_activations {other.layer_activations}, "
                f"this history {self.layer_activations}"
            )
        n, n_other = self.n_epochs, other.n_epochs
        for key in ("train_loss", "lr", "epoch_time"):
            getattr(self, key).extend(list(getattr(other, key)))  # a copy: other may be self
        for key in _OPTIONAL_SCALARS:
            mine, theirs = getattr(self, key), getattr(other, key)
            if mine or theirs:
                setattr(self, key, (mine or [math.nan] * n) + (theirs or [math.nan] * n_other))
        for key in _PER_LAYER + (_HIST,):
            self._per_layer[key].extend([np.array(row) for row in other._per_layer[key]])
        self._best_epoch = None if other._best_epoch is None else n + other._best_epoch
        self.stopped_epoch = None if other.stopped_epoch is None else n + other.stopped_epoch
        self.stop_reason = other.stop_reason

    @property
    def n_epochs(self) -> int:
        """Number of epochs recorded."""
        return len(self.train_loss)

    @property
    def best_epoch(self) -> int | None:
        """0-based epoch of the lowest validation (else training) loss, unless set."""
        if self._best_epoch is not None:
            return self._best_epoch
        losses = np.asarray(self.val_loss if self.val_loss else self.train_loss)
        if np.all(np.isnan(losses)):
            return None
        return int(np.nanargmin(losses))

    @best_epoch.setter
    def best_epoch(self, epoch: int | None) -> None:
        self._best_epoch = epoch

    @property
    def grad_norms(self) -> np.ndarray:
        return self._stacked("grad_norms")

    @property
    def grad_norms_max(self) -> np.ndarray:
        return self._stacked("grad_norms_max")

    @property
    def update_ratios(self) -> np.ndarray:
        return self._stacked("update_ratios")

    @property
    def saturation(self) -> np.ndarray:
        return self._stacked("saturation")

    @property
    def dead(self) -> np.ndarray:
        return self._stacked("dead")

    @property
    def preactivation_mean(self) -> np.ndarray:
        return self._stacked("preactivation_mean")

    @property
    def preactivation_std(self) -> np.ndarray:
        return self._stacked("preactivation_std")

    @property
    def activation_mean(self) -> np.ndarray:
        return self._stacked("activation_mean")

    @property
    def activation_std(self) -> np.ndarray:
        return self._stacked("activation_std")

    @property
    def activation_hist(self) -> np.ndarray:
        return self._stacked(_HIST)

    def __len__(self) -> int:
        return self.n_epochs

    def __repr__(self) -> str:
        parts = [f"epochs={self.n_epochs}", f"n_layers={self.n_layers}"]
        if self.n_epochs:
            parts.append(f"train_loss={self.train_loss[-1]:.4g}")
        if self.val_loss:
            parts.append(f"val_loss={self.val_loss[-1]:.4g}")
        parts.append(f"best_epoch={self.best_epoch}")
        if self.stop_reason is not None:
            parts.append(f"stop_reason={self.stop_reason!r}")
        return f"History({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """Plain Python dict (lists, floats, None); NaN stays NaN. Inverse of `from_dict`."""
        data: dict[str, Any] = {"format": _FORMAT, "version": _VERSION}
        data["layer_activations"] = list(self.layer_activations)
        for key in ("train_loss", "lr", "epoch_time", *_OPTIONAL_SCALARS):
            data[key] = list(getattr(self, key))
        for key in _PER_LAYER + (_HIST,):
            data[key] = self._stacked(key).tolist()
        data.update(
            best_epoch=self._best_epoch,  # set (early stopping), or derived again on reading
            stopped_epoch=self.stopped_epoch,
            stop_reason=self.stop_reason,
        )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild a History from `to_dict` output (or its JSON-decoded form).

        Records of version 1, which named the layer activations ``"activations"``, are read too,
        and those of versions 1 and 2, which lack the forward statistics, have NaN there.

        Raises
        ------
        TypeError
            ``data`` is not a mapping.
        ValueError
            ``data`` is not a well-formed record: another format or a newer version, a missing
            ``layer_activations``, a value of the wrong type, a series of the wrong length. The
            message names the entry.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a dict (a History record), got {type(data).__name__}")
        history = cls(_record_layer_activations(data))
        for key in ("train_loss", "lr", "epoch_time", *_OPTIONAL_SCALARS):
            values = _record_list(data, key)
            setattr(history, key, [_to_float(v, f"data[{key!r}]") for v in values])
        n = history.n_epochs
        for key in _PER_LAYER:
            rows = _record_list(data, key) or [None] * n
            history._per_layer[key] = [history._layer_row(f"data[{key!r}]", r) for r in rows]
        rows = _record_list(data, _HIST) or [None] * n
        history._per_layer[_HIST] = [history._hist_row(f"data[{_HIST!r}]", r) for r in rows]
        history._check_lengths()
        history.best_epoch = _record_epoch(data, "best_epoch", last=n - 1)
        # A run that diverges stops at the epoch it could not record: one past the last.
        history.stopped_epoch = _record_epoch(data, "stopped_epoch", last=n)
        history.stop_reason = data.get("stop_reason")
        if history.stop_reason not in _STOP_REASONS:
            raise ValueError(
                f"data['stop_reason'] must be one of {list(_STOP_REASONS)}, "
                f"got {history.stop_reason!r}"
            )
        return history

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """JSON text of `to_dict`, written to ``path`` when given.

        NaN is written as ``null`` and infinities as ``"Infinity"`` /
        ``"-Infinity"``, since JSON has no such numbers; `from_json` restores them.
        """
        text = json.dumps(_json_safe(self.to_dict()), allow_nan=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str] | IO[Any]) -> History:
        """Load a History written by `to_json`.

        Parameters
        ----------
        source : str, os.PathLike or file object
            JSON text (a str whose first non-blank character is ``{`` or ``[``, unless it
            names an existing file), the path of a JSON file, or an open file (anything with
            ``.read()``, text or binary).

        Raises
        ------
        TypeError
            ``source`` is none of these. An int in particular is not taken as a file
            descriptor (``open`` would have closed it).
        ValueError
            The text is not JSON, or not a well-formed History record (see `from_dict`).
        """
        text: Any
        if hasattr(source, "read"):
            text = source.read()
        elif (
            isinstance(source, str)
            and source.lstrip()[:1] in ("{", "[")
            and not os.path.isfile(source)  # "{run}.json" names a file
        ):
            text = source
        elif isinstance(source, (str, os.PathLike)):
            with open(source, encoding="utf-8") as f:
                text = f.read()
        else:
            raise TypeError(
                "source must be JSON text, a path or a file object, "
                f"got {type(source).__name__} {source!r}"
            )
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(f"source.read() must return str or bytes, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"source is not valid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ValueError(f"source must hold a JSON object, got a {type(data).__name__}")
        return cls.from_dict(data)

    def _layer_row(self, key: str, values: Any) -> np.ndarray:
        if values is None:
            return np.full(self.n_layers, np.nan)
        if isinstance(values, np.ndarray):
            shape: Any = values.shape
        else:
            shape = (len(values),) if isinstance(values, (list, tuple)) else type(values).__name__
        if shape != (self.n_layers,):
            raise ValueError(
                f"{key} must have shape ({self.n_layers},), one value per weight layer; got {shape}"
            )
        if type(values) is np.ndarray and values.dtype.kind == "f":  # the core's, each epoch
            return values.astype(np.float64)
        if all(type(v) is float for v in values):
            return np.array(values, dtype=np.float64)
        return np.array([_to_float(v, key) for v in values], dtype=np.float64)

    def _hist_row(self, key: str, values: Any) -> np.ndarray:
        shape = (self.n_layers, HIST_BINS)
        if values is None:
            return np.full(shape, np.nan)
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            if values.shape != shape:
                raise ValueError(f"{key} must have shape {shape}, got {values.shape}")
            return values.astype(np.float64)
        if not (
            isinstance(values, (list, tuple))
            and len(values) == self.n_layers
            and all(isinstance(r, (list, tuple, np.ndarray)) for r in values)
            and all(len(r) == HIST_BINS for r in values)
        ):
            raise ValueError(
                f"{key} must have shape {shape}: per weight layer, the share of its outputs in "
                f"each of the {HIST_BINS} bins"
            )
        return np.array([[_to_float(v, key) for v in row] for row in values], dtype=np.float64)

    def _check_lengths(self) -> None:
        n = self.n_epochs
        series = (*_PER_LAYER, _HIST)
        for key in ("lr", "epoch_time", *series, *_OPTIONAL_SCALARS):
            length = len(getattr(self, key) if key not in series else self._per_layer[key])
            if length != n and not (length == 0 and key in _OPTIONAL_SCALARS):
                optional = "none or " if key in _OPTIONAL_SCALARS else ""
                raise ValueError(
                    f"data[{key!r}] must have {optional}one entry per epoch: {length} entries, "
                    f"but data['train_loss'] has {n}"
                )

    def _stacked(self, key: str) -> np.ndarray:
        rows = self._per_layer[key]
        if not rows:
            return np.empty((0, self.n_layers, HIST_BINS) if key == _HIST else (0, self.n_layers))
        return np.stack(rows)


def _append_optional(values: list[float], value: float | None, epoch: int) -> None:
    """Keep an optional series either empty or one entry per epoch."""
    if value is None:
        if values:
            values.append(math.nan)
        return
    values.extend([math.nan] * (epoch - len(values)))
    values.append(value)


def _to_float(value: Any, where: str) -> float:
    """A number of a series; None is how JSON carries NaN, and infinities are strings."""
    if value is None:
        return math.nan
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        return float(value)
    if value in ("Infinity", "-Infinity", "NaN"):
        return float(value)
    raise ValueError(
        f"{where} must hold numbers (None for NaN, 'Infinity', '-Infinity'); got {value!r}"
    )


def _record_layer_activations(data: Mapping[str, Any]) -> list[str]:
    fmt = data.get("format", _FORMAT)
    if fmt != _FORMAT:
        raise ValueError(f"data is not a {_FORMAT} record (format={fmt!r})")
    version = data.get("version", _VERSION)
    if isinstance(version, bool) or version not in range(1, _VERSION + 1):
        raise ValueError(f"data['version'] must be 1 to {_VERSION}, got {version!r}")
    key = "activations" if version == 1 and "layer_activations" not in data else "layer_activations"
    acts = data.get(key)
    if not (isinstance(acts, list) and acts and all(isinstance(a, str) for a in acts)):
        raise ValueError(
            f"data[{key!r}] must list each weight layer's activation (str), got {acts!r}"
        )
    return acts


def _record_list(data: Mapping[str, Any], key: str) -> list[Any]:
    values = data.get(key, [])
    if values is None:
        return []
    if not isinstance(values, list):
        raise ValueError(f"data[{key!r}] must be a list, got {type(values).__name__}")
    return values


def _record_epoch(data: Mapping[str, Any], key: str, last: int) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= last:
        allowed = f"None or an epoch in [0, {last}]" if last >= 0 else "None (no epochs)"
        raise ValueError(f"data[{key!r}] must be {allowed}, got {value!r}")
    return value


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    return obj
