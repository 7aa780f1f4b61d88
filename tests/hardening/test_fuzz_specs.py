"""Fuzzed specs: whatever a spec file holds, graphnet answers with a result or a located error.

The real specs in ``specs/`` (and a few built only from always-present ops) are mutated —
keys dropped, types swapped, numbers replaced by 0/−1/10¹²/nan/huge strings, inputs renamed to
unicode, nodes duplicated, cycles added, thousands of nodes appended — and written as TOML or
JSON; the raw bytes of spec files are mutated too. Each case goes through ``graphnet.load``, the
real ``graphnet check`` and, when it loads and is small, a forward and backward pass. Every case
must end in success or a :class:`graphnet.GraphnetError` that names the file (and node/field
where there is one): never another exception, a hang or a traceback.

The CI forms run a few hundred derandomized examples; ``pytest -m slow`` runs thousands.
``GRAPHNET_FUZZ_TALLY=1`` prints every error kind reached at the end of the session.
"""
from __future__ import annotations

import copy
import datetime
import json
import math
import re
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphnet
from graphnet.analysis import memory_estimate
from graphnet.checks import spec_problems
from graphnet.cli import main
from graphnet.gradcheck import random_feeds

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILES = sorted((ROOT / "specs").glob("*.toml")) + sorted((ROOT / "specs").glob("*.json"))
CI = settings.get_profile("hardening-ci")
LONG = settings.get_profile("hardening-long")
SECONDS_PER_CASE = 60.0  # far above the real cost (milliseconds, ~1 s on a loaded 2-core
# machine): only a hang or a blow-up fails, never a busy machine
RUN_BUDGET_BYTES = 32 * 2**20  # run forward/backward on loaded graphs that need less than this


def _read(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)


# Built only from ops that every checkout has, so valid graphs run even while others are missing.
SYNTHETIC = [
    {"graph": {"name": "mlp", "description": "fan-out, add, sigmoid, cross-entropy"},
     "inputs": {"x": {"shape": [6]}, "y": {"shape": [], "dtype": "int64"}},
     "nodes": [{"name": "fc1", "op": "dense", "inputs": ["x"], "units": 8},
               {"name": "act", "op": "relu"},
               {"name": "fc2", "op": "dense", "inputs": ["x"], "units": 8, "bias": False},
               {"name": "sum", "op": "add", "inputs": ["act", "fc2", "act"]},
               {"name": "sig", "op": "sigmoid"},
               {"name": "drop", "op": "dropout", "rate": 0.25},
               {"name": "fc3", "op": "dense", "units": 3, "init": "he_normal"},
               {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc3", "y"]}],
     "outputs": {"logits": "fc3", "loss": "loss"},
     "train": {"dataset": "shapes", "epochs": 1, "batch_size": 4}},
    {"graph": {"name": "regress"},
     "inputs": {"x": {"shape": [2, 3, 3]}, "t": {"shape": [4]}},
     "nodes": [{"name": "bn", "op": "batch_norm"},
               {"name": "cat", "op": "concat", "inputs": ["bn", "x"]},
               {"name": "flat", "op": "flatten"},
               {"name": "fc", "op": "dense", "units": 4,
                "weights": {"bias": [0.5, 0, 0, -0.5]}},
               {"name": "soft", "op": "softmax"},
               {"name": "tanh", "op": "tanh", "inputs": ["fc"]},
               {"name": "leaky", "op": "leaky_relu", "slope": 0.1, "inputs": ["tanh"]},
               {"name": "loss", "op": "mse_loss", "inputs": ["leaky", "t"]}],
     "outputs": {"probabilities": "soft", "loss": "loss"}},
]
BASES = [(path.name, _read(path)) for path in SPEC_FILES] + \
    [(f"{spec['graph']['name']}.json", spec) for spec in SYNTHETIC]

NASTY = [
    0, -1, 1, 2, 10**12, 2**63 - 1, -(2**63), 10**30, math.nan, math.inf, -math.inf, 0.5, -0.0,
    1e308, 5e-324, "", " ", "x" * 100_000, "relu", "dense", "same", "valid", "int64", "float64",
    "Ünïcødé", "名前", "🙂", "a\u0000b", "\u202eevil", "\ud800", "name with spaces ", "loss",
    None, True, False, [], {}, [1, 2], [[1]], [0] * 1000, [-1, 3], [3, 100_000, 100_000],
    [10**12], {"a": {"b": 1}}, {"shape": [1]}, datetime.date(1979, 5, 27),
]
KEYS = ["name", "op", "inputs", "shape", "dtype", "units", "filters", "kernel", "padding",
        "stride", "dilation", "rate", "weights", "trainable", "bias", "loss", "graph", "nodes",
        "outputs", "inputs", "train", "ünï", "", " ", "x" * 300]


def nasty_values():
    # Copies: a drawn list or table is mutated later and must not change NASTY itself.
    return st.one_of(st.sampled_from(NASTY).map(copy.deepcopy), st.integers(), st.floats(),
                     st.text(max_size=12), st.lists(st.integers(-3, 40), max_size=4))


# --- mutations ---------------------------------------------------------------------------------
def _paths(value, prefix=(), depth=0):
    yield prefix
    if depth >= 5:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value[:12]):
            yield from _paths(item, prefix + (index,), depth + 1)


def _get(doc, path):
    for step in path:
        doc = doc[step]
    return doc


def _node_names(doc) -> list[str]:
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, list):
        return []
    return [n["name"] for n in nodes if isinstance(n, dict) and isinstance(n.get("name"), str)]


def _names(doc) -> list[str]:
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    return (list(inputs) if isinstance(inputs, dict) else []) + _node_names(doc)


def mutate(data, doc):
    """Apply one random mutation to ``doc`` (in place, or returning a replacement)."""
    kind = data.draw(st.sampled_from([
        "drop", "replace", "replace", "swap_type", "insert", "rename_input", "rename_node",
        "duplicate_node", "cycle", "grow_chain", "fan_in", "shuffle"]), label="mutation")
    if not isinstance(doc, dict):
        kind = "replace"
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    node_list = nodes if isinstance(nodes, list) and nodes else None
    if kind in ("drop", "replace", "swap_type", "insert"):
        paths = list(_paths(doc))
        path = data.draw(st.sampled_from(paths), label="path")
        if kind == "insert":
            target = _get(doc, path)
            if isinstance(target, dict):
                target[data.draw(st.sampled_from(KEYS), label="key")] = data.draw(nasty_values())
            elif isinstance(target, list):
                target.insert(data.draw(st.integers(0, len(target))), data.draw(nasty_values()))
            return doc
        if not path:
            return data.draw(nasty_values()) if kind == "replace" else doc
        parent, last = _get(doc, path[:-1]), path[-1]
        if kind == "drop":
            del parent[last]
        elif kind == "replace":
            parent[last] = data.draw(nasty_values(), label="value")
        else:
            value = parent[last]
            choices = [[value], {"value": value}, str(value)[:200]]
            if isinstance(value, bool):
                choices.append(int(value))
            elif isinstance(value, int):
                choices += [float(value), -value, value * 10**9, value == 1]
            elif isinstance(value, float) and math.isfinite(value):
                choices.append(int(value))
            elif isinstance(value, list) and value:
                choices += [value[0], value * 50, value[::-1]]
            parent[last] = data.draw(st.sampled_from(choices), label="swapped")
        return doc
    if kind == "rename_input" and isinstance(doc.get("inputs"), dict) and doc["inputs"]:
        old = data.draw(st.sampled_from(list(doc["inputs"])))
        new = data.draw(st.one_of(st.sampled_from(["Ünïcødé", "名前", "🙂", "x y", "label",
                                                   "a" * 201, "\u0301"]), st.text(max_size=8)))
        doc["inputs"] = {(new if k == old else k): v for k, v in doc["inputs"].items()}
        if data.draw(st.booleans(), label="rewrite references"):
            _rename_references(doc, old, new)
        return doc
    if kind == "rename_node" and node_list:
        node = data.draw(st.sampled_from(node_list))
        if isinstance(node, dict):
            old = node.get("name")
            new = data.draw(st.sampled_from(["ноль", "节点", "🙂🙂", "conv1", "image", "n" * 200]))
            node["name"] = new
            if isinstance(old, str):
                _rename_references(doc, old, new)
        return doc
    if kind == "duplicate_node" and node_list:
        copied = copy.deepcopy(data.draw(st.sampled_from(node_list)))
        node_list.insert(data.draw(st.integers(0, len(node_list))), copied)
        return doc
    if kind == "cycle" and node_list:
        names = _node_names(doc)
        if names:
            first = data.draw(st.integers(0, len(node_list) - 1))
            later = names[data.draw(st.integers(0, len(names) - 1)):] or names
            if isinstance(node_list[first], dict):
                node_list[first]["inputs"] = [data.draw(st.sampled_from(later))]
        return doc
    if kind == "grow_chain" and node_list is not None:
        count = data.draw(st.sampled_from([3, 50, 500, 2000]), label="chain length")
        op = data.draw(st.sampled_from(["relu", "sigmoid", "tanh", "dense", "add", "no_such_op"]))
        at = data.draw(st.integers(0, len(node_list)))
        chain = []
        for position in range(count):
            node = {"name": f"deep{position}", "op": op}
            if op == "dense":
                node["units"] = 2
            if op == "add" and position:
                node["inputs"] = [f"deep{position - 1}", f"deep{position - 1}"]
            chain.append(node)
        node_list[at:at] = chain
        return doc
    if kind == "fan_in" and node_list:
        names = _names(doc)
        if names:
            count = data.draw(st.sampled_from([2, 30, 2000]), label="fan-in")
            source = data.draw(st.sampled_from(names))
            node_list.insert(data.draw(st.integers(0, len(node_list))),
                             {"name": "fan_in", "op": "add", "inputs": [source] * count})
        return doc
    if kind == "shuffle" and node_list:
        node_list[:] = data.draw(st.permutations(node_list))
    return doc


def _rename_references(doc, old, new):
    nodes = doc.get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and isinstance(node.get("inputs"), list):
            node["inputs"] = [new if i == old else i for i in node["inputs"]]
    if isinstance(doc.get("outputs"), dict):
        doc["outputs"] = {k: (new if v == old else v) for k, v in doc["outputs"].items()}


# --- writing specs ------------------------------------------------------------------------------
def to_json(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=True, default=str).encode("ascii")


def _toml_string(text: str) -> str:
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:  # TOML cannot hold a lone surrogate
            out.append("\ufffd")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}"
                                for k, v in value.items() if v is not None) + " }"
    raise TypeError(value)


def to_toml(doc) -> bytes:
    """A small TOML writer: tables as sections, lists of tables as [[arrays]], the rest inline."""
    lines = []
    sections = []
    for key, value in doc.items():
        if value is None:
            continue
        if isinstance(value, dict) or (isinstance(value, list) and value and all(
                isinstance(v, dict) for v in value)):
            sections.append((key, value))
        else:
            lines.append(f"{_toml_string(key)} = {_toml_value(value)}")
    for key, value in sections:
        tables = [value] if isinstance(value, dict) else value
        for table in tables:
            lines.append(f"\n[{_toml_string(key)}]" if isinstance(value, dict)
                         else f"\n[[{_toml_string(key)}]]")
            lines += [f"{_toml_string(k)} = {_toml_value(v)}" for k, v in table.items()
                      if v is not None]
    return ("\n".join(lines) + "\n").encode("utf-8")


# --- checking one case --------------------------------------------------------------------------
def assert_located(error, path: Path) -> None:
    """Each problem names the file; its message says what (and is not a traceback)."""
    for problem in getattr(error, "errors", None) or [error]:
        assert isinstance(problem, graphnet.GraphnetError)
        assert problem.file == str(path), f"error does not name the file: {problem}"
        assert problem.message or problem.expected, f"empty message: {problem!r}"
        assert len(str(problem)) < 2000, f"message of {len(str(problem))} characters"
        assert "Traceback" not in str(problem)


def check_case(path: Path, tally, capsys, run: bool = True) -> None:
    started = time.perf_counter()
    try:
        graph = graphnet.load(path)
    except graphnet.GraphnetError as error:
        assert_located(error, path)
        tally.record_error(error)
        graph = None
    else:
        tally.record("ok")
    capsys.readouterr()
    whole_file = spec_problems(graph) if graph is not None else []  # [train], [outputs]
    for problem in whole_file:
        assert_located(problem, path)
    status = main(["check", str(path)])
    captured = capsys.readouterr()
    assert status == (0 if graph is not None and not whole_file else 2), captured.err
    assert "Traceback" not in captured.err + captured.out
    if graph is None or whole_file:
        assert "error:" in captured.err
    elif run:
        run_graph(graph)
        status = main(["inspect", str(path)])  # the views of a valid graph, however odd
        captured = capsys.readouterr()
        assert status == 0 and "Traceback" not in captured.err, captured.err
    assert time.perf_counter() - started < SECONDS_PER_CASE


def run_graph(graph) -> None:
    """Forward and backward on a small random batch: success or a GraphnetError."""
    if memory_estimate(graph, 2, itemsize=8)["training_bytes"] > RUN_BUDGET_BYTES:
        return
    for dtype in ("float32", "float64"):
        try:
            net = graphnet.Network(graph, dtype=dtype, seed=1)
            net.forward(random_feeds(graph, 2, np.random.default_rng(0)), training=True)
            if graph.loss is not None:
                net.backward(input_grads=True)
        except graphnet.GraphnetError as error:
            assert str(error)


# --- the properties -------------------------------------------------------------------------------
@st.composite
def mutated_specs(draw):
    name, base = draw(st.sampled_from(BASES), label="base spec")
    doc = copy.deepcopy(base)
    data = _Drawer(draw)
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        doc = mutate(data, doc)
    fmt = draw(st.sampled_from(["toml", "json"]), label="format")
    if fmt == "toml" and not isinstance(doc, dict):
        fmt = "json"
    return fmt, doc


class _Drawer:
    """Gives ``mutate`` the ``data.draw`` interface inside a composite strategy."""

    def __init__(self, draw):
        self.draw = lambda strategy, label=None: draw(strategy, label=label)


def _spec_case(tmp_path_factory, tally, capsys, case):
    fmt, doc = case
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / f"spec.{fmt}"
    path.write_bytes(to_toml(doc) if fmt == "toml" else to_json(doc))
    check_case(path, tally, capsys)


@settings(CI, max_examples=300)
@given(case=mutated_specs())
def test_mutated_specs_load_or_fail_with_a_located_error(tmp_path_factory, fuzz_tally, capsys,
                                                         case):
    _spec_case(tmp_path_factory, fuzz_tally, capsys, case)


@pytest.mark.slow
@settings(LONG, max_examples=5000)
@given(case=mutated_specs())
def test_mutated_specs_long(tmp_path_factory, fuzz_tally, capsys, case):
    _spec_case(tmp_path_factory, fuzz_tally, capsys, case)


@st.composite
def mutated_bytes(draw):
    name, base = draw(st.sampled_from(BASES), label="base spec")
    fmt = draw(st.sampled_from(["toml", "json"]), label="format")
    source = ROOT / "specs" / name
    raw = bytearray(source.read_bytes() if source.suffix == f".{fmt}" and source.exists()
                    else (to_toml(base) if fmt == "toml" else to_json(base)))
    for _ in range(draw(st.integers(1, 6), label="edits")):
        position = draw(st.integers(0, len(raw)), label="offset")
        edit = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
        if edit == "flip" and position < len(raw):
            raw[position] ^= 1 << draw(st.integers(0, 7))
        elif edit == "insert":
            raw[position:position] = draw(st.one_of(
                st.binary(min_size=1, max_size=8),
                st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"=", b",", b"\n", b"\xff\xfe",
                                 b"\xc3", b"[[nodes]]\n", b"nan", b"1e999", b"\\u", b"\x00"])))
        elif edit == "delete":
            del raw[position:position + draw(st.integers(1, 40))]
        elif edit == "truncate":
            del raw[position:]
        else:
            start = draw(st.integers(0, len(raw)))
            raw[position:position] = raw[start:start + draw(st.integers(1, 60))]
    return fmt, bytes(raw)


def _bytes_case(tmp_path_factory, tally, capsys, case):
    fmt, raw = case
    path = tmp_path_factory.mktemp("bytes") / f"spec.{fmt}"
    path.write_bytes(raw)
    try:
        graphnet.load(path)
    except graphnet.GraphnetError as error:
        assert_located(error, path)
        tally.record_error(error)
        if "syntax error" in error.message and "nested too deeply" not in error.message:
            assert re.search(r"line \d+, column \d+", error.message), error.message
        if "not UTF-8" in error.message:
            assert "offset" in str(error)
    else:
        tally.record("ok")
    status = main(["check", str(path)])
    captured = capsys.readouterr()
    assert status in (0, 2) and "Traceback" not in captured.err


@settings(CI, max_examples=300)
@given(case=mutated_bytes())
def test_mutated_bytes_load_or_fail_with_line_and_column(tmp_path_factory, fuzz_tally, capsys,
                                                         case):
    _bytes_case(tmp_path_factory, fuzz_tally, capsys, case)


@pytest.mark.slow
@settings(LONG, max_examples=5000)
@given(case=mutated_bytes())
def test_mutated_bytes_long(tmp_path_factory, fuzz_tally, capsys, case):
    _bytes_case(tmp_path_factory, fuzz_tally, capsys, case)


# --- the block expander (spec format 2) ----------------------------------------------------------
BLOCK_BASES = [(name, doc) for name, doc in BASES if isinstance(doc.get("blocks"), dict)]
EXPRESSION_PARTS = ["filters", "stride", "channels", "expand", "width", "x", "1", "2", "0",
                    "0.5", "1e308", "+", "-", "*", "/", "//", "**", "(", ")", " ", ".", "[", "]",
                    "'", "__import__('os').system('true')", "lambda: 1", "__class__", "if",
                    "()", "{", "}", "$", ",", "9" * 40]


@st.composite
def expressions(draw):
    text = "".join(draw(st.lists(st.sampled_from(EXPRESSION_PARTS), min_size=0, max_size=12)))
    return draw(st.sampled_from(["${" + text + "}", "$" + text, "x${" + text + "}", "${" + text]))


def mutate_blocks(data, doc):
    """One mutation aimed at blocks: expressions, repeats, arguments, nesting, references."""
    blocks = doc.get("blocks") if isinstance(doc, dict) else None
    if not isinstance(blocks, dict) or not blocks:
        return doc
    name = data.draw(st.sampled_from(sorted(blocks)), label="block")
    block = blocks[name]
    inner = block.get("nodes") if isinstance(block, dict) else None
    inner = inner if isinstance(inner, list) and inner else None
    kind = data.draw(st.sampled_from([
        "expression", "expression", "repeat", "argument", "nest", "self", "rename", "output",
        "inputs", "instance_args"]), label="block mutation")
    nodes = doc.get("nodes")
    top = [n for n in nodes if isinstance(n, dict) and "block" in n] \
        if isinstance(nodes, list) else []
    if kind == "expression" and inner:
        node = data.draw(st.sampled_from(inner))
        if isinstance(node, dict):
            key = data.draw(st.sampled_from(["filters", "kernel", "stride", "padding", "repeat",
                                             "groups", "trainable", "units"]))
            node[key] = data.draw(expressions(), label="expression")
    elif kind == "repeat" and top:
        data.draw(st.sampled_from(top))["repeat"] = data.draw(st.sampled_from(
            [0, 1, 3, 50, 10**6, -1, True, "2", "${2}", 2.0, None]))
    elif kind == "argument" and isinstance(block, dict):
        block["args"] = data.draw(st.sampled_from([
            {}, {"filters": "x"}, {"filters": [1, 2]}, {"bad name": 1}, [], "filters",
            {"filters": 10**12}, {"filters": 0}, {"filters": True}]))
    elif kind == "nest" and inner:
        target = data.draw(st.sampled_from(sorted(blocks) + ["missing"]))
        inner.append({"name": "nested", "block": target,
                      "repeat": data.draw(st.sampled_from([1, 2, 40]))})
    elif kind == "self" and inner:
        inner.insert(0, {"name": "again", "block": name})
    elif kind == "rename":
        blocks[data.draw(st.sampled_from(["", "x y", "名前", name + "2"]))] = blocks.pop(name)
    elif kind == "output" and isinstance(block, dict):
        block["output"] = data.draw(st.sampled_from(["missing", "", 3, None, "conv1"]))
    elif kind == "inputs" and isinstance(block, dict):
        block["inputs"] = data.draw(st.sampled_from([[], ["x", "x"], ["x", "y"], "x", [1], None]))
    elif kind == "instance_args" and top:
        node = data.draw(st.sampled_from(top))
        node[data.draw(st.sampled_from(["filters", "filtres", "op", "weights", "trainable",
                                        "inputs"]))] = data.draw(nasty_values())
    return doc


@st.composite
def mutated_block_specs(draw):
    name, base = draw(st.sampled_from(BLOCK_BASES), label="base spec")
    doc = copy.deepcopy(base)
    data = _Drawer(draw)
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        doc = mutate_blocks(data, doc) if draw(st.booleans()) else mutate(data, doc)
    fmt = draw(st.sampled_from(["toml", "json"]), label="format")
    return (fmt if isinstance(doc, dict) else "json"), doc


@settings(CI, max_examples=150)
@given(case=mutated_block_specs())
def test_mutated_block_specs_expand_or_fail_with_a_located_error(tmp_path_factory, fuzz_tally,
                                                                 capsys, case):
    _spec_case(tmp_path_factory, fuzz_tally, capsys, case)


@pytest.mark.slow
@settings(LONG, max_examples=3000)
@given(case=mutated_block_specs())
def test_mutated_block_specs_long(tmp_path_factory, fuzz_tally, capsys, case):
    _spec_case(tmp_path_factory, fuzz_tally, capsys, case)


# --- regressions the fuzzer found, kept as plain tests -----------------------------------------
@pytest.mark.parametrize("name, text, expected", [
    ("deep.toml", "a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ("deep_tables.toml", "a = " + "{b=" * 3000 + "1" + "}" * 3000, "nested too deeply"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("long_number.json", '{"inputs": {"x": {"shape": [' + "9" * 5000 + "]}}}",
     "5000 digits is too long (at line 1, column 29)"),
    ("open.toml", "[inputs]\nx = { shape = [1,", "line 2, column 18: the end of the file"),
])
def test_parser_limits_are_spec_errors(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(graphnet.SpecError) as caught:
        graphnet.load(path)
    assert expected in str(caught.value) and caught.value.file == str(path)


def test_loss_output_must_name_a_loss_node():
    # A scalar input or a relu of one had passed as the loss, then backward seeded a per-sample
    # value with one scalar and returned a gradient of the wrong shape.
    for loss in ("y", "r"):
        spec = {"inputs": {"y": {"shape": []}}, "nodes": [{"name": "r", "op": "relu"}],
                "outputs": {"loss": loss}}
        with pytest.raises(graphnet.SpecError, match="must name a loss node"):
            graphnet.load(spec)


def test_a_huge_unknown_name_is_clipped_in_the_message(tmp_path):
    spec = {"inputs": {"x": {"shape": [2]}},
            "nodes": [{"name": "r", "op": "relu", "inputs": ["y" * 1_000_000]}],
            "outputs": {"o" * 100_000: "z" * 100_000}}
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(graphnet.SpecError) as caught:
        graphnet.load(path)
    assert len(str(caught.value)) < 2000


def test_a_spec_that_is_not_a_regular_file_is_refused(tmp_path):
    import os
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(graphnet.SpecError, match="not a regular file"):
        graphnet.load(fifo)  # would block forever if it were opened


# --- the [train] section, as `graphnet train` reads it ------------------------------------------
TRAIN_KEYS = ["dataset", "epochs", "batch_size", "eval_batch_size", "optimizer", "schedule", "seed",
              "run_dir", "val_fraction", "clip_norm", "limit_train", "watch", "image_input",
              "label_input", "logits_output", "bogus"]
OVERRIDE_KEYS = TRAIN_KEYS[:-1] + ["lr", "momentum"]
OPTION_KEYS = ["dataset_options", "optimizer_options", "schedule_options"]  # dicts, as flags make
TRAIN_VALUES = [{"name": "adam", "lr": -1}, {"name": "sgd", "momentum": 2}, {"name": 5},
                {"name": "cosine", "warmup": "x"}, {"size": 10**12}, {"path": "/dev/zero"},
                {"name": "step", "step_size": 0}, "adam", "toy", "shapes", "npz", "step", "cosine"]


def _train_value():
    return st.one_of(nasty_values(), st.sampled_from(TRAIN_VALUES).map(copy.deepcopy))


@st.composite
def train_settings(draw):
    """A mutated [train] section and command-line overrides, as `graphnet train` gets them."""
    section = copy.deepcopy(SYNTHETIC[0]["train"])
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(TRAIN_KEYS))
        value = draw(_train_value())
        if draw(st.booleans()) and isinstance(section.get(key), dict) and isinstance(value, dict):
            section[key].update(value)
        else:
            section[key] = value
    overrides = draw(st.dictionaries(st.sampled_from(OVERRIDE_KEYS), _train_value(), max_size=3))
    for key in draw(st.lists(st.sampled_from(OPTION_KEYS), max_size=2, unique=True)):
        overrides[key] = draw(st.dictionaries(st.sampled_from(["size", "lr", "momentum", "path",
                                                               "train", "warmup", "bogus"]),
                                              _train_value(), min_size=1, max_size=2))
    return section, overrides


def _train_case(tally, case):
    from graphnet.train_config import TrainConfig

    section, overrides = case
    spec = copy.deepcopy(SYNTHETIC[0])
    spec["train"] = section
    graph = graphnet.load(spec)
    try:
        TrainConfig.from_graph(graph, overrides)
    except graphnet.GraphnetError as error:
        assert error.field or error.file, f"unlocated: {error}"
        assert len(str(error)) < 2000
        tally.record_error(error)
    else:
        tally.record("ok")


@settings(CI, max_examples=200)
@given(case=train_settings())
def test_mutated_train_settings_configure_or_fail_with_a_located_error(fuzz_tally, case):
    _train_case(fuzz_tally, case)


@pytest.mark.slow
@settings(LONG, max_examples=5000)
@given(case=train_settings())
def test_mutated_train_settings_long(fuzz_tally, case):
    _train_case(fuzz_tally, case)


def test_any_detail_is_clipped_in_the_message():
    error = graphnet.UsageError("wrong type", field="dataset", expected="a name",
                                found=repr([0] * 100_000))
    assert len(str(error)) < 400 and "(300,000 characters)" in str(error)
