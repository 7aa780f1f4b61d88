"""Readers of image dataset files: MNIST's IDX format (raw or gzipped), the CIFAR-10 binary
batches, and ``.npz`` archives. Each checks what it reads and raises :class:`DataError` naming
the file and what was expected versus found; images come out float32 N×C×H×W in [0, 1],
labels int64.
"""
from __future__ import annotations

import contextlib
import gzip
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..files import NUMPY_MAGIC, check_size, open_regular, read_npz
from ..limits import memory_limit
from ..errors import DataError
from ..text import install_hint
from . import Split

IDX_UBYTE = 0x08
MAX_IDX_BYTES = 2**31
"""A header promising more is corrupt: MNIST's largest file holds 47 MB."""

CIFAR_IMAGE_SHAPE = (3, 32, 32)
CIFAR_RECORD_BYTES = 1 + 3 * 32 * 32
CIFAR_CLASSES = 10
MAX_CIFAR_BYTES = 100_000 * CIFAR_RECORD_BYTES
"""A batch file holding more is not CIFAR-10's: each of its files holds 10,000 images."""


# --- shared checks ---------------------------------------------------------------------------
def check_labels(labels: np.ndarray, *, images: int, num_classes: int | None, file,
                 field=None) -> np.ndarray:
    """Labels as int64, after checking there is one per image and (unless ``num_classes`` is
    None) that each is a class index."""
    if labels.ndim != 1:
        raise DataError("labels must be a flat list, one per image", file=file, field=field,
                        expected="1 dimension", found=f"{labels.ndim} dimensions {labels.shape}")
    if len(labels) != images:
        raise DataError("label count differs from image count", file=file, field=field,
                        expected=f"{images} labels", found=f"{len(labels)}")
    if num_classes is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise DataError("label out of range", file=file, field=field,
                        expected=f"class indices 0 to {num_classes - 1}", found=str(bad))
    return labels.astype(np.int64)


def bytes_to_images(raw: np.ndarray) -> np.ndarray:
    """uint8 pixels → float32 in [0, 1]."""
    return np.multiply(raw, np.float32(1 / 255), dtype=np.float32)


@contextlib.contextmanager
def _reading(path: Path):
    """A binary stream of the file, gunzipped when it ends in ``.gz`` (a FIFO or a device is
    refused); read errors, gzip's included, become DataErrors naming the file."""
    try:
        with open_regular(path, DataError) as raw:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    yield stream
            else:
                yield raw
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError("corrupt or truncated gzip file", file=path,
                        found=str(error) or type(error).__name__) from None
    except OSError as error:
        raise DataError(f"cannot read file: {error.strerror or error}", file=path) from None


def _read_bytes(path: Path, cap: int) -> bytes:
    """The file's content (gunzipped when it ends in ``.gz``), refused past ``cap`` bytes or
    the memory limit, whichever is smaller: only one byte past it is ever inflated."""
    budget = memory_limit()
    cap = cap if budget is None else min(cap, budget)
    with _reading(path) as stream:
        data = stream.read(cap + 1)
    if len(data) > cap:
        raise DataError("file is implausibly large", file=path,
                        expected=f"at most {cap:,} bytes of data", found="more")
    return data


# --- IDX (MNIST, Fashion-MNIST) --------------------------------------------------------------
def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions (3 for images, 1 for labels).

    Layout: two zero bytes, the type code 0x08, the number of dimensions, one big-endian uint32
    per dimension, then the bytes, row-major.
    """
    path = Path(path)
    header_bytes = 4 + 4 * ndim
    expected_magic = (IDX_UBYTE << 8) | ndim
    with _reading(path) as stream:
        header = stream.read(header_bytes)
        if len(header) < 4:
            raise DataError("truncated IDX header", file=path,
                            expected=f"at least {header_bytes} bytes", found=f"{len(header)} bytes")
        magic = int.from_bytes(header[:4], "big")
        if magic != expected_magic:
            raise DataError("wrong IDX magic number", file=path, field="magic",
                            expected=f"0x{expected_magic:08x} (unsigned bytes, {ndim} dimension(s))",
                            found=f"0x{magic:08x}")
        if len(header) < header_bytes:
            raise DataError("truncated IDX header", file=path, expected=f"{header_bytes} bytes",
                            found=f"{len(header)} bytes")
        dims = tuple(int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
        payload = math.prod(dims)  # Python integers: four 2³²-sized dimensions do not wrap
        if payload > MAX_IDX_BYTES:
            raise DataError("IDX dimensions are implausibly large", file=path, field="dimensions",
                            expected=f"at most {MAX_IDX_BYTES} bytes of data",
                            found="×".join(map(str, dims)))
        check_size(payload, memory_limit(), DataError, file=path, field="dimensions",
                   what=f"IDX data of {'×'.join(map(str, dims))}")
        data = stream.read(payload + 1)  # one byte more tells trailing data, inflating no further
    found = len(data)
    if found != payload:
        what = "truncated IDX data" if found < payload else "IDX file has trailing bytes"
        raise DataError(what, file=path, field="data",
                        expected=f"{payload} bytes for dimensions {'×'.join(map(str, dims))}",
                        found=f"{found} bytes" if found < payload else "more bytes")
    return np.frombuffer(data, np.uint8).reshape(dims)


def read_idx_split(images_path: str | Path, labels_path: str | Path, *,
                   num_classes: int = 10) -> Split:
    """An images file (N×H×W) and its labels file (N) as a Split of N×1×H×W images."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    labels = check_labels(labels, images=len(images), num_classes=num_classes, file=labels_path)
    return Split(bytes_to_images(images[:, None]), labels)


# --- CIFAR-10 binary -------------------------------------------------------------------------
def read_cifar10_batch(path: str | Path) -> Split:
    """One CIFAR-10 binary batch: records of one label byte then 3×32×32 pixel bytes."""
    path = Path(path)
    data = _read_bytes(path, MAX_CIFAR_BYTES)
    if len(data) == 0 or len(data) % CIFAR_RECORD_BYTES:
        raise DataError("CIFAR-10 batch has a partial record", file=path,
                        expected=f"a positive multiple of {CIFAR_RECORD_BYTES} bytes "
                                 "(1 label byte + 3,072 pixel bytes per image)",
                        found=f"{len(data)} bytes")
    records = np.frombuffer(data, np.uint8).reshape(-1, CIFAR_RECORD_BYTES)
    labels = check_labels(records[:, 0], images=len(records), num_classes=CIFAR_CLASSES, file=path)
    return Split(bytes_to_images(records[:, 1:].reshape((-1,) + CIFAR_IMAGE_SHAPE)), labels)


def concatenate(splits: list[Split]) -> Split:
    return Split(np.concatenate([s.images for s in splits]),
                 np.concatenate([s.labels for s in splits]))


# --- .npz --------------------------------------------------------------------------------------
def read_npz_arrays(path: str | Path, key_sets: list[list[str]]) -> dict[str, np.ndarray]:
    """The arrays of the first of ``key_sets`` whose names are all in the ``.npz`` file, read
    by :func:`graphnet.files.read_npz`: no pickle, no raw members, numbers only, sizes checked
    against the memory limit before reading."""
    path = Path(path)
    _check_numpy_magic(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [name.removesuffix(".npy") for name in archive.namelist()]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise DataError("corrupt .npz file", file=path,
                        found=f"{type(error).__name__}: {error}") from None
    for keys in key_sets:
        if all(key in names for key in keys):
            return read_npz(path, DataError, budget=memory_limit(), keys=keys)
    wanted = " or ".join("/".join(keys) for keys in key_sets)
    raise DataError("arrays missing from .npz file", file=path, expected=wanted,
                    found="arrays " + (", ".join(sorted(names)) or "none"))


def _check_numpy_magic(path: Path) -> None:
    with open_regular(path, DataError) as stream:
        start = stream.read(6)
    if not start.startswith(NUMPY_MAGIC):
        raise DataError("not a numpy .npz file", file=path,
                        expected="a zip of arrays written by numpy.savez",
                        found="an empty file" if not start else "another kind of file")
    if start.startswith(NUMPY_MAGIC[2]):
        raise DataError("not an .npz archive", file=path,
                        expected="a zip of arrays written by numpy.savez",
                        found="a single .npy array")


def npz_images(array: np.ndarray, *, layout: str, file, field) -> np.ndarray:
    """Images of any common layout (N×H×W, N×H×W×C, N×C×H×W) as float32 N×C×H×W in [0, 1].

    ``layout`` is ``"nchw"``, ``"nhwc"`` or ``"auto"`` (channels last when the last axis has
    1, 3 or 4 entries and the second does not). Unsigned integers are divided by their largest
    value (255 for uint8); floats must already lie in [0, 1] or in [0, 255].
    """
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DataError("images must be N×H×W, N×H×W×C or N×C×H×W", file=file, field=field,
                        expected="3 or 4 dimensions", found=f"shape {array.shape}")
    channels_last = layout == "nhwc" or (
        layout == "auto" and array.shape[3] in (1, 3, 4) and array.shape[1] not in (1, 3, 4))
    if channels_last:
        array = array.transpose(0, 3, 1, 2)
    if np.issubdtype(array.dtype, np.unsignedinteger) or array.dtype == np.bool_:
        scale = 1.0 if array.dtype == np.bool_ else float(np.iinfo(array.dtype).max)
        return np.ascontiguousarray(array, dtype=np.float32) / np.float32(scale)
    values = np.ascontiguousarray(array, dtype=np.float32)
    if values.size == 0:
        return values
    if not np.all(np.isfinite(values)):
        raise DataError("images hold NaN or infinite values", file=file, field=field)
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise DataError("image values out of range", file=file, field=field,
                        expected="values in [0, 1] or [0, 255]", found=f"[{low:g}, {high:g}]")
    return values / np.float32(255) if high > 1 else values


def npz_labels(array: np.ndarray, *, file, field) -> np.ndarray:
    """Class labels as int64; integral floats are accepted, fractions and NaN are not. The
    caller checks the count and the range with :func:`check_labels`."""
    if array.ndim != 1:
        raise DataError("labels must be a flat list, one per image", file=file, field=field,
                        expected="1 dimension", found=f"shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        if not (np.all(np.isfinite(array)) and np.all(np.mod(array, 1) == 0)):
            raise DataError("labels must be whole numbers", file=file, field=field,
                            expected="integer class indices", found=f"{array.dtype} values")
    return array.astype(np.int64)


# --- scikit-learn's digits -------------------------------------------------------------------
def read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8×8 digits shipped inside scikit-learn: images N×1×8×8 in [0, 1] (the pixels
    count 0 to 16), labels 0–9."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn, which is not installed",
                        hint=install_hint("digits")) from None
    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None] / np.float32(16)
    labels = check_labels(np.asarray(bunch.target), images=len(images), num_classes=10,
                          file="sklearn.datasets.load_digits")
    return images, labels
