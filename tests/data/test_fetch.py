"""Downloads against a local server: checksums, resuming, mirrors; safe archive unpacking."""
import gzip
import hashlib
import io
import socket
import tarfile
import time

import numpy as np
import pytest

from graphnet.cli import main
from graphnet.data.fetch import (MIRROR_ENV, Remote, RemoteFile, download, extract_tar, fetch,
                                 file_url)
from graphnet.data.testing import FileServer, cifar_bytes, idx_bytes, tar_bytes
from graphnet.errors import DataError, UsageError

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes: several read chunks


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_payload(server, target, **options):
    options.setdefault("backoff", 0)
    return download(f"{server.url}/file.bin", target, sha256=sha(PAYLOAD), size=len(PAYLOAD),
                    **options)


def test_download_verifies_and_renames_into_place(tmp_path):
    target = tmp_path / "cache" / "file.bin"
    with FileServer({"/file.bin": PAYLOAD}) as server:
        assert fetch_payload(server, target) == "downloaded"
        assert fetch_payload(server, target) == "cached"
    assert target.read_bytes() == PAYLOAD
    assert not target.with_name("file.bin.part").exists()
    assert len(server.requests) == 1, "a cached, verified file is not downloaded again"


def test_checksum_mismatch_raises_and_keeps_nothing(tmp_path):
    target = tmp_path / "file.bin"
    with FileServer({"/file.bin": PAYLOAD[:-1] + b"X"}) as server:
        with pytest.raises(DataError) as caught:
            fetch_payload(server, target)
    error = caught.value
    assert "checksum mismatch" in str(error) and error.expected == sha(PAYLOAD)
    assert error.found == sha(PAYLOAD[:-1] + b"X")
    assert not target.exists() and not target.with_name("file.bin.part").exists()


def test_interrupted_transfer_resumes_with_a_range_request(tmp_path):
    target = tmp_path / "file.bin"
    with FileServer({"/file.bin": PAYLOAD}, cut_after={"/file.bin": 30_000}) as server:
        assert fetch_payload(server, target, retries=2) == "resumed"
    assert target.read_bytes() == PAYLOAD
    assert [header for _, header in server.requests] == [None, "bytes=30000-"]


def test_a_broken_download_is_kept_and_the_next_run_resumes_it(tmp_path):
    target = tmp_path / "file.bin"
    part = tmp_path / "file.bin.part"
    with FileServer({"/file.bin": PAYLOAD}, cut_after={"/file.bin": 12_345}) as server:
        with pytest.raises(DataError, match="download interrupted") as caught:
            fetch_payload(server, target, retries=0)
        assert "run the command again" in caught.value.hint
        assert part.read_bytes() == PAYLOAD[:12_345] and not target.exists()
        assert fetch_payload(server, target, retries=0) == "resumed"
    assert target.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests[-1] == ("/file.bin", "bytes=12345-")


def test_a_refused_connection_does_not_claim_bytes_are_kept(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = tmp_path / "file.bin"
    with pytest.raises(DataError) as caught:
        download(f"http://127.0.0.1:{port}/file.bin", target, sha256=sha(PAYLOAD), retries=0)
    assert "bytes are kept" not in caught.value.hint and MIRROR_ENV in caught.value.hint
    assert not target.with_name("file.bin.part").exists()


def test_a_server_that_ignores_range_gets_the_file_rewritten(tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes from elsewhere")
    with FileServer({"/file.bin": PAYLOAD}, honour_range=False) as server:
        assert fetch_payload(server, tmp_path / "file.bin") == "resumed"
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_a_partial_file_longer_than_the_server_s_is_discarded(tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"x" * (len(PAYLOAD) + 5))
    with FileServer({"/file.bin": PAYLOAD}) as server:
        fetch_payload(server, tmp_path / "file.bin")
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_a_damaged_cached_file_is_downloaded_again(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"not the file")
    with FileServer({"/file.bin": PAYLOAD}) as server:
        assert fetch_payload(server, target) == "downloaded"
    assert target.read_bytes() == PAYLOAD


def test_a_larger_download_than_published_is_refused(tmp_path):
    with FileServer({"/file.bin": PAYLOAD + b"extra"}) as server:
        with pytest.raises(DataError, match="larger than the published file"):
            fetch_payload(server, tmp_path / "file.bin")
    assert not list(tmp_path.iterdir())


def test_http_errors_and_other_schemes(tmp_path):
    with FileServer({}) as server:
        with pytest.raises(DataError, match="HTTP 404"):
            fetch_payload(server, tmp_path / "file.bin")
    with pytest.raises(UsageError, match="unsupported download URL"):
        download("file:///etc/passwd", tmp_path / "x", sha256="0" * 64)


def test_mirror_urls(monkeypatch):
    remote = Remote("https://example.org/data/", (RemoteFile("a.gz", 1, "0" * 64),))
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert file_url(remote, "mnist", "a.gz") == "https://example.org/data/a.gz"
    assert file_url(remote, "mnist", "a.gz", "http://127.0.0.1:9/m/") == "http://127.0.0.1:9/m/mnist/a.gz"
    monkeypatch.setenv(MIRROR_ENV, "http://mirror.test")
    assert file_url(remote, "mnist", "a.gz") == "http://mirror.test/mnist/a.gz"


# --- a whole dataset -------------------------------------------------------------------------
def idx_remote_and_files():
    rng = np.random.default_rng(0)
    files = {"images.gz": gzip.compress(idx_bytes(rng.integers(0, 256, (5, 4, 4)))),
             "labels.gz": gzip.compress(idx_bytes(rng.integers(0, 10, 5)))}
    remote = Remote("https://unused.invalid/",
                    tuple(RemoteFile(name, len(data), sha(data)) for name, data in files.items()))
    return remote, files


def test_fetch_a_dataset_through_a_mirror(tmp_path, monkeypatch):
    remote, files = idx_remote_and_files()
    folder = tmp_path / "tiny"
    assert remote.status(folder) == "not fetched"
    with FileServer({f"/tiny/{name}": data for name, data in files.items()}) as server:
        monkeypatch.setenv(MIRROR_ENV, server.url)
        assert fetch(remote, folder, dataset="tiny") == [("images.gz", "downloaded"),
                                                         ("labels.gz", "downloaded")]
        assert fetch(remote, folder, dataset="tiny") == [("images.gz", "cached"),
                                                         ("labels.gz", "cached")]
    assert remote.status(folder) == "cached" and remote.require(folder, dataset="tiny") == folder


def test_status_reports_a_partial_download(tmp_path):
    remote, _ = idx_remote_and_files()
    (tmp_path / "images.gz.part").write_bytes(b"x")
    assert remote.status(tmp_path) == "partly downloaded"


def test_require_names_the_missing_file_and_the_fetch_command(tmp_path):
    remote, _ = idx_remote_and_files()
    with pytest.raises(DataError) as caught:
        remote.require(tmp_path / "tiny", dataset="tiny", cache_dir=tmp_path)
    message = str(caught.value)
    assert "images.gz" in message and "dataset file missing" in message
    assert f"graphnet data fetch tiny --cache-dir {tmp_path}" in message


def test_fetch_unpacks_an_archive_once_and_keeps_it(tmp_path):
    batch = cifar_bytes(np.zeros((2, 3, 32, 32)), [1, 2])
    archive = tar_bytes({"batches/one.bin": batch, "batches/two.bin": batch})
    remote = Remote("https://unused.invalid/", (RemoteFile("data.tar.gz", len(archive), sha(archive)),),
                    unpack=("data.tar.gz",), provides=("batches/one.bin", "batches/two.bin"))
    with FileServer({"/toy/data.tar.gz": archive}) as server:
        results = fetch(remote, tmp_path, dataset="toy", mirror=server.url)
        assert results == [("data.tar.gz", "downloaded"), ("data.tar.gz", "unpacked")]
        assert fetch(remote, tmp_path, dataset="toy", mirror=server.url) == [("data.tar.gz", "cached")]
    assert (tmp_path / "batches" / "two.bin").read_bytes() == batch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batches", "data.tar.gz"]


# --- archives --------------------------------------------------------------------------------
def write_tar(path, *members):
    """``members``: (TarInfo, data or None)."""
    with tarfile.open(path, "w") as archive:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def regular(name, data=b"data"):
    return tarfile.TarInfo(name), data


def link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("bad, reason", [
    (regular("../escaped.txt"), "'..'"),
    (regular("inner/../../escaped.txt"), "'..'"),
    (regular("/tmp/absolute.txt"), "absolute path"),
    (link("inner/link", "/etc/passwd", tarfile.SYMTYPE), "symbolic link"),
    (link("inner/hard", "/etc/passwd", tarfile.LNKTYPE), "hard link"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink"])
def test_unsafe_archive_members_are_refused_and_nothing_is_written(tmp_path, bad, reason):
    archive = write_tar(tmp_path / "evil.tar", regular("inner/good.txt"), bad)
    folder = tmp_path / "cache"
    folder.mkdir()
    with pytest.raises(DataError, match="refused") as caught:
        extract_tar(archive, folder)
    assert reason in str(caught.value)
    assert list(folder.iterdir()) == [], "nothing unpacked, no staging folder left behind"
    assert not (tmp_path / "escaped.txt").exists()


def test_extract_replaces_an_older_copy(tmp_path):
    archive = write_tar(tmp_path / "a.tar", regular("./inner/new.txt", b"new"))
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "old.txt").write_bytes(b"old")
    assert extract_tar(archive, tmp_path) == ["inner"]
    assert [p.name for p in (tmp_path / "inner").iterdir()] == ["new.txt"]


def test_a_corrupt_archive_is_a_data_error(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(tar_bytes({"x": b"y" * 5000})[:60])
    with pytest.raises(DataError, match="corrupt or truncated archive"):
        extract_tar(archive, tmp_path / "out")


def test_a_server_trickling_bytes_meets_the_deadline_and_keeps_what_came(tmp_path):
    target = tmp_path / "file.bin"
    with FileServer({"/file.bin": PAYLOAD}, trickle={"/file.bin": 0.05}) as server:
        started = time.monotonic()
        with pytest.raises(DataError, match="longer than its deadline") as caught:
            # every read gets a byte within the per-read timeout: only the deadline stops it
            fetch_payload(server, target, timeout=5, deadline=1.0)
        assert time.monotonic() - started < 10
    assert "kept in" in str(caught.value) and not target.exists()
    assert 0 < (tmp_path / "file.bin.part").stat().st_size < len(PAYLOAD)


@pytest.mark.parametrize("mirror", ["http://[::1", "http://example.org:99999", "ftp://example.org",
                                    "example.org/data", "http://", "http://exa mple.org"])
def test_a_malformed_mirror_is_refused_naming_the_flag(tmp_path, mirror):
    status = main(["data", "fetch", "mnist", "--cache-dir", str(tmp_path), "--mirror", mirror])
    assert status == 2
    assert not any(tmp_path.rglob("*.part"))


def test_a_malformed_mirror_in_the_environment_is_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GRAPHNET_DATA_MIRROR", "http://[::1")
    assert main(["data", "fetch", "mnist", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "GRAPHNET_DATA_MIRROR" in err and "malformed URL" in err and "Traceback" not in err
