"""Downloading dataset files into the cache, with the standard library only.

A download goes to ``NAME.part`` and resumes from its length with an HTTP Range request, both
when the connection drops during a run (a few retries) and when the command is run again.
Only a file whose SHA-256 equals the published digest is renamed to ``NAME``; a mismatch
deletes the ``.part`` and raises :class:`DataError`. Archives are unpacked into a hidden staging
folder beside them, refusing absolute paths, ``..`` and links, then moved into place.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import time
import urllib.parse
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import tarfile

from ..errors import DataError, UsageError
from .cache import default_cache_dir, find_file

MIRROR_ENV = "GRAPHNET_DATA_MIRROR"
CHUNK_BYTES = 1 << 16
MAX_UNPACKED_BYTES = 4 * 2**30
"""An archive that unpacks to more is refused (CIFAR-10 unpacks to 185 MB)."""

DEADLINE_SECONDS = 120.0
SLOWEST_BYTES_PER_SECOND = 16 * 1024
"""A download's deadline: DEADLINE_SECONDS plus its size at this rate (10 MB: about 12 min)."""
UNKNOWN_SIZE = 200 * 2**20
"""Size assumed for the deadline of a file whose size is not published."""

Progress = Callable[[str, int, "int | None"], None]
"""``progress(file name, bytes so far, total bytes or None)``, called as data arrives."""


@dataclass(frozen=True)
class RemoteFile:
    """One published file: its name, its size in bytes and its SHA-256 (hex)."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Remote:
    """Where a dataset's files come from: ``base_url`` followed by each file's name.

    ``unpack`` names the tar archives among ``files``, unpacked into the dataset's folder;
    ``provides`` lists the paths (relative to that folder) the loader reads — by default the
    downloaded files themselves.
    """

    base_url: str
    files: tuple[RemoteFile, ...]
    unpack: tuple[str, ...] = ()
    provides: tuple[str, ...] = ()

    def needed(self) -> tuple[str, ...]:
        return self.provides or tuple(f.name for f in self.files)

    def missing(self, folder: Path) -> list[str]:
        return [name for name in self.needed() if find_file(folder, name) is None]

    def status(self, folder: Path) -> str:
        """``cached``, ``partly downloaded`` (a ``.part`` to resume) or ``not fetched``."""
        if not self.missing(folder):
            return "cached"
        if any((folder / f"{f.name}.part").exists() for f in self.files):
            return "partly downloaded"
        return "not fetched"

    def require(self, folder: Path, *, dataset: str, cache_dir=None) -> Path:
        """``folder`` when every file the loader needs is there; else a DataError naming the
        first missing file and the command that downloads it."""
        missing = self.missing(folder)
        if missing:
            command = f"graphnet data fetch {dataset}"
            if cache_dir is not None and Path(cache_dir).expanduser() != default_cache_dir():
                command += f" --cache-dir {cache_dir}"
            raise DataError("dataset file missing", file=folder / missing[0],
                            hint=f"download it with: {command}")
        return folder


def file_url(remote: Remote, dataset: str, name: str, mirror: str | None = None) -> str:
    """The file's URL: ``MIRROR/DATASET/NAME`` with a mirror (argument, else
    ``GRAPHNET_DATA_MIRROR``), else the dataset's own ``base_url`` + ``NAME``."""
    field = "--mirror" if mirror else MIRROR_ENV
    mirror = mirror or os.environ.get(MIRROR_ENV, "").strip() or None
    if mirror:
        check_url(mirror, field=field)
        return f"{mirror.rstrip('/')}/{dataset}/{name}"
    return f"{remote.base_url.rstrip('/')}/{name}"


def check_url(url: str, *, field: str) -> None:
    """Refuse, naming ``field``, a URL urllib could not fetch: another scheme, no host, a bad
    port or IPv6 literal, spaces or control characters."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError for a port that is not a number in range
    except ValueError as error:
        raise UsageError("malformed URL", field=field, expected="http://HOST[:PORT]/PATH",
                         found=f"{url!r} ({error})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("unsupported download URL", field=field, expected="http:// or https:// and a host",
                         found=repr(url))
    if any(character.isspace() or ord(character) < 32 for character in url):
        raise UsageError("malformed URL", field=field, expected="no spaces or control characters",
                         found=repr(url))


def fetch(remote: Remote, folder: Path, *, dataset: str, mirror: str | None = None,
          progress: Progress | None = None, retries: int = 3, timeout: float = 30.0,
          backoff: float = 1.0) -> list[tuple[str, str]]:
    """Download (and unpack) whatever of ``remote`` is not in ``folder`` yet.

    Returns ``(file name, what happened)`` pairs: ``cached``, ``downloaded``, ``resumed`` or
    ``unpacked``. An archive whose content is all in place is not downloaded again.
    """
    folder = Path(folder)
    results = []
    for remote_file in remote.files:
        if remote_file.name in remote.unpack and not remote.missing(folder):
            results.append((remote_file.name, "cached"))
            continue
        url = file_url(remote, dataset, remote_file.name, mirror)
        results.append((remote_file.name, download(
            url, folder / remote_file.name, size=remote_file.size, sha256=remote_file.sha256,
            progress=progress, retries=retries, timeout=timeout, backoff=backoff)))
    if remote.unpack and remote.missing(folder):
        for archive in remote.unpack:
            extract_tar(folder / archive, folder)
            results.append((archive, "unpacked"))
    return results


# --- one file ------------------------------------------------------------------------------
class _Interrupted(Exception):
    """The transfer stopped early; what arrived is kept in the .part file."""


def sha256_of(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def download(url: str, target: str | os.PathLike, *, sha256: str, size: int | None = None,
             progress: Progress | None = None, retries: int = 3, timeout: float = 30.0,
             backoff: float = 1.0, deadline: float | None = None) -> str:
    """Make ``target`` hold the file at ``url`` with this digest: ``cached`` when it already
    does, else ``downloaded`` or ``resumed`` (a partial download was continued).

    ``timeout`` bounds each wait for the server; ``deadline`` (seconds, default
    :data:`DEADLINE_SECONDS` plus the time the file takes at :data:`SLOWEST_BYTES_PER_SECOND`)
    bounds the whole file, retries included, so a server trickling a byte at a time cannot
    hold the command forever. What arrived is kept for the next run to resume."""
    target = Path(target)
    check_url(url, field="url")
    if deadline is None:
        deadline = DEADLINE_SECONDS + (size or UNKNOWN_SIZE) / SLOWEST_BYTES_PER_SECOND
    until = time.monotonic() + deadline
    if target.is_file():
        if (size is None or target.stat().st_size == size) and sha256_of(target) == sha256:
            return "cached"
        target.unlink()  # a damaged copy is never used; fetch it again
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    resumed = part.is_file() and part.stat().st_size > 0
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, size=size, timeout=timeout, progress=progress, name=target.name,
                      until=until)
            break
        except _Interrupted as error:
            if attempt == retries:
                kept = part.stat().st_size if part.exists() else 0
                hint = (f"{kept} bytes are kept in {part}; run the command again to resume"
                        if kept else f"nothing arrived; check the network, or fetch from a "
                                     f"mirror with --mirror or {MIRROR_ENV}")
                raise DataError("download interrupted", file=url, found=str(error),
                                hint=hint) from None
            resumed = resumed or (part.exists() and part.stat().st_size > 0)
            time.sleep(min(backoff * (attempt + 1), max(0.0, until - time.monotonic())))
    digest = sha256_of(part)
    if digest != sha256:
        part.unlink()
        raise DataError("checksum mismatch; the download was discarded", file=url, field="sha256",
                        expected=sha256, found=digest,
                        hint="run the command again; if this repeats, the server or mirror "
                             "serves a different file")
    os.replace(part, target)
    return "resumed" if resumed else "downloaded"


def _transfer(url: str, part: Path, *, size, timeout, progress, name, until) -> None:
    """Append the rest of the file to ``part`` (or rewrite it when the server ignores Range)."""
    # here, not at the top: every command loads the dataset plugins, few of them download
    import http.client
    import urllib.error
    import urllib.request

    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return  # complete already; the digest decides whether it is good
    headers = {"User-Agent": "graphnet"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        _check_deadline(url, until, part)
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                          timeout=min(timeout, max(until - time.monotonic(),
                                                                   0.01)))
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # our partial file does not fit the server's: restart
            part.unlink()
            raise _Interrupted("the server refused to resume; starting over") from None
        raise DataError("download failed", file=url, expected="HTTP 200",
                        found=f"HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, (ConnectionError, TimeoutError)):
            raise _Interrupted(str(error.reason)) from None
        raise DataError("cannot reach the server", file=url, found=str(error.reason),
                        hint=f"check the network, or fetch from a mirror with --mirror or "
                             f"{MIRROR_ENV}") from None
    except (ConnectionError, TimeoutError, http.client.HTTPException) as error:
        raise _Interrupted(str(error) or type(error).__name__) from None
    with response:
        if offset and not (response.status == 206 and _range_start(response) == offset):
            offset = 0  # the server sent the whole file (or another range): rewrite it
        length = response.headers.get("Content-Length")
        end = offset + int(length) if length and length.isdigit() else size
        done = offset
        with open(part, "ab" if offset else "wb") as stream:
            try:
                while True:
                    _check_deadline(url, until, part, stream)
                    chunk = response.read1(CHUNK_BYTES)
                    if not chunk:
                        break
                    done += len(chunk)
                    if size is not None and done > size:
                        stream.close()
                        part.unlink()
                        raise DataError("download is larger than the published file", file=url,
                                        expected=f"{size} bytes", found=f"at least {done} bytes")
                    stream.write(chunk)
                    if progress:
                        progress(name, done, size)
            except (ConnectionError, TimeoutError, http.client.HTTPException) as error:
                raise _Interrupted(f"connection lost after {done} bytes: "
                                   f"{error or type(error).__name__}") from None
            finally:
                if not stream.closed:
                    stream.flush()
                    os.fsync(stream.fileno())
    if end is not None and done < end:
        raise _Interrupted(f"connection closed after {done} of {end} bytes")


def _check_deadline(url: str, until: float, part: Path, stream=None) -> None:
    if time.monotonic() <= until:
        return
    if stream is not None:
        stream.flush()
    kept = part.stat().st_size if part.exists() else 0
    raise DataError("download took longer than its deadline", file=url,
                    found=f"{kept:,} bytes so far",
                    hint=(f"the server or the network is too slow; {kept:,} bytes are kept in "
                          f"{part} and the next run resumes" if kept else
                          f"the server or the network is too slow; try a mirror with --mirror "
                          f"or {MIRROR_ENV}"))


def _range_start(response) -> int | None:
    """The first byte of a ``Content-Range: bytes START-END/TOTAL`` reply."""
    value = response.headers.get("Content-Range", "")
    unit, _, spec = value.partition(" ")
    start = spec.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


# --- archives ------------------------------------------------------------------------------
def extract_tar(archive: str | os.PathLike, folder: str | os.PathLike) -> list[str]:
    """Unpack a (possibly compressed) tar archive's regular files and folders into ``folder``.

    Members with an absolute path, a ``..`` component, a link or a device are refused with a
    DataError and nothing is written to ``folder``. The top-level entries unpacked replace
    those of the same name. Returns their names.
    """
    archive, folder = Path(archive), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # A fresh, unpredictable name: no archive member can name (and so replace) the staging folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".unpacking", dir=folder))
    try:
        _unpack_into(archive, staging)
        entries = sorted(entry.name for entry in staging.iterdir())
        for name in entries:
            final = folder / name
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            elif final.exists() or final.is_symlink():
                final.unlink()
            os.replace(staging / name, final)
        return entries
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unpack_into(archive: Path, staging: Path) -> None:
    import tarfile  # only when unpacking, like the network modules in _transfer

    unpacked = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                relative = _member_path(member, archive)
                if relative is None:
                    continue
                destination = staging.joinpath(*relative.parts)
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                unpacked += member.size
                if unpacked > MAX_UNPACKED_BYTES:
                    raise DataError("archive unpacks to too much data", file=archive,
                                    expected=f"at most {MAX_UNPACKED_BYTES} bytes")
                destination.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, open(destination, "wb") as target:
                    shutil.copyfileobj(source, target, CHUNK_BYTES)
    except FileNotFoundError:
        raise DataError("archive not found", file=archive) from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError("corrupt or truncated archive", file=archive,
                        found=str(error) or type(error).__name__) from None
    except OSError as error:
        raise DataError(f"cannot unpack archive: {error.strerror or error}", file=archive) from None


def _member_path(member: tarfile.TarInfo, archive: Path) -> PurePosixPath | None:
    """The member's path below the target folder, or DataError when it could leave it or is
    not a plain file or folder; None for the archive's root entry (``.``)."""
    name = member.name
    path = PurePosixPath(name)
    if (name.startswith(("/", "\\")) or path.is_absolute() or "\\" in name
            or (len(name) > 1 and name[1] == ":")):
        raise DataError("archive member has an absolute path; refused", file=archive, field=name,
                        expected="paths inside the archive's folder")
    if ".." in path.parts:
        raise DataError("archive member climbs out of its folder with '..'; refused",
                        file=archive, field=name, expected="paths inside the archive's folder")
    if not (member.isfile() or member.isdir()):
        kind = ("a symbolic link" if member.issym() else "a hard link" if member.islnk()
                else "a device or pipe")
        raise DataError("archive member is not a plain file or folder; refused", file=archive,
                        field=name, expected="regular files and folders", found=kind)
    parts = [part for part in path.parts if part not in ("", ".")]
    return PurePosixPath(*parts) if parts else None
