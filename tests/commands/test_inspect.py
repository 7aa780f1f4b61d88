"""``graphnet inspect``: the formats for scripts, the receptive-field picture, warnings on
stderr, user plugins, and colour only where a terminal is attached."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PRELU_SPEC = {
    "graph": {"name": "with_prelu"},
    "inputs": {"image": {"shape": [1, 8, 8]}},
    "nodes": [{"name": "conv", "op": "conv2d", "inputs": ["image"], "filters": 4, "kernel": 3},
              {"name": "act", "op": "prelu"}],
    "outputs": {"y": "act"},
}


def test_json_holds_the_figures(run_cli, specs_dir):
    status, out, err = run_cli("inspect", specs_dir / "lenet5.toml", "--format", "json",
                               "--batch-size", "8")
    assert status == 0, err
    figures = json.loads(out)
    nodes = {row["name"]: row for row in figures["nodes"]}
    assert [row["name"] for row in figures["nodes"]][:2] == ["image", "label"]
    assert nodes["image"]["op"] == "input" and nodes["image"]["output_shape"] == [1, 28, 28]
    assert (nodes["conv1"]["params"], nodes["conv1"]["macs"]) == (156, 117600)
    assert nodes["conv1"]["receptive_field"] == {"size": [5, 5], "jump": [1, 1],
                                                 "start": [-2, -2]}
    assert nodes["fc1"]["receptive_field"] is None
    totals = figures["totals"]
    assert totals["params"] == 61706 and totals["batch_size"] == 8
    assert totals["parameter_bytes"] == 61706 * 4
    assert set(totals) >= {"params", "macs", "activation_bytes", "parameter_bytes", "batch_size"}


def test_dot_and_mermaid(run_cli, specs_dir):
    status, dot, _ = run_cli("inspect", specs_dir / "branching.json", "--format", "dot")
    assert status == 0 and dot.startswith('digraph "branching" {')
    edges = 15 + 2 + 3 + 2  # 15 single-input nodes, the add, the concat, the loss
    assert dot.count(" -> ") == edges and '"stem_relu" -> "skip";' in dot
    status, mermaid, _ = run_cli("inspect", specs_dir / "branching.json", "--format", "mermaid")
    assert status == 0 and mermaid.splitlines()[0] == "flowchart TD"
    assert mermaid.count(" --> ") == edges


def test_table_and_warnings_on_stderr(run_cli, write_spec):
    spec = {"inputs": {"x": {"shape": [2, 6, 6]}, "unused_input": {"shape": [3]}},
            "nodes": [{"name": "a", "op": "relu", "inputs": ["x"]},
                      {"name": "dead_end", "op": "relu", "inputs": ["x"]}],
            "outputs": {"y": "a"}}
    status, out, err = run_cli("inspect", write_spec(spec))
    assert status == 0
    assert "warning" in err and "dead_end" in err and "unused_input" in err
    assert "dead_end" in out and "warning" not in out


def test_receptive_field_picture_and_its_json(run_cli, specs_dir):
    status, out, _ = run_cli("inspect", specs_dir / "lenet5.toml", "--rf", "conv2")
    assert status == 0 and "◉" in out and "14×14 pixels" in out
    status, out, _ = run_cli("inspect", specs_dir / "lenet5.toml", "--rf", "conv2",
                             "--unit", "0,9", "--format", "json")
    view = json.loads(out)
    assert view["unit"] == [0, 9] and view["box"]["top"] == -2 and view["padded"]


@pytest.mark.parametrize("args, message", [
    (["--rf", "conv9"], "unknown node"),
    (["--unit", "1,1"], "--unit needs --rf"),
    (["--rf", "conv2", "--unit", "99,0"], "outside"),
    (["--rf", "conv2", "--format", "dot"], "--format"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_usage_errors_exit_2(run_cli, specs_dir, args, message):
    status, out, err = run_cli("inspect", specs_dir / "lenet5.toml", *args)
    assert status == 2 and message in err and "Traceback" not in err


def test_a_spec_using_a_user_plugin(run_cli, write_spec):
    spec = write_spec(PRELU_SPEC)
    plugin = ROOT / "plugins" / "examples" / "prelu.py"
    status, out, err = run_cli("inspect", spec, "--plugin", plugin, "--format", "json")
    assert status == 0, err
    act = json.loads(out)["nodes"][-1]
    assert act["op"] == "prelu" and act["params"] == 4 and act["plugin"] == str(plugin)
    status, out, _ = run_cli("inspect", spec, "--plugin", plugin)
    assert status == 0 and "prelu" in out
    status, _, err = run_cli("inspect", spec)
    assert status == 2 and "prelu" in err


# --- colour only on a terminal ------------------------------------------------------------------

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def colour_codes(text: str) -> list[str]:
    """SGR sequences that set a colour (not bold or reset)."""
    found = []
    for params in SGR.findall(text):
        numbers = [int(p) for p in params.split(";") if p]
        if any(n in (38, 48) or 30 <= n <= 37 or 40 <= n <= 47 or 90 <= n <= 97
               or 100 <= n <= 107 for n in numbers):
            found.append(params)
    return found


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
                        "COLUMNS", "LINES")}
    env.update(extra)
    return env


def run_in_pty(args, env, columns=100) -> str:
    """Run ``python -m graphnet.cli ARGS`` with a pseudo-terminal as stdout and stderr."""
    import fcntl
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen([sys.executable, "-m", "graphnet.cli", *args], cwd=ROOT,
                               stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        process.wait(timeout=60)
    assert process.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_colour_on_a_terminal_and_none_when_piped():
    args = ["inspect", "specs/branching.json"]
    on_terminal = run_in_pty(args, clean_env(COLUMNS="100", TERM="xterm-256color"))
    assert colour_codes(on_terminal), "expected colour escape codes on a terminal"
    assert "merge" in on_terminal and "stem_relu" in on_terminal

    piped = subprocess.run([sys.executable, "-m", "graphnet.cli", *args], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=clean_env(COLUMNS="100", TERM="xterm-256color"), check=True)
    text = piped.stdout.decode()
    assert "\x1b" not in text and "merge" in text
    assert max(len(line) for line in text.splitlines()) <= 100

    no_color = run_in_pty(args, clean_env(COLUMNS="100", TERM="xterm-256color", NO_COLOR="1"))
    assert not colour_codes(no_color) and "merge" in no_color


def test_a_resource_bomb_is_estimated_without_allocating(write_spec, run_cli):
    """A 3×100000×100000 input and a dense layer of 10¹² weights: figures at once, a warning."""
    path = write_spec({"inputs": {"image": {"shape": [3, 100000, 100000]}}, "nodes": [
        {"name": "conv", "op": "conv2d", "filters": 8, "kernel": 3},
        {"name": "fc", "op": "dense", "units": 1000000}]})
    status, out, err = run_cli("inspect", path, "--format", "json", "--batch-size", "64")
    assert status == 0
    assert "more than the memory limit" in err and "batch size 64" in err
    import json
    fc = next(n for n in json.loads(out)["nodes"] if n["name"] == "fc")
    assert fc["params"] == 8 * 99998 * 99998 * 1000000 + 1000000   # weights + biases
