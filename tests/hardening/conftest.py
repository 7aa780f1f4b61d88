"""Hardening tests: hypothesis profiles, the fuzz tally, and helpers shared by the fault tests.

Profiles, named by the tests that use them (never loaded globally, so other tests keep theirs):
``hardening-ci`` (a few hundred examples, derandomized, no deadline) for the CI forms and
``hardening-long`` for the ``@pytest.mark.slow`` forms (``pytest -m slow``).

Test modules run under ``--import-mode=importlib`` and cannot import this file; what they share
is handed out as fixtures.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[2]

settings.register_profile(
    "hardening-ci", max_examples=150, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
settings.register_profile(
    "hardening-long", max_examples=3000, deadline=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])


class FuzzTally:
    """How many fuzzed cases ran and which outcomes they reached (error class + message template)."""

    def __init__(self):
        self.cases = 0
        self.outcomes: Counter = Counter()

    def record(self, outcome: str) -> None:
        self.cases += 1
        self.outcomes[outcome] += 1

    def record_error(self, error) -> None:
        for problem in getattr(error, "errors", None) or [error]:
            self.outcomes[f"{type(problem).__name__}: {message_template(problem)}"] += 1
        self.cases += 1


def message_template(error) -> str:
    """The error's message with names, numbers and shapes replaced, so equal kinds count once."""
    text = getattr(error, "message", str(error))
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\d+(×\d+)*", "N", text)
    return text[:100]


_TALLY = FuzzTally()


@pytest.fixture(scope="session")
def fuzz_tally() -> FuzzTally:
    return _TALLY


def pytest_terminal_summary(terminalreporter):
    if not _TALLY.cases:
        return
    kinds = [k for k in _TALLY.outcomes if k != "ok"]
    terminalreporter.write_sep("-", "hardening fuzz tally")
    terminalreporter.write_line(f"{_TALLY.cases} fuzzed cases, {_TALLY.outcomes['ok']} valid, "
                                f"{len(kinds)} distinct error kinds")
    if os.environ.get("GRAPHNET_FUZZ_TALLY"):
        for kind, count in _TALLY.outcomes.most_common():
            terminalreporter.write_line(f"{count:6d}  {kind}")


@pytest.fixture
def graphnet_cmd():
    """Run the real ``graphnet`` command in a subprocess: (status, stdout, stderr)."""
    def run(*args, env=None, timeout=120, cwd=None):
        environment = dict(os.environ, **(env or {}))
        environment.setdefault("COLUMNS", "200")
        completed = subprocess.run([sys.executable, "-m", "graphnet.cli", *map(str, args)],
                                   capture_output=True, text=True, env=environment,
                                   timeout=timeout, cwd=cwd)
        return completed.returncode, completed.stdout, completed.stderr
    return run


def _rewrite_meta(path, **changes) -> None:
    """Change keys of a checkpoint's JSON metadata in place, leaving every array as it was."""
    import io
    import json
    import zipfile

    import numpy as np

    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    meta = json.loads(np.load(io.BytesIO(members["meta.npy"]), allow_pickle=False).tobytes())
    meta.update(changes)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    members["meta.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.fixture
def rewrite_checkpoint_meta():
    return _rewrite_meta
