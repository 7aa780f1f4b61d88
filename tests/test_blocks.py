"""Spec format 2: blocks, repeat and arguments, expanded into plain nodes (graphnet.blocks)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

import graphnet
from graphnet import blocks
from graphnet.blocks import evaluate
from graphnet.errors import SpecError
from graphnet.spec import load_spec, read_spec_file

ROOT = Path(__file__).resolve().parent.parent


def basic_block(**args) -> dict:
    """conv → relu → add the input: a block that keeps the shape when filters = channels."""
    return {"args": {"filters": 4, **args}, "inputs": ["x"], "output": "out",
            "nodes": [{"name": "conv", "op": "conv2d", "inputs": ["x"], "filters": "${filters}",
                       "kernel": 3, "padding": 1},
                      {"name": "sum", "op": "add", "inputs": ["conv", "x"]},
                      {"name": "out", "op": "relu"}]}


def spec_with(nodes, blocks_=None, **graph) -> dict:
    return {"graph": {"name": "t", "format": 2, **graph},
            "blocks": {"basic": basic_block()} if blocks_ is None else blocks_,
            "inputs": {"image": {"shape": [4, 8, 8]}},
            "nodes": nodes}


# --- expansion ------------------------------------------------------------------------------------
def test_instances_are_named_by_node_repeat_index_and_inner_name():
    graph = graphnet.load(spec_with([
        {"name": "stem", "op": "conv2d", "inputs": ["image"], "filters": 4, "kernel": 1},
        {"name": "layer1", "block": "basic", "repeat": 2},
        {"name": "single", "block": "basic"},
        {"name": "head", "op": "global_avg_pool"}]))
    assert graph.order == ["image", "stem", "layer1.0.conv", "layer1.0.sum", "layer1.0.out",
                           "layer1.1.conv", "layer1.1.sum", "layer1.1.out", "single.conv",
                           "single.sum", "single.out", "head"]
    # repeat chains the instances; the block node's name stands for its (last) output
    assert graph.nodes["layer1.1.conv"].inputs == ("layer1.0.out",)
    assert graph.nodes["single.conv"].inputs == ("layer1.1.out",)
    assert graph.nodes["head"].inputs == ("single.out",)


def test_nested_blocks_with_arithmetic_on_arguments():
    data = spec_with([{"name": "body", "block": "pair", "inputs": ["image"], "width": 2}],
                     blocks_={"basic": basic_block(),
                              "widen": {"args": {"filters": 1}, "output": "conv", "nodes": [
                                  {"name": "conv", "op": "conv2d", "filters": "${filters}",
                                   "kernel": 1}]},
                              "pair": {"args": {"width": 1}, "nodes": [
                                  {"name": "first", "block": "widen", "filters": "${width * 2}"},
                                  {"name": "second", "block": "basic", "repeat": 3,
                                   "filters": "${(width + 2) * 2 // 2 * 2 - 4}"},
                                  {"name": "expand", "op": "conv2d",
                                   "filters": "${width * 3 / 2 * 2}", "kernel": 1}]}},
                     )
    data["nodes"][0]["width"] = 2
    with pytest.raises(SpecError, match="found 6.0"):  # / gives a float: an int is needed
        graphnet.load(copy.deepcopy(data))
    data["blocks"]["pair"]["nodes"][2]["filters"] = "${width * 3 // 2 * 2}"
    graph = graphnet.load(data)
    assert graph.nodes["body.first.conv"].shape == (4, 8, 8)          # width * 2
    assert graph.nodes["body.second.2.conv"].shape == (4, 8, 8)       # (2+2)*2//2*2-4 = 4
    assert graph.nodes["body.expand"].shape == (6, 8, 8)              # 2*3//2*2
    assert graph.nodes["body.expand"].inputs == ("body.second.2.out",)
    expansion = graph.spec.expansion
    assert [i.name for i in expansion.instances] == [
        "body", "body.first", "body.second", "body.second.0", "body.second.1", "body.second.2"]
    assert expansion.scope["body.second.1.sum"] == ("body", "body.second", "body.second.1")
    assert expansion.resolve("body") == "body.expand"
    assert expansion.resolve("body.second") == "body.second.2.out"


def test_a_plain_argument_keeps_its_type():
    data = spec_with([{"name": "b", "block": "pool", "inputs": ["image"]}], blocks_={"pool": {
        "args": {"size": [2, 2], "pad": "valid", "frozen": False},
        "nodes": [{"name": "conv", "op": "conv2d", "filters": 2, "kernel": "${size}",
                   "padding": "${pad}", "trainable": "${frozen}"}]}})
    graph = graphnet.load(data)
    node = graph.nodes["b.conv"]
    assert node.attrs.kernel == (2, 2) and node.attrs.padding == "valid"
    assert node.trainable is False and node.shape == (2, 7, 7)


def test_outputs_inputs_and_rf_accept_the_block_name(tmp_path, run_cli):
    data = spec_with([{"name": "layer1", "block": "basic", "inputs": ["image"], "repeat": 2},
                      {"name": "pool", "op": "global_avg_pool", "inputs": ["layer1.0"]}])
    data["outputs"] = {"features": "layer1", "pooled": "pool"}
    graph = graphnet.load(data)
    assert graph.outputs == {"features": "layer1.1.out", "pooled": "pool"}
    assert graph.nodes["pool"].inputs == ("layer1.0.out",)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    status, out, err = run_cli("inspect", path, "--rf", "layer1", "--format", "json")
    assert status == 0, err
    view = json.loads(out)
    assert view["node"] == "layer1.1.out" and view["size"] == [5, 5]  # two 3×3 convs


def test_format_one_specs_load_unchanged(specs_dir):
    for path in sorted(specs_dir.glob("*.toml")) + sorted(specs_dir.glob("*.json")):
        data = read_spec_file(path)
        if "blocks" in data:
            continue
        expanded, expansion, problems = blocks.expand(data, path)
        assert expanded is data and expansion is None and not problems
        spec = load_spec(path)
        assert spec.expansion is None and spec.raw is data or spec.raw == data
        assert [n.name for n in spec.nodes] == [n["name"] for n in data["nodes"]]


def test_an_unused_block_is_a_warning(run_cli, tmp_path):
    data = spec_with([{"name": "b", "block": "basic", "inputs": ["image"]}])
    data["blocks"]["spare"] = basic_block()
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    status, out, err = run_cli("check", path)
    assert status == 0
    assert "block 'spare' is defined but never used" in err


# --- expressions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("a", 6), (" a * 2 ", 12), ("a // 4", 1), ("a / 4", 1.5), ("-(a - 10) + 1.5", 5.5),
    ("((a))", 6), ("2 * 3 - 1", 5), ("+a", 6)])
def test_expressions(text, value):
    assert evaluate(text, {"a": 6}) == value


@pytest.mark.parametrize("text, message", [
    ("__import__('os').system('echo hacked')", "a call is not allowed"),
    ("a ** 2", "the operator Pow is not allowed"),
    ("a.real", "an attribute is not allowed"),
    ("b + 1", "unknown name 'b'"),
    ("a if a else 1", "ifexp is not allowed"),
    ("[a]", "list is not allowed"),
    ("'x' * 3", "a constant that is not a number"),
    ("True + 1", "a constant that is not a number"),
    ("a < 3", "a comparison is not allowed"),
    ("a / 0", "division by zero"),
    ("(" * 500 + "1" + ")" * 500, "expression too long"),
    ("1e308 * 10", "number too large"),
    ("", "empty expression"),
    ("a +", "not an expression"),
])
def test_expressions_outside_the_grammar_are_refused(text, message):
    with pytest.raises(SpecError, match=message):
        evaluate(text, {"a": 6, "names": ["x"]})


def test_an_expression_reaching_for_python_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "hacked"
    data = spec_with([{"name": "b", "block": "basic", "inputs": ["image"]}])
    data["blocks"]["basic"]["nodes"][0]["filters"] = \
        f"${{__import__('os').system('touch {marker}')}}"
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    completed = subprocess.run([sys.executable, "-m", "graphnet.cli", "check", str(path)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "block 'basic', node 'b.conv', field 'filters'" in completed.stderr
    assert "a call is not allowed in an expression" in completed.stderr
    assert not marker.exists()


# --- every error through the real CLI ------------------------------------------------------------
def _error(run_cli, tmp_path, data):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    status, out, err = run_cli("check", path)
    assert status == 2, (out, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # one message
    assert str(path) in lines[0]
    return lines[0]


def _with(change):
    data = spec_with([{"name": "layer", "block": "basic", "inputs": ["image"], "repeat": 2}])
    change(data)
    return data


ERRORS = {
    "unknown name": (
        lambda d: d["blocks"]["basic"]["nodes"][0].update(filters="${filtres * 2}"),
        ["block 'basic'", "node 'layer.0.conv'", "field 'filters'", "unknown name 'filtres'",
         "did you mean 'filters'?"]),
    "unknown block": (
        lambda d: d["nodes"][0].update(block="basci"),
        ["node 'layer'", "field 'block'", "unknown block 'basci'", "one of: basic",
         "did you mean 'basic'?"]),
    "cycle": (
        lambda d: d["blocks"].update(
            a={"nodes": [{"name": "inner", "block": "b"}]},
            b={"nodes": [{"name": "inner", "block": "a"}]}),
        ["block 'a'", "field 'block'", "a → b → a"]),
    "self cycle": (
        lambda d: d["blocks"]["basic"]["nodes"].append({"name": "again", "block": "basic"}),
        ["block 'basic'", "basic → basic"]),
    "unknown argument": (
        lambda d: d["nodes"][0].update(filter=8),
        ["node 'layer'", "field 'filter'", "unknown argument of block 'basic'",
         "did you mean 'filters'?"]),
    "missing required argument": (
        lambda d: d["blocks"]["basic"].update(required=["filters"]),
        ["node 'layer'", "field 'filters'", "missing required argument of block 'basic'"]),
    "repeat with two inputs": (
        lambda d: d["blocks"]["basic"].update(inputs=["x", "y"]),
        ["node 'layer'", "field 'repeat'", "repeat needs a block with one input"]),
    "bad repeat": (
        lambda d: d["nodes"][0].update(repeat=0),
        ["node 'layer'", "field 'repeat'", "an integer from 1 to"]),
    "expression outside a block": (
        lambda d: d["nodes"].append({"name": "top", "op": "conv2d", "filters": "${4}",
                                     "kernel": 1}),
        ["node 'top'", "field 'filters'", "expressions are allowed only inside blocks"]),
    "inner input unknown": (
        lambda d: d["blocks"]["basic"]["nodes"][1].update(inputs=["conv", "image"]),
        ["block 'basic'", "node 'layer.0.sum'", "field 'inputs'", "unknown input",
         "'image'"]),
    "newer format": (
        lambda d: d["graph"].update(format=3),
        ["field 'graph.format'", "format 3", "newer than this graphnet"]),
    "block and op": (
        lambda d: d["nodes"][0].update(op="relu"),
        ["node 'layer'", "field 'block'", "either op or block"]),
    "instance shapes that do not fit": (  # the second instance gets 8 channels, adds to 4
        lambda d: d["nodes"][0].update(filters=8),
        ["node 'layer.0.sum'", "field 'inputs'"]),
    # these were kept as literal text: a node named 'layer.0.${name}', an op '${op}'
    "expression as a name": (
        lambda d: d["blocks"]["basic"]["nodes"][0].update(name="${filters}"),
        ["block 'basic'", "field 'nodes[0].name'", "expressions are allowed only in attribute "
         "values", "fixed where the block is written"]),
    "expression as an input": (
        lambda d: d["blocks"]["basic"]["nodes"][1].update(inputs=["${filters}"]),
        ["block 'basic'", "field 'nodes[1].inputs'", "expressions are allowed only in attribute "
         "values"]),
    "expression as an op": (
        lambda d: d["blocks"]["basic"]["nodes"][0].update(op="${filters}"),
        ["block 'basic'", "field 'nodes[0].op'", "expressions are allowed only in attribute "
         "values"]),
    "partial expression": (
        lambda d: d["blocks"]["basic"]["nodes"][0].update(init="he_${filters}"),
        ["block 'basic'", "node 'layer.0.conv'", "field 'init'", "must be the whole string"]),
    "missing plugin": (
        lambda d: d["graph"].update(requires=["prelu"]),
        ["field 'graph.requires'", "this spec needs plugin 'prelu'", "--plugin FILE"]),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_every_block_error_is_one_located_message(run_cli, tmp_path, case):
    change, phrases = ERRORS[case]
    line = _error(run_cli, tmp_path, _with(change))
    for phrase in phrases:
        assert phrase in line, (phrase, line)


def test_a_required_plugin_that_is_loaded_passes(run_cli, tmp_path):
    data = _with(lambda d: d["graph"].update(requires=["prelu", "conv"]))
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    plugin = ROOT / "plugins" / "examples" / "prelu.py"
    status, out, err = run_cli("check", path, "--plugin", plugin)
    assert status == 0, err


def test_a_format_one_spec_with_blocks_is_refused(run_cli, tmp_path):
    line = _error(run_cli, tmp_path, _with(lambda d: d["graph"].update(format=1)))
    assert "blocks need spec format 2" in line and "graph.format" in line
