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


ADDRESS_SPACE = 1 << 30
"""Address space a bounded child may map: python, numpy and a small graph fit in half of it;
a bomb that got past its check fails the test with a MemoryError instead of taking the machine."""
FILE_LIMIT = "256MiB"
"""GRAPHNET_MEMORY_LIMIT of a bounded child: what files and graphs are checked against."""


class Bounded:
    """What a bounded CLI run did: ``status``, ``out``, ``err`` and ``peak`` (max RSS, bytes)."""

    def __init__(self, status, out, err, peak):
        self.status, self.out, self.err, self.peak = status, out, err, peak

    def refused(self, *phrases) -> bool:
        """Exit 2 with one message (no traceback) holding every phrase."""
        return (self.status == 2 and "Traceback" not in self.err
                and all(phrase in self.err for phrase in phrases))

    def __repr__(self):
        return f"Bounded(status={self.status}, peak={self.peak >> 20} MiB, err={self.err[-600:]!r})"


_BOUNDED_CHILD = """
import atexit, resource, sys
limit, peak_file = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

def report():  # VmHWM: this process's own peak (ru_maxrss would count the forking parent's)
    with open("/proc/self/status") as status:
        peak = next((line.split()[1] for line in status if line.startswith("VmHWM")), "0")
    with open(peak_file, "w") as stream:
        stream.write(peak)

atexit.register(report)
sys.argv = ["graphnet", *sys.argv[3:]]
from graphnet.cli import main
sys.exit(main())
"""


def run_bounded(*args, env=None, timeout=120, cwd=None, address_space=ADDRESS_SPACE) -> Bounded:
    """The real ``graphnet`` command in a child bounded in time (killed after ``timeout`` s:
    a hang fails the test) and in address space (RLIMIT_AS, set in the child), with the file
    limit set; ``peak`` is the child's own peak resident memory."""
    import tempfile

    environment = dict(os.environ, COLUMNS="200", GRAPHNET_MEMORY_LIMIT=FILE_LIMIT)
    environment.update(env or {})
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = os.path.join(scratch, "peak")
        try:
            completed = subprocess.run(
                [sys.executable, "-c", _BOUNDED_CHILD, str(address_space), peak_file,
                 *map(str, args)], capture_output=True, text=True, env=environment, cwd=cwd,
                timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"graphnet {' '.join(map(str, args))} did not finish in {timeout} s")
        try:
            with open(peak_file) as stream:
                peak = int(stream.read() or 0) * 1024
        except FileNotFoundError:  # killed before exit handlers ran
            peak = 0
    return Bounded(completed.returncode, completed.stdout, completed.stderr, peak)


@pytest.fixture
def bounded_cli():
    """:func:`run_bounded`: the CLI in a child bounded in time and address space."""
    return run_bounded


@pytest.fixture(scope="session")
def train_once(tmp_path_factory):
    """``train_once(spec, name)`` → (spec path, checkpoint path): the spec (a dict) trained by
    the real ``graphnet train`` once per session; tests copy the checkpoint before spoiling it."""
    import json

    from graphnet.cli import main

    made = {}

    def train(spec: dict, name: str):
        key = json.dumps(spec, sort_keys=True)
        if key not in made:
            folder = tmp_path_factory.mktemp(name)
            path = folder / f"{name}.json"
            path.write_text(key)
            assert main(["train", str(path), "--run-dir", str(folder / "run")]) == 0
            made[key] = (path, folder / "run" / "checkpoint.npz")
        return made[key]
    return train


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
