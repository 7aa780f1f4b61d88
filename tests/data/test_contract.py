"""graphnet.data's check of what a dataset plugin's ``load`` returned (returned_problem)."""
import numpy as np
import pytest

from graphnet.data import Dataset, Split, returned_problem


def _dataset(class_names):
    split = Split(np.zeros((2, 1, 4, 4), np.float32), np.array([0, 1]))
    return Dataset("made", split, split, class_names=class_names)


def test_well_formed_class_names_pass():
    assert returned_problem(_dataset(["T-shirt/top", "ankle boot", "数字"])) is None


@pytest.mark.parametrize("name", ["red\x1b[31m", "two\nlines", "bell\x07"])
def test_a_class_name_with_control_characters_is_the_plugins_mistake(name):
    """Class names are printed by training, eval and predict and kept in every checkpoint,
    whose check refuses them on reading: refused where they enter, naming the name."""
    assert returned_problem(_dataset(["fine", name])) == \
        f"its class name {name!r} holds control characters"
