"""Fuzzing the files graphnet reads, with the rule specs follow: whatever a checkpoint, an image
array or a dataset file holds — mutated bytes, zip members, .npy headers, metadata values —
the command exits 0 or 2, never with a traceback and never hanging (an alarm fails a case
that takes too long). Short forms run by default; ``pytest -m slow`` runs the long ones."""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import signal
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphnet.cli import main

CI = settings.get_profile("hardening-ci")
LONG = settings.get_profile("hardening-long")
SECONDS_PER_CASE = 60

SPEC = {"graph": {"name": "fuzzed"},
        "inputs": {"image": {"shape": [1, 28, 28]}, "label": {"shape": [], "dtype": "int64"}},
        "nodes": [{"name": "pool", "op": "max_pool2d", "inputs": ["image"], "kernel": 4},
                  {"name": "flat", "op": "flatten"},
                  {"name": "fc", "op": "dense", "units": 10},
                  {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}],
        "outputs": {"logits": "fc", "loss": "loss"},
        "train": {"epochs": 1, "batch_size": 8, "optimizer": {"name": "adam"},
                  "dataset": {"name": "shapes", "size": 28, "channels": 1, "train_size": 16,
                              "test_size": 10}}}


@pytest.fixture
def base(train_once):
    """A spec, its trained checkpoint's bytes and a valid image array's bytes."""
    spec, checkpoint = train_once(SPEC, "fuzzed")
    buffer = io.BytesIO()
    np.savez(buffer, images=np.random.default_rng(0).integers(0, 255, (3, 1, 28, 28), np.uint8))
    return {"spec": spec, "checkpoint": checkpoint.read_bytes(), "images": buffer.getvalue()}


class _Alarm(Exception):
    pass


@contextlib.contextmanager
def _bounded(seconds=SECONDS_PER_CASE):
    """Fail a case that runs longer than ``seconds`` (a hang), rather than wait forever."""
    def ring(signum, frame):
        raise _Alarm(f"a fuzzed case ran longer than {seconds} s")
    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run(capsys, *args) -> int:
    capsys.readouterr()
    with _bounded():
        status = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert status in (0, 2), (args, status, captured.err)
    assert "Traceback" not in captured.err + captured.out
    if status == 2:
        assert captured.err.startswith("error:") or "\nerror:" in captured.err, captured.err
    return status


# --- mutations ----------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=8)
META_KEYS = ["epoch", "step", "global_step", "format_version", "partial", "history", "rng",
             "running", "standardise", "dataset", "bindings", "class_names", "config",
             "optimizer", "schedule", "spec_hash"]
DTYPES = ["<f4", "<f8", ">f4", "<i8", "|u1", "|b1", "<c8", "<U3", "|O", "|V8", "<M8[s]"]


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _npy_header(header: dict) -> bytes:
    text = repr(header).encode("latin1", "replace")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@st.composite
def mutated_archives(draw, original: bytes, with_meta: bool):
    """An .npz mutated at the byte, member, .npy-header or metadata level."""
    level = draw(st.sampled_from(["bytes", "member", "header", "meta"] if with_meta
                                 else ["bytes", "member", "header"]))
    if level == "bytes":
        raw = bytearray(original)
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(raw) - 1))
            raw[position] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            raw = raw[:draw(st.integers(0, len(raw)))]
        return bytes(raw)
    members = _members(original)
    names = sorted(members)
    name = draw(st.sampled_from(names))
    if level == "member":
        action = draw(st.sampled_from(["drop", "rename", "raw", "truncate", "duplicate-name"]))
        if action == "drop":
            del members[name]
        elif action == "rename":
            members[draw(st.text(min_size=1, max_size=12)) + ".npy"] = members.pop(name)
        elif action == "raw":
            members[name.removesuffix(".npy")] = draw(st.binary(max_size=64))
        elif action == "truncate":
            members[name] = members[name][:draw(st.integers(0, len(members[name])))]
        else:
            members["param/" + draw(st.text(max_size=8)) + ".npy"] = members[name]
        return _zip(members)
    if level == "header":
        shape = draw(st.lists(st.integers(0, 2**63), max_size=4).map(tuple)
                     | st.just((10**12,)) | st.just((2**62, 2**62)))
        header = {"descr": draw(st.sampled_from(DTYPES)), "fortran_order": draw(st.booleans()),
                  "shape": shape}
        body = members[name]
        members[name] = _npy_header(header) + body[128:] if len(body) > 128 else _npy_header(header)
        return _zip(members)
    meta = json.loads(np.load(io.BytesIO(members["meta.npy"]), allow_pickle=False).tobytes())
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(META_KEYS))
        if isinstance(meta.get(key), dict) and meta[key] and draw(st.booleans()):
            inner = draw(st.sampled_from(sorted(meta[key])))
            meta[key][inner] = draw(JSON_VALUES)
        else:
            meta[key] = draw(JSON_VALUES)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(meta).encode(), np.uint8))
    members["meta.npy"] = buffer.getvalue()
    return _zip(members)


# --- checkpoints ----------------------------------------------------------------------------------
def _checkpoint_case(base, tmp_path_factory, capsys, data, commands):
    folder = tmp_path_factory.mktemp("case")
    run = folder / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(data)
    np.save(folder / "image.npy", np.zeros((1, 28, 28), np.float32))
    for command in commands:
        args = {"predict": ["predict", base["spec"], folder / "image.npy", "--run-dir", run],
                "eval": ["eval", base["spec"], "--run-dir", run],
                "resume": ["train", base["spec"], "--run-dir", run, "--resume", "--epochs", "2"]}
        _run(capsys, *args[command])


@settings(CI, max_examples=40)
@given(data=st.data())
def test_mutated_checkpoints_are_used_or_refused(base, tmp_path_factory, capsys, data):
    archive = data.draw(mutated_archives(base["checkpoint"], with_meta=True))
    _checkpoint_case(base, tmp_path_factory, capsys, archive, ["predict"])


@pytest.mark.slow
@settings(LONG, max_examples=600)
@given(data=st.data())
def test_mutated_checkpoints_long(base, tmp_path_factory, capsys, data):
    archive = data.draw(mutated_archives(base["checkpoint"], with_meta=True))
    _checkpoint_case(base, tmp_path_factory, capsys, archive, ["predict", "eval", "resume"])


# --- image arrays and dataset files ---------------------------------------------------------------
def _images_case(base, tmp_path_factory, capsys, data: bytes, suffix: str):
    folder = tmp_path_factory.mktemp("case")
    path = folder / f"images{suffix}"
    path.write_bytes(data)
    run = folder / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(base["checkpoint"])
    _run(capsys, "predict", base["spec"], path, "--run-dir", run)


@settings(CI, max_examples=25)
@given(data=st.data())
def test_mutated_image_arrays_are_used_or_refused(base, tmp_path_factory, capsys, data):
    archive = data.draw(mutated_archives(base["images"], with_meta=False))
    if data.draw(st.booleans()):  # the same as a lone .npy
        members = _members(base["images"]) if archive[:2] != b"PK" else {}
        try:
            members = _members(archive)
        except (zipfile.BadZipFile, ValueError, EOFError, KeyError):
            pass
        single = next(iter(members.values()), archive)
        _images_case(base, tmp_path_factory, capsys, single, ".npy")
    else:
        _images_case(base, tmp_path_factory, capsys, archive, ".npz")


IDX_NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def _idx(array) -> bytes:
    from graphnet.data.testing import idx_bytes
    return idx_bytes(array)


@st.composite
def mutated_idx_files(draw):
    rng = np.random.default_rng(0)
    files = {IDX_NAMES[0]: _idx(rng.integers(0, 255, (12, 28, 28))),
             IDX_NAMES[1]: _idx(np.arange(12) % 10),
             IDX_NAMES[2]: _idx(rng.integers(0, 255, (10, 28, 28))),
             IDX_NAMES[3]: _idx(np.arange(10) % 10)}
    name = draw(st.sampled_from(IDX_NAMES))
    raw = bytearray(files[name])
    edit = draw(st.sampled_from(["header", "bytes", "truncate", "append"]))
    if edit == "header":
        position = draw(st.integers(0, 15))
        raw[position:position + 4] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    elif edit == "bytes":
        for _ in range(draw(st.integers(1, 4))):
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    elif edit == "truncate":
        raw = raw[:draw(st.integers(0, len(raw)))]
    else:
        raw += draw(st.binary(min_size=1, max_size=64))
    files[name] = bytes(raw)
    zipped = draw(st.booleans())
    return {key: gzip.compress(value) if zipped else value for key, value in files.items()}, \
        zipped


def _idx_case(base, tmp_path_factory, capsys, monkeypatch, case):
    files, zipped = case
    cache = tmp_path_factory.mktemp("cache")
    (cache / "mnist").mkdir()
    for name, data in files.items():
        (cache / "mnist" / (name if zipped else name.removesuffix(".gz"))).write_bytes(data)
    run = cache / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(base["checkpoint"])
    monkeypatch.setenv("GRAPHNET_CACHE", str(cache))
    _run(capsys, "eval", base["spec"], "--run-dir", run, "--dataset", "mnist")


@settings(CI, max_examples=20)
@given(case=mutated_idx_files())
def test_mutated_idx_files_are_used_or_refused(base, tmp_path_factory, capsys, monkeypatch, case):
    _idx_case(base, tmp_path_factory, capsys, monkeypatch, case)


@pytest.mark.slow
@settings(LONG, max_examples=500)
@given(case=mutated_idx_files())
def test_mutated_idx_files_long(base, tmp_path_factory, capsys, monkeypatch, case):
    _idx_case(base, tmp_path_factory, capsys, monkeypatch, case)
