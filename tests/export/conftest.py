"""Fixtures shared by the exporters' tests."""
from __future__ import annotations

from pathlib import Path

import pytest

PRELU = Path(__file__).resolve().parents[2] / "plugins" / "examples" / "prelu.py"


@pytest.fixture
def prelu_variant(tmp_path, write_spec):
    """``make(op_name, *edits)``: a copy of the PReLU example registered as ``op_name``, its
    source changed by each (old, new) edit, and a one-node spec using it (node
    ``learned_slope``): returns (spec path, plugin path)."""
    def make(op_name, *edits):
        source = PRELU.read_text().replace('"prelu"', f'"{op_name}"')
        for old, new in edits:
            source = source.replace(old, new)
        plugin = tmp_path / f"{op_name}.py"
        plugin.write_text(source)
        spec = write_spec({
            "graph": {"name": "user op"}, "inputs": {"x": {"shape": [2, 4, 4]}},
            "nodes": [{"name": "learned_slope", "op": op_name, "inputs": ["x"]}],
            "outputs": {"y": "learned_slope"}})
        return spec, plugin
    return make


@pytest.fixture
def builtin_ops() -> dict:
    """The built-in ops' classes by name."""
    from graphnet.registry import get_registry

    registry = get_registry()
    ops = {name: type(registry.op(name)) for name in registry.names("op")
           if registry.plugin_of("op", name).startswith("builtin:")}
    assert ops
    return ops


@pytest.fixture
def assert_generic(builtin_ops):
    """``check(module)``: the exporter graphnet/export/<module> names no built-in op and treats
    no plugin specially (every op reaches it through the op contract alone)."""
    def check(module: str):
        exporter = (PRELU.parents[2] / "graphnet" / "export" / module).read_text()
        assert "builtin:" not in exporter
        assert not [name for name in builtin_ops
                    if f'"{name}"' in exporter or f"'{name}'" in exporter]
    return check
