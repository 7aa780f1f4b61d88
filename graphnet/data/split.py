"""Splitting one labelled set into train and test, deterministically from a seed."""
from __future__ import annotations

import numpy as np

from . import Split


def stratified_split(images: np.ndarray, labels: np.ndarray, *, test_fraction: float,
                     rng: np.random.Generator) -> tuple[Split, Split]:
    """Train and test splits holding each class in (about) the same proportion.

    The test split gets ``round(N · test_fraction)`` samples, shared among the classes by
    largest remainder; every class with at least two samples gives at least one to each side.
    The order within each split is shuffled, so neither is sorted by class.
    """
    classes, counts = np.unique(labels, return_counts=True)
    quotas = counts * test_fraction
    test_counts = np.floor(quotas).astype(np.int64)
    shortfall = int(round(len(labels) * test_fraction)) - int(test_counts.sum())
    # Stable sort: equal remainders go to the earlier class, so the split is reproducible.
    test_counts[np.argsort(-(quotas - test_counts), kind="stable")[:max(shortfall, 0)]] += 1
    test_counts = np.where(counts >= 2, np.clip(test_counts, 1, counts - 1), test_counts)
    train_parts, test_parts = [], []
    for label, test_count in zip(classes, test_counts):
        members = rng.permutation(np.flatnonzero(labels == label))
        test_parts.append(members[:test_count])
        train_parts.append(members[test_count:])
    empty = np.zeros(0, np.int64)
    train_index = rng.permutation(np.concatenate(train_parts) if train_parts else empty)
    test_index = rng.permutation(np.concatenate(test_parts) if test_parts else empty)
    return (Split(images[train_index], labels[train_index]),
            Split(images[test_index], labels[test_index]))
