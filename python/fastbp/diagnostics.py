"""Gradient diagnostics: which layers vanish, explode, saturate or die, and what to try.

`diagnose` reads the per-epoch statistics of a `History` and gives each weight
layer a verdict. Gradients are compared with the output layer's, which gets
the loss gradient first-hand: a layer whose gradient is a hundred times smaller
learns a hundred times slower (vanishing), one a hundred times larger takes
steps the output layer cannot follow (exploding). Ratios keep these verdicts
independent of the loss scale and of the data.

Ratios alone miss a network whose every layer is wrong by the same factor: with
weights drawn at a fixed scale too large for the width, the forward signal grows
by the same factor in every layer, the logits reach 1e5 and every gradient is as
large as the output layer's. So `diagnose` also reads the forward signal (the
RMS of each layer's pre-activations, recorded by the trainer) and the absolute
gradient scale measured against what the loss can produce.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .history import History
from .validation import check_instance, check_scalar

__all__ = [
    "DEAD_SHARE",
    "EXPLODING_RATIO",
    "GRAD_SCALE_LIMIT",
    "LOGIT_RMS_LIMIT",
    "MAX_UPDATE_RATIO",
    "PRECEDENCE",
    "SATURATION_SHARE",
    "SIGNAL_GROWTH",
    "VANISHING_RATIO",
    "WINDOW",
    "GradientReport",
    "LayerDiagnosis",
    "diagnose",
]

VANISHING_RATIO = 1e-2
"""Vanishing: gradient norm below this times the output layer's (median, first epochs)."""
EXPLODING_RATIO = 1e2
"""Exploding: gradient norm above this times the output layer's in any epoch."""
MAX_UPDATE_RATIO = 10.0
"""Exploding: one epoch moved the weights by more than this times their own norm."""
SATURATION_SHARE = 0.5
"""Saturated: more than this share of sigmoid/tanh outputs sit at their bounds."""
DEAD_SHARE = 0.5
"""Dead: more than this share of ReLU units output 0 for every sample."""
SIGNAL_GROWTH = 1e2
"""Exploding activations: a layer's pre-activation RMS above this times layer 0's (median,
first epochs); vanishing activations: below its inverse. In the calibration runs, healthy
networks stayed within 0.04 and 21 (see `diagnose`)."""
LOGIT_RMS_LIMIT = 1e3
"""Exploding activations: a softmax or sigmoid output layer whose logits (pre-activations)
have an RMS above this (median, first epochs): the output is saturated, and the loss of a
wrong answer grows linearly with logits that large. Healthy networks stayed below 45."""
GRAD_SCALE_LIMIT = 1e3
"""Exploding: a weight-gradient norm above this times the scale of the loss gradient the
output layer receives (median, first epochs). That scale is 1 for softmax and sigmoid outputs
(cross-entropy's gradient per sample is at most sqrt(2) in norm, binary cross-entropy's at most
1 per output) and sqrt(2 x loss) otherwise (mse's is the error, of RMS norm sqrt(2 x loss)).
Healthy networks stayed below 12."""
WINDOW = 5
"""Epochs in the medians: the first ones for gradient ratios and the forward signal, the last
ones for unit states."""

_WIDTH = 92  # of the report's wrapped text lines

# Primary verdict of a layer with several flags: the first of these it carries. A forward
# problem comes before the gradient problem it causes.
PRECEDENCE = (
    "exploding_activations",
    "exploding",
    "vanishing_activations",
    "vanishing",
    "dead",
    "saturated",
)
# Outputs whose loss gradient per sample is bounded (cross-entropy, binary cross-entropy).
_BOUNDED_LOSS_GRADIENT = ("softmax", "sigmoid")

_REMEDY_TEXT = {
    "clip": "Clip gradients: Trainer(..., clip_norm=1.0).",
    "lower_lr": "Lower the learning rate (fb.lr_find(net, X, y) suggests one): large steps "
    "overshoot, push sigmoid/tanh units into their flat tails and can kill ReLU units.",
    "init": "Initialise to the layer width rather than with a fixed scale, if the network does "
    "not already: He (init='he_normal') for ReLU-family layers, Xavier "
    "(init='xavier_uniform') for sigmoid/tanh.",
    "relu": "Use a ReLU-family activation (relu, leaky_relu, elu, gelu, silu) in the hidden "
    "layers: its derivative is 1 on positive inputs, where sigmoid's is at most 0.25 and "
    "saturated units pass almost nothing back.",
    "momentum": "Add momentum (fb.SGD(lr, momentum=0.9)) or use fb.Adam, which rescales "
    "small gradients.",
    "noise": "Add gradient noise (Trainer(..., grad_noise=fb.GradientNoise(eta=0.01))) to help "
    "the first layers off the plateau.",
    "leaky": "Use leaky_relu or elu, which keep a gradient for negative inputs.",
    "standardize": "Standardize the inputs (zero mean, unit variance per feature) so that "
    "pre-activations start at the scale the initialisation assumes: in the steep middle of "
    "sigmoid/tanh, and logits near 1.",
}
# Remedies for each problem, most effective first; shared ones are listed once in a report.
_REMEDIES = {
    "exploding_activations": ("init", "standardize", "clip"),
    "exploding": ("clip", "lower_lr", "init"),
    "vanishing_activations": ("init", "standardize"),
    "vanishing": ("relu", "init", "momentum", "noise"),
    "dead": ("leaky", "lower_lr", "init"),
    "saturated": ("standardize", "init", "relu", "lower_lr"),
}


@dataclass(frozen=True)
class LayerDiagnosis:
    """Verdict and numbers for one weight layer.

    Attributes
    ----------
    index : int
        0-based weight-layer index, input side first.
    activation : str
        Activation of the layer's output.
    grad_norm : float
        Median weight-gradient norm over the first ``window`` epochs.
    ratio : float
        Median over the first ``window`` epochs of the gradient norm divided by
        the output layer's (1 for the output layer).
    peak_ratio : float
        Largest per-epoch value of that quotient over all epochs.
    final_grad_norm, final_ratio : float
        ``grad_norm`` and ``ratio`` over the last ``window`` epochs instead: where the
        gradients ended up (a remedy such as gradient noise may lift a vanishing layer later).
    update_ratio : float
        Largest per-epoch ``||W_end - W_start|| / ||W_start||``.
    grad_scale : float
        ``grad_norm`` divided by the scale of the loss gradient (see `GRAD_SCALE_LIMIT`).
    signal : float
        Median over the first ``window`` epochs of the RMS of the layer's pre-activations
        (``sqrt(mean^2 + std^2)`` from the history); NaN where not recorded.
    signal_ratio : float
        The same divided by layer 0's (1 for layer 0).
    saturation, dead : float
        Medians over the last ``window`` epochs; NaN where not applicable.
    flags : tuple of str
        Every problem found, in order of `PRECEDENCE`.
    verdict : str
        The first flag, or ``"healthy"``.
    """

    index: int
    activation: str
    grad_norm: float
    ratio: float
    peak_ratio: float
    final_grad_norm: float
    final_ratio: float
    update_ratio: float
    grad_scale: float
    signal: float
    signal_ratio: float
    saturation: float
    dead: float
    flags: tuple[str, ...]
    verdict: str


@dataclass(frozen=True)
class GradientReport:
    """Result of `diagnose`; ``str(report)`` is a table with the remedies to try.

    Attributes
    ----------
    layers : list of LayerDiagnosis
        One per weight layer, input side first.
    remedies : list of str
        Things to try, for the problems found; empty when healthy.
    diverged : bool
        The training loss became NaN or infinite.
    n_epochs, window : int
        Epochs in the history, and epochs in the medians.
    thresholds : dict of str to float
        The thresholds used, by name.
    """

    layers: list[LayerDiagnosis]
    remedies: list[str]
    diverged: bool
    n_epochs: int
    window: int
    thresholds: dict[str, float]

    @property
    def vanishing(self) -> list[int]:
        """Indices of layers flagged vanishing."""
        return self._flagged("vanishing")

    @property
    def exploding_activations(self) -> list[int]:
        """Indices of layers flagged exploding_activations."""
        return self._flagged("exploding_activations")

    @property
    def vanishing_activations(self) -> list[int]:
        """Indices of layers flagged vanishing_activations."""
        return self._flagged("vanishing_activations")

    @property
    def exploding(self) -> list[int]:
        """Indices of layers flagged exploding."""
        return self._flagged("exploding")

    @property
    def saturated(self) -> list[int]:
        """Indices of layers flagged saturated."""
        return self._flagged("saturated")

    @property
    def dead(self) -> list[int]:
        """Indices of layers flagged dead."""
        return self._flagged("dead")

    @property
    def healthy(self) -> bool:
        """True when no layer carries a flag."""
        return all(not layer.flags for layer in self.layers)

    @property
    def brief(self) -> str:
        """The findings in a few words: ``"healthy"``, or e.g. ``"vanishing in layers 0-2;
        dead in layer 5"`` (each problem of `PRECEDENCE` with the layers that carry it)."""
        parts = []
        for name in PRECEDENCE:
            layers = self._flagged(name)
            if layers:
                noun = "layers" if len(layers) > 1 else "layer"
                parts.append(f"{_display(name)} in {noun} {layer_spans(layers)}")
        return "; ".join(parts) if parts else "healthy"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, floats, str) of everything in the report."""
        data = asdict(self)
        for layer in data["layers"]:
            layer["flags"] = list(layer["flags"])
        for name in PRECEDENCE:
            data[name] = self._flagged(name)
        data["healthy"] = self.healthy
        return data

    def __str__(self) -> str:
        return "\n".join(
            [
                f"Gradient report: {len(self.layers)} weight layers, {self.n_epochs} epochs",
                *_table(self.layers),
                "",
                *_legend(self.window, self.thresholds),
                "",
                _summary(self),
                *_remedy_lines(self.remedies),
            ]
        )

    def _flagged(self, name: str) -> list[int]:
        return [layer.index for layer in self.layers if name in layer.flags]


def diagnose(
    history: History,
    *,
    window: int = WINDOW,
    vanishing_ratio: float = VANISHING_RATIO,
    exploding_ratio: float = EXPLODING_RATIO,
    max_update_ratio: float = MAX_UPDATE_RATIO,
    saturation_share: float = SATURATION_SHARE,
    dead_share: float = DEAD_SHARE,
    signal_growth: float = SIGNAL_GROWTH,
    logit_rms_limit: float = LOGIT_RMS_LIMIT,
    grad_scale_limit: float = GRAD_SCALE_LIMIT,
) -> GradientReport:
    """Diagnose exploding and vanishing signals and gradients, saturated and dead layers.

    A layer may carry several flags; its verdict is the first of them in the
    order exploding_activations > exploding > vanishing_activations > vanishing
    > dead > saturated, else "healthy".

    - **exploding_activations** (the forward signal): the RMS of its
      pre-activations is more than ``signal_growth`` (1e2) times layer 0's, or,
      for a softmax or sigmoid output layer, its logits' RMS exceeds
      ``logit_rms_limit`` (1e3); medians over the first ``window`` epochs. A
      signal that grows by a factor in every layer, as with weights drawn at a
      fixed scale too large for the width, passes 1e2 within a few layers.
    - **exploding**: its gradient norm is NaN or infinite in some epoch; or it
      exceeds ``exploding_ratio`` (1e2) times the output layer's in some epoch;
      or its median over the first ``window`` epochs exceeds
      ``grad_scale_limit`` (1e3) times the scale of the loss gradient (1 for
      softmax and sigmoid outputs, whose loss gradient per sample is bounded,
      else sqrt(2 x training loss)), a size that only an exploding signal or
      weights make; or one epoch moved its weights by more than
      ``max_update_ratio`` (10) times their norm; or the training loss became
      non-finite (every layer: the network diverged, so no layer's numbers can
      be trusted).
    - **vanishing_activations**: the RMS of its pre-activations is less than
      ``1 / signal_growth`` times layer 0's (median over the first epochs): the
      signal shrinks layer after layer and the last layers see little but their
      biases.
    - **vanishing**: the median, over the first ``window`` (5) epochs, of its
      gradient norm divided by the output layer's is below ``vanishing_ratio``
      (1e-2). The first epochs show the problem before the later layers have
      fitted and all gradients shrink together.
    - **dead** (ReLU hidden layers): the median over the last ``window`` epochs
      of the share of units that output 0 on every sample exceeds
      ``dead_share`` (0.5).
    - **saturated** (sigmoid/tanh hidden layers): the median over the last
      ``window`` epochs of the share of outputs within 0.01 of the bounds
      exceeds ``saturation_share`` (0.5). The output layer is never judged
      dead or saturated: confident outputs are what training aims for.

    Gradient norms are compared with the output layer's so that those verdicts
    do not depend on the loss scale. In the healthy ReLU networks used to
    calibrate the thresholds (8 hidden layers, He initialisation) the quotient
    stayed between 0.4 and 7, the largest update ratio below 2 and the dead
    share below 0.3; in deep sigmoid networks the quotient fell by a factor of
    3 to 5 per layer towards the input.

    The forward and scale thresholds were calibrated on 485 runs of healthy
    networks (ReLU + He, tanh + Xavier, ELU + LeCun; 3 x 32, 8 x 32 and 3 x 128
    hidden units; SGD with momentum and Adam; 3 seeds; 9 data sets, standardized
    and raw, classification and regression, 8 epochs): the signal ratio stayed
    between 0.047 and 21, logits' RMS below 45, the gradient scale below 12.
    Networks initialised at a fixed scale N(0, 1) (8 x 64 ReLU) reached signal
    ratios of 2e4 to 1e6, logits of 7e3 to 3e6 and, unless the saturated
    softmax had already zeroed them, gradient scales of 7e3 to 1e6; with
    LeCun's 1/fan_in through 30 ReLU layers the signal ratio fell to 2e-4 to
    4e-3, at N(0, 0.01) (8 x 32) to 2e-6 to 3e-2 (below 1e-2 in 18 of 20 runs;
    all 20 vanishing and dead). N(0, 0.3) (8 x 64 ReLU, a factor 1.7 per layer)
    stays unflagged: its signal ratio reached 9 to 62.

    Parameters
    ----------
    history : History
        A history with at least one epoch; uses ``grad_norms``,
        ``update_ratios``, ``saturation``, ``dead``, ``preactivation_mean``,
        ``preactivation_std`` (each of shape (n_epochs, n_layers); the forward
        verdicts need the last two, which records from before version 3 lack),
        ``train_loss``, ``layer_activations`` and ``stop_reason``.
    window : int, default=WINDOW
        Number of epochs in the medians.
    vanishing_ratio, exploding_ratio, max_update_ratio, saturation_share, dead_share : float
        Thresholds, defaulting to the module constants of the same names in capitals.
    signal_growth, logit_rms_limit, grad_scale_limit : float
        Likewise.

    Returns
    -------
    GradientReport
        Per-layer numbers and verdicts, the flagged layer indices, remedies.

    Examples
    --------
    >>> report = fb.diagnose(history)          # doctest: +SKIP
    >>> report.vanishing                       # doctest: +SKIP
    [0, 1, 2, 3, 4]
    >>> print(report)                          # doctest: +SKIP
    """
    check_instance(history, "history", History, "a fastbp.History")
    window = check_scalar(window, "window", min_value=1, integer=True)
    thresholds = {
        name: check_scalar(value, name, min_value=0)
        for name, value in (
            ("vanishing_ratio", vanishing_ratio),
            ("exploding_ratio", exploding_ratio),
            ("max_update_ratio", max_update_ratio),
            ("saturation_share", saturation_share),
            ("dead_share", dead_share),
            ("logit_rms_limit", logit_rms_limit),
            ("grad_scale_limit", grad_scale_limit),
        )
    }
    # a factor of growth: at or below 1 a layer would be exploding and vanishing at once
    thresholds["signal_growth"] = check_scalar(
        signal_growth, "signal_growth", min_value=1, min_inclusive=False
    )
    grad = np.asarray(history.grad_norms, dtype=np.float64)
    n_epochs, n_layers = grad.shape
    loss = np.asarray(history.train_loss, dtype=np.float64)
    # The trainer stops, without recording the epoch, when the loss turns non-finite.
    diverged = bool(not np.all(np.isfinite(loss)) or history.stop_reason == "non_finite")
    if n_epochs == 0 and not diverged:
        raise ValueError("history has no epochs to diagnose")
    if np.all(np.isnan(grad)) and not diverged:
        raise ValueError("history.grad_norms holds no values; record grad_norms each epoch")
    stats, non_finite = _statistics(history, grad, window)
    non_finite |= diverged
    bounded_output = history.layer_activations[-1] in _BOUNDED_LOSS_GRADIENT
    layers = []
    for index in range(n_layers):
        values = {name: float(column[index]) for name, column in stats.items()}
        position = "hidden" if index < n_layers - 1 else "output"
        if position == "output" and bounded_output:
            position = "logits"
        flags = _flags(values, bool(non_finite[index]), position, thresholds)
        layers.append(
            LayerDiagnosis(
                index=index,
                activation=history.layer_activations[index],
                **values,
                flags=flags,
                verdict=flags[0] if flags else "healthy",
            )
        )
    return GradientReport(
        layers=layers,
        remedies=_remedies(layers),
        diverged=diverged,
        n_epochs=n_epochs,
        window=min(window, n_epochs),
        thresholds=thresholds,
    )


def _statistics(
    history: History, grad: np.ndarray, window: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-layer statistics of shape (n_layers,), and which layers had a non-finite norm."""
    # An all-NaN row is an epoch whose gradient norms were not recorded, not an overflow.
    recorded = grad[~np.all(np.isnan(grad), axis=1)]
    ratio = _ratio_to_output(recorded)
    finite = _finite_or_nan(recorded)
    grad_norm = _median(finite[:window])
    signal = _median(_finite_or_nan(_rms(history))[:window])
    with np.errstate(divide="ignore", invalid="ignore"):
        signal_ratio = signal / signal[0]
    stats = {
        "grad_norm": grad_norm,
        "ratio": _median(ratio[:window]),
        "peak_ratio": _max(ratio),
        "final_grad_norm": _median(finite[-window:]),
        "final_ratio": _median(ratio[-window:]),
        "update_ratio": _max(_finite_or_nan(history.update_ratios)),
        "grad_scale": grad_norm / _loss_gradient_scale(history, window),
        "signal": signal,
        "signal_ratio": _finite_or_nan(signal_ratio),
        "saturation": _median(np.asarray(history.saturation)[-window:]),
        "dead": _median(np.asarray(history.dead)[-window:]),
    }
    return stats, np.any(~np.isfinite(recorded), axis=0)


def _rms(history: History) -> np.ndarray:
    """(epochs, n_layers) root mean square of each layer's pre-activations."""
    return np.hypot(history.preactivation_mean, history.preactivation_std)


def _loss_gradient_scale(history: History, window: int) -> float:
    """The norm a layer's weight gradient is measured against (GRAD_SCALE_LIMIT): 1 where the
    loss gradient per sample is bounded, else sqrt(2 x the median loss of the first epochs);
    NaN when that loss is not finite."""
    if history.layer_activations[-1] in _BOUNDED_LOSS_GRADIENT:
        return 1.0
    loss = _median(_finite_or_nan(np.asarray(history.train_loss)[:window, None]))[0]
    return float(np.sqrt(2.0 * loss)) if loss > 0 else float("nan")


def _flags(
    values: dict[str, float], non_finite: bool, position: str, thresholds: dict[str, float]
) -> tuple[str, ...]:
    """The problems of one layer, in order of PRECEDENCE; NaN statistics raise none. position:
    "hidden", "output", or "logits" (an output layer of softmax or sigmoid)."""
    hidden = position == "hidden"
    growth = thresholds["signal_growth"]
    found = {
        "exploding_activations": values["signal_ratio"] > growth
        or (position == "logits" and values["signal"] > thresholds["logit_rms_limit"]),
        "exploding": non_finite
        or values["peak_ratio"] > thresholds["exploding_ratio"]
        or values["grad_scale"] > thresholds["grad_scale_limit"]
        or values["update_ratio"] > thresholds["max_update_ratio"],
        "vanishing_activations": values["signal_ratio"] * growth < 1,
        "vanishing": values["ratio"] < thresholds["vanishing_ratio"],
        "dead": hidden and values["dead"] > thresholds["dead_share"],
        "saturated": hidden and values["saturation"] > thresholds["saturation_share"],
    }
    return tuple(name for name in PRECEDENCE if found[name])


def _remedies(layers: list[LayerDiagnosis]) -> list[str]:
    flagged = {flag for layer in layers for flag in layer.flags}
    keys: list[str] = []
    for name in PRECEDENCE:
        if name in flagged:
            keys.extend(key for key in _REMEDIES[name] if key not in keys)
    return [_REMEDY_TEXT[key] for key in keys]


def _ratio_to_output(grad: np.ndarray) -> np.ndarray:
    """(epochs, n_layers) gradient norms divided by the output layer's; NaN where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = grad / grad[:, -1:]
    return _finite_or_nan(ratio)


def _finite_or_nan(values: Any) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _median(values: np.ndarray) -> np.ndarray:
    """Per-column median of the non-NaN values; NaN for an empty or all-NaN column."""
    if len(values) == 0:
        return np.full(values.shape[1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are expected
        return np.nanmedian(values, axis=0)


def _max(values: np.ndarray) -> np.ndarray:
    """Per-column maximum of the non-NaN values; NaN for an empty or all-NaN column."""
    if len(values) == 0:
        return np.full(values.shape[1], np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(values, axis=0)


def _table(layers: list[LayerDiagnosis]) -> list[str]:
    header = (
        f"{'layer':>5}  {'activation':<10} {'signal':>9} {'vs in':>9} {'grad norm':>9} "
        f"{'vs output':>9} {'peak':>9} {'update':>9} {'satur.':>6} {'dead':>6}  verdict"
    )
    rows = [header, "-" * len(header)]
    for layer in layers:
        extra = [_display(flag) for flag in layer.flags if flag != layer.verdict]
        verdict = _display(layer.verdict) + (f" (+{', '.join(extra)})" if extra else "")
        rows.append(
            f"{layer.index:>5}  {layer.activation:<10} {_sci(layer.signal)} "
            f"{_sci(layer.signal_ratio)} {_sci(layer.grad_norm)} "
            f"{_sci(layer.ratio)} {_sci(layer.peak_ratio)} {_sci(layer.update_ratio)} "
            f"{_share(layer.saturation)} {_share(layer.dead)}  {verdict}"
        )
    return rows


def _legend(window: int, thresholds: dict[str, float]) -> list[str]:
    return _wrap(
        f"signal: median over the first {window} epochs of the RMS of the layer's "
        "pre-activations; vs in: the same, divided by layer 0's; grad norm: median over the "
        f"first {window} epochs; vs output: the same, divided by the output layer's; peak: "
        "largest per-epoch vs output; update: largest per-epoch ||dW|| / ||W||; satur., dead: "
        f"medians over the last {window} epochs of the share of saturated outputs and of dead "
        "units.",
    ) + _wrap(
        f"Thresholds: exploding activations when vs in > {thresholds['signal_growth']:g} or "
        f"the logits' signal > {thresholds['logit_rms_limit']:g}; exploding when peak > "
        f"{thresholds['exploding_ratio']:g}, grad norm > "
        f"{thresholds['grad_scale_limit']:g} x the loss gradient's scale, update > "
        f"{thresholds['max_update_ratio']:g}, or non-finite; vanishing activations when vs "
        f"in < {1 / thresholds['signal_growth']:g}; vanishing when vs output < "
        f"{thresholds['vanishing_ratio']:g}; saturated > {thresholds['saturation_share']:g}; "
        f"dead > {thresholds['dead_share']:g}."
    )


def _remedy_lines(remedies: list[str]) -> list[str]:
    if not remedies:
        return []
    lines = ["Remedies to try:"]
    for remedy in remedies:
        lines += _wrap(remedy, initial_indent="  - ", subsequent_indent="    ")
    return lines


def _summary(report: GradientReport) -> str:
    if report.healthy:
        return "No gradient problems found."
    lines = []
    if report.diverged:
        lines.append("The training loss became NaN or infinite: the network diverged.")
    for name in PRECEDENCE:
        indices = getattr(report, name)
        if indices:
            lines.append(
                f"{_display(name).capitalize()}: layer{'s' if len(indices) > 1 else ''} "
                f"{', '.join(map(str, indices))}."
            )
    return "\n".join(lines)


def _display(flag: str) -> str:
    """A flag in words: "exploding_activations" -> "exploding activations"."""
    return flag.replace("_", " ")


def layer_spans(indices: Sequence[int]) -> str:
    """Runs of consecutive indices: [0, 1, 2, 5] -> "0-2,5"."""
    spans: list[list[int]] = []
    for i in sorted(indices):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _wrap(text: str, initial_indent: str = "", subsequent_indent: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        width=_WIDTH,
        break_on_hyphens=False,
        initial_indent=initial_indent,
        subsequent_indent=subsequent_indent,
    )


def _sci(value: float) -> str:
    return f"{'-':>9}" if np.isnan(value) else f"{value:9.2e}"


def _share(value: float) -> str:
    return f"{'-':>6}" if np.isnan(value) else f"{value:6.2f}"
