"""Stratified train/test splits: proportions per class, determinism, no overlap."""
import numpy as np

from graphnet.data.split import stratified_split


def test_each_class_is_split_in_proportion_without_overlap():
    labels = np.repeat(np.arange(4), [50, 20, 10, 3])
    images = np.arange(len(labels), dtype=np.float32)[:, None, None, None]
    train, test = stratified_split(images, labels, test_fraction=0.2,
                                   rng=np.random.default_rng(0))
    assert np.bincount(test.labels).tolist() == [10, 4, 2, 1]
    assert len(train) + len(test) == len(labels)
    assert not set(train.images.ravel()) & set(test.images.ravel())
    np.testing.assert_array_equal(labels[train.images.ravel().astype(int)], train.labels)


def test_the_split_is_fixed_by_the_seed_and_shuffled():
    labels = np.repeat(np.arange(3), 30)
    images = np.arange(90, dtype=np.float32)[:, None, None, None]
    first = stratified_split(images, labels, test_fraction=0.3, rng=np.random.default_rng(5))
    again = stratified_split(images, labels, test_fraction=0.3, rng=np.random.default_rng(5))
    other = stratified_split(images, labels, test_fraction=0.3, rng=np.random.default_rng(6))
    np.testing.assert_array_equal(first[1].images, again[1].images)
    assert not np.array_equal(first[1].images, other[1].images)
    assert not np.all(np.diff(first[0].labels) >= 0), "train order is not sorted by class"
