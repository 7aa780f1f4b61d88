"""The plain-data figures behind ``graphnet inspect``: shapes, parameters, MACs and receptive
fields of every example spec against values computed by hand, the lane drawing of the DAG, DOT
and Mermaid text, and the receptive-field view.

Receptive fields follow Araujo et al. (Distill 2019), per axis: a window with kernel k, stride
s, padding p and dilation d turns (size r, jump j, start t) into
(r + (d·(k−1)+1 − 1)·j, j·s, t − p·j); a merge takes the union of its inputs' fields.
"""
from __future__ import annotations

import json
import re

import networkx as nx
import numpy as np
import pytest

from graphnet import inspection
from graphnet.errors import GraphnetError, SpecError, UsageError
from graphnet.graph import load


def field(size, jump, start):
    """A square receptive field as the JSON holds it."""
    return {"size": [size, size], "jump": [jump, jump], "start": [start, start]}


def by_name(figures):
    return {row["name"]: row for row in figures["nodes"]}


# --- every example spec ------------------------------------------------------------------------


def test_every_spec_gives_consistent_json_figures(specs_dir):
    for path in sorted(specs_dir.glob("*.toml")) + sorted(specs_dir.glob("*.json")):
        graph = load(path)
        figures = json.loads(json.dumps(inspection.figures(graph, batch_size=4)))
        names = [row["name"] for row in figures["nodes"]]
        assert names == graph.order, path
        assert names[:len(graph.inputs)] == graph.inputs  # graph inputs come first
        assert all(row["op"] == "input" for row in figures["nodes"][:len(graph.inputs)])
        for row in figures["nodes"]:
            assert set(row) >= {"name", "op", "inputs", "output_shape", "params", "macs",
                                "receptive_field"}, path
            assert isinstance(row["output_shape"], list)
            rf = row["receptive_field"]
            assert rf is None or all(len(rf[key]) == 2 for key in ("size", "jump", "start"))
        totals = figures["totals"]
        assert totals["params"] == sum(row["params"] for row in figures["nodes"])
        assert totals["macs"] == sum(row["macs"] for row in figures["nodes"])
        assert totals["parameter_bytes"] == 4 * totals["params"]
        assert totals["batch_size"] == 4
        elements = sum(int(np.prod(row["output_shape"])) for row in figures["nodes"])
        assert totals["activation_bytes"] == 4 * 4 * elements  # float32, batch of 4


def test_lenet5_by_hand(specs_dir):
    figures = inspection.figures(load(specs_dir / "lenet5.toml"))
    rows = by_name(figures)
    expected = {
        # name: (output shape, params, MACs, receptive field)
        "image": ([1, 28, 28], 0, 0, field(1, 1, 0)),
        "label": ([], 0, 0, None),
        # 6 filters of 1×5×5 + 6 biases; 28·28 outputs · 6 filters · 25 taps
        "conv1": ([6, 28, 28], 6 * 25 + 6, 28 * 28 * 6 * 25, field(1 + 4, 1, 0 - 2)),
        "relu1": ([6, 28, 28], 0, 0, field(5, 1, -2)),
        # 2×2 pool, stride 2: r = 5 + 1·1, j = 1·2
        "pool1": ([6, 14, 14], 0, 0, field(6, 2, -2)),
        # 16 filters of 6×5×5 + 16 biases; r = 6 + 4·2
        "conv2": ([16, 10, 10], 16 * 6 * 25 + 16, 10 * 10 * 16 * 6 * 25, field(14, 2, -2)),
        "relu2": ([16, 10, 10], 0, 0, field(14, 2, -2)),
        "pool2": ([16, 5, 5], 0, 0, field(14 + 1 * 2, 4, -2)),
        "flatten": ([400], 0, 0, None),
        "fc1": ([120], 400 * 120 + 120, 400 * 120, None),
        "relu3": ([120], 0, 0, None),
        "fc2": ([84], 120 * 84 + 84, 120 * 84, None),
        "relu4": ([84], 0, 0, None),
        "fc3": ([10], 84 * 10 + 10, 84 * 10, None),
        "loss": ([], 0, 0, None),
    }
    assert list(rows) == list(expected)
    for name, (shape, params, macs, rf) in expected.items():
        row = rows[name]
        assert (row["output_shape"], row["params"], row["macs"], row["receptive_field"]) == \
            (shape, params, macs, rf), name
    assert rows["conv1"]["params"] == 156 and rows["conv1"]["macs"] == 117600
    assert rows["loss"]["inputs"] == ["fc3", "label"]
    assert figures["totals"]["params"] == 61706
    assert figures["totals"]["macs"] == 117600 + 240000 + 48000 + 10080 + 840


def test_branching_by_hand(specs_dir):
    figures = inspection.figures(load(specs_dir / "branching.json"))
    rows = by_name(figures)
    area = 32 * 32
    expected = {
        "image": ([3, 32, 32], 0, 0, field(1, 1, 0)),
        # 3×3 pad 1: r = 1 + 2·1 = 3, start = 0 − 1·1
        "stem": ([16, 32, 32], 16 * 3 * 9 + 16, area * 16 * 3 * 9, field(3, 1, -1)),
        "stem_relu": ([16, 32, 32], 0, 0, field(3, 1, -1)),
        "res_conv1": ([16, 32, 32], 16 * 16 * 9 + 16, area * 16 * 16 * 9, field(5, 1, -2)),
        # batch norm: scale and shift are learned, running mean and variance are state
        "res_bn": ([16, 32, 32], 4 * 16, 16 * area, field(5, 1, -2)),
        "res_conv2": ([16, 32, 32], 16 * 16 * 9 + 16, area * 16 * 16 * 9, field(7, 1, -3)),
        # add: the union of [−3, 3] (res_conv2) and [−1, 1] (the skip from stem_relu)
        "skip": ([16, 32, 32], 0, 0, field(7, 1, -3)),
        # a 1×1 conv leaves the field as it is
        "wide_1x1": ([8, 32, 32], 8 * 16 + 8, area * 8 * 16, field(3, 1, -1)),
        # 5×5 "same": padding 2, r = 3 + 4·1, start = −1 − 2
        "wide_5x5": ([8, 32, 32], 8 * 16 * 25 + 8, area * 8 * 16 * 25, field(7, 1, -3)),
        # concat of 16 + 8 + 8 channels; the union of [−3, 3], [−1, 1], [−3, 3]
        "merge": ([32, 32, 32], 0, 0, field(7, 1, -3)),
        # 2×2 pool: r = 7 + 1·1, j = 2
        "pool": ([32, 16, 16], 0, 0, field(8, 2, -3)),
        # 3×3 dilation 2 spans 5 pixels of its input: r = 8 + 4·j = 8 + 4·2 = 16;
        # padding 2 moves the start by 2·j = 4: −3 − 4 = −7
        "dilated": ([32, 16, 16], 32 * 32 * 9 + 32, 16 * 16 * 32 * 32 * 9, field(16, 2, -7)),
        "dilated_relu": ([32, 16, 16], 0, 0, field(16, 2, -7)),
        # global average pooling sees everything: one add per input element
        "gap": ([32], 0, 32 * 16 * 16, None),
        "drop": ([32], 0, 0, None),
        "fc": ([10], 32 * 10 + 10, 32 * 10, None),
        "loss": ([], 0, 0, None),
    }
    for name, (shape, params, macs, rf) in expected.items():
        row = rows[name]
        assert (row["output_shape"], row["params"], row["macs"], row["receptive_field"]) == \
            (shape, params, macs, rf), name
    assert rows["merge"]["inputs"] == ["skip_relu", "wide_1x1", "wide_5x5"]
    assert figures["totals"]["params"] == sum(v[1] for v in expected.values()) == 18074


def test_classic_and_curve_detector_by_hand(specs_dir):
    rows = by_name(inspection.figures(load(specs_dir / "classic.toml")))
    assert rows["conv3"]["receptive_field"] == field(6 + 2 * 2, 2, -2 - 1 * 2)  # after pool1
    assert rows["pool2"]["receptive_field"] == field(10 + 1 * 2, 4, -4)
    assert rows["fc"]["params"] == 32 * 8 * 8 * 10 + 10
    rows = by_name(inspection.figures(load(specs_dir / "curve_detector.toml")))
    # one 7×7 filter, no bias, no padding: 26×26 outputs
    assert (rows["curve"]["output_shape"], rows["curve"]["params"], rows["curve"]["macs"]) == \
        ([1, 26, 26], 49, 26 * 26 * 49)
    assert rows["curve"]["receptive_field"] == field(7, 1, 0)


def test_totals_reject_a_bad_batch_size(specs_dir):
    with pytest.raises(UsageError):
        inspection.totals(load(specs_dir / "lenet5.toml"), batch_size=0)


# --- the lane drawing ---------------------------------------------------------------------------


def test_lanes_show_the_branch_the_skip_connection_and_the_merge(specs_dir):
    graph = load(specs_dir / "branching.json")
    lanes = {row.node: row for row in inspection.lane_rows(graph)}
    assert [row.node for row in inspection.lane_rows(graph)] == graph.order
    # the residual branch leaves stem_relu's lane, which keeps running (the skip connection)
    assert lanes["res_conv1"].connector.startswith("├")
    assert lanes["res_conv1"].connector.endswith("╮")
    # ... and joins the branch again at the add: stem_relu's lane still goes on (├), the
    # branch's lane ends in the add (┤)
    assert lanes["skip"].connector.startswith("├") and lanes["skip"].connector.endswith("┤")
    # the concat gathers three lanes that all end there
    assert lanes["merge"].connector.count("╯") + lanes["merge"].connector.count("┴") == 2
    # a plain chain needs no connector
    assert lanes["res_bn"].connector is None and lanes["stem_relu"].connector is None
    assert lanes["image"].line == inspection.INPUT_MARK
    for row in lanes.values():
        assert inspection.NODE_MARK in row.line or inspection.INPUT_MARK in row.line
        assert row.line[2 * row.column] in (inspection.NODE_MARK, inspection.INPUT_MARK)


def test_lanes_of_a_straight_chain_stay_in_one_column(specs_dir):
    graph = load(specs_dir / "curve_detector.toml")
    assert [(row.line, row.connector) for row in inspection.lane_rows(graph)] == \
        [(inspection.INPUT_MARK, None), (inspection.NODE_MARK, None)]


def test_a_node_used_twice_by_one_consumer_is_one_edge():
    spec = {"inputs": {"x": {"shape": [2, 4, 4]}},
            "nodes": [{"name": "double", "op": "add", "inputs": ["x", "x"]}],
            "outputs": {"y": "double"}}
    rows = inspection.lane_rows(load(spec))
    assert [row.connector for row in rows] == [None, None]


# --- diagrams -----------------------------------------------------------------------------------

AWKWARD = {
    "inputs": {'in "put"': {"shape": [1, 8, 8]}},
    "nodes": [{"name": "a<b>#1", "op": "relu", "inputs": ['in "put"']},
              {"name": "back\\slash", "op": "relu"}],
    "outputs": {"y": "back\\slash"},
}


def test_dot_has_every_node_and_edge_quoted(specs_dir):
    graph = load(specs_dir / "branching.json")
    text = inspection.to_dot(graph)
    assert text.startswith('digraph "branching" {') and text.rstrip().endswith("}")
    edges = set(re.findall(r'^  "([^"]+)" -> "([^"]+)";$', text, re.MULTILINE))
    assert edges == set(graph.dag.edges)
    assert '"dilated" [label="dilated\\nconv2d 32×16×16"' in text
    awkward = inspection.to_dot(load(AWKWARD))
    assert '"in \\"put\\"" -> "a<b>#1";' in awkward
    assert '"a<b>#1" -> "back\\\\slash";' in awkward


def test_mermaid_uses_safe_ids_and_escaped_labels(specs_dir):
    graph = load(specs_dir / "branching.json")
    text = inspection.to_mermaid(graph)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    ids = {name: f"n{i}" for i, name in enumerate(graph.order)}
    edges = {tuple(line.strip().split(" --> ")) for line in lines if "-->" in line}
    assert edges == {(ids[a], ids[b]) for a, b in graph.dag.edges}
    assert f'{ids["merge"]}["merge<br/>concat 32×32×32"]' in text
    awkward = inspection.to_mermaid(load(AWKWARD))
    assert 'n0(["in #quot;put#quot;<br/>input 1×8×8"])' in awkward
    assert 'n1["a#lt;b#gt;#35;1<br/>relu 1×8×8"]' in awkward
    rebuilt = nx.DiGraph([tuple(line.strip().split(" --> ")) for line in awkward.splitlines()
                          if "-->" in line])
    assert list(rebuilt.edges) == [("n0", "n1"), ("n1", "n2")]


# --- receptive field on the image ---------------------------------------------------------------


def test_field_view_of_the_centre_unit(specs_dir):
    view = inspection.field_view(load(specs_dir / "lenet5.toml"), "conv2")
    # conv2's output is 10×10; its centre unit is (4, 4); start −2 + 4·2 = 6, size 14
    assert view["unit"] == [4, 4] and view["output"] == [10, 10]
    assert view["box"] == {"top": 6, "left": 6, "bottom": 19, "right": 19}
    assert view["centre"] == [12.5, 12.5]
    assert len(view["neighbours"]) == 8 and [10.5, 10.5] in view["neighbours"]
    assert not view["padded"] and view["coverage"] == pytest.approx(14 * 14 / 28 ** 2)
    assert [step["name"] for step in view["path"]] == ["conv1", "pool1", "conv2"]


def test_field_view_in_the_corner_reaches_into_padding(specs_dir):
    view = inspection.field_view(load(specs_dir / "branching.json"), "dilated",
                                 inspection.parse_unit("0,0"))
    assert view["box"] == {"top": -7, "left": -7, "bottom": 8, "right": 8}
    assert view["padded"] and len(view["neighbours"]) == 3


def test_field_view_of_a_global_node(specs_dir):
    view = inspection.field_view(load(specs_dir / "lenet5.toml"), "fc1")
    assert view["whole"] is True and view["image"] == [28, 28]
    assert view["path"][-1] == {"name": "fc1", "op": "dense", "size": None}


@pytest.mark.parametrize("node, unit, error", [
    ("nope", None, UsageError), ("conv2", (10, 0), UsageError), ("label", None, UsageError)])
def test_field_view_errors(specs_dir, node, unit, error):
    with pytest.raises(error):
        inspection.field_view(load(specs_dir / "lenet5.toml"), node, unit)


def test_parse_unit():
    assert inspection.parse_unit("3, 4") == (3, 4)
    assert inspection.parse_unit(None) is None
    with pytest.raises(UsageError):
        inspection.parse_unit("3")


# --- ops, filters and images --------------------------------------------------------------------


def test_op_catalogue_describes_every_registered_op():
    from graphnet.registry import get_registry
    registry = get_registry()
    catalogue = inspection.op_catalogue(registry)
    assert sorted(op["name"] for op in catalogue) == registry.names("op")
    conv = inspection.describe_op(registry, "conv2d")
    attributes = {a["name"]: a for a in conv["attributes"]}
    assert attributes["filters"]["required"] and attributes["filters"]["default_text"] == "required"
    assert attributes["stride"]["default_text"] == "1"  # (1, 1) or 1, as a spec writes it
    assert attributes["init"]["choices"] and conv["has_params"] and conv["arity"] == [1, 1]
    json.dumps(catalogue)  # plain data
    with pytest.raises(SpecError, match="did you mean 'conv2d'"):
        inspection.describe_op(registry, "conv2")


def test_filter_nodes_are_found_by_structure(specs_dir):
    assert inspection.filter_nodes(load(specs_dir / "lenet5.toml")) == ["conv1", "conv2"]
    dense_only = {"inputs": {"x": {"shape": [4]}},
                  "nodes": [{"name": "fc", "op": "dense", "units": 2, "inputs": ["x"]}],
                  "outputs": {"y": "fc"}}
    with pytest.raises(SpecError, match="no convolution layer"):
        inspection.pick_filter_node(load(dense_only))
    with pytest.raises(UsageError, match="has no filters"):
        inspection.pick_filter_node(load(specs_dir / "lenet5.toml"), "pool1")


def test_load_image_reads_images_as_training_does(tmp_path, specs_dir):
    graph = load(specs_dir / "lenet5.toml")
    named = tmp_path / "named.npz"
    np.savez(named, images=np.ones((2, 1, 28, 28)), labels=np.zeros(2))
    assert inspection.load_image(named, graph, 1)[1].shape == (1, 1, 28, 28)
    grey = tmp_path / "grey.npz"
    pixels = np.zeros((3, 28, 28), dtype=np.uint8)
    pixels[2, 0, 0] = 255
    np.savez(grey, pixels)
    name, image = inspection.load_image(grey, graph, -1)
    assert name == "image" and image.shape == (1, 1, 28, 28)
    assert image.dtype == np.float32 and image.max() == 1.0  # 0–255 becomes 0–1
    several = tmp_path / "several.npz"
    np.savez(several, a=np.zeros(1), b=np.zeros(1))
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, images=np.zeros((1, 3, 28, 28)))
    for path, index in ((several, 0), (named, 5), (tmp_path / "missing.npz", 0), (wrong, 0)):
        with pytest.raises(GraphnetError):
            inspection.load_image(path, graph, index)


def test_standardised_uses_the_checkpoint_statistics():
    image = np.full((1, 2, 3, 3), 4.0, dtype=np.float32)
    fed, done = inspection.standardised(image, {"standardise": {"mean": [1, 2], "std": [3, 1]}})
    assert done and fed[0, 0, 0, 0] == pytest.approx(1.0) and fed[0, 1, 0, 0] == 2.0
    assert inspection.standardised(image, {}) == (image, False)


def test_shrink_averages_blocks():
    array = np.arange(16, dtype=float).reshape(4, 4)
    assert inspection.shrink(array, 2).tolist() == [[2.5, 4.5], [10.5, 12.5]]
    assert inspection.shrink(np.ones((2, 5, 5)), 2).shape == (2, 3, 3)
