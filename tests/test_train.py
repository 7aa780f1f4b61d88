"""The training loop as a library: learning, checkpoints, resuming, failures, interruption."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import graphnet
from graphnet.checkpoint import load_checkpoint
from graphnet.errors import CheckpointError, DataError, NumericError, SpecError, UsageError
from graphnet.inference import probabilities_of
from graphnet.registry import build_registry, load_plugin_file
from graphnet.train import (EpochDone, Finished, Interrupted, RunStarted, TrainConfig,
                            evaluate_checkpoint, train, watch_problems)
from graphnet.train_config import carve

TOY = Path(__file__).resolve().parent / "toy_plugin.py"
toy = load_plugin_file(TOY)


@pytest.fixture(scope="module")
def registry():
    return build_registry([TOY], entry_points=False, environment=False)


@pytest.fixture
def graph_of(tmp_path, registry):
    """Write a toy spec (JSON) into tmp_path and load it: errors then name a real file."""
    def load(name="toy", **options):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(toy.toy_spec(name, **options)))
        return graphnet.load(path, registry=registry)
    return load


def test_training_learns_and_records_everything(graph_of, tmp_path):
    events = []
    graph = graph_of(dataset={"name": "toy", "noise": 0.6}, epochs=3)
    result = train(graph, run_dir=tmp_path / "run", on_event=events.append, val_fraction=0.1)
    accuracy = result.final["test_accuracy"]
    assert accuracy > 0.6, f"chance is 0.25; got {accuracy}"
    assert [type(e) for e in events if not type(e).__name__.startswith(("Step", "EpochS"))] == [
        RunStarted, EpochDone, EpochDone, EpochDone, Finished]
    started = events[0]
    assert (started.train_samples, started.val_samples, started.test_samples) == (461, 51, 256)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for key in ("train_loss", "seconds", "val_loss", "val_accuracy", "lr"):
        assert all(isinstance(r[key], float) for r in history), key
    # the test split is evaluated once, at the end: its figures are in the final record only
    assert [("test_loss" in r, "test_accuracy" in r) for r in history] == [
        (False, False), (False, False), (True, True)]
    assert history == result.history
    assert result.confusion.shape == (4, 4) and result.confusion.sum() == 256
    assert np.trace(result.confusion) / 256 == pytest.approx(accuracy)
    probabilities = result.predict(np.zeros((2, 1, 6, 6), np.float32))
    assert probabilities.shape == (2, 4) and np.allclose(probabilities.sum(axis=1), 1)
    checkpoint = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert checkpoint.meta["epoch"] == 3 and not checkpoint.meta["partial"]
    assert checkpoint.meta["class_names"] == ["class0", "class1", "class2", "class3"]


def params_after(graph, run_dir, **settings):
    result = train(graph, run_dir=run_dir, **settings)
    return {k: v.copy() for k, v in result.network.flat_params().items()}, result


@pytest.mark.parametrize("optimizer", [{"name": "sgd", "lr": 0.05, "momentum": 0.9},
                                       {"name": "adam", "lr": 0.01}])
def test_two_epochs_equal_one_plus_resume_bit_for_bit(graph_of, tmp_path, optimizer):
    # Dropout draws from the network's generator and a validation split is carved, so the
    # generators' states, the optimizer's state and the split all have to be restored.
    graph = graph_of(dropout=True, optimizer=optimizer, val_fraction=0.1,
                     schedule={"name": "step", "step_size": 1, "gamma": 0.5})
    straight, _ = params_after(graph, tmp_path / "straight", epochs=2)
    params_after(graph, tmp_path / "resumed", epochs=1)
    resumed, result = params_after(graph, tmp_path / "resumed", epochs=2, resume=True)
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_stopping_part_way_then_resuming_is_bit_identical(graph_of, tmp_path):
    graph = graph_of(dropout=True)
    straight, _ = params_after(graph, tmp_path / "straight", epochs=2)
    stops = []

    def interrupt(event):  # Ctrl-C in the middle of epoch 2
        if type(event).__name__ == "StepDone" and event.epoch == 2 and event.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        if isinstance(event, Interrupted):
            stops.append(event)

    # the caller's handler, whatever it is (a shell starts background jobs with SIGINT ignored)
    callers_handler = signal.getsignal(signal.SIGINT)
    result = train(graph, run_dir=tmp_path / "run", epochs=2, on_event=interrupt)
    assert result.interrupted and (stops[0].epoch, stops[0].step) == (2, 5)
    meta = load_checkpoint(tmp_path / "run" / "checkpoint.npz").meta
    assert meta["partial"] and (meta["epoch"], meta["step"]) == (1, 5)
    assert signal.getsignal(signal.SIGINT) is callers_handler
    resumed, result = params_after(graph, tmp_path / "run", epochs=2, resume=True)
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    assert len(result.history) == 2


def test_resuming_catches_the_history_up_with_the_checkpoint(graph_of, tmp_path):
    # as if killed between writing epoch 2's checkpoint and its history record
    graph = graph_of()
    train(graph, run_dir=tmp_path, epochs=2)
    history = tmp_path / "history.json"
    records = json.loads(history.read_text())
    history.write_text(json.dumps(records[:1]))
    train(graph, run_dir=tmp_path, epochs=2, resume=True)
    assert json.loads(history.read_text()) == records


def test_non_finite_loss_names_epoch_step_and_node_and_keeps_checkpoint(graph_of, tmp_path):
    graph = graph_of()
    good, _ = params_after(graph, tmp_path, epochs=1)
    with pytest.raises(NumericError) as caught:
        train(graph, run_dir=tmp_path, epochs=2, resume=True, lr=1e30)
    error = caught.value
    assert error.node == "fc2"  # fc1's outputs are huge but finite; fc2 overflows
    assert "epoch 2, step 2" in str(error) and "checkpoint is kept" in str(error)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.npz")
    assert checkpoint.meta["epoch"] == 1
    for key, array in good.items():
        np.testing.assert_array_equal(checkpoint.params[key], array)


def test_checkpoint_of_another_spec_is_refused_naming_the_parameter(graph_of, tmp_path):
    train(graph_of(), run_dir=tmp_path, epochs=1)
    wider = graph_of("wider", units=8)
    with pytest.raises(CheckpointError) as caught:
        train(wider, run_dir=tmp_path, epochs=2, resume=True)
    assert caught.value.field == "fc1/weight" and "different spec" in str(caught.value)
    with pytest.raises(CheckpointError, match="fc1/weight"):
        evaluate_checkpoint(wider, tmp_path / "checkpoint.npz")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_refused(graph_of, tmp_path, damage):
    graph = graph_of()
    train(graph, run_dir=tmp_path, epochs=1)
    path = tmp_path / "checkpoint.npz"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:len(data) // 2], "garbage": b"\x00junk" * 99,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="corrupt|truncated"):
        train(graph, run_dir=tmp_path, epochs=2, resume=True)


def test_resume_without_a_checkpoint_says_so(graph_of, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(graph_of(), run_dir=tmp_path, resume=True)


def test_resuming_a_finished_run_says_to_raise_the_epochs(graph_of, tmp_path):
    graph = graph_of()
    train(graph, run_dir=tmp_path, epochs=1, limit_train=64)
    notices = []
    train(graph, run_dir=tmp_path, epochs=1, limit_train=64, resume=True,
          on_event=lambda event: notices.append(getattr(event, "text", "")))
    assert "the checkpoint's run has done 1 epoch, as many as --epochs 1 asks for; raise " \
           "--epochs to train further" in notices


def test_dataset_of_another_shape_names_both_shapes(graph_of, tmp_path):
    with pytest.raises(DataError) as caught:
        train(graph_of(dataset={"name": "toy", "size": 5}), run_dir=tmp_path)
    assert "1×6×6" in str(caught.value) and "1×5×5" in str(caught.value)
    assert caught.value.file.endswith("toy.json")


def test_size_and_channels_come_from_the_spec_when_not_given(graph_of, tmp_path):
    result = train(graph_of(size=5, channels=3), run_dir=tmp_path, epochs=1, limit_train=64)
    meta = load_checkpoint(tmp_path / "checkpoint.npz").meta
    assert meta["dataset"]["options"]["size"] == 5 and meta["dataset"]["options"]["channels"] == 3
    assert result.history[0]["epoch"] == 1


def test_limit_train_uses_only_that_many_samples(graph_of, tmp_path):
    events = []
    train(graph_of(), run_dir=tmp_path, epochs=1, limit_train=40, on_event=events.append)
    assert events[0].train_samples == 40 and events[0].steps_per_epoch == 2


@pytest.mark.parametrize("train_section, field, words", [
    ({"epoch": 3}, "train.epoch", "did you mean 'epochs'"),
    ({"batch_size": "big"}, "train.batch_size", "expected an integer >= 1"),
    ({"optimizer": {"name": "sgd", "momentun": 0.9}}, "train.optimizer.momentun",
     "did you mean 'momentum'"),
    ({"optimizer": {"name": "sdg"}}, "train.optimizer.name", "did you mean 'sgd'"),
    ({"schedule": "cosin"}, "train.schedule", "did you mean 'cosine'"),
    ({"val_fraction": 2.0}, "train.val_fraction", "<= 0.9"),
    ({"dataset": {"name": "toy", "nosie": 1}}, "train.dataset.nosie", "did you mean 'noise'"),
])
def test_train_section_errors_name_file_and_field(tmp_path, registry, train_section, field,
                                                  words):
    spec = toy.toy_spec()
    spec["train"] = train_section
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    graph = graphnet.load(path, registry=registry)
    with pytest.raises(SpecError) as caught:
        train(graph, run_dir=tmp_path)
    assert caught.value.field == field and caught.value.file == str(path)
    assert words in str(caught.value)


def test_override_errors_name_the_override(graph_of):
    graph = graph_of()
    with pytest.raises(UsageError) as caught:
        TrainConfig.from_graph(graph, {"epochs": 0}, {"epochs": "--epochs"})
    assert caught.value.field == "--epochs"
    with pytest.raises(UsageError, match="did you mean 'batch_size'"):
        TrainConfig.from_graph(graph, {"batchsize": 3})
    with pytest.raises(UsageError, match="'--momentum'.*unknown option of optimizer 'adam'"):
        TrainConfig.from_graph(graph, {"optimizer": "adam", "momentum": 0.9},
                               {"momentum": "--momentum"})


def test_switching_optimizer_drops_the_spec_options_meant_for_the_other(graph_of):
    config = TrainConfig.from_graph(graph_of(), {"optimizer": "adam"})
    assert config.optimizer == "adam" and config.lr == 0.05
    assert "momentum" not in config.optimizer_options


def test_defaults_train_on_shapes(registry, tmp_path):
    spec = toy.toy_spec()
    del spec["train"]
    graph = graphnet.load(spec, registry=registry)
    config = TrainConfig.from_graph(graph)
    assert (config.dataset, config.optimizer, config.schedule) == ("shapes", "adam", "constant")
    # measured on specs/shapes_cnn.toml without [train]: 91 % test accuracy (sgd at 0.01 for
    # 5 epochs, the earlier defaults: 72 %)
    assert (config.lr, config.epochs, config.val_fraction) == (0.001, 10, 0.1)


def test_watch_shows_a_layer_that_stopped_learning(graph_of, tmp_path):
    # fc1 starts at zero weights and bias −1: relu1 is dead, so fc1 gets no gradient.
    dead = {"weight": [[0.0] * 36] * 16, "bias": [-1.0] * 16}
    events = []
    train(graph_of(fc1_weights=dead), run_dir=tmp_path, epochs=1, watch=True,
          on_event=events.append)
    rows = {row.node: row for row in next(e for e in events if isinstance(e, EpochDone)).watch}
    assert set(rows) == {"fc1", "relu1", "fc2"}
    assert rows["relu1"].zero_share == 1.0 and "dead" in rows["relu1"].problems
    assert rows["fc1"].grad_norm == 0.0 and "no gradient" in rows["fc1"].problems
    assert rows["fc1"].update_ratio == 0.0
    assert rows["fc2"].grad_norm > 0 and rows["fc2"].update_ratio > 0
    assert watch_problems(1.0, 0.1, 0.2) == []


def test_watch_does_not_change_what_is_trained(graph_of, tmp_path):
    graph = graph_of(dropout=True)
    plain, _ = params_after(graph, tmp_path / "plain", epochs=2)
    watched, _ = params_after(graph, tmp_path / "watched", epochs=2, watch=True)
    for key in plain:
        np.testing.assert_array_equal(watched[key], plain[key])


def test_probabilities_are_not_softmaxed_twice():
    distribution = np.array([[0.7, 0.2, 0.1]], np.float32)
    assert probabilities_of(distribution) is distribution
    scores = np.array([[2.0, 1.0, 0.0]], np.float32)
    assert probabilities_of(scores)[0, 0] == pytest.approx(np.exp(2) / np.exp([2, 1, 0]).sum())


# --- real processes: Ctrl-C and kill -9 ---------------------------------------------------------
def start_training(tmp_path, *extra):
    spec = tmp_path / "toy.json"
    spec.write_text(json.dumps(toy.toy_spec(dataset={"name": "toy", "train": 4000}, units=64)))
    command = [sys.executable, "-m", "graphnet.cli", "train", str(spec), "--plugin", str(TOY),
               "--epochs", "100000", "--run-dir", str(tmp_path / "run"), *extra]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "run" / "checkpoint.npz"
    deadline = time.monotonic() + 60
    while not checkpoint.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.05)
    time.sleep(0.3)  # a few epochs on: somewhere in the middle of one
    return process, spec, checkpoint


def test_sigint_writes_a_checkpoint_and_prints_how_to_resume(tmp_path, run_cli):
    process, spec, checkpoint = start_training(tmp_path)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "interrupted:" in err and "resume with: graphnet train" in err and "--resume" in err
    meta = load_checkpoint(checkpoint).meta
    epochs = meta["epoch"] + 1
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--run-dir", tmp_path / "run",
                               "--epochs", epochs, "--resume")
    assert status == 0, err
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == epochs


def test_sigkill_leaves_a_checkpoint_that_resumes(tmp_path, run_cli):
    process, spec, checkpoint = start_training(tmp_path)
    process.kill()
    process.communicate(timeout=30)
    meta = load_checkpoint(checkpoint).meta  # intact: writes are atomic
    epochs = meta["epoch"] + 1
    status, out, err = run_cli("train", spec, "--plugin", TOY, "--run-dir", tmp_path / "run",
                               "--epochs", epochs, "--resume")
    assert status == 0, err
    assert f"epoch {epochs}/{epochs}" in out


def test_notebook_api_takes_a_dataset_object(registry, tmp_path):
    from graphnet.data import Dataset, Split
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    images = (labels[:, None, None, None] / 4 + 0.05 * rng.standard_normal((200, 1, 6, 6)))
    data = Dataset("mine", Split(images[:150].astype(np.float32), labels[:150]),
                   Split(images[150:].astype(np.float32), labels[150:]), list("abcd"))
    graph = graphnet.load(toy.toy_spec(dataset="not-registered"), registry=registry)
    result = graphnet.train.train(graph, dataset=data, epochs=2, run_dir=tmp_path)
    assert result.final["test_accuracy"] > 0.6
    assert result.class_names == ["a", "b", "c", "d"]
    trained = graphnet.load_trained(graph, tmp_path / "checkpoint.npz")
    np.testing.assert_allclose(trained.predict(images[150:]), result.predict(images[150:]))


def test_standardisation_uses_the_training_split_only(registry, tmp_path):
    from graphnet.data import Dataset, Split
    rng = np.random.default_rng(1)
    train_images = rng.normal(0.2, 0.1, (120, 1, 6, 6)).astype(np.float32)
    test_images = rng.normal(0.9, 0.3, (40, 1, 6, 6)).astype(np.float32)
    data = Dataset("skewed", Split(train_images, rng.integers(0, 4, 120)),
                   Split(test_images, rng.integers(0, 4, 40)), list("abcd"))
    graph = graphnet.load(toy.toy_spec(), registry=registry)
    result = train(graph, data, run_dir=tmp_path, epochs=1, val_fraction=0.25)
    meta = load_checkpoint(tmp_path / "checkpoint.npz").meta["standardise"]
    kept = carve(data.train, result.config)[0].images  # what was trained on: val held out
    assert len(kept) == 90
    assert meta["mean"] == pytest.approx([kept.mean(dtype=np.float64)], rel=1e-9)
    assert meta["std"] == pytest.approx([kept.std(dtype=np.float64)], rel=1e-6)
    assert result.standardise.mean[0] == pytest.approx(0.2, abs=0.01)


@pytest.mark.parametrize("schedule, warned", [({"name": "cosine"}, True),
                                              ({"name": "step", "step_size": 1}, False)])
def test_resuming_for_more_epochs_says_when_the_schedule_depended_on_the_length(
        graph_of, tmp_path, schedule, warned):
    # A cosine spreads over the epochs asked for: one epoch of a 1-epoch run used other rates
    # than the first epoch of a 2-epoch run, so the resumed run cannot equal 2 epochs straight.
    graph = graph_of(schedule=schedule)
    train(graph, run_dir=tmp_path, epochs=1)
    events = []
    train(graph, run_dir=tmp_path, epochs=2, resume=True, on_event=events.append)
    notices = [e.text for e in events if type(e).__name__ == "Notice"]
    assert any("differ from a straight" in text and "cosine" in text for text in notices) == warned, notices


def _three_class_dense_graph():
    """One dense layer scoring 3 classes of 1×4×4 images, with its loss."""
    return graphnet.load({"inputs": {"image": {"shape": [1, 4, 4]},
                                     "label": {"shape": [], "dtype": "int64"}},
                          "nodes": [{"name": "fc", "op": "dense", "units": 3, "inputs": ["image"]},
                                    {"name": "loss", "op": "softmax_cross_entropy",
                                     "inputs": ["fc", "label"]}],
                          "outputs": {"logits": "fc", "loss": "loss"}})


def test_negative_labels_are_named_as_such(tmp_path):
    from graphnet.data import Dataset, Split
    graph = _three_class_dense_graph()
    images = np.zeros((4, 1, 4, 4), np.float32)
    dataset = Dataset("bad", Split(images, np.array([0, 1, -1, 2])),
                      Split(images, np.array([0, 1, 2, 0])), ["a", "b", "c"])
    with pytest.raises(DataError, match="negative labels.*labels -1..2"):
        graphnet.train.train(graph, dataset=dataset, epochs=1, run_dir=tmp_path)


def test_a_new_run_keeps_the_previous_runs_checkpoint_instead_of_overwriting_it(tmp_path):
    from graphnet.data import Dataset, Split
    graph = _three_class_dense_graph()
    images = np.random.default_rng(0).standard_normal((6, 1, 4, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    dataset = Dataset("tiny", Split(images, labels), Split(images, labels), ["a", "b", "c"])
    graphnet.train.train(graph, dataset=dataset, epochs=1, run_dir=tmp_path, seed=1)
    first = (tmp_path / "checkpoint.npz").read_bytes()
    notices = []
    graphnet.train.train(graph, dataset=dataset, epochs=1, run_dir=tmp_path, seed=2,
                         on_event=lambda event: notices.append(getattr(event, "text", "")))
    assert (tmp_path / "checkpoint.previous.npz").read_bytes() == first
    assert (tmp_path / "history.previous.json").is_file()
    assert any("earlier run" in text and "checkpoint.previous.npz" in text for text in notices)


def test_a_third_run_keeps_both_earlier_runs(tmp_path):
    """The folder keeps one earlier run as *.previous.*; a third run used to replace it, so the
    first run's finished checkpoint was deleted without a word. Each run now keeps its own."""
    from graphnet.data import Dataset, Split
    graph = _three_class_dense_graph()
    images = np.random.default_rng(0).standard_normal((6, 1, 4, 4)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    dataset = Dataset("tiny", Split(images, labels), Split(images, labels), ["a", "b", "c"])
    written = []
    for seed in (1, 2, 3):
        notices = []
        graphnet.train.train(graph, dataset=dataset, epochs=1, run_dir=tmp_path, seed=seed,
                             on_event=lambda event: notices.append(getattr(event, "text", "")))
        written.append({name: (tmp_path / f"{name}.{suffix}").read_bytes()
                        for name, suffix in (("checkpoint", "npz"), ("history", "json"))})
    for name, suffix in (("checkpoint", "npz"), ("history", "json")):
        assert (tmp_path / f"{name}.previous.{suffix}").read_bytes() == written[0][name]
        assert (tmp_path / f"{name}.previous-2.{suffix}").read_bytes() == written[1][name]
        assert (tmp_path / f"{name}.{suffix}").read_bytes() == written[2][name]
    assert any("checkpoint.previous-2.npz and history.previous-2.json" in text
               for text in notices)


def test_training_on_arrays_in_memory(registry, tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 250)
    # uint8, channels last, as images usually come: read as the npz dataset reads its arrays
    images = np.clip(labels[:, None, None, None] * 60 + 20 + rng.normal(0, 8, (250, 6, 6, 1)),
                     0, 255).astype(np.uint8)
    graph = graphnet.load(toy.toy_spec(dataset="not-registered"), registry=registry)
    events = []
    result = graphnet.train.train(graph, x=images, y=labels, epochs=4, run_dir=tmp_path / "a",
                                  val_fraction=0, on_event=events.append)
    assert (events[0].dataset, events[0].train_samples, events[0].test_samples) == ("arrays", 200,
                                                                                    50)
    assert result.final["test_accuracy"] > 0.5, "chance is 0.25"
    assert result.predict(images[:3].transpose(0, 3, 1, 2) / 255).shape == (3, 4)
    again = graphnet.train.train(graph, x=images[:200], y=labels[:200], x_test=images[200:],
                                 y_test=labels[200:], epochs=1, run_dir=tmp_path / "b",
                                 val_fraction=0, on_event=events.append)
    assert events[-1].result is again and again.confusion.sum() == 50
    with pytest.raises(DataError, match=r"field 'y'.*label out of range.*0 to 3.*found 7"):
        graphnet.train.train(graph, x=images[:2], y=[1, 7], run_dir=tmp_path / "c")
    with pytest.raises(DataError, match=r"field 'y'.*label count.*250 labels.*found 3"):
        graphnet.train.train(graph, x=images, y=labels[:3], run_dir=tmp_path / "c")
    with pytest.raises(UsageError, match="x_test and y_test go together"):
        graphnet.train.train(graph, x=images, y=labels, x_test=images, run_dir=tmp_path / "c")
    with pytest.raises(UsageError, match="either a dataset or arrays"):
        graphnet.train.train(graph, "shapes", x=images, y=labels, run_dir=tmp_path / "c")


def test_augmented_training_stopped_part_way_resumes_bit_identically(graph_of, tmp_path):
    # Each step's transforms draw from (seed, epoch, step): nothing to save, nothing to drift.
    graph = graph_of(dropout=True, augment=["crop:1", "flip", {"name": "shift", "pixels": 1}])
    straight, _ = params_after(graph, tmp_path / "straight", epochs=2)
    plain, _ = params_after(graph, tmp_path / "plain", epochs=2, augment=[])
    assert any(not np.array_equal(straight[k], plain[k]) for k in straight), "not augmented"

    def interrupt(event):  # Ctrl-C in the middle of epoch 2
        if type(event).__name__ == "StepDone" and event.epoch == 2 and event.step == 5:
            os.kill(os.getpid(), signal.SIGINT)

    assert train(graph, run_dir=tmp_path / "run", epochs=2, on_event=interrupt).interrupted
    resumed, _ = params_after(graph, tmp_path / "run", epochs=2, resume=True)
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


# --- validation, best.npz and early stopping (issue 15, item 12) -------------------------------
def test_the_validation_split_is_carved_by_default_and_best_npz_holds_the_best_epoch(
        graph_of, tmp_path):
    graph = graph_of(dataset={"name": "toy", "noise": 0.6}, epochs=4)
    result = train(graph, run_dir=tmp_path)
    assert all("val_loss" in r and "val_accuracy" in r for r in result.history)
    best_epoch = min((r["val_loss"], r["epoch"]) for r in result.history)[1]
    assert result.best == tmp_path / "best.npz"
    best = load_checkpoint(result.best)
    assert best.meta["epoch"] == best_epoch and not best.meta["partial"]
    evaluation, _ = evaluate_checkpoint(graph, result.best)
    assert evaluation.samples == 256


def test_early_stop_stops_when_the_validation_loss_stops_falling_and_resume_keeps_it(
        graph_of, tmp_path):
    # lr 0: nothing changes, so the validation loss never falls below epoch 1's
    graph = graph_of(optimizer={"name": "sgd", "lr": 0.0}, epochs=10)
    events = []
    result = train(graph, run_dir=tmp_path, early_stop=2, on_event=events.append)
    assert [r["epoch"] for r in result.history] == [1, 2, 3] and result.stopped_early
    notices = [e.text for e in events if type(e).__name__ == "Notice"]
    assert any("stopping early after epoch 3" in text and "at epoch 1" in text
               for text in notices), notices
    assert "test_accuracy" in result.final and isinstance(events[-1], Finished)
    assert load_checkpoint(tmp_path / "best.npz").meta["epoch"] == 1
    # resuming reads the patience from the history in the checkpoint: it stops again at once
    again = train(graph, run_dir=tmp_path, early_stop=2, resume=True)
    assert [r["epoch"] for r in again.history] == [1, 2, 3] and again.stopped_early


def test_early_stop_without_a_validation_split_is_refused(graph_of, tmp_path):
    with pytest.raises(SpecError, match="validation") as caught:
        train(graph_of(val_fraction=0, early_stop=2), run_dir=tmp_path)
    assert caught.value.field == "train.early_stop"


# --- schedules wired into the loop (item 13) ----------------------------------------------------
def test_warm_up_and_plateau_steer_the_rates_and_survive_resume_bit_for_bit(graph_of, tmp_path):
    # threshold 1 asks for a 100 % improvement, so every epoch is a plateau: the rate halves
    # after each; the warm-up spans 2 epochs, so epoch 1 ends at half the (full) rate
    schedule = {"name": "plateau", "patience": 0, "factor": 0.5, "threshold": 1.0,
                "warmup_epochs": 2}
    graph = graph_of(dropout=True, schedule=schedule)
    straight, result = params_after(graph, tmp_path / "straight", epochs=3)
    assert [r["lr"] for r in result.history] == [0.025, 0.025, 0.0125]
    params_after(graph, tmp_path / "resumed", epochs=1)
    resumed, again = params_after(graph, tmp_path / "resumed", epochs=3, resume=True)
    assert [r["lr"] for r in again.history] == [0.025, 0.025, 0.0125]
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)


def test_augment_errors_name_the_spec_field_or_the_flag(graph_of, run_cli, tmp_path):
    with pytest.raises(SpecError, match=r"toy.json.*train.augment\[1\].padding.*bad value"):
        TrainConfig.from_graph(graph_of(augment=["flip", "crop:-2"]))
    spec = tmp_path / "toy.json"
    status, out, err = run_cli("train", spec, "--augment", "flip,rotate", "--plugin", TOY)
    assert status == 2 and "--augment" in err and "unknown transform 'rotate'" in err, err
    assert "crop, flip, shift" in err


def test_the_optimizers_default_rate_is_used_when_none_is_given(registry):
    spec = toy.toy_spec(optimizer="adam")
    assert TrainConfig.from_graph(graphnet.load(spec, registry=registry)).lr == 0.001
    spec = toy.toy_spec(optimizer="sgd")
    assert TrainConfig.from_graph(graphnet.load(spec, registry=registry)).lr == 0.01
    spec = toy.toy_spec(optimizer={"name": "adam", "lr": 0.02})
    assert TrainConfig.from_graph(graphnet.load(spec, registry=registry)).lr == 0.02


# --- a finite loss that explodes (item 9) -------------------------------------------------------
def test_an_exploding_loss_is_warned_about_then_stops_naming_epoch_and_step(graph_of, tmp_path):
    graph = graph_of()
    events = []
    with pytest.raises(NumericError) as caught:
        train(graph, run_dir=tmp_path, lr=50.0, on_event=events.append)
    text = str(caught.value)
    assert "the loss exploded to" in text and "at epoch 1, step " in text
    assert "times the first step's loss" in text and "max_loss_growth" in text
    assert any("the loss is growing" in e.text for e in events if type(e).__name__ == "Notice")


def test_max_loss_growth_0_never_stops_but_still_warns(graph_of, tmp_path):
    events = []
    result = train(graph_of(), run_dir=tmp_path, lr=5.0, max_loss_growth=0,
                   on_event=events.append)
    assert len(result.history) == 2
    warnings = [e.text for e in events if type(e).__name__ == "Notice"
                if "the loss is growing" in e.text]
    assert len(warnings) == 1, warnings


def test_the_runs_memory_limit_holds_for_the_images_it_generates(tmp_path, monkeypatch):
    """train(memory_limit=…) and --memory-limit held for the graph only: the dataset was
    read or generated against GRAPHNET_MEMORY_LIMIT or the default (75 % of the machine),
    so a limit of 64 MiB let the shapes generator draw 440 MB of images."""
    from graphnet import limits

    monkeypatch.delenv(limits.LIMIT_ENV, raising=False)
    graph = graphnet.load({"inputs": {"image": {"shape": [3, 64, 64]},
                                      "label": {"shape": [], "dtype": "int64"}},
                           "nodes": [{"name": "pool", "op": "global_avg_pool", "inputs": ["image"]},
                                     {"name": "fc", "op": "dense", "units": 10},
                                     {"name": "loss", "op": "softmax_cross_entropy",
                                      "inputs": ["fc", "label"]}],
                           "outputs": {"logits": "fc", "loss": "loss"}})
    with pytest.raises(graphnet.GraphnetError) as caught:
        graphnet.train.train(graph, epochs=1, run_dir=tmp_path, memory_limit="64MiB",
                             dataset_options={"train_size": 3000})
    assert "3,000 training and 2,000 test images of 3×64×64" in str(caught.value)
    assert "more than the memory limit of 64.0 MiB" in str(caught.value)
    assert limits.memory_limit() == int(limits.physical_memory() * limits.DEFAULT_FRACTION)
