"""The JAX peer of bench/compare.py: the fastest honest JAX training loop for one configuration.

The whole epoch is one ``jax.jit``-compiled function: it draws the permutation and gathers the
shuffled data set once (as the torch loop does), then a ``jax.lax.scan`` runs one step per full
mini-batch (slice, forward, backward, update),
and, when the sample count is not a multiple of the batch size, the same step runs once more,
traced a second time for the remainder's static shape, inside the same compiled function. So the
last partial batch is trained on exactly its rows, its loss averaged over them, as fastbp and
torch do: no padding, no mask, no wasted rows. Data and parameters stay on the device between
epochs; parameters and optimizer state are donated to the next epoch.

The update rules are torch.optim's (and fastbp's), written out here rather than taken from optax:
  SGD   buf = momentum * buf + g (the first buf is g); p -= lr * buf   (momentum 0: p -= lr * g)
  Adam  m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; t += 1;
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
Losses are fastbp's: mean over the batch of -log softmax(z)_y, or of 1/2 sum_k (o_k - y_k)^2.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np


class JaxEpoch(NamedTuple):
    """What a benchmark needs to train one configuration with JAX.

    epoch(params, state, X, Y, key) -> (params, state, mean batch loss), compiled;
    params and state are donated (do not reuse the arrays passed in).
    """

    epoch: Any
    params: Any
    state: Any
    X: Any
    Y: Any
    predict: Callable[[Any, Any], np.ndarray]
    compile_s: float


def _activation(name: str) -> Callable[[Any], Any]:
    import jax

    return {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jax.numpy.tanh}[name]


def device_params(init: list[tuple[np.ndarray, np.ndarray]]) -> Any:
    """(W, b) per layer as device arrays (fresh copies)."""
    import jax.numpy as jnp

    return [(jnp.array(W), jnp.array(b)) for W, b in init]


def initial_state(cfg: dict[str, Any], params: Any) -> Any:
    """The optimizer's state before its first step: the momentum buffers (none for plain SGD),
    or Adam's (m, v, t)."""
    import jax
    import jax.numpy as jnp

    kind, hp = cfg["optimizer"]
    if kind == "sgd":
        return jax.tree.map(jnp.zeros_like, params) if hp.get("momentum", 0.0) != 0 else ()
    zeros = jax.tree.map(jnp.zeros_like, params)
    return zeros, jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.int32)


def build(
    cfg: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    init: list[tuple[np.ndarray, np.ndarray]],
    shuffle: bool = True,
) -> JaxEpoch:
    """Put the data and the initial weights on the device and compile one epoch.

    Parameters
    ----------
    cfg : dict
        A configuration of compare.py (layers, activation, batch, optimizer, loss).
    X : ndarray of shape (n_samples, n_in), float32
    y : ndarray of shape (n_samples,) int labels, or (n_samples,) / (n_samples, n_out) targets
    init : list of (W of shape (n_in, n_out), b of shape (n_out,)), float32
    shuffle : bool
        False: the batches in row order (for checking against fastbp with shuffle=False).

    Returns
    -------
    JaxEpoch, with ``compile_s`` the seconds spent tracing and compiling.
    """
    import time

    import jax
    import jax.numpy as jnp

    act = _activation(cfg["activation"])
    kind, hp = cfg["optimizer"]
    lr = np.float32(hp["lr"])
    momentum = np.float32(hp.get("momentum", 0.0))
    b1, b2, eps = np.float32(0.9), np.float32(0.999), np.float32(1e-8)
    classify = cfg["loss"] == "cross_entropy"
    bs = int(cfg["batch"])
    n = len(X)
    full, rem = divmod(n, bs)

    def logits(params, x):
        for W, b in params[:-1]:
            x = act(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss_fn(params, x, yb):
        z = logits(params, x)
        if classify:
            picked = jnp.take_along_axis(z, yb[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - picked)
        e = z - yb
        return 0.5 * jnp.mean(jnp.sum(e * e, axis=1))

    def update(params, state, grads):
        if kind == "sgd" and momentum == 0:
            return jax.tree.map(lambda p, g: p - lr * g, params, grads), state
        if kind == "sgd":
            buf = jax.tree.map(lambda m, g: momentum * m + g, state, grads)
            return jax.tree.map(lambda p, m: p - lr * m, params, buf), buf
        m, v, t = state
        t = t + 1
        m = jax.tree.map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
        tf = t.astype(jnp.float32)
        step_size = lr / (1 - b1**tf)
        inv_sqrt_bc2 = 1 / jnp.sqrt(1 - b2**tf)
        params = jax.tree.map(
            lambda p, m_, v_: p - step_size * m_ / (jnp.sqrt(v_) * inv_sqrt_bc2 + eps), params, m, v
        )
        return params, (m, v, t)

    def step(carry, xb, yb):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        params, state = update(params, state, grads)
        return (params, state), loss

    def full_batch(carry, start, Xs, Ys):
        xb = jax.lax.dynamic_slice_in_dim(Xs, start, bs)
        return step(carry, xb, jax.lax.dynamic_slice_in_dim(Ys, start, bs))

    def epoch(params, state, Xd, Yd, key):
        # One gather per epoch, then contiguous slices, as the torch loop does (gathering each
        # batch's rows inside the scan measured the same within this machine's noise).
        if shuffle:
            order = jax.random.permutation(key, n)
            Xd, Yd = Xd[order], Yd[order]
        carry = (params, state)
        losses = []
        if full:
            starts = jnp.arange(full, dtype=jnp.int32) * bs
            carry, batch_losses = jax.lax.scan(lambda c, s: full_batch(c, s, Xd, Yd), carry, starts)
            losses.append(batch_losses)
        if rem:
            carry, last = step(carry, Xd[full * bs :], Yd[full * bs :])
            losses.append(last[None])
        params, state = carry
        return params, state, jnp.mean(jnp.concatenate(losses))

    params = device_params(init)
    state = initial_state(cfg, params)
    Xd = jax.device_put(X)
    Yd = jax.device_put(y if classify else y.reshape(n, -1))
    key = jax.random.key(0)

    t0 = time.perf_counter()
    compiled = jax.jit(epoch, donate_argnums=(0, 1)).lower(params, state, Xd, Yd, key).compile()
    compile_s = time.perf_counter() - t0

    @jax.jit
    def outputs(params, x):
        z = logits(params, x)
        return jax.nn.softmax(z, axis=1) if classify else z

    def predict(params, x):
        return np.asarray(outputs(params, jnp.asarray(x)))

    return JaxEpoch(compiled, params, state, Xd, Yd, predict, compile_s)


def train_epochs(
    cfg: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    init: list[tuple[np.ndarray, np.ndarray]],
    epochs: int = 1,
    shuffle: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train ``epochs`` epochs from ``init`` and return the final (W, b) per layer as numpy
    arrays: the correctness check against fastbp (shuffle=False: the same batch order)."""
    import jax

    run = build(cfg, X, y, init, shuffle=shuffle)
    params, state = run.params, run.state
    for e in range(epochs):
        params, state, _ = run.epoch(params, state, run.X, run.Y, jax.random.key(e))
    return [(np.asarray(W), np.asarray(b)) for W, b in params]
