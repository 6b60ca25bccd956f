"""Command line: ``fastbp demo`` (the vanishing-gradient story on an embedded data set),
``fastbp train`` (train on your own CSV or NPZ file, with its gradients diagnosed, and save the
model), ``fastbp predict`` (a saved model on new data), ``fastbp lab`` (classic results
reproduced) and ``fastbp info`` (how the core was built). A mistake in the command or the data
is one line, ``fastbp: error: ...``."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import textwrap
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

if TYPE_CHECKING:
    from .network import MLP

    MakeNet = Callable[[str, str], MLP]  # (activation, init) -> a network of the demo's shape


def _net_factory(fb: Any, d: int, k: int, depth: int, width: int, seed: int) -> MakeNet:
    def make(activation: str, init: str) -> MLP:
        return fb.MLP(
            [d] + [width] * depth + [k],
            activation=activation,
            init=init,
            loss="cross_entropy",
            seed=seed,
        )

    return make


def _gradient_table(fb: Any, make: MakeNet, X: np.ndarray, y: np.ndarray) -> str:
    """Per-layer weight-gradient norms of one backward pass, sigmoid vs ReLU + He."""
    sig = make("sigmoid", "xavier_uniform")
    relu = make("relu", "he_normal")
    sig.backward(X, y)
    relu.backward(X, y)
    gs, gr = sig.grad_norms(), relu.grad_norms()
    lines = [
        "One backward pass on the demo data: L2 norm of each layer's weight gradient",
        f"{'layer':>5}  {'sigmoid + Xavier':>16}  {'vs last':>8}  "
        f"{'ReLU + He':>10}  {'vs last':>8}",
    ]
    for layer in range(len(gs)):
        lines.append(
            f"{layer:>5}  {gs[layer]:>16.3e}  {gs[layer] / gs[-1]:>8.1e}  "
            f"{gr[layer]:>10.3e}  {gr[layer] / gr[-1]:>8.1e}"
        )
    lines.append(
        f"first/last layer: sigmoid {_ratio_words(gs[0] / gs[-1])}, "
        f"ReLU + He {_ratio_words(gr[0] / gr[-1])}"
    )
    return "\n".join(lines)


def _ratio_words(ratio: float) -> str:
    """A first/last gradient ratio, called vanishing where diagnose would call it so."""
    from .diagnostics import VANISHING_RATIO

    if ratio < VANISHING_RATIO:
        return f"{ratio:.1e} (vanishing: below {VANISHING_RATIO:g})"
    return f"{ratio:.2g}"


def _runs(fb: Any, lr: float, relu_lr: float) -> dict[str, dict[str, Any]]:
    return {
        "sigmoid, SGD": dict(act="sigmoid", init="xavier_uniform", opt=fb.SGD(lr), noise=None),
        # momentum 0.9 multiplies the effective step by 10: a tenth of the rate keeps it comparable
        "sigmoid, momentum": dict(
            act="sigmoid", init="xavier_uniform", opt=fb.SGD(lr / 10, momentum=0.9), noise=None
        ),
        "sigmoid, grad noise": dict(
            act="sigmoid",
            init="xavier_uniform",
            opt=fb.SGD(lr),
            noise=fb.GradientNoise(eta=0.01, gamma=0.55, seed=0),
        ),
        # ReLU passes gradients through undamped, so the sigmoid runs' rate does not carry over:
        # its own comes from the range test on the training rows
        "ReLU + He, SGD": dict(act="relu", init="he_normal", opt=fb.SGD(relu_lr), noise=None),
    }


RELU_RUN = "ReLU + He, SGD"


def demo(args: argparse.Namespace) -> int:
    import fastbp as fb
    from fastbp.datasets import load_demo

    t_start = time.perf_counter()
    if not args.no_plots:
        _check_plot_folder(args.out)
    X, y = load_demo()
    sp = fb.split(X, y, val=0.15, test=0.15, stratify=True, seed=args.seed)
    (Xtr, ytr), (_, yva), (_, yte) = sp
    d, k = X.shape[1], int(y.max()) + 1
    print(
        f"fastbp demo: {X.shape[0]} samples, {d} features, {k} classes "
        f"(train {len(ytr)}, validation {len(yva)}, test {len(yte)})"
    )
    print(
        f"network: {[d] + [args.width] * args.depth + [k]}, cross-entropy, "
        f"batch {args.batch_size}, early stopping on validation loss "
        f"(patience {args.patience})\n"
    )
    make = _net_factory(fb, d, k, args.depth, args.width, args.seed)
    print(_gradient_table(fb, make, Xtr[:256], ytr[:256]), "\n")

    finder = fb.lr_find(
        make("relu", "he_normal"),
        Xtr,
        ytr,
        start_lr=1e-5,
        end_lr=10.0,
        num_steps=100,
        seed=args.seed,
    )
    print(
        f"Learning rates: {args.lr:g} for the sigmoid runs (--lr; a tenth of it with momentum); "
        f"{finder.suggestion:.3g} for ReLU + He, the range test's suggestion on the training "
        f"rows (fb.lr_find: a tenth of {finder.min_loss_lr:.3g}, where its loss was lowest)\n"
    )
    runs = _train_runs(fb, make, sp, args, finder.suggestion)
    print("Training with early stopping (best weights restored, test set used once at the end):")
    print(_runs_table(runs))
    note = _remedy_note(fb, runs, sp, args)
    if note:
        print("\n" + note)
    first = next(iter(runs))
    print(f"\nDiagnosis of '{first}':")
    print(runs[first].report)

    if not args.no_plots:
        written = _plots(runs, finder, args)
        if written:
            print(f"\nplots written to {args.out}/: " + ", ".join(written))
    print(f"\ndone in {time.perf_counter() - t_start:.1f} s")
    return 0


@dataclass
class _Run:
    lr: float
    history: Any  # fastbp.History
    report: Any  # fastbp.GradientReport of the history
    test_accuracy: float


def _train_runs(
    fb: Any, make: MakeNet, sp: Any, args: argparse.Namespace, relu_lr: float
) -> dict[str, _Run]:
    """Each run of `_runs` trained with early stopping, diagnosed, then scored on the test set."""
    runs = {}
    for name, cfg in _runs(fb, args.lr, relu_lr).items():
        net = make(cfg["act"], cfg["init"])
        history, accuracy = _fit_and_test(fb, net, cfg["opt"], sp, args, cfg["noise"])
        runs[name] = _Run(cfg["opt"].lr, history, fb.diagnose(history), accuracy)
    return runs


def _trainer(fb: Any, net: Any, opt: Any, args: argparse.Namespace, **options: Any) -> Any:
    """A Trainer with the command's batch size, epochs and seed, stopping early on the
    validation loss after --patience epochs without improvement; options add to those."""
    return fb.Trainer(
        net,
        opt,
        batch_size=args.batch_size,
        epochs=args.epochs,
        early_stopping=fb.EarlyStopping("val_loss", patience=args.patience),
        seed=args.seed,
        **options,
    )


def _fit_and_test(
    fb: Any, net: Any, opt: Any, sp: Any, args: argparse.Namespace, noise: Any = None
) -> tuple[Any, float]:
    """A demo run: fit on the training split with early stopping on the validation split, then
    the only look at the test set. Returns the history and the test accuracy."""
    trainer = _trainer(fb, net, opt, args, grad_noise=noise, progress=False)
    history = trainer.fit(*sp.train, validation=sp.val)
    return history, trainer.evaluate(*sp.test)["accuracy"]


def _runs_table(runs: dict[str, _Run]) -> str:
    """One row per run. The gradient columns and the verdict are diagnose's: layer 0's gradient
    norm over the output layer's (median over the first and over the last epochs of its
    window), and its findings (GradientReport.brief); grad_norms_by_run.png draws the same."""
    window = next(iter(runs.values())).report.window
    head = (
        f"{'run':<20} {'lr':>6} {'epochs':>6} {'best':>4} {'best val loss':>13} "
        f"{'test acc':>8}  {'layer 0 / output grad':>21}  verdict (fb.diagnose)"
    )
    sub = f"{'':<20} {'':>6} {'':>6} {'':>4} {'':>13} {'':>8}  {'first ' + str(window):>10} "
    sub += f"{'last ' + str(window):>10}"
    lines = [head, sub, "-" * len(head)]
    for name, run in runs.items():
        h, layer0 = run.history, run.report.layers[0]
        lines.append(
            f"{name:<20} {run.lr:>6.3g} {h.n_epochs:>6d} {h.best_epoch:>4d} "
            f"{min(h.val_loss):>13.4f} {run.test_accuracy:>8.3f}  {layer0.ratio:>10.2e} "
            f"{layer0.final_ratio:>10.2e}  {run.report.brief}"
        )
    lines.append(
        f"(best: the epoch of the lowest validation loss; first/last {window}: medians over the "
        f"first and the last {window} epochs, diagnose's window)"
    )
    return "\n".join(lines)


def _remedy_note(fb: Any, runs: dict[str, _Run], sp: Any, args: argparse.Namespace) -> str:
    """Why the ReLU + He run, whose gradients reach every layer, generalises less well than
    another run, when it does: one hidden layer of each activation, where no gradient can
    vanish, shows what each kind of unit makes of this data set."""
    relu = runs[RELU_RUN]
    rival, best = max(
        ((name, run) for name, run in runs.items() if name != RELU_RUN),
        key=lambda item: item[1].test_accuracy,
    )
    if relu.test_accuracy >= best.test_accuracy:
        return ""
    shallow = {}
    for act, lr in (("sigmoid", args.lr), ("relu", relu.lr)):
        net = fb.MLP(
            [sp.train[0].shape[1], args.width, int(sp.train[1].max()) + 1],
            activation=act,
            loss="cross_entropy",
            seed=args.seed,
        )
        shallow[act] = _fit_and_test(fb, net, fb.SGD(lr), sp, args)[1]
    lines = [
        f"ReLU + He gets its gradients to every layer from the first epoch (best epoch "
        f"{relu.history.best_epoch}, against {best.history.best_epoch} for '{rival}') but "
        f"reaches a lower test accuracy ({relu.test_accuracy:.3f} against "
        f"{best.test_accuracy:.3f}). With one hidden layer of {args.width}, where no gradient "
        f"can vanish, sigmoid reaches {shallow['sigmoid']:.3f} and ReLU {shallow['relu']:.3f} "
        "(same rates, same split)"
    ]
    if shallow["sigmoid"] > shallow["relu"]:
        lines[0] += (
            ": on this data set, labelled by a smooth tanh teacher network, sigmoid units "
            "generalise better than ReLU units with one hidden layer too."
        )
        if runs[next(iter(runs))].report.vanishing:
            lines[0] += " Depth made the sigmoid network hard to train, not worse at the task."
    else:
        lines[0] += "."
    return "\n".join(textwrap.wrap(lines[0], 96))


def _slug(name: str) -> str:
    """A run's name as a file-name part: "ReLU + He, SGD" -> "relu_he_sgd"."""
    return "_".join("".join(c if c.isalnum() else " " for c in name.lower()).split())


def _plots(runs: dict[str, _Run], finder: Any, args: argparse.Namespace) -> list[str]:
    try:
        from fastbp import plot
    except ImportError:
        return []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("\n(matplotlib is not installed: no plots; pip install fastbp[plot])")
        return []
    os.makedirs(args.out, exist_ok=True)
    histories = {name: run.history for name, run in runs.items()}
    window = next(iter(runs.values())).report.window
    figures = {"grad_norms_by_run.png": plot.compare_grad_norms(histories, window=window)}
    for name, h in histories.items():
        slug = _slug(name)
        figures[f"{slug}_loss_curves.png"] = plot.loss_curves(h)
        figures[f"{slug}_grad_norm_heatmap.png"] = plot.grad_norm_heatmap(h)
        for kind in ("loss_curves", "grad_norm_heatmap"):
            figures[f"{slug}_{kind}.png"].suptitle(name)
    figures[f"{_slug(RELU_RUN)}_lr_find.png"] = plot.lr_find_curve(finder)
    for fname, fig in figures.items():
        fig.savefig(os.path.join(args.out, fname), dpi=110, bbox_inches="tight")
    return list(figures)


OPTIMIZERS = {
    "sgd": "SGD",
    "momentum": "SGD",
    "adam": "Adam",
    "adamw": "AdamW",
    "rmsprop": "RMSProp",
    "adagrad": "AdaGrad",
    "linesearch": "LineSearchSGD",
}
SGD_LR = 0.01  # --lr's default for sgd and momentum (fb.SGD has none); the others: their own
MAX_AUTO_CLASSES = 20  # an integer target with more distinct values is taken as a quantity


class UserError(Exception):
    """A mistake in the command line or the data: reported as one line, no traceback."""


# ---- reading tables ------------------------------------------------------------------------


@dataclass
class Table:
    """A data file's columns: their names (None for an NPZ's X) and values as read."""

    X: np.ndarray | None  # an NPZ's X, numeric
    y: np.ndarray | None  # an NPZ's y
    names: list[str]
    columns: list[list[str]]  # a CSV's cells, one list per column
    lines: list[int]  # the file line of each row (for messages)
    path: str

    def column(self, name: str) -> list[str]:
        return self.columns[self.names.index(name)]

    def numeric(self, name: str) -> np.ndarray:
        """A column as float64; UserError naming the first cell that is not a finite number."""
        cells = self.column(name)
        out = np.empty(len(cells))
        for i, cell in enumerate(cells):
            try:
                out[i] = float(cell)
            except ValueError:
                out[i] = np.nan
            if not np.isfinite(out[i]):
                what = "is empty" if not cell.strip() else f"holds {cell!r}"
                raise UserError(
                    f"{self.path}: column {name!r} {what} on line {self.lines[i]}: features "
                    "must be finite numbers; drop or encode that column"
                )
        return out


def _read_table(path: str) -> Table:
    """A CSV with a header row naming every column, or an NPZ with arrays X (and y)."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder, not a data file")
    if path.lower().endswith(".npz"):
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path}: not a readable .npz file (not a zip archive)")
        try:
            with np.load(path, allow_pickle=False) as data:
                if "X" not in data:
                    raise UserError(f"{path} must hold an array named 'X' (and 'y' to train)")
                X = np.asarray(data["X"])
                y = np.asarray(data["y"]) if "y" in data else None
        except (ValueError, OSError, zipfile.BadZipFile) as err:
            raise UserError(f"{path}: not a readable .npz file ({err})") from None
        if X.ndim != 2:
            raise UserError(f"{path}: X must be 2-D (samples, features), got shape {X.shape}")
        return Table(X, y, [f"x{i}" for i in range(X.shape[1])], [], [], path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        try:
            rows = [
                (n, row) for n, row in enumerate(csv.reader(f), 1) if any(c.strip() for c in row)
            ]
        except (csv.Error, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not a readable CSV file ({err})") from None
    if not rows:
        raise UserError(f"{path} is empty: a header row and data rows are needed")
    names = [c.strip() for c in rows[0][1]]
    _check_header(path, names)
    if len(rows) == 1:
        raise UserError(f"{path} has a header row but no data rows")
    for line, row in rows[1:]:
        if len(row) != len(names):
            raise UserError(
                f"{path} line {line} has {len(row)} values, but the header names {len(names)} "
                "columns: every row needs one value per named column"
            )
    columns = [[row[j].strip() for _, row in rows[1:]] for j in range(len(names))]
    return Table(None, None, names, columns, [line for line, _ in rows[1:]], path)


def _check_header(path: str, names: list[str]) -> None:
    unnamed = [i for i, name in enumerate(names) if not name or name.startswith("Unnamed: ")]
    if unnamed:
        raise UserError(
            f"{path}: column {unnamed[0] + 1} has no name (an index column, as pandas' "
            "to_csv writes without index=False?): remove it or name it"
        )
    if all(_is_number(name) for name in names):
        raise UserError(f"{path}: the first row must name the columns; it holds numbers")
    seen = set()
    for name in names:
        if name in seen:
            raise UserError(f"{path}: two columns are named {name!r}")
        seen.add(name)


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (ValueError, TypeError):
        return False
    return True


# ---- train ---------------------------------------------------------------------------------


@dataclass
class Task:
    """What the target asks for: the loss, the network's targets and the label names."""

    loss: str
    Y: np.ndarray  # class codes (n,), 0/1 codes (n, 1), or values (n, n_outputs)
    n_out: int
    classes: np.ndarray | None  # label names (str) of the codes; None for regression
    reason: str  # what decided the loss, in words


def _train_data(
    table: Table, target: str | None
) -> tuple[np.ndarray, Any, list[str] | None, str | None]:
    """Features, raw target, feature names (None for NPZ) and target name."""
    if table.X is not None:
        if target is not None:
            raise UserError("--target names a CSV column; an NPZ file's target is its array y")
        if table.y is None:
            raise UserError(f"{table.path} must hold an array named 'y' to train on")
        X = _npz_features(table)
        y = np.asarray(table.y)
        if y.ndim not in (1, 2) or y.dtype.kind not in "biufUSO":
            raise UserError(
                f"{table.path}: y must be a 1-D array of labels or numbers (2-D for several "
                f"outputs), got dtype {y.dtype} and shape {y.shape}"
            )
        if len(y) != len(X):
            raise UserError(f"{table.path}: X has {len(X)} rows, y has {len(y)}")
        if y.ndim == 2 and y.shape[1] == 1:  # one label or value per sample, as (n,)
            y = y[:, 0]
        return X, y, None, None
    if len(table.names) < 2:
        raise UserError(
            f"{table.path} has one column: a target and at least one feature are needed"
        )
    name = table.names[-1] if target is None else _target_name(table, target)
    features = [n for n in table.names if n != name]
    try:
        X = np.column_stack([table.numeric(f) for f in features])
    except UserError as err:
        if target is None:  # the text column may be the target the user meant
            raise UserError(f"{err}, or name it as the target with --target") from None
        raise
    y = table.column(name)
    if "" in y:
        line = table.lines[y.index("")]
        raise UserError(f"{table.path}: the target {name!r} is empty on line {line}")
    return X, np.array(y), features, name


def _target_name(table: Table, target: str) -> str:
    if target in table.names:
        return target
    if target.lstrip("-").isdigit() and -len(table.names) <= int(target) < len(table.names):
        return table.names[int(target)]
    raise UserError(
        f"--target {target!r} is not a column of {table.path}; its columns are {table.names}"
    )


def _task(y: np.ndarray, loss: str, target: str | None) -> Task:
    """The loss and targets for ``y`` (``loss`` "auto" decides from the values)."""
    what = f"target {target!r}" if target else "y"
    numeric = y.dtype.kind in "biuf" or all(_is_number(v) for v in y.ravel())
    values = y.astype(np.float64) if numeric else None
    if values is not None and not np.all(np.isfinite(values)):
        raise UserError(f"{what} has missing or non-finite values")
    integral = values is not None and bool(np.all(values == np.round(values)))
    n_distinct = len(np.unique(y if values is None else values, axis=0 if y.ndim > 1 else None))
    if loss == "auto":
        if values is None:
            loss, reason = "cross_entropy", f"{what} holds text: {n_distinct} classes"
        elif y.ndim == 1 and integral and n_distinct <= MAX_AUTO_CLASSES:
            loss = "cross_entropy"
            reason = (
                f"{what} holds {n_distinct} distinct integers: classes (--loss mse to "
                "predict them as numbers)"
            )
        else:
            loss = "mse"
            kind = f"{n_distinct} distinct integers" if integral else "non-integer numbers"
            reason = f"{what} holds {kind}: regression"
            if integral and y.ndim == 1:
                reason += " (--loss cross_entropy to take them as classes)"
    else:
        reason = f"--loss {loss}"
    if loss == "mse":
        if values is None:
            raise UserError(f"--loss mse needs a numeric target; {what} holds text")
        Y = values.reshape(len(values), -1)
        return Task(loss, Y, Y.shape[1], None, reason)
    if y.ndim != 1:
        raise UserError(f"--loss {loss} needs one label per sample; y has shape {y.shape}")
    if values is not None and not integral:
        raise UserError(f"--loss {loss} needs class labels; {what} holds non-integer numbers")
    keys = _class_keys(y, values)
    uniques, codes = np.unique(keys, return_inverse=True)
    names = np.array([str(int(v)) for v in uniques] if values is not None else uniques, dtype=str)
    if len(names) < 2:
        raise UserError(f"{what} has a single class ({names[0]!r}): nothing to learn")
    if loss == "binary_cross_entropy":
        if len(names) != 2:
            raise UserError(f"--loss binary_cross_entropy needs 2 classes; {what} has {len(names)}")
        return Task(loss, codes.reshape(-1, 1).astype(np.float64), 1, names, reason)
    return Task(loss, codes, len(names), names, reason)


def _class_keys(y: np.ndarray, values: np.ndarray | None) -> np.ndarray:
    """What tells ``y``'s classes apart: its text, or its integers exactly (float64 ``values``
    would merge labels above 2**53)."""
    if values is None:
        return y.astype(str)
    if y.dtype.kind in "iu":
        return y
    if y.dtype.kind in "USO":
        try:
            return np.array([int(v) for v in y.tolist()], dtype=object)
        except (ValueError, TypeError):  # "1.0", "1e3": integral, but written as floats
            pass
    return values


def _hidden(text: str) -> list[int]:
    """``--hidden``: comma-separated positive widths; empty for no hidden layer."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive widths such as 64,64 (or '' for none), got {text!r}"
        )
    return [int(p) for p in parts]


def _number(
    kind: type,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` (int or float) within bounds."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if kind is float and not np.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        below = low is not None and (value <= low if open_low else value < low)
        above = high is not None and (value >= high if open_high else value > high)
        if below or above:
            lo = "" if low is None else f"{'>' if open_low else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if open_high else '<='} {high:g}"
            raise argparse.ArgumentTypeError(
                f"must be {' and '.join(b for b in (lo, hi) if b)}, got {text}"
            )
        return value

    return parse


def train(args: argparse.Namespace) -> int:
    import fastbp as fb

    if args.val + args.test >= 1:
        raise UserError(f"--val + --test must be below 1, got {args.val} + {args.test}")
    if args.save:  # before the training, not after it
        _check_folder_of(args.save, "--save")
    X, y, features, target = _train_data(_read_table(args.data), args.target)
    task = _task(y, args.loss, target)
    print(f"{task.reason} -> loss {task.loss}")
    classify = task.classes is not None
    sp = fb.split(
        X, task.Y, val=args.val, test=args.test, stratify=classify or None, seed=args.seed
    )
    (Xtr, Ytr), (Xva, Yva), (Xte, Yte) = sp
    mean = scale = None
    if args.standardize:  # from the training part only: the others are data it never saw
        mean, scale = _standardizer(Xtr, features)
        Xtr, Xva, Xte = ((part - mean) / scale for part in (Xtr, Xva, Xte))
    net = fb.MLP(
        [X.shape[1], *args.hidden, task.n_out],
        activation=args.activation,
        loss=task.loss,
        init=args.init,
        seed=args.seed,
    )
    opt = _optimizer(fb, args.optimizer, args.lr)
    trainer = _trainer(fb, net, opt, args, clip_norm=args.clip_norm)
    print(
        f"training {net} on {len(Xtr)} samples (validation {len(Xva)}, test {len(Xte)})", flush=True
    )
    data_info = {
        "features": features,
        "target": target,
        "classes": task.classes,
        "mean": mean,
        "scale": scale,
    }
    try:
        with warnings.catch_warnings():
            # a diverged first epoch is reported below, in one line
            warnings.simplefilter("ignore", fb.NonFiniteWarning)
            history = trainer.fit(Xtr, Ytr, validation=(Xva, Yva))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            _save_interrupted(net, trainer.history, args.save, data_info)
        ) from None
    if history.n_epochs == 0:
        raise UserError(
            f"training diverged in the first epoch (the loss became NaN or infinite): try a "
            f"smaller --lr than {opt.lr:g}, or --clip-norm"
        )
    best = history.best_epoch or 0  # None only when every loss is NaN, which stops the run
    print(
        f"{history.n_epochs} epochs, best epoch {best}, best validation loss "
        f"{history.val_loss[best]:.5g}"
    )
    if history.stop_reason == "non_finite":
        print(
            f"training diverged at epoch {history.stopped_epoch} (NaN or infinite loss): the "
            "weights of the best earlier epoch are kept; a smaller --lr may do better"
        )
    print(fb.diagnose(history))
    if len(Yte):
        test = trainer.evaluate(Xte, Yte)
        print("test:", ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
    if args.out:
        _write_history(fb, history, args.out)
    if args.save:
        _save_model(net, args.save, data_info)
        print(f"model saved to {args.save}")
    return 0


def _standardizer(X: np.ndarray, names: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation (1 for a constant column). Where values near
    the float64 limit (1e300) overflow the sums, on the column divided by its largest
    magnitude."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = X.mean(axis=0), X.std(axis=0)
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            peak = np.abs(X).max(axis=0)
            peak = np.where(peak > 0, peak, 1.0)
            mean, std = (X / peak).mean(axis=0) * peak, (X / peak).std(axis=0) * peak
    bad = np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))
    if len(bad):
        which = [names[j] for j in bad] if names else [f"x{j}" for j in bad]
        raise UserError(f"the features {which} are too large to standardise: rescale them")
    return mean, np.where(std > 0, std, 1.0)


def _check_plot_folder(out: str) -> None:
    """--out names a folder, or nothing yet: checked before the work whose plots go there."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file, not a folder for the plots")


def _check_folder_of(path: str, option: str) -> None:
    """The folder a file is to be written to exists, and the path is not a folder."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{option} {path} is a folder; name a file")
    if not os.path.isdir(folder):
        raise UserError(f"{option} {path}: the folder {folder} does not exist")


def _optimizer(fb: Any, name: str, lr: float | None) -> Any:
    """--optimizer NAME at --lr, or at the rate NAME defaults to."""
    cls = getattr(fb, OPTIMIZERS[name])
    momentum = dict(momentum=0.9) if name == "momentum" else {}
    if name in ("sgd", "momentum"):
        return cls(SGD_LR if lr is None else lr, **momentum)
    return cls() if lr is None else cls(lr)


def _write_history(fb: Any, history: Any, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    history.to_json(os.path.join(out, "history.json"))
    try:
        from fastbp import plot

        plot.loss_curves(history).savefig(os.path.join(out, "loss.png"), dpi=110)
        plot.grad_norm_heatmap(history).savefig(os.path.join(out, "grad_norms.png"), dpi=110)
    except ImportError:
        print(
            f"history written to {out}/ (matplotlib is not installed: no plots; pip install "
            "fastbp[plot])"
        )
    else:
        print(f"history and plots written to {out}/")


def _save_model(net: Any, path: str, data_info: dict[str, Any]) -> None:
    from .io import write_file

    write_file(path, "MLP", net, data=data_info)


def _save_interrupted(net: Any, history: Any, path: str | None, data_info: dict[str, Any]) -> str:
    """What an interrupted training run leaves behind, in words."""
    epochs = 0 if history is None else history.n_epochs
    if not path or epochs == 0:
        return "nothing was saved"
    _save_model(net, path, data_info)
    # fit has put back the best epoch's weights (EarlyStopping(restore_best=True))
    best = history.best_epoch
    return (
        f"{path} holds the weights of epoch {best}, the best by validation loss of the {epochs} run"
    )


# ---- predict -------------------------------------------------------------------------------


def predict(args: argparse.Namespace) -> int:
    from .io import read_file

    if not os.path.exists(args.model):
        raise UserError(f"{args.model}: no such file")
    saved = read_file(args.model)
    table = _read_table(args.data)
    if saved.kind == "MLP":
        header, rows = _predict_network(saved, table, args.proba)
    else:
        header, rows = _predict_estimator(saved, table, args.proba)
    out = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    finally:
        if out is not sys.stdout:
            out.close()
    if args.output:
        print(f"{len(rows)} predictions written to {args.output}")
    return 0


def _npz_features(table: Table) -> np.ndarray:
    """An NPZ file's X: a 2-D array of real numbers with at least one row, as float64."""
    X = np.asarray(table.X)
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise UserError(
            f"{table.path}: X must be a 2-D array (samples, features) of real numbers, got "
            f"dtype {X.dtype} and shape {X.shape}"
        )
    if len(X) == 0:
        raise UserError(f"{table.path}: X has no rows")
    return X.astype(np.float64, copy=False)


def _features(table: Table, names: list[str] | None, n_in: int) -> np.ndarray:
    """The model's input columns of ``table``: by name when the model knows them, else all."""
    if table.X is not None:
        X = _npz_features(table)
    elif names is not None:
        missing = [n for n in names if n not in table.names]
        if missing:
            raise UserError(f"{table.path} lacks the feature columns {missing} of the model")
        X = np.column_stack([table.numeric(n) for n in names])
    else:
        X = np.column_stack([table.numeric(n) for n in table.names])
    if X.shape[1] != n_in:
        raise UserError(f"{table.path} has {X.shape[1]} feature columns; the model takes {n_in}")
    return X


def _predict_network(saved: Any, table: Table, proba: bool) -> tuple[list[str], list[list[str]]]:
    net, info = saved.net, saved.data or {}
    X = _features(table, info.get("features"), net.layer_sizes[0])
    if info.get("mean") is not None:
        X = (X - info["mean"]) / info["scale"]
    out = net.forward(X)
    target = info.get("target") or "prediction"
    classes = info.get("classes")
    if classes is None and net.loss == "binary_cross_entropy" and out.shape[1] > 1:
        # independent labels, one per output (multilabel): as net.predict, 0/1 each
        names = [f"{target}_{k}" for k in range(out.shape[1])]
        values = out if proba else (out > 0.5).astype(np.int64)
        return names, [[str(v) for v in row] for row in values]
    if classes is None and net.is_classifier:
        classes = np.arange(max(net.layer_sizes[-1], 2)).astype(str)
    if classes is None:
        if proba:
            raise UserError("--proba needs a classifier; this model predicts numbers")
        names = [target] if out.shape[1] == 1 else [f"{target}_{k}" for k in range(out.shape[1])]
        return names, [[str(v) for v in row] for row in out]
    if out.shape[1] == 1:  # one sigmoid output: the probability of the second class
        out = np.hstack([1 - out, out])
    if proba:
        return [str(c) for c in classes], [[str(v) for v in row] for row in out]
    return [target], [[str(classes[k])] for k in out.argmax(axis=1)]


def _predict_estimator(saved: Any, table: Table, proba: bool) -> tuple[list[str], list[list[str]]]:
    from .estimators import from_saved

    est = from_saved(saved)
    names = getattr(est, "feature_names_in_", None)
    X = _features(table, None if names is None else list(names), est.n_features_in_)
    if proba:
        if not hasattr(est, "predict_proba"):
            raise UserError("--proba needs a classifier; this model predicts numbers")
        return [str(c) for c in est.classes_], [
            [str(v) for v in row] for row in est.predict_proba(X)
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # X has no feature names: chosen by name above
        pred = est.predict(X)
    rows = pred.reshape(len(pred), -1)
    header = (
        ["prediction"] if rows.shape[1] == 1 else [f"prediction_{k}" for k in range(rows.shape[1])]
    )
    return header, [[str(v) for v in row] for row in rows]


def lab(args: argparse.Namespace) -> int:
    from fastbp import lab as labs

    names = labs.list()
    width = max(map(len, names))
    listing = "\n".join(f"{name:<{width}}  {text}" for name, text in names.items())
    if args.list and args.name is None:
        print(listing)
        return 0
    problem = None
    if args.list:
        problem = f"--list takes no lab name, got {args.name!r}"
    elif args.name not in names:
        problem = "name a lab" if args.name is None else f"unknown lab {args.name!r}"
        problem += f"; the labs are {', '.join(names)}"
    if problem:
        print(f"fastbp: error: {problem} (see fastbp lab --help)", file=sys.stderr)
        return 2
    out = args.out or os.path.join("fastbp-lab", args.name)
    if not args.no_plots:
        _check_plot_folder(out)
    result = labs.run(args.name, seed=args.seed, quick=args.quick)
    print(result)
    if not args.no_plots:
        try:
            written = result.save_plots(out)
        except ImportError:
            print("\n(matplotlib is not installed: no plots; pip install fastbp[plot])")
        else:
            print(f"\nplots written to {out}/: " + ", ".join(p.name for p in written))
    return 0


def info(args: argparse.Namespace) -> int:
    import fastbp as fb

    print(json.dumps(fb.build_info(), indent=2))
    return 0


# ---- the parser ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, ``fastbp: error: ...``, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"fastbp: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .validation import ACTIVATIONS, INITS, LOSSES

    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = _Parser(prog="fastbp", description=__doc__, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser(
        "demo", help="vanishing gradients and their remedies, on embedded data", formatter_class=fmt
    )
    p.add_argument("--out", default="fastbp-demo", help="folder for the PNG plots")
    p.add_argument("--epochs", type=_number(int, 1), default=300, help="most epochs per run")
    p.add_argument("--depth", type=_number(int, 0), default=6, help="hidden layers")
    p.add_argument("--width", type=_number(int, 1), default=32, help="units per hidden layer")
    p.add_argument(
        "--lr",
        type=_number(float, 0, open_low=True),
        default=0.3,
        help="learning rate of the sigmoid runs",
    )
    p.add_argument("--batch-size", type=_number(int, 1), default=32, help="mini-batch size")
    p.add_argument(
        "--patience", type=_number(int, 0), default=40, help="early-stopping patience, in epochs"
    )
    p.add_argument(
        "--seed", type=_number(int, 0), default=0, help="seed of the split, weights and shuffling"
    )
    p.add_argument("--no-plots", action="store_true", help="print the tables only")
    p.set_defaults(func=demo)

    p = sub.add_parser(
        "train", help="train on a CSV or NPZ file and diagnose the gradients", formatter_class=fmt
    )
    p.add_argument("data", help="CSV with a header row, or NPZ with arrays X and y")
    p.add_argument(
        "--target",
        default=None,
        help="label column, by name or 0-based index; None: the last column",
    )
    p.add_argument(
        "--loss",
        default="auto",
        choices=["auto", *LOSSES],
        help=(
            f"auto: classes for text, and for integers with at most {MAX_AUTO_CLASSES} "
            "distinct values; mse otherwise"
        ),
    )
    p.add_argument(
        "--hidden",
        type=_hidden,
        default="64,64",
        help="hidden layer widths, comma-separated ('' for none)",
    )
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="hidden activation")
    p.add_argument("--init", default="auto", choices=INITS, help="weight initialisation")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="update rule")
    p.add_argument(
        "--lr",
        type=_number(float, 0, open_low=True),
        default=None,
        help=(
            f"learning rate; None: the optimizer's default ({SGD_LR:g} for sgd and momentum, "
            "1e-3 for adam and adamw, 1e-2 for rmsprop and adagrad, 1 for linesearch: its "
            "first trial step)"
        ),
    )
    p.add_argument("--epochs", type=_number(int, 1), default=200, help="most epochs")
    p.add_argument("--batch-size", type=_number(int, 1), default=32, help="mini-batch size")
    p.add_argument(
        "--patience", type=_number(int, 0), default=20, help="early-stopping patience, in epochs"
    )
    p.add_argument(
        "--clip-norm",
        type=_number(float, 0, open_low=True),
        default=None,
        help="clip gradients to this global L2 norm",
    )
    p.add_argument(
        "--val",
        type=_number(float, 0, 1, open_low=True, open_high=True),
        default=0.15,
        help="validation share of the samples (early stopping)",
    )
    p.add_argument(
        "--test",
        type=_number(float, 0, 1, open_high=True),
        default=0.15,
        help="test share of the samples (0: no test)",
    )
    p.add_argument(
        "--no-standardize",
        dest="standardize",
        action="store_false",
        help=(
            "keep the features as they are, instead of scaling them to mean 0 and std 1 on "
            "the training part (standardize: %(default)s)"
        ),
    )
    p.add_argument(
        "--seed", type=_number(int, 0), default=0, help="seed of the split, weights and shuffling"
    )
    p.add_argument("--out", default=None, help="folder for history.json and plots")
    p.add_argument(
        "--save",
        default=None,
        metavar="MODEL",
        help="write the trained model here (.npz), for fastbp predict",
    )
    p.set_defaults(func=train)

    p = sub.add_parser(
        "predict",
        help="predict with a saved model (fastbp train --save, or est.save)",
        formatter_class=fmt,
    )
    p.add_argument("model", help="the saved model (.npz)")
    p.add_argument(
        "data", help="CSV with a header row (the model's feature columns by name), or NPZ with X"
    )
    p.add_argument("--proba", action="store_true", help="class probabilities, one column per label")
    p.add_argument("-o", "--output", default=None, help="CSV file to write; None: standard output")
    p.set_defaults(func=predict)

    p = sub.add_parser(
        "lab",
        help="classic results reproduced: fastbp lab --list, fastbp lab NAME",
        formatter_class=fmt,
    )
    p.add_argument("name", nargs="?", help="the lab to run (fastbp lab --list names them)")
    p.add_argument("--list", action="store_true", help="list the labs and what each shows")
    p.add_argument("--out", default=None, help="folder for the plots; None: fastbp-lab/NAME")
    p.add_argument("--seed", type=int, default=0, help="first seed of the lab's runs")
    p.add_argument("--quick", action="store_true", help="reduced sizes: seconds, not a minute")
    p.add_argument("--no-plots", action="store_true", help="print the report only")
    p.set_defaults(func=lab)

    p = sub.add_parser(
        "info", help="how fastbp was built (compiler, OpenMP, BLAS, SIMD)", formatter_class=fmt
    )
    p.set_defaults(func=info)
    return parser


def _show_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    print(f"fastbp: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line each, no source line
            return int(args.func(args))
    except KeyboardInterrupt as stop:
        print(f"fastbp: interrupted: {stop or 'nothing was saved'}", file=sys.stderr)
        return 130
    except UserError as err:
        print(f"fastbp: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader of our output stopped (| head): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 141
    except ImportError as err:  # an optional dependency the command needs
        print(f"fastbp: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a file that cannot be read or written
        where = f"{err.filename}: " if err.filename else ""
        print(f"fastbp: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except (ValueError, MemoryError) as err:  # fastbp's checks name the argument and value
        print(f"fastbp: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
