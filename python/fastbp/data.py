"""Splitting a data set into disjoint train, validation and test parts.

`split` is the one entry point. It shuffles (or keeps the order), optionally
stratifies so every part keeps the class proportions of the whole, and warns
with `LeakWarning` when the same feature row lands in more than one part.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .validation import check_bool, check_scalar, check_seed, check_split_arrays

__all__ = ["LeakWarning", "Split", "split"]

Part = tuple[np.ndarray, np.ndarray]


class LeakWarning(UserWarning):
    """Identical feature rows appear in more than one part of a split.

    A model evaluated on rows it was trained on reports an optimistic score;
    deduplicate the data (or split by group) before trusting the numbers.
    """


# eq=False: comparing ndarray fields with == has no single truth value.
@dataclass(frozen=True, eq=False)
class Split:
    """The three disjoint parts returned by `split`.

    Attributes
    ----------
    train, val, test : tuple of (ndarray of shape (n_part, ...), ndarray of shape (n_part, ...))
        ``(X, y)`` pairs. An empty part keeps the trailing shape and dtype of
        the input, e.g. ``X`` of shape ``(0, n_features)``.

    Unpacks as ``train, val, test = split(X, y)``.
    """

    train: Part
    val: Part
    test: Part

    def __iter__(self) -> Iterator[Part]:
        return iter((self.train, self.val, self.test))

    def __repr__(self) -> str:
        sizes = (len(part[0]) for part in self)
        return "Split(train={}, val={}, test={})".format(*sizes)


def split(
    X: ArrayLike,
    y: ArrayLike,
    val: float = 0.15,
    test: float = 0.15,
    stratify: bool | ArrayLike | None = None,
    shuffle: bool = True,
    seed: int | None = None,
) -> Split:
    """Split ``(X, y)`` into disjoint train, validation and test parts.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features; numeric and finite.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets, split alongside ``X``.
    val, test : float, default=0.15
        Fractions of the samples for the validation and test parts, each in
        ``[0, 1)`` with ``val + test < 1``. A part gets ``fraction * n_samples``
        rows rounded half up, at least one when its fraction is positive; 0 gives
        an empty part. The training part gets the rest and must not be empty.
    stratify : None, True or array-like of shape (n_samples,), default=None
        None (or False): no stratification. True: stratify on ``y`` (rows of a 2-D ``y``,
        e.g. one-hot, count as labels). An array: stratify on these labels.
        Every class is divided among the parts in the proportions of the parts,
        each per-class count being that share rounded down or up, so each
        part's class counts are within one sample of exact proportionality.
    shuffle : bool, default=True
        Shuffle before splitting. With ``shuffle=False`` the parts keep the input
        order: train takes the first rows, then val, then test (of each class,
        when stratified), as for time-ordered data.
    seed : int or None, default=None
        Seed for `numpy.random.default_rng`; the same seed gives the same split.

    Returns
    -------
    Split
        ``.train``, ``.val`` and ``.test``, each an ``(X, y)`` pair of ndarrays.

    Warns
    -----
    LeakWarning
        When an identical row of ``X`` appears in more than one part.

    Examples
    --------
    >>> import numpy as np
    >>> X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    >>> sp = split(X, y, val=0.2, test=0.2, stratify=True, seed=0)
    >>> [len(part[0]) for part in sp]
    [12, 4, 4]
    """
    X, y = check_split_arrays(X, y)
    n = len(X)
    sizes = _part_sizes(n, val, test)
    shuffle = check_bool(shuffle, "shuffle")
    rng = np.random.default_rng(check_seed(seed))
    if isinstance(stratify, (bool, np.bool_)):  # np.True_ as True
        stratify = bool(stratify)
    if stratify is None or stratify is False:
        order = rng.permutation(n) if shuffle else np.arange(n)
        parts = np.split(order, np.cumsum(sizes)[:-1])
    else:
        labels = _stratify_labels(stratify, y, n)
        parts = _stratified_indices(labels, sizes, shuffle, rng)
    _warn_on_leaks(X, parts)
    return Split(*((X[idx], y[idx]) for idx in parts))


def _warn_on_leaks(X: np.ndarray, parts: list[np.ndarray]) -> None:
    """Warn when a row of ``X`` occurs, byte for byte, in more than one part."""
    # +0.0 turns -0.0 into 0.0, so rows equal in value are equal in bytes too.
    rows = np.ascontiguousarray(X + X.dtype.type(0))
    # One void scalar per row; tolist() gives hashable bytes, so this is O(n) hashing.
    keys = rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel()
    seen: dict[bytes, int] = {}
    shared: set[bytes] = set()
    involved: set[int] = set()
    for part_id, idx in enumerate(parts):
        for key in set(keys[idx].tolist()):
            first = seen.setdefault(key, part_id)
            if first != part_id:
                shared.add(key)
                involved.update((first, part_id))
    if shared:
        names = ", ".join(("train", "val", "test")[i] for i in sorted(involved))
        warnings.warn(
            f"{len(shared)} distinct row(s) of X occur in more than one part ({names}); "
            "scores on the held-out parts will be optimistic. "
            "Deduplicate X, or split by group, before evaluating.",
            LeakWarning,
            stacklevel=3,
        )


def _part_sizes(n: int, val: float, test: float) -> np.ndarray:
    """(n_train, n_val, n_test) for ``n`` samples."""
    val = check_scalar(val, "val", min_value=0, max_value=1, max_inclusive=False)
    test = check_scalar(test, "test", min_value=0, max_value=1, max_inclusive=False)
    if val + test >= 1:
        raise ValueError(f"val + test must be < 1 to leave a training part; got {val} + {test}")
    n_val, n_test = (_rounded_count(fraction, n) for fraction in (val, test))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(
            f"X has {n} samples: too few for val={val} and test={test} "
            "to leave a non-empty training part"
        )
    return np.array([n_train, n_val, n_test])


def _rounded_count(fraction: float, n: int) -> int:
    # Half up rather than Python's round-half-even, so sizes are easy to predict;
    # and a part asked for is never silently empty.
    if fraction == 0:
        return 0
    return max(1, math.floor(fraction * n + 0.5))


def _stratify_labels(stratify: bool | ArrayLike, y: np.ndarray, n: int) -> np.ndarray:
    """Integer class codes of shape (n,) from ``stratify`` (True means ``y``)."""
    labels = y if stratify is True else np.asarray(stratify)
    if labels.ndim not in (1, 2) or len(labels) != n:
        raise ValueError(
            f"stratify must be True or labels of shape ({n},); got shape {labels.shape}"
        )
    if labels.dtype.kind in "fc" and not np.isfinite(labels).all():
        raise ValueError("stratify: the labels hold NaN or infinite values")
    # Rows of a 2-D label array (one-hot, multi-label) are the classes.
    try:
        return np.unique(labels, axis=0, return_inverse=True)[1].reshape(n)
    except TypeError:  # objects that do not compare: 1 and "a"
        raise TypeError(
            "stratify: the labels must be of one kind that sorts (all numbers or all "
            f"strings), got {sorted({type(v).__name__ for v in labels.ravel()})}"
        ) from None


def _stratified_indices(
    labels: np.ndarray, sizes: np.ndarray, shuffle: bool, rng: np.random.Generator
) -> list[np.ndarray]:
    """Row indices of each part, every class divided in the parts' proportions."""
    members = [np.flatnonzero(labels == c) for c in range(labels.max() + 1)]
    if shuffle:
        members = [rng.permutation(m) for m in members]
    counts = _proportional_counts(np.array([len(m) for m in members]), sizes)
    parts: list[list[np.ndarray]] = [[] for _ in sizes]
    for rows, class_counts in zip(members, counts):
        for part, chunk in zip(parts, np.split(rows, np.cumsum(class_counts)[:-1])):
            part.append(chunk)
    merged = [np.concatenate(chunks) for chunks in parts]
    # Without this, a part would be sorted by class; shuffle=False keeps input order.
    return [rng.permutation(idx) if shuffle else np.sort(idx) for idx in merged]


def _proportional_counts(class_sizes: np.ndarray, part_sizes: np.ndarray) -> np.ndarray:
    """Integer matrix (n_classes, n_parts) with the given row and column sums.

    Entry ``(c, p)`` is ``class_sizes[c] * part_sizes[p] / n`` rounded down or
    up. Rounding up exactly where needed is a bipartite flow problem: class ``c``
    needs ``row_need[c]`` round-ups, part ``p`` has ``col_need[p]`` to give, and
    only cells with a fractional share may take one. Its constraint matrix is
    totally unimodular, so a solution always exists and augmenting paths find it.
    """
    n = int(part_sizes.sum())
    share = np.outer(class_sizes, part_sizes)  # exact integers: n * target
    counts, remainder = share // n, share % n
    row_need = class_sizes - counts.sum(axis=1)
    col_need = part_sizes - counts.sum(axis=0)
    rounded_up = np.zeros(counts.shape, dtype=bool)
    for c in range(len(class_sizes)):
        for _ in range(row_need[c]):
            _augment(c, remainder > 0, rounded_up, col_need)
    return counts + rounded_up


def _augment(
    start: int, eligible: np.ndarray, rounded_up: np.ndarray, col_need: np.ndarray
) -> None:
    """Give class ``start`` one more round-up, shifting others' along a path if needed."""
    row_via: dict[int, int] = {start: -1}  # row -> column it was reached through
    col_via: dict[int, int] = {}  # column -> row it was reached from
    frontier = [start]
    while frontier:
        row = frontier.pop()
        for col in map(int, np.flatnonzero(eligible[row] & ~rounded_up[row])):
            if col in col_via:
                continue
            col_via[col] = row
            if col_need[col] > 0:
                col_need[col] -= 1
                _flip_path(col, row_via, col_via, rounded_up)
                return
            # The part is full: free a slot by moving one of its round-ups elsewhere.
            for other in map(int, np.flatnonzero(rounded_up[:, col])):
                if other not in row_via:
                    row_via[other] = col
                    frontier.append(other)
    raise AssertionError("no proportional allocation found; please report this as a bug")


def _flip_path(
    col: int, row_via: dict[int, int], col_via: dict[int, int], rounded_up: np.ndarray
) -> None:
    """Round up along the path ending at ``col``, moving each displaced round-up."""
    while col != -1:
        row = col_via[col]
        rounded_up[row, col] = True
        col = row_via[row]
        if col != -1:
            rounded_up[row, col] = False
