"""Shared fixtures: paths of the example specs and a helper to run the real CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from graphnet.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


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
