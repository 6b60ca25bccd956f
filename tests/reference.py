"""Independent float64 NumPy reference for fastbp's tests.

Nothing here imports fastbp: it is written from the API contract (shared/DESIGN.md) and the
torch.optim documentation's pseudo-code, so that the tests compare the core against an
implementation that shares none of its code.

Conventions follow the contract: row-major, ``x @ W + b`` with ``W`` of shape (n_in, n_out); losses
are per-sample sums over the outputs, averaged over the batch.
"""

from __future__ import annotations

import math

import numpy as np

ACTIVATIONS = (
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "softplus",
    "gelu",
    "silu",
)
LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")
DEFAULT_OUTPUT = {"mse": "identity", "cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
# activations with a kink at 0 (finite differences must keep away from it)
KINKED = ("relu", "leaky_relu", "elu")
LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _phi_cdf(x):
    return 0.5 * (1.0 + _erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)))


def _phi_pdf(x):
    return np.exp(-0.5 * np.square(x)) / math.sqrt(2.0 * math.pi)


def activation(name, x):
    """Forward value of activation ``name`` (float64)."""
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return x.copy()
    if name == "sigmoid":
        return _sigmoid(x)
    if name == "tanh":
        return np.tanh(x)
    if name == "relu":
        return np.where(x > 0, x, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, x, LEAKY_SLOPE * x)
    if name == "elu":
        return np.where(x > 0, x, ELU_ALPHA * np.expm1(np.minimum(x, 0.0)))
    if name == "softplus":
        return np.logaddexp(0.0, x)
    if name == "gelu":
        return x * _phi_cdf(x)
    if name == "silu":
        return x * _sigmoid(x)
    if name == "softmax":
        return softmax(x)
    raise ValueError(f"unknown activation {name!r}")


def activation_derivative(name, x):
    """Derivative f'(x) of activation ``name`` (elementwise; not for softmax)."""
    x = np.asarray(x, dtype=np.float64)
    if name == "identity":
        return np.ones_like(x)
    if name == "sigmoid":
        s = _sigmoid(x)
        return s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(x)
        return 1.0 - t * t
    if name == "relu":
        return np.where(x > 0, 1.0, 0.0)
    if name == "leaky_relu":
        return np.where(x > 0, 1.0, LEAKY_SLOPE)
    if name == "elu":
        return np.where(x > 0, 1.0, ELU_ALPHA * np.exp(np.minimum(x, 0.0)))
    if name == "softplus":
        return _sigmoid(x)
    if name == "gelu":
        return _phi_cdf(x) + x * _phi_pdf(x)
    if name == "silu":
        s = _sigmoid(x)
        return s + x * s * (1.0 - s)
    raise ValueError(f"no elementwise derivative for {name!r}")


def softmax(z):
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def one_hot(labels, n_classes):
    labels = np.asarray(labels).astype(np.int64)
    Y = np.zeros((labels.shape[0], n_classes))
    Y[np.arange(labels.shape[0]), labels] = 1.0
    return Y


def _as_targets(Y, loss, n_out):
    Y = np.asarray(Y)
    if loss == "cross_entropy" and Y.ndim == 1:
        return one_hot(Y, n_out)
    Y = Y.astype(np.float64)
    if Y.ndim == 1:
        Y = Y.reshape(-1, 1)
    return Y


def _loss_inputs(loss, Z, Y, output_activation):
    """Z as float64, the output activation, Y as a (n, k) array, and n."""
    Z = np.asarray(Z, dtype=np.float64)
    out_act = output_activation or DEFAULT_OUTPUT[loss]
    return Z, out_act, _as_targets(Y, loss, Z.shape[1]), Z.shape[0]


def loss_value(loss, Z, Y, output_activation=None):
    """Batch-mean loss from the output pre-activations ``Z`` (logits)."""
    Z, out_act, Y, n = _loss_inputs(loss, Z, Y, output_activation)
    if loss == "mse":
        out = activation(out_act, Z)
        return float(0.5 * np.sum(np.square(out - Y)) / n)
    if loss == "cross_entropy":
        assert out_act == "softmax"
        return float(-np.sum(Y * log_softmax(Z)) / n)
    if loss == "binary_cross_entropy":
        assert out_act == "sigmoid"
        # max(z, 0) - z*y + log(1 + exp(-|z|)): the stable logistic loss from logits
        per = np.maximum(Z, 0.0) - Z * Y + np.log1p(np.exp(-np.abs(Z)))
        return float(np.sum(per) / n)
    raise ValueError(f"unknown loss {loss!r}")


def loss_grad_logits(loss, Z, Y, output_activation=None):
    """d(batch-mean loss)/dZ for the output pre-activations."""
    Z, out_act, Y, n = _loss_inputs(loss, Z, Y, output_activation)
    if loss == "mse":
        out = activation(out_act, Z)
        return (out - Y) * activation_derivative(out_act, Z) / n
    if loss == "cross_entropy":
        # d/dz of -sum_k y_k log softmax(z)_k = softmax(z) * sum_k y_k - y
        return (softmax(Z) * Y.sum(axis=1, keepdims=True) - Y) / n
    if loss == "binary_cross_entropy":
        return (_sigmoid(Z) - Y) / n
    raise ValueError(f"unknown loss {loss!r}")


def _hidden_list(activations, n_layers):
    if isinstance(activations, str):
        return [activations] * (n_layers - 1)
    return list(activations)


def mlp_forward(X, weights, biases, activations="relu", output_activation="identity"):
    """Returns (pre-activations zs, activations as) with as[0] = X; as[-1] is the output."""
    X = np.asarray(X, dtype=np.float64)
    hidden = _hidden_list(activations, len(weights))
    acts = hidden + [output_activation]
    zs, outs = [], [X]
    a = X
    for W, b, name in zip(weights, biases, acts):
        z = a @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        a = activation(name, z)
        zs.append(z)
        outs.append(a)
    return zs, outs


def mlp_output(X, weights, biases, activations="relu", output_activation="identity"):
    return mlp_forward(X, weights, biases, activations, output_activation)[1][-1]


def mlp_loss_and_grads(
    X, Y, weights, biases, activations="relu", loss="mse", output_activation=None
):
    """Batch-mean loss and its gradients (lists like weights / biases), by backprop in float64."""
    out_act = output_activation or DEFAULT_OUTPUT[loss]
    hidden = _hidden_list(activations, len(weights))
    zs, outs = mlp_forward(X, weights, biases, hidden, out_act)
    value = loss_value(loss, zs[-1], Y, out_act)
    delta = loss_grad_logits(loss, zs[-1], Y, out_act)
    gW = [None] * len(weights)
    gb = [None] * len(weights)
    for li in range(len(weights) - 1, -1, -1):
        gW[li] = outs[li].T @ delta
        gb[li] = delta.sum(axis=0)
        if li > 0:
            delta = (delta @ np.asarray(weights[li], np.float64).T) * activation_derivative(
                hidden[li - 1], zs[li - 1]
            )
    return value, gW, gb


def mlp_loss(X, Y, weights, biases, activations="relu", loss="mse", output_activation=None):
    out_act = output_activation or DEFAULT_OUTPUT[loss]
    zs, _ = mlp_forward(X, weights, biases, activations, out_act)
    return loss_value(loss, zs[-1], Y, out_act)


def random_params(layer_sizes, rng, scale=1.0):
    """Weights ~ N(0, scale^2 / n_in), biases ~ N(0, 0.1^2): smooth, non-degenerate points."""
    Ws, bs = [], []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        Ws.append(rng.normal(0.0, scale / math.sqrt(n_in), size=(n_in, n_out)))
        bs.append(rng.normal(0.0, 0.1, size=n_out))
    return Ws, bs


def flatten(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


# --------------------------------------------------------------------------------------------
# torch.optim update rules, written from the pseudo-code in the torch documentation.
# Each works in place on one flat float64 parameter vector; `step(params, grad)`.
# --------------------------------------------------------------------------------------------


class RefSGD:
    def __init__(self, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay
        self.buf = None

    def step(self, params, grad):
        g = np.array(grad, dtype=np.float64)
        if self.weight_decay != 0:
            g = g + self.weight_decay * params
        if self.momentum != 0:
            if self.buf is None:
                self.buf = g.copy()  # torch: first step b_1 = g_1
            else:
                self.buf = self.momentum * self.buf + (1.0 - self.dampening) * g
            if self.nesterov:
                g = g + self.momentum * self.buf
            else:
                g = self.buf
        params -= self.lr * g
        return params


class RefAdam:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled
        self.t = 0
        self.m = None
        self.v = None

    def step(self, params, grad):
        b1, b2 = self.betas
        g = np.array(grad, dtype=np.float64)
        if self.m is None:
            self.m = np.zeros_like(g)
            self.v = np.zeros_like(g)
        self.t += 1
        if self.decoupled:
            params *= 1.0 - self.lr * self.weight_decay  # AdamW
        elif self.weight_decay != 0:
            g = g + self.weight_decay * params  # Adam (L2)
        self.m = b1 * self.m + (1.0 - b1) * g
        self.v = b2 * self.v + (1.0 - b2) * g * g
        m_hat = self.m / (1.0 - b1**self.t)
        v_hat = self.v / (1.0 - b2**self.t)
        params -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return params


class RefAdamW(RefAdam):
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(lr, betas, eps, weight_decay, decoupled=True)


class RefRMSProp:
    def __init__(
        self, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0
    ):
        self.lr, self.alpha, self.eps = lr, alpha, eps
        self.momentum, self.centered, self.weight_decay = momentum, centered, weight_decay
        self.v = None
        self.g_ave = None
        self.buf = None

    def step(self, params, grad):
        a = self.alpha
        g = np.array(grad, dtype=np.float64)
        if self.v is None:
            self.v = np.zeros_like(g)
            self.g_ave = np.zeros_like(g)
            self.buf = np.zeros_like(g)  # torch: RMSprop's buffer starts at zero
        if self.weight_decay != 0:
            g = g + self.weight_decay * params
        self.v = a * self.v + (1.0 - a) * g * g
        v_tilde = self.v
        if self.centered:
            self.g_ave = a * self.g_ave + (1.0 - a) * g
            v_tilde = self.v - self.g_ave * self.g_ave
        if self.momentum > 0:
            self.buf = self.momentum * self.buf + g / (np.sqrt(v_tilde) + self.eps)
            params -= self.lr * self.buf
        else:
            params -= self.lr * g / (np.sqrt(v_tilde) + self.eps)
        return params


class RefAdaGrad:
    def __init__(self, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10):
        self.lr, self.lr_decay, self.weight_decay, self.eps = lr, lr_decay, weight_decay, eps
        self.t = 0
        self.sum = None

    def step(self, params, grad):
        g = np.array(grad, dtype=np.float64)
        if self.sum is None:
            self.sum = np.zeros_like(g)  # initial_accumulator_value = 0
        self.t += 1
        clr = self.lr / (1.0 + (self.t - 1) * self.lr_decay)
        if self.weight_decay != 0:
            g = g + self.weight_decay * params
        self.sum = self.sum + g * g
        params -= clr * g / (np.sqrt(self.sum) + self.eps)
        return params


def clip_grad_norm(grads, max_norm):
    """torch.nn.utils.clip_grad_norm_ on a list of arrays (in place); returns the total norm."""
    total = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    coef = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= coef
    return total


def clip_grad_value(grads, value):
    for g in grads:
        np.clip(g, -value, value, out=g)


# --------------------------------------------------------------------------------------------
# Glue (duck-typed, no fastbp import): copy parameters into / out of a network object that has
# the contract's `weights` / `biases` / `grad_weights` / `grad_biases` lists of views.
# --------------------------------------------------------------------------------------------


def load_params(net, weights, biases):
    for view, W in zip(net.weights, weights):
        view[...] = W
    for view, b in zip(net.biases, biases):
        view[...] = b


def get_params(net):
    return (
        [np.array(w, dtype=np.float64) for w in net.weights],
        [np.array(b, dtype=np.float64) for b in net.biases],
    )


def get_grads(net):
    return (
        [np.array(w, dtype=np.float64) for w in net.grad_weights],
        [np.array(b, dtype=np.float64) for b in net.grad_biases],
    )


def sgd_step_relu_mse(X, Y, weights, biases, lr, rounding=lambda a: a):
    """One SGD step of a relu -> identity network of two layers under mse, in float64;
    rounding(x) is applied to every input of every matrix product (test_bf16.py)."""
    W0, W1 = (w.astype(np.float64) for w in weights)
    b0, b1 = (b.astype(np.float64) for b in biases)
    x = X.astype(np.float64)
    z0 = rounding(x) @ rounding(W0) + b0
    a0 = np.maximum(z0, 0)
    out = rounding(a0) @ rounding(W1) + b1
    dz1 = (out - Y) / len(X)
    gW1 = rounding(a0).T @ rounding(dz1)
    dz0 = (rounding(dz1) @ rounding(W1).T) * (z0 > 0)
    gW0 = rounding(x).T @ rounding(dz0)
    return [W0 - lr * gW0, W1 - lr * gW1], [b0 - lr * dz0.sum(0), b1 - lr * dz1.sum(0)]


def bfloat16(x):
    """float32 -> nearest bfloat16 (ties to even: the top 16 bits of a float32), as float64."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)
