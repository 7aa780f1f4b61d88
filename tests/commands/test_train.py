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
    assert "on shapes: 64 train / 10 val / 50 test samples, 10 classes" in out


def test_epochs_show_validation_the_end_shows_test_once_and_best_npz_evaluates(run_cli, spec,
                                                                               tmp_path):
    run = tmp_path / "run"
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--epochs", 3, "--run-dir", run)
    assert status == 0, err
    assert "461 train / 51 val / 256 test samples" in out  # val_fraction 0.1 by default
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3 and all("val loss" in line for line in epoch_lines)
    assert not any("test" in line for line in epoch_lines), epoch_lines
    assert out.count("test: loss") == 1 and f"best: {run / 'best.npz'} (epoch " in out
    history = json.loads((run / "history.json").read_text())
    assert ["test_accuracy" in record for record in history] == [False, False, True]
    status, out, err = run_cli("eval", spec, "--plugin", TOY, "--checkpoint", run / "best.npz")
    assert status == 0, err
    assert "test: loss" in out


def test_early_stop_flag_stops_training(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--epochs", 20, "--lr", 0,
                               "--early-stop", 1, "--run-dir", tmp_path)
    assert status == 0, err
    assert "stopping early after epoch 2" in err and "epoch 3/20" not in out
    assert "note: stopping early" in err and "warning:" not in err  # it did as asked
    assert "test: loss" in out


def test_an_exploding_loss_stops_with_status_2_naming_epoch_and_step(run_cli, spec, tmp_path):
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--lr", 50, "--run-dir", tmp_path)
    assert status == 2
    assert "the loss is growing" in err
    assert "the loss exploded to" in err and "at epoch 1, step" in err
    assert "max_loss_growth" in err and "Traceback" not in err


def test_adam_without_a_rate_uses_its_own_default(run_cli, tmp_path):
    spec = tmp_path / "plain.json"
    spec.write_text(json.dumps(toy.toy_spec(optimizer="sgd")))  # no rate in the spec
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--optimizer", "adam",
                               "--epochs", 1, "--limit-train", 64, "--run-dir", tmp_path)
    assert status == 0, err
    assert "adam lr 0.001;" in out


def test_init_from_and_a_kept_earlier_run_are_notes_not_warnings(run_cli, spec, tmp_path):
    """Starting from --init-from's parameters and keeping an earlier run's files are what the
    user asked for: said as notes, so that a "warning:" still means something went amiss."""
    first = tmp_path / "first"
    assert run_cli("train", spec, "--plugin", TOY, "--epochs", 1, "--limit-train", 64,
                   "--run-dir", first)[0] == 0
    for _ in range(2):  # the second time into a folder holding the first one's files
        status, out, err = run_cli("train", spec, "--plugin", TOY, "--epochs", 1,
                                   "--limit-train", 64, "--init-from", first,
                                   "--run-dir", tmp_path / "tuned")
        assert status == 0, err
        assert f"note: starting from the parameters in {first / 'checkpoint.npz'}" in err
        assert "warning:" not in err, err
    assert "note: " + str(tmp_path / "tuned") + " held an earlier run" in err


def _shapes_spec(path, shape):
    path.write_text(json.dumps({
        "inputs": {"image": {"shape": shape}, "label": {"shape": [], "dtype": "int64"}},
        "nodes": [{"name": "flat", "op": "flatten", "inputs": ["image"]},
                  {"name": "fc", "op": "dense", "units": 10},
                  {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}],
        "outputs": {"logits": "fc", "loss": "loss"}}))
    return path


@pytest.mark.parametrize("shape, option, found", [
    ([1, 8, 8], "size", "expected an integer >= 16 and <= 256, found 8 (the shape is [1, 8, 8])"),
    ([2, 16, 16], "channels", "expected one of 1, 3, found 2 (the shape is [2, 16, 16])"),
])
def test_a_dataset_option_that_follows_the_input_is_said_of_the_input(run_cli, tmp_path, shape,
                                                                      option, found):
    """shapes renders at the input's size and channels; one it cannot render was reported as
    "field 'train.dataset.name'" (a spec without [train]) or "field 'channels'", no file."""
    spec = _shapes_spec(tmp_path / "small.json", shape)
    status, out, err = run_cli("train", spec, "--run-dir", tmp_path / "run")
    assert status == 2 and "Traceback" not in err
    assert (f"{spec}: field 'inputs.image.shape': dataset 'shapes' cannot make images of this "
            f"input's shape: its '{option}': {found}") in err
    status, out, err = run_cli("train", _shapes_spec(tmp_path / "ok.json", [1, 16, 16]),
                               "--dataset-option", "channels=2", "--run-dir", tmp_path / "run")
    assert status == 2
    assert ("field '--dataset-option channels': bad value for an option of dataset 'shapes': "
            "expected one of 1, 3, found 2") in err
