"""graphnet.runtime: a network changes the process's BLAS threads and malloc only while it runs
(and malloc never, unless the process is graphnet's own command), and leaves them as it found
them: after a forward and backward, after an error, when nested, from several threads.
A bad GRAPHNET_NUM_THREADS is refused, through the real CLI too."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_info

import graphnet
from graphnet import allocator, parallel, runtime
from graphnet.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
USER_BLAS_THREADS = 3  # what the user set: neither graphnet's 1 nor this machine's default


def numpy_blas_threads() -> int:
    """numpy's BLAS thread count now, as threadpoolctl reports it (a fresh look every time)."""
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    return blas[0]["num_threads"]


def set_blas_threads(count: int) -> None:
    """Set BLAS's thread count as a user's code would, from a thread that then ends, so that no
    thread keeps the right to change it (threadpoolctl gives OpenBLAS's to one live thread)."""
    def set_it():
        ThreadpoolController().limit(limits=count, user_api="blas").__enter__()
    setter = threading.Thread(target=set_it)
    setter.start()
    setter.join()


@pytest.fixture(scope="module")
def controllable_blas():
    """Whether this BLAS takes a thread count from threadpoolctl, asked once (a later failure
    to set it is a finding, not a reason to skip)."""
    if not any(info["user_api"] == "blas" for info in threadpool_info()):
        pytest.skip("threadpoolctl finds no BLAS to control here")
    original = numpy_blas_threads()
    set_blas_threads(USER_BLAS_THREADS)
    taken = numpy_blas_threads() == USER_BLAS_THREADS
    set_blas_threads(original)
    if not taken:
        pytest.skip("this BLAS does not take the thread count asked for")
    return original


@pytest.fixture
def user_blas(controllable_blas):
    """The user's BLAS runs USER_BLAS_THREADS threads; graphnet's pool has 2 (so it limits)."""
    set_blas_threads(USER_BLAS_THREADS)
    assert numpy_blas_threads() == USER_BLAS_THREADS, "a thread keeps BLAS's setting to itself"
    parallel.set_num_threads(2)
    yield
    parallel.set_num_threads(None)
    set_blas_threads(controllable_blas)


@pytest.fixture(scope="module")
def lenet():
    graph = graphnet.load(ROOT / "specs" / "lenet5.toml")
    rng = np.random.default_rng(0)
    feeds = {"image": rng.standard_normal((8, 1, 28, 28)), "label": rng.integers(0, 10, 8)}
    return graph, feeds


def test_blas_is_limited_while_a_network_runs_and_as_found_after(user_blas, lenet):
    graph, feeds = lenet
    network = graphnet.Network(graph, seed=0)
    during = []

    def profile(node, method, seconds):  # called between ops, inside forward and backward
        during.append(numpy_blas_threads())

    network.forward(feeds, training=True, profile=profile)
    assert numpy_blas_threads() == USER_BLAS_THREADS
    network.backward(profile=profile)
    assert during and set(during) == {1}
    assert numpy_blas_threads() == USER_BLAS_THREADS
    assert runtime.current() is None and not runtime.blas_limited()


def test_an_error_inside_forward_or_backward_restores_blas(user_blas, lenet):
    graph, feeds = lenet
    network = graphnet.Network(graph, seed=0)

    def failing(node, method, seconds):
        assert numpy_blas_threads() == 1  # the error is raised while the limit holds
        raise RuntimeError("profiler broke")

    with pytest.raises(graphnet.GraphnetError, match="profiler broke"):
        network.forward(feeds, training=True, profile=failing)
    assert numpy_blas_threads() == USER_BLAS_THREADS
    network.forward(feeds, training=True)
    with pytest.raises(graphnet.GraphnetError, match="profiler broke"):
        network.backward(profile=failing)
    assert numpy_blas_threads() == USER_BLAS_THREADS
    with pytest.raises(graphnet.DataError):
        network.forward({"image": feeds["image"][:, :, :5]})
    assert numpy_blas_threads() == USER_BLAS_THREADS
    assert runtime.current() is None


def test_nested_runtimes_restore_at_the_outermost_exit_only(user_blas, lenet):
    graph, feeds = lenet
    outer, inner = graphnet.Network(graph, seed=0), graphnet.Network(graph, seed=1)
    seen = []

    def run_inner(node, method, seconds):  # a network run inside another's forward
        if not seen:
            inner.forward(feeds)
            seen.append(numpy_blas_threads())

    with outer.runtime:
        outer.forward(feeds, profile=run_inner)
        seen.append(numpy_blas_threads())
    assert seen == [1, 1]
    assert numpy_blas_threads() == USER_BLAS_THREADS


def test_networks_in_several_threads_leave_blas_as_found(user_blas, lenet):
    """Each thread counts its own entries; the thread that set the limit restores it. A shared
    count restored from another thread would be ignored by threadpoolctl (OpenBLAS's setting
    belongs to the thread that changed it) and leave BLAS limited. Every result stays right."""
    graph, feeds = lenet
    expected = graphnet.Network(graph, seed=0).forward(feeds)["logits"]
    errors, results = [], []

    def steps():
        try:
            network = graphnet.Network(graph, seed=0)
            for _ in range(8):
                network.forward(feeds, training=True)
                network.backward()
                results.append(network.forward(feeds)["logits"])
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)

    workers = [threading.Thread(target=steps) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors
    assert len(results) == 24
    for found in results:  # a thread may run a moment on the user's BLAS threads: rounding
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-5)
    assert numpy_blas_threads() == USER_BLAS_THREADS
    assert not runtime.blas_limited()


def test_another_thread_sets_blas_after_a_network_ran(user_blas, lenet):
    """Leaving the limit lets go of OpenBLAS's process-wide setting: a user's thread that sets
    BLAS's threads afterwards is heard, not silently ignored."""
    graph, feeds = lenet
    graphnet.Network(graph, seed=0).forward(feeds)
    set_blas_threads(2)
    assert numpy_blas_threads() == 2


def test_one_thread_leaves_blas_its_own_threads(user_blas, lenet):
    graph, feeds = lenet
    parallel.set_num_threads(1)
    during = []
    graphnet.Network(graph, seed=0).forward(
        feeds, profile=lambda *_: during.append(numpy_blas_threads()))
    assert set(during) == {USER_BLAS_THREADS}


def test_an_op_called_outside_a_network_limits_blas_for_that_call_only(user_blas):
    during = []
    parallel.run_tiles(lambda index, part: during.append(numpy_blas_threads()), 4, 1)
    assert set(during) == {1}
    assert numpy_blas_threads() == USER_BLAS_THREADS


# --- malloc -----------------------------------------------------------------------------------
MALLOC_PROBE = textwrap.dedent("""
    import ctypes, json, sys
    import numpy as np

    libc = ctypes.CDLL("libc.so.6")
    fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
              "uordblks", "fordblks", "keepcost")

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in fields]

    libc.mallinfo2.restype = Mallinfo2
    BLOCK = 64 << 20  # above glibc's largest mmap threshold (32 MiB): mapped unless tuned

    def big_block_is_mapped():
        before = libc.mallinfo2().hblkhd
        block = np.ones(BLOCK, np.uint8)
        mapped = libc.mallinfo2().hblkhd - before >= BLOCK
        del block
        return mapped

    import graphnet
    from graphnet import allocator, runtime

    marks = {"before graphnet": big_block_is_mapped()}
    graph = graphnet.load(sys.argv[1])
    network = graphnet.Network(graph, seed=0)
    feeds = {"image": np.ones((64, 1, 28, 28)), "label": np.zeros(64, int)}
    for _ in range(2):
        network.forward(feeds, training=True)
        network.backward()
    marks["after a library's steps"] = big_block_is_mapped()
    marks["tuned by the library"] = allocator.tuned()
    runtime.own_process()  # what graphnet's train, bench and eval commands do
    network.forward(feeds, training=True)
    marks["after an owning command's step"] = big_block_is_mapped()
    print(json.dumps(marks))
""")


def run_glibc_probe(probe: str, needs: str, *args) -> str:
    """The last line a probe prints, run on LeNet-5 in a fresh process (malloc's settings are
    for its life) without GRAPHNET_NUM_THREADS or GRAPHNET_KEEP_FREED_MEMORY; skipped where
    libc has no ``needs`` (not glibc)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc only")
    import ctypes
    try:
        getattr(ctypes.CDLL("libc.so.6"), needs)
    except (OSError, AttributeError):
        pytest.skip(f"no glibc with {needs} here")
    environment = {k: v for k, v in os.environ.items()
                   if k not in (allocator.ENV, runtime.THREADS_ENV)}
    completed = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "specs" / "lenet5.toml"), *args],
        capture_output=True, text=True, timeout=120, env=environment,
        preexec_fn=_bounded_memory)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.strip().splitlines()[-1]


def test_malloc_is_tuned_only_in_a_process_graphnet_owns(tmp_path):
    """In a fresh process (malloc's settings are for its life): a 64 MiB block is still served
    by its own mapping after graphnet's library calls, and no longer once a command that owns
    the process has run a step (the same probe seeing the change shows it can fail)."""
    import json
    marks = json.loads(run_glibc_probe(MALLOC_PROBE, "mallinfo2"))
    assert marks == {"before graphnet": True, "after a library's steps": True,
                     "tuned by the library": False, "after an owning command's step": False}


ARENA_PROBE = textwrap.dedent("""
    import ctypes, re, sys, threading
    import numpy as np
    import graphnet
    from graphnet import parallel, runtime

    if sys.argv[2] == "owned":
        runtime.own_process()  # what graphnet's train, bench and eval commands do first
    parallel.set_num_threads(2)
    network = graphnet.Network(graphnet.load(sys.argv[1]))
    network.forward({"image": np.ones((32, 1, 28, 28)), "label": np.zeros(32, int)},
                    training=True)
    network.backward()
    # and, whatever the layers' tiling, tiles that allocate on both threads: the first two
    # wait for each other, so the worker takes one
    both_threads = threading.Barrier(2, timeout=60)

    def allocate(index, part):
        if index < 2:
            both_threads.wait()
        np.ones(1024).sum()

    with runtime.Runtime():
        parallel.run_tiles(allocate, 8, 1)
    libc = ctypes.CDLL("libc.so.6")
    libc.open_memstream.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    text, size = ctypes.c_char_p(), ctypes.c_size_t()
    stream = libc.open_memstream(ctypes.byref(text), ctypes.byref(size))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(len(re.findall('<heap nr=', text.value.decode())))
""")


def test_an_owning_commands_worker_threads_share_one_malloc_arena():
    """In a process graphnet owns, the worker threads allocate from the one heap (whose
    freed memory every thread reuses) rather than each from an arena of its own, as they do
    in a process graphnet is a guest in."""
    arenas = {how: int(run_glibc_probe(ARENA_PROBE, "malloc_info", how))
              for how in ("guest", "owned")}
    assert arenas["owned"] == 1 < arenas["guest"], arenas


def test_the_cli_called_from_python_leaves_malloc_alone(run_cli, specs_dir):
    """``graphnet.cli.main([...])`` in someone's process is a guest: no malloc tuning."""
    was_tuned = allocator.tuned()
    status, _, err = run_cli("bench", specs_dir / "lenet5.toml", "--batch-size", "2", "--steps",
                             "1", "--warmup", "0", "--no-memory", "--format", "json")
    assert status == 0, err
    assert allocator.tuned() == was_tuned


# --- GRAPHNET_NUM_THREADS ---------------------------------------------------------------------
BAD_THREAD_COUNTS = ["abc", "0", "²", "-1", "1.5"]


@pytest.mark.parametrize("text", BAD_THREAD_COUNTS)
def test_a_bad_thread_count_is_refused_by_the_library(monkeypatch, lenet, text):
    graph, feeds = lenet
    parallel.set_num_threads(None)  # no count set from Python, which would take precedence
    monkeypatch.setenv(runtime.THREADS_ENV, text)
    network = graphnet.Network(graph, seed=0)
    with pytest.raises(graphnet.UsageError, match=runtime.THREADS_ENV) as raised:
        network.forward(feeds)
    assert raised.value.found == repr(text)
    assert runtime.current() is None and not runtime.blas_limited()
    monkeypatch.setenv(runtime.THREADS_ENV, " 2 ")
    assert parallel.num_threads() == 2
    network.forward(feeds)


@pytest.mark.parametrize("text, command", [
    ("abc", ["train", "specs/lenet5.toml", "--epochs", "1"]),
    ("0", ["bench", "specs/lenet5.toml", "--no-memory"]),
    ("²", ["gradcheck", "specs/lenet5.toml"]),  # no opt-in: refused at the first forward
    ("-1", ["eval", "specs/lenet5.toml"]),
])
def test_a_bad_thread_count_is_refused_by_the_cli(tmp_path, text, command):
    completed = subprocess.run(
        [sys.executable, "-m", "graphnet.cli", command[0], str(ROOT / command[1]), *command[2:]],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, preexec_fn=_bounded_memory,
        env=dict(os.environ, **{runtime.THREADS_ENV: text}, COLUMNS="200"))
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    assert runtime.THREADS_ENV in completed.stderr and repr(text) in completed.stderr
    assert "at least 1" in completed.stderr
    assert not (tmp_path / "runs").exists()  # refused before a run started


def _bounded_memory() -> None:
    """A subprocess's address space, capped: a regression fails the test, not the machine."""
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


# --- scratch buffers: kept while asked for, shared among the op calls of a step ---------------
MIB = 1 << 20


def test_one_calls_buffers_are_distinct_and_the_next_call_reuses_their_memory():
    """A runtime keeps the scratch of its most demanding op call, not of every op: a call's
    buffers never overlap one another, the same name gives the same memory within a call,
    and the next call's names reuse that memory."""
    own = Runtime()
    with own:
        for _ in range(2):  # the first call's buffers make the arena the second one cuts
            first = runtime.scratch("a", (MIB // 4,), np.float32)
            second = runtime.scratch("b", (MIB // 8,), np.float64)
            assert not np.shares_memory(first, second)
            assert runtime.scratch("a", (256, 1024), np.float32).ctypes.data == first.ctypes.data
            first[:] = 1
            second[:] = 2
            assert (first == 1).all() and (second == 2).all()
            own.op_call_ended()
        assert own.scratch_bytes() == 2 * MIB
        for name in ("c", "d", "e"):  # other ops' names
            other = runtime.scratch(name, (MIB // 4,), np.float32)
            assert np.shares_memory(other, first)
            own.op_call_ended()
        assert own.scratch_bytes() == 2 * MIB
        runtime.scratch("f", (MIB // 4,), np.float32)
        runtime.scratch("g", (MIB,), np.float32)  # a call asking for more: a larger arena
        own.op_call_ended()
        assert own.scratch_bytes() == 5 * MIB
    assert own.scratch_bytes() == 5 * MIB  # kept for the next entry


def test_buffers_nobody_asks_for_are_freed_two_entries_later():
    """Forward and backward called in turn (each an entry) keep each other's buffers; a
    buffer that neither of the last two entries asked for is freed, a zeroed one too."""
    own = Runtime()
    with own:
        runtime.scratch("plain", (MIB // 4,), np.float32)
        runtime.scratch("border", (MIB // 4,), np.float32, zeroed=True)
    assert own.scratch_bytes() == 2 * MIB
    with own:  # another pass, asking for nothing
        pass
    assert own.scratch_bytes() == 2 * MIB
    with own:
        with own:  # nested: one entry
            runtime.scratch("border", (MIB // 4,), np.float32, zeroed=True)
    assert own.scratch_bytes() == MIB  # the plain buffer is gone
    with own:
        pass
    assert own.scratch_bytes() == MIB
    with own:
        pass
    assert own.scratch_bytes() == 0


SMALL_CONVS = {
    "inputs": {"image": {"shape": [4, 16, 16]}, "label": {"shape": [], "dtype": "int64"}},
    "nodes": [
        {"name": "conv1", "op": "conv2d", "inputs": ["image"], "filters": 8, "kernel": 3,
         "padding": 1},
        {"name": "relu1", "op": "relu"},
        {"name": "conv2", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1},
        {"name": "pool", "op": "max_pool2d", "kernel": 2},
        {"name": "conv3", "op": "conv2d", "filters": 16, "kernel": 3, "stride": 2},
        {"name": "fc", "op": "dense", "units": 4},
        {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}],
    "outputs": {"logits": "fc", "loss": "loss"},
}


def test_a_network_run_at_a_smaller_batch_keeps_only_that_batchs_scratch(threads_one):
    """After a training step at batch 64 and then steps at batch 4, a network keeps the
    scratch a network run only at batch 4 keeps, not buffers sized for 64."""
    graph = graphnet.load(SMALL_CONVS)
    from graphnet.gradcheck import random_feeds
    big, small = (random_feeds(graph, batch, 0, np.float32) for batch in (64, 4))
    network, fresh = graphnet.Network(graph), graphnet.Network(graph)
    network.forward(big, training=True)
    network.backward()
    large = network.runtime.scratch_bytes()
    for net in (network, fresh):
        for _ in range(2):
            net.forward(small, training=True)
            net.backward()
    assert 0 < network.runtime.scratch_bytes() == fresh.runtime.scratch_bytes() < large


@pytest.fixture
def threads_one():
    """One thread: which worker takes which tile (and so keeps which buffers) is then fixed."""
    parallel.set_num_threads(1)
    yield
    parallel.set_num_threads(None)


def test_kernels_measured_and_not_chosen_leave_no_buffers_behind(monkeypatch, threads_one):
    """A network that timed its conv kernels keeps, after a step, the scratch of the kernels
    it chose, as one told those kernels from the start does."""
    monkeypatch.delenv("GRAPHNET_CONV_KERNEL")
    graph = graphnet.load(SMALL_CONVS)
    from graphnet.gradcheck import random_feeds
    feeds = random_feeds(graph, 8, 0, np.float32)
    measured = graphnet.Network(graph)
    measured.forward(feeds, training=True)
    measured.backward()
    assert measured.choices.measured, "nothing was measured: the test shows nothing"
    told = graphnet.Network(graph, choices=dict(measured.choices.by_node))
    told.forward(feeds, training=True)
    told.backward()
    assert measured.runtime.scratch_bytes() == told.runtime.scratch_bytes()


GUEST_ENV_PROBE = textwrap.dedent("""
    import os, sys
    import numpy as np
    import graphnet

    network = graphnet.Network(graphnet.load(sys.argv[1]))
    network.forward({"image": np.ones((8, 1, 28, 28)), "label": np.zeros(8, int)},
                    training=True)
    network.backward()
    print(repr(os.environ.get("KMP_DUPLICATE_LIB_OK")))
""")


@pytest.mark.parametrize("before", [None, "FALSE"])
def test_a_network_leaves_the_environment_as_it_found_it(before):
    """The BLAS limit imports threadpoolctl, which sets KMP_DUPLICATE_LIB_OK=True in the
    process's environment as it is imported (letting a second OpenMP runtime load where Intel's
    would stop): a library's forward and backward changed the environment of its host."""
    environment = {k: v for k, v in os.environ.items() if k != "KMP_DUPLICATE_LIB_OK"}
    environment[runtime.THREADS_ENV] = "2"  # the BLAS limit is held with a pool of threads
    if before is not None:
        environment["KMP_DUPLICATE_LIB_OK"] = before
    completed = subprocess.run(
        [sys.executable, "-c", GUEST_ENV_PROBE, str(ROOT / "specs" / "lenet5.toml")],
        capture_output=True, text=True, timeout=120, env=environment)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == repr(before)
