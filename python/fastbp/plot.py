"""Figures of a training run: losses, gradient norms per layer, the learning-rate range test.

matplotlib is optional (``pip install fastbp[plot]``) and imported only when a
function here is called. Figures are built with the object API
(`matplotlib.figure.Figure`), never pyplot, so they render without a display
and leave pyplot's global state alone; save one with ``fig.savefig(path)``. In
Jupyter a returned Figure displays itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .history import History
from .validation import check_instance

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
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
    _check_epochs(history)
    fig, ax = _figure_and_axes(ax, (6.0, 4.0))
    colors = _colormap("viridis")(np.linspace(0.0, 0.9, history.n_layers))
    epochs = np.arange(history.n_epochs)
    for label, norms, color in zip(_layer_labels(history), history.grad_norms.T, colors):
        ax.plot(epochs, norms, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weight-gradient norm")
    # Outside the axes: with many layers a legend inside would hide the lines.
    ax.legend(title="layer", fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def lr_find_curve(result: Any, ax: Axes | None = None) -> Figure:
    """Loss against learning rate from `fastbp.lr_find`, the suggested rate marked.

    Parameters
    ----------
    result : LRFinderResult
        Anything with ``lrs`` and ``losses`` (array-like of shape (n_steps,))
        and ``suggestion`` (float or None).
    ax : matplotlib Axes, optional
        Draw into this Axes instead of a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure: the loss curve on a log learning-rate axis and, when there
        is a suggestion, a dashed vertical line at it.
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


def compare_grad_norms(histories: Mapping[str, History]) -> Figure:
    """Mean weight-gradient norm per layer, one panel per run, on a shared log scale.

    Parameters
    ----------
    histories : mapping of str to History
        Runs to compare, by name (the panel titles); each with at least one epoch.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per run: a line through the mean over epochs of each layer's
        gradient norm, and a band from the smallest to the largest epoch value.
    """
    if not histories:
        raise ValueError("histories must name at least one run")
    for history in histories.values():
        _check_epochs(history)
    Figure = _figure_class()
    fig = Figure(figsize=(3.2 * len(histories), 3.6), layout="constrained")
    axes = fig.subplots(1, len(histories), sharey=True, squeeze=False)[0]
    for ax, (name, history) in zip(axes, histories.items()):
        low, mean, high = _spread_over_epochs(history.grad_norms)
        layers = np.arange(history.n_layers)
        ax.fill_between(layers, low, high, alpha=0.25, linewidth=0)
        ax.plot(layers, mean, "o-")
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xticks(layers)
        ax.set_xlabel("weight layer (0 = input side)")
    axes[0].set_ylabel("weight-gradient norm\n(mean over epochs; band: range)")
    return fig


def save_all(history: History, out_dir: str | Path, prefix: str = "") -> list[Path]:
    """Save `loss_curves`, `grad_norm_heatmap` and `grad_norm_lines` as PNG files.

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
        ``{prefix}grad_norms.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "loss": loss_curves(history),
        "grad_heatmap": grad_norm_heatmap(history),
        "grad_norms": grad_norm_lines(history),
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
    if ax is not None:
        return ax.figure, ax
    fig = _figure_class()(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _colormap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name]


def _spread_over_epochs(norms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer (column): smallest, mean and largest finite value; NaN if there is none."""
    norms = np.where(np.isfinite(norms), norms, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a layer that was never finite
        return np.nanmin(norms, axis=0), np.nanmean(norms, axis=0), np.nanmax(norms, axis=0)


def _layer_labels(history: History) -> list[str]:
    return [f"{i} {activation}" for i, activation in enumerate(history.layer_activations)]


def _check_epochs(history: History) -> None:
    check_instance(history, "history", History, "a fastbp.History")
    if history.n_epochs == 0:
        raise ValueError("history has no epochs to plot")
