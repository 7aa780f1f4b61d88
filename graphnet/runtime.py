"""The speed settings graphnet uses while it runs, and only while it runs.

graphnet's ops split a batch over a small pool of worker threads (:mod:`graphnet.parallel`)
that each call BLAS with one thread, reuse scratch buffers from call to call, and, in a
process graphnet owns, ask glibc's malloc to keep freed memory (:mod:`graphnet.allocator`).
Those settings reach beyond one call, and a library is a guest in its user's process: a
notebook's own numpy, SciPy or PyTorch must not become single-threaded because a graphnet
network ran once. So a :class:`Runtime` holds them, and a :class:`graphnet.engine.Network`
enters its own runtime around its forward and its backward only:

- **the BLAS limit**: while the pool has more than one thread, BLAS runs one thread per call,
  set on entering and restored on leaving (exceptions included), through the library
  controllers threadpoolctl finds once per process (finding them takes milliseconds). Each
  library is asked its thread count and set to one only if it runs more, then set back:
  threadpoolctl's own limiter also reads every library's version and settings and costs
  14 µs per entry and exit where this costs 3 (CPU time, one thread), paid at every forward
  and backward (a batch-1 forward of the benchmark's classic net takes 1.1 ms); a BLAS the
  user already runs on one thread is left untouched. The limit is process-wide by nature:
  while a network runs, another thread's BLAS is limited too.
- **scratch buffers** (:meth:`Runtime.scratch`): per runtime and per thread, reused from step
  to step while the steps ask for them; one that no work asked for during the last
  SCRATCH_KEPT_ENTRIES entries is freed on leaving (a kernel measured and not chosen, a shape
  of a batch size no longer run), and :meth:`Runtime.release_scratch` frees them all (the
  engine calls it once an op has measured its kernels). Outside any runtime a scratch buffer
  is a new array.
- **the thread count**: :func:`set_num_threads` (``graphnet bench --threads``), else
  ``GRAPHNET_NUM_THREADS``, else the cores this process may run on; a bad value is refused
  with a :class:`graphnet.UsageError` naming the variable.
- **malloc's tuning**: never from a library call. A command that owns its process (``graphnet
  train``, ``bench``, ``eval``) calls :func:`own_process`; from then on entering a runtime
  tunes malloc, once, for the life of the process (glibc cannot say what to restore).

Entering nests (a network run inside another's op, a parallel call inside a forward) and is
safe from several threads: each thread counts its own entries, and the thread that set the
BLAS limit restores it when it leaves its outermost runtime (threadpoolctl lets only that
thread change OpenBLAS's process-wide setting). A thread still running then goes on without
the limit until its next parallel call: slower for a moment, rounding perhaps differently
(BLAS may split a product otherwise), never wrong, and BLAS is never left limited.
"""
from __future__ import annotations

import functools
import math
import os
import re
import threading

import numpy as np

from . import allocator
from .errors import UsageError

THREADS_ENV = "GRAPHNET_NUM_THREADS"
SCRATCH_KEPT_ENTRIES = 2
"""Outermost entries of a runtime a scratch buffer is kept through unasked: two, so that a
caller who alternates forward and backward calls (each its own entry) keeps both passes'
buffers, while a training step (one entry for forward, backward and update) frees what the
step before asked for and this one did not. A buffer left unused costs its bytes at every
later step's peak: the kernels a conv measured and did not choose left 57 MiB of buffers on
the benchmark's classic net at batch 256 (2 threads), 99 MiB on the CIFAR ResNet."""

_requested: int | None = None
_from_env: tuple[str, int] | None = None  # (the variable's text, its count), parsed once
_own_process = False
_local = threading.local()  # .stack: the runtimes this thread is inside, innermost last
_limit_lock = threading.Lock()
_blas_libraries = None  # threadpoolctl's controllers of the BLAS libraries, found once
_blas_restore: list = []  # (library, its thread count) to set back when the limit ends
_blas_holder: int | None = None  # the ident of the thread holding the limit


# --- the thread count --------------------------------------------------------------------------
@functools.cache
def available_cores() -> int:
    """The cores this process may run on (read once: a Runtime asks at every entry)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def requested_threads() -> int:
    """The thread count asked for: set_num_threads, else GRAPHNET_NUM_THREADS, else the cores."""
    global _from_env
    if _requested is not None:
        return _requested
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return available_cores()
    if _from_env is None or _from_env[0] != text:
        # ASCII digits only: str.isdigit() accepts "²", which int() then refuses
        if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
            raise UsageError("bad thread count", field=THREADS_ENV,
                             expected="a whole number of threads, at least 1",
                             found=repr(text[:40]))
        _from_env = (text, int(text))
    return _from_env[1]


def num_threads() -> int:
    """The threads graphnet's parallel calls use (1: the pool is off, BLAS keeps its own)."""
    return requested_threads()


def set_num_threads(count: int | None) -> None:
    """Use ``count`` threads from the next parallel call on (1 turns the pool off); takes
    precedence over GRAPHNET_NUM_THREADS. None goes back to that variable, else the cores."""
    global _requested
    if count is not None and count < 1:
        raise ValueError(f"thread count must be at least 1, found {count}")
    _requested = count


# --- the process -------------------------------------------------------------------------------
def own_process() -> None:
    """Say that the caller owns this process (graphnet's own train, bench and eval commands):
    from now on, entering a runtime may tune malloc (see :mod:`graphnet.allocator`), which
    lasts until the process exits. Also refuses a bad GRAPHNET_NUM_THREADS before any work."""
    global _own_process
    requested_threads()
    _own_process = True


# --- the runtime -------------------------------------------------------------------------------
class Runtime:
    """The settings one network runs under; ``with runtime:`` enters them (see the module
    docstring). One per :class:`graphnet.engine.Network`; it keeps that network's scratch
    buffers."""

    def __init__(self):
        self._scratch: dict[int, _ThreadScratch] = {}  # by thread ident
        self._asked = False  # whether a plain buffer was asked for since the last call ended
        self._entries = 0  # outermost entries so far, on any thread

    def __enter__(self) -> Runtime:
        threads = num_threads()  # a bad GRAPHNET_NUM_THREADS is refused before anything changes
        if _own_process:
            allocator.keep_freed_memory()
        stack = _stack()
        if self not in stack:
            self._entries += 1
        stack.append(self)
        if threads > 1:
            try:
                _hold_blas_limit()
            except BaseException:
                stack.pop()
                raise
        return self

    def __exit__(self, *exc_info) -> None:
        stack = _stack()
        stack.pop()
        if self not in stack:
            self._free_unasked_scratch()
        if not stack:
            _release_blas_limit()

    def scratch(self, name: str, shape: tuple, dtype, *, zeroed: bool = False) -> np.ndarray:
        """A buffer of this thread's for ``name`` (contents undefined unless ``zeroed``).

        Within one op call (see :meth:`op_call_ended`) each name has a buffer of its own,
        the same one each time it is asked for. A plain buffer then serves the next call's
        names too: its memory is reused under any name, so the buffers a thread keeps are
        those of its most demanding op, not of every op of the network. A ``zeroed`` buffer
        keeps its name, shape and dtype from call to call: it is zeroed once, on creation, so
        callers that only ever write its interior keep a zero border for free. A buffer no
        call asked for during the last SCRATCH_KEPT_ENTRIES entries is freed on leaving."""
        ident = threading.get_ident()
        buffers = self._scratch.get(ident)
        if buffers is None:
            buffers = self._scratch.setdefault(ident, _ThreadScratch())
        self._asked = True
        if zeroed:
            return buffers.zeroed_buffer(name, tuple(shape), np.dtype(dtype), self._entries)
        return buffers.plain_buffer(name, tuple(shape), dtype, self._entries)

    def op_call_ended(self) -> None:
        """Say that the op call which asked for scratch buffers has returned (with its worker
        threads): its plain buffers may serve the next call's names. The engine says so after
        every forward and backward of an op; leaving the outermost entry says so too."""
        if self._asked:  # most op calls ask for none: then this costs one look
            self._asked = False
            for buffers in list(self._scratch.values()):
                buffers.end_call()

    def release_scratch(self) -> None:
        """Free every scratch buffer now (those a caller still holds live on until it lets
        go); the next calls make new ones. For the end of work that asked for buffers no
        later step will (an op measuring its candidate kernels)."""
        self._scratch = {}

    def scratch_bytes(self) -> int:
        """The bytes of scratch buffers this runtime keeps, all threads together."""
        return sum(buffers.nbytes() for buffers in list(self._scratch.values()))

    def _free_unasked_scratch(self) -> None:
        """Forget the buffers no call asked for during the last SCRATCH_KEPT_ENTRIES entries
        (their memory goes back to malloc, for the next step's arrays)."""
        oldest_kept = self._entries - SCRATCH_KEPT_ENTRIES + 1
        for ident, buffers in list(self._scratch.items()):
            if not buffers.forget_older(oldest_kept):
                self._scratch.pop(ident, None)  # a worker of a pool since replaced, say


class _ThreadScratch:
    """One thread's scratch buffers in one runtime.

    Plain buffers are cut, one after the other, from one block (the arena) during an op call,
    each name its own piece, and all of it is free again when the call ends: the arena is as
    large as the most any one call asked for, where buffers kept per name held what every op
    of the network asked for (measured on the benchmark's nets at batch 256: 16 and 22 MiB
    per thread kept per name, 7.5 and 9 MiB in one arena). A call that asks for more than
    the arena holds gets separate arrays for the rest, and the arena grows to what it asked
    for when it ends; it shrinks to what the calls of the last SCRATCH_KEPT_ENTRIES entries
    asked for. Zeroed buffers keep their name, shape and dtype from call to call."""

    __slots__ = ("arena", "used", "lent", "asked", "asked_by_entry", "zeroed")

    def __init__(self):
        self.arena = _aligned(0)
        self.used = 0  # bytes of the arena cut so far in this call
        self.lent: dict[str, tuple] = {}  # this call's (piece, last view of it), by name
        self.asked = 0  # bytes this call asked for
        self.asked_by_entry: dict[int, int] = {}  # the most one call asked for, per entry
        self.zeroed: dict[str, tuple[np.ndarray, int]] = {}

    def plain_buffer(self, name: str, shape: tuple, dtype, entry: int) -> np.ndarray:
        lent = self.lent.get(name)
        if lent is not None and lent[1].shape == shape and lent[1].dtype == dtype:
            return lent[1]  # asked for again, alike (a thread's next tile)
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        piece = lent[0] if lent is not None else None
        if piece is None or piece.nbytes < nbytes:
            size = -(-nbytes // ALIGNMENT) * ALIGNMENT
            self.asked += size
            if self.used + size <= self.arena.nbytes:
                piece = self.arena[self.used:self.used + size]
                self.used += size
            else:
                piece = np.empty(size, np.uint8)  # beyond the arena: this call only
            self.asked_by_entry[entry] = max(self.asked_by_entry.get(entry, 0), self.asked)
        buffer = piece[:nbytes].view(dtype).reshape(shape)
        self.lent[name] = (piece, buffer)
        return buffer

    def zeroed_buffer(self, name: str, shape: tuple, dtype: np.dtype, entry: int) -> np.ndarray:
        kept = self.zeroed.get(name)
        if kept is not None and kept[0].shape == shape and kept[0].dtype == dtype:
            buffer = kept[0]
        else:
            self.zeroed.pop(name, None)
            kept = None  # the old buffer is freed before the new one is made
            buffer = np.zeros(shape, dtype)
        self.zeroed[name] = (buffer, entry)
        return buffer

    def end_call(self) -> None:
        self.lent.clear()
        if self.asked > self.arena.nbytes:
            self._resize(self.asked)
        self.used = self.asked = 0

    def forget_older(self, oldest_kept: int) -> bool:
        """Drop what was last asked for before entry ``oldest_kept``; whether anything is left."""
        self.end_call()
        self.asked_by_entry = {entry: asked for entry, asked in self.asked_by_entry.items()
                               if entry >= oldest_kept}
        needed = max(self.asked_by_entry.values(), default=0)
        if needed < self.arena.nbytes:
            self._resize(needed)
        self.zeroed = {name: kept for name, kept in self.zeroed.items()
                       if kept[1] >= oldest_kept}
        return bool(self.arena.nbytes or self.zeroed)

    def _resize(self, nbytes: int) -> None:
        self.arena = _aligned(0)  # the old arena is freed before the new one is made
        self.arena = _aligned(nbytes)

    def nbytes(self) -> int:
        return self.arena.nbytes + sum(kept[0].nbytes for kept in list(self.zeroed.values()))


ALIGNMENT = 64
"""Bytes each piece of an arena starts on (a cache line)."""


def _aligned(nbytes: int) -> np.ndarray:
    """``nbytes`` bytes starting on an ALIGNMENT boundary."""
    memory = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = -memory.ctypes.data % ALIGNMENT
    return memory[start:start + nbytes]


def current() -> Runtime | None:
    """The runtime this thread runs inside (the innermost), or None."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def scratch(name: str, shape: tuple, dtype, *, zeroed: bool = False) -> np.ndarray:
    """:meth:`Runtime.scratch` of the current runtime; outside any runtime a new array."""
    runtime = current()
    if runtime is None:
        return (np.zeros if zeroed else np.empty)(shape, dtype)
    return runtime.scratch(name, shape, dtype, zeroed=zeroed)


def inside(runtime: Runtime | None, work, *args):
    """``work(*args)`` on this thread with ``runtime`` as its current runtime (a pool worker
    running a part of a call that entered ``runtime`` on another thread), without entering
    it again: the BLAS limit is the entering thread's to set and restore."""
    stack = _stack()
    stack.append(runtime)
    try:
        return work(*args)
    finally:
        stack.pop()
        if not stack:  # a network run inside the work may have set the limit on this thread
            _release_blas_limit()


def runs_inside_runtime(method):
    """Decorate a method of an object with a ``runtime`` attribute to run inside it."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self.runtime:
            return method(self, *args, **kwargs)
    return run


def keep_blas_limited() -> None:
    """Inside a runtime, with a pool of several threads: make sure BLAS is limited (a thread
    that set the limit may have left its runtime meanwhile; then this thread sets it, and
    restores it when it leaves its outermost runtime)."""
    if _blas_holder is None and current() is not None and num_threads() > 1:
        _hold_blas_limit()


def blas_limited() -> bool:
    """Whether a thread holds the BLAS limit now (that is, some runtime is entered)."""
    return _blas_holder is not None


def _stack() -> list:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _hold_blas_limit() -> None:
    """Limit BLAS to one thread per call unless a thread already holds that limit."""
    global _blas_libraries, _blas_restore, _blas_holder
    if _blas_holder is not None:
        return
    with _limit_lock:
        if _blas_holder is not None:
            return
        if _blas_libraries is None:
            from .blas import threadpoolctl
            _blas_libraries = threadpoolctl().ThreadpoolController().select(
                user_api="blas").lib_controllers
        restore = []
        for library in _blas_libraries:
            count = library.get_num_threads()
            if count is not None and count > 1:
                library.set_num_threads(1)
                restore.append((library, count))
        _blas_restore, _blas_holder = restore, threading.get_ident()


def _release_blas_limit() -> None:
    """Restore BLAS's thread count, if this thread set the limit; then let any thread set it
    again (threadpoolctl gives OpenBLAS's process-wide setting to the thread that last set
    it and keeps it there until that thread lets go, as its own limiter does on leaving)."""
    global _blas_restore, _blas_holder
    if _blas_holder != threading.get_ident():
        return
    with _limit_lock:
        restore, _blas_restore, _blas_holder = _blas_restore, [], None
        for library, count in restore:
            library.set_num_threads(count)
            let_go = getattr(library, "clear_controlling_thread", None)
            if let_go is not None:
                let_go()
