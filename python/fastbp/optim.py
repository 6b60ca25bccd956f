"""Optimizer configurations with torch.optim's update rules and argument names; the updates run
in the core over the flat parameter buffer. Also gradient clipping and annealed gradient noise."""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from . import _core
from .network import MLP
from .validation import check_scalar, check_seed, resolve_seed


def _check_net(net: Any, name: str = "net") -> MLP:
    if not isinstance(net, MLP):
        raise TypeError(f"{name} must be a fastbp.MLP, got {type(net).__name__}")
    return net


def _check_betas(betas: Any) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    return tuple(
        check_scalar(b, f"betas[{i}]", min_value=0, max_value=1, max_inclusive=False)
        for i, b in enumerate(betas)
    )


class Optimizer:
    """Base class: hyperparameters live here, the state (moments, step count) in the core,
    bound to the first network stepped."""

    _kind: Any = None

    def __init__(self, lr: float) -> None:
        if self._kind is None:
            raise TypeError(
                "Optimizer is a base class: use SGD, Adam, AdamW, RMSProp, AdaGrad or LineSearchSGD"
            )
        self.lr = lr
        self._state = None
        self._owner: weakref.ref | None = None

    @property
    def lr(self) -> float:
        """Learning rate; may be changed between steps."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = check_scalar(value, "lr", min_value=0)

    def _fill(self, c: Any) -> None:
        """Write the rule's own hyperparameters into the core config ``c``."""

    def config(self) -> Any:
        c = _core.OptimConfig()
        c.kind = self._kind
        c.lr = self.lr
        self._fill(c)
        return c

    def state_for(self, net: MLP) -> Any:
        """The core state of this optimizer, created for ``net`` on first use."""
        _check_net(net)
        if self._state is None:
            cls = _core.OptimizerState32 if net.dtype == np.float32 else _core.OptimizerState64
            self._state = cls(net.n_params)
            self._owner = weakref.ref(net._net)
        elif self._owner() is not net._net:
            raise ValueError(
                "net: this optimizer already holds the state of another network; "
                "call opt.reset() or create a new optimizer"
            )
        return self._state

    @property
    def steps(self) -> int:
        """Number of updates applied since creation or the last :meth:`reset`."""
        return 0 if self._state is None else self._state.steps

    def reset(self) -> None:
        """Forget the state (moments, step count) and the network it was bound to."""
        self._state = None
        self._owner = None

    def step(self, net: MLP) -> None:
        """Apply one update to ``net``'s parameters from its current gradients."""
        self.state_for(net).step(net._net, self.config())

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_state"] = None  # fresh state in a copy: it is bound to one network
        state["_owner"] = None
        return state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr}


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay, as
    ``torch.optim.SGD``."""

    _kind = _core.Optim.sgd

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.momentum = check_scalar(momentum, "momentum", min_value=0)
        self.dampening = check_scalar(dampening, "dampening", min_value=0, max_value=1)
        self.weight_decay = check_scalar(weight_decay, "weight_decay", min_value=0)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening = 0")
        self.nesterov = nesterov

    def _fill(self, c: Any) -> None:
        c.momentum, c.dampening = self.momentum, self.dampening
        c.nesterov, c.weight_decay = self.nesterov, self.weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "momentum": self.momentum,
            "dampening": self.dampening,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), L2 weight decay added to the gradient: ``torch.optim.Adam``."""

    _kind = _core.Optim.adam

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.betas = _check_betas(betas)
        self.eps = check_scalar(eps, "eps", min_value=0)
        self.weight_decay = check_scalar(weight_decay, "weight_decay", min_value=0)

    def _fill(self, c: Any) -> None:
        c.beta1, c.beta2 = self.betas
        c.eps, c.weight_decay = self.eps, self.weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "betas": self.betas,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``."""

    _kind = _core.Optim.adamw

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay)


class RMSProp(Optimizer):
    """RMSProp with optional momentum and centering, as ``torch.optim.RMSprop``."""

    _kind = _core.Optim.rmsprop

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.alpha = check_scalar(alpha, "alpha", min_value=0, max_value=1)
        self.eps = check_scalar(eps, "eps", min_value=0)
        self.momentum = check_scalar(momentum, "momentum", min_value=0)
        if not isinstance(centered, bool):
            raise TypeError(f"centered must be a bool, got {centered!r}")
        self.centered = centered
        self.weight_decay = check_scalar(weight_decay, "weight_decay", min_value=0)

    def _fill(self, c: Any) -> None:
        c.alpha, c.eps, c.momentum = self.alpha, self.eps, self.momentum
        c.centered, c.weight_decay = self.centered, self.weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "alpha": self.alpha,
            "eps": self.eps,
            "momentum": self.momentum,
            "centered": self.centered,
            "weight_decay": self.weight_decay,
        }


class AdaGrad(Optimizer):
    """AdaGrad, as ``torch.optim.Adagrad`` (initial accumulator 0)."""

    _kind = _core.Optim.adagrad

    def __init__(
        self, lr: float = 1e-2, eps: float = 1e-10, lr_decay: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        super().__init__(lr)
        self.eps = check_scalar(eps, "eps", min_value=0)
        self.lr_decay = check_scalar(lr_decay, "lr_decay", min_value=0)
        self.weight_decay = check_scalar(weight_decay, "weight_decay", min_value=0)

    def _fill(self, c: Any) -> None:
        c.eps, c.lr_decay, c.weight_decay = self.eps, self.lr_decay, self.weight_decay

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "eps": self.eps,
            "lr_decay": self.lr_decay,
            "weight_decay": self.weight_decay,
        }


class LineSearchSGD(Optimizer):
    """Gradient descent whose step size is found on each batch by Armijo backtracking.

    From ``t = lr``, the step shrinks by ``shrink`` until
    ``loss(w - t g) <= loss(w) - c1 t ||g||^2`` (at most ``max_iter`` tries); if no step
    qualifies the weights are left unchanged. On a full batch the loss therefore never rises.
    In :class:`~fastbp.Trainer` the search runs inside the core's epoch loop; by hand, call
    ``opt.step(net, X, Y)``.
    """

    _kind = _core.Optim.line_search

    def __init__(
        self, lr: float = 1.0, c1: float = 1e-4, shrink: float = 0.5, max_iter: int = 20
    ) -> None:
        super().__init__(lr)
        self.c1 = check_scalar(c1, "c1", min_value=0, max_value=1, max_inclusive=False)
        self.shrink = check_scalar(
            shrink, "shrink", min_value=0, max_value=1, min_inclusive=False, max_inclusive=False
        )
        self.max_iter = check_scalar(max_iter, "max_iter", min_value=1, integer=True)
        self.last_step = 0.0

    def _fill(self, c: Any) -> None:
        c.c1, c.shrink, c.max_iter = self.c1, self.shrink, self.max_iter

    def hyperparameters(self) -> dict[str, Any]:
        return {"lr": self.lr, "c1": self.c1, "shrink": self.shrink, "max_iter": self.max_iter}

    def step(self, net: MLP, X: Any = None, Y: Any = None) -> float:  # type: ignore[override]
        """Compute the gradient on (X, Y), search the step along it and apply it.

        Returns the batch loss before the step; the step taken is in ``self.last_step``.
        """
        _check_net(net)
        if X is None or Y is None:
            raise TypeError("LineSearchSGD.step needs the batch: opt.step(net, X, Y)")
        X = net._X(X)
        Y = net._Y(Y, X.shape[0])
        loss, self.last_step = _core.line_search_step(net._net, self.config(), X, Y)
        return loss


def clip_grad_norm(net: MLP, max_norm: float) -> float:
    """Scale all gradients (weights and biases) so that their global L2 norm is at most
    ``max_norm``; return the norm before clipping (``torch.nn.utils.clip_grad_norm_``)."""
    _check_net(net)
    return net._net.clip_grad_norm(
        check_scalar(max_norm, "max_norm", min_value=0, min_inclusive=False)
    )


def clip_grad_value(net: MLP, value: float) -> None:
    """Clamp every gradient entry to [-value, value] (``torch.nn.utils.clip_grad_value_``)."""
    _check_net(net)
    net._net.clip_grad_value(check_scalar(value, "value", min_value=0, min_inclusive=False))


class GradientNoise:
    """Annealed Gaussian gradient noise (Neelakantan et al., 2015).

    Before step t (counted from 0), every gradient entry gets noise of variance
    ``eta / (1 + t) ** gamma``. The noise is a function of (seed, t, index): the same seed
    gives the same noise on any thread count.
    """

    def __init__(self, eta: float = 0.01, gamma: float = 0.55, seed: int | None = None) -> None:
        self.eta = check_scalar(eta, "eta", min_value=0)
        self.gamma = check_scalar(gamma, "gamma", min_value=0)
        self.seed = check_seed(seed)
        self._stream = resolve_seed(self.seed)
        self.t = 0

    @property
    def t(self) -> int:
        """Steps taken so far: the next noise has variance eta / (1 + t) ** gamma."""
        return self._t

    @t.setter
    def t(self, value: int) -> None:
        self._t = check_scalar(value, "t", min_value=0, integer=True)

    def variance(self, t: int | None = None) -> float:
        """The noise variance at step ``t`` (default: the next step)."""
        return self.eta / (1.0 + (self.t if t is None else t)) ** self.gamma

    def apply(self, net: MLP) -> None:
        """Add this step's noise to ``net``'s gradients and advance the step counter."""
        _check_net(net)
        net._net.add_gradient_noise(self.eta, self.gamma, self._stream, self.t)
        self.t += 1

    def __repr__(self) -> str:
        return f"GradientNoise(eta={self.eta}, gamma={self.gamma}, seed={self.seed})"
