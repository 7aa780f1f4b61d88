"""The built-in datasets as the trainer sees them: registered, options parsed, loaded."""
import gzip
from types import SimpleNamespace

import numpy as np
import pytest

from graphnet.data.testing import cifar_bytes, idx_bytes, tar_bytes
from graphnet.errors import DataError, SpecError
from graphnet.options import parse_options
from graphnet.registry import Registry
from graphnet_plugins import datasets
from graphnet_plugins.datasets import Cifar10, Digits, FashionMnist, Mnist, Npz, Shapes


def options(source, **raw) -> SimpleNamespace:
    return SimpleNamespace(**parse_options(source.options, raw, what=f"dataset {source.name!r}"))


def load(source, seed=0, cache_dir=None, **raw):
    return source().load(options(source, **raw), seed=seed, cache_dir=cache_dir)


def test_registers_the_six_datasets_with_one_line_docs():
    registry = Registry(current_plugin="datasets")
    datasets.graphnet_register_datasets(registry=registry)
    assert not registry.problems
    assert registry.names("dataset") == ["cifar10", "digits", "fashion-mnist", "mnist", "npz",
                                         "shapes"]
    for name in registry.names("dataset"):
        source = registry.entry("dataset", name).value
        assert (source.__doc__ or "").strip(), name
        assert source.cache_status(None)


# --- shapes ----------------------------------------------------------------------------------
def test_shapes_defaults_and_disjoint_streams():
    dataset = load(Shapes, seed=1, train_size=60, test_size=30)
    assert dataset.image_shape == (3, 32, 32) and dataset.num_classes == 10
    assert (len(dataset.train), len(dataset.test)) == (60, 30)
    train_rows = {image.tobytes() for image in dataset.train.images}
    assert not any(image.tobytes() in train_rows for image in dataset.test.images)
    bigger = load(Shapes, seed=1, train_size=90, test_size=30)
    np.testing.assert_array_equal(bigger.test.images, dataset.test.images)


def test_shapes_options():
    dataset = load(Shapes, size=16, channels=1, train_size=10, test_size=10, noise=0.0)
    assert dataset.image_shape == (1, 16, 16)
    with pytest.raises(SpecError, match="one of 1, 3"):  # the schema's: check reads it too
        load(Shapes, channels=2)


def test_shapes_refuses_images_past_the_memory_limit_before_drawing_them(monkeypatch):
    """1,000,000 training images of 3×256×256 asked numpy for 244 GiB whatever the limit."""
    import tracemalloc

    monkeypatch.setenv("GRAPHNET_MEMORY_LIMIT", "64MiB")
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as caught:
            load(Shapes, size=256, train_size=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.field == "train_size" and peak < 2**20
    assert "1,000,000 training and 2,000 test images of 3×256×256 would take about" in \
        str(caught.value) and "more than the memory limit of 64.0 MiB" in str(caught.value)
    assert load(Shapes, size=16, train_size=10, test_size=10).image_shape == (3, 16, 16)


# --- downloaded datasets ---------------------------------------------------------------------
def put_idx_files(folder, count=7):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, data in (("train-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28))),
                       ("train-labels-idx1-ubyte", rng.integers(0, 10, count)),
                       ("t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 28, 28))),
                       ("t10k-labels-idx1-ubyte", rng.integers(0, 10, 3))):
        (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(data)))


@pytest.mark.parametrize("source", [Mnist, FashionMnist])
def test_idx_datasets_load_from_the_cache(tmp_path, source):
    put_idx_files(tmp_path / source.name)
    assert source.cache_status(tmp_path) == "cached"
    dataset = load(source, cache_dir=tmp_path)
    assert dataset.train.images.shape == (7, 1, 28, 28) and len(dataset.test) == 3
    assert len(dataset.class_names) == 10


def test_idx_datasets_accept_unzipped_files(tmp_path):
    put_idx_files(tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(path.read_bytes()))
    path.unlink()
    assert len(load(Mnist, cache_dir=tmp_path).test) == 3


def test_missing_files_say_how_to_fetch(tmp_path):
    assert Mnist.cache_status(tmp_path) == "not fetched: graphnet data fetch mnist"
    with pytest.raises(DataError) as caught:
        load(Cifar10, cache_dir=tmp_path)
    assert "data_batch_1.bin" in caught.value.file
    assert f"graphnet data fetch cifar10 --cache-dir {tmp_path}" in caught.value.hint


def test_cifar10_loads_the_unpacked_batches(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for index in range(1, 6):
        (folder / f"data_batch_{index}.bin").write_bytes(
            cifar_bytes(np.full((2, 3, 32, 32), index), [index, 0]))
    (folder / "test_batch.bin").write_bytes(cifar_bytes(np.zeros((1, 3, 32, 32)), [9]))
    dataset = load(Cifar10, cache_dir=tmp_path)
    assert dataset.train.images.shape == (10, 3, 32, 32)
    assert dataset.train.labels.tolist() == [1, 0, 2, 0, 3, 0, 4, 0, 5, 0]
    assert dataset.test.labels.tolist() == [9] and dataset.class_names[0] == "airplane"


def test_cifar10_remote_unpacks_to_what_the_loader_reads():
    names = {f"cifar-10-batches-bin/{n}" for n in
             ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
              "data_batch_5.bin", "test_batch.bin"]}
    assert set(Cifar10.remote.needed()) == names
    assert Cifar10.remote.unpack == ("cifar-10-binary.tar.gz",)
    assert tar_bytes  # the archive layout itself is exercised in tests/data/test_fetch.py


def test_published_digests_are_well_formed():
    for source in (Mnist, FashionMnist, Cifar10):
        for remote_file in source.remote.files:
            assert len(remote_file.sha256) == 64 and int(remote_file.sha256, 16) >= 0
            assert remote_file.size > 1000


# --- npz -------------------------------------------------------------------------------------
def test_npz_with_train_and_test_arrays(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8, 3), np.uint8), y_train=np.array([0, 1, 2, 1]),
             x_test=np.full((2, 8, 8, 3), 255, np.uint8), y_test=np.array([2, 0]))
    dataset = load(Npz, path=str(path))
    assert dataset.image_shape == (3, 8, 8) and dataset.num_classes == 3
    assert dataset.test.images.max() == 1.0 and dataset.train.labels.dtype == np.int64


def test_npz_with_one_set_is_split_by_the_seed(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, pics=np.random.default_rng(0).random((40, 6, 6)),
             classes=np.repeat(np.arange(4), 10))
    first = load(Npz, seed=0, path=str(path), images="pics", labels="classes", test_fraction=0.25)
    again = load(Npz, seed=0, path=str(path), images="pics", labels="classes", test_fraction=0.25)
    assert (len(first.train), len(first.test)) == (30, 10)
    np.testing.assert_array_equal(first.test.images, again.test.images)
    assert np.bincount(first.test.labels).tolist() == [3, 3, 2, 2]


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.zeros((3, 4, 4)), "y_train": np.array([0, 1]),
      "x_test": np.zeros((1, 4, 4)), "y_test": np.array([0])}, "label count differs"),
    ({"x_train": np.zeros((2, 4, 4)), "y_train": np.array([0, 1]),
      "x_test": np.zeros((1, 5, 5)), "y_test": np.array([0])}, "differ in shape"),
    ({"images": np.zeros((2, 4, 4)), "labels": np.array([0, -1])}, "out of range"),
])
def test_npz_mismatches(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load(Npz, path=str(tmp_path / "d.npz"))


def test_npz_num_classes_bounds_the_labels(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((6, 4, 4)), labels=np.array([0, 1, 5] * 2))
    with pytest.raises(DataError, match="label out of range"):
        load(Npz, path=str(tmp_path / "d.npz"), num_classes=3)
    assert load(Npz, path=str(tmp_path / "d.npz")).num_classes == 6


# --- digits ----------------------------------------------------------------------------------
def test_digits_split_is_stratified_and_fixed_by_the_seed():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (the digits extra, part of the test extra)")
    dataset = load(Digits, seed=0)
    again = load(Digits, seed=0)
    assert dataset.image_shape == (1, 8, 8) and len(dataset.train) + len(dataset.test) == 1797
    assert 350 <= len(dataset.test) <= 370
    np.testing.assert_array_equal(dataset.test.labels, again.test.labels)
    assert np.bincount(dataset.test.labels).min() >= 34
    assert not np.array_equal(load(Digits, seed=1).test.images, dataset.test.images)
