"""The multi-layer perceptron: a thin wrapper over the core network, whose parameters and
gradients Python sees as writable numpy views (no copies)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NoReturn, overload

import numpy as np

from . import _core
from .validation import (
    AUTO_INIT,
    CLASSIFICATION_LOSSES,
    LOSSES,
    check_activations,
    check_batch_rows,
    check_choice,
    check_data,
    check_dtype,
    check_init,
    check_inputs,
    check_layer_sizes,
    check_network_memory,
    check_output_activation,
    check_seed,
)


def _init_weight(rng: np.random.Generator, scheme: Any, n_in: int, n_out: int) -> np.ndarray:
    """One weight matrix (n_in, n_out) drawn in float64 by the named scheme."""
    if isinstance(scheme, tuple):
        kind, scale = scheme
        if kind == "normal":
            return rng.normal(0.0, scale, (n_in, n_out))
        return rng.uniform(-scale, scale, (n_in, n_out))
    if scheme == "xavier_uniform":
        limit = np.sqrt(6.0 / (n_in + n_out))
        return rng.uniform(-limit, limit, (n_in, n_out))
    if scheme == "xavier_normal":
        return rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), (n_in, n_out))
    if scheme == "he_uniform":
        limit = np.sqrt(6.0 / n_in)
        return rng.uniform(-limit, limit, (n_in, n_out))
    if scheme == "he_normal":
        return rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out))
    if scheme == "lecun_normal":
        return rng.normal(0.0, np.sqrt(1.0 / n_in), (n_in, n_out))
    # orthogonal: QR of a Gaussian matrix, signs fixed so the result is uniformly distributed
    a = rng.normal(0.0, 1.0, (max(n_in, n_out), min(n_in, n_out)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q if n_in >= n_out else q.T


class LayerViews(Sequence[np.ndarray]):
    """A read-only sequence of writable numpy views, one per weight layer: what
    :attr:`MLP.weights`, :attr:`~MLP.biases`, :attr:`~MLP.grad_weights` and
    :attr:`~MLP.grad_biases` hold.

    Each view writes through to the network's flat buffer; the sequence itself cannot change.
    Replacing an entry (``net.weights[0] = W``) would only replace the entry, not the
    network's weights, so it raises TypeError: write into the view, ``net.weights[0][...] = W``.
    It indexes, slices, iterates and concatenates (``+`` gives a list) like a list, and
    compares equal to a list of the same arrays.
    """

    __slots__ = ("_name", "_views")
    __hash__ = None  # type: ignore[assignment]  # compares like a list, so unhashable like one

    def __init__(self, name: str, views: Iterable[np.ndarray]) -> None:
        self._name = name
        self._views = tuple(views)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> LayerViews: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | LayerViews:
        if isinstance(index, slice):
            return LayerViews(self._name, self._views[index])
        return self._views[index]

    def __len__(self) -> int:
        return len(self._views)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._views)

    def __setitem__(self, index: Any, value: Any) -> NoReturn:
        raise TypeError(
            f"net.{self._name}[{index!r}] = ... would replace the entry, not the network's "
            f"values: write into the view instead, net.{self._name}[{index!r}][...] = ..."
        )

    def __delitem__(self, index: Any) -> NoReturn:
        raise TypeError(f"net.{self._name} has one view per weight layer; none can be removed")

    def __add__(self, other: Iterable[Any]) -> list[Any]:
        return [*self._views, *other]

    def __radd__(self, other: Iterable[Any]) -> list[Any]:
        return [*other, *self._views]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (LayerViews, list)):
            return list(self._views) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"LayerViews({self._name!r}, {list(self._views)!r})"


class MLP:
    """A dense multi-layer perceptron, trained by backpropagation in the C++ core.

    Parameters
    ----------
    layer_sizes : list of int
        ``[n_in, hidden..., n_out]``; two entries make a network without a hidden layer.
    activation : str or list of str, default="relu"
        Hidden activation(s): identity, sigmoid, tanh, relu, leaky_relu, elu, softplus, gelu,
        silu. A list gives one name per hidden layer.
    loss : {"mse", "cross_entropy", "binary_cross_entropy"}, default="mse"
    output_activation : str or None
        None picks identity for mse, softmax for cross_entropy, sigmoid for
        binary_cross_entropy (the last two are fused into their loss); mse accepts any
        activation, softmax included.
    init : str or tuple, default="auto"
        "auto" (He normal before ReLU-family layers, Xavier uniform otherwise),
        "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "lecun_normal",
        "orthogonal", ("normal", std) or ("uniform", limit). Biases start at zero.
    dtype : {"float32", "float64"}, default="float32"
    seed : int or None
        Seed of the initialisation; the same seed gives bit-identical weights.

    Attributes
    ----------
    weights, biases : LayerViews of ndarray of shape (n_in, n_out) and (n_out,)
        Writable views into the flat parameter buffer ``params``, one per weight layer, in a
        sequence that cannot be changed: set values with ``net.weights[l][...] = W``.
    grad_weights, grad_biases : LayerViews of ndarray
        Views into the flat gradient buffer ``grads``, filled by :meth:`backward`.

    Examples
    --------
    >>> import numpy as np, fastbp as fb
    >>> net = fb.MLP([4, 16, 3], activation="tanh", loss="cross_entropy", seed=0)
    >>> X = np.random.default_rng(0).normal(size=(8, 4))
    >>> loss = net.backward(X, np.array([0, 1, 2, 0, 1, 2, 0, 1]))
    >>> net.grad_norms().shape
    (2,)
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str | Sequence[str] = "relu",
        loss: str = "mse",
        output_activation: str | None = None,
        init: Any = "auto",
        dtype: Any = "float32",
        seed: int | None = None,
    ) -> None:
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.activations = check_activations(activation, len(self.layer_sizes) - 2)
        self.loss = check_choice(loss, "loss", LOSSES)
        self.output_activation = check_output_activation(output_activation, self.loss)
        self.dtype = check_dtype(dtype)
        self.init = check_init(init, self.dtype)
        self.seed = check_seed(seed)
        check_network_memory(self.layer_sizes, self.dtype)
        self._make_core()
        self.reset_parameters()

    def _make_core(self) -> None:
        """A fresh core network of this structure (zero parameters) and the views into it."""
        core_cls = _core.Network32 if self.dtype == np.float32 else _core.Network64
        self._net = core_cls(self.layer_sizes, self.activations, self.output_activation, self.loss)
        self._bind_views()

    def _bind_views(self) -> None:
        layers = self._net.layer_views(False)
        grads = self._net.layer_views(True)
        self._weights = LayerViews("weights", (w for w, _ in layers))
        self._biases = LayerViews("biases", (b for _, b in layers))
        self._grad_weights = LayerViews("grad_weights", (w for w, _ in grads))
        self._grad_biases = LayerViews("grad_biases", (b for _, b in grads))

    @property
    def weights(self) -> LayerViews:
        """Weight matrices, ndarray views of shape (n_in, n_out) into :attr:`params`."""
        return self._weights

    @property
    def biases(self) -> LayerViews:
        """Bias vectors, ndarray views of shape (n_out,) into :attr:`params`."""
        return self._biases

    @property
    def grad_weights(self) -> LayerViews:
        """Weight gradients of the last :meth:`backward`, views into :attr:`grads`."""
        return self._grad_weights

    @property
    def grad_biases(self) -> LayerViews:
        """Bias gradients of the last :meth:`backward`, views into :attr:`grads`."""
        return self._grad_biases

    def reset_parameters(self, seed: int | None = None) -> None:
        """Draw fresh weights by the ``init`` scheme (with ``seed``, or the network's) and zero
        the biases and gradients."""
        rng = np.random.default_rng(self.seed if seed is None else check_seed(seed))
        drawn = []
        for w, activation in zip(self.weights, self.layer_activations):
            scheme = self.init
            if scheme == "auto":
                scheme = "he_normal" if AUTO_INIT[activation] == "he" else "xavier_uniform"
            drawn.append(_init_weight(rng, scheme, *w.shape))
        # check_init bounds the scale; this makes "finite in the network's dtype" a guarantee.
        largest = np.finfo(self.dtype).max
        if not all(np.isfinite(W).all() and np.abs(W).max() <= largest for W in drawn):
            raise ValueError(f"init {self.init!r} drew weights beyond {self.dtype.name}'s range")
        for w, b, W in zip(self.weights, self.biases, drawn):
            w[...] = W
            b[...] = 0
        self.grads[...] = 0

    # ---- structure -------------------------------------------------------------------------
    @property
    def core(self) -> Any:
        """The compiled network (``fastbp._core.Network32`` or ``Network64``) that fastbp's own
        modules (optimizers, Trainer, lr_find) hand to the core. Its methods take arrays already
        checked and converted (see :mod:`fastbp.validation`) and are not a stable public API:
        use the methods of MLP instead."""
        return self._net

    @property
    def params(self) -> np.ndarray:
        """Flat view of all parameters: W_0, b_0, W_1, b_1, ... (row-major W)."""
        return self._net.params

    @property
    def grads(self) -> np.ndarray:
        """Flat view of all gradients, laid out like :attr:`params`."""
        return self._net.grads

    @property
    def n_params(self) -> int:
        return self._net.n_params

    @property
    def n_layers(self) -> int:
        """Number of weight layers (``len(layer_sizes) - 1``)."""
        return len(self.layer_sizes) - 1

    @property
    def layer_activations(self) -> list[str]:
        """The activation after each weight layer, the output's included."""
        return self.activations + [self.output_activation]

    @property
    def is_classifier(self) -> bool:
        """Whether the loss is a classification loss (see ``validation.CLASSIFICATION_LOSSES``):
        then :meth:`evaluate` reports accuracy and :meth:`predict` returns labels."""
        return self.loss in CLASSIFICATION_LOSSES

    def __repr__(self) -> str:
        return (
            f"MLP({self.layer_sizes}, activation={self.activations}, loss={self.loss!r}, "
            f"output_activation={self.output_activation!r}, dtype={self.dtype.name!r})"
        )

    # ---- computation -----------------------------------------------------------------------
    def forward(self, X: Any) -> np.ndarray:
        """Output activations, ndarray of shape (n_samples, n_out) (probabilities for softmax)."""
        return self._net.forward(check_inputs(self, X))

    def backward(self, X: Any, Y: Any) -> float:
        """Forward and backward on one batch: fills the gradients of the batch-mean loss and
        returns that loss.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        Y : array-like
            Integer labels (n_samples,) or probability rows (n_samples, n_out) for
            cross_entropy; (n_samples, n_out), or (n_samples,) when n_out == 1, otherwise.
        """
        check_batch_rows(X)
        X, Y = check_data(self, X, Y, y_name="Y")
        loss_sum, _ = self._net.backward(X, Y)
        return loss_sum / X.shape[0]

    def compute_loss(self, X: Any, Y: Any) -> float:
        """Mean loss over the samples, without touching the gradients."""
        return self.evaluate(X, Y)["loss"]

    def evaluate(self, X: Any, Y: Any) -> dict[str, float]:
        """``{"loss": mean loss}``, plus ``"accuracy"`` for classification losses."""
        X, Y = check_data(self, X, Y, y_name="Y")
        loss_sum, correct = self._net.evaluate(X, Y)
        out = {"loss": loss_sum / X.shape[0]}
        if self.is_classifier:
            out["accuracy"] = correct / X.shape[0]
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Class labels (cross_entropy), 0/1 per output (binary_cross_entropy) or outputs (mse)."""
        out = self.forward(X)
        if self.loss == "cross_entropy":
            return out.argmax(axis=1)
        if self.loss == "binary_cross_entropy":
            return (out > 0.5).astype(np.int64)
        return out

    def grad_norms(self) -> np.ndarray:
        """L2 norm of each weight layer's gradient, ndarray of shape (n_layers,)."""
        return self._net.weight_grad_norms()

    def activation_stats(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Per weight layer, the share of saturated outputs (sigmoid: below 0.01 or above 0.99;
        tanh: |a| > 0.99) and the share of dead units (relu: zero on every sample of X); NaN
        where the measure does not apply. Two ndarrays of shape (n_layers,)."""
        return self._net.activation_stats(check_inputs(self, X))

    def copy(self) -> MLP:
        """An independent network with the same structure and parameters."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.layer_sizes, clone.activations = list(self.layer_sizes), list(self.activations)
        clone._make_core()
        clone.params[...] = self.params
        clone.grads[...] = self.grads
        return clone

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["params"] = np.array(self.params)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        params = state.pop("params")
        self.__dict__.update(state)
        self._make_core()
        self.params[...] = params
