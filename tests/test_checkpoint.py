"""Checkpoints: writing, reading and refusing what graphnet did not write; where they are."""
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from graphnet.checkpoint import (CHECKPOINT_NAME, Checkpoint, checkpoint_in, find_checkpoint,
                                 load_checkpoint, restore_params, run_dir_of, save_checkpoint)
from graphnet.errors import CheckpointError


@pytest.mark.parametrize("key, value", [("config", []), ("bindings", "image"),
                                        ("dataset", "shapes"), ("history", 5),
                                        ("class_names", 3), ("class_names", [0, 1])])
def test_metadata_of_the_wrong_type_is_refused_by_name(tmp_path, key, value):
    # Train, eval and predict read these entries; a hand-edited one leaked a traceback there.
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, Checkpoint(params={"fc/weight": np.zeros((2, 2), np.float32)},
                                     meta={key: value}))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert caught.value.field == key and "corrupt" in caught.value.message


def test_metadata_graphnet_writes_is_read_back(tmp_path):
    path = tmp_path / "checkpoint.npz"
    meta = {"config": {"epochs": 2}, "class_names": ["a", "b"], "history": [{"epoch": 1}]}
    save_checkpoint(path, Checkpoint(params={"fc/weight": np.ones((2, 2), np.float32)}, meta=meta))
    loaded = load_checkpoint(path)
    assert {k: loaded.meta[k] for k in meta} == meta
    np.testing.assert_array_equal(loaded.params["fc/weight"], np.ones((2, 2), np.float32))


def test_a_file_that_is_not_an_npz_is_named_as_such_not_as_pickled(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("these are my notes, not a checkpoint\n")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert "not an .npz archive" in str(caught.value)
    assert "object" not in str(caught.value) and "pickle" not in str(caught.value)


def write(path, **meta):
    save_checkpoint(path, Checkpoint(params={"fc/weight": np.ones((2, 2), np.float32)},
                                     meta=meta))
    return path


def test_a_run_directory_stands_for_the_checkpoint_training_writes_there(tmp_path):
    written = write(checkpoint_in(tmp_path))
    write(tmp_path / "later.npz")
    assert written.name == CHECKPOINT_NAME
    assert find_checkpoint(tmp_path) == written
    assert find_checkpoint(tmp_path / "later.npz") == tmp_path / "later.npz"


def test_a_directory_without_it_gives_its_newest_checkpoint_or_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint in this directory"):
        find_checkpoint(tmp_path)
    older = write(tmp_path / "epoch1.npz")
    newer = write(tmp_path / "epoch2.npz")
    os.utime(older, (1, 1))
    assert find_checkpoint(tmp_path) == newer


def test_the_run_directory_is_the_first_one_chosen_else_runs_and_the_graph_name():
    graph = SimpleNamespace(name="lenet5")
    assert run_dir_of(graph) == Path("runs") / "lenet5"
    assert run_dir_of(graph, None, "from/spec") == Path("from/spec")
    assert run_dir_of(graph, "flag", "from/spec") == Path("flag")


def test_parameters_are_restored_only_into_a_network_they_fit(tmp_path):
    from graphnet.engine import Network
    from graphnet.graph import load

    specs = Path(__file__).resolve().parent.parent / "specs"
    trained = Network(load(specs / "lenet5.toml"), seed=3)
    path = tmp_path / "lenet5.npz"
    save_checkpoint(path, Checkpoint(params=trained.flat_params(), meta={"epoch": 2}))
    network = Network(load(specs / "lenet5.toml"), seed=0)
    assert restore_params(path, network).epoch == 2
    for key, array in trained.flat_params().items():
        np.testing.assert_array_equal(network.flat_params()[key], array, err_msg=key)
    other = Network(load(specs / "classic.toml"), seed=0)
    before = {k: v.copy() for k, v in other.flat_params().items()}
    with pytest.raises(CheckpointError, match="different spec"):
        restore_params(path, other)
    for key, array in other.flat_params().items():
        np.testing.assert_array_equal(array, before[key], err_msg=key)
