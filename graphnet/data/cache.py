"""Where downloaded datasets live: ``GRAPHNET_CACHE``, else ``~/.cache/graphnet``; each dataset
keeps its files in a folder of its own name below that."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError

CACHE_ENV = "GRAPHNET_CACHE"


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "graphnet"


def checked_cache_dir(cache_dir: Path | None) -> Path:
    """``cache_dir`` (None: the default), refused with a UsageError naming where it came from
    when it exists but is not a folder: every dataset's files would be looked for below it."""
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if path.exists() and not path.is_dir():
        from_environment = os.environ.get(CACHE_ENV, "").strip() and path == default_cache_dir()
        source = CACHE_ENV if from_environment else "--cache-dir"
        raise UsageError("the dataset cache is not a folder", field=source,
                         expected="a folder, or a path where one can be made",
                         found=f"{path} is a file")
    return path


def dataset_folder(cache_dir: str | os.PathLike | None, name: str) -> Path:
    """The folder of one dataset's files (``cache_dir`` None: the default cache)."""
    return checked_cache_dir(cache_dir) / name


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it exists; for ``X.gz``, also the unpacked ``X`` a user may have put
    there instead. None when neither is there."""
    candidates = [folder / name]
    if name.endswith(".gz"):
        candidates.append(folder / name[:-3])
    return next((path for path in candidates if path.is_file()), None)
