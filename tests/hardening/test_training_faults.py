"""Faults during training, done to a real ``graphnet train`` process: SIGKILL at random moments
never leaves a corrupt checkpoint and ``--resume`` continues from the last complete one; SIGINT
stops cleanly with a checkpoint and says how to resume; a full disk (a tiny tmpfs) is reported
as a CheckpointError (exit 2) and the previous checkpoint survives.

The run uses the toy dataset plugin (tests/toy_plugin.py) with a wide dense layer, so each epoch
is a few steps and a 2 MB checkpoint: a random kill often lands mid-write.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphnet.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
TOY_PLUGIN = ROOT / "tests" / "toy_plugin.py"
DATASET = ["--dataset-option", "train=64", "--dataset-option", "test=32",
           "--dataset-option", "size=16"]


def _spec(tmp_path, *, units=1000, epochs=100_000) -> Path:
    spec = {"graph": {"name": "toy_faults"},
            "inputs": {"image": {"shape": [1, 16, 16]}, "label": {"shape": [], "dtype": "int64"}},
            "nodes": [{"name": "fc1", "op": "dense", "inputs": ["image"], "units": units},
                      {"name": "relu1", "op": "relu"},
                      {"name": "fc2", "op": "dense", "units": 4},
                      {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc2", "label"]}],
            "outputs": {"logits": "fc2", "loss": "loss"},
            "train": {"dataset": "toy", "epochs": epochs, "batch_size": 32,
                      "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}}}
    path = tmp_path / "toy_faults.json"
    path.write_text(json.dumps(spec))
    return path


def _train_command(spec, run_dir, *extra):
    return [sys.executable, "-m", "graphnet.cli", "train", str(spec), "--plugin", str(TOY_PLUGIN),
            "--run-dir", str(run_dir), *DATASET, *map(str, extra)]


def _start(spec, run_dir, *extra):
    env = dict(os.environ, COLUMNS="200")
    return subprocess.Popen(_train_command(spec, run_dir, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish(spec, run_dir, *extra, timeout=120):
    completed = subprocess.run(_train_command(spec, run_dir, *extra), capture_output=True,
                               text=True, timeout=timeout, env=dict(os.environ, COLUMNS="200"))
    return completed.returncode, completed.stdout, completed.stderr


def _wait_for(path: Path, process, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _complete_epochs(run_dir: Path) -> int:
    """The last complete checkpoint's epoch; it must load (never corrupt). 0 when none yet."""
    path = run_dir / "checkpoint.npz"
    if not path.exists():
        return 0
    checkpoint = load_checkpoint(path)
    history_path = run_dir / "history.json"
    if history_path.exists():  # written after the checkpoint: a kill between may leave it behind
        last = [record["epoch"] for record in json.loads(history_path.read_text())][-1:]
        assert last in ([checkpoint.epoch], [checkpoint.epoch - 1], [])
    return checkpoint.epoch


def _mtime(path: Path):
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _kill_loop(tmp_path, kills: int, seed: int) -> dict:
    """Each round starts (or resumes) training, waits until it has written a new checkpoint,
    then SIGKILLs it at a random moment of the next ~0.3 s (between steps, mid-evaluation, …)
    or, every other round on average, as soon as the next checkpoint's temp file appears."""
    spec, run_dir = _spec(tmp_path), tmp_path / "run"
    checkpoint = run_dir / "checkpoint.npz"
    rng = random.Random(seed)
    seen, epochs, mid_write = [], 0, 0
    for round_ in range(kills):
        before = _mtime(checkpoint)
        process = _start(spec, run_dir, *(["--resume"] if before else []))
        deadline = time.monotonic() + 60
        while _mtime(checkpoint) == before:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint written within 60 s"
            time.sleep(0.005)
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, 0.3))
        else:  # aim for the middle of the next checkpoint write
            while not list(run_dir.glob(".checkpoint.npz.*.tmp")) and process.poll() is None:
                time.sleep(0.0005)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        mid_write += bool(list(run_dir.glob(".checkpoint.npz.*.tmp")))
        now = _complete_epochs(run_dir)
        assert now > epochs, f"kill {round_}: the checkpoint went from epoch {epochs} to {now}"
        epochs = now
        seen.append(now)
    assert epochs > 0, f"no checkpoint in {kills} runs: {seen}"
    target = epochs + 2
    status, out, err = _finish(spec, run_dir, "--resume", "--epochs", target)
    assert status == 0 and "Traceback" not in err, err
    final = load_checkpoint(run_dir / "checkpoint.npz")
    history = json.loads((run_dir / "history.json").read_text())
    assert final.epoch == target and [r["epoch"] for r in history] == list(range(1, target + 1))
    assert not list(run_dir.glob(".*.tmp")), "a killed writer's temp file was not cleaned up"
    return {"epochs": seen, "mid_write": mid_write}


def test_sigkill_at_random_moments_never_corrupts_and_resume_continues(tmp_path):
    _kill_loop(tmp_path, kills=4, seed=7)


@pytest.mark.slow
def test_sigkill_many_times(tmp_path):
    result = _kill_loop(tmp_path, kills=25, seed=int(time.time()))
    print(f"kills: 25, epochs after each: {result['epochs']}, "
          f"killed while a temp file existed: {result['mid_write']}")


def test_sigint_stops_cleanly_with_a_checkpoint_and_says_how_to_resume(tmp_path):
    spec, run_dir = _spec(tmp_path), tmp_path / "run"
    process = _start(spec, run_dir)
    _wait_for(run_dir / "checkpoint.npz", process)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in out + err
    assert "--resume" in out + err  # the command that continues the run
    stopped = load_checkpoint(run_dir / "checkpoint.npz")
    target = stopped.epoch + 1
    status, out, err = _finish(spec, run_dir, "--resume", "--epochs", target)
    assert status == 0, err
    assert load_checkpoint(run_dir / "checkpoint.npz").epoch == target


def test_a_second_sigint_stops_at_once_and_keeps_the_last_checkpoint(tmp_path):
    spec, run_dir = _spec(tmp_path), tmp_path / "run"
    process = _start(spec, run_dir)
    _wait_for(run_dir / "checkpoint.npz", process)
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in out + err, err
    load_checkpoint(run_dir / "checkpoint.npz")


@pytest.fixture
def tiny_disk(tmp_path):
    """A tmpfs of a given size; skipped where mounting is not permitted."""
    mounts = []

    def mount(size_bytes: int) -> Path:
        target = tmp_path / f"disk{len(mounts)}"
        target.mkdir()
        size = -(-size_bytes // 4096) * 4096
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                 str(target)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): "
                        f"{result.stderr.strip() or result.returncode}")
        mounts.append(target)
        return target
    yield mount
    for target in mounts:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_a_full_disk_is_reported_and_the_previous_checkpoint_survives(tmp_path, tiny_disk):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    spec = _spec(tmp_path, epochs=1)
    status, _, err = _finish(spec, tmp_path / "sizing")
    assert status == 0, err
    checkpoint_bytes = (tmp_path / "sizing" / "checkpoint.npz").stat().st_size
    # Room for one checkpoint and the history, not for a second written beside it.
    disk = tiny_disk(int(checkpoint_bytes * 1.5) + 64 * 1024)
    run_dir = disk / "run"
    status, out, err = _finish(spec, run_dir, "--epochs", 4)
    assert status == 2, out + err
    assert "Traceback" not in err
    assert "could not write checkpoint: the disk is full; the previous checkpoint is kept" in err
    assert str(run_dir / "checkpoint.npz") in err
    survivor = load_checkpoint(run_dir / "checkpoint.npz")
    assert survivor.epoch == 1
    assert not list(run_dir.glob(".*.tmp")), "the failed write left its temp file"
    # With room again (the run moved to a roomy disk), --resume continues from the survivor.
    roomy = tmp_path / "roomy"
    shutil.copytree(run_dir, roomy)
    status, out, err = _finish(spec, roomy, "--resume", "--epochs", 2)
    assert status == 0, err
    assert load_checkpoint(roomy / "checkpoint.npz").epoch == 2


def test_untrusted_checkpoints_are_refused_by_train_eval_and_predict(tmp_path, capsys,
                                                                     rewrite_checkpoint_meta):
    import numpy as np

    from graphnet.cli import main

    spec, run_dir = _spec(tmp_path, units=8, epochs=1), tmp_path / "run"
    base = ["--plugin", str(TOY_PLUGIN), *DATASET]
    assert main(["train", str(spec), "--run-dir", str(run_dir), *base]) == 0
    path = run_dir / "checkpoint.npz"
    image = tmp_path / "image.npy"
    np.save(image, np.zeros((1, 16, 16), np.float32))
    commands = [["train", str(spec), "--run-dir", str(run_dir), "--resume", "--epochs", "2", *base],
                ["eval", str(spec), "--run-dir", str(run_dir), *base],
                ["predict", str(spec), str(image), "--run-dir", str(run_dir), "--plugin",
                 str(TOY_PLUGIN)]]
    rewrite_checkpoint_meta(path, format_version=99)
    for command in commands:
        capsys.readouterr()
        status = main(command)
        err = capsys.readouterr().err
        assert status == 2 and "newer than this graphnet understands" in err, (command, err)
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["param/fc1/weight"] = np.array([object()], dtype=object)
    np.savez(path, **arrays)
    for command in commands:
        capsys.readouterr()
        status = main(command)
        err = capsys.readouterr().err
        assert status == 2 and "object arrays" in err and "Traceback" not in err, (command, err)
