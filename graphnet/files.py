"""Atomic file writes: a temp file in the same folder, flushed and fsynced, then renamed over the
target, so a crash or a full disk never leaves a half-written file in place of a good one. The
temp file's name carries the writer's process id, so a later write can remove what a killed
writer left behind."""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from pathlib import Path


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
