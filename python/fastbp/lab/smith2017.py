"""The learning-rate range test against a fixed default rate.

Reference: Leslie N. Smith (2017), "Cyclical Learning Rates for Training Neural Networks",
WACV 2017 (arXiv:1506.01186).

The paper's claim tested here: one short run with a rising learning rate (the "LR range test")
shows which rates make the network learn, so that a usable rate is found without a grid
search. (The paper uses the test to set the bounds of its cyclical schedule, and its "far fewer
iterations" result is the cyclical schedule's, against tuned fixed rates; neither is tested
here. Here the rate the test picks is used as a fixed rate, against an untuned default, which
is a weak test: most rates well above the default would pass it too. A comparison with a grid
of fixed rates would be the stronger one.)

fastbp's :func:`~fastbp.lr_find` runs the test the way later practice does: the rate rises
exponentially over 100 mini-batches (Smith raised it linearly over a few epochs) and the
suggestion is a tenth of the rate at the lowest point of the smoothed loss (past the moving
average's first steps). The lab uses that suggestion as it comes, so it also tests the
suggestion rule: a pick at the noisy start of the curve, where the rate is too small to move
the loss, shows as a run that never reaches the target.

Settings (defaults; ``quick=True`` in brackets):

- data: ``fastbp.datasets.load_demo()``, split into 80% training and 20% validation rows
  (stratified, seed 0); the paper used CIFAR-10 and ImageNet;
- network: 2 ReLU hidden layers of 64 units, He initialisation, softmax output, cross-entropy;
- range test: ``lr_find`` from 1e-5 to 10 over 100 mini-batches of 32 on the training rows;
- training: SGD at the fixed default rate 0.01 and at the range test's suggestion, from the same
  weights, mini-batches of 32, until the validation accuracy reaches ``target`` = 0.8 (a
  well-tuned network reaches about 0.85-0.9 here) or 60 [30] epochs have passed;
  ``n_seeds`` = 10 [2] seeds;
- optimizers: plain SGD (decides the verdict), and SGD with momentum 0.9, the optimizer of
  Smith's experiments, reported beside it (with momentum the default 0.01 is effectively ten
  times larger and already a reasonable rate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import datasets
from ..data import Split, split
from ..lr import lr_find
from ..network import MLP
from ..optim import SGD
from ..train import Trainer
from ._base import Check, LabResult, Stopwatch, best, figure, resolve_options, save, seeds, table

NAME = "smith2017"
DESCRIPTION = "Smith (2017): the learning-rate range test's rate against a fixed default rate"
REFERENCE = "Smith (2017), Cyclical Learning Rates for Training Neural Networks, WACV"
DEFAULTS = dict(
    n_seeds=10,
    depth=2,
    width=64,
    default_lr=0.01,
    momentum=0.9,
    start_lr=1e-5,
    end_lr=10.0,
    num_steps=100,
    batch_size=32,
    target=0.8,
    epochs=60,
)
QUICK = dict(n_seeds=2, epochs=30)


def _epochs_to_target(
    net: MLP, lr: float, momentum: float, sp: Split, opt: dict[str, Any], seed: int
) -> dict[str, Any]:
    trainer = Trainer(
        net.copy(),
        SGD(lr, momentum=momentum),
        batch_size=opt["batch_size"],
        epochs=opt["epochs"],
        seed=seed,
        callbacks=[lambda epoch, logs: logs["val_accuracy"] >= opt["target"]],
        progress=False,
    )
    X_train, y_train = sp.train
    history = trainer.fit(X_train, y_train, validation=sp.val)
    accuracy = np.asarray(history.val_accuracy)
    reached = np.flatnonzero(accuracy >= opt["target"])
    return {
        "lr": lr,
        "epochs": int(reached[0]) + 1 if len(reached) else None,
        "best_val_accuracy": best(accuracy),
        "history": history,
    }


def _arm(momentum: float, sp: Split, opt: dict[str, Any], seed: int) -> dict[str, Any]:
    """Range test, then a run at the default rate and one at the suggestion."""
    sizes = [sp.train[0].shape[1]] + [opt["width"]] * opt["depth"] + [4]
    net = MLP(sizes, activation="relu", loss="cross_entropy", seed=seed)
    X_train, y_train = sp.train
    finder = lr_find(
        net,
        X_train,
        y_train,
        start_lr=opt["start_lr"],
        end_lr=opt["end_lr"],
        num_steps=opt["num_steps"],
        optimizer=SGD(opt["start_lr"], momentum=momentum),
        batch_size=opt["batch_size"],
        seed=seed,
    )
    return {
        "finder": finder,
        "default": _epochs_to_target(net, opt["default_lr"], momentum, sp, opt, seed),
        "range test": _epochs_to_target(net, finder.suggestion, momentum, sp, opt, seed),
    }


def _misses(runs: dict[int, dict[str, Any]], arm: str) -> str:
    """The seeds (and rates) whose ``arm`` run never reached the target: "; missed: seed 7 at
    1e-05", or "" when none."""
    missed = [f"seed {s} at {r[arm]['lr']:.3g}" for s, r in runs.items() if not r[arm]["epochs"]]
    return "; missed: " + ", ".join(missed) if missed else ""


def _mean_epochs(runs: list[dict[str, Any]], budget: int) -> float:
    """Mean epochs to the target, a run that never reached it counted as the whole budget."""
    return float(np.mean([budget if r["epochs"] is None else r["epochs"] for r in runs]))


def run(**options: Any) -> LabResult:
    """Run the lab; see the module docstring for the settings and :func:`fastbp.lab.run`."""
    clock = Stopwatch()
    opt = resolve_options(NAME, DEFAULTS, QUICK, options)
    if opt["target"] > 1:
        raise ValueError(f"target is an accuracy and must be <= 1, got {opt['target']}")
    if opt["momentum"] >= 1:
        raise ValueError(f"momentum must be < 1, got {opt['momentum']}")
    X, y = datasets.load_demo()
    sp = split(X, y, val=0.2, test=0.0, stratify=True, seed=0)
    settings = {"SGD": 0.0, f"SGD momentum {opt['momentum']:g}": opt["momentum"]}
    runs = {name: {s: _arm(m, sp, opt, s) for s in seeds(opt)} for name, m in settings.items()}
    budget = opt["epochs"]
    checks = []
    summary = {}
    for i, name in enumerate(settings):
        default = [r["default"] for r in runs[name].values()]
        found = [r["range test"] for r in runs[name].values()]
        mean_default, mean_found = _mean_epochs(default, budget), _mean_epochs(found, budget)
        reached = [sum(r["epochs"] is not None for r in group) for group in (default, found)]
        summary[name] = {
            "mean_epochs_default": mean_default,
            "mean_epochs_range_test": mean_found,
            "reached_default": reached[0],
            "reached_range_test": reached[1],
        }
        claim = (
            f"with {name}, the rate the range test picks reaches {opt['target']:g} validation "
            f"accuracy in fewer epochs than the default rate {opt['default_lr']:g}"
        )
        if i:
            claim = "also " + claim + " (Smith's optimizer; the default is a good rate here)"
        checks.append(
            Check(
                claim=claim,
                criterion="mean epochs to the target over the seeds (a run that never gets "
                f"there counts as {budget}) lower with the picked rate, and the picked rate "
                "reaching the target in at least as many seeds",
                measured=f"mean epochs {mean_found:.1f} with the picked rate (reached in "
                f"{reached[1]} of {len(found)}{_misses(runs[name], 'range test')}) against "
                f"{mean_default:.1f} with the default (reached in {reached[0]} of "
                f"{len(default)}{_misses(runs[name], 'default')})",
                passed=mean_found < mean_default and reached[1] >= reached[0],
                decides=i == 0,
            )
        )
    rows = []
    for name in settings:
        for s, r in runs[name].items():
            for arm in ("default", "range test"):
                run_ = r[arm]
                rows.append(
                    [
                        name,
                        s,
                        arm,
                        run_["lr"],
                        "-" if run_["epochs"] is None else run_["epochs"],
                        run_["best_val_accuracy"],
                    ]
                )
    text = "\n".join(
        [
            f"Epochs to {opt['target']:g} validation accuracy ('-': not within {budget}):",
            table(["optimizer", "seed", "rate", "lr", "epochs", "best val acc"], rows),
        ]
    )
    setup = (
        f"load_demo split 80/20 into {len(sp.train[1])} training and {len(sp.val[1])} "
        f"validation rows; {opt['depth']} ReLU hidden layers x {opt['width']} units, He init; "
        f"lr_find from {opt['start_lr']:g} to {opt['end_lr']:g} over {opt['num_steps']} batches "
        f"of {opt['batch_size']}; then SGD at {opt['default_lr']:g} vs the suggestion, batch "
        f"{opt['batch_size']}, up to {budget} epochs; plain SGD and momentum "
        f"{opt['momentum']:g}; seeds {', '.join(map(str, seeds(opt)))}."
    )
    return LabResult(
        name=NAME,
        reference=REFERENCE,
        claim="a short run with a rising learning rate (the LR range test) shows the range of "
        "rates at which the network learns, finding a usable rate without a grid search (the "
        "paper then sets a cyclical schedule's bounds from it; its fewer-iterations result is "
        "that schedule's, not tested here): trained with the rate it picks, the network "
        "reaches a given accuracy sooner than with an untuned default rate.",
        setup=setup,
        table=text,
        checks=checks,
        values={"runs": runs, "summary": summary},
        options=opt,
        seconds=clock(),
        _plotter=_plot,
    )


def _plot(result: LabResult, out: Path) -> list[Path]:
    from .. import plot

    first = result.options["seed"]
    names = list(result.values["runs"])
    paths = []
    fig, axes = figure(len(names), width=5.0)
    for ax, name in zip(axes, names):
        plot.lr_find_curve(result.values["runs"][name][first]["finder"], ax=ax)
        ax.set_title(f"{name}, seed {first}")
    paths.append(save(fig, out, "lr_range_test.png"))

    fig, axes = figure(len(names), width=5.0)
    for ax, name in zip(axes, names):
        for arm, style, color in (("default", "--", "C0"), ("range test", "-", "C1")):
            for i, r in enumerate(result.values["runs"][name].values()):
                acc = r[arm]["history"].val_accuracy
                label = f"{arm} rate" if i == 0 else None  # one legend entry per arm
                ax.plot(np.arange(1, len(acc) + 1), acc, style, color=color, label=label)
        ax.axhline(result.options["target"], color="0.5", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_title(f"{name} (one line per seed)")
        ax.set_xlabel("epoch")
        ax.legend()
    axes[0].set_ylabel("validation accuracy")
    paths.append(save(fig, out, "val_accuracy_default_vs_range_test.png"))
    return paths
