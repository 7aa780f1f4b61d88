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
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from .analysis import memory_estimate
from .errors import ResourceError, UsageError
from .op import Window
from .text import format_bytes

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


_in_force: ContextVar = ContextVar("graphnet_memory_limit", default=None)
"""The limit a job was given (see :func:`limit_in_force`), as given; None: none was."""


@contextmanager
def limit_in_force(limit):
    """Within it, :func:`memory_limit` without an argument is ``limit`` (when one is given):
    a job's own limit — ``train(memory_limit=…)``, ``graphnet train --memory-limit`` — then
    holds for the files it reads and the images it generates as for its graph; they were
    checked against GRAPHNET_MEMORY_LIMIT or the default alone."""
    if limit is None:
        yield
        return
    memory_limit(limit)  # a bad limit is refused before anything runs
    token = _in_force.set(limit)
    try:
        yield
    finally:
        _in_force.reset(token)


def memory_limit(limit=None) -> int | None:
    """The limit in bytes (None: no limit): ``limit`` if given, else the one in force (see
    :func:`limit_in_force`), else the environment, else :data:`DEFAULT_FRACTION` of physical
    memory."""
    if limit is None:
        limit = _in_force.get()
    if limit is not None:
        return parse_size(limit, field="--memory-limit")
    if os.environ.get(LIMIT_ENV, "").strip():
        return parse_size(os.environ[LIMIT_ENV], field=LIMIT_ENV)
    physical = physical_memory()
    return None if physical is None else int(physical * DEFAULT_FRACTION)


@dataclass(frozen=True)
class MemoryEstimate:
    """What running a graph needs, in bytes, against the limit in force (None: no limit)."""

    parameter_bytes: int
    activation_bytes: int
    total_bytes: int
    batch_size: int
    training: bool
    limit: int | None
    scratch_bytes: int = 0
    """Padded copies and im2col matrices of sliding windows (see :func:`window_scratch_bytes`)."""

    @property
    def exceeds(self) -> bool:
        return self.limit is not None and self.total_bytes > self.limit

    def describe(self) -> str:
        """``"about 3.7 TiB to train at batch size 64 (parameters 12 MiB, activations …)"``."""
        action = "to train" if self.training else "to run"
        state = "parameters, gradients and optimizer state" if self.training else "parameters"
        scratch = (f", padded and gathered windows {format_bytes(self.scratch_bytes)}"
                   if self.scratch_bytes else "")
        return (f"about {format_bytes(self.total_bytes)} {action} at batch size "
                f"{self.batch_size} ({state} {format_bytes(self.parameter_bytes)}, "
                f"activations {format_bytes(self.activation_bytes)}{scratch})")


def estimate(graph, *, batch_size: int = 1, dtype="float32", training: bool = False,
             limit=None) -> MemoryEstimate:
    """The memory a graph needs to run (or train, with gradients and optimizer state) at this
    batch size, and the limit in force. Allocates nothing; instant for any size."""
    itemsize = np.dtype(dtype).itemsize
    numbers = memory_estimate(graph, batch_size, itemsize=itemsize)
    if training:
        keys = ("training_state_bytes", "training_activation_bytes", "training_bytes")
    else:
        keys = ("parameter_bytes", "activation_bytes", "inference_bytes")
    parameters, activations, total = (numbers[key] for key in keys)
    scratch = window_scratch_bytes(graph, batch_size, itemsize, training)
    return MemoryEstimate(parameters, activations, total + scratch, batch_size, training,
                          memory_limit(limit), scratch)


def window_scratch_bytes(graph, batch_size: int, itemsize: int, training: bool) -> int:
    """Memory a sliding window takes beyond its input and output, which the activations miss:
    a padded copy of the batch (kept for backward when training, and its gradient), and — for
    a window with weights — an im2col matrix of at least one sample per thread (channels ×
    kernel taps × output positions). A 16×8×8 input under a 6001×6001 max-pool padded by 3000
    outputs 16×8×8 but pads 2 GiB. Known from each node's :class:`~graphnet.op.Window`,
    so the engine names no layer; padding counts only where there is some."""
    threads = max(1, min(batch_size, os.cpu_count() or 1))
    kept = transient = 0
    for name in graph.order:
        window = _window_of(graph, name)
        if window is None:
            continue
        node = graph.nodes[name]
        channels, *input_hw = graph.nodes[node.inputs[0]].shape
        output_hw = node.shape[1:]
        padded = channels * math.prod(_padded_sizes(window, input_hw, output_hw))
        gathered = (channels * math.prod(window.kernel) * math.prod(output_hw) * threads
                    if node.params else 0)
        padded *= batch_size
        if training:
            kept += padded
            transient = max(transient, padded + gathered)  # the padded gradient
        else:
            transient = max(transient, padded + gathered)
    return (kept + transient) * itemsize


def _padded_sizes(window: Window, input_hw, output_hw) -> tuple[int, ...]:
    """Rows and columns of the padded copy a window reads (all 0 when it makes none): the input
    with its padding on both sides, or as far as the last window reaches if that is further
    (pooling's ceil_mode). Where the window leaves its end padding unstated, a window ending
    in the input hides how much follows it (up to a stride's worth: a 100000-stride window
    over 8 pixels may pad them to 100007), so the most the output's size allows is taken:
    with n windows of stride s spanning e, n·s + e. Where nothing before the input is padded,
    no window reaches past it and windows skip no pixels, at most a kernel's span can follow,
    taken as no copy (as ever: most such layers pad nothing)."""
    sizes, padded = [], False
    for size, before, after, out, step, dilation, kernel in zip(
            input_hw, window.padding, window.padding_end or (None, None), output_hw,
            window.stride, window.dilation, window.kernel):
        span = dilation * (kernel - 1) + 1
        reach = (out - 1) * step + span
        if after is None:
            padded |= bool(before) or reach > size + before or step > span
            after = max(out * step + span - size - before, 0)
        else:
            padded |= max(size + before + after, reach) > size
        sizes.append(max(size + before + after, reach))
    return tuple(sizes) if padded else (0,)


def _window_of(graph, name: str):
    """The node's sliding window over a C×H×W input giving a C×H×W output, else None."""
    node = graph.nodes[name]
    if node.is_input or not node.inputs or node.shape is None or len(node.shape) != 3:
        return None
    shapes = graph.input_shapes(name)
    if shapes[0] is None or len(shapes[0]) != 3:
        return None
    try:
        contribution = node.op.receptive_field(shapes, node.attrs)
    except Exception:  # analysis ran it already and reported any failure
        return None
    return contribution if isinstance(contribution, Window) else None


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
