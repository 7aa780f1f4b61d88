"""graphnet.parallel: every tile runs once whatever the thread count, errors reach the caller
after every worker has stopped, scratch buffers are reused."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from graphnet import parallel, runtime
from graphnet.runtime import Runtime


@pytest.fixture
def threads():
    def use(count):
        parallel.set_num_threads(count)
    yield use
    parallel.set_num_threads(None)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_every_tile_runs_once(threads, count):
    threads(count)
    seen, lock = [], threading.Lock()

    def work(index, part):
        with lock:
            seen.append((index, part.start, part.stop))

    parallel.run_tiles(work, 23, 5)
    assert sorted(seen) == [(0, 0, 5), (1, 5, 10), (2, 10, 15), (3, 15, 20), (4, 20, 23)]


def test_run_split_returns_parts_in_order(threads):
    threads(3)
    assert parallel.run_split(lambda start, stop: (start, stop), 9) == [(0, 3), (3, 6), (6, 9)]
    assert parallel.run_split(lambda start, stop: (start, stop), 9, min_part=9) == [(0, 9)]


def test_an_error_in_a_worker_reaches_the_caller_after_all_tiles_stop(threads):
    threads(2)
    running = []

    def work(index, part):
        running.append(index)
        if index == 3:
            raise ValueError("tile 3")

    with pytest.raises(ValueError, match="tile 3"):
        parallel.run_tiles(work, 8, 1)
    assert sorted(running) == list(range(8))  # nobody was left running


def test_scratch_is_reused_per_runtime_thread_and_shape():
    own, other = Runtime(), Runtime()
    with own:
        first = parallel.scratch("test", (3, 4), np.float32, zeroed=True)
        assert not first.any()
        first[0, 0] = 7
        assert parallel.scratch("test", (3, 4), np.float32, zeroed=True) is first
        wider = parallel.scratch("test", (4, 4), np.float32, zeroed=True)
        assert wider is not first
        on_another_thread = []
        worker = threading.Thread(target=lambda: on_another_thread.append(
            runtime.inside(own, lambda: parallel.scratch("test", (4, 4), np.float32, zeroed=True))))
        worker.start()
        worker.join()
        assert on_another_thread[0] is not wider
    with other:  # another network's runtime: its own buffers
        assert parallel.scratch("test", (4, 4), np.float32, zeroed=True) is not wider
    with own:  # kept from one entry to the next, as from one step to the next
        assert parallel.scratch("test", (4, 4), np.float32, zeroed=True) is wider


def test_outside_a_runtime_scratch_is_a_new_array_kept_by_nobody():
    first = parallel.scratch("test", (3, 4), np.float32, zeroed=True)
    first[0, 0] = 7
    again = parallel.scratch("test", (3, 4), np.float32, zeroed=True)
    assert again is not first and not again.any()


def test_workers_use_the_callers_runtime_for_scratch(threads):
    threads(2)
    seen, lock = set(), threading.Lock()

    def work(index, part):
        with lock:
            seen.add(runtime.current())

    parallel.run_tiles(work, 8, 1)  # outside any runtime: one for this call
    assert len(seen) == 1 and None not in seen
    network_runtime = Runtime()
    seen.clear()
    with network_runtime:
        parallel.run_tiles(work, 8, 1)
    assert seen == {network_runtime}
    assert runtime.current() is None


def test_thread_count_must_be_positive():
    with pytest.raises(ValueError):
        parallel.set_num_threads(0)


def test_changing_the_thread_count_while_another_thread_runs_tiles(threads):
    """set_num_threads replaces the pool; a run that started with the old one still finishes
    every tile (it once found the pool None or shut down: AttributeError, RuntimeError)."""
    threads(2)
    stop, errors = threading.Event(), []

    def resize():
        while not stop.is_set():
            for count in (2, 3):
                parallel.set_num_threads(count)

    resizer = threading.Thread(target=resize)
    resizer.start()
    try:
        for _ in range(300):
            seen = []
            try:
                parallel.run_tiles(lambda index, part: seen.append(index), 12, 1)
                assert sorted(seen) == list(range(12))
                assert parallel.run_split(lambda start, stop: stop - start, 12) != []
            except (AttributeError, RuntimeError) as error:
                errors.append(error)
    finally:
        stop.set()
        resizer.join()
    assert not errors, errors[:3]


@pytest.mark.parametrize("batch, tiles", [(64, [32, 32]), (100, [50, 50]), (10, [10]),
                                          (0, [])])
def test_batch_tiles_are_as_even_as_their_count_allows(threads, batch, tiles):
    """A per-sample op's batch split by bytes into tiles of nearly equal size, so that no
    thread waits while another does a tile several times larger (64 samples of 1 MiB / 55:
    two tiles, 32 each, not 55 and 9)."""
    threads(2)
    seen, lock = [], threading.Lock()
    sample_bytes = (1 << 20) // 55 if batch > 10 else 8  # 55 samples fill a tile

    def work(part):
        with lock:
            seen.append((part.start, part.stop))

    samples = np.empty((batch, sample_bytes), dtype=np.uint8)
    parallel.run_batch_tiles(work, samples, 1 << 20)
    assert sorted(seen) == [(sum(tiles[:i]), sum(tiles[:i + 1])) for i in range(len(tiles))]


@pytest.mark.parametrize("count, batch, item_bytes, expected", [
    (2, 64, 32 << 10, 32),     # 2 MiB in all: above the tile floor as one tile, yet one a thread
    (2, 64, 1 << 10, 64),      # 64 KiB in all: too little to share
    (1, 64, 32 << 10, 64),     # one thread: one tile
    (2, 100, 96 << 10, 20),    # 9.4 MiB: tiles of at least 2 MiB (21 items), five, evened to 20
    (2, 57, 32 << 10, 29),     # uneven totals split as evenly as they go: 29 + 28
])
def test_work_tiles_leave_no_thread_idle_and_come_out_even(threads, count, batch, item_bytes,
                                                           expected):
    """A layer's batch in tiles (parallel.tile_items): at least one tile per thread once each
    thread would get MIN_THREAD_BYTES, and tiles of nearly equal size."""
    threads(count)
    assert parallel.tile_items(item_bytes, 12 << 20, total=batch) == expected


def test_an_empty_batch_has_a_tile_size_too(threads):
    threads(2)
    assert parallel.tile_items(1 << 10, 12 << 20, total=0) >= 1
