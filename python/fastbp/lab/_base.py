"""What every lab shares: the result object, option handling and a float64 forward pass."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..diagnostics import PRECEDENCE, diagnose, layer_spans
from ..history import History
from ..network import MLP
from ..validation import check_scalar, check_seed

_WIDTH = 96  # of the report's wrapped lines


@dataclass(frozen=True)
class Check:
    """One claim tested by a lab, the criterion that decides it and what was measured.

    Attributes
    ----------
    claim : str
        The statement tested, in a sentence.
    criterion : str
        How the measured numbers decide it, thresholds included.
    measured : str
        The numbers the decision rests on.
    passed : bool
        Whether the criterion held.
    decides : bool
        Whether the check decides `LabResult.reproduced`. One that does not (a common
        belief the publication does not state, or the claim under a second setting the
        lab also tries) is reported beside the others.
    """

    claim: str
    criterion: str
    measured: str
    passed: bool
    decides: bool = True

    def __post_init__(self) -> None:
        # a numpy bool would print as np.True_ and fail `is True`
        object.__setattr__(self, "passed", bool(self.passed))


@dataclass
class LabResult:
    """The outcome of one lab: measured numbers, the claim, the checks and the verdict.

    Attributes
    ----------
    name : str
        The lab's name, e.g. ``"he2015"``.
    reference : str
        Authors, year, title and venue of the publication.
    claim : str
        What the publication reports, in our words.
    setup : str
        Data, network, initialisation, optimizer, epochs and seeds of this run.
    table : str
        The measured numbers as a printed table.
    checks : list of Check
        The claims tested, each with its criterion and outcome.
    values : dict
        The measured numbers by name (floats, ints, lists and ndarrays), for
        further analysis and for the plots.
    options : dict
        The options the lab ran with.
    seconds : float
        Wall-clock time of the run.
    """

    name: str
    reference: str
    claim: str
    setup: str
    table: str
    checks: list[Check]
    values: dict[str, Any]
    options: dict[str, Any]
    seconds: float = 0.0
    _plotter: Callable[[LabResult, Path], list[Path]] | None = field(default=None, repr=False)

    @property
    def reproduced(self) -> bool:
        """True when every check that decides the verdict passed."""
        return all(c.passed for c in self.checks if c.decides)

    def save_plots(self, out_dir: str | Path) -> list[Path]:
        """Write the lab's figures as PNG files into ``out_dir`` (created if missing).

        Returns the paths written. Needs matplotlib (``pip install fastbp[plot]``);
        raises ImportError without it.
        """
        if self._plotter is None:
            return []
        _figure_class()  # fail before creating the folder when matplotlib is missing
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return self._plotter(self, out)

    def __str__(self) -> str:
        lines = [f"{self.name}: {self.reference}", ""]
        lines += _wrap("Claim: " + self.claim)
        lines += _wrap("Setup: " + self.setup)
        lines += ["", self.table, ""]
        for check in self.checks:
            mark = "reproduced" if check.passed else "NOT reproduced"
            if not check.decides:
                mark += ", not part of the verdict"
            lines += _wrap(f"[{mark}] {check.claim}")
            lines += _wrap(f"criterion: {check.criterion}", indent="    ")
            lines += _wrap(f"measured: {check.measured}", indent="    ")
        lines.append("")
        if self.reproduced:
            lines.append(f"Verdict: reproduced ({self.seconds:.1f} s)")
        else:
            failed = [c for c in self.checks if c.decides and not c.passed]
            reasons = "; ".join(f"{c.claim} (measured: {c.measured})" for c in failed)
            lines += _wrap(f"Verdict: not reproduced here: {reasons} ({self.seconds:.1f} s)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"LabResult(name={self.name!r}, reproduced={self.reproduced}, "
            f"checks={len(self.checks)}, seconds={self.seconds:.1f})"
        )


def _wrap(text: str, indent: str = "") -> list[str]:
    lines = textwrap.wrap(text, _WIDTH, initial_indent=indent, subsequent_indent=indent + "  ")
    return lines or [indent]


def caption(text: str) -> str:
    """A table's caption, wrapped to the report's width."""
    return "\n".join(_wrap(text))


def resolve_options(
    lab: str,
    defaults: Mapping[str, Any],
    quick: Mapping[str, Any],
    given: Mapping[str, Any],
    minimum: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The lab's options: ``defaults``, overridden by ``quick`` when ``given["quick"]``, then by
    what the caller gave. Integers must be >= 1 (or ``minimum[name]``; ``seed`` >= 0), floats
    > 0, bools bools."""
    unknown = sorted(set(given) - set(defaults) - {"seed", "quick"})
    if unknown:
        raise TypeError(
            f"{lab} got unknown option(s) {unknown}; its options are "
            f"{sorted(set(defaults) | {'seed', 'quick'})}"
        )
    is_quick = given.get("quick", False)
    if not isinstance(is_quick, bool):
        raise TypeError(f"quick must be a bool, got {is_quick!r}")
    options = {"seed": check_seed(given.get("seed", 0)), "quick": is_quick}
    if options["seed"] is None:
        raise TypeError("seed must be an int (a lab is reproducible by construction)")
    options.update(defaults)
    if is_quick:
        options.update(quick)
    for name, value in given.items():
        if name in ("seed", "quick"):
            continue
        default = defaults[name]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {value!r}")
        elif isinstance(default, int):
            low = (minimum or {}).get(name, 1)
            value = check_scalar(value, name, min_value=low, integer=True)
        else:
            value = check_scalar(value, name, min_value=0, min_inclusive=False)
        options[name] = value
    return options


def seeds(options: Mapping[str, Any]) -> list[int]:
    """The seeds of a lab's repeated runs: ``seed``, ``seed + 1``, ... (``n_seeds`` of them)."""
    return [options["seed"] + i for i in range(options["n_seeds"])]


class Stopwatch:
    """Seconds since creation, for the result's ``seconds``."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # never overflows, unlike 1 / (1 + exp(-z))


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda z: z,
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
}


def hidden_forward(net: MLP, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Pre-activations and activations of every hidden layer, in float64 from the network's
    weights (the core returns only the output).

    Parameters
    ----------
    net : MLP
        With identity, sigmoid, tanh or relu hidden layers.
    X : ndarray of shape (n_samples, n_features)

    Returns
    -------
    pre, post : list of ndarray of shape (n_samples, width of the layer)
        One entry per hidden layer, input side first.
    """
    h = np.asarray(X, dtype=np.float64)
    pre, post = [], []
    for W, b, act in zip(net.weights, net.biases, net.activations):
        z = h @ W.astype(np.float64) + b.astype(np.float64)
        h = _ACTIVATIONS[act](z)
        pre.append(z)
        post.append(h)
    return pre, post


def best(values: Sequence[float] | np.ndarray) -> float:
    """The largest value, NaN for none (a run that diverged in its first epoch records none)."""
    return float(np.nanmax(values)) if len(values) else float("nan")


def diagnosis(history: History) -> str:
    """`fastbp.diagnose`'s findings in a few words: "healthy" or e.g. "vanishing 0-27; dead 29"
    (0-based weight layers)."""
    report = diagnose(history)
    found = [(kind, getattr(report, kind)) for kind in PRECEDENCE]
    return (
        "; ".join(f"{kind} {layer_spans(layers)}" for kind, layers in found if layers) or "healthy"
    )


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: right-aligned columns, the first left-aligned."""
    cells = [[str(c) for c in header]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])])

    out = [line(cells[0]), "-" * len(line(cells[0]))]
    out += [line(row) for row in cells[1:]]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.2e}"
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return str(value)


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "the lab plots need matplotlib; install it with: pip install fastbp[plot]"
        ) from err
    return Figure


def figure(n_panels: int = 1, width: float = 5.0, height: float = 3.6) -> tuple[Any, list[Any]]:
    """A matplotlib Figure (object API, no pyplot) with ``n_panels`` axes side by side."""
    fig = _figure_class()(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def save(fig: Any, out: Path, name: str) -> Path:
    path = out / name
    fig.savefig(path, dpi=110)
    return path
