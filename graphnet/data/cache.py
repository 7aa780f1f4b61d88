"""Where downloaded datasets live: ``GRAPHNET_CACHE``, else ``~/.cache/graphnet``; each dataset
keeps its files in a folder of its own name below that."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "GRAPHNET_CACHE"


def default_cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "graphnet"


def dataset_folder(cache_dir: str | os.PathLike | None, name: str) -> Path:
    """The folder of one dataset's files (``cache_dir`` None: the default cache)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / name


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it exists; for ``X.gz``, also the unpacked ``X`` a user may have put
    there instead. None when neither is there."""
    candidates = [folder / name]
    if name.endswith(".gz"):
        candidates.append(folder / name[:-3])
    return next((path for path in candidates if path.is_file()), None)
