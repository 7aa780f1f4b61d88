"""``graphnet eval``: a checkpoint's test loss, accuracy and confusion matrix."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphnet.cli import main
from graphnet.registry import load_plugin_file

TOY = Path(__file__).resolve().parents[1] / "toy_plugin.py"
toy = load_plugin_file(TOY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    spec = folder / "toy.json"
    spec.write_text(json.dumps(toy.toy_spec()))
    assert main(["train", str(spec), "--plugin", str(TOY), "--run-dir", str(folder / "run"),
                 "--epochs", "2"]) == 0
    history = json.loads((folder / "run" / "history.json").read_text())
    return spec, folder / "run" / "checkpoint.npz", history


def test_eval_reports_what_training_measured(run_cli, trained):
    spec, checkpoint, history = trained
    status, out, err = run_cli("eval", spec, "--plugin", TOY, "--checkpoint", checkpoint)
    assert status == 0, err
    assert f"accuracy {100 * history[-1]['test_accuracy']:.1f}%" in out
    assert f"loss {history[-1]['test_loss']:.4f}" in out
    assert "confusion matrix" in out and "0 class0" in out and "(after epoch 2)" in out


def test_eval_finds_the_run_directory(run_cli, trained):
    spec, checkpoint, _ = trained
    status, out, err = run_cli("eval", spec, "--plugin", TOY, "--run-dir", checkpoint.parent)
    assert status == 0, err


def test_eval_of_another_spec_names_the_parameter(run_cli, trained, tmp_path):
    _, checkpoint, _ = trained
    other = tmp_path / "other.json"
    other.write_text(json.dumps(toy.toy_spec(units=8)))
    status, out, err = run_cli("eval", other, "--plugin", TOY, "--checkpoint", checkpoint)
    assert status == 2 and "different spec" in err and "fc1/weight" in err


def test_eval_of_a_corrupt_checkpoint(run_cli, trained, tmp_path):
    spec, checkpoint, _ = trained
    broken = tmp_path / "broken.npz"
    broken.write_bytes(checkpoint.read_bytes()[:300])
    status, out, err = run_cli("eval", spec, "--plugin", TOY, "--checkpoint", broken)
    assert status == 2 and "truncated or corrupt" in err and "Traceback" not in err


def test_eval_without_a_checkpoint(run_cli, trained, tmp_path):
    spec, _, _ = trained
    status, out, err = run_cli("eval", spec, "--plugin", TOY, "--checkpoint", tmp_path / "no.npz")
    assert status == 2 and "checkpoint not found" in err


def test_eval_takes_a_run_directory_as_the_checkpoint(run_cli, trained):
    spec, checkpoint, history = trained
    status, out, err = run_cli("eval", spec, "--plugin", TOY, "--checkpoint", checkpoint.parent)
    assert status == 0, err
    assert f"accuracy {100 * history[-1]['test_accuracy']:.1f}%" in out
