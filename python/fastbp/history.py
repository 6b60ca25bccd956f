"""`History`: what happened in each epoch of a training run.

`Trainer.fit` fills one with `History.record` after every epoch; `diagnose`
and the functions in `fastbp.plot` read it. It saves to and loads from JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["History"]

_SCALARS = ("train_loss", "lr", "time")
_OPTIONAL_SCALARS = ("val_loss", "train_accuracy", "val_accuracy")
_PER_LAYER = ("grad_norms", "grad_norms_max", "update_ratios", "saturation", "dead")
_STAT_KEYS = frozenset(_SCALARS + _OPTIONAL_SCALARS + _PER_LAYER)
_FORMAT = "fastbp.History"
_VERSION = 2  # 2: "layer_activations" (1 said "activations")


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
    best_epoch : int or None
        0-based epoch with the lowest validation loss, or the lowest training
        loss when there is no validation loss; None before any epoch or when
        every loss is NaN. Assigning a value (as early stopping with
        ``min_delta`` may) overrides this; assigning None restores it.
    stopped_epoch : int or None
        0-based epoch at which training stopped early; None if all epochs ran.
    stop_reason : {"early_stopping", "non_finite"} or None
        Why training stopped early.

    Notes
    -----
    Per-layer arrays always have shape ``(n_epochs, n_layers)``, ``(0, n_layers)``
    before the first epoch; a statistic not recorded in an epoch is NaN there.
    ``len(history)`` is the number of epochs.
    """

    def __init__(self, layer_activations: Sequence[str]) -> None:
        if isinstance(layer_activations, str) or not all(
            isinstance(a, str) for a in layer_activations
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
        self._per_layer: dict[str, list[np.ndarray]] = {key: [] for key in _PER_LAYER}
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
            ``time`` (float), and ``grad_norms``, ``grad_norms_max``,
            ``update_ratios``, ``saturation``, ``dead`` (array-like of shape
            (n_layers,)). Missing entries are recorded as NaN.
        """
        unknown = set(stats) - _STAT_KEYS
        if unknown:
            raise ValueError(
                f"stats has unknown keys {sorted(unknown)}; allowed: {sorted(_STAT_KEYS)}"
            )
        if stats.get("train_loss") is None:
            raise ValueError("stats must contain 'train_loss'")
        rows = {key: self._layer_row(key, stats.get(key)) for key in _PER_LAYER}
        epoch = self.n_epochs
        self.train_loss.append(float(stats["train_loss"]))
        self.lr.append(_to_float(stats.get("lr")))
        self.epoch_time.append(_to_float(stats.get("time")))
        for key in _OPTIONAL_SCALARS:
            _append_optional(getattr(self, key), stats.get(key), epoch)
        for key, row in rows.items():
            self._per_layer[key].append(row)

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
        for key in _PER_LAYER:
            data[key] = self._stacked(key).tolist()
        data.update(
            best_epoch=self.best_epoch,
            stopped_epoch=self.stopped_epoch,
            stop_reason=self.stop_reason,
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Rebuild a History from `to_dict` output (or its JSON-decoded form).

        Records of version 1, which named the layer activations ``"activations"``, are read too.
        """
        if data.get("format", _FORMAT) != _FORMAT:
            raise ValueError(f"data is not a {_FORMAT} record (format={data.get('format')!r})")
        history = cls(
            data["layer_activations"] if "layer_activations" in data else data["activations"]
        )
        for key in ("train_loss", "lr", "epoch_time", *_OPTIONAL_SCALARS):
            setattr(history, key, [_to_float(v) for v in data.get(key, [])])
        for key in _PER_LAYER:
            rows = data.get(key) or [None] * history.n_epochs
            history._per_layer[key] = [history._layer_row(key, row) for row in rows]
        history._check_lengths()
        history.best_epoch = data.get("best_epoch")
        history.stopped_epoch = data.get("stopped_epoch")
        history.stop_reason = data.get("stop_reason")
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
    def from_json(cls, source: str | os.PathLike[str]) -> History:
        """Load from a JSON file path or from JSON text (a string starting with ``{``)."""
        if isinstance(source, str) and source.lstrip().startswith("{"):
            text = source
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        return cls.from_dict(json.loads(text))

    def _layer_row(self, key: str, values: Any) -> np.ndarray:
        if values is None:
            return np.full(self.n_layers, np.nan)
        # dtype=object keeps JSON's None (NaN) and "Infinity" strings for _to_float.
        items = np.asarray(values, dtype=object)
        if items.shape != (self.n_layers,):
            raise ValueError(
                f"{key} must have shape ({self.n_layers},), one value per weight layer; "
                f"got {items.shape}"
            )
        return np.array([_to_float(v) for v in items], dtype=np.float64)

    def _check_lengths(self) -> None:
        n = self.n_epochs
        for key in ("lr", "epoch_time", *_PER_LAYER):
            if len(getattr(self, key)) != n:
                raise ValueError(f"data[{key!r}] must have one entry per epoch ({n})")
        for key in _OPTIONAL_SCALARS:
            if len(getattr(self, key)) not in (0, n):
                raise ValueError(f"data[{key!r}] must be empty or have one entry per epoch ({n})")

    def _stacked(self, key: str) -> np.ndarray:
        rows = self._per_layer[key]
        if not rows:
            return np.empty((0, self.n_layers))
        return np.stack(rows)


def _append_optional(values: list[float], value: float | None, epoch: int) -> None:
    """Keep an optional series either empty or one entry per epoch."""
    if value is None:
        if values:
            values.append(math.nan)
        return
    values.extend([math.nan] * (epoch - len(values)))
    values.append(float(value))


def _to_float(value: Any) -> float:
    # None is how JSON carries NaN; float() also parses "Infinity" / "-Infinity".
    return math.nan if value is None else float(value)


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    return obj
