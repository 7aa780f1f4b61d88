"""A small pool of worker threads for ops that split a batch into parts.

numpy releases the GIL in its loops and in BLAS, so threads that each take a slice of the batch
run truly in parallel. Each worker then calls BLAS with *one* thread: OpenBLAS's own threads
busy-wait, and measured badly whenever another process holds a core, while a few Python threads
each running single-threaded BLAS on cache-sized tiles did not. That limit, the scratch buffers
and the thread count belong to a :class:`graphnet.runtime.Runtime`, which a network enters
around its own forward and backward only; a parallel call made outside any runtime (an op
called on its own) enters one for the length of the call. With one thread the pool is off and
BLAS keeps its own threading.

The thread count is ``GRAPHNET_NUM_THREADS``, else the cores this process may run on;
:func:`set_num_threads` changes it (``graphnet bench --threads``). Nothing starts at import;
the pool's threads start with the first parallel call and then wait, idle, for the next.
"""
from __future__ import annotations

import itertools
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

import numpy as np

from . import runtime
from .runtime import THREADS_ENV, available_cores, num_threads, requested_threads, scratch

__all__ = ["THREADS_ENV", "available_cores", "num_threads", "requested_threads",
           "set_num_threads", "run_split", "run_tiles", "run_batch_tiles", "tile_items",
           "ordered_sum", "scratch", "TILES_PER_THREAD", "MIN_TILE_BYTES"]

Result = TypeVar("Result")

_current: tuple[ThreadPoolExecutor | None, int] = (None, 1)
"""The worker pool (None for one thread) and the thread count it serves: one tuple, replaced
whole, so a reader without the lock never sees a pool beside another pool's count."""
_lock = threading.Lock()


def set_num_threads(count: int | None) -> None:
    """Use ``count`` threads from the next parallel call on (1 turns the pool off; None: back to
    GRAPHNET_NUM_THREADS, else the cores)."""
    runtime.set_num_threads(count)
    with _lock:
        _shutdown()


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
    return _in_runtime(lambda owner: _join(
        [_submit(pool, owner, work, bounds[part], bounds[part + 1]) for part in range(1, threads)],
        lambda: work(bounds[0], bounds[1])))


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
    _in_runtime(lambda owner: _join([_submit(pool, owner, run) for _ in range(threads - 1)], run))


def _workers() -> tuple[ThreadPoolExecutor | None, int]:
    """The pool for the requested thread count (started or resized here) and that count, read
    together: set_num_threads in another thread may replace them at any moment. The common
    case, the pool already of that size, reads them without the lock (one tuple, assigned
    whole); a pool shut down meanwhile makes the work run on the caller's thread."""
    global _current
    threads = num_threads()
    current = _current
    if current[1] == threads:
        return current
    with _lock:
        if threads != _current[1]:
            _shutdown()
            pool = (ThreadPoolExecutor(max_workers=threads - 1,
                                       thread_name_prefix="graphnet-worker")
                    if threads > 1 else None)
            _current = (pool, threads)
        return _current


def _in_runtime(call: Callable[[runtime.Runtime], Result]) -> Result:
    """``call(owner)``, ``owner`` the runtime a parallel call runs its parts in: the caller's,
    or, for a call made outside any (an op called on its own), one entered for this call."""
    owner = runtime.current()
    if owner is None:
        with runtime.Runtime() as owner:
            return call(owner)
    runtime.keep_blas_limited()
    return call(owner)


def _submit(pool: ThreadPoolExecutor, owner: runtime.Runtime, work, *args) -> Future:
    """``work(*args)`` on a worker, inside the caller's runtime ``owner`` (its scratch
    buffers); if set_num_threads shut that pool down meanwhile, the work runs here."""
    try:
        return pool.submit(runtime.inside, owner, work, *args)
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
    """``work(part)`` on tiles of at most about ``tile_bytes`` along the first axis of
    ``batch``, shared among the threads as :func:`run_tiles` does (for ops that treat each
    sample on its own, so that the tiling never changes a result).

    The tiles are as even as the count allows: LeNet-5's first pooling at batch 64 fits in two
    tiles of 1 MiB, which cut at 1 MiB were 55 and 9 samples, one thread doing nearly all the
    work while the other waited; now 32 and 32."""
    sample_bytes = batch.itemsize * math.prod(batch.shape[1:])
    total = len(batch)
    run_tiles(lambda index, part: work(part), total,
              _evened(total, tile_items(sample_bytes, tile_bytes)))


def tile_items(bytes_per_item: int, tile_bytes: int, total: int | None = None) -> int:
    """How many items of ``bytes_per_item`` make a tile of about ``tile_bytes`` (at least 1).

    With ``total``, fewer if that leaves every thread TILES_PER_THREAD tiles, so that threads
    finishing at different times still share the work evenly, but never tiles under
    MIN_TILE_BYTES, whose calls would cost more than they save — unless that floor would
    leave a thread idle: a total of at least MIN_THREAD_BYTES per thread is split into at
    least one tile per thread. The tiles are then as even as their count allows. LeNet-5's
    first conv at batch 64 (2 MiB of grouped im2col rows) ran as one tile on one thread;
    split in two, its training step took 4.89 against 5.66 ms (two threads, median of 150
    interleaved steps), and the classic net, the ResNet and LeNet-5 at 256 ran as before."""
    per_item = max(1, bytes_per_item)
    items = max(1, tile_bytes // per_item)
    if total is None:
        return items
    threads = num_threads()
    balanced = -(-total // (TILES_PER_THREAD * threads))
    items = max(min(items, balanced), MIN_TILE_BYTES // per_item, 1)
    if -(-total // items) < threads and total * per_item >= threads * MIN_THREAD_BYTES:
        items = -(-total // threads)
    return _evened(total, items)


def _evened(total: int, items: int) -> int:
    """Items per tile for as many tiles of ``items`` as ``total`` needs, made as even as their
    count allows (100 in tiles of 32: four of 25, not 32, 32, 32 and 4)."""
    tiles = -(-total // items)
    return -(-total // tiles) if tiles else items


TILES_PER_THREAD = 4
MIN_TILE_BYTES = 2 << 20
MIN_THREAD_BYTES = 256 << 10


def _shutdown() -> None:
    """Stop the pool (after the work it holds); the next parallel call starts one again."""
    global _current
    pool, _current = _current[0], (None, 1)
    if pool is not None:
        pool.shutdown(wait=True)
