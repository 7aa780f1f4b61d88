"""Building a graph: op resolution, attribute schemas, cycles, shapes (graphnet.graph)."""
import pytest

import graphnet
from graphnet.errors import SpecError
from graphnet.spec import SpecErrors


def spec_with(*nodes, inputs=None, outputs=None):
    spec = {"inputs": inputs or {"image": {"shape": [3, 8, 8]}}, "nodes": list(nodes)}
    if outputs:
        spec["outputs"] = outputs
    return spec


def error_of(spec) -> str:
    with pytest.raises(SpecError) as caught:
        graphnet.load(spec)
    return str(caught.value)


def test_unknown_op_lists_known_ops_and_suggests():
    text = error_of(spec_with({"name": "c", "op": "conv2", "filters": 2, "kernel": 3}))
    assert "node 'c', field 'op': unknown op 'conv2'" in text
    assert "conv2d" in text and "did you mean 'conv2d'?" in text


def test_unknown_attribute_suggests_the_closest():
    text = error_of(spec_with({"name": "c", "op": "conv2d", "filters": 2, "kernal": 3}))
    assert "node 'c', field 'kernal': unknown attribute" in text and "did you mean 'kernel'?" in text


def test_missing_required_wrong_type_and_range_are_each_reported():
    with pytest.raises(SpecErrors) as caught:
        graphnet.load(spec_with({"name": "c", "op": "conv2d", "kernel": 0, "stride": "2",
                                 "bias": 1}))
    text = str(caught.value)
    assert "node 'c', field 'filters': missing required attribute" in text
    assert "node 'c', field 'kernel'" in text and "found 0" in text
    assert "node 'c', field 'stride'" in text and "found '2'" in text
    assert "node 'c', field 'bias'" in text and "expected true or false" in text


@pytest.mark.parametrize("attrs, field", [({"filters": -1, "kernel": 3}, "filters"),
                                          ({"filters": 2, "kernel": 3, "stride": 0}, "stride")])
def test_zero_or_negative_sizes(attrs, field):
    text = error_of(spec_with({"name": "c", "op": "conv2d", **attrs}))
    assert f"node 'c', field '{field}'" in text and ">= 1" in text


def test_cycle_names_the_nodes_on_it():
    text = error_of(spec_with({"name": "a", "op": "add", "inputs": ["image", "c"]},
                              {"name": "b", "op": "relu", "inputs": ["a"]},
                              {"name": "c", "op": "relu", "inputs": ["b"]}))
    assert "cycle" in text
    for name in ("a", "b", "c"):
        assert f"{name} →" in text or f"→ {name}" in text


def test_add_of_differing_shapes_names_node_and_both_shapes():
    text = error_of(spec_with({"name": "small", "op": "max_pool2d", "kernel": 2},
                              {"name": "sum", "op": "add", "inputs": ["image", "small"]}))
    assert "node 'sum', field 'inputs'" in text and "3×8×8" in text and "3×4×4" in text


def test_channels_not_divisible_by_groups():
    text = error_of(spec_with({"name": "c", "op": "conv2d", "filters": 4, "kernel": 3,
                               "groups": 2}))
    assert "node 'c', field 'groups'" in text and "3" in text and "2" in text


def test_kernel_larger_than_padded_input():
    text = error_of(spec_with({"name": "c", "op": "conv2d", "filters": 1, "kernel": 11,
                               "padding": 1}))
    assert "node 'c', field 'kernel'" in text and "11×11" in text and "10×10" in text


def test_labels_cannot_feed_a_conv():
    text = error_of(spec_with({"name": "c", "op": "dense", "units": 2, "inputs": ["label"]},
                              inputs={"label": {"shape": [], "dtype": "int64"}}))
    assert "node 'c', field 'inputs'" in text and "integers" in text


def test_loss_output_must_be_scalar():
    text = error_of(spec_with({"name": "r", "op": "relu"}, outputs={"loss": "r"}))
    assert "field 'outputs.loss'" in text


def test_unused_node_is_a_warning_not_an_error():
    graph = graphnet.load(spec_with({"name": "a", "op": "relu"}, {"name": "b", "op": "relu",
                                                                 "inputs": ["image"]},
                                    outputs={"out": "b"}))
    assert any("node 'a'" in w and "not used" in w for w in graph.warnings)


def test_order_is_topological_and_follows_the_spec():
    graph = graphnet.load(spec_with(
        {"name": "left", "op": "relu", "inputs": ["image"]},
        {"name": "right", "op": "tanh", "inputs": ["image"]},
        {"name": "merge", "op": "add", "inputs": ["right", "left"]}))
    assert graph.order == ["image", "left", "right", "merge"]
    assert sorted(graph.dag.predecessors("merge")) == ["left", "right"]


def test_fixed_weights_are_fitted_and_checked():
    graph = graphnet.load(spec_with({"name": "c", "op": "conv2d", "filters": 1, "kernel": 2,
                                     "bias": False, "weights": [[1, 2], [3, 4]]},
                                    inputs={"image": {"shape": [1, 4, 4]}}))
    assert graph.nodes["c"].fixed_weights["weight"].shape == (1, 1, 2, 2)
    text = error_of(spec_with({"name": "c", "op": "conv2d", "filters": 1, "kernel": 2,
                               "weights": [[1, 2, 3]]}, inputs={"image": {"shape": [1, 4, 4]}}))
    assert "node 'c', field 'weights'" in text and "1×1×2×2" in text and "1×3" in text
