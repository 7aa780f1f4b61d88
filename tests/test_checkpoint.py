"""Checkpoints: writing, reading and refusing what graphnet did not write."""
import numpy as np
import pytest

from graphnet.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
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
