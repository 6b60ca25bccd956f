"""fastbp.data.split: disjoint, complete, reproducible, stratified, leak-checked."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastbp.data import LeakWarning, Split, split


def unique_rows(n, d=3, seed=0):
    """(n, d) float rows, all distinct; column 0 is the row number, so rows map back to ids."""
    rng = np.random.default_rng(seed)
    return np.column_stack([np.arange(n, dtype=np.float64), rng.normal(size=(n, d - 1))])


def ids(part):
    return part[0][:, 0].astype(int)


def test_parts_are_disjoint_and_cover_every_row():
    X = unique_rows(200)
    y = np.arange(200) % 4
    sp = split(X, y, val=0.2, test=0.1, seed=1)
    train, val, test = (ids(p) for p in sp)
    assert (len(train), len(val), len(test)) == (140, 40, 20)
    together = np.concatenate([train, val, test])
    np.testing.assert_array_equal(np.sort(together), np.arange(200))
    for part in sp:  # y travels with its own X row
        np.testing.assert_array_equal(part[1], ids(part) % 4)


def test_same_seed_same_split_other_seed_other_split():
    X, y = unique_rows(100), np.arange(100) % 2
    a, b, c = split(X, y, seed=7), split(X, y, seed=7), split(X, y, seed=8)
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa[0], pb[0])
        np.testing.assert_array_equal(pa[1], pb[1])
    assert not np.array_equal(ids(a.train), ids(c.train))


def test_shuffle_false_keeps_input_order():
    X, y = unique_rows(20), np.zeros(20)
    sp = split(X, y, val=0.25, test=0.25, shuffle=False)
    np.testing.assert_array_equal(ids(sp.train), np.arange(10))
    np.testing.assert_array_equal(ids(sp.val), np.arange(10, 15))
    np.testing.assert_array_equal(ids(sp.test), np.arange(15, 20))


def test_sizes_round_half_up_and_a_requested_part_is_never_empty():
    X, y = unique_rows(10), np.zeros(10)
    assert [len(p[0]) for p in split(X, y, val=0.15, test=0.25, seed=0)] == [5, 2, 3]
    assert [len(p[0]) for p in split(X, y, val=0.01, test=0.01, seed=0)] == [8, 1, 1]


def test_zero_fraction_gives_empty_part_with_trailing_shape_and_dtype():
    X = unique_rows(30).astype(np.float32)
    y = np.eye(3)[np.arange(30) % 3]
    sp = split(X, y, val=0.0, test=0.2, seed=0)
    assert sp.val[0].shape == (0, 3) and sp.val[0].dtype == np.float32
    assert sp.val[1].shape == (0, 3)
    assert len(sp.train[0]) == 24 and len(sp.test[0]) == 6


def test_split_unpacks_and_has_short_repr():
    train, val, test = split(unique_rows(20), np.zeros(20), seed=0)
    assert len(train[0]) + len(val[0]) + len(test[0]) == 20
    assert repr(split(unique_rows(20), np.zeros(20), seed=0)) == "Split(train=14, val=3, test=3)"
    assert isinstance(split(unique_rows(20), np.zeros(20)), Split)


def check_proportional(sp, labels_of_part, classes, n):
    """Every part's count of every class is within one sample of exact proportionality."""
    total = {c: sum(int(np.sum(labels_of_part(p) == c)) for p in sp) for c in classes}
    for part in sp:
        share = len(part[0]) / n
        for c in classes:
            count = int(np.sum(labels_of_part(part) == c))
            assert abs(count - total[c] * share) < 1, (c, count, total[c] * share)


def test_stratify_true_keeps_class_proportions():
    n = 1003
    y = np.repeat([0, 1, 2], [700, 250, 53])
    X = unique_rows(n)
    sp = split(X, y, val=0.15, test=0.15, stratify=True, seed=3)
    check_proportional(sp, lambda p: p[1], [0, 1, 2], n)
    assert len(np.unique(np.concatenate([ids(p) for p in sp]))) == n


def test_stratify_takes_numpy_booleans_and_refuses_nan_labels():
    X, y = unique_rows(60), np.repeat([0, 1, 2], 20)
    same = [split(X, y, val=0.2, test=0.2, stratify=s, seed=1) for s in (True, np.True_)]
    for a, b in zip(*same):
        np.testing.assert_array_equal(ids(a), ids(b))
    plain = [split(X, y, val=0.2, test=0.2, stratify=s, seed=1) for s in (None, np.False_)]
    for a, b in zip(*plain):
        np.testing.assert_array_equal(ids(a), ids(b))
    with pytest.raises(ValueError, match="stratify: the labels hold NaN"):
        split(X, y, stratify=np.where(y == 1, np.nan, y))


def test_stratify_by_separate_labels_and_one_hot_rows():
    n = 300
    groups = np.arange(n) % 5
    X = unique_rows(n)
    sp = split(X, np.zeros(n), stratify=groups, seed=0)
    check_proportional(sp, lambda p: groups[ids(p)], range(5), n)
    onehot = np.eye(3)[np.arange(n) % 3]
    sp = split(X, onehot, stratify=True, seed=0)
    check_proportional(sp, lambda p: p[1].argmax(axis=1), range(3), n)


def test_stratified_without_shuffle_takes_each_class_in_order():
    y = np.array([0, 1] * 10)
    sp = split(unique_rows(20), y, val=0.2, test=0.2, stratify=True, shuffle=False)
    np.testing.assert_array_equal(ids(sp.train), np.arange(12))
    np.testing.assert_array_equal(ids(sp.val), [12, 13, 14, 15])
    np.testing.assert_array_equal(ids(sp.test), [16, 17, 18, 19])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    val=st.sampled_from([0.0, 0.1, 0.15, 0.3]),
    test=st.sampled_from([0.0, 0.05, 0.2, 0.33]),
    seed=st.integers(0, 2**32 - 1),
)
def test_stratified_allocation_is_exact_for_any_class_sizes(sizes, val, test, seed):
    y = np.repeat(np.arange(len(sizes)), sizes)
    n = len(y)
    n_val, n_test = (0 if f == 0 else max(1, math.floor(f * n + 0.5)) for f in (val, test))
    assume(n - n_val - n_test >= 1)  # else too small for a training part: see the error tests
    sp = split(unique_rows(n), y, val=val, test=test, stratify=True, seed=seed)
    assert [len(p[0]) for p in sp] == [n - n_val - n_test, n_val, n_test]  # as unstratified
    check_proportional(sp, lambda p: p[1], range(len(sizes)), n)
    np.testing.assert_array_equal(np.sort(np.concatenate([ids(p) for p in sp])), np.arange(n))


def test_leak_warning_fires_on_rows_shared_between_parts():
    X = unique_rows(50)
    X[1:, 1:] = X[0, 1:]
    X[:, 0] = np.arange(50) % 25  # rows i and i + 25 are identical
    # Train holds rows 0-29 (ids 0-24, 0-4), val and test rows 30-49 (ids 5-24).
    with pytest.warns(LeakWarning, match=r"20 distinct row\(s\).*\(train, val, test\)"):
        split(X, np.zeros(50), val=0.2, test=0.2, shuffle=False)


def test_leak_warning_counts_negative_zero_as_zero():
    X = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [-0.0, 1.0]])  # rows 0 and 3 equal
    with pytest.warns(LeakWarning):
        split(X, np.zeros(4), val=0.25, test=0.25, shuffle=False)


def test_no_leak_warning_for_distinct_rows_or_duplicates_within_one_part():
    X = unique_rows(40)
    X[1] = X[0]  # both land in the training part with shuffle=False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split(X, np.zeros(40), shuffle=False)
        split(unique_rows(500), np.zeros(500), seed=0)


def test_leak_warning_is_a_user_warning():
    assert issubclass(LeakWarning, UserWarning)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(X=np.zeros(5), y=np.zeros(5)), ValueError, "X must be 2-D"),
        (dict(X=np.zeros((5, 0)), y=np.zeros(5)), ValueError, "n_features >= 1"),
        (dict(X=np.array([["a"]] * 5), y=np.zeros(5)), TypeError, "X must hold numbers"),
        (dict(X=np.full((5, 2), np.nan), y=np.zeros(5)), ValueError, "X contains NaN"),
        (dict(y=np.zeros(9)), ValueError, "X and y have different lengths: 10 and 9"),
        (dict(y=np.zeros((10, 1, 1))), ValueError, "y must be 1-D or 2-D"),
        (dict(y=np.r_[np.zeros(9), np.inf]), ValueError, "y contains NaN"),
        (dict(val=-0.1), ValueError, r"val must be in \[0, 1\)"),
        (dict(test=1.0), ValueError, r"test must be in \[0, 1\)"),
        (dict(val="0.2"), TypeError, "val must be a real number"),
        (dict(val=0.5, test=0.5), ValueError, "val \\+ test must be < 1"),
        (dict(val=0.45, test=0.45), ValueError, "too few"),
        (dict(stratify=np.zeros(3)), ValueError, "stratify must be True or labels of shape"),
    ],
)
def test_bad_input_raises_naming_the_argument(kwargs, error, match):
    args = dict(X=unique_rows(10), y=np.zeros(10)) | kwargs
    with pytest.raises(error, match=match):
        split(**args)
