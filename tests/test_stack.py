"""graphnet.stack: a graph named as "what is a conv layer" articles name it, and `graphnet train`
saying so before it trains and pointing at inspect and show for the run after."""
from pathlib import Path

import pytest

from graphnet.graph import load
from graphnet.stack import deepest_field_node, describe, fold

SPECS = Path(__file__).resolve().parent.parent / "specs"


@pytest.mark.parametrize("spec, expected", [
    ("shapes_cnn.toml", "(conv → ReLU → pool) ×3 → fully connected → softmax; input 3×32×32; "
                        "19,466 parameters"),
    ("lenet5.toml", "(conv → ReLU → pool) ×2 → (fully connected → ReLU) ×2 → fully connected "
                    "→ softmax; input 1×28×28; 61,706 parameters"),
    ("branching.json", "conv → ReLU → conv → batch norm → ReLU → conv → add → ReLU → concat → "
                       "pool → conv → ReLU → global average pool → dropout → fully connected → "
                       "softmax with 1 skip connection and 2 side branches; input 3×32×32; "
                       "18,042 parameters"),
    ("curve_detector.toml", "conv; input 1×32×32; 49 parameters"),
])
def test_specs_are_named_as_the_articles_name_them(spec, expected):
    assert str(describe(load(SPECS / spec))) == expected


def test_a_plugin_op_is_called_by_its_name_and_a_residual_stack_folds():
    from graphnet.registry import get_registry
    nodes = [{"name": "stem", "op": "conv2d", "inputs": ["image"], "filters": 2, "kernel": 1}]
    previous = "stem"
    for index in range(3):  # three residual blocks: conv → conv → add(block, x)
        nodes += [{"name": f"a{index}", "op": "conv2d", "inputs": [previous], "filters": 2,
                   "kernel": 3, "padding": 1},
                  {"name": f"b{index}", "op": "conv2d", "filters": 2, "kernel": 3, "padding": 1},
                  {"name": f"sum{index}", "op": "add", "inputs": [f"b{index}", previous]}]
        previous = f"sum{index}"
    nodes.append({"name": "act", "op": "prelu", "inputs": [previous]})
    spec = {"inputs": {"image": {"shape": [2, 6, 6]}}, "nodes": nodes, "outputs": {"out": "act"}}
    registry = get_registry([str(SPECS.parent / "plugins" / "examples" / "prelu.py")])
    stack = describe(load(spec, registry=registry))
    assert stack.path == "conv → (conv → conv → add) ×3 → prelu"
    assert (stack.skip_connections, stack.side_branches) == (3, 0)


@pytest.mark.parametrize("words, expected", [
    ([], ""), (["a"], "a"), (["a", "a", "a"], "a ×3"),
    (["a", "b", "a", "b", "c"], "(a → b) ×2 → c"),
    (["a", "b", "b", "a", "b", "b"], "(a → b → b) ×2"),
])
def test_fold(words, expected):
    assert fold(words) == expected


def test_the_deepest_node_with_a_window_of_the_image():
    assert deepest_field_node(load(SPECS / "shapes_cnn.toml")) == "pool3"
    assert deepest_field_node(load(SPECS / "shapes_dense.toml")) is None


def test_train_names_the_stack_first_and_points_to_inspect_and_show_last(run_cli, tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = SPECS / "shapes_cnn.toml"
    status, out, err = run_cli("train", spec, "--epochs", "1", "--dataset-option",
                               "train_size=32", "--dataset-option", "test_size=10")
    assert status == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == ("network: (conv → ReLU → pool) ×3 → fully connected → softmax; "
                        "input 3×32×32; 19,466 parameters")
    assert lines[-1] == (f"next: graphnet inspect {spec} --rf pool3 (what one unit of pool3 "
                         f"sees); graphnet show {spec} --checkpoint "
                         "runs/shapes_cnn/checkpoint.npz (the learned filters)")
    # the commands it names work on this run
    assert run_cli("inspect", spec, "--rf", "pool3")[0] == 0
    assert run_cli("show", spec, "--checkpoint", "runs/shapes_cnn/checkpoint.npz")[0] == 0
