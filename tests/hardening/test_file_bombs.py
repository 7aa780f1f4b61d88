"""Crafted data files, images and graphs through the real CLI, each child bounded in time and
address space (``bounded_cli``, GRAPHNET_MEMORY_LIMIT=256MiB): sizes are read from headers and
zip directories and compared with the limit before anything is allocated, streams are read with
a cap, and every refusal is exit 2 naming the file and the figure — never a traceback, a hang
or a silent wrong answer."""
from __future__ import annotations

import gzip
import io
import json
import os
import struct
import zipfile
import zlib

import numpy as np
import pytest

MiB = 2**20


def _spec(path, *, shape=(1, 16, 16), name="tiny", extra_nodes=(), train=None):
    spec = {"graph": {"name": name},
            "inputs": {"image": {"shape": list(shape)},
                       "label": {"shape": [], "dtype": "int64"}},
            "nodes": [*extra_nodes,
                      {"name": "flat", "op": "flatten"} if extra_nodes else
                      {"name": "flat", "op": "flatten", "inputs": ["image"]},
                      {"name": "fc", "op": "dense", "units": 10},
                      {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}],
            "outputs": {"logits": "fc", "loss": "loss"},
            "train": train or {"epochs": 1, "batch_size": 8,
                               "dataset": {"name": "shapes", "train_size": 32, "test_size": 16}}}
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture
def tiny(tmp_path):
    return _spec(tmp_path / "tiny.json")


@pytest.fixture
def trained(train_once, tmp_path):
    """A checkpoint of the ``tiny`` spec, trained once for the session."""
    spec = json.loads(_spec(tmp_path / "tiny.json").read_text())
    return train_once(spec, "tiny")[1]


def _npy_header(shape, dtype="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buffer.getvalue()  # magic, version and header


def _zip_bomb(path, member: str, shape, real_members=None) -> None:
    """An .npz whose ``member`` holds zeros of ``shape`` (float32), deflated: megabytes of
    zeros in a few hundred kilobytes of file."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in (real_members or {}).items():
            archive.writestr(name, data)
        with archive.open(member, "w", force_zip64=True) as stream:
            stream.write(_npy_header(shape))
            zeros = bytes(8 * MiB)
            remaining = int(np.prod(shape)) * 4
            while remaining:
                stream.write(zeros[:min(remaining, len(zeros))])
                remaining -= min(remaining, len(zeros))


# --- class 3: the memory limit holds for everything that allocates -------------------------------
PADDED_WINDOWS = {
    # 16×8×8 in and out, a 16×6008×6008 padded copy (2.2 GiB)
    "pool": ((16, 8, 8), {"op": "max_pool2d", "kernel": 6001, "stride": 1, "padding": 3000}),
    # padding only at the end, past a stride of 20000: 1×2×2 out, a 20007×20007 copy (1.5 GiB)
    "end": ((1, 8, 8), {"op": "conv2d", "filters": 1, "kernel": 1, "stride": 20000,
                        "padding": [0, 0, 19999, 19999]}),
}


@pytest.mark.parametrize("layer", sorted(PADDED_WINDOWS))
def test_a_padded_window_that_dodges_the_activation_estimate_is_refused(tmp_path, bounded_cli,
                                                                        layer):
    shape, node = PADDED_WINDOWS[layer]
    spec = _spec(tmp_path / f"{layer}.json", shape=shape,
                 extra_nodes=[{"name": layer, "inputs": ["image"], **node}])
    for command in (["gradcheck", spec],
                    ["bench", spec, "--batch-size", "1", "--steps", "1", "--no-memory"]):
        result = bounded_cli(*command)
        assert result.refused(f"{layer}.json", "padded and gathered windows",
                              "memory limit of 256.0 MiB"), (command, result)
        assert result.peak < 256 * MiB, result


@pytest.mark.parametrize("command", [["train", "--run-dir", "run"],
                                     ["data", "sample", "shapes", "-o", "images.npz"]])
def test_generated_images_past_the_limit_are_refused_before_they_are_drawn(tmp_path, bounded_cli,
                                                                           command):
    options = ["--dataset-option", "train_size=1000000", "--dataset-option", "size=256"]
    if command[0] == "train":
        command = ["train", _spec(tmp_path / "big.json", shape=(3, 256, 256)), *command[1:]]
    result = bounded_cli(*command, *options, cwd=tmp_path)
    assert result.refused("1,000,000 training and", "test images of 3×256×256",
                          "memory limit of 256.0 MiB", "train_size"), result
    assert result.peak < 256 * MiB, result


@pytest.mark.parametrize("command", ["gradcheck", "bench"])
def test_a_huge_batch_is_refused_before_it_is_drawn(tiny, bounded_cli, command):
    extra = ["--no-memory", "--steps", "1"] if command == "bench" else []
    result = bounded_cli(command, tiny, "--batch-size", "100000000", *extra)
    assert result.refused("tiny.json", "at batch size 100000000"), result
    assert "lower --batch-size" not in result.err and result.peak < 256 * MiB


def test_an_npy_header_declaring_a_trillion_elements_is_refused_from_its_header(
        trained, tiny, tmp_path, bounded_cli):
    images = tmp_path / "images.npy"
    images.write_bytes(_npy_header((10**12,)) + bytes(64))
    result = bounded_cli("predict", tiny, images, "--checkpoint", trained)
    assert result.refused("images.npy", "3.6 TiB", "memory limit of 256.0 MiB"), result
    assert result.peak < 256 * MiB


def test_a_checkpoint_zip_bomb_is_refused_from_the_zip_directory(trained, tiny, tmp_path,
                                                                   bounded_cli):
    with zipfile.ZipFile(trained) as archive:
        members = {name: archive.read(name) for name in archive.namelist()
                   if name != "param/fc/weight.npy"}
    bomb = tmp_path / "bomb.npz"
    _zip_bomb(bomb, "param/fc/weight.npy", (150 * MiB // 4 * 4,), members)  # 600 MB inflated
    assert bomb.stat().st_size < 3 * MiB
    for command in (["eval", tiny, "--checkpoint", bomb],
                    ["predict", tiny, tmp_path / "x.npy", "--checkpoint", bomb]):
        np.save(tmp_path / "x.npy", np.zeros((1, 16, 16), np.float32))
        result = bounded_cli(*command)
        assert result.refused("bomb.npz", "600.0 MiB", "memory limit of 256.0 MiB"), \
            (command, result)
        assert result.peak < 256 * MiB, result


def _mnist_cache(root, **files) -> dict:
    """A cache folder holding MNIST's four files (small, valid), some replaced by ``files``."""
    from graphnet.data.testing import idx_bytes
    folder = root / "mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    contents = {"train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(rng.integers(0, 255, (20, 28, 28)))),
                "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(np.arange(20) % 10)),
                "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(rng.integers(0, 255, (10, 28, 28)))),
                "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(np.arange(10)))}
    contents.update(files)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return {"GRAPHNET_CACHE": str(root)}


def _gzip_of_zeros(header: bytes, size: int) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip framing
    parts = [compressor.compress(header)]
    zeros = bytes(8 * MiB)
    while size:
        parts.append(compressor.compress(zeros[:min(size, len(zeros))]))
        size -= min(size, len(zeros))
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.mark.parametrize("case, dims, zeros, phrase", [
    ("declared", (6000, 280, 280), 0, "IDX data of 6000×280×280 would take 448.6 MiB"),
    pytest.param("trailing", (10, 28, 28), 600 * MiB, "continues past|trailing",
                 marks=pytest.mark.slow),
    ("overflow", (2**32 - 1, 2**32 - 1, 2**32 - 1), 0, "implausibly large"),
])
def test_idx_gzip_bombs_are_read_with_a_cap(tmp_path, bounded_cli, case, dims, zeros, phrase):
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in dims)
    env = _mnist_cache(tmp_path / "cache", **{
        "train-images-idx3-ubyte.gz": _gzip_of_zeros(header + bytes(10 * 28 * 28), zeros)})
    spec = _spec(tmp_path / "digits.json", shape=(1, 28, 28),
                 train={"dataset": "mnist", "epochs": 1})
    result = bounded_cli("train", spec, "--run-dir", tmp_path / "run", env=env)
    assert result.status == 2 and "train-images-idx3-ubyte.gz" in result.err, result
    assert any(p in result.err for p in phrase.split("|")), result
    assert "Traceback" not in result.err and result.peak < 256 * MiB, result


def _npz_dataset(path, **arrays):
    np.savez(path, **arrays)
    return ["--dataset", "npz", "--dataset-option", f"path={path}"]


def test_a_label_of_a_trillion_does_not_name_a_trillion_classes(tiny, tmp_path, bounded_cli):
    labels = np.arange(40) % 10
    labels[3] = 10**12
    flags = _npz_dataset(tmp_path / "d.npz", images=np.zeros((40, 1, 16, 16), np.uint8),
                         labels=labels)
    result = bounded_cli("train", tiny, "--run-dir", tmp_path / "run", *flags, timeout=60)
    assert result.refused("d.npz", "labels", "1,000,000,000,000"), result


def _png(width: int, height: int, chunks=()) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    body = zlib.compress(b"\0" * (width + 1) * min(height, 4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + b"".join(chunk(kind, data) for kind, data in chunks)
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


@pytest.mark.parametrize("case, picture, phrase", [
    ("past twice Pillow's limit", _png(20000, 20000), "too large to decode safely"),
    pytest.param("past Pillow's limit", _png(10000, 10000), "too large to decode safely",
                 marks=pytest.mark.slow),
    pytest.param("past the memory limit", _png(9000, 9000), "would take", marks=pytest.mark.slow),
    ("an oversized text chunk", _png(16, 16, [(b"zTXt", b"note\0\0" + zlib.compress(bytes(8 * MiB)))]),
     "cannot read image"),
])
def test_image_bombs_are_refused(trained, tiny, tmp_path, bounded_cli, case, picture, phrase):
    pytest.importorskip("PIL")
    path = tmp_path / "picture.png"
    path.write_bytes(picture)
    result = bounded_cli("predict", tiny, path, "--checkpoint", trained)
    assert result.refused("picture.png", phrase), (case, result)
    assert result.peak < 256 * MiB, (case, result)


# --- classes 4 and 5: crafted files are exit 2 naming the file; no silent wrong answers -----------
@pytest.mark.parametrize("case, array, phrase", [
    ("strings", np.array([["a" * 16] * 16] * 1), "not real numbers"),
    ("complex", np.zeros((1, 16, 16), np.complex64) + 1j, "not real numbers"),
    ("NaN", np.full((1, 16, 16), np.nan, np.float32), "NaN"),
    pytest.param("objects", None, "object arrays", marks=pytest.mark.slow),
])
def test_crafted_arrays_to_predict_are_refused(trained, tiny, tmp_path, bounded_cli, case, array,
                                              phrase):
    path = tmp_path / "x.npy"
    if array is None:
        path.write_bytes(_npy_header((1, 16, 16), "|O") + bytes(16))
    else:
        np.save(path, array)
    result = bounded_cli("predict", tiny, path, "--checkpoint", trained)
    assert result.refused("x.npy", phrase), (case, result)


def test_raw_zip_members_are_refused(trained, tiny, tmp_path, bounded_cli):
    images = tmp_path / "images.npz"
    with zipfile.ZipFile(images, "w") as archive:
        archive.writestr("images", b"\x00" * 256)  # no .npy: np.load would hand back bytes
    result = bounded_cli("predict", tiny, images, "--checkpoint", trained)
    assert result.refused("images.npz", "not an .npy array"), result
    raw = tmp_path / "raw.npz"
    with zipfile.ZipFile(trained) as source, zipfile.ZipFile(raw, "w") as archive:
        for name in source.namelist():
            archive.writestr(name, source.read(name))
        archive.writestr("optim/extra", b"raw")
    result = bounded_cli("eval", tiny, "--checkpoint", raw)
    assert result.refused("raw.npz", "optim/extra", "not an .npy array"), result


def test_nan_and_complex_in_a_dataset_are_bad_data_naming_the_file(tiny, tmp_path, bounded_cli):
    images = np.zeros((40, 1, 16, 16), np.float32)
    images[5, 0, 3, 3] = np.nan
    flags = _npz_dataset(tmp_path / "nan.npz", images=images, labels=np.arange(40) % 10)
    result = bounded_cli("train", tiny, "--run-dir", tmp_path / "run", *flags)
    assert result.refused("nan.npz", "NaN"), result
    assert "learning rate" not in result.err
    flags = _npz_dataset(tmp_path / "complex.npz", images=images.astype(np.complex64) * 1j,
                         labels=np.arange(40) % 10)
    result = bounded_cli("train", tiny, "--run-dir", tmp_path / "run", *flags)
    assert result.refused("complex.npz", "not real numbers"), result


def test_a_plugin_dataset_that_misbehaves_is_named(tiny, tmp_path, bounded_cli):
    plugin = tmp_path / "bad_data.py"
    plugin.write_text('''
import numpy as np
from graphnet.hookspecs import hookimpl
from graphnet.data import Dataset, DatasetSource, Split


class Raises(DatasetSource):
    """Raises."""
    name = "raises"

    def load(self, options, *, seed, cache_dir):
        raise RuntimeError("disk on fire")


class Strings(DatasetSource):
    """Images that are strings."""
    name = "strings"

    def load(self, options, *, seed, cache_dir):
        split = Split(np.array([["x"] * 16] * 16), np.zeros(16, np.int64))
        return Dataset("strings", split, split, [str(i) for i in range(10)])


class Nan(DatasetSource):
    """NaN images."""
    name = "nans"

    def load(self, options, *, seed, cache_dir):
        split = Split(np.full((16, 1, 16, 16), np.nan, np.float32), np.zeros(16, np.int64))
        return Dataset("nans", split, split, [str(i) for i in range(10)])


class Tuple(DatasetSource):
    """Returns a tuple."""
    name = "pair"

    def load(self, options, *, seed, cache_dir):
        return (1, 2)


@hookimpl
def graphnet_register_datasets(registry):
    for source in (Raises, Strings, Nan, Tuple):
        registry.add_dataset(source)
''')
    for dataset, phrase in (("raises", "disk on fire"), ("strings", "not an array of real"),
                            ("nans", "NaN"), ("pair", "returned tuple")):
        result = bounded_cli("train", tiny, "--run-dir", tmp_path / "run", "--dataset", dataset,
                             "--plugin", plugin)
        assert result.refused(f"dataset {dataset!r}", "plugin", phrase), (dataset, result)


# --- class 6: nothing a file can do makes a command wait forever ----------------------------------
def test_a_fifo_is_refused_wherever_a_file_is_read(trained, tiny, tmp_path, bounded_cli):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    for command in (["predict", tiny, fifo, "--checkpoint", trained],
                    ["eval", tiny, "--checkpoint", fifo],
                    ["train", tiny, "--run-dir", tmp_path / "run2", "--dataset", "npz",
                     "--dataset-option", f"path={fifo}"]):
        result = bounded_cli(*command, timeout=60)
        assert result.refused("pipe.npz", "not a regular file", "a FIFO"), (command, result)
