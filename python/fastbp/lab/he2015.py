"""Signal scale through 30 ReLU layers: weight variance 1/fan_in against 2/fan_in.

Reference: Kaiming He, Xiangyu Zhang, Shaoqing Ren and Jian Sun (2015), "Delving Deep into
Rectifiers: Surpassing Human-Level Performance on ImageNet Classification", ICCV 2015.

The paper's claims tested here:

- Forward pass (their Section 2.2): for a ReLU layer y_l = W_l x_l + b_l with x_l = relu(y_{l-1}),
  Var[y_l] = n_l Var[w_l] Var[y_{l-1}] / 2. With Var[w] = 1/n_l (the "Xavier" scaling) every
  layer halves the variance, so after L layers the signal is scaled by about 2^-L; with
  Var[w] = 2/n_l (theirs) it keeps its scale at any depth.
- Training (their Figure 3): a 30-layer network initialised with 2/n_l converges, while the same
  network with 1/n_l stalls and does not learn.

Settings (defaults; ``quick=True`` in brackets):

- data: ``fastbp.datasets.load_demo()`` (3000 rows, 20 standardised features, 4 classes; the
  paper used ImageNet and convolutional layers);
- forward pass: 30 ReLU hidden layers of 256 [128] units, biases 0, float64 pass over 1000 rows;
  the second moment E[y_l^2] of every layer's pre-activations (its variance, the weights having
  zero mean), the geometric mean over the seeds;
- initialisations: ``init="lecun_normal"`` (N(0, 1/fan_in)) and ``init="he_normal"``
  (N(0, 2/fan_in)), every layer;
- training: 30 ReLU hidden layers of 64 [32] units, softmax output, cross-entropy; SGD with
  momentum 0.9 as in the paper, learning rate 0.01, mini-batches of 32, 20 [12] epochs,
  ``n_seeds`` = 3 [1] seeds per initialisation.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .. import datasets
from ..network import MLP
from ..optim import SGD
from ..train import NonFiniteWarning, Trainer
from ._base import (
    Check,
    LabResult,
    Stopwatch,
    best,
    caption,
    diagnosis,
    figure,
    hidden_forward,
    resolve_options,
    save,
    seeds,
    table,
)

NAME = "he2015"
DESCRIPTION = (
    "He et al. (2015): 30 ReLU layers, weight variance 1/fan_in vs 2/fan_in: signal and training"
)
REFERENCE = (
    "He, Zhang, Ren & Sun (2015), Delving Deep into Rectifiers: Surpassing Human-Level "
    "Performance on ImageNet Classification, ICCV"
)
DEFAULTS = dict(
    n_seeds=3,
    depth=30,
    forward_width=256,
    forward_samples=1000,
    width=64,
    lr=0.01,
    momentum=0.9,
    batch_size=32,
    epochs=20,
)
QUICK = dict(n_seeds=1, forward_width=128, width=32, epochs=12)

INITS = {"1/fan_in": "lecun_normal", "2/fan_in": "he_normal"}
GAIN = {"1/fan_in": 0.5, "2/fan_in": 1.0}  # n Var[w] / 2: the theory's factor per layer
TRAINS = 0.6  # best training accuracy that counts as "trains" (chance is 0.25)
STALLS = 0.1  # above chance by at most this much counts as "stalls"


def _second_moments(init: str, X: np.ndarray, opt: dict[str, Any]) -> np.ndarray:
    """E[y_l^2] of each hidden layer's pre-activations, geometric mean over the seeds; shape
    (depth,)."""
    sizes = [X.shape[1]] + [opt["forward_width"]] * opt["depth"] + [4]
    logs = []
    for seed in seeds(opt):
        net = MLP(sizes, activation="relu", loss="cross_entropy", init=init, seed=seed)
        pre, _ = hidden_forward(net, X)
        logs.append([np.log(np.mean(z**2)) for z in pre])
    return np.exp(np.mean(logs, axis=0))


def _train(
    init: str, X: np.ndarray, y: np.ndarray, opt: dict[str, Any], seed: int
) -> dict[str, Any]:
    sizes = [X.shape[1]] + [opt["width"]] * opt["depth"] + [int(y.max()) + 1]
    net = MLP(sizes, activation="relu", loss="cross_entropy", init=init, seed=seed)
    trainer = Trainer(
        net,
        SGD(opt["lr"], momentum=opt["momentum"]),
        batch_size=opt["batch_size"],
        epochs=opt["epochs"],
        seed=seed,
        progress=False,
    )
    with warnings.catch_warnings():
        # a run that diverges stops and is reported as such; the warning adds nothing here
        warnings.simplefilter("ignore", NonFiniteWarning)
        history = trainer.fit(X, y)
    return {"history": history, "best_accuracy": best(history.train_accuracy)}


def run(**options: Any) -> LabResult:
    """Run the lab; see the module docstring for the settings and :func:`fastbp.lab.run`."""
    clock = Stopwatch()
    opt = resolve_options(NAME, DEFAULTS, QUICK, options, minimum={"depth": 2})
    X, y = datasets.load_demo()
    depth = opt["depth"]
    moments = {
        name: _second_moments(init, X[: opt["forward_samples"]], opt)
        for name, init in INITS.items()
    }
    factor = {name: float((m[-1] / m[0]) ** (1.0 / (depth - 1))) for name, m in moments.items()}
    runs = {
        name: {s: _train(init, X, y, opt, s) for s in seeds(opt)} for name, init in INITS.items()
    }
    chance = 1.0 / (int(y.max()) + 1)

    forward_small, forward_he = moments["1/fan_in"], moments["2/fan_in"]
    theory_small = 0.5 ** (depth - 1)
    forward = Check(
        claim="in the forward pass, weight variance 1/fan_in halves the variance of the "
        f"signal at every ReLU layer, so that from layer 1 to layer {depth} it falls by "
        f"about 2^-{depth - 1}, "
        "while 2/fan_in keeps it constant",
        criterion="per-layer factor of E[y^2] (geometric mean over the layers) within "
        f"0.4-0.6 for 1/fan_in and 0.85-1.15 for 2/fan_in; from layer 1 to {depth}: within a "
        "factor 10 of the theory for 1/fan_in, within 0.1-10 for 2/fan_in",
        measured=f"per-layer factor {factor['1/fan_in']:.3f} (1/fan_in), "
        f"{factor['2/fan_in']:.3f} (2/fan_in); layer {depth} / layer 1: "
        f"{forward_small[-1] / forward_small[0]:.2e} (theory 2^-{depth - 1} = "
        f"{theory_small:.2e}) and {forward_he[-1] / forward_he[0]:.3f} (theory 1)",
        passed=0.4 <= factor["1/fan_in"] <= 0.6
        and 0.85 <= factor["2/fan_in"] <= 1.15
        and 0.1 <= forward_small[-1] / forward_small[0] / theory_small <= 10
        and 0.1 <= forward_he[-1] / forward_he[0] <= 10,
    )
    best_acc = {name: [r["best_accuracy"] for r in runs[name].values()] for name in INITS}
    training = Check(
        claim=f"the {depth}-layer network trains with 2/fan_in and stalls with 1/fan_in",
        criterion=f"in every seed the best training accuracy reaches {TRAINS} with 2/fan_in "
        f"and stays within {STALLS} of chance ({chance:.2f}) with 1/fan_in",
        measured="best training accuracy "
        + "; ".join(f"{name}: {', '.join(f'{a:.2f}' for a in best_acc[name])}" for name in INITS),
        passed=all(a >= TRAINS for a in best_acc["2/fan_in"])
        and all(a <= chance + STALLS for a in best_acc["1/fan_in"]),
    )
    values = {
        "second_moments": moments,
        "per_layer_factor": factor,
        "runs": runs,
    }
    setup = (
        f"load_demo ({len(y)} rows, {X.shape[1]} features, 4 classes); forward pass: {depth} "
        f"ReLU layers x {opt['forward_width']} units on {opt['forward_samples']} rows; "
        f"training: {depth} ReLU layers x {opt['width']} units, softmax output, SGD lr "
        f"{opt['lr']:g} momentum {opt['momentum']:g}, batch {opt['batch_size']}, "
        f"{opt['epochs']} epochs; init lecun_normal (1/fan_in) vs he_normal (2/fan_in), biases "
        f"0; seeds {', '.join(map(str, seeds(opt)))}."
    )
    return LabResult(
        name=NAME,
        reference=REFERENCE,
        claim="with ReLU, Var[y_l] = (n_l Var[w_l] / 2) Var[y_{l-1}]: weight variance 1/n "
        "halves the signal at every layer (2^-L after L layers), 2/n keeps it; a 30-layer "
        "network initialised with 2/n converges where 1/n ('Xavier') stalls completely.",
        setup=setup,
        table=_tables(moments, runs, opt),
        checks=[forward, training],
        values=values,
        options=opt,
        seconds=clock(),
        _plotter=_plot,
    )


def _tables(moments: dict[str, Any], runs: dict[str, Any], opt: dict[str, Any]) -> str:
    depth = opt["depth"]
    shown = sorted({1, 2, 3, 5, 10, 20, depth} & set(range(1, depth + 1)))
    rows = []
    for layer in shown:
        row: list[Any] = [layer]
        for name in INITS:
            m = moments[name]
            row += [float(m[layer - 1]), float(m[0] * GAIN[name] ** (layer - 1))]
        rows.append(row)
    header = ["layer", "E[y^2] 1/fan_in", "theory", "E[y^2] 2/fan_in", "theory"]
    train_rows = []
    for name in INITS:
        for s, r in runs[name].items():
            h = r["history"]
            train_rows.append(
                [
                    name,
                    s,
                    float(h.train_loss[0]) if h.n_epochs else float("nan"),
                    float(h.train_loss[-1]) if h.n_epochs else float("nan"),
                    r["best_accuracy"],
                    float(h.grad_norms[0, 0]) if h.n_epochs else float("nan"),
                    h.stop_reason or "-",
                    diagnosis(h),
                ]
            )
    return "\n".join(
        [
            caption(
                "Second moment of the pre-activations, layer by layer (theory: layer 1's "
                "value times (n Var[w] / 2)^(l - 1)):"
            ),
            table(header, rows),
            "",
            caption(
                f"Training the {depth}-layer networks (losses and accuracy on the training "
                "rows; layer-0 grad: first layer's mean weight-gradient norm in epoch 0; "
                "fb.diagnose: flagged weight layers, 0-based):"
            ),
            table(
                [
                    "init",
                    "seed",
                    "first loss",
                    "last loss",
                    "best acc",
                    "layer-0 grad",
                    "stopped",
                    "fb.diagnose",
                ],
                train_rows,
            ),
        ]
    )


def _plot(result: LabResult, out: Path) -> list[Path]:
    from .. import plot

    depth = result.options["depth"]
    layers = np.arange(1, depth + 1)
    fig, (ax,) = figure(1, width=5.5)
    for name, color in zip(INITS, ("C3", "C0")):
        m = result.values["second_moments"][name]
        ax.plot(layers, m, "o-", color=color, markersize=3, label=f"Var[w] = {name}")
        ax.plot(layers, m[0] * GAIN[name] ** (layers - 1), ":", color=color, label="theory")
    ax.set_yscale("log")
    ax.set_xlabel("ReLU layer")
    ax.set_ylabel("E[y^2] of the pre-activations")
    ax.legend()
    paths = [save(fig, out, "preactivation_variance_per_layer.png")]

    fig, (ax,) = figure(1)
    for name, style in zip(INITS, ("--", "-")):
        for s, r in result.values["runs"][name].items():
            ax.plot(r["history"].train_loss, style, label=f"{name}, seed {s}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.legend(fontsize="small")
    paths.append(save(fig, out, "train_loss_by_epoch.png"))

    first = result.options["seed"]
    histories = {
        f"Var[w] = {name}": result.values["runs"][name][first]["history"]
        for name in INITS
        if result.values["runs"][name][first]["history"].n_epochs
    }
    if histories:
        paths.append(save(plot.compare_grad_norms(histories), out, "grad_norms_per_layer.png"))
    return paths
