"""graphnet.bench's measurement of the machine around the timed steps (the figures themselves
are machine-dependent and never asserted: see tests/commands/test_bench.py)."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from graphnet.bench import OtherProcesses, other_cores


def test_other_cores_is_the_machines_busy_time_less_this_processs_per_second():
    # 2 s of wall time, 3 s of busy CPU on the machine, 1 of them this process's own
    assert other_cores((10.0, 100.0, 5.0), (12.0, 103.0, 6.0)) == pytest.approx(1.0)
    # the machine's clock ticks apart from this process's: never below nothing
    assert other_cores((10.0, 100.0, 5.0), (11.0, 100.0, 5.2)) == 0.0
    assert other_cores((10.0, 100.0, 5.0), (10.0, 100.0, 5.0)) == 0.0


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux's /proc/stat only")
def test_a_process_spinning_beside_the_steps_is_seen():
    """What the benchmark's rows are retaken for (bench/run.sh): another process keeping a
    core busy while this one waits."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started and spinning
        others = OtherProcesses()
        time.sleep(1.0)
        assert others.cores() >= 0.5
    finally:
        spinner.kill()
        spinner.wait()
