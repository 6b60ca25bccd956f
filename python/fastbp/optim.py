"""Optimizer configurations with torch.optim's update rules and argument names; the updates run
in the core over the flat parameter buffer. Also gradient clipping and annealed gradient noise."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

import numpy as np

from . import _core
from .network import MLP
from .validation import (
    check_batch_rows,
    check_bool,
    check_data,
    check_dtype,
    check_net,
    check_pair,
    check_scalar,
    check_seed,
    resolve_seed,
)

T = TypeVar("T")


def _real(**bounds: Any) -> Callable[[Any, str], float]:
    """The check of a real hyperparameter within ``bounds`` (those of ``check_scalar``)."""

    def check(value: Any, name: str) -> float:
        return check_scalar(value, name, **bounds)

    return check


def _integer(**bounds: Any) -> Callable[[Any, str], int]:
    def check(value: Any, name: str) -> int:
        return check_scalar(value, name, integer=True, **bounds)

    return check


def _pair(**bounds: Any) -> Callable[[Any, str], tuple[float, float]]:
    def check(value: Any, name: str) -> tuple[float, float]:
        return check_pair(value, name, **bounds)

    return check


class Hyperparameter(Generic[T]):
    """One hyperparameter of an update rule, declared in the class body.

    The attribute's name is the torch.optim argument name; ``check`` validates and converts
    every value assigned to it (at construction and afterwards); ``fills`` names the
    attribute(s) of the core's ``OptimConfig`` it is written to (a pair such as ``betas``
    fills two), by default its own name. ``config()``, ``hyperparameters()`` and ``repr``
    are all produced from these declarations.
    """

    def __init__(
        self, check: Callable[[Any, str], T], fills: str | tuple[str, ...] = "", doc: str = ""
    ) -> None:
        self.check = check
        self._fills = fills
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def fills(self) -> tuple[str, ...]:
        """The ``OptimConfig`` attributes this hyperparameter is written to."""
        if isinstance(self._fills, tuple):
            return self._fills
        return (self._fills or self.name,)

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Hyperparameter[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__[self.name]

    def __set__(self, obj: object, value: Any) -> None:
        obj.__dict__[self.name] = self.check(value, self.name)

    def write(self, config: Any, obj: object) -> None:
        """Write this hyperparameter of ``obj`` into the core's ``OptimConfig``."""
        value = obj.__dict__[self.name]
        if isinstance(self._fills, tuple):
            for attribute, v in zip(self._fills, value):
                setattr(config, attribute, v)
        else:
            setattr(config, self._fills or self.name, value)


class Optimizer:
    """Base class: hyperparameters live here, the state (moments, step count) in the core,
    bound to the first network stepped.

    Each update rule declares its hyperparameters as :class:`Hyperparameter` class attributes,
    in the order of its torch.optim signature; assigning one (``opt.lr = 0.01``) checks it.
    Copies and pickles carry the state too (:meth:`state_dict`): a copy continues where the
    original stood, on the next network of the same size and dtype that it steps.
    """

    _kind: Any = None
    _fields: tuple[Hyperparameter[Any], ...] = ()  # set for each subclass, base class first
    _state: Any  # the backend's OptimizerState32 / 64 (CPU core or GPU), or None
    _owner: weakref.ref[Any] | None  # the network (MLP) the state is bound to
    _made_for: tuple[np.dtype, int] | None  # the dtype and n_params the state was made for

    lr = Hyperparameter(_real(min_value=0), doc="Learning rate; may be changed between steps.")

    def __init__(self, lr: float) -> None:
        if self._kind is None:
            raise TypeError(
                "Optimizer is a base class: use SGD, Adam, AdamW, RMSProp, AdaGrad or LineSearchSGD"
            )
        self.lr = lr
        self.reset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, Hyperparameter[Any]] = {}
        for klass in reversed(cls.__mro__):
            for name, attr in vars(klass).items():
                if isinstance(attr, Hyperparameter):
                    fields[name] = attr
        cls._fields = tuple(fields.values())

    @classmethod
    def hyperparameter_fields(cls) -> tuple[Hyperparameter[Any], ...]:
        """The declared hyperparameters, the base class's ``lr`` first."""
        return cls._fields

    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters by torch.optim name, in signature order."""
        return {f.name: getattr(self, f.name) for f in self.hyperparameter_fields()}

    # The state buffers this rule may keep (the core's names: see state_dict).
    _buffer_names: frozenset[str] = frozenset()

    def _buffers(self) -> set[str]:
        """The state buffers this rule keeps, with these hyperparameters, once it has stepped."""
        return set()

    def config(self) -> _core.OptimConfig:
        """The core's configuration of this update rule."""
        c = _core.OptimConfig()
        c.kind = self._kind
        for f in self._fields:
            f.write(c, self)
        return c

    def state_for(self, net: MLP) -> Any:
        """The core state of this optimizer, created for ``net`` on first use, on the
        network's device; a state that is bound to no network (copied, unpickled, loaded)
        binds to ``net`` if it was made for a network of the same size and dtype. When the
        network has moved to another device since (:meth:`MLP.to`), the state moves with it."""
        check_net(net)
        backend = net.backend
        if self._state is None:
            self._state = backend.optimizer_state(net.dtype, net.n_params)
            self._made_for = (net.dtype, net.n_params)
        elif self._owner is not None and self._owner() is not net:
            raise ValueError(
                "net: this optimizer already holds the state of another network; "
                "call opt.reset() or create a new optimizer"
            )
        elif self.state_mismatch(net):
            raise ValueError(
                f"net: this optimizer's {self.state_mismatch(net)}; call opt.reset() to start "
                "afresh"
            )
        if not backend.owns(self._state):
            moved = backend.optimizer_state(net.dtype, net.n_params)
            moved.load_state_dict(self._state.state_dict())
            self._state = moved
        self._owner = weakref.ref(net)
        return self._state

    def state_mismatch(self, net: MLP) -> str | None:
        """Why this optimizer's state cannot step ``net``: it was made for a network of another
        size or dtype (``"state is for ... parameters, the network has ..."``); None when it
        fits, or there is no state yet."""
        if self._made_for is None or self._made_for == (net.dtype, net.n_params):
            return None
        dtype, n_params = self._made_for
        return (
            f"state is for {n_params} {dtype.name} parameters, the network has "
            f"{net.n_params} {net.dtype.name}"
        )

    @property
    def steps(self) -> int:
        """Number of updates applied since creation or the last :meth:`reset`."""
        return 0 if self._state is None else self._state.steps

    def reset(self) -> None:
        """Forget the state (moments, step count) and the network it was bound to."""
        self._state = None
        self._owner = None
        self._made_for = None

    def step(self, net: MLP) -> None:
        """Apply one update to ``net``'s parameters from its current gradients."""
        self.state_for(net).step(net.core, self.config())

    def state_dict(self) -> dict[str, Any] | None:
        """The state of the update rule, None before the first step (or after :meth:`reset`).

        Returns
        -------
        dict or None
            ``{"dtype": "float32" | "float64", "n_params": int, "core": {...}}``, ``core``
            being the core's own record: ``{"step": int, "momentum_fresh": bool, "buffers":
            {name: ndarray of shape (n_params,)}}``, the buffers copied, under torch's names
            (``momentum_buffer``; ``exp_avg``, ``exp_avg_sq``; ``square_avg``, ``grad_avg``;
            ``sum``). :meth:`load_state_dict` takes it back.
        """
        if self._state is None or self._made_for is None:
            return None
        core = self._state.state_dict()
        core = {**core, "buffers": {k: np.array(v) for k, v in core["buffers"].items()}}
        dtype, n_params = self._made_for
        return {"dtype": dtype.name, "n_params": n_params, "core": core}

    def load_state_dict(self, state: Mapping[str, Any] | None) -> None:
        """Take a state from :meth:`state_dict` (None: :meth:`reset`). It binds to the next
        network of its size and dtype that this optimizer steps.

        Raises
        ------
        ValueError
            ``state`` is not such a record, or the core refuses it (a buffer of the wrong
            size), or it is another rule's, or lacks a buffer this optimizer's next step needs
            (see the rule's buffer names), or a buffer holds NaN, or a running sum of squared
            gradients (``exp_avg_sq``, ``square_avg``, ``sum``) a negative entry.
        """
        if state is None:
            self.reset()
            return
        if not isinstance(state, Mapping) or sorted(state) != ["core", "dtype", "n_params"]:
            raise ValueError(f"state must be a record of state_dict(), got {state!r}"[:200])
        dtype = check_dtype(state["dtype"])
        n_params = check_scalar(state["n_params"], "state['n_params']", min_value=1, integer=True)
        cls = _core.OptimizerState32 if dtype == np.float32 else _core.OptimizerState64
        core_state = cls(n_params)
        try:
            core_state.load_state_dict(state["core"])
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"state['core'] does not fit a {type(self).__name__}: {err}") from None
        # Another rule's state, or one missing a buffer the next step would restart as zeros.
        # (A buffer the hyperparameters no longer use, momentum set to 0 after some steps, is
        # kept; an infinite entry, a square of a huge gradient, is a state Adam can be in.)
        buffers = state["core"]["buffers"]
        needed = self._buffers() if core_state.steps > 0 else set()
        if not needed <= set(buffers) <= self._buffer_names:
            raise ValueError(
                f"state['core'] holds the buffers {sorted(buffers)}; a {type(self).__name__} "
                f"keeps {sorted(self._buffer_names)}, with these hyperparameters after a step "
                f"{sorted(needed)}: the state of another optimizer?"
            )
        for name, values in buffers.items():
            if np.isnan(values).any():
                raise ValueError(f"state['core'] buffer {name!r} holds NaN")
            if name in _SQUARES and (np.asarray(values) < 0).any():  # sqrt of it: NaN steps
                raise ValueError(f"state['core'] buffer {name!r} holds a negative square sum")
        self.reset()
        self._state, self._made_for = core_state, (dtype, n_params)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles carry the hyperparameters and the state, not the network the
        state is bound to: a copy binds to the next network it steps."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("_state", "_owner")}
        state["_made_for"] = None
        state["state"] = self.state_dict()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        saved = state.pop("state", None)
        self.__dict__.update(state)
        self.reset()
        self.load_state_dict(saved)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


# The buffers that sum squared gradients: never negative in a run.
_SQUARES = frozenset({"exp_avg_sq", "square_avg", "sum"})
_NON_NEGATIVE = _real(min_value=0)
# eps divides by sqrt(state) + eps: at 0 a zero gradient gives 0/0 = NaN parameters.
_POSITIVE = _real(min_value=0, min_inclusive=False)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay, as
    ``torch.optim.SGD``."""

    _kind = _core.Optim.sgd
    _buffer_names = frozenset({"momentum_buffer"})

    momentum = Hyperparameter(_NON_NEGATIVE)
    dampening = Hyperparameter(_real(min_value=0, max_value=1))
    nesterov = Hyperparameter(check_bool)
    weight_decay = Hyperparameter(_NON_NEGATIVE)

    def __init__(
        self,
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.momentum, self.dampening = momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening = 0")

    def _buffers(self) -> set[str]:
        return {"momentum_buffer"} if self.momentum != 0 else set()


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), L2 weight decay added to the gradient: ``torch.optim.Adam``."""

    _kind = _core.Optim.adam
    _buffer_names = frozenset({"exp_avg", "exp_avg_sq"})

    betas = Hyperparameter(
        _pair(min_value=0, max_value=1, max_inclusive=False), fills=("beta1", "beta2")
    )
    eps = Hyperparameter(_POSITIVE)
    weight_decay = Hyperparameter(_NON_NEGATIVE)

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay

    def _buffers(self) -> set[str]:
        return {"exp_avg", "exp_avg_sq"}


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
    _buffer_names = frozenset({"square_avg", "grad_avg", "momentum_buffer"})

    alpha = Hyperparameter(_real(min_value=0, max_value=1))
    eps = Hyperparameter(_POSITIVE)
    momentum = Hyperparameter(_NON_NEGATIVE)
    centered = Hyperparameter(check_bool)
    weight_decay = Hyperparameter(_NON_NEGATIVE)

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
        self.alpha, self.eps, self.momentum = alpha, eps, momentum
        self.centered, self.weight_decay = centered, weight_decay

    def _buffers(self) -> set[str]:
        return (
            {"square_avg"}
            | ({"grad_avg"} if self.centered else set())
            | ({"momentum_buffer"} if self.momentum > 0 else set())
        )


class AdaGrad(Optimizer):
    """AdaGrad, as ``torch.optim.Adagrad`` (initial accumulator 0)."""

    _kind = _core.Optim.adagrad
    _buffer_names = frozenset({"sum"})

    eps = Hyperparameter(_POSITIVE)
    lr_decay = Hyperparameter(_NON_NEGATIVE)
    weight_decay = Hyperparameter(_NON_NEGATIVE)

    def __init__(
        self, lr: float = 1e-2, eps: float = 1e-10, lr_decay: float = 0.0, weight_decay: float = 0.0
    ) -> None:
        super().__init__(lr)
        self.eps, self.lr_decay, self.weight_decay = eps, lr_decay, weight_decay

    def _buffers(self) -> set[str]:
        return {"sum"}


class LineSearchSGD(Optimizer):
    """Gradient descent whose step size is found on each batch by Armijo backtracking.

    From ``t = lr``, the step shrinks by ``shrink`` until
    ``loss(w - t g) <= loss(w) - c1 t ||g||^2`` (at most ``max_iter`` tries); if no step
    qualifies the weights are left unchanged. On a full batch the loss therefore never rises.
    In :class:`~fastbp.Trainer` the search runs inside the core's epoch loop; by hand, call
    ``opt.step(net, X, Y)``.
    """

    _kind = _core.Optim.line_search

    c1 = Hyperparameter(_real(min_value=0, max_value=1, max_inclusive=False))
    shrink = Hyperparameter(
        _real(min_value=0, max_value=1, min_inclusive=False, max_inclusive=False)
    )
    max_iter = Hyperparameter(_integer(min_value=1, max_value=2**31 - 1))  # the core's int

    def __init__(
        self, lr: float = 1.0, c1: float = 1e-4, shrink: float = 0.5, max_iter: int = 20
    ) -> None:
        super().__init__(lr)
        self.c1, self.shrink, self.max_iter = c1, shrink, max_iter
        self.last_step = 0.0

    def step(self, net: MLP, X: Any = None, Y: Any = None) -> float:  # type: ignore[override]
        """Compute the gradient on (X, Y), search the step along it and apply it.

        Returns the batch loss before the step; the step taken is in ``self.last_step``.
        """
        check_net(net)
        if X is None or Y is None:
            raise TypeError("LineSearchSGD.step needs the batch: opt.step(net, X, Y)")
        check_batch_rows(X)
        X, Y = check_data(net, X, Y, y_name="Y")
        loss, self.last_step = net.backend.line_search_step(net.core, self.config(), X, Y)
        return loss


def clip_grad_norm(net: MLP, max_norm: float) -> float:
    """Scale all gradients (weights and biases) so that their global L2 norm is at most
    ``max_norm``; return the norm before clipping (``torch.nn.utils.clip_grad_norm_``).
    ``max_norm=math.inf`` clips nothing: the global norm, measured."""
    check_net(net)
    return net.core.clip_grad_norm(_clip_bound(max_norm, "max_norm"))


def clip_grad_value(net: MLP, value: float) -> None:
    """Clamp every gradient entry to [-value, value] (``torch.nn.utils.clip_grad_value_``;
    ``value=math.inf`` changes nothing)."""
    check_net(net)
    net.core.clip_grad_value(_clip_bound(value, "value"))


def _clip_bound(value: Any, name: str) -> float:
    """A positive clipping bound; +inf (no clipping) too, as torch takes it."""
    if isinstance(value, (float, np.floating)) and value == math.inf:
        return math.inf
    return check_scalar(value, name, min_value=0, min_inclusive=False)


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
        self._resolved_seed = resolve_seed(self.seed)
        self.t = 0

    @property
    def resolved_seed(self) -> int:
        """The seed the core draws this noise from: ``seed``, or one drawn from the OS when
        ``seed`` is None. ``GradientNoise(eta, gamma, seed=noise.resolved_seed)`` repeats the
        same noise."""
        return self._resolved_seed

    @property
    def t(self) -> int:
        """Steps taken so far: the next noise has variance eta / (1 + t) ** gamma."""
        return self._t

    @t.setter
    def t(self, value: int) -> None:
        self._t = check_scalar(value, "t", min_value=0, max_value=_core.MAX_STEPS, integer=True)

    def variance(self, t: int | None = None) -> float:
        """The noise variance at step ``t`` (default: the next step)."""
        return self.eta / (1.0 + (self.t if t is None else t)) ** self.gamma

    def apply(self, net: MLP) -> None:
        """Add this step's noise to ``net``'s gradients and advance the step counter."""
        check_net(net)
        net.core.add_gradient_noise(self.eta, self.gamma, self.resolved_seed, self.t)
        self.t += 1

    def __repr__(self) -> str:
        return f"GradientNoise(eta={self.eta}, gamma={self.gamma}, seed={self.seed})"
