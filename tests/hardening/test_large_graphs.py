"""A 10,000-node chain and a 4,000-way fan-out through every command, each child bounded in
time and address space: a hang or a quadratic pass fails (the bound is generous — speed is
not measured, only that nothing takes minutes). The default run covers the commands that
once were quadratic; ``pytest -m slow`` runs every command."""
from __future__ import annotations

import json

import pytest

TIME_BOUND = 300
"""Seconds a command may take on a 10k-node graph: minutes only when something is quadratic
(``inspect --format json`` took 38 s on the chain and over two minutes on the fan-out)."""


def _graph(kind: str, size: int) -> dict:
    if kind == "chain":
        nodes = [{"name": f"relu{i}", "op": "relu"} for i in range(size)]
        nodes[0]["inputs"] = ["image"]
        last = [nodes[-1]["name"]]
    else:
        nodes = [{"name": f"branch{i}", "op": "relu", "inputs": ["image"]} for i in range(size)]
        nodes.append({"name": "merge", "op": "add", "inputs": [n["name"] for n in nodes]})
        last = ["merge"]
    nodes += [{"name": "flat", "op": "flatten", "inputs": last},
              {"name": "fc", "op": "dense", "units": 10},
              {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}]
    return {"graph": {"name": f"{kind}{size}"},
            "inputs": {"image": {"shape": [1, 16, 16]}, "label": {"shape": [], "dtype": "int64"}},
            "nodes": nodes, "outputs": {"logits": "fc", "loss": "loss"},
            "train": {"epochs": 1, "batch_size": 10,
                      "dataset": {"name": "shapes", "channels": 1, "size": 16,
                                  "train_size": 10, "test_size": 10}}}


GRAPHS = [("chain", 10_000), ("fan", 4_000)]
FAST = [["inspect", "--format", "json"]]
EVERY = [["check"], ["inspect"], ["inspect", "--format", "dot"], ["inspect", "--format", "mermaid"],
         ["gradcheck", "--points", "0", "--batch-size", "1"], ["train", "--run-dir", "RUN"],
         ["bench", "--batch-size", "2", "--steps", "1", "--warmup", "0", "--no-memory"]]


def _run(tmp_path, bounded_cli, kind, size, command):
    spec = tmp_path / f"{kind}.json"
    spec.write_text(json.dumps(_graph(kind, size)))
    args = [str(tmp_path / "run") if word == "RUN" else word for word in command]
    result = bounded_cli(args[0], spec, *args[1:], timeout=TIME_BOUND,
                         env={"GRAPHNET_MEMORY_LIMIT": "2GiB"}, address_space=3 << 30)
    # gradcheck may find a 4000-way sum's round-off past its tolerance (exit 1): it finished
    finished = (0, 1) if command[0] == "gradcheck" else (0,)
    assert result.status in finished and "Traceback" not in result.err, (command, result)
    return result


@pytest.mark.parametrize("kind, size", GRAPHS)
@pytest.mark.parametrize("command", FAST, ids=" ".join)
def test_large_graphs_inspect_json(tmp_path, bounded_cli, kind, size, command):
    result = _run(tmp_path, bounded_cli, kind, size, command)
    if command[-1] == "json":
        assert len(json.loads(result.out)["nodes"]) == size + 2 + 3 + (kind == "fan")


@pytest.mark.slow
@pytest.mark.parametrize("kind, size", GRAPHS)
@pytest.mark.parametrize("command", EVERY, ids=" ".join)
def test_large_graphs_through_every_command(tmp_path, bounded_cli, kind, size, command):
    result = _run(tmp_path, bounded_cli, kind, size, command)
    if command == ["inspect"]:
        assert "…" in result.out or kind == "chain"  # the fan-out's lanes are cut, not drawn
