"""File readers on small generated files, good and broken: IDX, CIFAR-10 binary, .npz."""
import gzip
import sys

import numpy as np
import pytest

from graphnet.data.readers import (check_labels, npz_images, npz_labels, read_cifar10_batch,
                                   read_idx, read_idx_split, read_npz_arrays, read_sklearn_digits)
from graphnet.data.testing import cifar_bytes, idx_bytes
from graphnet.errors import DataError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (6, 5, 4), dtype=np.uint8)
LABELS = np.array([0, 9, 3, 3, 1, 7], np.uint8)


def write(path, data: bytes):
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


# --- IDX -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["images.idx", "images.idx.gz"])
def test_idx_round_trip_raw_and_gzipped(tmp_path, name):
    path = write(tmp_path / name, idx_bytes(IMAGES))
    np.testing.assert_array_equal(read_idx(path, 3), IMAGES)


def test_idx_split_scales_to_unit_range_and_adds_a_channel(tmp_path):
    split = read_idx_split(write(tmp_path / "i.gz", idx_bytes(IMAGES)),
                           write(tmp_path / "l.gz", idx_bytes(LABELS)))
    assert split.images.shape == (6, 1, 5, 4) and split.images.dtype == np.float32
    np.testing.assert_allclose(split.images[:, 0] * 255, IMAGES, atol=1e-4)
    assert split.labels.dtype == np.int64 and split.labels.tolist() == LABELS.tolist()


@pytest.mark.parametrize("data, ndim, message", [
    (idx_bytes(LABELS), 3, "wrong IDX magic number"),
    (b"\x00\x00\x0d\x03" + idx_bytes(IMAGES)[4:], 3, "wrong IDX magic number"),
    (idx_bytes(IMAGES)[:10], 3, "truncated IDX header"),
    (idx_bytes(IMAGES)[:2], 3, "truncated IDX header"),
    (idx_bytes(IMAGES)[:-7], 3, "truncated IDX data"),
    (idx_bytes(IMAGES) + b"\x00", 3, "trailing bytes"),
    (bytes([0, 0, 8, 3]) + (2**16).to_bytes(4, "big") * 3, 3, "implausibly large"),
], ids=["labels-as-images", "float-type", "cut-header", "tiny", "cut-data", "trailing", "huge"])
def test_broken_idx_files_name_the_file_and_the_problem(tmp_path, data, ndim, message):
    path = write(tmp_path / "broken.idx", data)
    with pytest.raises(DataError, match=message) as caught:
        read_idx(path, ndim)
    assert caught.value.file == str(path)
    assert caught.value.expected is not None and caught.value.found is not None


def test_wrong_magic_says_expected_and_found(tmp_path):
    path = write(tmp_path / "labels.idx", idx_bytes(LABELS))
    with pytest.raises(DataError) as caught:
        read_idx(path, 3)
    assert caught.value.expected.startswith("0x00000803") and caught.value.found == "0x00000801"


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_gzip_is_a_data_error(tmp_path, damage):
    packed = gzip.compress(idx_bytes(IMAGES))
    data = packed[: len(packed) // 2] if damage == "truncated" else b"\x1f\x8b" + b"nonsense" * 9
    path = tmp_path / "images.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match="corrupt or truncated gzip") as caught:
        read_idx(path, 3)
    assert caught.value.file == str(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "absent.gz", 1)


def test_label_count_must_equal_image_count(tmp_path):
    images = write(tmp_path / "i", idx_bytes(IMAGES))
    labels = write(tmp_path / "l", idx_bytes(LABELS[:5]))
    with pytest.raises(DataError, match="label count differs") as caught:
        read_idx_split(images, labels)
    assert (caught.value.expected, caught.value.found) == ("6 labels", "5")
    assert caught.value.file == str(labels)


def test_labels_out_of_range(tmp_path):
    images = write(tmp_path / "i", idx_bytes(IMAGES))
    labels = write(tmp_path / "l", idx_bytes(np.array([0, 1, 2, 10, 4, 5])))
    with pytest.raises(DataError, match="label out of range") as caught:
        read_idx_split(images, labels)
    assert caught.value.found == "10"


# --- CIFAR-10 --------------------------------------------------------------------------------
def test_cifar_batch_round_trip(tmp_path):
    images = RNG.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    path = write(tmp_path / "data_batch_1.bin", cifar_bytes(images, [2, 0, 9]))
    split = read_cifar10_batch(path)
    assert split.images.shape == (3, 3, 32, 32) and split.images.dtype == np.float32
    np.testing.assert_allclose(split.images * 255, images, atol=1e-4)
    assert split.labels.tolist() == [2, 0, 9]


@pytest.mark.parametrize("cut", [1, 3000])
def test_cifar_partial_record(tmp_path, cut):
    data = cifar_bytes(np.zeros((2, 3, 32, 32)), [1, 1])
    path = write(tmp_path / "b.bin", data[:-cut])
    with pytest.raises(DataError, match="partial record") as caught:
        read_cifar10_batch(path)
    assert "multiple of 3073" in caught.value.expected
    assert caught.value.found == f"{len(data) - cut} bytes"


def test_cifar_label_out_of_range_and_empty_file(tmp_path):
    path = write(tmp_path / "b.bin", cifar_bytes(np.zeros((2, 3, 32, 32)), [1, 12]))
    with pytest.raises(DataError, match="label out of range"):
        read_cifar10_batch(path)
    with pytest.raises(DataError, match="partial record"):
        read_cifar10_batch(write(tmp_path / "empty.bin", b""))


# --- .npz ------------------------------------------------------------------------------------
KEYS = [["x_train", "y_train", "x_test", "y_test"], ["images", "labels"]]


def test_npz_reads_the_first_complete_key_set(tmp_path):
    np.savez(tmp_path / "d.npz", images=np.zeros((2, 4, 4)), labels=np.array([0, 1]))
    arrays = read_npz_arrays(tmp_path / "d.npz", KEYS)
    assert sorted(arrays) == ["images", "labels"]


def test_npz_object_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.array([{"a": 1}, None], dtype=object), labels=np.array([0, 1]))
    with pytest.raises(DataError, match="Python objects") as caught:
        read_npz_arrays(path, KEYS)
    assert caught.value.field == "images" and caught.value.file == str(path)


def test_npz_missing_arrays_list_what_is_there(tmp_path):
    np.savez(tmp_path / "d.npz", pixels=np.zeros(3))
    with pytest.raises(DataError, match="arrays missing") as caught:
        read_npz_arrays(tmp_path / "d.npz", KEYS)
    assert caught.value.found == "arrays pixels"


@pytest.mark.parametrize("content", [b"PK\x03\x04 not really a zip", b"plain text", b""])
def test_npz_corrupt_or_foreign_files(tmp_path, content):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_npz_arrays(path, KEYS)
    assert caught.value.file == str(path)


@pytest.mark.parametrize("content, found", [(b"[graph]\nname = 'x'\n", "another kind of file"),
                                            (b"", "an empty file")])
def test_a_file_that_is_not_numpy_is_not_called_pickled_data(tmp_path, content, found):
    path = tmp_path / "d.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a numpy .npz file") as caught:
        read_npz_arrays(path, KEYS)
    assert caught.value.found == found and "pickle" not in str(caught.value)


def test_npz_truncated_archive(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, images=RNG.random((50, 8, 8)), labels=np.arange(50))
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(DataError, match="corrupt"):
        read_npz_arrays(path, KEYS)


def test_a_single_npy_file_is_not_an_npz(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros(3))
    with pytest.raises(DataError, match="not an .npz archive"):
        read_npz_arrays(tmp_path / "d.npy", KEYS)


@pytest.mark.parametrize("array, layout, shape", [
    (np.zeros((2, 5, 6), np.uint8), "auto", (2, 1, 5, 6)),
    (np.zeros((2, 5, 6, 3), np.uint8), "auto", (2, 3, 5, 6)),
    (np.zeros((2, 3, 5, 6), np.uint8), "auto", (2, 3, 5, 6)),
    (np.zeros((2, 3, 5, 3), np.uint8), "nhwc", (2, 3, 3, 5)),
    (np.zeros((2, 4, 4, 3), np.uint8), "nchw", (2, 4, 4, 3)),
])
def test_npz_image_layouts(array, layout, shape):
    images = npz_images(array, layout=layout, file="f", field="x")
    assert images.shape == shape and images.dtype == np.float32


@pytest.mark.parametrize("array, top", [
    (np.full((1, 2, 2), 255, np.uint8), 1.0),
    (np.full((1, 2, 2), 65535, np.uint16), 1.0),
    (np.full((1, 2, 2), 0.5, np.float64), 0.5),
    (np.full((1, 2, 2), 127.5, np.float32), 0.5),
])
def test_npz_image_scaling(array, top):
    assert npz_images(array, layout="auto", file="f", field="x").max() == pytest.approx(top)


@pytest.mark.parametrize("array, message", [
    (np.full((1, 2, 2), -1.0), "out of range"),
    (np.full((1, 2, 2), 300.0), "out of range"),
    (np.full((1, 2, 2), np.nan), "NaN"),
    (np.zeros((2, 3)), "N×H×W"),
])
def test_npz_bad_images(array, message):
    with pytest.raises(DataError, match=message):
        npz_images(array, layout="auto", file="f", field="x")


def test_npz_labels():
    assert npz_labels(np.array([1.0, 2.0]), file="f", field="y").tolist() == [1, 2]
    with pytest.raises(DataError, match="whole numbers"):
        npz_labels(np.array([0.5]), file="f", field="y")
    with pytest.raises(DataError, match="flat list"):
        npz_labels(np.zeros((2, 2), np.int64), file="f", field="y")


def test_check_labels_without_a_class_count_checks_only_the_count():
    assert check_labels(np.array([-3, 99]), images=2, num_classes=None, file="f").tolist() == [-3, 99]


# --- scikit-learn digits ---------------------------------------------------------------------
def test_digits_from_scikit_learn():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (the digits extra, part of the test extra)")
    images, labels = read_sklearn_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert labels.dtype == np.int64 and set(labels.tolist()) == set(range(10))


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"pip install 'graphnet-cnn\[digits\]'"):
        read_sklearn_digits()
