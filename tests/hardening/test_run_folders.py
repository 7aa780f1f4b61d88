"""Run folders: a run takes its folder for its whole life (a second ``graphnet train`` into it is
refused naming the folder and the holder, or goes into a fresh folder when asked), never
writes outside ``runs/`` whatever the graph is named, proves the folder writable before the
first step, and stops on SIGTERM as on Ctrl-C — checked with real processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphnet.cli import main
from graphnet.files import LOCK_NAME


def _spec(path, *, name="tiny", train_size=32, epochs=1):
    path.write_text(json.dumps({
        "graph": {"name": name},
        "inputs": {"image": {"shape": [1, 16, 16]}, "label": {"shape": [], "dtype": "int64"}},
        "nodes": [{"name": "flat", "op": "flatten", "inputs": ["image"]},
                  {"name": "fc", "op": "dense", "units": 10},
                  {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}],
        "outputs": {"logits": "fc", "loss": "loss"},
        "train": {"epochs": epochs, "batch_size": 8,
                  "dataset": {"name": "shapes", "train_size": train_size, "test_size": 16}}}))
    return path


def _start(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "graphnet.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=dict(os.environ, COLUMNS="200"))


def _wait_for_lock(run_dir: Path, child: subprocess.Popen, timeout=120) -> None:
    """Until ``child`` holds the run folder (its pid is in the lock file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lock = run_dir / LOCK_NAME
        if lock.exists() and lock.read_text().strip() == str(child.pid):
            return
        assert child.poll() is None, child.communicate()
        time.sleep(0.05)
    pytest.fail("the first run never took its folder")


def test_two_real_runs_into_one_folder(tmp_path, bounded_cli):
    """The first run holds the folder; a second is refused naming it and the holder's pid, or
    with --new-run-dir trains beside it; SIGTERM stops the first after its step, with a
    checkpoint that resumes (exit 143), and the folder is free again."""
    spec = _spec(tmp_path / "tiny.json", train_size=4000, epochs=1000)
    run_dir = tmp_path / "run"
    first = _start("train", spec, "--run-dir", run_dir)
    try:
        _wait_for_lock(run_dir, first)
        second = bounded_cli("train", spec, "--run-dir", run_dir, "--epochs", "1", timeout=120)
        assert second.refused(str(run_dir), "in use by another graphnet train",
                              f"process {first.pid}"), second
        beside = bounded_cli("train", spec, "--run-dir", run_dir, "--epochs", "1",
                             "--dataset-option", "train_size=32", "--new-run-dir", timeout=120)
        assert beside.status == 0, beside
        assert (tmp_path / "run-2" / "checkpoint.npz").is_file()
        while not (run_dir / "checkpoint.npz").exists() and first.poll() is None:
            time.sleep(0.05)  # let the first run finish an epoch or two
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 143, err
    assert "interrupted" in err + out and "Traceback" not in err
    again = bounded_cli("train", spec, "--run-dir", run_dir, "--resume", "--epochs", "1",
                        timeout=120)  # free again, and what SIGTERM wrote loads
    assert again.status == 0 and "Traceback" not in again.err, again


def test_a_graph_name_never_takes_the_run_outside_runs(tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("../../escape", "/absolute/place", "..", "a/../../b"):
        spec = _spec(tmp_path / "named.json", name=name)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            assert main(["train", str(spec)]) == 0, capsys.readouterr().err
        finally:
            os.chdir(cwd)
    made = sorted(path.name for path in (work / "runs").iterdir())
    assert made == ["a_b", "absolute_place", "escape", "graph"], made
    outside = {path.name for path in tmp_path.iterdir()}
    assert outside == {"work", "named.json"}, outside
    assert not Path("/absolute").exists()


@pytest.mark.parametrize("case", ["a file", "history a folder", "checkpoint a folder",
                                  "read-only"])
def test_an_unwritable_run_folder_is_refused_before_the_first_step(tmp_path, capsys, case):
    spec = _spec(tmp_path / "tiny.json")
    run_dir = tmp_path / "run"
    named = run_dir
    if case == "a file":
        run_dir.write_text("not a folder")
    elif case == "history a folder":
        (run_dir / "history.json").mkdir(parents=True)
        named = run_dir / "history.json"
    elif case == "checkpoint a folder":
        (run_dir / "checkpoint.npz").mkdir(parents=True)
        named = run_dir / "checkpoint.npz"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        run_dir.mkdir()
        run_dir.chmod(0o555)
    try:
        status = main(["train", str(spec), "--run-dir", str(run_dir)])
    finally:
        if run_dir.is_dir():
            run_dir.chmod(0o755)
    err = capsys.readouterr().err
    assert status == 2 and str(named) in err and "Traceback" not in err, err
    assert "epoch 1" not in err and "previous checkpoint is kept" not in err


def test_the_sigterm_handler_is_the_run_s_only(tmp_path):
    from graphnet.train import train
    import graphnet

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    graph = graphnet.load(_spec(tmp_path / "tiny.json"))
    train(graph, run_dir=tmp_path / "run")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert not (tmp_path / "run" / LOCK_NAME).exists() or _free(tmp_path / "run")


def _free(run_dir: Path) -> bool:
    import fcntl
    with open(run_dir / LOCK_NAME, "a") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def test_plugin_optimizers_and_schedules_that_misbehave_are_named(tmp_path, capsys):
    plugin = tmp_path / "bad_optim.py"
    plugin.write_text('''
from graphnet.hookspecs import hookimpl
from graphnet.optim import Optimizer, Schedule


class Raises(Optimizer):
    """Raises when made."""
    name = "raises"

    def __init__(self, options):
        raise RuntimeError("no optimizer today")


class NotOne:
    """Not an optimizer at all."""
    name = "imposter"
    options = {}

    def __init__(self, options):
        pass


class Wrong(Schedule):
    """A schedule whose rate is a string."""
    name = "wrong"

    def lr_at(self, epoch, step):
        return "fast"


@hookimpl
def graphnet_register_optimizers(registry):
    registry.add_optimizer(Raises)
    registry.add_optimizer(NotOne)
    registry.add_schedule(Wrong)
''')
    spec = _spec(tmp_path / "tiny.json")
    for flags, phrase in ((["--optimizer", "raises"], "no optimizer today"),
                          (["--optimizer", "imposter"], "imposter"),
                          (["--schedule", "wrong"], "wrong")):
        capsys.readouterr()
        status = main(["train", str(spec), "--run-dir", str(tmp_path / "run"), "--plugin",
                       str(plugin), *flags])
        err = capsys.readouterr().err
        assert status == 2 and "Traceback" not in err, (flags, err)
        assert phrase in err and "bad_optim" in err, (flags, err)
