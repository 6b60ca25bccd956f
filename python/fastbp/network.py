"""The multi-layer perceptron: a thin wrapper over the core network of its device. On the CPU
Python sees the parameters and gradients as writable numpy views (no copies); on a GPU they
live in device memory, and Python sees read-only host copies (:class:`HostCopy`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NoReturn, overload

import numpy as np

from ._backend import Backend, backend_for
from .validation import (
    AUTO_INIT,
    CLASSIFICATION_LOSSES,
    LOSSES,
    check_activations,
    check_batch_rows,
    check_bool,
    check_choice,
    check_data,
    check_dtype,
    check_init,
    check_inputs,
    check_layer_params,
    check_layer_sizes,
    check_network_memory,
    check_output_activation,
    check_params_vector,
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


_HOST_COPY_WRITE = (
    "this array is a host copy of a GPU network's parameters or gradients: writing to it "
    "would not change the network. Use net.set_weights(weights, biases) or "
    "net.set_params(flat) (net.set_grads(flat) for gradients), or move the network with "
    "net.to('cpu')"
)


class HostCopy(np.ndarray):
    """A read-only host copy of a GPU network's parameters or gradients: what ``weights``,
    ``biases``, ``params`` (and the gradients) of an MLP on a GPU return. Reading works as for
    any ndarray (results of arithmetic are plain ndarrays); writing into it raises ValueError
    pointing at :meth:`MLP.set_weights`, :meth:`MLP.set_params` and :meth:`MLP.to`. Copies
    (``np.array(a)``, ``a.copy()``) are writable."""

    def __setitem__(self, key: Any, value: Any) -> None:
        if not self.flags.writeable:
            raise ValueError(_HOST_COPY_WRITE)
        super().__setitem__(key, value)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        if out is not None:
            if any(isinstance(o, HostCopy) and not o.flags.writeable for o in out):
                raise ValueError(_HOST_COPY_WRITE)
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, HostCopy) else o for o in out)
        plain = tuple(i.view(np.ndarray) if isinstance(i, HostCopy) else i for i in inputs)
        return getattr(ufunc, method)(*plain, **kwargs)

    def copy(self, order: Any = "C") -> np.ndarray:
        return np.array(self.view(np.ndarray), order=order, copy=True)


def _host_copy(flat: np.ndarray) -> HostCopy:
    """``flat`` (a fresh host array) as a read-only HostCopy."""
    out = flat.view(HostCopy)
    out.flags.writeable = False
    return out


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
    device : {"cpu", "cuda", "cuda:N"}, default="cpu"
        Where the parameters, gradients and optimizer state live and the arithmetic runs.
        "cuda" needs fastbp built with its CUDA backend and a usable NVIDIA GPU
        (:func:`fastbp.cuda_available`); otherwise a ValueError says which is missing.
        :meth:`to` moves a network.
    allow_tf32 : bool, default=False
        On a GPU in float32, let the matrix products use TF32 tensor cores (inputs rounded to
        10 mantissa bits, the biases too: they are a row of the products). Faster, less
        exact; no effect on the CPU or in float64.

    Attributes
    ----------
    weights, biases : LayerViews of ndarray of shape (n_in, n_out) and (n_out,)
        On the CPU, writable views into the flat parameter buffer ``params``, one per weight
        layer, in a sequence that cannot be changed: set values with
        ``net.weights[l][...] = W``. On a GPU, read-only host copies (:class:`HostCopy`),
        made at each access: set values with :meth:`set_weights` or :meth:`set_params`.
    grad_weights, grad_biases : LayerViews of ndarray
        Views into the flat gradient buffer ``grads`` (host copies on a GPU), filled by
        :meth:`backward`.

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
        device: str = "cpu",
        allow_tf32: bool = False,
    ) -> None:
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.activations = check_activations(activation, len(self.layer_sizes) - 2)
        self.loss = check_choice(loss, "loss", LOSSES)
        self.output_activation = check_output_activation(output_activation, self.loss)
        if self.loss == "cross_entropy" and self.layer_sizes[-1] < 2:
            raise ValueError(
                "layer_sizes: loss='cross_entropy' needs at least 2 outputs (a softmax over one "
                "is always 1, its gradient 0); for 2 classes use 1 output with "
                "loss='binary_cross_entropy'"
            )
        self.dtype = check_dtype(dtype)
        self.init = check_init(init, self.dtype)
        self.seed = check_seed(seed)
        self.allow_tf32 = check_bool(allow_tf32, "allow_tf32")
        self.device = backend_for(device).device
        check_network_memory(self.layer_sizes, self.dtype, on_host=self.device == "cpu")
        self._make_core()
        self.reset_parameters()

    def _make_core(self) -> None:
        """A fresh core network of this structure (zero parameters) on ``self.device``, and
        the views into it (on the CPU)."""
        self._adopt(*self._new_core(self.device))

    def _new_core(self, device: str) -> tuple[Backend, Any]:
        """A core network of this structure (zero parameters) on ``device`` and its backend,
        not yet this network's (a failure leaves the network as it was)."""
        backend = backend_for(device)
        net = backend.network(
            self.dtype, self.layer_sizes, self.activations, self.output_activation, self.loss
        )
        if backend.device != "cpu":
            net.allow_tf32 = self.allow_tf32
        return backend, net

    def _adopt(self, backend: Backend, net: Any) -> None:
        """Make ``net`` on ``backend`` this network's core, with the views into it."""
        self._backend, self._net, self.device = backend, net, backend.device
        if self.device == "cpu":
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
        """Weight matrices, ndarray views of shape (n_in, n_out) into :attr:`params` (on a
        GPU, read-only host copies: see :meth:`set_weights`)."""
        return self._weights if self.device == "cpu" else self._layer_copies(False)[0]

    @property
    def biases(self) -> LayerViews:
        """Bias vectors, ndarray views of shape (n_out,) into :attr:`params` (on a GPU,
        read-only host copies)."""
        return self._biases if self.device == "cpu" else self._layer_copies(False)[1]

    @property
    def grad_weights(self) -> LayerViews:
        """Weight gradients of the last :meth:`backward`, views into :attr:`grads` (on a GPU,
        read-only host copies)."""
        return self._grad_weights if self.device == "cpu" else self._layer_copies(True)[0]

    @property
    def grad_biases(self) -> LayerViews:
        """Bias gradients of the last :meth:`backward`, views into :attr:`grads` (on a GPU,
        read-only host copies)."""
        return self._grad_biases if self.device == "cpu" else self._layer_copies(True)[1]

    def _layer_offsets(self) -> list[tuple[int, int, int, int]]:
        """(offset, n_in, n_out, bias offset) of each weight layer in the flat buffers."""
        out, offset = [], 0
        for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:]):
            out.append((offset, n_in, n_out, offset + n_in * n_out))
            offset += (n_in + 1) * n_out
        return out

    def _layer_copies(self, grads: bool) -> tuple[LayerViews, LayerViews]:
        """Per layer views of one host copy of the parameters (or gradients) of a GPU net."""
        flat = self.grads if grads else self.params
        ws = [flat[o : o + i * k].reshape(i, k) for o, i, k, _ in self._layer_offsets()]
        bs = [flat[b : b + k] for _, _, k, b in self._layer_offsets()]
        prefix = "grad_" if grads else ""
        return LayerViews(prefix + "weights", ws), LayerViews(prefix + "biases", bs)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Draw fresh weights by the ``init`` scheme (with ``seed``, or the network's) and zero
        the biases and gradients."""
        rng = np.random.default_rng(self.seed if seed is None else check_seed(seed))
        drawn = []
        for (_, n_in, n_out, _), activation in zip(self._layer_offsets(), self.layer_activations):
            scheme = self.init
            if scheme == "auto":
                scheme = "he_normal" if AUTO_INIT[activation] == "he" else "xavier_uniform"
            drawn.append(_init_weight(rng, scheme, n_in, n_out))
        # check_init bounds the scale; this makes "finite in the network's dtype" a guarantee.
        largest = np.finfo(self.dtype).max
        if not all(np.isfinite(W).all() and np.abs(W).max() <= largest for W in drawn):
            raise ValueError(f"init {self.init!r} drew weights beyond {self.dtype.name}'s range")
        self.set_weights(drawn, [np.zeros(W.shape[1]) for W in drawn])
        self._backend.set_grads(self._net, np.zeros(self.n_params, dtype=self.dtype))

    def set_weights(self, weights: Sequence[Any], biases: Sequence[Any]) -> None:
        """Set every layer's weights and biases, on any device.

        Parameters
        ----------
        weights : sequence of array-like of shape (n_in, n_out)
            One per weight layer, as :attr:`weights`.
        biases : sequence of array-like of shape (n_out,)
            One per weight layer, as :attr:`biases`.

        NaN, infinity and values beyond the network's dtype raise ValueError.
        """
        ws, bs = check_layer_params(weights, biases, self.layer_sizes, self.dtype)
        flat = np.empty(self.n_params, dtype=self.dtype)
        for (o, i, k, b), W, B in zip(self._layer_offsets(), ws, bs):
            flat[o : o + i * k] = W.reshape(-1)
            flat[b : b + k] = B
        self._backend.set_params(self._net, flat)

    def set_params(self, flat: Any) -> None:
        """Set all parameters from one flat array of shape (n_params,), laid out as
        :attr:`params` (W_0, b_0, W_1, b_1, ..., row-major W), on any device. NaN, infinity
        and values beyond the network's dtype raise ValueError."""
        self._backend.set_params(
            self._net, check_params_vector(flat, self.n_params, self.dtype, "flat")
        )

    def set_grads(self, flat: Any) -> None:
        """Set all gradients from one flat array of shape (n_params,), laid out as
        :attr:`grads`, on any device; finite values only, as :meth:`set_params`."""
        self._backend.set_grads(
            self._net, check_params_vector(flat, self.n_params, self.dtype, "flat")
        )

    def to(self, device: str) -> MLP:
        """Move the network's parameters and gradients to ``device`` ("cpu", "cuda" or
        "cuda:N") and return the network. Views taken of it before (``net.weights`` on the
        CPU) no longer belong to it; an optimizer that stepped it moves its state along at its
        next step. A ValueError says why a device cannot be used."""
        backend = backend_for(device)
        if backend is self._backend:
            return self
        backend, net = self._new_core(device)  # then move: a failure changes nothing
        backend.set_params(net, np.array(self._backend.get_params(self._net)))
        backend.set_grads(net, np.array(self._backend.get_grads(self._net)))
        self._adopt(backend, net)
        return self

    # ---- structure -------------------------------------------------------------------------
    @property
    def core(self) -> Any:
        """The compiled network (``Network32`` or ``Network64`` of ``fastbp._core``, or of
        ``fastbp._cuda`` on a GPU) that fastbp's own modules (optimizers, Trainer, lr_find)
        hand to the backend. Its methods take arrays already checked and converted (see
        :mod:`fastbp.validation`) and are not a stable public API: use the methods of MLP
        instead."""
        return self._net

    @property
    def backend(self) -> Backend:
        """The primitives of this network's device (:mod:`fastbp._backend`), for fastbp's own
        modules; not a stable public API."""
        return self._backend

    @property
    def params(self) -> np.ndarray:
        """Flat view of all parameters: W_0, b_0, W_1, b_1, ... (row-major W). On a GPU, a
        read-only host copy (:class:`HostCopy`): set them with :meth:`set_params`."""
        flat = self._backend.get_params(self._net)
        return flat if self.device == "cpu" else _host_copy(flat)

    @property
    def grads(self) -> np.ndarray:
        """Flat view of all gradients, laid out like :attr:`params` (on a GPU, a read-only
        host copy)."""
        flat = self._backend.get_grads(self._net)
        return flat if self.device == "cpu" else _host_copy(flat)

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
        device = "" if self.device == "cpu" else f", device={self.device!r}"
        return (
            f"MLP({self.layer_sizes}, activation={self.activations}, loss={self.loss!r}, "
            f"output_activation={self.output_activation!r}, dtype={self.dtype.name!r}{device})"
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

    def layer_stats(self, X: Any) -> dict[str, np.ndarray]:
        """What one forward pass over X shows of each weight layer, samples and units pooled.

        Returns
        -------
        dict of str to ndarray
            ``saturation`` and ``dead`` as in :meth:`activation_stats`;
            ``preactivation_mean``, ``preactivation_std``, ``activation_mean``,
            ``activation_std`` (each of shape (n_layers,)): mean and standard deviation
            (ddof 0) of the pre-activations ``Z = A_prev W + b`` and of the outputs
            ``A = f(Z)``; ``activation_hist`` of shape (n_layers, HIST_BINS): the share of
            each layer's outputs in the bins of its activation kind
            (:func:`fastbp.history.hist_edges`). The trainer records these each epoch.
        """
        return self._net.layer_stats(check_inputs(self, X))

    def copy(self) -> MLP:
        """An independent network with the same structure and parameters, on the same
        device."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.layer_sizes, clone.activations = list(self.layer_sizes), list(self.activations)
        clone._make_core()
        clone._backend.set_params(clone._net, self._backend.snapshot(self._net))
        clone._backend.set_grads(clone._net, self._backend.get_grads(self._net))
        return clone

    def save(
        self,
        path: Any,
        *,
        optimizer: Any = None,
        history: Any = None,
        grad_noise: Any = None,
    ) -> None:
        """Write this network to ``path`` (``.npz``, no pickle inside); ``fb.load(path)``
        gives it back. Save between epochs (a callback, or after ``fit``): while another
        thread trains the network, the weights and the optimizer's state are each copied
        whole, but possibly a step apart.

        Parameters
        ----------
        path : str, os.PathLike or binary file object
        optimizer : Optimizer, optional
            Saved with its state (moments, step count).
        history : History, optional
        grad_noise : GradientNoise, optional
            With these three, :func:`fastbp.load_checkpoint` returns what
            ``Trainer.fit(..., initial_epoch=len(history))`` needs to continue the run
            exactly. See :mod:`fastbp.io` for the file format.
        """
        from .io import save

        save(self, path, optimizer=optimizer, history=history, grad_noise=grad_noise)

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["params"] = np.array(self.params)
        state["grads"] = np.array(self.grads)  # as copy() and torch's deepcopy keep them
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        params = state.pop("params")
        grads = state.pop("grads", None)  # absent from pickles of earlier versions
        state.setdefault("device", "cpu")
        state.setdefault("allow_tf32", False)
        self.__dict__.update(state)
        self._make_core()
        self._backend.set_params(self._net, params)
        if grads is not None:
            self._backend.set_grads(self._net, grads)
