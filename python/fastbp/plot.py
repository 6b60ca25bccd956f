"""Figures of a training run: losses, gradient norms and the forward signal per layer, the
learning-rate range test.

matplotlib is optional (``pip install fastbp[plot]``) and imported only when a
function here is called. Figures are built with the object API
(`matplotlib.figure.Figure`), never pyplot, so they render without a display
and leave pyplot's global state alone; save one with ``fig.savefig(path)``. In
Jupyter a returned Figure displays itself.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .diagnostics import WINDOW, diagnose
from .history import HIST_BINS, History, hist_edges
from .validation import check_instance, check_scalar

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "activation_hist",
    "activation_std_lines",
    "compare_grad_norms",
    "grad_norm_heatmap",
    "grad_norm_lines",
    "loss_curves",
    "lr_find_curve",
    "save_all",
]


def loss_curves(history: History, ax: Axes | None = None) -> Figure:
    """Training and validation loss per epoch, the best epoch marked.

    Parameters
    ----------
    history : History
        A run with at least one epoch.
    ax : matplotlib Axes, optional
        Draw into this Axes instead of a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on: one line per recorded loss, plus a dashed vertical
        line at ``history.best_epoch``.
    """
    _check_epochs(history)
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    epochs = np.arange(history.n_epochs)
    ax.plot(epochs, history.train_loss, label="train loss")
    if history.val_loss:
        ax.plot(epochs, history.val_loss, label="validation loss")
    if history.best_epoch is not None:
        ax.axvline(
            history.best_epoch,
            color="0.4",
            linestyle="--",
            linewidth=1,
            label=f"best epoch ({history.best_epoch})",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    return fig


def grad_norm_heatmap(history: History, ax: Axes | None = None) -> Figure:
    """Weight-gradient norm of every layer in every epoch, on a log colour scale.

    Rows are weight layers, layer 0 (the input side) at the top, so vanishing
    gradients show as a dark band at the top; columns are epochs. NaN,
    infinite and zero norms are drawn grey.

    Parameters
    ----------
    history : History
        A run with at least one epoch; reads ``grad_norms`` of shape
        (n_epochs, n_layers).
    ax : matplotlib Axes, optional
        Draw into this Axes instead of a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with the image and a colorbar.
    """
    _check_epochs(history)
    fig, ax = _figure_and_axes(ax, (7.0, 1.5 + 0.35 * history.n_layers))
    from matplotlib.colors import LogNorm

    norms = history.grad_norms.T
    drawable = np.isfinite(norms) & (norms > 0)
    image = np.ma.masked_array(norms, mask=~drawable)
    # A log scale needs positive bounds; with nothing drawable any pair will do.
    vmin, vmax = (norms[drawable].min(), norms[drawable].max()) if drawable.any() else (1, 10)
    cmap = _colormap("viridis").with_extremes(bad="0.75")
    mappable = ax.imshow(
        image,
        aspect="auto",
        interpolation="nearest",
        origin="upper",
        cmap=cmap,
        norm=LogNorm(vmin=vmin, vmax=max(vmax, vmin * 1.01)),
    )
    ax.set_yticks(range(history.n_layers))
    ax.set_yticklabels(_layer_labels(history))
    ax.set_ylabel("weight layer (input side at top)")
    ax.set_xlabel("epoch")
    fig.colorbar(mappable, ax=ax, label="weight-gradient norm")
    return fig


def grad_norm_lines(history: History, ax: Axes | None = None) -> Figure:
    """Weight-gradient norm per epoch, one line per layer, on a log scale.

    Parameters
    ----------
    history : History
        A run with at least one epoch.
    ax : matplotlib Axes, optional
        Draw into this Axes instead of a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with ``history.n_layers`` lines coloured from the input
        side (dark) to the output side (light).
    """
    return _per_layer_lines(history, "grad_norms", "weight-gradient norm", ax)


def _per_layer_lines(history: History, series: str, ylabel: str, ax: Axes | None) -> Figure:
    """History attribute `series` (n_epochs, n_layers) against the epochs, one line per layer
    on a log scale, coloured from the input side (dark) to the output side (light)."""
    _check_epochs(history)
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    colors = _colormap("viridis")(np.linspace(0.0, 0.9, history.n_layers))
    epochs = np.arange(history.n_epochs)
    for label, values, color in zip(_layer_labels(history), getattr(history, series).T, colors):
        ax.plot(epochs, values, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    # Outside the axes: with many layers a legend inside would hide the lines.
    ax.legend(title="layer", fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def activation_std_lines(history: History, ax: Axes | None = None) -> Figure:
    """Standard deviation of each layer's outputs per epoch, one line per layer, on a log scale.

    The forward counterpart of `grad_norm_lines`: in a well-initialised network the lines lie
    together; lines stacked a constant factor apart, in the order of the layers, are a signal
    that grows (or shrinks) geometrically with depth.

    Parameters
    ----------
    history : History
        A run with at least one epoch; reads ``activation_std`` of shape (n_epochs, n_layers)
        (NaN in a record from before fastbp recorded it: nothing is drawn then).
    ax : matplotlib Axes, optional
        Draw into this Axes instead of a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with ``history.n_layers`` lines coloured from the input side (dark) to
        the output side (light).
    """
    return _per_layer_lines(
        history, "activation_std", "standard deviation of the layer's outputs", ax
    )


def activation_hist(history: History, max_columns: int = 4) -> Figure:
    """How each layer's outputs spread over its histogram bins, epoch after epoch.

    fastai's "colorful dimension": one panel per weight layer, epochs across, the bins of the
    layer's activation kind upwards (`fastbp.history.hist_edges`), the share of outputs in a
    bin as colour on a log scale (empty bins white). A sigmoid layer that saturates shows its
    mass moving into the top or bottom rows; a ReLU layer whose signal explodes, its mass
    climbing the decades; dying units, a growing bottom row (the zeros).

    Parameters
    ----------
    history : History
        A run with at least one epoch; reads ``activation_hist`` of shape
        (n_epochs, n_layers, HIST_BINS).
    max_columns : int, default=4
        Panels per row; layers fill the rows input side first.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per layer and a shared colorbar.
    """
    _check_epochs(history)
    max_columns = check_scalar(max_columns, "max_columns", min_value=1, integer=True)
    from matplotlib.colors import LogNorm

    n = history.n_layers
    columns = min(n, max_columns)
    rows = -(-n // columns)
    fig = _figure_class()(figsize=(3.2 * columns, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    cmap = _colormap("magma_r").with_extremes(bad="white")
    smallest = 1e-4  # shares below are drawn in the colour of this one; empty bins white
    norm = LogNorm(vmin=smallest, vmax=1.0)
    hist = history.activation_hist
    images = []
    for layer, (ax, label) in enumerate(zip(axes, _layer_labels(history))):
        shares = hist[:, layer, :].T  # bins up, epochs across
        image = np.ma.masked_array(shares, mask=~(np.isfinite(shares) & (shares > 0)))
        mappable = ax.imshow(
            np.ma.maximum(image, smallest),
            aspect="auto",
            interpolation="nearest",
            origin="lower",
            cmap=cmap,
            norm=norm,
            extent=(-0.5, history.n_epochs - 0.5, 0, HIST_BINS),
        )
        images.append(mappable)
        ticks, labels = _edge_ticks(hist_edges(history.layer_activations[layer]))
        ax.set_yticks(ticks)
        ax.set_yticklabels(labels, fontsize="x-small")
        ax.set_title(f"layer {label}", fontsize="small")
        ax.set_xlabel("epoch", fontsize="small")
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.colorbar(images[0], ax=list(axes[:n]), label="share of the layer's outputs")
    return fig


def lr_find_curve(result: Any, ax: Axes | None = None) -> Figure:
    """Loss against learning rate from `fastbp.lr_find`, the suggested rate marked.

    Parameters
    ----------
    result : LRFinderResult
        Anything with ``lrs`` and ``losses`` (array-like of shape (n_steps,))
        and ``suggestion`` (float or None); ``min_loss_lr``, where present, is marked too.
    ax : matplotlib Axes, optional
        Draw into this Axes instead of a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure: the loss curve on a log learning-rate axis and, when there
        is a suggestion, a dashed vertical line at it (and a dotted one at the rate of the
        lowest loss it derives from).
    """
    lrs = np.asarray(result.lrs, dtype=np.float64)
    losses = np.asarray(result.losses, dtype=np.float64)
    if lrs.shape != losses.shape or lrs.ndim != 1 or len(lrs) == 0:
        raise ValueError(
            f"result.lrs and result.losses must be 1-D, equally long and non-empty; "
            f"got shapes {lrs.shape} and {losses.shape}"
        )
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    ax.plot(lrs, losses, label="loss")
    ax.set_xscale("log")
    finite = losses[np.isfinite(losses)]
    if len(finite) > 1:
        # The test ends when the loss blows up; clip there so the useful part stays readable.
        top = min(finite.max(), 2 * finite[0] - finite.min())
        if top > finite.min():
            margin = 0.05 * (top - finite.min())
            ax.set_ylim(finite.min() - margin, top + margin)
    lowest = getattr(result, "min_loss_lr", None)
    if lowest is not None and np.isfinite(lowest):
        ax.axvline(lowest, color="0.5", linestyle=":", label=f"lowest loss at {lowest:.2g}")
    if result.suggestion is not None:
        ax.axvline(
            result.suggestion,
            color="C3",
            linestyle="--",
            label=f"suggestion {result.suggestion:.2g}",
        )
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    ax.legend()
    return fig


def compare_grad_norms(histories: Mapping[str, History], window: int = WINDOW) -> Figure:
    """Weight-gradient norm per layer at the start and at the end of each run, one panel per
    run, on a shared log scale: the numbers `fastbp.diagnose` judges.

    Parameters
    ----------
    histories : mapping of str to History
        Runs to compare, by name; each with at least one epoch.
    window : int, default=WINDOW
        Epochs in the medians, as `diagnose`'s ``window``.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per run, titled with its name and `diagnose`'s findings
        (``GradientReport.brief``): a solid line through each layer's median gradient norm over
        the first ``window`` epochs (``LayerDiagnosis.grad_norm``, on which vanishing is
        judged) and a dashed one over the last ``window`` epochs (``final_grad_norm``).
    """
    if not isinstance(histories, Mapping):
        raise TypeError(
            f"histories must be a dict of run name -> History, got {type(histories).__name__}"
        )
    if not histories:
        raise ValueError("histories must name at least one run")
    for history in histories.values():
        _check_epochs(history)
    reports = {name: diagnose(history, window=window) for name, history in histories.items()}
    Figure = _figure_class()
    fig = Figure(figsize=(3.4 * len(histories), 3.9), layout="constrained")
    axes = fig.subplots(1, len(histories), sharey=True, squeeze=False)[0]
    for ax, (name, report) in zip(axes, reports.items()):
        layers = np.arange(len(report.layers))
        # a log scale cannot show a zero norm (a layer that gets no gradient): left out
        first = _positive([layer.grad_norm for layer in report.layers])
        last = _positive([layer.final_grad_norm for layer in report.layers])
        ax.plot(layers, first, "o-", color="C0", label=f"first {report.window} epochs")
        ax.plot(layers, last, "s--", color="C1", label=f"last {report.window} epochs")
        ax.set_yscale("log")
        ax.set_title(f"{name}\n{textwrap.fill(report.brief, 34)}", fontsize="small")
        ax.set_xticks(layers)
        ax.set_xlabel("weight layer (0 = input side)")
    axes[0].set_ylabel("weight-gradient norm\n(median over the epochs)")
    axes[0].legend(fontsize="small")
    return fig


def save_all(history: History, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Save `loss_curves`, `grad_norm_heatmap`, `grad_norm_lines`, `activation_std_lines` and
    `activation_hist` as PNG files.

    Parameters
    ----------
    history : History
        A run with at least one epoch.
    out_dir : str or Path
        Folder to write to; created if missing.
    prefix : str, default=""
        Put in front of each file name, e.g. ``"relu_"``.

    Returns
    -------
    list of Path
        The files written: ``{prefix}loss.png``, ``{prefix}grad_heatmap.png``,
        ``{prefix}grad_norms.png``, ``{prefix}activation_std.png``,
        ``{prefix}activation_hist.png``.
    """
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__} {prefix!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "loss": loss_curves(history),
        "grad_heatmap": grad_norm_heatmap(history),
        "grad_norms": grad_norm_lines(history),
        "activation_std": activation_std_lines(history),
        "activation_hist": activation_hist(history),
    }
    paths = []
    for name, fig in figures.items():
        path = out / f"{prefix}{name}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def _figure_class() -> type[Figure]:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "fastbp.plot needs matplotlib; install it with: pip install fastbp[plot]"
        ) from err
    return Figure


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Any, Axes]:
    Figure = _figure_class()
    if ax is not None:
        from matplotlib.axes import Axes

        if not isinstance(ax, Axes):
            raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _colormap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name]


def _positive(values: list[float]) -> np.ndarray:
    """The values, NaN where not positive."""
    out = np.asarray(values, dtype=np.float64)
    return np.where(out > 0, out, np.nan)


def _edge_ticks(edges: np.ndarray) -> tuple[list[float], list[str]]:
    """Tick positions and labels for a histogram image whose bin b spans [b, b + 1): a label
    at every other edge (edge k lies between bins k and k + 1), the half with the rounder
    numbers (the decades of a half-decade scale)."""
    halves = [range(0, len(edges), 2), range(1, len(edges), 2)]
    labels = [[f"{edges[k]:.3g}" for k in half] for half in halves]
    best = min((0, 1), key=lambda h: sum(map(len, labels[h])))
    return [k + 1.0 for k in halves[best]], labels[best]


def _layer_labels(history: History) -> list[str]:
    return [f"{i} {activation}" for i, activation in enumerate(history.layer_activations)]


def _check_epochs(history: History) -> None:
    check_instance(history, "history", History, "a fastbp.History")
    if history.n_epochs == 0:
        raise ValueError("history has no epochs to plot")
