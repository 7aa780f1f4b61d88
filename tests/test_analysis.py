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


def test_fields_under_four_sided_padding_ceil_mode_and_pool_dilation_are_the_measured_ones():
    """A four-side-padded conv and a dilated ceil_mode max pool after it: raising a pixel
    outside a unit's declared field (clipped to the image) never changes the unit; where all
    of the unit's pool taps fall on conv outputs, raising any pixel inside it does. A tap in
    the pool's padding or ceil_mode overhang sees nothing, so a border unit sees less."""
    import numpy as np
    from graphnet.inspection import field_view
    graph = graphnet.load({"inputs": {"image": {"shape": [1, 9, 10]}}, "nodes": [
        {"name": "c", "op": "conv2d", "filters": 1, "kernel": 3, "padding": [2, 0, 0, 1],
         "weights": [[1, 1, 1], [1, 1, 1], [1, 1, 1]]},
        {"name": "p", "op": "max_pool2d", "kernel": 2, "stride": 2, "dilation": 2,
         "padding": [1, 0, 0, 1], "ceil_mode": True}], "outputs": {"p": "p"}})
    conv, pool = graph.nodes["c"], graph.nodes["p"]
    # c: r 3, j 1, start (−2, 0); p (dilated kernel spans 3): r 3 + 2, j 2, start (−2 − 1, 0)
    assert conv.shape == (1, 9, 9) and pool.shape == (1, 5, 5)  # ceil((10 − 3) / 2) + 1
    assert (conv.receptive_field.size, conv.receptive_field.start) == ((3, 3), (-2, 0))
    field = pool.receptive_field
    assert (field.size, field.jump, field.start) == ((5, 5), (2, 2), (-3, 0))

    height, width = 9, 10
    base = np.random.default_rng(0).uniform(0, 1, (1, 1, height, width))
    batch = np.repeat(base, height * width + 1, axis=0)
    rows, cols = np.divmod(np.arange(height * width), width)
    batch[1 + np.arange(height * width), 0, rows, cols] += 100.0
    output = graphnet.Network(graph, dtype="float64").forward({"image": batch})["p"]
    changed = output[1:] != output[:1]                      # (pixel, 1, 5, 5)
    for i in range(5):
        for j in range(5):
            seen = changed[:, 0, i, j].reshape(height, width)
            box = field_view(graph, "p", (i, j))["box"]
            declared = np.zeros((height, width), dtype=bool)
            declared[max(box["top"], 0):box["bottom"] + 1,
                     max(box["left"], 0):box["right"] + 1] = True
            assert not (seen & ~declared).any(), (i, j)
            # pool taps on conv rows 2i − 1 and 2i + 1, columns 2j and 2j + 2 (of 9 and 9)
            if 1 <= i <= 3 and j <= 3:
                assert np.array_equal(seen, declared), (i, j)
    # the last unit, a ceil_mode window: only its tap on conv output (7, 8) is real, and that
    # sees image rows 5-7 and columns 8-9 (the conv's right padding beyond)
    expected = np.zeros((height, width), dtype=bool)
    expected[5:8, 8:10] = True
    assert np.array_equal(changed[:, 0, 4, 4].reshape(height, width), expected)
