"""A small pool of worker threads for ops that split a batch into parts.

numpy releases the GIL in its loops and in BLAS, so threads that each take a slice of the batch
run truly in parallel. Each worker then calls BLAS with *one* thread: OpenBLAS's own threads
busy-wait, and measured badly whenever another process holds a core, while a few Python threads
each running single-threaded BLAS on cache-sized tiles did not. So, when the pool has more than
one thread, graphnet limits BLAS to one thread per call through threadpoolctl (process-wide; it
is installed with scikit-learn, and graphnet does not require it). Without threadpoolctl the
pool stays at one thread unless the environment already makes BLAS single-threaded
(``OPENBLAS_NUM_THREADS=1``, ``OMP_NUM_THREADS=1`` or ``MKL_NUM_THREADS=1``), and BLAS keeps its
own threading.

The thread count is ``GRAPHNET_NUM_THREADS``, else the cores this process may run on;
:func:`set_num_threads` changes it (``graphnet bench --threads``). Nothing starts at import:
the pool, the BLAS limit and malloc's keeping of freed memory for the next step
(:mod:`graphnet.allocator`) come with the first parallel call.
"""
from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

import numpy as np

from . import allocator

THREADS_ENV = "GRAPHNET_NUM_THREADS"
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

Result = TypeVar("Result")

_requested: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_threads = 1
_blas_limit = None
_configured = False
_lock = threading.Lock()
_local = threading.local()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def requested_threads() -> int:
    """The thread count asked for: set_num_threads, else GRAPHNET_NUM_THREADS, else the cores."""
    if _requested is not None:
        return _requested
    text = os.environ.get(THREADS_ENV, "").strip()
    return max(int(text), 1) if text.isdigit() else available_cores()


def set_num_threads(count: int) -> None:
    """Use ``count`` threads from the next parallel call on (1 turns the pool off)."""
    global _requested
    if count < 1:
        raise ValueError(f"thread count must be at least 1, found {count}")
    with _lock:
        _requested = count
        _shutdown()


def num_threads() -> int:
    """The threads a parallel call uses now: the request, unless BLAS cannot be made
    single-threaded (no threadpoolctl), in which case 1."""
    _ensure()
    return _pool_threads


def blas_limited() -> bool:
    """Whether graphnet limited BLAS to one thread per call (threadpoolctl, pool > 1 thread)."""
    _ensure()
    return _blas_limit is not None


def run_split(work: Callable[[int, int], Result], total: int, *,
              min_part: int = 1) -> list[Result]:
    """Call ``work(start, stop)`` on contiguous parts of ``range(total)``, one per thread, no part
    smaller than ``min_part``; return the results in order. The caller's thread does the first
    part, so a one-thread pool adds no cost."""
    pool, pool_threads = _workers()
    threads = min(pool_threads, max(total // max(min_part, 1), 1))
    if threads <= 1:
        return [work(0, total)]
    bounds = [total * part // threads for part in range(threads + 1)]
    futures = [_submit(pool, work, bounds[part], bounds[part + 1]) for part in range(1, threads)]
    return _join(futures, lambda: work(bounds[0], bounds[1]))


def run_tiles(work: Callable[[int, slice], None], total: int, tile: int) -> None:
    """Call ``work(index, part)`` for every slice ``part`` of ``range(total)`` of ``tile`` items
    (the last may be shorter; ``index`` counts them), each thread taking the next tile as it
    finishes one: on a machine where other processes hold a core part of the time, threads
    that take fixed halves wait for the slowest. A batch of one tile stays on the caller's
    thread. Results that depend on summation order should be kept per tile and summed by
    index, so that they do not depend on which thread took which tile."""
    tile = max(1, tile)
    count = -(-total // tile)
    pool, pool_threads = _workers()
    threads = min(pool_threads, count)
    indices = itertools.count()  # next() on it is atomic: the threads share it

    def run():
        for index in indices:
            if index >= count:
                return
            work(index, slice(index * tile, min((index + 1) * tile, total)))

    if threads <= 1:
        run()
        return
    _join([_submit(pool, run) for _ in range(threads - 1)], run)


def _workers() -> tuple[ThreadPoolExecutor | None, int]:
    """The pool and its thread count, read together: set_num_threads in another thread may
    replace them at any moment."""
    _ensure()
    with _lock:
        return _pool, _pool_threads


def _submit(pool: ThreadPoolExecutor, work, *args) -> Future:
    """``pool.submit``; if set_num_threads shut that pool down meanwhile, the work runs here."""
    try:
        return pool.submit(work, *args)
    except RuntimeError:  # "cannot schedule new futures after shutdown"
        future = Future()
        try:
            future.set_result(work(*args))
        except BaseException as raised:
            future.set_exception(raised)
        return future


def _join(futures, own_work):
    """Run ``own_work`` on this thread, then wait for every future, even after an error (so
    no worker is left writing into arrays the caller has given up); the first error raises."""
    error = None
    results = []
    try:
        results.append(own_work())
    except BaseException as raised:
        error = raised
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as raised:
            error = error or raised
    if error is not None:
        raise error
    return results


def ordered_sum(parts, shape, dtype) -> np.ndarray:
    """Per-tile partial results (from :func:`run_tiles`, kept by tile index) added in tile
    order: the same sum whichever thread took which tile."""
    total = np.zeros(shape, dtype)
    for part in parts:
        total += part
    return total


def run_batch_tiles(work: Callable[[slice], None], batch: np.ndarray, tile_bytes: int) -> None:
    """``work(part)`` on tiles of about ``tile_bytes`` along the first axis of ``batch``, shared
    among the threads as :func:`run_tiles` does (for ops that treat each sample on its own)."""
    sample_bytes = batch.itemsize * math.prod(batch.shape[1:])
    run_tiles(lambda index, part: work(part), len(batch), tile_items(sample_bytes, tile_bytes))


def tile_items(bytes_per_item: int, tile_bytes: int, total: int | None = None) -> int:
    """How many items of ``bytes_per_item`` make a tile of about ``tile_bytes`` (at least 1).
    With ``total``, fewer if that leaves every thread TILES_PER_THREAD tiles, so that threads
    finishing at different times still share the work evenly, but never tiles under
    MIN_TILE_BYTES, whose calls would cost more than they save."""
    per_item = max(1, bytes_per_item)
    items = max(1, tile_bytes // per_item)
    if total is not None:
        balanced = -(-total // (TILES_PER_THREAD * num_threads()))
        items = max(min(items, balanced), MIN_TILE_BYTES // per_item, 1)
    return items


TILES_PER_THREAD = 4
MIN_TILE_BYTES = 2 << 20


def scratch(name: str, shape: tuple, dtype, *, zeroed: bool = False) -> np.ndarray:
    """A buffer of this thread's, reused from call to call while ``name``'s shape and dtype stay
    the same (contents undefined unless ``zeroed``; a zeroed buffer is zeroed once, on creation,
    so callers that only ever write its interior keep a zero border for free)."""
    buffers = _local.__dict__.setdefault("buffers", {})
    key = (name, zeroed)
    buffer = buffers.get(key)
    if buffer is None or buffer.shape != tuple(shape) or buffer.dtype != dtype:
        buffer = (np.zeros if zeroed else np.empty)(shape, dtype)
        buffers[key] = buffer
    return buffer


def _ensure() -> None:
    """Start the pool (and limit BLAS) for the requested thread count, once."""
    global _pool, _pool_threads, _blas_limit, _configured
    if _configured:
        return
    with _lock:
        if _configured:
            return
        threads = requested_threads()
        if threads > 1 and not _blas_single_threaded():
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                threads = 1
            else:
                _blas_limit = threadpool_limits(limits=1, user_api="blas")
        _pool_threads = threads
        allocator.keep_freed_memory()
        if threads > 1:
            _pool = ThreadPoolExecutor(max_workers=threads - 1,
                                       thread_name_prefix="graphnet-worker")
        _configured = True


def _blas_single_threaded() -> bool:
    return any(os.environ.get(name, "").strip() == "1" for name in BLAS_ENV)


def _shutdown() -> None:
    """Forget the pool and lift graphnet's BLAS limit; the next call sets them up again."""
    global _pool, _pool_threads, _blas_limit, _configured
    if _pool is not None:
        _pool.shutdown(wait=True)
    if _blas_limit is not None:
        _blas_limit.restore_original_limits()
    _pool, _pool_threads, _blas_limit, _configured = None, 1, None, False
