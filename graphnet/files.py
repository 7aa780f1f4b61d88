"""Atomic file writes: a temp file in the same folder, flushed and fsynced, then renamed over the
target, so a crash or a full disk never leaves a half-written file in place of a good one. The
temp file's name carries the writer's process id, so a later write can remove what a killed
writer left behind."""
from __future__ import annotations

import contextlib
import glob
import math
import os
import re
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .text import format_bytes


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb"):
    """Yield a file object; on success it replaces ``path`` atomically, on error nothing changes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)  # first, so their space is free for this write
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                         dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_current_umask())  # mkstemp's 0600 is not what users expect
        with os.fdopen(handle, mode) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_directory(path.parent)


def _remove_orphans(path: Path) -> None:
    """Delete temp files of ``path`` left by writers that were killed (SIGKILL, power loss):
    their process is gone, so the file can never be renamed into place. A writer that is
    still running is recognised by its process id in the name and left alone."""
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = orphan.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _process_exists(int(pid)):
            with contextlib.suppress(OSError):
                orphan.unlink()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is another user's
        return True
    return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_writer(path, "w") as stream:
        stream.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path, "wb") as stream:
        stream.write(data)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform allows it)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


NUMPY_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")
"""How a zip archive (an .npz; empty ones start with the end record) or an .npy array begins."""


def is_numpy_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like an .npz or .npy file. Check before ``np.load``: it calls any
    other file "pickled (object) data", which is wrong and alarming for, say, a text file."""
    with open(path, "rb") as stream:
        return stream.read(6).startswith(NUMPY_MAGIC)


# --- reading files someone else wrote: sizes checked before anything is allocated ---------------
READ_CHUNK = 16 << 20
"""Bytes read at a time into an array being filled, so a read never holds a second copy."""
MAX_NPY_HEADER = 10_000
"""numpy writes headers of a few hundred bytes; its own reader stops at 10,000 too."""


def open_regular(path: str | os.PathLike, error, *, what: str = "file"):
    """``path`` opened for binary reading, refused (``error``, a GraphnetError class) unless it
    is a regular file: opening a FIFO would wait for a writer forever, and a device or a
    folder is never data. The check is on the opened descriptor, so it cannot be raced."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{what} not found", file=path) from None
    except IsADirectoryError:
        raise error(f"{what} is a folder", file=path, expected="a regular file") from None
    except OSError as failure:
        raise error(f"cannot read {what}: {failure.strerror or failure}", file=path) from None
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise error(f"{what} is not a regular file", file=path, expected="a regular file",
                        found=kind)
        if hasattr(os, "O_NONBLOCK"):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def check_size(declared: int, budget: int | None, error, *, file, field=None, what: str) -> None:
    """Refuse ``declared`` bytes (from a header, before reading) beyond ``budget``."""
    if budget is not None and declared > budget:
        raise error(f"{what} would take {format_bytes(declared)}, more than the memory limit of "
                    f"{format_bytes(budget)}", file=file, field=field,
                    hint="if the file is genuine, raise the limit with GRAPHNET_MEMORY_LIMIT or "
                         "--memory-limit")


def read_capped(stream, size: int, error, *, file, what: str = "data") -> bytes:
    """Exactly ``size`` bytes, refusing a stream that ends early or holds more: one byte past
    ``size`` is all that is read of a stream that is too long (a gzip bomb inflates no further)."""
    data = stream.read(size + 1)
    if len(data) < size:
        raise error(f"truncated {what}", file=file, expected=f"{size:,} bytes",
                    found=f"{len(data):,} bytes")
    if len(data) > size:
        raise error(f"{what} continues past its declared size", file=file,
                    expected=f"{size:,} bytes", found="more")
    return data


def read_npy(stream, error, *, file, field=None, budget: int | None = None,
             available: int | None = None) -> np.ndarray:
    """One ``.npy`` array from ``stream``: the header is read and checked first (version,
    dtype — numbers only, no objects, no complex unless asked —, shape), the size it declares
    compared with ``budget`` and with the bytes ``available`` in the stream, and only then is
    the array allocated and filled a chunk at a time."""
    from numpy.lib import format as npy_format
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(
                stream, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(
                stream, max_header_size=MAX_NPY_HEADER)
        else:
            raise error("unsupported .npy version", file=file, field=field,
                        expected="1.0 or 2.0", found=".".join(map(str, version)))
    except (ValueError, TypeError, SyntaxError, EOFError, OverflowError) as failure:
        raise error(f"not a valid .npy array: {failure}", file=file, field=field) from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise error("object arrays and records are refused (loading Python objects could run "
                    "code)", file=file, field=field, expected="a numeric array",
                    found=str(dtype))
    if dtype.kind not in "biuf":
        raise error("array is not real numbers", file=file, field=field,
                    expected="integers, floats or booleans", found=str(dtype))
    size = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
    what = f"array {field!r}" if field else "the array"
    check_size(size, budget, error, file=file, field=field, what=what)
    if available is not None and size > available:
        raise error("truncated array", file=file, field=field,
                    expected=f"{size:,} bytes for shape {shape} of {dtype}",
                    found=f"{available:,} bytes")
    array = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    view = array.ravel(order="K").view(np.uint8)
    done = 0
    while done < size:
        chunk = stream.read(min(READ_CHUNK, size - done))
        if not chunk:
            raise error("truncated array", file=file, field=field,
                        expected=f"{size:,} bytes for shape {shape} of {dtype}",
                        found=f"{done:,} bytes")
        view[done:done + len(chunk)] = np.frombuffer(chunk, np.uint8)
        done += len(chunk)
    return array


def read_npz(path: str | os.PathLike, error, *, budget: int | None,
             keys: list[str] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive (only ``keys``, when given), read without pickle and
    without trusting it: every member must be an ``.npy`` array stored or deflated (no raw
    bytes, no other compression), and the sizes the zip directory declares are compared with
    the memory limit before any member is read — a 0.5 MB bomb that inflates to gigabytes is
    refused from its directory. ``budget`` is the memory limit in bytes (None: none; see
    :func:`graphnet.limits.memory_limit`). Errors are ``error`` (DataError, CheckpointError, …)."""
    with open_regular(path, error) as stream:
        if not stream.read(6).startswith(NUMPY_MAGIC[:2]):
            raise error("not an .npz archive", file=path,
                        expected="a zip of arrays written by numpy.savez")
        stream.seek(0)
        try:
            with zipfile.ZipFile(stream) as archive:
                members = _npz_members(archive, path, error, keys)
                check_size(sum(info.file_size for info in members.values()), budget, error,
                           file=path, what="its arrays")
                arrays = {}
                for key, info in members.items():
                    with archive.open(info) as member:
                        arrays[key] = read_npy(member, error, file=path, field=key,
                                               budget=budget, available=info.file_size)
                return arrays
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
                NotImplementedError, RuntimeError, ValueError) as failure:
            raise error(f"truncated or corrupt .npz archive ({type(failure).__name__}: {failure})",
                        file=path) from None


def _npz_members(archive, path, error, keys) -> dict:
    members = {}
    for info in archive.infolist():
        name = info.filename
        if not name.endswith(".npy"):
            raise error("archive member is not an .npy array", file=path, field=name,
                        expected="only arrays written by numpy.savez", found="raw bytes")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise error("archive member uses a compression numpy never writes", file=path,
                        field=name, expected="stored or deflated",
                        found=f"compression type {info.compress_type}")
        if info.flag_bits & 0x1:
            raise error("archive member is encrypted", file=path, field=name)
        key = name[:-len(".npy")]
        if keys is None or key in keys:
            members[key] = info
    return members


# --- run folders: one run at a time, proven writable before the first step ----------------------
LOCK_NAME = ".graphnet.lock"
PROBE_NAME = ".graphnet.probe"


def safe_folder_name(name: str) -> str:
    """``name`` as one folder name: path separators, ``..`` and leading dots cannot take a
    default run folder (``runs/<graph name>``) outside ``runs/`` (``"../../x"`` → ``x``)."""
    parts = [part for part in re.split(r"[/\\]+", str(name)) if part not in ("", ".", "..")]
    cleaned = "_".join(parts).lstrip(".")
    cleaned = "".join(ch if ch.isprintable() else "_" for ch in cleaned)[:100]
    return cleaned or "graph"


class RunFolder:
    """An exclusive claim on a run folder for the life of a run: ``fcntl.flock`` on a lock file
    in it, released when :meth:`release` is called or — if the process dies, however — by the
    operating system, so a killed run never leaves a stale lock. The lock file holds the
    holder's process id, for the message a second run gets."""

    def __init__(self, path: Path, descriptor: int):
        self.path, self._descriptor = path, descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor drops the flock
            self._descriptor = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim_run_folder(path: str | os.PathLike, error, *, fresh: bool = False,
                     outputs: tuple[str, ...] = ()) -> RunFolder:
    """Claim ``path`` for one run (see :class:`RunFolder`) after proving it is a folder that can
    be written and that none of ``outputs`` (file names the run will replace) is a folder.
    A folder another run holds is refused (``error`` naming it and the holder's pid) — or,
    with ``fresh``, the first of ``PATH-2``, ``PATH-3``, … that is free and holds no run is
    used instead (as it is when ``path`` itself holds an earlier run)."""
    path = Path(path)
    candidates = [path] + [path.with_name(f"{path.name}-{n}") for n in range(2, 1000)]
    for candidate in candidates if fresh else [path]:
        if fresh and candidate.exists() and candidate.is_dir() and any(
                (candidate / name).exists() for name in outputs):
            continue  # holds an earlier run: a fresh folder is what was asked for
        claim = _try_claim(candidate, error)
        if claim is not None:
            _prove_writable(candidate, error, outputs)
            return claim
        if not fresh:
            raise error("the run folder is in use by another graphnet train",
                        file=candidate, found=f"process {_holder(candidate)}",
                        hint="wait for it to finish, choose another folder with --run-dir, or "
                             "pass --new-run-dir to train into a fresh folder beside it")
    raise error("no free run folder beside this one", file=path, expected=f"{path.name}-2 … -999")


def _try_claim(folder: Path, error) -> RunFolder | None:
    import fcntl

    if folder.exists() and not folder.is_dir():
        raise error("the run folder is not a folder", file=folder,
                    expected="a folder, or a path where one can be made", found="a file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as failure:
        raise error(f"cannot write in the run folder: {failure.strerror or failure}",
                    file=failure.filename or folder) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    except OSError:  # a file system without locks: run unguarded rather than not at all
        pass
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    return RunFolder(folder, descriptor)


def _holder(folder: Path) -> str:
    try:
        text = (folder / LOCK_NAME).read_text().strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _prove_writable(folder: Path, error, outputs) -> None:
    """Write, fsync and rename a probe file the way checkpoints are written, so a read-only,
    immutable or full folder is found before the first step, not after an epoch."""
    for name in outputs:
        if (folder / name).is_dir():
            raise error(f"{name} in the run folder is a folder", file=folder / name,
                        expected="a file (or nothing)", found="a folder")
    try:
        atomic_write_bytes(folder / PROBE_NAME, b"graphnet run folder write test\n")
        os.unlink(folder / PROBE_NAME)
    except OSError as failure:
        raise error(f"cannot write in the run folder: {failure.strerror or failure}",
                    file=folder) from None
