"""Static analysis before any data: shapes, parameters, MACs, receptive fields."""
import graphnet


def one_conv(filters, **extra):
    return graphnet.load({"inputs": {"image": {"shape": [3, 32, 32]}},
                          "nodes": [{"name": "conv", "op": "conv2d", "filters": filters,
                                     "kernel": 5, **extra}]})


def test_one_5x5x3_filter_on_32x32x3_gives_a_28x28_map_over_784_positions():
    node = one_conv(1).nodes["conv"]
    assert node.shape == (1, 28, 28)
    assert node.shape[1] * node.shape[2] == 784
    assert node.param_specs["weight"].shape == (1, 3, 5, 5)   # as deep as its input
    assert node.params == 5 * 5 * 3 + 1
    assert node.macs == 784 * 5 * 5 * 3


def test_two_filters_give_two_activation_maps():
    assert one_conv(2).nodes["conv"].shape == (2, 28, 28)


def test_receptive_field_grows_with_depth_stride_padding_and_dilation():
    graph = graphnet.load({"inputs": {"image": {"shape": [1, 32, 32]}}, "nodes": [
        {"name": "c1", "op": "conv2d", "filters": 2, "kernel": 3, "padding": 1},
        {"name": "p1", "op": "max_pool2d", "kernel": 2},
        {"name": "c2", "op": "conv2d", "filters": 2, "kernel": 3, "dilation": 2},
        {"name": "r", "op": "relu"},
        {"name": "fc", "op": "dense", "units": 3},
    ]})
    rf = {name: graph.nodes[name].receptive_field for name in ("c1", "p1", "c2", "r")}
    # c1: r = 1 + 2·1 = 3, j = 1, start = 0 − 1·1 = −1
    assert (rf["c1"].size, rf["c1"].jump, rf["c1"].start) == ((3, 3), (1, 1), (-1, -1))
    # p1: r = 3 + 1·1 = 4, j = 2, start −1
    assert (rf["p1"].size, rf["p1"].jump, rf["p1"].start) == ((4, 4), (2, 2), (-1, -1))
    # c2 (dilation 2 → effective kernel 5): r = 4 + 4·2 = 12, j = 2, start −1
    assert (rf["c2"].size, rf["c2"].jump, rf["c2"].start) == ((12, 12), (2, 2), (-1, -1))
    assert rf["r"] == rf["c2"]                       # pointwise
    assert graph.nodes["fc"].receptive_field is None  # sees the whole input


def test_merge_takes_the_union_of_fields():
    graph = graphnet.load({"inputs": {"image": {"shape": [1, 16, 16]}}, "nodes": [
        {"name": "small", "op": "conv2d", "filters": 1, "kernel": 1, "inputs": ["image"]},
        {"name": "big", "op": "conv2d", "filters": 1, "kernel": 5, "padding": 2,
         "inputs": ["image"]},
        {"name": "sum", "op": "add", "inputs": ["small", "big"]},
    ]})
    field = graph.nodes["sum"].receptive_field
    assert field.size == (5, 5) and field.start == (-2, -2) and field.jump == (1, 1)


def test_same_padding_and_asymmetric_field_start():
    graph = graphnet.load({"inputs": {"image": {"shape": [1, 8, 8]}}, "nodes": [
        {"name": "c", "op": "conv2d", "filters": 1, "kernel": 4, "padding": "same"}]})
    node = graph.nodes["c"]
    assert node.shape == (1, 8, 8)
    assert node.receptive_field.start == (-1, -1)   # total 3 = 1 before + 2 after


def test_totals():
    graph = graphnet.load("specs/lenet5.toml")
    assert graph.total_params == 61706
    assert graph.nodes["conv1"].macs == 28 * 28 * 6 * 25


def test_required_inputs_leaves_labels_to_the_loss():
    from graphnet.analysis import required_inputs
    needs = required_inputs(graphnet.load("specs/lenet5.toml"))
    assert needs["inputs"] == ["image"] and needs["optional"] == ["label"]
    assert "fc3" in needs["computable"] and "loss" not in needs["computable"]
    assert needs["by_node"]["loss"] == {"image", "label"}
