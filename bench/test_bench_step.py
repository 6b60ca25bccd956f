"""One training step (forward + backward + SGD update) of a few network sizes: fastbp against a
plain NumPy implementation and PyTorch (where installed). ``pytest bench/ -k step`` runs them;
compare the medians of one size across libraries."""

import numpy as np
import pytest

import fastbp as fb

SIZES = {  # name: (layer sizes, batch)
    "small": ([32, 64, 64, 10], 32),
    "medium": ([784, 256, 128, 10], 128),
    "deep": ([64] + [64] * 20 + [10], 32),
}
LR = 0.01


def _data(sizes, batch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], batch)
    return X, y


class NumpyMLP:
    """tanh hidden layers, softmax cross-entropy, plain SGD: the textbook loop in NumPy."""

    def __init__(self, sizes):
        rng = np.random.default_rng(0)
        self.W = [
            rng.normal(0, np.sqrt(1 / a), (a, b)).astype(np.float32)
            for a, b in zip(sizes, sizes[1:])
        ]
        self.b = [np.zeros(b, np.float32) for b in sizes[1:]]

    def step(self, X, y):
        acts = [X]
        for i, (W, b) in enumerate(zip(self.W, self.b)):
            z = acts[-1] @ W + b
            acts.append(np.tanh(z) if i < len(self.W) - 1 else z)
        z = acts[-1] - acts[-1].max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        d = p
        d[np.arange(len(y)), y] -= 1
        d /= len(y)
        for i in range(len(self.W) - 1, -1, -1):
            gW, gb = acts[i].T @ d, d.sum(axis=0)
            if i:
                d = (d @ self.W[i].T) * (1 - acts[i] ** 2)
            self.W[i] -= LR * gW
            self.b[i] -= LR * gb


@pytest.mark.parametrize("size", SIZES)
def test_step_fastbp(benchmark, size):
    sizes, batch = SIZES[size]
    X, y = _data(sizes, batch)
    net = fb.MLP(sizes, activation="tanh", loss="cross_entropy", seed=0)
    opt = fb.SGD(LR)

    def step():
        net.backward(X, y)
        opt.step(net)

    benchmark(step)


@pytest.mark.parametrize("size", SIZES)
def test_step_numpy(benchmark, size):
    sizes, batch = SIZES[size]
    X, y = _data(sizes, batch)
    benchmark(NumpyMLP(sizes).step, X, y)


@pytest.mark.parametrize("size", SIZES)
def test_step_torch(benchmark, size):
    torch = pytest.importorskip("torch")
    sizes, batch = SIZES[size]
    X, y = _data(sizes, batch)
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(Xt), yt).backward()
        opt.step()

    benchmark(step)
