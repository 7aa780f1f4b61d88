"""Checkpoints: parameters, optimizer state and run metadata in one ``.npz`` (never pickle).

Layout of the archive: ``param/<node>/<name>`` arrays, ``optim/<key>`` arrays, and ``meta``, a
uint8 array holding UTF-8 JSON: ``format_version``, ``spec_hash``, ``epoch``, ``step``,
``rng_state``, ``history`` and anything else the trainer records. Files are written atomically.

The one place that knows where checkpoints are: training writes ``<run dir>/checkpoint.npz``
(:func:`checkpoint_in`; the run directory is :func:`run_dir_of`), and every command that reads
one takes a checkpoint file or a run directory (:func:`find_checkpoint`). Parameters are put
into a network by :func:`restore_params` alone, after :func:`check_compatible`.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import limits
from .checkpoint_check import check_checkpoint
from .errors import CheckpointError
from .files import atomic_write_bytes, is_numpy_file, read_npz, safe_folder_name
from .op import format_shape

CHECKPOINT_NAME = "checkpoint.npz"
"""The checkpoint training writes in its run directory after every epoch."""
BEST_NAME = "best.npz"
"""Beside it: a copy of the checkpoint of the epoch with the lowest validation loss."""
FORMAT_VERSION = 1
RUNS_FOLDER = "runs"
"""Where run directories go by default: ``runs/<graph name>``."""
PARAM_PREFIX = "param/"
OPTIM_PREFIX = "optim/"
META_KEY = "meta"


@dataclass
class Checkpoint:
    """What a checkpoint holds: flat ``"node/param"`` arrays, optimizer arrays, metadata."""

    params: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return int(self.meta.get("epoch", 0))


# --- where checkpoints are ---------------------------------------------------------------------
def run_dir_of(graph, *chosen) -> Path:
    """The run directory: the first of ``chosen`` that is set (an argument, a flag, ``[train]
    run_dir``), else ``runs/<graph name>``, the name made one safe folder name: ``[graph] name =
    "../../x"`` or an absolute name never puts a run outside ``runs/``."""
    for candidate in chosen:
        if candidate:
            return Path(candidate)
    return Path(RUNS_FOLDER) / safe_folder_name(graph.name)


def checkpoint_in(run_dir: str | Path) -> Path:
    """The checkpoint training writes in ``run_dir``."""
    return Path(run_dir) / CHECKPOINT_NAME


def best_checkpoint_in(run_dir: str | Path) -> Path:
    """The checkpoint of the run's best epoch (lowest validation loss) in ``run_dir``."""
    return Path(run_dir) / BEST_NAME


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given; for a run directory the checkpoint training writes there,
    else its newest ``.npz``."""
    path = Path(path)
    if not path.is_dir():
        return path
    if checkpoint_in(path).is_file():
        return checkpoint_in(path)
    found = sorted(path.glob("*.npz"), key=lambda p: (p.stat().st_mtime, p.name))
    if not found:
        raise CheckpointError("no checkpoint in this directory", file=path,
                              expected="a .npz checkpoint written by graphnet train")
    return found[-1]


# --- the file -----------------------------------------------------------------------------------
def spec_hash(graph) -> str:
    """SHA-256 of what fixes the parameters' meaning: inputs, nodes and outputs (not ``[train]``
    or the description), so retuning training settings keeps checkpoints usable."""
    raw = graph.spec.raw
    relevant = {key: raw.get(key) for key in ("inputs", "nodes", "outputs")}
    text = json.dumps(relevant, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write atomically; a full disk raises CheckpointError and leaves the old file intact."""
    meta = dict(checkpoint.meta, format_version=FORMAT_VERSION)
    arrays = {PARAM_PREFIX + k: v for k, v in checkpoint.params.items()}
    arrays.update({OPTIM_PREFIX + k: v for k, v in checkpoint.optimizer.items()})
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        reason = "the disk is full" if error.errno == errno.ENOSPC else error.strerror
        raise CheckpointError(f"could not write checkpoint: {reason}; the previous checkpoint "
                              "is kept", file=path) from None


def load_checkpoint(path: str | Path, *, memory_limit=None) -> Checkpoint:
    """Read a checkpoint; a missing, truncated, corrupt, pickled, too-new or too-large (see
    :mod:`graphnet.limits`) file is refused."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError("checkpoint not found", file=path)
    if path.is_file() and not is_numpy_file(path):  # is_file first: a FIFO would block
        raise CheckpointError("not a checkpoint: the file is not an .npz archive", file=path,
                              expected="an .npz written by graphnet")
    # no pickle, no raw members, sizes from the zip directory checked against the memory limit
    arrays = read_npz(path, CheckpointError, budget=limits.memory_limit(memory_limit))
    if META_KEY not in arrays:
        raise CheckpointError("not a graphnet checkpoint", file=path,
                              expected=f"a {META_KEY!r} entry", found=", ".join(sorted(arrays)[:5]))
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise CheckpointError("checkpoint metadata is corrupt", file=path,
                              expected="UTF-8 JSON") from None
    if not isinstance(meta, dict):
        raise CheckpointError("checkpoint metadata is corrupt", file=path, field=META_KEY,
                              expected="a JSON object", found=type(meta).__name__)
    version = meta.get("format_version", 0)
    version = version if isinstance(version, int) and not isinstance(version, bool) else 0
    if version > FORMAT_VERSION:
        raise CheckpointError("checkpoint format is newer than this graphnet understands",
                              file=path, expected=f"format version <= {FORMAT_VERSION}",
                              found=str(version), hint="upgrade graphnet")
    params = {k[len(PARAM_PREFIX):]: v for k, v in arrays.items() if k.startswith(PARAM_PREFIX)}
    optimizer = {k[len(OPTIM_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPTIM_PREFIX)}
    check_checkpoint(params, optimizer, meta, path)  # before anything uses what it holds
    return Checkpoint(params=params, optimizer=optimizer, meta=meta)


def check_compatible(checkpoint: Checkpoint, network, path=None) -> None:
    """Refuse a checkpoint of another spec, naming the first parameter that does not match."""
    expected = network.flat_params()
    for key, array in expected.items():
        if key not in checkpoint.params:
            raise CheckpointError("checkpoint is of a different spec", file=path, field=key,
                                  expected=f"parameter {key!r} of shape {format_shape(array.shape)}",
                                  found="no such parameter")
        stored = checkpoint.params[key]
        if stored.shape != array.shape:
            raise CheckpointError("checkpoint is of a different spec", file=path, field=key,
                                  expected=format_shape(array.shape), found=format_shape(stored.shape))
        if not np.issubdtype(stored.dtype, np.floating):
            raise CheckpointError("checkpoint parameter is not floating point", file=path,
                                  field=key, expected="float32 or float64", found=str(stored.dtype))
    for key in checkpoint.params:
        if key not in expected:
            raise CheckpointError("checkpoint is of a different spec", file=path, field=key,
                                  expected="only this graph's parameters",
                                  found=f"extra parameter {key!r}")


def restore_params(path: str | Path, network) -> Checkpoint:
    """Load a checkpoint into ``network`` after checking it fits; returns the checkpoint."""
    checkpoint = load_checkpoint(path)
    check_compatible(checkpoint, network, path)
    network.load_params(checkpoint.params)
    return checkpoint
