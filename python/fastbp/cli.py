"""Command line: ``fastbp demo`` (the vanishing-gradient story on an embedded data set),
``fastbp train`` (train on your own CSV or NPZ file, with its gradients diagnosed),
``fastbp lab`` (classic results reproduced) and ``fastbp info`` (how the core was built)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
        f"first/last layer: sigmoid {gs[0] / gs[-1]:.1e} (vanishing), "
        f"ReLU + He {gr[0] / gr[-1]:.2f}"
    )
    return "\n".join(lines)


def _runs(fb: Any, lr: float) -> dict[str, dict[str, Any]]:
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
        # ReLU passes gradients through undamped: the sigmoid nets' rate would blow it up
        "ReLU + He, SGD": dict(act="relu", init="he_normal", opt=fb.SGD(lr / 5), noise=None),
    }


def demo(args: argparse.Namespace) -> int:
    import fastbp as fb
    from fastbp.datasets import load_demo

    t_start = time.perf_counter()
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

    runs = _train_runs(fb, make, sp, args)
    print("Training with early stopping (best weights restored, test set used once at the end):")
    print(_runs_table(runs))
    first = next(iter(runs))
    print(f"\nDiagnosis of '{first}':")
    print(runs[first].report)
    histories = {name: run.history for name, run in runs.items()}

    if not args.no_plots:
        written = _plots(fb, histories, make, Xtr, ytr, args)
        if written:
            print(f"\nplots written to {args.out}/: " + ", ".join(written))
    print(f"\ndone in {time.perf_counter() - t_start:.1f} s")
    return 0


@dataclass
class _Run:
    history: Any  # fastbp.History
    report: Any  # fastbp.GradientReport of the history
    test_accuracy: float


def _train_runs(fb: Any, make: MakeNet, sp: Any, args: argparse.Namespace) -> dict[str, _Run]:
    """Each run of `_runs` trained with early stopping, diagnosed, then scored on the test set."""
    runs = {}
    for name, cfg in _runs(fb, args.lr).items():
        trainer = fb.Trainer(
            make(cfg["act"], cfg["init"]),
            cfg["opt"],
            batch_size=args.batch_size,
            epochs=args.epochs,
            early_stopping=fb.EarlyStopping("val_loss", patience=args.patience),
            grad_noise=cfg["noise"],
            seed=args.seed,
            progress=False,
        )
        history = trainer.fit(*sp.train, validation=sp.val)
        test = trainer.evaluate(*sp.test)  # the only look at the test set
        runs[name] = _Run(history, fb.diagnose(history), test["accuracy"])
    return runs


def _runs_table(runs: dict[str, _Run]) -> str:
    """One row per run. "first/last grad" is diagnose's "vs output" of layer 0 (median over
    the first epochs of its gradient norm over the output layer's): the two never disagree."""
    head = (
        f"{'run':<20} {'epochs':>6} {'best val loss':>13} {'test acc':>8} "
        f"{'first/last grad':>15}  verdict"
    )
    lines = [head, "-" * len(head)]
    for name, run in runs.items():
        h = run.history
        lines.append(
            f"{name:<20} {h.n_epochs:>6d} {min(h.val_loss):>13.4f} {run.test_accuracy:>8.3f} "
            f"{run.report.layers[0].ratio:>15.2e}  {_verdict(run.report)}"
        )
    return "\n".join(lines)


def _verdict(report: Any) -> str:
    parts = []
    for kind in ("vanishing", "exploding", "dead", "saturated"):
        layers = getattr(report, kind)
        if layers:
            parts.append(f"{kind} in layers {_ranges(layers)}")
    return "; ".join(parts) if parts else "healthy"


def _ranges(idx: Sequence[int]) -> str:
    """Runs of consecutive indices: [0, 1, 2, 5] -> "0-2,5"."""
    spans: list[list[int]] = []
    for i in sorted(idx):
        if spans and i == spans[-1][1] + 1:
            spans[-1][1] = i
        else:
            spans.append([i, i])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)


def _plots(
    fb: Any,
    histories: dict[str, Any],
    make: MakeNet,
    X: np.ndarray,
    y: np.ndarray,
    args: argparse.Namespace,
) -> list[str]:
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
    figures = {"grad_norms_compare.png": plot.compare_grad_norms(histories)}
    for i, (name, h) in enumerate(histories.items()):
        figures[f"run{i}_loss.png"] = plot.loss_curves(h)
        figures[f"run{i}_loss.png"].suptitle(name)
        figures[f"run{i}_grad_heatmap.png"] = plot.grad_norm_heatmap(h)
    finder = fb.lr_find(
        make("relu", "he_normal"), X, y, start_lr=1e-5, end_lr=10.0, num_steps=100, seed=args.seed
    )
    figures["lr_find.png"] = plot.lr_find_curve(finder)
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


def _load_table(path: str, target: str) -> tuple[np.ndarray, np.ndarray]:
    """X and y from a CSV (header row; ``target`` names the label column, default the last)
    or an NPZ file (arrays ``X`` and ``y``)."""
    if path.endswith(".npz"):
        with np.load(path) as data:
            if "X" not in data or "y" not in data:
                raise SystemExit(f"fastbp train: {path} must hold arrays named 'X' and 'y'")
            return np.asarray(data["X"]), np.asarray(data["y"])
    with open(path) as f:
        header = f.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    column = (
        len(header) - 1
        if target is None
        else (header.index(target) if target in header else int(target))
    )
    return np.delete(table, column, axis=1), table[:, column]


def train(args: argparse.Namespace) -> int:
    import fastbp as fb

    X, y = _load_table(args.data, args.target)
    classify = args.loss == "cross_entropy" or (
        args.loss == "auto" and np.all(y == np.round(y)) and len(np.unique(y)) <= 100
    )
    if classify:
        classes, y = np.unique(y, return_inverse=True)
        n_out, loss = len(classes), "cross_entropy"
    else:
        y, n_out, loss = y.reshape(len(y), -1), (y.reshape(len(y), -1)).shape[1], "mse"
    if args.standardize:
        X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    sp = fb.split(X, y, val=args.val, test=args.test, stratify=classify or None, seed=args.seed)
    hidden = [int(h) for h in args.hidden.split(",") if h]
    net = fb.MLP(
        [X.shape[1], *hidden, n_out],
        activation=args.activation,
        loss=loss,
        init=args.init,
        seed=args.seed,
    )
    opt_cls = getattr(fb, OPTIMIZERS[args.optimizer])
    opt = opt_cls(args.lr, momentum=0.9) if args.optimizer == "momentum" else opt_cls(args.lr)
    trainer = fb.Trainer(
        net,
        opt,
        batch_size=args.batch_size,
        epochs=args.epochs,
        early_stopping=fb.EarlyStopping("val_loss", patience=args.patience),
        clip_norm=args.clip_norm,
        seed=args.seed,
    )
    history = trainer.fit(*sp.train, validation=sp.val)
    print(
        f"{net}\n{history.n_epochs} epochs, best epoch {history.best_epoch}, "
        f"best validation loss {min(history.val_loss):.5g}"
    )
    print(fb.diagnose(history))
    if len(sp.test[1]):
        test = trainer.evaluate(*sp.test)
        print("test:", ", ".join(f"{k} {v:.4f}" for k, v in test.items()))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        history.to_json(os.path.join(args.out, "history.json"))
        try:
            from fastbp import plot

            plot.loss_curves(history).savefig(os.path.join(args.out, "loss.png"), dpi=110)
            plot.grad_norm_heatmap(history).savefig(
                os.path.join(args.out, "grad_norms.png"), dpi=110
            )
        except ImportError:
            pass
        print(f"history and plots written to {args.out}/")
    return 0


def lab(args: argparse.Namespace) -> int:
    from fastbp import lab as labs

    names = labs.list()
    width = max(map(len, names))
    listing = "\n".join(f"{name:<{width}}  {text}" for name, text in names.items())
    if args.list:
        print(listing)
        return 0
    if args.name not in names:
        problem = "name a lab" if args.name is None else f"unknown lab {args.name!r}"
        print(f"fastbp lab: {problem}; the labs are:\n{listing}", file=sys.stderr)
        return 2
    result = labs.run(args.name, seed=args.seed, quick=args.quick)
    print(result)
    if not args.no_plots:
        out = args.out or os.path.join("fastbp-lab", args.name)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastbp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="vanishing gradients and their remedies, on embedded data")
    p.add_argument("--out", default="fastbp-demo", help="folder for the PNG plots")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--depth", type=int, default=6, help="hidden layers")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patience", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plots", action="store_true", help="print the tables only")
    p.set_defaults(func=demo)
    p = sub.add_parser("train", help="train on a CSV or NPZ file and diagnose the gradients")
    p.add_argument("data", help="CSV with a header row, or NPZ with arrays X and y")
    p.add_argument("--target", default=None, help="label column (name or index; default last)")
    p.add_argument("--loss", default="auto", choices=["auto", "cross_entropy", "mse"])
    p.add_argument("--hidden", default="64,64", help="hidden layer widths, comma-separated")
    p.add_argument("--activation", default="relu")
    p.add_argument("--init", default="auto")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--clip-norm", type=float, default=None)
    p.add_argument("--val", type=float, default=0.15)
    p.add_argument("--test", type=float, default=0.15)
    p.add_argument("--no-standardize", dest="standardize", action="store_false")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for history.json and plots")
    p.set_defaults(func=train)
    p = sub.add_parser("lab", help="classic results reproduced: fastbp lab --list, fastbp lab NAME")
    p.add_argument("name", nargs="?", help="the lab to run (fastbp lab --list names them)")
    p.add_argument("--list", action="store_true", help="list the labs and what each shows")
    p.add_argument("--out", default=None, help="folder for the plots (default fastbp-lab/NAME)")
    p.add_argument("--seed", type=int, default=0, help="first seed of the lab's runs")
    p.add_argument("--quick", action="store_true", help="reduced sizes: seconds, not a minute")
    p.add_argument("--no-plots", action="store_true", help="print the report only")
    p.set_defaults(func=lab)
    p = sub.add_parser("info", help="how fastbp was built (compiler, OpenMP, BLAS, SIMD)")
    p.set_defaults(func=info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
