"""Shared fixtures: paths of the example specs and a helper to run the real CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


@pytest.fixture(autouse=True)
def default_conv_kernels(monkeypatch):
    """Every test runs each conv's default kernel unless it says otherwise: a network measures
    its kernels (graphnet_plugins.conv), and a choice made by timing on a busy machine would
    make tests that compare two runs bit for bit depend on the load. The tests of the choice
    itself (tests/plugins/test_conv_choice.py) lift this."""
    monkeypatch.setenv("GRAPHNET_CONV_KERNEL", "default")


@pytest.fixture
def specs_dir() -> Path:
    return SPECS


@pytest.fixture
def run_cli(capsys):
    """Run ``graphnet ARGS`` in-process; returns (exit status, stdout, stderr)."""
    def run(*args):
        status = main([str(a) for a in args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err
    return run


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec dict as TOML-free JSON (or raw text) into tmp_path; returns the path."""
    def write(content, name="spec.json"):
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path
    return write


def _scaled(data: dict, *, size=None, divide=1, keys=("filters",), units=None) -> dict:
    """A spec's small variant: a smaller image, fewer filters (top-level nodes and block
    arguments given there), fewer classes; the structure stays the same."""
    if size is not None:
        data["inputs"]["image"]["shape"][1:] = [size, size]
    for node in data["nodes"]:
        for key in keys:
            if isinstance(node.get(key), int):
                node[key] = max(1, node[key] // divide)
        if units and node.get("op") == "dense":
            node["units"] = units
    return data


SMALL_VARIANTS = {
    # Full size is too slow to run in the default suite: run and gradcheck these instead.
    # ResNet-18's stem and stages at 1/16 of the width, on 32×32 (layer4 is then 1×1).
    "resnet18.toml": lambda data: _scaled(data, size=32, divide=16, units=10),
    "vgg11.toml": lambda data: _scaled(data, divide=16),
    "cifar_resnet.toml": lambda data: _scaled(data, size=8, divide=4),
    "mobilenet_v2.toml": lambda data: _scaled(data, size=8, divide=4,
                                              keys=("filters", "channels")),
    "inception.toml": lambda data: _scaled(data, size=8),
}


@pytest.fixture
def load_for_running():
    """``load(path)``: an example spec's graph, or its small variant when it has one (the
    big specs are too slow to run at full size in the default suite)."""
    from graphnet.graph import load
    from graphnet.spec import read_spec_file

    def load_spec_file(path: Path):
        if path.name not in SMALL_VARIANTS:
            return load(path)
        return load(SMALL_VARIANTS[path.name](read_spec_file(path)))
    load_spec_file.variants = frozenset(SMALL_VARIANTS)
    return load_spec_file
