"""Annealed gradient noise trains a deep, poorly initialised ReLU network with plain SGD.

Reference: Arvind Neelakantan, Luke Vilnis, Quoc V. Le, Ilya Sutskever, Lukasz Kaiser, Karol
Kurach and James Martens (2015), "Adding Gradient Noise Improves Learning for Very Deep
Networks", arXiv:1511.06807 (ICLR 2016 workshop).

The paper's claim tested here: adding Gaussian noise of variance eta / (1 + t)^gamma to the
gradient at step t (gamma = 0.55) lets a fully-connected network of 20 hidden layers of 50 ReLU
units, initialised with the poor "simple init" N(0, 0.1^2) and trained by plain SGD without
momentum, train where the same network without noise fails (their MNIST experiments).

Why the init is poor: a ReLU layer multiplies the signal's variance by n Var[w] / 2 =
50 * 0.01 / 2 = 1/4, so twenty layers shrink it by 4^-20 ~ 1e-12 and the gradients of all but
the last layers vanish with it. The noise, added to the gradient and so scaled by the learning
rate, makes the weights random-walk away from that scale.

Settings (defaults; ``quick=True`` in brackets):

- data: ``fastbp.datasets.load_demo()`` (3000 rows, 20 standardised features, 4 classes; the
  paper used MNIST);
- network: 20 [14] ReLU hidden layers of 50 units, softmax output, cross-entropy; weights
  N(0, 0.1^2) (``init=("normal", 0.1)``), biases 0; float32;
- optimizer: plain SGD, learning rate 0.1 (one of the paper's two), mini-batches of 32;
  noise ``fb.GradientNoise(eta=0.01, gamma=0.55)`` (the paper's gamma; eta = 0.01 is the
  smallest of the values it tried, 0.01, 0.3 and 1.0);
- ``n_seeds`` = 5 [1] seeds (with 3, the noisy runs' 2 of 3 was one seed from a failed
  majority), each trained with and without noise from the same weights, for at
  most 110 [50] epochs (~10,000 [~4,700] updates); a run counts as trained once its training
  accuracy (chance 0.25) reaches ``target`` = 0.6, and stops there.

The noise costs time: drawing the 50,000 Gaussian numbers of a step takes several times as long
as the forward and backward pass of this small network, so the noisy runs dominate the lab.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import datasets
from ..network import MLP
from ..optim import SGD, GradientNoise
from ..train import Trainer
from ._base import (
    Check,
    LabResult,
    Stopwatch,
    best,
    caption,
    diagnosis,
    figure,
    resolve_options,
    save,
    seeds,
    table,
)

NAME = "neelakantan2015"
DESCRIPTION = (
    "Neelakantan et al. (2015): gradient noise trains a 20-layer ReLU net from a poor init"
)
REFERENCE = (
    "Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens (2015), Adding Gradient Noise "
    "Improves Learning for Very Deep Networks, arXiv:1511.06807"
)
DEFAULTS = dict(
    n_seeds=5,
    depth=20,
    width=50,
    init_std=0.1,
    lr=0.1,
    eta=0.01,
    gamma=0.55,
    batch_size=32,
    epochs=110,
    target=0.6,
)
QUICK = dict(n_seeds=1, depth=14, epochs=50)
ARMS = ("no noise", "noise")


def _train(
    noisy: bool, X: np.ndarray, y: np.ndarray, opt: dict[str, Any], seed: int
) -> dict[str, Any]:
    sizes = [X.shape[1]] + [opt["width"]] * opt["depth"] + [int(y.max()) + 1]
    net = MLP(
        sizes,
        activation="relu",
        loss="cross_entropy",
        init=("normal", opt["init_std"]),
        seed=seed,
    )
    noise = GradientNoise(eta=opt["eta"], gamma=opt["gamma"], seed=seed) if noisy else None
    trainer = Trainer(
        net,
        SGD(opt["lr"]),
        batch_size=opt["batch_size"],
        epochs=opt["epochs"],
        grad_noise=noise,
        seed=seed,
        callbacks=[lambda epoch, logs: logs["train_accuracy"] >= opt["target"]],
        progress=False,
    )
    history = trainer.fit(X, y)
    accuracy = np.asarray(history.train_accuracy)
    reached = np.flatnonzero(accuracy >= opt["target"])
    return {
        "history": history,
        "trained_at": int(reached[0]) + 1 if len(reached) else None,
        "best_accuracy": best(accuracy),
        "updates": history.n_epochs * -(-len(y) // opt["batch_size"]),
    }


def run(**options: Any) -> LabResult:
    """Run the lab; see the module docstring for the settings and :func:`fastbp.lab.run`."""
    clock = Stopwatch()
    opt = resolve_options(NAME, DEFAULTS, QUICK, options)
    if opt["target"] > 1:
        raise ValueError(f"target is a training accuracy and must be <= 1, got {opt['target']}")
    X, y = datasets.load_demo()
    runs = {arm: {s: _train(arm == "noise", X, y, opt, s) for s in seeds(opt)} for arm in ARMS}
    trained = {arm: sum(r["trained_at"] is not None for r in runs[arm].values()) for arm in ARMS}
    n = opt["n_seeds"]
    check = Check(
        claim=f"with annealed gradient noise plain SGD trains the {opt['depth']}-layer network "
        f"from N(0, {opt['init_std']:g}^2) weights, which without noise it does not",
        criterion=f"runs reaching {opt['target']:g} training accuracy within {opt['epochs']} "
        "epochs: at least half of the seeds with noise, and more than without noise",
        measured=f"trained with noise in {trained['noise']} of {n} seeds, without noise in "
        f"{trained['no noise']} of {n}",
        passed=2 * trained["noise"] >= n and trained["noise"] > trained["no noise"],
    )
    rows = []
    for arm in ARMS:
        for s, r in runs[arm].items():
            h = r["history"]
            rows.append(
                [
                    arm,
                    s,
                    "-" if r["trained_at"] is None else r["trained_at"],
                    r["updates"],
                    r["best_accuracy"],
                    float(h.grad_norms[0, 0]),
                    float(h.grad_norms[0, -1]),
                    diagnosis(h),
                ]
            )
    text = "\n".join(
        [
            caption(
                f"Runs (training stops once the training accuracy reaches {opt['target']:g}; "
                "grads: mean weight-gradient norms in epoch 0; fb.diagnose: flagged weight "
                "layers, 0-based):"
            ),
            table(
                [
                    "run",
                    "seed",
                    "trained at",
                    "updates",
                    "best acc",
                    "layer-0 grad",
                    "last-layer grad",
                    "fb.diagnose",
                ],
                rows,
            ),
        ]
    )
    setup = (
        f"load_demo ({len(y)} rows, {X.shape[1]} features, 4 classes); {opt['depth']} ReLU "
        f"hidden layers x {opt['width']} units, softmax output; init N(0, "
        f"{opt['init_std']:g}^2); plain SGD lr {opt['lr']:g}, batch {opt['batch_size']}, up to "
        f"{opt['epochs']} epochs; GradientNoise(eta={opt['eta']:g}, gamma={opt['gamma']:g}) vs "
        f"none; seeds {', '.join(map(str, seeds(opt)))}."
    )
    return LabResult(
        name=NAME,
        reference=REFERENCE,
        claim="gradient noise of variance eta / (1 + t)^0.55 alone lets a fully-connected "
        "network of 20 hidden layers of 50 ReLU units be trained with plain SGD from a poor "
        "initialisation (N(0, 0.1^2)), which fails without noise.",
        setup=setup,
        table=text,
        checks=[check],
        values={"runs": runs, "trained": trained},
        options=opt,
        seconds=clock(),
        _plotter=_plot,
    )


def _plot(result: LabResult, out: Path) -> list[Path]:
    from .. import plot

    runs = result.values["runs"]
    fig, (ax,) = figure(1, width=5.5)
    for arm, style in zip(ARMS, ("--", "-")):
        for s, r in runs[arm].items():
            ax.plot(
                np.arange(1, r["history"].n_epochs + 1),
                r["history"].train_accuracy,
                style,
                label=f"{arm}, seed {s}",
            )
    ax.axhline(result.options["target"], color="0.5", linestyle=":", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training accuracy")
    ax.legend(fontsize="small")
    paths = [save(fig, out, "train_accuracy_noise_vs_none.png")]
    first = result.options["seed"]
    histories = {arm: runs[arm][first]["history"] for arm in ARMS}
    paths.append(save(plot.compare_grad_norms(histories), out, "grad_norms_per_layer.png"))
    return paths
