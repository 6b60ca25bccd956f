"""fastbp.datasets: shapes, dtypes, determinism, balance, and that the tasks are what they claim."""

import numpy as np
import pytest

from fastbp import datasets

CLASSIFICATION = {
    "spirals": (datasets.spirals, dict(n_samples=301, n_classes=3), 2, 3),
    "blobs": (datasets.blobs, dict(n_samples=200, n_features=5, n_classes=4), 5, 4),
    "xor": (datasets.xor, dict(n_samples=202), 2, 2),
    "checkerboard": (datasets.checkerboard, dict(n_samples=401, n_tiles=3), 2, 2),
}


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_shapes_dtypes_and_exact_balance(name):
    fn, kwargs, d, k = CLASSIFICATION[name]
    X, y = fn(**kwargs)
    n = kwargs["n_samples"]
    assert X.shape == (n, d) and X.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=k)
    assert len(counts) == k and counts.max() - counts.min() <= 1
    assert np.all(np.isfinite(X))


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_same_seed_same_data_other_seed_other_data(name):
    fn, kwargs, _, _ = CLASSIFICATION[name]
    X1, y1 = fn(**kwargs, seed=5)
    X2, y2 = fn(**kwargs, seed=5)
    X3, _ = fn(**kwargs, seed=6)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_rows_come_shuffled_not_grouped_by_class(name):
    fn, kwargs, _, _ = CLASSIFICATION[name]
    _, y = fn(**kwargs)
    assert np.count_nonzero(np.diff(y)) > len(y) // 4


def test_xor_labels_follow_the_quadrant_without_noise():
    X, y = datasets.xor(500, noise=0.0, seed=1)
    np.testing.assert_array_equal(y, (X[:, 0] * X[:, 1] < 0).astype(np.int64))
    assert np.all(np.abs(X) <= 1)


def test_checkerboard_labels_are_tile_colours():
    X, y = datasets.checkerboard(1000, n_tiles=4, seed=2)
    col, row = np.floor((X.astype(np.float64) + 1) * 2).astype(int).T
    np.testing.assert_array_equal(y, (row + col) % 2)
    assert np.all((X >= -1) & (X <= 1))


def test_spirals_lie_in_the_unit_disc_and_arms_differ_in_angle():
    X, y = datasets.spirals(900, n_classes=3, noise=0.0, seed=0)
    radius = np.hypot(X[:, 0], X[:, 1])
    assert np.all(radius <= 1 + 1e-6)
    # Without noise, an arm's angle is 2 pi j / K + 4 r: the residual identifies the class.
    angle = np.arctan2(X[:, 0], X[:, 1]) - 4.0 * radius
    arm = np.round(np.mod(angle, 2 * np.pi) / (2 * np.pi / 3)).astype(int) % 3
    np.testing.assert_array_equal(arm, y)


def test_blobs_cluster_around_distinct_centres():
    X, y = datasets.blobs(3000, n_features=3, n_classes=3, cluster_std=0.5, seed=0)
    centres = np.stack([X[y == c].mean(axis=0) for c in range(3)])
    spread = np.stack([X[y == c].std(axis=0) for c in range(3)])
    np.testing.assert_allclose(spread, 0.5, rtol=0.1)
    assert np.all(np.abs(centres) <= 5.2)


def test_regression_sine_shapes_and_signal():
    X, y = datasets.regression_sine(400, noise=0.0, seed=3)
    assert X.shape == (400, 1) and y.shape == (400, 1)
    assert X.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_allclose(y, np.sin(X), atol=1e-6)
    noisy_X, noisy_y = datasets.regression_sine(4000, noise=0.1, seed=3)
    assert np.std(noisy_y - np.sin(noisy_X)) == pytest.approx(0.1, rel=0.1)


def test_teacher_network_shapes_balance_and_determinism():
    X, y = datasets.teacher_network(4000, n_features=12, n_classes=5, depth=2, seed=4)
    assert X.shape == (4000, 12) and X.dtype == np.float32
    assert y.shape == (4000,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=5)
    assert len(counts) == 5 and np.all(np.abs(counts - 800) < 100)  # balanced in expectation
    X2, y2 = datasets.teacher_network(4000, n_features=12, n_classes=5, depth=2, seed=4)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_teacher_does_not_depend_on_n_samples():
    """The band edges come from a fixed reference sample, so a longer draw extends a shorter one."""
    X, y = datasets.teacher_network(500, n_features=10, seed=1)
    X_long, y_long = datasets.teacher_network(2000, n_features=10, seed=1)
    np.testing.assert_array_equal(X_long[:500], X)
    np.testing.assert_array_equal(y_long[:500], y)


def test_demo_task_is_learnable_well_above_chance():
    """A small ReLU network trained with fastbp gets far above chance (25%) on held-out data."""
    import fastbp as fb

    X, y = datasets.load_demo()
    net = fb.MLP([20, 64, 64, 4], activation="relu", loss="cross_entropy", seed=0)
    trainer = fb.Trainer(net, fb.Adam(3e-3), epochs=30, batch_size=32, progress=False, seed=0)
    trainer.fit(X[:2400], y[:2400])
    assert trainer.evaluate(X[2400:], y[2400:])["accuracy"] > 0.75


def test_load_demo_is_standardized_and_fixed():
    X, y = datasets.load_demo()
    assert X.shape == (3000, 20) and X.dtype == np.float32
    assert y.shape == (3000,) and y.dtype == np.int64
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=0), 1, atol=1e-4)
    assert np.bincount(y).min() > 600
    X2, y2 = datasets.load_demo()
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: datasets.spirals(0), ValueError, "n_samples must be >= 1"),
        (lambda: datasets.spirals(10, n_classes=1), ValueError, "n_classes must be >= 2"),
        (lambda: datasets.spirals(10.5), TypeError, "n_samples must be an integer"),
        (lambda: datasets.spirals(10, noise=-1), ValueError, "noise must be >= 0"),
        (
            lambda: datasets.blobs(10, cluster_std="1"),
            TypeError,
            "cluster_std must be a real number",
        ),
        (lambda: datasets.checkerboard(10, n_tiles=1), ValueError, "n_tiles must be >= 2"),
        (lambda: datasets.teacher_network(10, depth=0), ValueError, "depth must be >= 1"),
        (
            lambda: datasets.teacher_network(10, n_features=3, n_informative=4),
            ValueError,
            "n_informative must be at most n_features=3",
        ),
        (lambda: datasets.xor(True), TypeError, "n_samples must be an integer"),
    ],
)
def test_bad_arguments_raise_naming_them(call, error, match):
    with pytest.raises(error, match=match):
        call()
