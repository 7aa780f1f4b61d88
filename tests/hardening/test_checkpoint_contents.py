"""Crafted checkpoints: one validator checks everything a checkpoint holds as it is loaded, so
``train --resume``, ``eval``, ``predict`` and ``show`` refuse the same file with the same
message (exit 2, naming the checkpoint and the field) — never a traceback, a loop that never
ends, or an answer computed from NaN weights or a zero standard deviation."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from graphnet.checkpoint import load_checkpoint
from graphnet.cli import main

SPEC = {"graph": {"name": "tiny"},
        "inputs": {"image": {"shape": [1, 16, 16]}, "label": {"shape": [], "dtype": "int64"}},
        "nodes": [{"name": "flat", "op": "flatten", "inputs": ["image"]},
                  {"name": "fc", "op": "dense", "units": 10},
                  {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}],
        "outputs": {"logits": "fc", "loss": "loss"},
        "train": {"epochs": 1, "batch_size": 8, "optimizer": {"name": "sgd", "momentum": 0.9},
                  "dataset": {"name": "shapes", "train_size": 32, "test_size": 16}}}


@pytest.fixture
def _trained(train_once):
    spec, checkpoint = train_once(SPEC, "tiny")
    return spec, checkpoint.read_bytes()


@pytest.fixture
def fresh(_trained, tmp_path):
    """(spec, run folder, checkpoint path): a copy of the trained run for one test to spoil."""
    spec, data = _trained
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.npz").write_bytes(data)
    np.save(tmp_path / "image.npy", np.zeros((1, 16, 16), np.float32))
    return spec, run, run / "checkpoint.npz"


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path, members) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _set_array(path, name, array) -> None:
    members = _members(path)
    members[f"{name}.npy"] = _npy(array)
    _write(path, members)


def _set_meta(path, text_edit) -> None:
    members = _members(path)
    meta = np.load(io.BytesIO(members["meta.npy"]), allow_pickle=False).tobytes().decode()
    members["meta.npy"] = _npy(np.frombuffer(text_edit(meta).encode(), np.uint8))
    _write(path, members)


def _meta_change(**changes):
    """An edit of the metadata's JSON that sets top-level keys (values as JSON text)."""
    def edit(text):
        meta = json.loads(text)
        for key, value in changes.items():
            target, _, inner = key.partition("__")
            if inner:
                meta[target][inner] = "@@" + inner
            else:
                meta[key] = "@@" + key
        text = json.dumps(meta)
        for key, value in changes.items():
            text = text.replace(json.dumps("@@" + key.partition("__")[2] if "__" in key
                                           else "@@" + key), value)
        return text
    return edit


def _commands(spec, run, path, tmp_path):
    return [["train", spec, "--run-dir", run, "--resume", "--epochs", "2"],
            ["eval", spec, "--checkpoint", path],
            ["predict", spec, tmp_path / "image.npy", "--checkpoint", path]]


def _all_refuse(commands, capsys, *phrases):
    for command in commands:
        capsys.readouterr()
        status = main([str(word) for word in command])
        err = capsys.readouterr().err
        assert status == 2 and "Traceback" not in err, (command, err)
        assert all(phrase in err for phrase in phrases), (command, err)


METADATA = [  # (field, JSON text put there)
    ("epoch", '"5"'), ("epoch", "1e30"), ("epoch", str(10**30)), ("epoch", "-1"),
    ("step", "NaN"), ("global_step", "Infinity"), ("format_version", '"one"'),
    ("global_step", str(10**30)), ("global_step", "-1"), ("global_step", "true"),
    ("global_step", '"12"'), ("step", str(2**53 + 1)),
    ("history", '[1, "a"]'), ("history", '[{"epoch": 1, "train_loss": "low"}]'),
    ("rng__network", '{"bit_generator": "PCG64", "state": "x"}'),
    ("rng__shuffle", '{"bit_generator": "Evil", "state": {}}'),
    ("standardise__std", "[0.0]"), ("standardise__mean", "[NaN]"),
    ("standardise__std", '["1"]'), ("running__seen", "1e400"),
    ("dataset__options", '{"size": [1, 2]}'), ("bindings__image", "5"),
    ("class_names", '[1, 2]'), ("partial", '"yes"'),
    # compared with each step's loss on resume: a TypeError's traceback, exit 1
    ("reference_loss", '"low"'), ("reference_loss", "[1]"), ("reference_loss", "-1"),
    # text that predict and eval print as it is: an escape sequence the terminal would obey
    ("class_names", '["a\\u001b[2J", "b"]'), ("bindings__image", '"image\\u001b]0;x\\u0007"'),
    ("standardise", '{"mean": [0, 0, 0, 0, 0], "std": [1, 1, 1, 1, 1]}'),
    ("standardise", '{"mean": [0, 0], "std": [1]}'),
]


@pytest.mark.parametrize("field, value", METADATA, ids=[f"{f}={v}" for f, v in METADATA])
def test_crafted_metadata_is_refused_by_every_command(fresh, tmp_path, capsys, field, value):
    spec, run, path = fresh
    _set_meta(path, _meta_change(**{field: value}))
    _all_refuse(_commands(spec, run, path, tmp_path), capsys, str(path),
                f"field '{field.replace('__', '.')}")


@pytest.mark.parametrize("name, array, phrase", [
    ("param/fc/weight", np.full((10, 256), np.nan, np.float32), "NaN"),
    ("param/fc/bias", np.array([np.inf] * 10, np.float32), "infinity"),
    ("param/fc/bias", np.array(["x"] * 10), "numbers"),
    ("optim/optimizer/velocity/fc/weight", np.full((10, 256), np.inf, np.float32), "infinity"),
    ("optim/optimizer/steps", np.array("many"), "numbers"),
])
def test_crafted_arrays_are_refused_by_every_command(fresh, tmp_path, capsys, name, array, phrase):
    spec, run, path = fresh
    _set_array(path, name, array)
    _all_refuse(_commands(spec, run, path, tmp_path), capsys, str(path), name, phrase)


def test_an_absurd_epoch_or_step_does_not_loop_forever(fresh, tmp_path, bounded_cli):
    spec, run, path = fresh
    original = path.read_bytes()
    for field in ("epoch", "step"):
        path.write_bytes(original)
        _set_meta(path, _meta_change(**{field: str(10**30)}))
        result = bounded_cli("train", spec, "--run-dir", run, "--resume", "--epochs", "3",
                             timeout=60)
        assert result.refused(str(path), f"field '{field}'"), result


def test_a_long_runs_checkpoint_is_resumed_and_read(fresh, tmp_path, capsys):
    # 170 epochs of MNIST at batch size 1 are 10.2 million steps: that run's checkpoint was
    # refused as corrupt, and the run lost, while one bound of 10**7 covered every counter.
    spec, run, path = fresh
    steps_done = 170 * 60_000
    _set_meta(path, _meta_change(epoch="170", global_step=str(steps_done)))
    for command in (["eval", spec, "--checkpoint", path],
                    ["predict", spec, tmp_path / "image.npy", "--checkpoint", path],
                    ["train", spec, "--run-dir", run, "--resume", "--epochs", "171"]):
        status = main([str(word) for word in command])
        assert status == 0, (command, capsys.readouterr().err)
    meta = load_checkpoint(path).meta  # what the resumed run wrote is read back, too
    assert (meta["epoch"], meta["global_step"]) == (171, steps_done + 4)


def test_a_step_past_the_epoch_is_refused_on_resume(fresh, capsys):
    spec, run, path = fresh
    _set_meta(path, _meta_change(step="9999", partial="true"))
    _all_refuse([["train", spec, "--run-dir", run, "--resume", "--epochs", "2"]], capsys,
                str(path), "step")


@pytest.mark.parametrize("members, schedule, phrases", [
    ({"optim/optimizer/velocity/ghost/weight": np.zeros((3, 3), np.float32)}, None,
     ["field 'optimizer/velocity/ghost/weight'", "optimizer state names a parameter this graph "
      "lacks"]),
    # a list where the plateau schedule keeps a number: a TypeError's traceback, exit 1
    ({"optim/schedule/scale": np.array([0.5, 0.5]), "optim/schedule/best": np.array(1.0),
      "optim/schedule/bad_epochs": np.array(0)}, "plateau",
     ["field 'schedule'", "checkpoint's schedule state cannot be restored"]),
], ids=["optimizer", "schedule"])
def test_optimizer_and_schedule_state_that_does_not_fit_is_refused_naming_the_file(
        fresh, capsys, members, schedule, phrases):
    spec, run, path = fresh
    contents = _members(path)
    contents.update({f"{name}.npy": _npy(array) for name, array in members.items()})
    _write(path, contents)
    flags = ["--epochs", "2"]
    if schedule:
        _set_meta(path, _meta_change(schedule=json.dumps(schedule)))
        flags += ["--schedule", schedule]
    _all_refuse([["train", spec, "--run-dir", run, "--resume", *flags]], capsys, str(path),
                *phrases)


@pytest.mark.parametrize("change, phrases, not_said", [
    # refused as the spec's "field 'train.image_input'", a key the spec does not have
    ({"bindings__image": '"label"'}, ["field 'bindings.image': the checkpoint's run used "
                                      "another graph", "found 'label'"], "train.image_input"),
    # predict printed class indices instead, eval a confusion matrix of numbers
    ({"class_names": '["a", "b"]'}, ["field 'class_names': the checkpoint's class names do not "
                                     "fit the class scores: expected 10 names", "found 2 names"],
     None),
], ids=["bindings", "class_names"])
def test_metadata_that_does_not_fit_the_spec_is_the_checkpoints(fresh, tmp_path, capsys, change,
                                                                 phrases, not_said):
    spec, run, path = fresh
    _set_meta(path, _meta_change(**change))
    commands = _commands(spec, run, path, tmp_path)[1:]  # eval and predict read these
    _all_refuse(commands, capsys, str(path), *phrases)
    for command in commands:
        main([str(word) for word in command])
        assert not_said is None or not_said not in capsys.readouterr().err
