"""Small synthetic data sets for demos, exercises and tests.

Every generator is pure numpy and deterministic: the same ``seed`` gives the
same arrays. Features are float32 of shape (n_samples, n_features); class
labels are int64 of shape (n_samples,), balanced across classes (sizes differ
by at most one, except `teacher_network`, balanced up to sampling noise); rows
come in random order, so no class is bunched at the end.
"""

from __future__ import annotations

import numpy as np

from .validation import check_scalar, check_seed

__all__ = [
    "blobs",
    "checkerboard",
    "load_demo",
    "regression_sine",
    "spirals",
    "teacher_network",
    "xor",
]

Dataset = tuple[np.ndarray, np.ndarray]

DEMO_SEED = 11
"""Seed of the demo teacher: a small ReLU net reaches ~89% on it, a linear model ~71%."""


def spirals(
    n_samples: int = 1500, n_classes: int = 3, noise: float = 0.2, seed: int | None = 0
) -> Dataset:
    """Interleaved 2-D spiral arms, one per class.

    Parameters
    ----------
    n_samples : int, default=1500
        Total number of points.
    n_classes : int, default=3
        Number of arms (classes), at least 2.
    noise : float, default=0.2
        Standard deviation of the Gaussian jitter added to each point's angle
        (radians); around 0.5 the arms start to merge.
    seed : int or None, default=0
        Seed for `numpy.random.default_rng`.

    Returns
    -------
    X : ndarray of shape (n_samples, 2), float32
        Points within the unit disc (up to the jitter).
    y : ndarray of shape (n_samples,), int64
        Arm index in ``[0, n_classes)``.

    Examples
    --------
    >>> X, y = spirals(300, n_classes=3, seed=0)
    >>> X.shape, X.dtype.name, np.bincount(y).tolist()
    ((300, 2), 'float32', [100, 100, 100])
    """
    n_samples = check_scalar(n_samples, "n_samples", min_value=1, integer=True)
    n_classes = check_scalar(n_classes, "n_classes", min_value=2, integer=True)
    noise = check_scalar(noise, "noise", min_value=0)
    rng = np.random.default_rng(check_seed(seed))
    y = _balanced_labels(n_samples, n_classes, rng)
    radius = rng.uniform(0.05, 1.0, n_samples)
    # Four radians of winding from centre to rim, arms evenly spaced in angle.
    angle = 2 * np.pi * y / n_classes + 4.0 * radius + noise * rng.standard_normal(n_samples)
    X = radius[:, None] * np.column_stack([np.sin(angle), np.cos(angle)])
    return X.astype(np.float32), y


def blobs(
    n_samples: int = 1000,
    n_features: int = 2,
    n_classes: int = 3,
    cluster_std: float = 1.0,
    seed: int | None = 0,
) -> Dataset:
    """Isotropic Gaussian clusters, one per class.

    Parameters
    ----------
    n_samples : int, default=1000
        Total number of points.
    n_features : int, default=2
        Dimension of the points.
    n_classes : int, default=3
        Number of clusters (classes), at least 2.
    cluster_std : float, default=1.0
        Standard deviation of each cluster around its centre.
    seed : int or None, default=0
        Seed for `numpy.random.default_rng`.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
        Points; the centres are drawn uniformly from the box ``[-5, 5]^n_features``.
    y : ndarray of shape (n_samples,), int64
        Cluster index in ``[0, n_classes)``.
    """
    n_samples = check_scalar(n_samples, "n_samples", min_value=1, integer=True)
    n_features = check_scalar(n_features, "n_features", min_value=1, integer=True)
    n_classes = check_scalar(n_classes, "n_classes", min_value=2, integer=True)
    cluster_std = check_scalar(cluster_std, "cluster_std", min_value=0)
    rng = np.random.default_rng(check_seed(seed))
    centers = rng.uniform(-5.0, 5.0, size=(n_classes, n_features))
    y = _balanced_labels(n_samples, n_classes, rng)
    X = centers[y] + cluster_std * rng.standard_normal((n_samples, n_features))
    return X.astype(np.float32), y


def xor(n_samples: int = 1000, noise: float = 0.1, seed: int | None = 0) -> Dataset:
    """The XOR problem: the label says whether the two coordinates differ in sign.

    No linear model does better than chance; one hidden layer solves it.

    Parameters
    ----------
    n_samples : int, default=1000
        Total number of points, spread evenly over the four quadrants.
    noise : float, default=0.1
        Standard deviation of Gaussian noise added to the points after
        labelling, so some points cross the axes.
    seed : int or None, default=0
        Seed for `numpy.random.default_rng`.

    Returns
    -------
    X : ndarray of shape (n_samples, 2), float32
        Points in ``[-1, 1]^2`` (up to the noise).
    y : ndarray of shape (n_samples,), int64
        1 where the quadrant's coordinates have opposite signs, else 0.
    """
    n_samples = check_scalar(n_samples, "n_samples", min_value=1, integer=True)
    noise = check_scalar(noise, "noise", min_value=0)
    rng = np.random.default_rng(check_seed(seed))
    quadrant = _balanced_labels(n_samples, 4, rng)
    signs = np.column_stack([quadrant % 2, quadrant // 2]) * 2 - 1
    X = signs * rng.uniform(0.0, 1.0, (n_samples, 2)) + noise * rng.standard_normal((n_samples, 2))
    y = (signs[:, 0] != signs[:, 1]).astype(np.int64)
    return X.astype(np.float32), y


def checkerboard(n_samples: int = 2000, n_tiles: int = 4, seed: int | None = 0) -> Dataset:
    """A two-colour checkerboard on ``[-1, 1]^2``; the label is the tile's colour.

    A hard 2-D task for its size: the decision boundary has ``2 * (n_tiles - 1)``
    straight segments crossing the square, so it needs width and depth.

    Parameters
    ----------
    n_samples : int, default=2000
        Total number of points.
    n_tiles : int, default=4
        Tiles along each side, at least 2.
    seed : int or None, default=0
        Seed for `numpy.random.default_rng`.

    Returns
    -------
    X : ndarray of shape (n_samples, 2), float32
        Points uniform within the tiles of their colour.
    y : ndarray of shape (n_samples,), int64
        Colour, 0 or 1: ``(row + column) % 2`` of the tile.
    """
    n_samples = check_scalar(n_samples, "n_samples", min_value=1, integer=True)
    n_tiles = check_scalar(n_tiles, "n_tiles", min_value=2, integer=True)
    rng = np.random.default_rng(check_seed(seed))
    y = _balanced_labels(n_samples, 2, rng)
    # Pick a tile of the label's colour: any row, then a column of matching parity.
    row = rng.integers(0, n_tiles, n_samples)
    n_cols_of_parity = (n_tiles - (row + y) % 2 + 1) // 2
    col = 2 * rng.integers(0, n_cols_of_parity) + (row + y) % 2
    corner = np.column_stack([col, row]) * (2.0 / n_tiles) - 1.0
    X = corner + rng.uniform(0.0, 2.0 / n_tiles, (n_samples, 2))
    return X.astype(np.float32), y


def teacher_network(
    n_samples: int = 3000,
    n_features: int = 20,
    n_classes: int = 4,
    depth: int = 3,
    n_informative: int = 2,
    seed: int | None = 0,
) -> Dataset:
    """Labels computed by a random "teacher" network from Gaussian features.

    The teacher projects the features onto ``n_informative`` random directions,
    passes them through ``depth`` tanh layers (the first of width
    ``n_informative``, the others 32 wide, weights with gain 2 so the function
    is clearly nonlinear) to one output; the class is the quantile band of that
    output, with the band edges fixed on a separate reference sample so classes
    are balanced and do not depend on ``n_samples``. The remaining directions
    are noise the student must learn to ignore. From 3000 samples a small ReLU
    network learns the task to well above chance (70-90% accuracy, depending
    on the seed; a linear model does clearly worse), while a deep sigmoid
    network hardly moves.

    Parameters
    ----------
    n_samples : int, default=3000
        Number of samples.
    n_features : int, default=20
        Number of input features (standard normal).
    n_classes : int, default=4
        Number of classes (bands of the teacher's output), at least 2.
    depth : int, default=3
        Number of hidden teacher layers, at least 1.
    n_informative : int, default=2
        Number of directions in feature space the label depends on, at most
        ``n_features``.
    seed : int or None, default=0
        Seed for `numpy.random.default_rng`; it fixes the teacher and the sample.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
        Standard normal features.
    y : ndarray of shape (n_samples,), int64
        Class in ``[0, n_classes)``, each with probability ``1 / n_classes``.
    """
    n_samples = check_scalar(n_samples, "n_samples", min_value=1, integer=True)
    n_features = check_scalar(n_features, "n_features", min_value=1, integer=True)
    n_classes = check_scalar(n_classes, "n_classes", min_value=2, integer=True)
    depth = check_scalar(depth, "depth", min_value=1, integer=True)
    n_informative = check_scalar(n_informative, "n_informative", min_value=1, integer=True)
    if n_informative > n_features:
        raise ValueError(
            f"n_informative must be at most n_features={n_features}; got {n_informative}"
        )
    rng = np.random.default_rng(check_seed(seed))
    sizes = [n_features, n_informative] + [32] * (depth - 1) + [1]
    weights = [rng.standard_normal((m, k)) / np.sqrt(m) for m, k in zip(sizes[:-1], sizes[1:])]
    weights[1:] = [2.0 * w for w in weights[1:]]

    def teacher(X: np.ndarray) -> np.ndarray:
        for w in weights[:-1]:
            X = np.tanh(X @ w)
        return (X @ weights[-1])[:, 0]

    reference = teacher(rng.standard_normal((20_000, n_features)))
    band_edges = np.quantile(reference, np.arange(1, n_classes) / n_classes)
    X = rng.standard_normal((n_samples, n_features))
    y = np.searchsorted(band_edges, teacher(X)).astype(np.int64)
    return X.astype(np.float32), y


def regression_sine(n_samples: int = 500, noise: float = 0.1, seed: int | None = 0) -> Dataset:
    """One period of a noisy sine: 1-D regression.

    Parameters
    ----------
    n_samples : int, default=500
        Number of points.
    noise : float, default=0.1
        Standard deviation of Gaussian noise added to the targets.
    seed : int or None, default=0
        Seed for `numpy.random.default_rng`.

    Returns
    -------
    X : ndarray of shape (n_samples, 1), float32
        Inputs uniform in ``[-pi, pi]``.
    y : ndarray of shape (n_samples, 1), float32
        ``sin(X)`` plus noise, shaped for ``loss="mse"`` with one output.
    """
    n_samples = check_scalar(n_samples, "n_samples", min_value=1, integer=True)
    noise = check_scalar(noise, "noise", min_value=0)
    rng = np.random.default_rng(check_seed(seed))
    X = rng.uniform(-np.pi, np.pi, (n_samples, 1))
    y = np.sin(X) + noise * rng.standard_normal((n_samples, 1))
    return X.astype(np.float32), y.astype(np.float32)


def load_demo() -> Dataset:
    """The data set of ``fastbp demo``: a fixed `teacher_network` task, standardized.

    3000 samples, 20 features, 4 balanced classes. Small enough that a deep
    network trains in seconds, hard enough that a deep sigmoid network with
    vanishing gradients visibly lags a ReLU network.

    Returns
    -------
    X : ndarray of shape (3000, 20), float32
        Features with zero mean and unit variance per column.
    y : ndarray of shape (3000,), int64
        Class in ``[0, 4)``.
    """
    X, y = teacher_network(3000, n_features=20, n_classes=4, depth=3, seed=DEMO_SEED)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X.astype(np.float32), y


def _balanced_labels(n_samples: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Labels of shape (n_samples,), class sizes differing by at most one, in random order."""
    return rng.permutation(np.arange(n_samples) % n_classes).astype(np.int64)
