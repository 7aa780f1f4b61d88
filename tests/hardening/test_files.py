"""Files that could run code, and files that are not what they claim: no pickle anywhere,
object arrays refused, newer checkpoint formats refused, atomic writes that survive a full
disk, and every CLI error path exiting 2 with one located message and no traceback."""
from __future__ import annotations

import errno
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import graphnet
from graphnet import checkpoint as ckpt
from graphnet import files
from graphnet.cli import main

ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("graphnet", "plugins")


def _sources():
    for folder in SOURCE_FOLDERS:
        yield from sorted((ROOT / folder).rglob("*.py"))


def test_no_pickle_anywhere_in_the_source():
    forbidden = re.compile(r"^\s*(import|from)\s+(c?pickle|cloudpickle|dill|shelve|marshal|joblib)"
                           r"\b|allow_pickle\s*=\s*True|torch\.load\(|pd\.read_pickle", re.M)
    offenders = [f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
                 for path in _sources() for match in forbidden.finditer(path.read_text())]
    assert not offenders, offenders


def test_every_np_load_forbids_pickle():
    calls = []
    for path in _sources():
        text = path.read_text()
        for match in re.finditer(r"np\.load\(", text):
            depth, end = 0, match.end() - 1
            for end in range(match.end() - 1, len(text)):  # the call's closing parenthesis
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            call = text[match.start():end + 1]
            calls.append(call)
            assert "allow_pickle=False" in call, f"{path.relative_to(ROOT)}: {call}"
    # Today every .npy and .npz is read by graphnet.files (headers parsed by hand, no pickle at
    # all); any np.load that comes back must still forbid pickle.
    assert "def read_npy" in (ROOT / "graphnet" / "files.py").read_text()


# --- checkpoints ---------------------------------------------------------------------------------
@pytest.fixture
def net():
    graph = graphnet.load({"inputs": {"x": {"shape": [3]}},
                           "nodes": [{"name": "fc", "op": "dense", "units": 2}]})
    return graphnet.Network(graph, seed=0)


def _checkpoint(net, **meta):
    return ckpt.Checkpoint(params=net.flat_params(), meta={"epoch": 1, **meta})


class _RunsCode:
    """Unpickling this would create a file: proof that nothing was unpickled."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_object_arrays_is_refused_without_unpickling(tmp_path, net):
    marker = tmp_path / "code-ran"
    payload = _RunsCode()
    payload.marker = marker
    path = tmp_path / "evil.npz"
    arrays = {f"param/{k}": v for k, v in net.flat_params().items()}
    arrays["param/fc/weight"] = np.array([payload, 1], dtype=object)
    arrays["meta"] = np.frombuffer(json.dumps({"format_version": 1}).encode(), dtype=np.uint8)
    np.savez(path, **arrays)  # numpy pickles the object array
    with pytest.raises(graphnet.CheckpointError) as caught:
        ckpt.load_checkpoint(path)
    assert "object arrays" in str(caught.value) and str(path) in str(caught.value)
    assert not marker.exists()


def test_a_newer_checkpoint_format_is_refused(tmp_path, net, rewrite_checkpoint_meta):
    path = tmp_path / "future.npz"
    ckpt.save_checkpoint(path, _checkpoint(net))
    rewrite_checkpoint_meta(path, format_version=ckpt.FORMAT_VERSION + 1)
    with pytest.raises(graphnet.CheckpointError) as caught:
        ckpt.load_checkpoint(path)
    message = str(caught.value)
    assert "newer than this graphnet understands" in message
    assert f"format version <= {ckpt.FORMAT_VERSION}" in message and "upgrade" in message


def test_a_checkpoint_carries_its_format_version(tmp_path, net):
    path = tmp_path / "ok.npz"
    ckpt.save_checkpoint(path, _checkpoint(net, spec_hash=ckpt.spec_hash(net.graph)))
    loaded = ckpt.load_checkpoint(path)
    assert loaded.meta["format_version"] == ckpt.FORMAT_VERSION
    assert loaded.meta["spec_hash"] == ckpt.spec_hash(net.graph)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "not_a_zip", "no_meta",
                                    "bad_meta", "directory"])
def test_a_damaged_checkpoint_is_a_checkpoint_error(tmp_path, net, damage):
    path = tmp_path / "damaged.npz"
    ckpt.save_checkpoint(path, _checkpoint(net))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(data[:100] + bytes(range(256)) * 4 + data[1200:])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not_a_zip":
        path.write_text("[graph]\nname = 'not a checkpoint'\n")
    elif damage == "no_meta":
        np.savez(path, weights=np.zeros(3))
    elif damage == "bad_meta":
        np.savez(path, meta=np.frombuffer(b"\xff{not json", dtype=np.uint8))
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises(graphnet.CheckpointError) as caught:
        ckpt.restore_params(path, net)
    assert str(path) in str(caught.value)


def test_a_checkpoint_of_another_spec_names_the_parameter(tmp_path, net):
    other = graphnet.Network(graphnet.load({"inputs": {"x": {"shape": [4]}},
                                            "nodes": [{"name": "fc", "op": "dense", "units": 2}]}))
    path = tmp_path / "other.npz"
    ckpt.save_checkpoint(path, _checkpoint(other))
    with pytest.raises(graphnet.CheckpointError) as caught:
        ckpt.restore_params(path, net)
    assert caught.value.field == "fc/weight" and "2×3" in str(caught.value)


# --- atomic writes under a full disk --------------------------------------------------------------
def _full_disk_after(monkeypatch, budget: int):
    """Make writes through atomic_writer fail with ENOSPC once ``budget`` bytes are written."""
    real_fdopen = os.fdopen

    class FillingStream(io.RawIOBase):
        def __init__(self, inner):
            self.inner, self.written = inner, 0

        def write(self, data):
            if self.written + len(data) > budget:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return self.inner.write(data)

        def flush(self):
            self.inner.flush()

        def fileno(self):
            return self.inner.fileno()

        def close(self):
            super().close()  # flushes first
            self.inner.close()

    monkeypatch.setattr(files.os, "fdopen", lambda *a, **k: FillingStream(real_fdopen(*a, **k)))


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, net, monkeypatch):
    path = tmp_path / "run" / "checkpoint.npz"
    ckpt.save_checkpoint(path, _checkpoint(net, epoch=1))
    before = path.read_bytes()
    net.params["fc"]["weight"] += 1
    _full_disk_after(monkeypatch, budget=100)
    with pytest.raises(graphnet.CheckpointError) as caught:
        ckpt.save_checkpoint(path, _checkpoint(net, epoch=2))
    assert "the disk is full" in str(caught.value) and "previous checkpoint is kept" in str(
        caught.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.npz"]  # no temp left
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path).epoch == 1


def test_a_failing_fsync_or_rename_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "data.txt"
    files.atomic_write_text(path, "old")
    for target in ("fsync", "replace"):
        with monkeypatch.context() as patched:
            def fail(*args, **kwargs):
                raise OSError(errno.EIO, "I/O error")
            patched.setattr(files.os, target, fail)
            with pytest.raises(OSError):
                files.atomic_write_text(path, "new")
        assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["data.txt"]


# --- the CLI's error paths -------------------------------------------------------------------------
def _cli(capsys, *args):
    capsys.readouterr()
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return status, captured.err


@pytest.mark.parametrize("case, expected", [
    ("directory", "spec path is a directory"),
    ("missing", "spec file not found"),
    ("non_utf8", "spec is not UTF-8 text: found byte 0xff at line 2, column 9 (offset 16)"),
    ("empty", "spec file is empty"),
    ("suffix", "cannot tell the spec's format"),
    ("unreadable", "cannot read spec: Permission denied"),
    ("syntax", "TOML syntax error: Expected '=' after a key in a key/value pair (at line 2"),
])
def test_each_bad_spec_path_is_one_located_message(tmp_path, capsys, monkeypatch, case, expected):
    path = tmp_path / ("spec.yaml" if case == "suffix" else "spec.toml")
    if case == "directory":
        path.mkdir()
    elif case == "non_utf8":
        path.write_bytes(b'[graph]\nname = "\xff"\n')
    elif case == "empty":
        path.write_text("  \n")
    elif case == "syntax":
        path.write_text("[graph]\nname\n")
    elif case in ("suffix", "unreadable"):
        path.write_text("[graph]\n")
    if case == "unreadable":
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: make the read itself fail
            real = Path.read_bytes

            def refuse(self):
                if self == path:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
                return real(self)
            monkeypatch.setattr(Path, "read_bytes", refuse)
    status, err = _cli(capsys, "check", path)
    assert status == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], err


@pytest.mark.parametrize("args, expected", [
    (["gradcheck", "{spec}", "--batch-size", "0"], "argument --batch-size: expected an integer"),
    (["gradcheck", "{spec}", "--batch-size", "many"], "argument --batch-size"),
    (["gradcheck", "{spec}", "--tolerance", "nan"], "argument --tolerance: expected a finite"),
    (["gradcheck", "{spec}", "--points", "-3"], "argument --points"),
    (["check", "{spec}", "--memory-limit", "12 parsecs"], "field '--memory-limit'"),
    (["check"], "the following arguments are required: SPEC"),
    (["no-such-command"], "invalid choice"),
])
def test_bad_argument_values_exit_2_with_one_message(tmp_path, capsys, args, expected):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"inputs": {"x": {"shape": [2]}},
                                "nodes": [{"name": "r", "op": "relu"}]}))
    argv = [a.format(spec=spec) for a in args]
    try:
        status, err = _cli(capsys, *argv)
    except SystemExit as exit_:  # argparse's own refusal: usage and one error line
        status, err = exit_.code, capsys.readouterr().err
    assert status == 2 and expected in err and "Traceback" not in err, err


def test_running_out_of_memory_is_a_message_not_a_traceback(tmp_path, graphnet_cmd):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"inputs": {"x": {"shape": [1, 28, 28]}},
                                "nodes": [{"name": "r", "op": "relu"}]}))
    status, out, err = graphnet_cmd("gradcheck", spec, "--batch-size", "100000000000", "--points",
                                    "0")
    assert status == 2 and "Traceback" not in err
    assert "error:" in err and ("memory" in err or "ResourceError" in err or "too big" in err)


# --- dataset files (graphnet.data): archives and .npz from someone else ------------------------
def test_a_dataset_npz_with_object_arrays_runs_no_code(tmp_path):
    from graphnet.data.readers import read_npz_arrays
    from graphnet.registry import build_registry
    from graphnet.op import REQUIRED
    from types import SimpleNamespace

    marker = tmp_path / "code-ran"
    payload = _RunsCode()
    payload.marker = marker
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.array([payload], dtype=object), labels=np.zeros(1, np.int64))
    with pytest.raises(graphnet.DataError) as caught:
        read_npz_arrays(path, [["images", "labels"]])
    assert "object" in str(caught.value) and str(path) in str(caught.value)
    source = build_registry(environment=False).entry("dataset", "npz").value
    options = {name: attr.default for name, attr in source.options.items()
               if attr.default is not REQUIRED}
    with pytest.raises(graphnet.DataError):
        source().load(SimpleNamespace(**dict(options, path=str(path))), seed=0,
                      cache_dir=tmp_path)
    assert not marker.exists()


from hypothesis import given, settings  # noqa: E402  (the archive fuzzer below)
from hypothesis import strategies as st  # noqa: E402

NAME_PARTS = ["a", "b", "..", ".", "", "C:", "évil", ".evil.tar.unpacking", "evil.tar", "x" * 120]
KINDS = ["file", "file", "dir", "symlink", "hardlink", "fifo"]


@st.composite
def tar_members(draw):
    members = []
    for _ in range(draw(st.integers(1, 6))):
        parts = draw(st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=4))
        name = draw(st.sampled_from(["", "/", "./", "\\"])) + "/".join(parts)
        members.append((name, draw(st.sampled_from(KINDS)),
                        draw(st.sampled_from(["../outside/target", "/etc/passwd", "a", "b/../.."]))))
    return members


def _write_tar(path, members):
    import tarfile
    with tarfile.open(path, "w") as tar:
        for name, kind, target in members:
            info = tarfile.TarInfo(name or ".")
            data = b""
            if kind == "file":
                data = b"payload"
                info.size = len(data)
            elif kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, target
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, target
            else:
                info.type = tarfile.FIFOTYPE
            tar.addfile(info, io.BytesIO(data) if data else None)


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.is_symlink(), p.is_file() and p.read_bytes())
            for p in sorted(folder.rglob("*"))}


@settings(settings.get_profile("hardening-ci"), max_examples=150)
@given(members=tar_members())
def test_no_archive_writes_outside_its_cache_folder(tmp_path_factory, members):
    from graphnet.data.fetch import extract_tar

    root = tmp_path_factory.mktemp("tar")
    outside, cache = root / "outside", root / "cache"
    outside.mkdir()
    (outside / "target").write_bytes(b"keep me")
    cache.mkdir()
    archive = cache / "evil.tar"
    _write_tar(archive, members)
    before = _tree(outside)
    try:
        extract_tar(archive, cache)
    except graphnet.DataError as error:
        assert str(archive) in str(error)
    assert _tree(outside) == before
    assert sorted(p.name for p in root.iterdir()) == ["cache", "outside"]
    for path in cache.rglob("*"):
        assert not path.is_symlink(), f"a link was unpacked: {path}"
        assert path.resolve().is_relative_to(cache.resolve())
    assert not any(p.name.endswith(".unpacking") for p in cache.iterdir()), "staging left behind"


def test_an_archive_member_named_like_the_staging_folder_is_a_data_error(tmp_path):
    from graphnet.data.fetch import extract_tar

    archive = tmp_path / "evil.tar"
    _write_tar(archive, [(".evil.tar.unpacking/a", "file", ""), ("b", "file", "")])
    try:
        extract_tar(archive, tmp_path)
    except graphnet.DataError:
        pass
    # the member is unpacked like any other; the staging folder is never the member
    assert sorted(p.name for p in tmp_path.iterdir()) in (["evil.tar"],
                                                          [".evil.tar.unpacking", "b", "evil.tar"])
    assert (tmp_path / ".evil.tar.unpacking" / "a").exists()


def test_temp_files_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "checkpoint.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    orphan = tmp_path / f".checkpoint.npz.{dead}.abc123.tmp"
    live = tmp_path / f".checkpoint.npz.{os.getpid()}.def456.tmp"  # a writer still at work
    other = tmp_path / f".history.json.{dead}.x.tmp"  # another file's: not ours to judge
    for stray in (orphan, live, other):
        stray.write_bytes(b"half")
    files.atomic_write_bytes(path, b"whole")
    assert path.read_bytes() == b"whole"
    assert not orphan.exists() and live.exists() and other.exists()
