"""Learning-rate schedules for :class:`~fastbp.Trainer`: the rate of each epoch, decided before
the epoch runs from the base rate and the history so far."""

from __future__ import annotations

import math
from typing import Any

from .validation import check_choice, check_scalar


class LRSchedule:
    """Base class. ``lr(epoch, base_lr, history)`` returns the rate for 0-based ``epoch``."""

    def reset(self) -> None:
        """Forget any state (called at the start of every fit)."""

    def lr(self, epoch: int, base_lr: float, history: Any) -> float:
        raise NotImplementedError


class StepLR(LRSchedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs (``torch``'s StepLR)."""

    def __init__(self, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_scalar(step_size, "step_size", min_value=1, integer=True)
        self.gamma = check_scalar(gamma, "gamma", min_value=0, min_inclusive=False)

    def lr(self, epoch: int, base_lr: float, history: Any) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRSchedule):
    """Multiply the rate by ``gamma`` every epoch."""

    def __init__(self, gamma: float) -> None:
        self.gamma = check_scalar(gamma, "gamma", min_value=0, min_inclusive=False)

    def lr(self, epoch: int, base_lr: float, history: Any) -> float:
        return base_lr * self.gamma**epoch


class CosineAnnealingLR(LRSchedule):
    """Cosine from the base rate down to ``eta_min`` over ``T_max`` epochs, then held there."""

    def __init__(self, T_max: int, eta_min: float = 0.0) -> None:  # noqa: N803 (torch's name)
        self.T_max = check_scalar(T_max, "T_max", min_value=1, integer=True)
        self.eta_min = check_scalar(eta_min, "eta_min", min_value=0)

    def lr(self, epoch: int, base_lr: float, history: Any) -> float:
        t = min(epoch, self.T_max)
        cosine = 0.5 * (1 + math.cos(math.pi * t / self.T_max))
        return self.eta_min + (base_lr - self.eta_min) * cosine


class ReduceLROnPlateau(LRSchedule):
    """Multiply the rate by ``factor`` when ``monitor`` has not improved by more than
    ``min_delta`` for more than ``patience`` epochs; wait ``cooldown`` epochs after each cut.

    The semantics are those of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` with
    ``threshold_mode="abs"``, ``threshold=min_delta`` and ``mode`` "min" for losses, "max" for
    accuracies: the value of epoch e decides the rate of epoch e + 1, epochs in cooldown count
    as neither good nor bad, the rate never drops below ``min_lr``, and a cut smaller than
    ``eps`` is skipped.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        self.monitor = check_choice(monitor, "monitor", MONITORS)
        self.factor = check_scalar(
            factor, "factor", min_value=0, max_value=1, min_inclusive=False, max_inclusive=False
        )
        self.patience = check_scalar(patience, "patience", min_value=0, integer=True)
        self.min_delta = check_scalar(min_delta, "min_delta", min_value=0)
        self.cooldown = check_scalar(cooldown, "cooldown", min_value=0, integer=True)
        self.min_lr = check_scalar(min_lr, "min_lr", min_value=0)
        self.eps = check_scalar(eps, "eps", min_value=0)
        self.reset()

    def reset(self) -> None:
        self._lr: float | None = None
        self._best = -math.inf if self.monitor.endswith("accuracy") else math.inf
        self._bad_epochs = 0
        self._cooldown_left = 0
        self._seen = 0

    def lr(self, epoch: int, base_lr: float, history: Any) -> float:
        rate = base_lr if self._lr is None else self._lr
        values = monitored_values(history, self.monitor)
        for value in values[self._seen :]:
            rate = self._step(value, rate)
        self._seen = len(values)
        self._lr = rate
        return rate

    def _step(self, value: float, rate: float) -> float:
        """torch's ``scheduler.step(value)``: the rate after seeing ``value``."""
        if improved(self.monitor, value, self._best, self.min_delta):
            self._best, self._bad_epochs = value, 0
        else:
            self._bad_epochs += 1
        if self._cooldown_left > 0:
            self._cooldown_left -= 1
            self._bad_epochs = 0
        if self._bad_epochs > self.patience:
            new_rate = max(rate * self.factor, self.min_lr)
            if rate - new_rate > self.eps:
                rate = new_rate
            self._cooldown_left, self._bad_epochs = self.cooldown, 0
        return rate


MONITORS = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")


def monitored_values(history: Any, monitor: str) -> list[float]:
    return list(getattr(history, monitor))


def improved(monitor: str, value: float, best: float, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (losses fall, accuracies
    rise)."""
    if monitor.endswith("accuracy"):
        return value > best + min_delta
    return value < best - min_delta
