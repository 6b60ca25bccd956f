"""fastbp.plot: figures render to PNG without a display and show what they claim."""

import io
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fastbp import plot  # noqa: E402
from fastbp.diagnostics import diagnose  # noqa: E402
from fastbp.history import HIST_BINS, History  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_history(n_epochs=6, n_layers=4, val=True):
    h = History(["sigmoid"] * (n_layers - 1) + ["softmax"])
    for e in range(n_epochs):
        stats = {
            "train_loss": 1.0 / (e + 1),
            "grad_norms": 10.0 ** np.arange(-n_layers + 1, 1) * (1 + 0.1 * e),
        }
        if val:
            stats["val_loss"] = [1.2, 0.8, 0.6, 0.7, 0.9, 1.0][e % 6]
        h.record(stats)
    return h


def png_bytes(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


def test_importing_fastbp_plot_does_not_import_matplotlib():
    code = "import sys, fastbp.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_loss_curves_draws_both_losses_and_marks_the_best_epoch():
    fig = plot.loss_curves(make_history())
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    train, val, best = ax.get_lines()
    np.testing.assert_allclose(train.get_ydata(), [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6])
    np.testing.assert_allclose(val.get_ydata(), [1.2, 0.8, 0.6, 0.7, 0.9, 1.0])
    assert list(best.get_xdata()) == [2, 2]  # lowest validation loss
    assert "best epoch (2)" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert png_bytes(fig).startswith(PNG_MAGIC)


def test_loss_curves_without_validation_marks_the_lowest_training_loss():
    (ax,) = plot.loss_curves(make_history(val=False)).axes
    lines = ax.get_lines()
    assert len(lines) == 2 and list(lines[1].get_xdata()) == [5, 5]


def test_loss_curves_draws_into_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot.loss_curves(make_history(), ax=ax) is fig
    assert len(ax.get_lines()) == 3


def test_heatmap_has_layers_as_rows_input_at_top_and_a_log_colorbar():
    h = make_history(n_epochs=5, n_layers=4)
    fig = plot.grad_norm_heatmap(h)
    ax, colorbar_ax = fig.axes
    (image,) = ax.get_images()
    assert image.get_array().shape == (4, 5)
    np.testing.assert_allclose(image.get_array()[0], h.grad_norms[:, 0])  # layer 0 on row 0
    assert isinstance(image.norm, LogNorm)
    bottom, top = ax.get_ylim()
    assert top < bottom  # row 0 is drawn at the top
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "0 sigmoid"
    assert colorbar_ax.get_ylabel() == "weight-gradient norm"
    assert png_bytes(fig).startswith(PNG_MAGIC)


def test_heatmap_masks_values_a_log_scale_cannot_show():
    h = History(["relu", "softmax"])
    for norms in ([1.0, 2.0], [0.0, np.nan], [np.inf, 1.0]):
        h.record({"train_loss": 1.0, "grad_norms": norms})
    fig = plot.grad_norm_heatmap(h)
    mask = np.ma.getmaskarray(fig.axes[0].get_images()[0].get_array())
    np.testing.assert_array_equal(mask, [[False, True, True], [False, True, False]])
    assert png_bytes(fig).startswith(PNG_MAGIC)


def test_grad_norm_lines_draws_one_line_per_layer_on_a_log_scale():
    h = make_history(n_layers=5)
    fig = plot.grad_norm_lines(h)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert len(lines) == 5
    np.testing.assert_allclose(lines[2].get_ydata(), h.grad_norms[:, 2])
    assert ax.get_yscale() == "log"
    assert png_bytes(fig).startswith(PNG_MAGIC)


def test_lr_find_curve_uses_a_log_axis_and_marks_the_suggestion():
    lrs = np.logspace(-6, 1, 50)
    losses = np.r_[np.linspace(2.0, 0.5, 45), [0.7, 1.5, 4.0, 20.0, 100.0]]
    fig = plot.lr_find_curve(SimpleNamespace(lrs=lrs, losses=losses, suggestion=1e-3))
    (ax,) = fig.axes
    curve, marker = ax.get_lines()
    assert ax.get_xscale() == "log"
    assert list(marker.get_xdata()) == [1e-3, 1e-3]
    assert ax.get_ylim()[1] < 10  # the blow-up at the end does not flatten the curve
    assert png_bytes(fig).startswith(PNG_MAGIC)
    result = SimpleNamespace(lrs=lrs, losses=losses, suggestion=1e-3, min_loss_lr=1e-2)
    curve, lowest, marker = plot.lr_find_curve(result).axes[0].get_lines()
    assert list(lowest.get_xdata()) == [1e-2, 1e-2] and list(marker.get_xdata()) == [1e-3, 1e-3]


def test_lr_find_curve_without_suggestion_and_bad_result():
    result = SimpleNamespace(lrs=[1e-3, 1e-2], losses=[1.0, 0.9], suggestion=None)
    assert len(plot.lr_find_curve(result).axes[0].get_lines()) == 1
    with pytest.raises(ValueError, match="result.lrs and result.losses"):
        plot.lr_find_curve(SimpleNamespace(lrs=[1e-3], losses=[1.0, 2.0], suggestion=None))


def test_compare_grad_norms_draws_what_diagnose_judges_one_log_panel_per_run():
    runs = {"sigmoid": make_history(n_epochs=12, n_layers=4), "relu": make_history(n_layers=6)}
    fig = plot.compare_grad_norms(runs)
    for ax, (name, h) in zip(fig.axes, runs.items()):
        report = diagnose(h)
        assert ax.get_title().splitlines()[0] == name
        assert " ".join(ax.get_title().splitlines()[1:]) == report.brief
        assert ax.get_yscale() == "log"
        first, last = ax.get_lines()
        # diagnose's window: medians over the first and over the last 5 epochs
        np.testing.assert_allclose(first.get_ydata(), np.median(h.grad_norms[:5], axis=0))
        np.testing.assert_allclose(last.get_ydata(), np.median(h.grad_norms[-5:], axis=0))
        np.testing.assert_allclose(first.get_ydata(), [x.grad_norm for x in report.layers])
    assert "vanishing in layer 0" in fig.axes[0].get_title()  # 1e-3 of the output layer's
    assert png_bytes(fig).startswith(PNG_MAGIC)


def forward_history(n_epochs=5):
    """A relu, tanh, softmax net whose statistics are easy to recognise in the figures."""
    h = History(["relu", "tanh", "softmax"])
    for e in range(n_epochs):
        hist = np.zeros((3, HIST_BINS))
        hist[0, e] = 1.0  # relu: all mass in bin e
        hist[1, [0, -1]] = 0.5  # tanh: saturated at both ends
        hist[2, 10] = 1.0
        h.record(
            {
                "train_loss": 1.0,
                "activation_std": [10.0**e, 0.5, 0.1],
                "activation_hist": hist,
            }
        )
    return h


def test_activation_std_lines_draws_one_log_line_per_layer():
    h = forward_history()
    fig = plot.activation_std_lines(h)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 3
    np.testing.assert_allclose(lines[0].get_ydata(), [1, 10, 100, 1e3, 1e4])
    assert png_bytes(fig).startswith(PNG_MAGIC)


def test_activation_hist_has_one_image_per_layer_bins_up_epochs_across():
    h = forward_history()
    fig = plot.activation_hist(h, max_columns=2)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 3  # 2 x 2 grid, the fourth hidden; plus the colorbar's axes
    image = panels[0].get_images()[0]
    data = image.get_array()
    assert data.shape == (HIST_BINS, 5)
    assert isinstance(image.norm, LogNorm)
    for e in range(5):  # relu layer: epoch e's mass in bin e, the rest masked (empty)
        assert data[e, e] == 1.0 and data.mask[:, e].sum() == HIST_BINS - 1
    labels = [t.get_text() for t in panels[0].get_yticklabels()]
    assert labels[:4] == ["0.001", "0.01", "0.1", "1"]  # relu's decades
    assert "0" in [t.get_text() for t in panels[1].get_yticklabels()]  # tanh's middle
    assert png_bytes(fig).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="max_columns"):
        plot.activation_hist(h, max_columns=0)


def test_forward_plots_of_a_record_without_forward_statistics_draw_nothing():
    h = make_history()  # as a version 2 file: NaN statistics
    assert png_bytes(plot.activation_std_lines(h)).startswith(PNG_MAGIC)
    assert png_bytes(plot.activation_hist(h)).startswith(PNG_MAGIC)


def test_save_all_writes_five_pngs(tmp_path):
    paths = plot.save_all(make_history(), tmp_path / "out", prefix="run_")
    assert [p.name for p in paths] == [
        "run_loss.png",
        "run_grad_heatmap.png",
        "run_grad_norms.png",
        "run_activation_std.png",
        "run_activation_hist.png",
    ]
    for path in paths:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="no epochs"):
        plot.loss_curves(History(["relu"]))
    with pytest.raises(TypeError, match="history must be a fastbp.History"):
        plot.grad_norm_lines({"train_loss": [1.0]})
    with pytest.raises(ValueError, match="at least one run"):
        plot.compare_grad_norms({})
    h = make_history()
    with pytest.raises(TypeError, match="histories must be a dict"):
        plot.compare_grad_norms([h])
    with pytest.raises(TypeError, match="prefix must be a str"):
        plot.save_all(h, "unused", prefix=None)
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        plot.loss_curves(h, ax="x")
    with pytest.raises(TypeError, match="max_columns"):
        plot.activation_hist(h, max_columns=2.0)
    assert len(plot.activation_hist(forward_history(), max_columns=np.int64(2)).axes) == 5


def test_missing_matplotlib_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` fail
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install fastbp\[plot\]"):
        plot.loss_curves(make_history())
