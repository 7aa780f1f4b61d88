"""Data-parallel training on Ray (``graphnet train --workers N``, :mod:`graphnet.distributed`):
equal to one process, resuming across worker counts, a killed worker, Ctrl-C, bad arguments.

The tests that need Ray share one local instance per module (127.0.0.1, 2 CPUs, no dashboard);
they skip where Ray is not installed (CI installs it with the test extra).
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import graphnet
from graphnet.checkpoint import load_checkpoint
from graphnet.registry import load_plugin_file
from graphnet.train import Notice, StepDone, train
from graphnet.training.events import WorkersStarted

TOY = Path(__file__).resolve().parent / "toy_plugin.py"
toy = load_plugin_file(TOY)
LOCAL_SETTINGS = ("RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
TOLERANCE = 1e-4
"""2 workers vs one process after training: the largest difference of a parameter array,
relative to that array's largest value (measured: a few 1e-7 — summation order only)."""


@pytest.fixture(scope="module")
def ray_session():
    from graphnet.distributed.cluster import LOCAL_ENV

    for name, value in LOCAL_ENV.items():  # before Ray is imported: it reads them then
        os.environ.setdefault(name, value)
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(toy.toy_spec(units=32, size=8)))
    return path


def _graph(spec):
    return graphnet.load(spec, plugins=[TOY])


def _largest_difference(first: dict, second: dict) -> float:
    return max(float(np.max(np.abs(first[key] - second[key]))
                     / max(float(np.max(np.abs(first[key]))), 1e-30)) for key in first)


def test_two_workers_equal_one_process(ray_session, spec, tmp_path):
    graph = _graph(spec)
    alone = train(graph, run_dir=tmp_path / "one", epochs=2)
    events = []
    shared = train(graph, run_dir=tmp_path / "two", epochs=2, workers=2, on_event=events.append)
    assert _largest_difference(alone.network.flat_params(), shared.network.flat_params()) \
        < TOLERANCE
    started = [e for e in events if isinstance(e, WorkersStarted)]
    assert len(started) == 1 and started[0].workers == 2 and started[0].threads == [1, 1]
    steps = [e for e in events if isinstance(e, StepDone)]
    assert all(len(e.compute_shares) == 2 and all(0 <= s <= 1 for s in e.compute_shares)
               for e in steps)
    # the run directory of one process: a history of every epoch and a checkpoint that loads
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["train_loss"] == pytest.approx(alone.final["train_loss"], rel=TOLERANCE)
    assert shared.final["test_accuracy"] == pytest.approx(alone.final["test_accuracy"], abs=0.01)
    checkpoint = load_checkpoint(tmp_path / "two" / "checkpoint.npz")
    assert checkpoint.meta["epoch"] == 2
    assert _largest_difference(checkpoint.params, alone.network.flat_params()) < TOLERANCE


def test_a_run_resumes_with_another_worker_count(ray_session, spec, tmp_path):
    graph = _graph(spec)
    straight = train(graph, run_dir=tmp_path / "straight", epochs=2)
    train(graph, run_dir=tmp_path / "run", epochs=1, workers=2)
    result = train(graph, run_dir=tmp_path / "run", epochs=2, workers=1, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert _largest_difference(straight.network.flat_params(), result.network.flat_params()) \
        < TOLERANCE


def test_a_killed_worker_is_replaced_and_the_run_completes(ray_session, spec, tmp_path):
    graph = _graph(spec)
    events, killed = [], []

    def kill_mid_epoch(event):
        events.append(event)
        if isinstance(event, StepDone) and event.epoch == 2 and event.step == 5 and not killed:
            pid = next(e for e in events if isinstance(e, WorkersStarted)).pids[1]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    result = train(graph, run_dir=tmp_path, epochs=2, workers=2, on_event=kill_mid_epoch)
    assert killed
    notices = [e.text for e in events if isinstance(e, Notice)]
    assert any(f"worker 1 (pid {killed[0]} on 127.0.0.1) died" in text
               and "restarting the 2 workers from the last checkpoint" in text
               for text in notices), notices
    assert sum(isinstance(e, WorkersStarted) for e in events) == 2
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert load_checkpoint(tmp_path / "checkpoint.npz").meta["epoch"] == 2
    # the restart went back to epoch 1's checkpoint: epoch 2 is the same as without the kill
    unharmed = train(graph, run_dir=tmp_path / "unharmed", epochs=2, workers=2)
    assert _largest_difference(unharmed.network.flat_params(), result.network.flat_params()) \
        < TOLERANCE


def test_past_max_failures_the_run_stops_naming_the_worker(ray_session, spec, tmp_path):
    from graphnet.distributed.training import WorkersFailed

    def kill(event):
        if isinstance(event, WorkersStarted):
            os.kill(event.pids[0], signal.SIGKILL)

    with pytest.raises(WorkersFailed, match=r"worker 0 \(pid \d+ on 127.0.0.1\) died.*failed 2 "
                       r"times, more than --max-failures 1"):
        train(_graph(spec), run_dir=tmp_path, epochs=1, workers=1, max_failures=1,
              on_event=kill)


def test_ctrl_c_writes_a_checkpoint_and_stops_every_worker(ray_session, spec, tmp_path):
    address = ray_session.get_runtime_context().gcs_address
    environment = {**os.environ, "PYTHONUNBUFFERED": "1",
                   "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "graphnet.cli", "train", str(spec), "--plugin", str(TOY),
         "--workers", "2", "--ray-address", address, "--epochs", "1000", "--run-dir",
         str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment)
    pids = []
    try:
        for line in process.stdout:
            found = re.search(r"2 workers on .*: pids (\d+), (\d+) on", line)
            if found:
                pids = [int(found.group(1)), int(found.group(2))]
                break
        assert pids, process.stderr.read()
        time.sleep(1.0)  # some steps
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "interrupted: stopped at" in err and "Traceback" not in err
    assert load_checkpoint(tmp_path / "checkpoint.npz").meta["epoch"] >= 0
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(") ")[-1].startswith("Z"))


def test_bench_times_a_step_on_workers(ray_session, run_cli, spec):
    status, out, err = run_cli("bench", spec, "--plugin", TOY, "--workers", 2, "--steps", 3,
                               "--warmup", 1, "--batch-size", 32)
    assert status == 0, err
    assert "data-parallel training step on 2 workers" in out and "ms median of 3" in out
    assert "communication" in out


# --- without Ray, or before it is asked for ------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "abc", "-1", "1.5"])
def test_a_bad_worker_count_is_refused(run_cli, spec, tmp_path, value):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--workers", value,
                               "--run-dir", tmp_path)
    assert status == 2
    assert "'--workers': bad worker count: expected a whole number, at least 1" in err
    assert "Traceback" not in err and not (tmp_path / "checkpoint.npz").exists()


def test_an_unreachable_cluster_is_refused_at_once(run_cli, spec, tmp_path):
    pytest.importorskip("ray")
    started = time.monotonic()
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--workers", 2, "--ray-address",
                               "127.0.0.1:9", "--run-dir", tmp_path)
    assert status == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in err and "ray start --head" in err
    assert "Traceback" not in err
    assert time.monotonic() - started < 30


def test_without_ray_the_message_says_how_to_install_it(run_cli, spec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--workers", 2,
                               "--run-dir", tmp_path)
    assert status == 2
    assert "needs Ray, which is not installed" in err and "'graphnet-cnn[ray]'" in err
    assert "Traceback" not in err


def test_worker_flags_need_workers(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--max-failures", 2,
                               "--run-dir", tmp_path)
    assert status == 2 and "--max-failures goes with --workers" in err


def test_a_local_instance_leaves_the_environment_and_signal_handlers_as_it_found_them():
    # A library is a guest: Ray's settings for a local instance and the handlers ray.init
    # installs are gone once graphnet's session ends (a fresh process: this module's Ray is open).
    pytest.importorskip("ray")
    probe = (
        "import os, signal\n"
        "from graphnet.distributed import cluster\n"
        "def handler(number, frame): pass\n"
        "signal.signal(signal.SIGTERM, handler)\n"
        "before = dict(os.environ)\n"
        "with cluster.session() as session:\n"
        "    assert session.owned and session.ray.is_initialized()\n"
        "    inside = {name: os.environ.get(name) for name in cluster.LOCAL_ENV}\n"
        "assert inside == cluster.LOCAL_ENV, inside\n"
        "assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())\n"
        "assert signal.getsignal(signal.SIGTERM) is handler\n"
        "print('restored')\n")
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("RAY_ADDRESS", *LOCAL_SETTINGS)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=environment, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "restored" in done.stdout
