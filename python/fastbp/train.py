"""Training: the Trainer (one core call per epoch), early stopping and callbacks.

Per-epoch work only happens here: the learning rate for the epoch, validation loss, activation
statistics on a sample of the training data, early stopping, callbacks and the progress bar.
Everything per mini-batch (shuffle, gather, forward, backward, clip, noise, step) runs in the
core's epoch loop with the GIL released. The loop asks before each mini-batch whether to stop
(:meth:`Trainer.stop`, the interpreter's exit), so a fit stops within one mini-batch.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from . import _core
from .history import History
from .network import MLP
from .optim import GradientNoise, Optimizer
from .schedules import MONITORS, LRSchedule, improved, monitored_values
from .validation import (
    check_bool,
    check_choice,
    check_data,
    check_instance,
    check_monitor,
    check_net,
    check_optional,
    check_scalar,
    check_seed,
    check_validation_pair,
    resolve_seed,
)

STATS_SAMPLE = 512  # training rows on which saturation and dead units are measured per epoch


class NonFiniteWarning(RuntimeWarning):
    """Training stopped because the loss or a gradient became NaN or infinite."""


class EarlyStopping:
    """Stop training when ``monitor`` has not improved for ``patience`` epochs.

    Parameters
    ----------
    monitor : {"val_loss", "val_accuracy", "train_loss", "train_accuracy"}
    patience : int
        Epochs without improvement tolerated: with the best epoch b, training stops after
        epoch ``b + patience`` (0-based; ``b + 1`` when ``patience`` is 0).
    min_delta : float
        An improvement must beat the best value by more than this.
    restore_best : bool
        Put back the weights of the best epoch when training ends.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 10,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        self.monitor = check_choice(monitor, "monitor", MONITORS)
        self.patience = check_scalar(patience, "patience", min_value=0, integer=True)
        self.min_delta = check_scalar(min_delta, "min_delta", min_value=0)
        self.restore_best = check_bool(restore_best, "restore_best")
        self.reset()

    def reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0

    def update(self, epoch: int, history: History) -> tuple[bool, bool]:
        """Take the epoch's value; return (improved, stop)."""
        value = monitored_values(history, self.monitor)[-1]
        if self.best is None or improved(self.monitor, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True, False
        self.wait += 1
        return False, self.wait >= self.patience

    def __repr__(self) -> str:
        return (
            f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
            f"min_delta={self.min_delta}, restore_best={self.restore_best})"
        )


class Callback:
    """Base class for callbacks; override any hook. ``on_epoch_end`` may return True to stop.

    ``epoch`` counts from 0 over the whole run: it starts at ``Trainer.fit``'s
    ``initial_epoch``.
    """

    def on_train_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> bool | None: ...

    def on_train_end(self, trainer: Trainer) -> None: ...


class _FunctionCallback(Callback):
    def __init__(self, fn: Callable[[int, dict[str, Any]], Any]) -> None:
        self.fn = fn

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> bool | None:
        return bool(self.fn(epoch, logs))


def _check_callbacks(callbacks: Iterable[Any] | None) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, (Callback, str)) or callable(callbacks):
        raise TypeError(
            f"callbacks must be a list of Callback objects or callables, got {callbacks!r}"
        )
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(
            f"callbacks must be a list of Callback objects or callables, got {callbacks!r}"
        ) from None
    out = []
    for cb in callbacks:
        if isinstance(cb, type):  # callable, but would be called as cb(epoch, logs)
            raise TypeError(
                f"callbacks must be Callback objects or callables, got the class "
                f"{cb.__name__}: pass an instance, {cb.__name__}(...)"
            )
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(_FunctionCallback(cb))
        else:
            raise TypeError(f"callbacks must be Callback objects or callables, got {cb!r}")
    return out


def _exception_reason(err: BaseException) -> str:
    """History.stop_reason of a fit that ``err`` ended."""
    return "interrupted" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "error"


def _finite_epoch(stats: dict[str, Any], params_finite: bool, logs: dict[str, Any]) -> bool:
    """Whether every batch's loss and gradient (checked by the core), the weights the epoch
    ended with (its last step can overflow them) and the epoch's losses are finite."""
    losses = [v for v in (logs["train_loss"], logs["val_loss"]) if v is not None]
    return bool(stats["finite"] and params_finite and all(math.isfinite(v) for v in losses))


def _stats_sample(X: np.ndarray, seed: int) -> np.ndarray:
    """The training rows on which saturation and dead units are measured each epoch."""
    rng = np.random.default_rng(seed)
    return X[np.sort(rng.choice(X.shape[0], min(STATS_SAMPLE, X.shape[0]), replace=False))]


# How the core's reason for ending an epoch early is recorded in ``History.stop_reason``.
_STOPPED = {"requested": "stopped", "shutdown": "interrupted"}


class _ProgressBar:
    """A tqdm bar over the epochs when asked for, tqdm is installed and stderr is a terminal;
    otherwise it does nothing."""

    def __init__(self, epochs: int, enabled: bool) -> None:
        self._bar = None
        if not enabled or not sys.stderr.isatty():
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self._bar = tqdm(total=epochs, unit="epoch", leave=False)

    def update(self, logs: dict[str, Any]) -> None:
        if self._bar is None:
            return
        losses = {k: logs[k] for k in ("train_loss", "val_loss") if logs[k] is not None}
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()})
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _optional(value: Any, name: str, **bounds: Any) -> float | None:
    """None (off), else the checked positive number."""
    return None if value is None else check_scalar(value, name, **bounds)


_MATMUL_PRECISIONS = ("highest", "bfloat16")


def _check_matmul_precision(value: Any, net: MLP) -> str:
    if not isinstance(value, str):
        raise TypeError(f"matmul_precision must be a str, got {type(value).__name__}")
    if value not in _MATMUL_PRECISIONS:
        raise ValueError(f"matmul_precision must be one of {_MATMUL_PRECISIONS}, got {value!r}")
    if value == "bfloat16":
        if net.dtype != np.float32:
            raise ValueError(
                f"matmul_precision='bfloat16' needs a float32 network, this one is {net.dtype}"
            )
        if net.device != "cpu":
            raise ValueError(
                f"matmul_precision='bfloat16' is a CPU mode; this network is on {net.device}"
            )
        if not _core.build_info()["bfloat16"]:
            raise ValueError(
                "matmul_precision='bfloat16' needs a CPU with AVX512-BF16 "
                "(fastbp.build_info()['bfloat16'] is False on this machine)"
            )
    return value


class Trainer:
    """Mini-batch training of an :class:`~fastbp.MLP`, recording its gradients every epoch.

    Parameters
    ----------
    net : MLP
    optimizer : Optimizer
        SGD, Adam, AdamW, RMSProp, AdaGrad or LineSearchSGD.
    batch_size : int, default=32
        The last partial batch of an epoch is used, not dropped.
    epochs : int, default=100
    early_stopping : EarlyStopping or None
    clip_norm, clip_value : float or None
        Clip the gradients by their global L2 norm, or entry-wise, before each step.
    grad_noise : GradientNoise or None
        Annealed Gaussian noise added to the gradients (after clipping) before each step.
    lr_schedule : LRSchedule, callable ``f(epoch, base_lr) -> lr``, or None
        The rate of each epoch, from the optimizer's ``lr`` as the base rate (which
        ``fit`` puts back when it returns); a change a callback makes to ``optimizer.lr``
        during the fit is then overridden, with a warning. Without a schedule each epoch
        runs at ``optimizer.lr`` as it is when the epoch starts, so a callback may set it
        (as Keras's and PyTorch's allow), and it stays set. ``history.lr`` records the step
        size each epoch took: this rate, or with LineSearchSGD the mean accepted step.
    shuffle : bool, default=True
    seed : int or None
        Seed of the shuffling; with a seeded network and noise, a whole run is reproducible.
    callbacks : sequence of Callback or callables ``f(epoch, logs)``, or None
    progress : bool, default=True
        Show a tqdm progress bar when tqdm is installed and stderr is a terminal.
    matmul_precision : {"highest", "bfloat16"}, default="highest"
        ``"highest"``: every product in the network's dtype. ``"bfloat16"`` (float32 networks
        on a CPU with AVX512-BF16, ``build_info()["bfloat16"]``): mixed precision for training.
        The inputs of each large matrix product of the training epochs (forward, backward and
        weight gradients) are rounded to bfloat16, and their products are summed in float32.
        Large means at least 32 columns, 32 terms per sum and 2**18 multiply-adds in each
        thread's share of the batch; smaller products (a 10-class output layer, small
        networks, a short last batch) stay float32. Weights, gradients, optimizer state and
        everything else stay float32. Such products run up to twice as fast. Each rounding has
        a relative error of at most 2**-9 (subnormal inputs round to 0, whatever
        :func:`set_flush_denormals` says). Predictions, evaluation and validation run in
        float32.

    Attributes
    ----------
    history : History or None
        The record of the last :meth:`fit`, also when an exception ended it: after Ctrl-C,
        ``trainer.history.stop_reason`` is ``"interrupted"``. None before the first fit, and
        after one that raised before training began (bad data, say).
    """

    def __init__(
        self,
        net: MLP,
        optimizer: Optimizer,
        batch_size: int = 32,
        epochs: int = 100,
        early_stopping: EarlyStopping | None = None,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        grad_noise: GradientNoise | None = None,
        lr_schedule: LRSchedule | Callable[[int, float], float] | None = None,
        shuffle: bool = True,
        seed: int | None = None,
        callbacks: Iterable[Any] | None = (),
        progress: bool = True,
        matmul_precision: str = "highest",
    ) -> None:
        self.net = net
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.epochs = epochs
        self.early_stopping = early_stopping
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.grad_noise = grad_noise
        self.lr_schedule = lr_schedule
        self.shuffle = shuffle
        self.seed = seed
        self.callbacks = callbacks
        self.progress = progress
        self.matmul_precision = matmul_precision
        self._check_settings()  # each checked and normalised
        self.history: History | None = None
        self._stop = _core.StopToken()

    def _check_settings(self) -> None:
        """Every setting checked and normalised: at construction, and again by each fit (the
        attributes may have been changed in between: ``trainer.epochs = 0``)."""
        self.net = check_net(self.net)
        self.optimizer = check_instance(
            self.optimizer, "optimizer", Optimizer, "a fastbp optimizer"
        )
        self.batch_size = check_scalar(
            self.batch_size, "batch_size", min_value=1, max_value=_core.MAX_DIM, integer=True
        )
        self.epochs = check_scalar(
            self.epochs, "epochs", min_value=1, max_value=_core.MAX_STEPS, integer=True
        )
        self.early_stopping = check_optional(
            self.early_stopping, "early_stopping", EarlyStopping, "a fastbp.EarlyStopping"
        )
        self.clip_norm = _optional(self.clip_norm, "clip_norm", min_value=0, min_inclusive=False)
        self.clip_value = _optional(self.clip_value, "clip_value", min_value=0, min_inclusive=False)
        self.grad_noise = check_optional(
            self.grad_noise, "grad_noise", GradientNoise, "a fastbp.GradientNoise"
        )
        schedule = self.lr_schedule
        if not (schedule is None or isinstance(schedule, LRSchedule) or callable(schedule)):
            raise TypeError(
                f"lr_schedule must be an LRSchedule, a callable or None, got {schedule!r}"
            )
        self.shuffle = check_bool(self.shuffle, "shuffle")
        self.seed = check_seed(self.seed)
        self.callbacks = _check_callbacks(self.callbacks)
        self.progress = check_bool(self.progress, "progress")
        self.matmul_precision = _check_matmul_precision(self.matmul_precision, self.net)

    def stop(self) -> None:
        """Ask :meth:`fit` to stop after the mini-batch it is running (on a GPU, whose epoch is
        queued whole: after the epoch it is running, which is recorded).

        Thread-safe: call it from a callback, a signal handler or another thread. The fit then
        returns its history with ``stop_reason="stopped"``; the network keeps the weights of its
        last finished mini-batch (or the best epoch's, with ``EarlyStopping(restore_best=True)``).
        A request made while no fit runs stops the next one before its first mini-batch (on a
        GPU: after its first epoch); each fit forgets the request when it returns.
        """
        self._stop.set()

    # ---------------------------------------------------------------------------------------
    def _epoch_lr(self, epoch: int, base_lr: float, history: History) -> float:
        """The scheduled rate of ``epoch``."""
        if self.lr_schedule is None:
            return base_lr
        try:
            if isinstance(self.lr_schedule, LRSchedule):
                lr = self.lr_schedule.lr(epoch, base_lr, history)
            else:
                lr = self.lr_schedule(epoch, base_lr)
        except OverflowError:  # gamma > 1 raised to a large epoch, in Python floats
            raise ValueError(
                f"lr_schedule's learning rate at epoch {epoch} overflows a float"
            ) from None
        return check_scalar(lr, "lr_schedule's learning rate", min_value=0)

    def _epoch_config(self, shuffle_seed: int, epoch: int) -> Any:
        ec = _core.EpochConfig()
        ec.batch_size = self.batch_size
        ec.shuffle = self.shuffle
        ec.seed = shuffle_seed
        ec.epoch = epoch
        ec.clip_norm = self.clip_norm or 0.0  # the core's 'off' is 0
        ec.clip_value = self.clip_value or 0.0
        ec.bf16_products = self.matmul_precision == "bfloat16"
        if self.grad_noise is not None:
            ec.noise = True
            ec.noise_eta = self.grad_noise.eta
            ec.noise_gamma = self.grad_noise.gamma
            ec.noise_seed = self.grad_noise.resolved_seed
            ec.noise_t = self.grad_noise.t
        return ec

    def fit(
        self,
        X: Any,
        y: Any,
        validation: tuple[Any, Any] | None = None,
        initial_epoch: int = 0,
    ) -> History:
        """Train on (X, y); validate on ``validation`` after every epoch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like
            Targets as for :meth:`MLP.backward`.
        validation : (X_val, y_val) or None
            Needed when early stopping or a schedule monitors a validation metric.
        initial_epoch : int, default=0
            Index of the first epoch run: ``epochs`` epochs are run, numbered
            ``initial_epoch, ..., initial_epoch + epochs - 1`` (unlike Keras, ``epochs``
            counts the epochs of this call). The number picks the epoch's shuffle order and
            learning rate (schedules) and is what callbacks receive; ``GradientNoise``
            counts its own steps. To continue a run of ``k`` epochs, pass ``initial_epoch=k``
            with the same network, optimizer (with its state), noise and ``seed``: the
            weights are those of one run of ``k + epochs`` epochs, bit for bit (early
            stopping and :class:`~fastbp.ReduceLROnPlateau`, which read the history of this
            call only, start afresh). ``history.extend(new_history)`` joins the records.

        Returns
        -------
        History
            Losses, accuracies, step sizes and per-layer gradient statistics of the epochs
            of this call (its indices such as ``best_epoch`` count from 0 in it).
            ``history.lr`` is the mean step size taken in each epoch: the epoch's learning
            rate, or with LineSearchSGD the mean of the steps the line search accepted.

        Notes
        -----
        :meth:`stop` ends the fit after the current mini-batch; so does the interpreter's
        exit, for a fit running in a daemon thread. Ctrl-C (KeyboardInterrupt) interrupts
        it within a mini-batch too: the core runs Python's signal handlers every 25 ms, and
        fit re-raises what they raise, with ``stop_reason="interrupted"`` recorded. A fit
        stopped during an epoch does not record that epoch; ``history.stopped_epoch`` is its
        index. On a GPU an epoch is queued whole: these take effect when it ends (it is
        recorded), and the interpreter's exit waits for it. Whatever ends the fit, an
        exception included (KeyboardInterrupt, or one raised by a callback), the network is
        left with finite weights: the best epoch's with ``EarlyStopping(restore_best=True)``,
        else those of the last finished mini-batch.
        """
        self._check_settings()
        self.history = None  # until this fit begins training
        net = self.net
        initial_epoch = check_scalar(
            initial_epoch,
            "initial_epoch",
            min_value=0,
            max_value=_core.MAX_STEPS - self.epochs,
            integer=True,
        )
        X, Y = check_data(net, X, y)
        Xv, Yv = (None, None) if validation is None else check_validation_pair(net, validation)
        self._check_monitors(has_validation=Xv is not None)
        seed = resolve_seed(self.seed)
        # The data as the network's device reads them every epoch: on a GPU, copied there once.
        backend = net.backend
        X_sample = backend.upload(_stats_sample(X, seed))[0]
        X, Y = backend.upload(X, Y)
        if Xv is not None:
            Xv, Yv = backend.upload(Xv, Yv)
        state = self.optimizer.state_for(net)
        base_lr = self.optimizer.lr
        try:
            history = self._begin_training()
        except BaseException:  # a callback's on_train_begin: this fit ends, and forgets stop()
            self._stop.clear()
            raise
        # The core writes each epoch's start into it; a copy now, in case nothing runs.
        start_params = backend.snapshot(net.core)
        best_params = None
        bar = _ProgressBar(self.epochs, self.progress)
        index = 0
        scheduled = base_lr  # the rate the schedule set last
        try:
            for index in range(self.epochs):  # index: in this call's history
                epoch = initial_epoch + index  # in the whole run
                if self.lr_schedule is not None:
                    if self.optimizer.lr != scheduled:
                        warnings.warn(
                            f"optimizer.lr was changed to {self.optimizer.lr!r} during fit, "
                            "but lr_schedule sets the rate of every epoch: the change is "
                            "ignored. Change the schedule, or set the rate yourself with "
                            "lr_schedule=None.",
                            UserWarning,
                            stacklevel=2,
                        )
                    self.optimizer.lr = scheduled = self._epoch_lr(epoch, base_lr, history)
                stats, seconds = self._train_epoch(epoch, state, X, Y, start_params, seed)
                if stats["stopped"] is not None:
                    self._stopped(history, index, _STOPPED[stats["stopped"]])
                    break
                logs = self._epoch_logs(stats, X_sample, Xv, Yv, seconds)
                if not _finite_epoch(stats, backend.params_finite(net.core), logs):
                    self._roll_back(history, index, epoch, start_params)
                    break
                improved, stop = self._record_epoch(history, index, logs)
                if improved:  # before the callbacks: an interrupt there keeps this best
                    best_params = backend.snapshot(net.core)
                stop = self._ask_callbacks(history, index, epoch, logs, stop)
                bar.update(logs)
                if stop:
                    break
        except BaseException as err:  # Ctrl-C, the interpreter's exit, a callback's error
            self._stopped(history, index, _exception_reason(err))
            raise
        finally:
            if self.lr_schedule is not None:  # its last rate must not become the next base
                self.optimizer.lr = base_lr
            bar.close()
            self._stop.clear()
            # Stopped or interrupted after a step that overflowed (the core checks each
            # batch's gradient, not the step's result): the epoch's start weights instead.
            if not backend.params_finite(net.core):
                backend.set_params(net.core, start_params)
            self._restore_best(best_params)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return history

    def _check_monitors(self, has_validation: bool) -> None:
        for monitor_owner in (self.early_stopping, self.lr_schedule):
            monitor = getattr(monitor_owner, "monitor", None)
            if monitor is not None:
                check_monitor(monitor, self.net, has_validation)

    def _begin_training(self) -> History:
        """A fresh history; early stopping and the schedule start afresh; callbacks are told
        (one raising ends the fit, recorded)."""
        history = self.history = History(self.net.layer_activations)
        if self.early_stopping is not None:
            self.early_stopping.reset()
        if isinstance(self.lr_schedule, LRSchedule):
            self.lr_schedule.reset()
        try:
            for cb in self.callbacks:
                cb.on_train_begin(self)
        except BaseException as err:
            self._stopped(history, 0, _exception_reason(err))
            raise
        return history

    def _train_epoch(
        self,
        epoch: int,
        state: Any,
        X: Any,
        Y: Any,
        start_params: Any,
        seed: int,
    ) -> tuple[dict[str, Any], float]:
        """One epoch in the core of the network's device; its statistics and the seconds it
        took."""
        t0 = time.perf_counter()
        steps = self.optimizer.steps
        try:
            stats = self.net.backend.train_epoch(
                self.net.core,
                state,
                self.optimizer.config(),
                X,
                Y,
                start_params,
                self._epoch_config(seed, epoch),
                self._stop,
            )
        except BaseException:
            # An exception (Ctrl-C) discards the epoch's statistics, not its steps: the noise
            # schedule moves on by the steps taken, so that a resumed run draws no noise twice.
            # (Line search counts no steps: its noise count is kept only by finished epochs.)
            if self.grad_noise is not None:
                self.grad_noise.t += self.optimizer.steps - steps
            raise
        if self.grad_noise is not None:
            self.grad_noise.t = stats["noise_t"]
        return stats, time.perf_counter() - t0

    @staticmethod
    def _stopped(history: History, index: int, reason: str) -> None:
        """Record a fit stopped during epoch ``index`` of this call, which is not recorded: it
        did not finish."""
        history.stop_reason = reason
        history.stopped_epoch = index

    def _roll_back(self, history: History, index: int, epoch: int, start_params: Any) -> None:
        """Undo an epoch that went non-finite: its start weights back, the optimizer reset."""
        self.net.backend.set_params(self.net.core, start_params)
        # The moments of the diverging epoch are garbage: a later fit starts afresh.
        self.optimizer.reset()
        self._stopped(history, index, "non_finite")
        warnings.warn(
            f"training stopped at epoch {epoch}: the loss or a gradient became NaN or "
            "infinite (exploding gradients?). The weights of the last finite epoch "
            "are kept and the optimizer state is reset. Try a smaller learning "
            "rate, gradient clipping (clip_norm) or another initialisation.",
            NonFiniteWarning,
            stacklevel=3,  # the caller of fit
        )

    def _record_epoch(
        self, history: History, index: int, logs: dict[str, Any]
    ) -> tuple[bool, bool]:
        """Record epoch ``index`` of this call and ask early stopping; return (improved, stop)."""
        history.record(logs)
        improved = stop = False
        if self.early_stopping is not None:
            improved, stop = self.early_stopping.update(index, history)
            if improved:
                history.best_epoch = index
            if stop:
                history.stop_reason = "early_stopping"
        return improved, stop

    def _ask_callbacks(
        self, history: History, index: int, epoch: int, logs: dict[str, Any], stop: bool
    ) -> bool:
        """Tell the callbacks of epoch ``epoch`` (``index`` in this call's history); whether to
        stop, they, early stopping (``stop``) or :meth:`stop` asking."""
        for cb in self.callbacks:
            stop = bool(cb.on_epoch_end(self, epoch, logs)) or stop
        if stop:
            history.stop_reason = history.stop_reason or "callback"
        elif self._stop.is_set:  # stop() from a callback, or from another thread meanwhile
            stop, history.stop_reason = True, "stopped"
        if stop:
            history.stopped_epoch = index
        return stop

    def _restore_best(self, best_params: Any) -> None:
        """Put back the best weights if early stopping asks to."""
        es = self.early_stopping
        if es is not None and es.restore_best and best_params is not None:
            self.net.backend.set_params(self.net.core, best_params)

    def _epoch_logs(
        self, stats: dict[str, Any], X_sample: Any, Xv: Any, Yv: Any, seconds: float
    ) -> dict[str, Any]:
        net = self.net
        classifier = net.is_classifier
        # Saturation, dead units and the forward signal's statistics, in one pass of the core.
        forward = net.core.layer_stats(X_sample)
        logs: dict[str, Any] = {
            "train_loss": stats["loss"],
            "train_accuracy": stats["accuracy"] if classifier else None,
            "val_loss": None,
            "val_accuracy": None,
            "lr": stats["mean_step"],  # the step taken: the rate, or the accepted line search
            "grad_norms": stats["grad_norm_mean"],
            "grad_norms_max": stats["grad_norm_max"],
            "update_ratios": stats["update_ratio"],
            **forward,
            "time": seconds,
        }
        if Xv is not None:
            loss_sum, correct = net.core.evaluate(Xv, Yv)
            logs["val_loss"] = loss_sum / Xv.shape[0]
            if classifier:
                logs["val_accuracy"] = correct / Xv.shape[0]
        return logs

    def evaluate(self, X: Any, y: Any) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` (accuracy for classification losses) on (X, y).

        This is the only place a test set should be shown to.
        """
        return self.net.evaluate(X, y)

    def predict(self, X: Any) -> np.ndarray:
        """The network's predictions (see :meth:`MLP.predict`)."""
        return self.net.predict(X)
