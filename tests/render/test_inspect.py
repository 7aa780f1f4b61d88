"""Rendering of ``inspect`` and ``ops`` to a recorded rich Console of fixed width: every line
fits, every node and the key figures are there, and narrow terminals get a compact table rather
than wrapped rows."""
from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from graphnet import inspection
from graphnet.graph import load
from graphnet.registry import get_registry
from graphnet.render.inspect import (byte_size, compact_number, render_catalogue, render_field,
                                     render_inspect, render_op)


def recorded(width: int) -> Console:
    return Console(width=width, record=True, file=io.StringIO(), force_terminal=True,
                   color_system="truecolor")


def inspect_text(graph, width: int, depth=0) -> str:
    console = recorded(width)
    render_inspect(inspection.figures(graph, for_table=True, depth=depth),
                   inspection.lane_rows(graph, depth), console)
    return console.export_text()


def assert_fits(text: str, width: int) -> None:
    too_long = [line for line in text.splitlines() if len(line) > width]
    assert not too_long, f"{len(too_long)} lines longer than {width}: {too_long[:2]}"


def all_specs(specs_dir):
    return sorted(specs_dir.glob("*.toml")) + sorted(specs_dir.glob("*.json"))


def shape_text(shape) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


@pytest.mark.parametrize("width", [80, 160])
def test_every_spec_fits_and_shows_every_row(specs_dir, width):
    for path in all_specs(specs_dir):
        graph = load(path)
        text = inspect_text(graph, width)
        assert_fits(text, width)
        lines = text.splitlines()
        rows = inspection.figures(graph, for_table=True)["rows"]
        for row in rows:  # every node, or the block instance that holds it
            shape = shape_text(row["output_shape"])
            # one table line holds the row's name and its output shape: no row was wrapped
            assert any(f" {row['name']} " in line and shape in line for line in lines), \
                (path, row["name"])
        assert f"{graph.total_params:,}" in text and f"{graph.total_macs:,}" in text


def test_every_node_unfolded_at_160_columns(specs_dir):
    for path in all_specs(specs_dir):
        graph = load(path)
        text = inspect_text(graph, 160, depth=None)
        assert_fits(text, 160)
        lines = text.splitlines()
        for name in graph.order:
            shape = shape_text(graph.nodes[name].shape)
            assert any(f" {name} " in line and shape in line for line in lines), (path, name)


def test_lenet5_at_160_columns_shows_everything(specs_dir):
    text = inspect_text(load(specs_dir / "lenet5.toml"), 160)
    header = next(line for line in text.splitlines() if " node " in line)
    for column in ("op", "inputs", "output", "params", "MACs", "RF size", "jump", "start"):
        assert column in header
    conv1 = next(line for line in text.splitlines() if " conv1 " in line)
    assert conv1.split()[-6:] == ["6×28×28", "156", "117,600", "5", "1", "-2"]
    assert "61,706" in text and "241.0 KiB" in text


def test_lenet5_at_80_columns_is_compact(specs_dir):
    text = inspect_text(load(specs_dir / "lenet5.toml"), 80)
    conv1 = next(line for line in text.splitlines() if " conv1 " in line)
    assert conv1.split()[-4:] == ["6×28×28", "156", "117.6k", "5/1/-2"]
    pool2 = next(line for line in text.splitlines() if " pool2 " in line)
    assert "16/4/-2" in pool2
    fc1 = next(line for line in text.splitlines() if " fc1 " in line)
    assert "48.1k" in fc1 and "whole" in fc1


def test_branching_at_80_columns_names_the_sources_of_merges(specs_dir):
    text = inspect_text(load(specs_dir / "branching.json"), 80)
    assert_fits(text, 80)
    lines = text.splitlines()
    merge_at = next(i for i, line in enumerate(lines) if " merge " in line)
    sources = " ".join(lines[merge_at:merge_at + 4])  # its row, or the row and one per source
    for source in ("skip_relu", "wide_1x1", "wide_5x5"):
        assert source in sources
    assert any(line.lstrip().startswith("├─┼─╮") for line in lines)  # a branch
    assert "16/2/-7" in text  # the dilated conv's field


def twenty_node_spec() -> dict:
    """Four residual blocks of five nodes: 20 op nodes with skip connections."""
    nodes = [{"name": "stem", "op": "conv2d", "inputs": ["image"], "filters": 8, "kernel": 3,
              "padding": 1}]
    previous = "stem"
    for block in range(1, 4):
        prefix = f"block{block}_"
        nodes += [
            {"name": prefix + "conv1", "op": "conv2d", "inputs": [previous], "filters": 8,
             "kernel": 3, "padding": 1},
            {"name": prefix + "relu1", "op": "relu"},
            {"name": prefix + "conv2", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1},
            {"name": prefix + "add", "op": "add", "inputs": [prefix + "conv2", previous]},
            {"name": prefix + "relu2", "op": "relu"},
            {"name": prefix + "pool", "op": "max_pool2d", "kernel": 2},
        ]
        previous = prefix + "pool"
    nodes += [{"name": "global_pool", "op": "global_avg_pool"},
              {"name": "classifier", "op": "dense", "units": 10},
              {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["classifier", "label"]}]
    return {"graph": {"name": "twenty"},
            "inputs": {"image": {"shape": [3, 64, 64]}, "label": {"shape": [], "dtype": "int64"}},
            "nodes": nodes, "outputs": {"logits": "classifier", "loss": "loss"}}


@pytest.mark.parametrize("width", [80, 100, 160])
def test_a_twenty_node_graph_never_wraps_rows(width):
    graph = load(twenty_node_spec())
    assert len(graph.op_nodes) >= 20
    text = inspect_text(graph, width)
    assert_fits(text, width)
    lines = text.splitlines()
    for node in graph.op_nodes:
        row = [line for line in lines if f" {node.name} " in line]
        assert row and shape_text(node.shape) in row[0], node.name
        assert (f"{node.params:,}" if width == 160 else compact_number(node.params)) in row[0] \
            or node.params == 0


def test_narrow_terminals_still_fit(specs_dir):
    for width in (40, 60):
        assert_fits(inspect_text(load(specs_dir / "branching.json"), width), width)


# --- receptive field ----------------------------------------------------------------------------


def field_text(graph, node, width, unit=None) -> str:
    console = recorded(width)
    render_field(inspection.field_view(graph, node, unit), console)
    return console.export_text()


def test_field_picture_marks_the_field_its_centre_and_the_neighbours(specs_dir):
    text = field_text(load(specs_dir / "lenet5.toml"), "conv2", 80)
    assert_fits(text, 80)
    grid = [line for line in text.splitlines() if "·" in line or "█" in line][:28]
    assert len(grid) == 28  # one line per pixel row of the 28×28 image
    assert sum(line.count("██") for line in grid) > 14 * 10  # most of the 14×14 field
    assert text.count("◉") >= 1 and "+" in text
    assert "14×14 pixels" in text and "2 pixels apart" in text
    assert "░" not in text  # this field stays inside the image


def test_field_picture_shows_padding_outside_the_image(specs_dir):
    text = field_text(load(specs_dir / "branching.json"), "dilated", 80, (0, 0))
    assert_fits(text, 80)
    assert "░░" in text and "padding" in text and "start -7" in text


def test_field_picture_of_a_global_node(specs_dir):
    text = field_text(load(specs_dir / "lenet5.toml"), "fc2", 80)
    assert "fc2 sees the whole input" in text and "whole" in text


def test_field_picture_of_a_big_input_is_scaled_to_the_width():
    spec = {"inputs": {"image": {"shape": [1, 300, 300]}},
            "nodes": [{"name": "conv", "op": "conv2d", "inputs": ["image"], "filters": 1,
                       "kernel": 31, "stride": 8}],
            "outputs": {"y": "conv"}}
    for width in (80, 160):
        text = field_text(load(spec), "conv", width)
        assert_fits(text, width)
        assert "◉" in text


# --- ops catalogue ------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 160])
def test_catalogue_lists_every_op_within_the_width(width):
    registry = get_registry()
    console = recorded(width)
    render_catalogue(inspection.op_catalogue(registry), console)
    text = console.export_text()
    assert_fits(text, width)
    for name in registry.names("op"):
        assert name in text
    assert "builtin:conv" in text and 'init "he_normal"' in text


def test_one_op_in_full_keeps_brackets_literal():
    console = recorded(80)
    render_op(inspection.describe_op(get_registry(), "conv2d"), console)
    text = console.export_text()
    assert_fits(text, 80)
    assert "[height, width]" in text  # not swallowed as rich markup
    for phrase in ("dilation", "required", "1 input", "learned: weight, bias", "torch.nn.functional"):
        assert phrase in text


def test_number_formats():
    assert [compact_number(n) for n in (999, 61706, 1234567, 3 * 10**9)] == \
        ["999", "61.7k", "1.2M", "3.0G"]
    assert [byte_size(n) for n in (512, 246824, 3 * 2**20)] == ["512 B", "241.0 KiB", "3.0 MiB"]


def test_field_of_the_input_itself_has_no_empty_chart_and_reads_right(specs_dir):
    text = field_text(load(specs_dir / "lenet5.toml"), "image", 80)
    assert_fits(text, 80)
    assert "1×1 pixels" in text and "(<1% of the image)" in text
    assert "1 pixel apart" in text and "1 pixels apart" not in text
    assert "grows with depth" not in text


# --- blocks (spec format 2) -------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 160])
def test_resnet18_folded_one_row_per_block(specs_dir, width):
    text = inspect_text(load(specs_dir / "resnet18.toml"), width)
    assert_fits(text, width)
    lines = text.splitlines()
    layer1 = next(line for line in lines if " layer1 " in line)
    assert "basic ×2" in layer1 and "64×56×56" in layer1
    assert ("148,480" if width == 160 else "148.5k") in layer1
    layer4 = next(line for line in lines if " layer4 " in line)
    assert (layer4.split()[-3:] == ["435", "32", "-217"] if width == 160
            else "435/32/-217" in layer4)
    assert "conv1" not in " ".join(line for line in lines if "layer" in line)  # folded
    assert not any("layer1.0" in line for line in lines)
    assert "11,689,512" in text and "trainable" in text
    assert "9,600" in text and "not parameters" in text


@pytest.mark.parametrize("width", [80, 160])
def test_resnet18_unfolded_one_level_and_all(specs_dir, width):
    graph = load(specs_dir / "resnet18.toml")
    text = inspect_text(graph, width, depth=1)
    assert_fits(text, width)
    rows = [line for line in text.splitlines() if re.search(r" layer1\.\d +basic ", line)]
    assert len(rows) == 2 and all("64×56×56" in row for row in rows)
    assert any(" layer2_down." in line for line in text.splitlines())  # one instance: opened
    text = inspect_text(graph, width, depth=None)
    assert_fits(text, width)
    lines = text.splitlines()
    if width == 160:  # at 80 columns long names are clipped with an ellipsis
        for name in graph.order:
            assert any(f" {name} " in line for line in lines), name
    assert sum("batch_norm" in line for line in lines) == 20


def test_mobilenet_depth_one_opens_groups_and_single_instances(specs_dir):
    text = inspect_text(load(specs_dir / "mobilenet_v2.toml"), 160, depth=1)
    lines = text.splitlines()
    assert any(" block1.0 " in line and "residual" in line for line in lines)
    assert any(" block2.body " in line and "inverted" in line for line in lines)
    assert any(" down2.depthwise " in line for line in lines)
