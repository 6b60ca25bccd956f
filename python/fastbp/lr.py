"""Choosing the learning rate: the range test (``lr_find``) and a sweep over candidate rates
(``lr_sweep``). Line search (:class:`~fastbp.LineSearchSGD`) and the adaptive optimizers live
in :mod:`fastbp.optim`."""

from __future__ import annotations

import copy
import math
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .history import History
from .network import MLP
from .optim import SGD, LineSearchSGD, Optimizer
from .train import EarlyStopping, Trainer
from .validation import (
    check_data,
    check_instance,
    check_net,
    check_scalar,
    check_seed,
    check_validation_pair,
    resolve_seed,
)


@dataclass
class LRFinderResult:
    """The range test's curve. ``lrs`` and ``losses`` (smoothed) have one entry per step run;
    ``suggestion`` is the rate where the smoothed loss fell fastest."""

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    diverged: bool

    def __repr__(self) -> str:
        return (
            f"LRFinderResult(steps={len(self.lrs)}, suggestion={self.suggestion:.3g}, "
            f"diverged={self.diverged})"
        )


def lr_find(
    net: MLP,
    X: Any,
    y: Any,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    optimizer: Optimizer | None = None,
    batch_size: int = 32,
    smoothing: float = 0.05,
    diverge_factor: float = 4.0,
    seed: int | None = None,
) -> LRFinderResult:
    """Learning-rate range test (Smith, 2017): train a copy of ``net`` for ``num_steps``
    mini-batches with the rate rising exponentially from ``start_lr`` to ``end_lr``, stopping
    early once the loss exceeds ``diverge_factor`` times its best value (or is not finite).

    ``net`` itself is left untouched. The suggestion is the rate at which the smoothed loss
    decreased fastest (steepest negative slope against log(lr)).

    Parameters
    ----------
    optimizer : Optimizer or None
        The rule to test (its ``lr`` is overridden at every step); default plain SGD. Not
        LineSearchSGD, which picks its own step.
    batch_size : int
        Samples per step; a batch_size of at least the number of samples makes every step a
        full-batch gradient step.
    smoothing : float
        Weight of the newest loss in the exponential moving average of the curve.
    """
    check_net(net)
    start_lr = check_scalar(start_lr, "start_lr", min_value=0, min_inclusive=False)
    end_lr = check_scalar(end_lr, "end_lr", min_value=start_lr, min_inclusive=False)
    num_steps = check_scalar(num_steps, "num_steps", min_value=2, integer=True)
    batch_size = check_scalar(batch_size, "batch_size", min_value=1, integer=True)
    smoothing = check_scalar(smoothing, "smoothing", min_value=0, max_value=1, min_inclusive=False)
    diverge_factor = check_scalar(
        diverge_factor, "diverge_factor", min_value=1, min_inclusive=False
    )
    X, Y = check_data(net, X, y)
    if isinstance(optimizer, LineSearchSGD):
        raise TypeError(
            "optimizer: LineSearchSGD chooses its own step; lr_find needs a rule "
            "with a fixed learning rate"
        )
    probe = net.copy()
    opt = SGD(start_lr) if optimizer is None else _fresh(optimizer)
    rng = np.random.default_rng(check_seed(seed))
    lrs = np.geomspace(start_lr, end_lr, num_steps)
    n = X.shape[0]
    batch_size = min(batch_size, n)
    order, first = rng.permutation(n), 0
    raw, smooth = [], []
    avg, best, diverged = 0.0, math.inf, False
    for step, lr in enumerate(lrs):
        if first + batch_size > n:  # a new pass over the data, in a new order
            order, first = rng.permutation(n), 0
        idx = order[first : first + batch_size]
        first += batch_size
        loss = probe.backward(X[idx], Y[idx])
        if not math.isfinite(loss):
            diverged = True
            break
        opt.lr = float(lr)
        opt.step(probe)
        avg = loss if step == 0 else (1 - smoothing) * avg + smoothing * loss
        raw.append(loss)
        smooth.append(avg)
        best = min(best, avg)
        if avg > diverge_factor * best:
            diverged = True
            break
    lrs = lrs[: len(smooth)]
    return LRFinderResult(
        lrs, np.array(smooth), np.array(raw), _steepest(lrs, np.array(smooth)), diverged
    )


def _fresh(optimizer: Any) -> Optimizer:
    """The same update rule without its state (a copy carries no state)."""
    return copy.copy(check_instance(optimizer, "optimizer", Optimizer, "a fastbp optimizer"))


def _steepest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate where d(loss)/d(log lr) is most negative, ignoring the last tenth of the curve
    (where divergence begins) and the first few noisy points."""
    if len(lrs) < 3:
        return float(lrs[0]) if len(lrs) else float("nan")
    end = max(3, int(len(lrs) * 0.9))
    slope = np.gradient(losses[:end], np.log(lrs[:end]))
    return float(lrs[int(np.argmin(slope))])


@dataclass
class SweepResult:
    """Outcome of :func:`lr_sweep`: one row per candidate rate and the best of them.

    Attributes
    ----------
    rows : list of dict
        Per candidate: ``lr``, ``epochs`` run, ``best_epoch``, ``best_val_loss``,
        ``val_accuracy`` (at the best epoch; None for regression), ``stop_reason`` and
        ``diverged`` (see :func:`lr_sweep`).
    best_lr : float
        The rate of the lowest best validation loss among the candidates that did not
        diverge; NaN when every candidate diverged.
    histories : dict of float to History
        Each candidate's training history, by rate.
    """

    rows: list[dict[str, Any]]
    best_lr: float
    histories: dict[float, History] = field(repr=False)

    def __str__(self) -> str:
        head = f"{'lr':>10} {'epochs':>6} {'best epoch':>10} {'best val loss':>14} {'val acc':>8}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            acc = "" if r["val_accuracy"] is None else f"{r['val_accuracy']:.3f}"
            mark = "  <- best" if r["lr"] == self.best_lr else ""
            mark = "  (diverged)" if r["diverged"] else mark
            lines.append(
                f"{r['lr']:>10.3g} {r['epochs']:>6d} {r['best_epoch']:>10d} "
                f"{r['best_val_loss']:>14.5g} {acc:>8}{mark}"
            )
        return "\n".join(lines)


class _Sweep:
    """The candidates of one sweep, trained one after another or in threads, and stopped
    together: when the caller is interrupted (Ctrl-C) or a candidate fails, the ones training
    stop after their current mini-batch and the others never start, so that no thread is left
    training after :func:`lr_sweep` has returned or raised."""

    def __init__(
        self,
        net: MLP,
        optimizer: Optimizer,
        data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        patience: int,
        trainer_kwargs: dict[str, Any],
    ) -> None:
        self.net, self.optimizer, self.data = net, optimizer, data
        self.patience, self.trainer_kwargs = patience, trainer_kwargs
        self._lock = threading.Lock()
        self._running: list[Trainer] = []
        self._stopping = False

    def train(self, lr: float) -> History | None:
        """Train the candidate of rate ``lr``; None if the sweep was stopped before it began."""
        opt = _fresh(self.optimizer)
        opt.lr = lr
        # Each candidate its own network and EarlyStopping: candidates may train at once.
        trainer = Trainer(
            self.net.copy(),
            opt,
            early_stopping=EarlyStopping("val_loss", patience=self.patience),
            **self.trainer_kwargs,
        )
        with self._lock:
            if self._stopping:
                return None
            self._running.append(trainer)
        X, Y, Xv, Yv = self.data
        try:
            return trainer.fit(X, Y, validation=(Xv, Yv))
        finally:
            with self._lock:
                self._running.remove(trainer)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            for trainer in self._running:
                trainer.stop()

    def run(self, rates: list[float], n_jobs: int) -> list[History]:
        if n_jobs == 1:  # here an interrupt reaches the running fit itself
            return [h for h in map(self.train, rates) if h is not None]
        # Threads, not processes: the core releases the GIL, and nothing needs pickling. The
        # pool's exit waits for its threads, which stop() has told to stop.
        with ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="lr_sweep") as pool:
            futures = [pool.submit(self.train, lr) for lr in rates]
            try:
                histories = [f.result() for f in futures]
            except BaseException:
                self.stop()
                raise
        return [h for h in histories if h is not None]


def lr_sweep(
    net: MLP,
    X: Any,
    y: Any,
    validation: tuple[Any, Any],
    lrs: Sequence[float] = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
    optimizer: Optimizer | None = None,
    epochs: int = 50,
    batch_size: int = 32,
    patience: int = 5,
    n_jobs: int = 1,
    seed: int | None = None,
) -> SweepResult:
    """Train copies of ``net`` (same initial weights) with each rate in ``lrs``, with early
    stopping on the validation set, and pick the rate of the lowest best validation loss.

    A candidate that diverged (its training stopped because the loss or a gradient became NaN
    or infinite, or a recorded loss is not finite) is never the best rate, even when its best
    epoch before diverging had the lowest validation loss: that rate is unstable, and a rerun
    with another seed or more epochs would blow up. Its row says ``diverged=True``; when every
    candidate diverged, ``best_lr`` is NaN.

    Parameters
    ----------
    validation : (X_val, y_val)
        Used for early stopping and for ranking the rates; never the test set.
    optimizer : Optimizer or None
        The rule to use (default SGD); its ``lr`` is replaced by each candidate.
    n_jobs : int
        Candidates trained at once, each in a thread of its own (the core releases the GIL).
        An interrupt (Ctrl-C) or an error stops every candidate within a mini-batch before
        ``lr_sweep`` raises it: no thread is left training.
    seed : int or None
        Shuffling seed, shared by all candidates (drawn once when None): the result does not
        depend on ``n_jobs``.
    """
    check_net(net)
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Iterable):
        raise TypeError(f"lrs must be a sequence of learning rates, got {type(lrs).__name__}")
    rates = [check_scalar(r, "lrs", min_value=0, min_inclusive=False) for r in lrs]
    if not rates:
        raise ValueError("lrs must hold at least one learning rate")
    n_jobs = check_scalar(n_jobs, "n_jobs", min_value=1, integer=True)
    X, Y = check_data(net, X, y)
    Xv, Yv = check_validation_pair(net, validation)
    optimizer = SGD(rates[0]) if optimizer is None else _fresh(optimizer)
    patience = check_scalar(patience, "patience", min_value=0, integer=True)
    # One seed for all candidates: they see the same mini-batches, whatever n_jobs is.
    kwargs = dict(
        batch_size=check_scalar(batch_size, "batch_size", min_value=1, integer=True),
        epochs=check_scalar(epochs, "epochs", min_value=1, integer=True),
        seed=resolve_seed(check_seed(seed)),
        progress=False,
    )
    histories = _Sweep(net, optimizer, (X, Y, Xv, Yv), patience, kwargs).run(rates, n_jobs)
    rows = [_sweep_row(lr, h) for lr, h in zip(rates, histories)]
    return SweepResult(rows, _best_lr(rows), dict(zip(rates, histories)))


def _sweep_row(lr: float, history: History) -> dict[str, Any]:
    best = history.best_epoch if history.best_epoch is not None else 0
    vals = np.asarray(history.val_loss, dtype=float)
    losses_finite = np.isfinite(history.train_loss).all() and np.isfinite(vals).all()
    return {
        "lr": lr,
        "epochs": history.n_epochs,
        "best_epoch": best,
        "best_val_loss": float(vals[best]) if len(vals) else math.inf,
        "val_accuracy": history.val_accuracy[best] if history.val_accuracy else None,
        "stop_reason": history.stop_reason,
        "diverged": history.stop_reason == "non_finite" or not losses_finite,
    }


def _best_lr(rows: list[dict[str, Any]]) -> float:
    """The rate of the lowest best validation loss among candidates that did not diverge."""
    stable = [r for r in rows if not r["diverged"] and math.isfinite(r["best_val_loss"])]
    return min(stable, key=lambda r: r["best_val_loss"])["lr"] if stable else math.nan
