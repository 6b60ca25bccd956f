"""Gradient-norm clipping against exploding gradients.

Reference: Razvan Pascanu, Tomas Mikolov and Yoshua Bengio (2013), "On the difficulty of
training recurrent neural networks", ICML 2013, PMLR 28(3):1310-1318.

The paper's claim tested here: when gradients explode, a step along the gradient can throw the
parameters far away (the "cliffs" of the loss surface) and training blows up; rescaling the
gradient whenever its norm exceeds a threshold (g <- threshold * g / ||g||, their Algorithm 1)
prevents that, and training proceeds at the learning rate that diverged without it.

The paper studies recurrent networks, where the same weight matrix is applied at every time
step and gradients explode when its largest singular value is large enough. fastbp has dense
feed-forward networks only, so the lab builds the feed-forward analogue: a deep ReLU network
whose every layer multiplies the variance of the signal and of the backpropagated gradient by
two (weights N(0, 4/fan_in), twice He's variance), so that over ten layers the gradients grow
by a factor of about 2^10 in variance.

Settings (defaults; ``quick=True`` in brackets):

- data: ``fastbp.datasets.load_demo()`` (3000 rows, 20 standardised features, 4 classes; the
  paper used synthetic sequence tasks, music and text);
- network: 10 ReLU hidden layers of 32 units, softmax output, cross-entropy; weights
  N(0, 4/fan_in) in every layer (written into ``net.weights``), biases 0; float32;
- optimizer: plain SGD, learning rate 0.05 (one at which the unclipped runs diverge: the
  premise of the claim), mini-batches of 32, 20 epochs, ``n_seeds`` = 6 [3] seeds, each
  trained with and without ``clip_norm=10`` from the same weights (the paper advises a
  threshold of the order of the average gradient norm). Here the norms start at 200-600 and
  stay near 6 after 20 epochs: a threshold of 1 would clip nearly every step, normalised-
  gradient SGD rather than clipping of the rare large steps, and trains less well (best
  accuracy 0.53-0.63 against 0.77-0.90 at 10 in one review's seeds);
- a run diverged when training stopped on a NaN or infinite loss or gradient
  (``History.stop_reason == "non_finite"``) or its last loss exceeds 10 times its initial one.
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
    resolve_options,
    save,
    seeds,
    table,
)

NAME = "pascanu2013"
DESCRIPTION = (
    "Pascanu et al. (2013): gradient-norm clipping prevents divergence from exploding gradients"
)
REFERENCE = (
    "Pascanu, Mikolov & Bengio (2013), On the difficulty of training recurrent neural "
    "networks, ICML"
)
DEFAULTS = dict(
    n_seeds=6,
    depth=10,
    width=32,
    weight_variance=4.0,
    lr=0.05,
    clip_norm=10.0,
    batch_size=32,
    epochs=20,
)
QUICK = dict(n_seeds=3)
BLOW_UP = 10.0  # a last loss this many times the initial one counts as diverged
LEARNED = 0.2  # a clipped run must beat chance accuracy by this much
GRAD_ROWS = 256  # rows of the one-batch gradient norm reported at initialisation


def _network(sizes: list[int], variance: float, seed: int) -> MLP:
    """ReLU network with weights N(0, variance / fan_in) in every layer, biases 0."""
    net = MLP(sizes, activation="relu", loss="cross_entropy", init="he_normal", seed=seed)
    rng = np.random.default_rng(seed)
    for W in net.weights:
        W[...] = rng.normal(0.0, np.sqrt(variance / W.shape[0]), W.shape)
    return net


def _gradient_norm(net: MLP, X: np.ndarray, y: np.ndarray) -> float:
    """Global L2 norm of the gradient on one batch (weights and biases)."""
    net.backward(X, y)
    return float(np.linalg.norm(np.asarray(net.grads, dtype=np.float64)))


def _train(
    clip: float | None, X: np.ndarray, y: np.ndarray, opt: dict[str, Any], seed: int
) -> dict[str, Any]:
    sizes = [X.shape[1]] + [opt["width"]] * opt["depth"] + [int(y.max()) + 1]
    net = _network(sizes, opt["weight_variance"], seed)
    initial_loss = net.compute_loss(X, y)
    grad_norm = _gradient_norm(net, X[:GRAD_ROWS], y[:GRAD_ROWS])
    trainer = Trainer(
        net,
        SGD(opt["lr"]),
        batch_size=opt["batch_size"],
        epochs=opt["epochs"],
        clip_norm=clip,
        seed=seed,
        progress=False,
    )
    with warnings.catch_warnings():
        # divergence is what the lab counts; the warning would only repeat it
        warnings.simplefilter("ignore", NonFiniteWarning)
        history = trainer.fit(X, y)
    last = history.train_loss[-1] if history.n_epochs else float("nan")
    non_finite = history.stop_reason == "non_finite"
    return {
        "history": history,
        "initial_loss": initial_loss,
        "initial_grad_norm": grad_norm,
        "last_loss": last,
        "diverged": bool(non_finite or last > BLOW_UP * initial_loss),
        "diverged_at": history.stopped_epoch if non_finite else None,
        "best_accuracy": best(history.train_accuracy),
    }


def run(**options: Any) -> LabResult:
    """Run the lab; see the module docstring for the settings and :func:`fastbp.lab.run`."""
    clock = Stopwatch()
    opt = resolve_options(NAME, DEFAULTS, QUICK, options)
    X, y = datasets.load_demo()
    arms = {"unclipped": None, f"clip_norm={opt['clip_norm']:g}": opt["clip_norm"]}
    runs = {arm: {s: _train(clip, X, y, opt, s) for s in seeds(opt)} for arm, clip in arms.items()}
    unclipped, clipped = (list(runs[arm].values()) for arm in arms)
    n = opt["n_seeds"]
    n_div = [sum(r["diverged"] for r in group) for group in (unclipped, clipped)]
    chance = 1.0 / (int(y.max()) + 1)
    learned = [r["best_accuracy"] >= chance + LEARNED for r in clipped]
    sizes = [X.shape[1]] + [opt["width"]] * opt["depth"] + [4]
    he_norm = _gradient_norm(_network(sizes, 2.0, opt["seed"]), X[:GRAD_ROWS], y[:GRAD_ROWS])
    check = Check(
        claim="clipping the gradient norm prevents the divergence that exploding gradients "
        "cause at this learning rate, and training proceeds",
        criterion="at least half of the unclipped runs diverge (the premise) and no clipped "
        f"run does, every clipped run reaching a training accuracy of chance + {LEARNED:g} = "
        f"{chance + LEARNED:.2f} or more",
        measured=f"diverged: unclipped {n_div[0]} of {n}, clipped {n_div[1]} of {n}; best "
        "training accuracy of the clipped runs "
        + ", ".join(f"{r['best_accuracy']:.2f}" for r in clipped),
        passed=2 * n_div[0] >= n and n_div[1] == 0 and all(learned),
    )
    rows = []
    for arm in arms:
        for s, r in runs[arm].items():
            rows.append(
                [
                    arm,
                    s,
                    r["initial_grad_norm"],
                    r["initial_loss"],
                    r["last_loss"],
                    r["best_accuracy"],
                    ("epoch " + str(r["diverged_at"]) if r["diverged_at"] is not None else "yes")
                    if r["diverged"]
                    else "no",
                    diagnosis(r["history"]),
                ]
            )
    text = "\n".join(
        [
            caption(
                f"Gradient norm at initialisation on {GRAD_ROWS} rows (global L2): "
                f"{np.median([r['initial_grad_norm'] for r in unclipped]):.3g} (median) with "
                f"Var[w] = {opt['weight_variance']:g}/fan_in, {he_norm:.3g} with He's "
                "2/fan_in."
            ),
            "",
            caption(
                "Runs (losses and accuracy on the training rows; fb.diagnose: flagged weight "
                "layers, 0-based):"
            ),
            table(
                [
                    "run",
                    "seed",
                    "grad norm",
                    "initial loss",
                    "last loss",
                    "best acc",
                    "diverged",
                    "fb.diagnose",
                ],
                rows,
            ),
        ]
    )
    setup = (
        f"load_demo ({len(y)} rows, {X.shape[1]} features, 4 classes); {opt['depth']} ReLU "
        f"hidden layers x {opt['width']} units, softmax output; weights N(0, "
        f"{opt['weight_variance']:g}/fan_in); plain SGD lr {opt['lr']:g}, batch "
        f"{opt['batch_size']}, {opt['epochs']} epochs; unclipped vs clip_norm="
        f"{opt['clip_norm']:g}; seeds {', '.join(map(str, seeds(opt)))}."
    )
    return LabResult(
        name=NAME,
        reference=REFERENCE,
        claim="exploding gradients make a gradient step overshoot (a 'cliff' in the loss "
        "surface) and training blow up; rescaling the gradient to a threshold norm whenever "
        "it is larger prevents this at learning rates where plain SGD diverges.",
        setup=setup,
        table=text,
        checks=[check],
        values={"runs": runs, "diverged": dict(zip(arms, n_div)), "he_grad_norm": he_norm},
        options=opt,
        seconds=clock(),
        _plotter=_plot,
    )


def _plot(result: LabResult, out: Path) -> list[Path]:
    fig, (ax,) = figure(1, width=5.5)
    for (arm, group), style in zip(result.values["runs"].items(), ("--", "-")):
        for s, r in group.items():
            h = r["history"]
            losses = [r["initial_loss"]] + list(h.train_loss)
            (line,) = ax.plot(range(len(losses)), losses, style, label=f"{arm}, seed {s}")
            if r["diverged_at"] is not None:
                ax.plot(len(losses) - 1, losses[-1], "x", color=line.get_color(), markersize=9)
    ax.set_yscale("log")
    ax.set_xlabel("epoch (0 = before training; x = stopped on NaN/inf)")
    ax.set_ylabel("training loss")
    ax.legend(fontsize="x-small", ncol=2)
    return [save(fig, out, "train_loss_clipped_vs_unclipped.png")]
