"""Memory limits: what a graph would need, known from its spec before anything is allocated.

A spec is a file someone else may have written: a 3×100000×100000 input or a dense layer with
10¹² weights must be refused with a number, not found out by the kernel's OOM killer. The
estimate comes from :func:`graphnet.analysis.memory_estimate` (Python integers only). The limit
is, in order of precedence: an explicit argument (``--memory-limit``), ``GRAPHNET_MEMORY_LIMIT``,
or :data:`DEFAULT_FRACTION` of physical memory. A limit such as ``"8GiB"``, ``"512MB"`` or
``"1e9"`` is in bytes; ``"none"`` turns the check off.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np

from .analysis import memory_estimate
from .errors import ResourceError, UsageError

LIMIT_ENV = "GRAPHNET_MEMORY_LIMIT"
DEFAULT_FRACTION = 0.75
"""Share of physical memory a graph may use when no limit is given."""
UNLIMITED = ("none", "off", "unlimited")
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6,
          "mib": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12,
          "tib": 2**40}


def parse_size(text, *, field: str = LIMIT_ENV) -> int | None:
    """``"8GiB"`` → 8589934592; a plain number is bytes; ``"none"`` → None (no limit)."""
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        cleaned = str(text).strip().lower()
        if cleaned in UNLIMITED:
            return None
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)", cleaned)
        if not match or match.group(2) not in _UNITS:
            raise UsageError("bad memory size", field=field,
                             expected='bytes, or a number with a unit such as "512MiB" or "8GB", '
                                      'or "none"', found=repr(str(text)[:40]))
        value, unit = float(match.group(1)), match.group(2)
    size = value * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise UsageError("bad memory size", field=field, expected="at least 1 byte",
                         found=repr(str(text)[:40]))
    return int(size)


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def memory_limit(limit=None) -> int | None:
    """The limit in bytes (None: no limit): ``limit`` if given, else the environment, else
    :data:`DEFAULT_FRACTION` of physical memory."""
    if limit is not None:
        return parse_size(limit, field="--memory-limit")
    if os.environ.get(LIMIT_ENV, "").strip():
        return parse_size(os.environ[LIMIT_ENV], field=LIMIT_ENV)
    physical = physical_memory()
    return None if physical is None else int(physical * DEFAULT_FRACTION)


def format_bytes(size: int) -> str:
    """``1536`` → ``1.5 KiB``; huge numbers stay readable (``4.0e+12 TiB``)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 1e6 else f"{value:.1e} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class MemoryEstimate:
    """What running a graph needs, in bytes, against the limit in force (None: no limit)."""

    parameter_bytes: int
    activation_bytes: int
    total_bytes: int
    batch_size: int
    training: bool
    limit: int | None

    @property
    def exceeds(self) -> bool:
        return self.limit is not None and self.total_bytes > self.limit

    def describe(self) -> str:
        """``"about 3.7 TiB to train at batch size 64 (parameters 12 MiB, activations …)"``."""
        action = "to train" if self.training else "to run"
        state = "parameters, gradients and optimizer state" if self.training else "parameters"
        return (f"about {format_bytes(self.total_bytes)} {action} at batch size "
                f"{self.batch_size} ({state} {format_bytes(self.parameter_bytes)}, "
                f"activations {format_bytes(self.activation_bytes)})")


def estimate(graph, *, batch_size: int = 1, dtype="float32", training: bool = False,
             limit=None) -> MemoryEstimate:
    """The memory a graph needs to run (or train, with gradients and optimizer state) at this
    batch size, and the limit in force. Allocates nothing; instant for any size."""
    numbers = memory_estimate(graph, batch_size, itemsize=np.dtype(dtype).itemsize)
    if training:
        keys = ("training_state_bytes", "training_activation_bytes", "training_bytes")
    else:
        keys = ("parameter_bytes", "activation_bytes", "inference_bytes")
    parameters, activations, total = (numbers[key] for key in keys)
    return MemoryEstimate(parameters, activations, total, batch_size, training,
                          memory_limit(limit))


def check_memory(graph, *, batch_size: int = 1, dtype="float32", training: bool = False,
                 limit=None) -> MemoryEstimate:
    """Raise :class:`graphnet.ResourceError` (naming the estimate and the limit) when the graph
    would need more memory than the limit; return the estimate otherwise."""
    found = estimate(graph, batch_size=batch_size, dtype=dtype, training=training, limit=limit)
    if found.exceeds:
        raise exceeded(graph, found.describe(), found.limit)
    return found


def check_parameters(graph, *, dtype="float32", limit=None) -> None:
    """Refuse, before any allocation, parameters that alone exceed the limit."""
    needed = memory_estimate(graph, 1, itemsize=np.dtype(dtype).itemsize)["parameter_bytes"]
    allowed = memory_limit(limit)
    if allowed is not None and needed > allowed:
        raise exceeded(graph, f"parameters of about {format_bytes(needed)} "
                              f"({graph.total_params:,} in {np.dtype(dtype).name})", allowed)


def exceeded(graph, what: str, limit: int) -> ResourceError:
    return ResourceError(f"the graph needs {what}, more than the memory limit of "
                         f"{format_bytes(limit)}", file=graph.file,
                         hint=f"raise the limit with --memory-limit or {LIMIT_ENV}, e.g. 64GiB "
                              "or none; or make the graph or the batch smaller")
