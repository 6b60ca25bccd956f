"""Choosing the learning rate: the range test (``lr_find``) and a sweep over candidate rates
(``lr_sweep``). Line search (:class:`~fastbp.LineSearchSGD`) and the adaptive optimizers live
in :mod:`fastbp.optim`."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _core
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
    ``min_loss_lr`` is the rate at the lowest smoothed loss (past the moving average's first
    steps) and ``suggestion`` a tenth of it (see :func:`lr_find`)."""

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    diverged: bool
    min_loss_lr: float = math.nan

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

    ``net`` itself is left untouched.

    The suggestion is a tenth of the rate at which the smoothed loss was lowest
    (``min_loss_lr``), the lowest point sought after the first ``1 / smoothing`` steps, where
    the moving average still rests on a handful of batches and one lucky batch can make the
    start look lowest. Why not the steepest descent, the usual rule? That point sits right
    before the blow-up: the moving average lags the raw loss by about ``1 / smoothing`` steps,
    a factor of up to ``(end_lr / start_lr) ** (1 / (smoothing * num_steps))`` in rate (40 with
    the defaults), so the smoothed curve still falls where training has begun to diverge; and on
    a flat or noisy curve the steepest point can be anywhere, start_lr included. Trained with
    plain SGD at the steepest point, scikit-learn's digits (one hidden layer of 64) reached 0.25
    of the best accuracy over a grid of rates; at a tenth of the lowest point's rate, training
    reached at least 90% of the best on 34 of 36 runs over digits, fastbp's data sets and
    generated ones (2 networks, 2 seeds each), and 85% on the other two, a checkerboard whose
    loss hardly moves during the test: where the curve is that flat, no rule read from it is
    reliable.

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
    min_loss_lr = _min_loss_lr(lrs, np.array(smooth), warmup=math.ceil(1 / smoothing))
    return LRFinderResult(
        lrs, np.array(smooth), np.array(raw), min_loss_lr / 10, diverged, min_loss_lr
    )


def _fresh(optimizer: Any) -> Optimizer:
    """The same update rule without its state."""
    check_instance(optimizer, "optimizer", Optimizer, "a fastbp optimizer")
    return type(optimizer)(**optimizer.hyperparameters())


def _min_loss_lr(lrs: np.ndarray, losses: np.ndarray, warmup: int) -> float:
    """The rate of the lowest smoothed loss after the first ``warmup`` steps (all of the curve
    when it is shorter than twice that: it ended early, and the start is all there is)."""
    if len(lrs) == 0:
        return math.nan
    first = warmup if len(lrs) >= 2 * warmup else 0
    return float(lrs[first + int(np.argmin(losses[first:]))])


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


def _candidate(
    net: MLP, optimizer: Optimizer, lr: float, patience: int, trainer_kwargs: dict[str, Any]
) -> Trainer:
    """The Trainer of one candidate rate: its own copy of ``net`` and its own EarlyStopping,
    so that candidates may train at once."""
    opt = _fresh(optimizer)
    opt.lr = lr
    early = EarlyStopping("val_loss", patience=patience)
    return Trainer(net.copy(), opt, early_stopping=early, **trainer_kwargs)


def _train_one(
    net: MLP,
    optimizer: Optimizer,
    lr: float,
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    patience: int,
    trainer_kwargs: dict[str, Any],
) -> History:
    """One candidate from start to end: what a joblib backend's worker runs (picklable)."""
    X, Y, Xv, Yv = data
    return _candidate(net, optimizer, lr, patience, trainer_kwargs).fit(X, Y, validation=(Xv, Yv))


def _threads(n_jobs: int | None) -> int:
    """Candidates trained at once for n_jobs as joblib counts them (None 1, -1 every CPU, -2
    all but one...), bounded so that their teams together stay within the threads OpenBLAS
    can serve at once (2 x MAX_THREADS; beyond, it aborts the process)."""
    if n_jobs is None:
        return 1
    wanted = n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return max(1, min(wanted, 2 * _core.max_threads() // _core.get_num_threads()))


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
        trainer = _candidate(self.net, self.optimizer, lr, self.patience, self.trainer_kwargs)
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
        # The caller's thread count, which threadpoolctl may have set for its thread only.
        threads = _core.get_num_threads()

        def train(lr: float) -> History | None:
            before = _core.set_local_num_threads(threads)
            try:
                return self.train(lr)
            finally:
                _core.set_local_num_threads(before)

        with ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="lr_sweep") as pool:
            futures = [pool.submit(train, lr) for lr in rates]
            try:
                histories = [f.result() for f in futures]
            except BaseException:
                self.stop()
                raise
        return [h for h in histories if h is not None]  # None: stopped, which raised above


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
    n_jobs: int | None = None,
    seed: int | None = None,
    backend: str | None = None,
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
    n_jobs : int or None
        Candidates trained at once; negative as in joblib (-1: all CPUs, or all the backend's
        workers). None: 1, or with a ``backend``, -1. Without a ``backend`` each runs in a
        thread of its own (the core releases the GIL), at most as many at once as OpenBLAS
        lets call it together (``2 * fb.build_info()["max_threads"]`` threads in all, each
        candidate using ``fb.get_num_threads()``), and an interrupt (Ctrl-C) or an error stops
        every candidate within a mini-batch (on a GPU: its epoch) before ``lr_sweep`` raises
        it: no thread is left training.
    seed : int or None
        Shuffling seed, shared by all candidates (drawn once when None): the result does not
        depend on ``n_jobs`` or ``backend`` (beyond the last bits of float arithmetic, which
        depend on the thread count of the process that trains a candidate).
    backend : str or None
        None trains the candidates in threads of this process (the core releases the GIL).
        A joblib backend name spreads them over that backend's workers: ``"loky"`` or
        ``"multiprocessing"`` over local processes, ``"dask"`` over the workers of the
        current ``dask.distributed.Client`` (see the README's "Sweeps on a Dask cluster").
        Each worker's fastbp uses the threads its environment allows (``OMP_NUM_THREADS``,
        which Dask's nanny and joblib's loky set to the worker's share).
    """
    check_net(net)
    if isinstance(lrs, (str, bytes)) or not isinstance(lrs, Iterable):
        raise TypeError(f"lrs must be a sequence of learning rates, got {type(lrs).__name__}")
    rates = [check_scalar(r, "lrs", min_value=0, min_inclusive=False) for r in lrs]
    repeated = sorted({r for r in rates if rates.count(r) > 1})
    if repeated:  # the histories are keyed by rate
        raise ValueError(f"lrs must not repeat a rate; {repeated} appear more than once")
    if not rates:
        raise ValueError("lrs must hold at least one learning rate")
    if n_jobs is not None and check_scalar(n_jobs, "n_jobs", integer=True) == 0:
        raise ValueError("n_jobs must be a nonzero integer or None, got 0")
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a joblib backend name or None, got {backend!r}")
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
    data = (X, Y, Xv, Yv)
    if backend is None:
        histories = _Sweep(net, optimizer, data, patience, kwargs).run(rates, _threads(n_jobs))
    else:
        try:
            from joblib import Parallel, delayed, parallel_backend
        except ImportError as err:
            raise ImportError(
                "lr_sweep's backend needs joblib: pip install fastbp[parallel]"
            ) from err
        jobs = (delayed(_train_one)(net, optimizer, lr, data, patience, kwargs) for lr in rates)
        # parallel_backend, not Parallel(backend=...): only it finds "dask" (and "ray")
        with parallel_backend(backend):
            histories = Parallel(n_jobs=-1 if n_jobs is None else n_jobs)(jobs)
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
