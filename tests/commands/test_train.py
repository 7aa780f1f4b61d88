"""``graphnet train``: output, exit codes and flags, run through the real CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphnet.registry import get_registry, load_plugin_file

TOY = Path(__file__).resolve().parents[1] / "toy_plugin.py"
toy = load_plugin_file(TOY)


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(toy.toy_spec()))
    return path


def test_train_prints_epochs_curves_and_confusion(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--epochs", 3, "--run-dir",
                               tmp_path / "run", "--val-fraction", 0.1, "--lr", 0.1)
    assert status == 0, err
    assert "training toy on toy: 461 train / 51 val / 256 test samples" in out
    for epoch in (1, 2, 3):
        assert f"epoch {epoch}/3" in out
    assert "loss by epoch" in out and "accuracy by epoch" in out
    assert "confusion matrix" in out and "3 class3" in out
    assert "test: loss" in out
    assert (tmp_path / "run" / "checkpoint.npz").is_file()
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == 3 and history[0]["lr"] == 0.1


def test_watch_prints_the_health_table(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--epochs", 1, "--run-dir",
                               tmp_path, "--watch", "--limit-train", 64)
    assert status == 0, err
    assert "64 train" in out and "grad norm" in out and "zeros" in out and "relu1" in out


@pytest.mark.parametrize("flag, value, words", [
    ("--epochs", "abc", "expected an integer"),
    ("--epochs", "0", "expected an integer >= 1"),
    ("--lr", "fast", "expected a number"),
    ("--optimizer", "adamm", "did you mean 'adam'"),
    ("--schedule", "cosin", "did you mean 'cosine'"),
    ("--val-fraction", "0.95", "<= 0.9"),
    ("--dataset", "toi", "did you mean 'toy'"),
    ("--dataset-option", "nosie=1", "did you mean 'noise'"),
    ("--dataset-option", "noise", "KEY=VALUE"),
])
def test_bad_arguments_name_the_flag(run_cli, spec, tmp_path, flag, value, words):
    status, out, err = run_cli("train", spec, "--plugin", TOY, flag, value, "--run-dir", tmp_path)
    assert status == 2
    assert f"'{flag}" in err and words in err
    assert "Traceback" not in err


def test_momentum_for_an_optimizer_without_it(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--optimizer", "adam",
                               "--momentum", "0.9", "--run-dir", tmp_path)
    assert status == 2 and "'--momentum'" in err and "unknown option of optimizer 'adam'" in err


def test_resume_needs_a_checkpoint(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--resume", "--run-dir", tmp_path)
    assert status == 2 and "nothing to resume" in err


def test_nan_exits_2_naming_the_node(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--lr", "1e30", "--run-dir",
                               tmp_path)
    assert status == 2
    assert "node 'fc2'" in err and "epoch 1, step 2" in err and "no checkpoint was written" in err


def test_wrong_image_shape_names_both(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--dataset-option", "size=5",
                               "--run-dir", tmp_path)
    assert status == 2 and "1×6×6" in err and "1×5×5" in err


def test_without_a_dataset_it_trains_on_shapes(run_cli, tmp_path):
    if "shapes" not in get_registry().names("dataset"):
        pytest.skip("the shapes dataset is not registered")
    spec = toy.toy_spec(size=16, channels=1, classes=10)
    del spec["train"]
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(spec))
    status, out, err = run_cli("train", path, "--epochs", 1, "--limit-train", 64,
                               "--dataset-option", "train_size=100",
                               "--dataset-option", "test_size=50", "--run-dir", tmp_path)
    assert status == 0, err
    assert "on shapes: 64 train / 50 test samples, 10 classes" in out
