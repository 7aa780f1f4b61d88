"""Resource bombs: a spec that would need more memory than the machine has is caught from its
numbers alone, instantly and without allocating; deep and wide graphs stay linear and never
recurse."""
from __future__ import annotations

import json
import sys
import time
import tracemalloc

import numpy as np
import pytest

import graphnet
from graphnet import limits
from graphnet.cli import main

IMAGE_BOMB = {"inputs": {"x": {"shape": [3, 100_000, 100_000]}},
              "nodes": [{"name": "act", "op": "relu"}]}
WEIGHT_BOMB = {"inputs": {"x": {"shape": [1_000_000]}},
               "nodes": [{"name": "fc", "op": "dense", "units": 1_000_000}]}  # 10¹² weights


@pytest.fixture
def no_limit_env(monkeypatch):
    monkeypatch.delenv(limits.LIMIT_ENV, raising=False)


@pytest.mark.parametrize("text, size", [
    ("8GiB", 8 * 2**30), ("8 GB", 8 * 10**9), ("512mib", 512 * 2**20), ("1e9", 10**9),
    ("1000", 1000), (4096, 4096), ("1.5KiB", 1536), ("none", None), ("Unlimited", None)])
def test_sizes_parse(text, size):
    assert limits.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "8XB", "-1", "0", "GiB", "1e999", "nan", "8 G i B"])
def test_bad_sizes_name_the_setting(text):
    with pytest.raises(graphnet.UsageError) as caught:
        limits.parse_size(text, field="--memory-limit")
    assert "--memory-limit" in str(caught.value)


def test_limit_precedence(monkeypatch, no_limit_env):
    physical = limits.physical_memory()
    assert physical and limits.memory_limit() == int(physical * limits.DEFAULT_FRACTION)
    monkeypatch.setenv(limits.LIMIT_ENV, "2GiB")
    assert limits.memory_limit() == 2 * 2**30
    assert limits.memory_limit("1MiB") == 2**20  # the argument wins over the environment
    monkeypatch.setenv(limits.LIMIT_ENV, "lots")
    with pytest.raises(graphnet.UsageError, match=limits.LIMIT_ENV):
        limits.memory_limit()


def test_a_limit_in_force_stands_for_the_environment_within_and_only_within(monkeypatch):
    monkeypatch.setenv(limits.LIMIT_ENV, "2GiB")
    with limits.limit_in_force("1MiB"):
        assert limits.memory_limit() == 2**20             # files and datasets read within
        assert limits.memory_limit("3MiB") == 3 * 2**20   # an explicit argument still wins
        with limits.limit_in_force(None):                 # none given: the one in force stays
            assert limits.memory_limit() == 2**20
    assert limits.memory_limit() == 2 * 2**30
    with pytest.raises(graphnet.UsageError, match="--memory-limit"):
        with limits.limit_in_force("lots"):
            pass


def _allocation_peak(action) -> int:
    tracemalloc.start()
    try:
        action()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_an_image_bomb_is_estimated_instantly_without_allocating(no_limit_env):
    started = time.perf_counter()
    holder = {}
    peak = _allocation_peak(lambda: holder.update(graph=graphnet.load(IMAGE_BOMB)))
    graph = holder["graph"]
    memory = limits.estimate(graph, batch_size=1)
    assert time.perf_counter() - started < 2 and peak < 50 * 2**20
    assert memory.activation_bytes == 2 * 3 * 10**10 * 4  # input and relu output, float32
    assert memory.exceeds
    with pytest.raises(graphnet.ResourceError) as caught:
        limits.check_memory(graph, batch_size=1)
    message = str(caught.value)
    assert "223.5 GiB" in message and "memory limit of" in message and "--memory-limit" in message


def test_network_refuses_a_weight_bomb_before_allocating(no_limit_env):
    graph = graphnet.load(WEIGHT_BOMB)
    caught = {}

    def build():
        try:
            graphnet.Network(graph)
        except graphnet.ResourceError as error:
            caught["error"] = error
    peak = _allocation_peak(build)
    assert peak < 50 * 2**20, "the network allocated before refusing"
    message = str(caught["error"])
    assert "3.6 TiB" in message and "1,000,001,000,000" in message
    assert "memory limit of" in message


def test_the_limit_can_be_raised_or_lowered_per_network(monkeypatch):
    graph = graphnet.load({"inputs": {"x": {"shape": [64]}},
                           "nodes": [{"name": "fc", "op": "dense", "units": 64}]})
    monkeypatch.setenv(limits.LIMIT_ENV, "1KiB")
    with pytest.raises(graphnet.ResourceError, match="1.0 KiB"):
        graphnet.Network(graph)
    net = graphnet.Network(graph, memory_limit="1MiB")
    net.forward({"x": np.ones((4, 64))})
    with pytest.raises(graphnet.ResourceError, match="batch size 4000"):
        net.forward({"x": np.ones((4000, 64))})  # refused from the estimate, before running
    graphnet.Network(graph, memory_limit="none").forward({"x": np.ones((4000, 64))})


def test_check_warns_with_the_estimate_and_still_passes(tmp_path, capsys, no_limit_env):
    paths = []
    for name, spec in (("image.json", IMAGE_BOMB), ("weights.json", WEIGHT_BOMB)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(spec))
    started = time.perf_counter()
    status = main(["check", *map(str, paths)])
    captured = capsys.readouterr()
    assert status == 0 and time.perf_counter() - started < 5
    assert "image.json: the graph needs about 447.0 GiB to train at batch size 1" in captured.err
    assert "weights.json: the graph needs about 14.6 TiB to train" in captured.err
    assert main(["check", str(paths[1]), "--memory-limit", "none"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["check", str(paths[1]), "--memory-limit", "lots"]) == 2
    assert "field '--memory-limit': bad memory size" in capsys.readouterr().err


def _deep_spec(length: int, fan_in: int) -> dict:
    nodes = []
    for position in range(length):
        if position % 2 == 0:
            nodes.append({"name": f"fc{position}", "op": "dense", "units": 4})
        else:
            nodes.append({"name": f"relu{position}", "op": "relu"})
    nodes[0]["inputs"] = ["x"]
    nodes.append({"name": "fan_in", "op": "add", "inputs": [nodes[-1]["name"]] * fan_in})
    nodes.append({"name": "wide", "op": "add",
                  "inputs": [n["name"] for n in nodes[-201:-1] if n["op"] == "relu"]})
    nodes.append({"name": "loss", "op": "mse_loss", "inputs": ["wide", "target"]})
    return {"inputs": {"x": {"shape": [4]}, "target": {"shape": [4]}}, "nodes": nodes,
            "outputs": {"loss": "loss"}}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_deep_and_wide_graph_runs_without_recursion_in_reasonable_time(tmp_path, capsys, dtype):
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(_deep_spec(5000, 2000)))
    started = time.perf_counter()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(400)  # anything recursive per node fails loudly on 5000 nodes
    try:
        graph = graphnet.load(path)
        net = graphnet.Network(graph, dtype=dtype)
        rng = np.random.default_rng(0)
        net.forward({"x": rng.standard_normal((2, 4)), "target": np.zeros((2, 4))},
                    training=True, check_finite=True)
        grads = net.backward(check_finite=True, input_grads=True)
    finally:
        sys.setrecursionlimit(limit)
    assert len(graph.order) == 5000 + 2 + 3
    assert grads.inputs["x"].shape == (2, 4) and grads.inputs["x"].dtype == np.dtype(dtype)
    assert main(["check", str(path)]) == 0
    assert "5003 nodes" in capsys.readouterr().out
    assert time.perf_counter() - started < 20


def test_graph_passes_scale_linearly_in_node_count():
    """Ten times the nodes may cost at most ~25 times the time (quadratic would be 100)."""
    def seconds(length):
        spec = _deep_spec(length, 2)
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            graph = graphnet.load(spec)
            for name in graph.order:
                graph.consumers(name)
            best = min(best, time.perf_counter() - started)
        return best
    small, large = seconds(400), seconds(4000)
    assert large < 25 * small + 0.5, (small, large)


def test_consumers_come_in_execution_order():
    graph = graphnet.load({"inputs": {"x": {"shape": [2]}},
                           "nodes": [{"name": "b", "op": "relu", "inputs": ["a"]},
                                     {"name": "a", "op": "relu", "inputs": ["x"]},
                                     {"name": "c", "op": "add", "inputs": ["x", "b", "x"]}],
                           "outputs": {"c": "c"}})
    assert graph.consumers("x") == ["a", "c"]
    assert graph.consumers("a") == ["b"] and graph.consumers("c") == []


def test_thousands_of_unknown_names_are_reported_quickly():
    spec = {"inputs": {"x": {"shape": [4]}},
            "nodes": [{"name": f"n{i}", "op": "relu", "inputs": [f"missing{i}"]}
                      for i in range(3000)]}
    started = time.perf_counter()
    with pytest.raises(graphnet.SpecErrors) as caught:
        graphnet.load(spec)
    assert len(caught.value.errors) == 3000 and time.perf_counter() - started < 5


def _padded_copy_sizes(window) -> tuple[int, ...]:
    """What a layer over this SlidingWindow really pads its input to (pooling and conv read
    ``read_hw``: the padding and the ceil_mode overhang), or (0,) when it pads nothing."""
    return tuple(window.read_hw) if any(window.read_pads) else (0,)


def _windows():
    """Every combination of four-sided padding, stride, dilation and ceil_mode over a 7×9 input
    that makes a window of at least one output (as SlidingWindow.of would accept)."""
    from itertools import product

    from plugins._window import SlidingWindow

    for pads, stride, dilation, kernel, ceil_mode in product(
            [(0, 0, 0, 0), (1, 1, 1, 1), (0, 0, 5, 3), (4, 2, 0, 0), (3, 0, 1, 6), (0, 0, 30, 30)],
            [1, 2, 3, 40], [1, 2], [1, 2, 3], [False, True]):
        window = SlidingWindow.resolve((7, 9), kernel, stride=stride, padding=list(pads),
                                       dilation=dilation, ceil_mode=ceil_mode)
        if all(extent <= size for extent, size in zip(window.extent, window.padded_hw)) and \
                min(window.output_hw) >= 1:
            yield window


def test_a_window_s_padded_copy_is_estimated_exactly_when_it_states_its_end_padding():
    """As conv2d and the pools state it (SlidingWindow.field_window), ceil_mode's overhang
    included."""
    for window in _windows():
        assert limits._padded_sizes(window.field_window(), window.input_hw,
                                    window.output_hw) == _padded_copy_sizes(window), window


def test_the_built_in_layers_state_their_end_padding():
    """conv2d's and max_pool2d's estimate is the padded copy itself, not the upper bound an
    unstated end padding gets."""
    graph = graphnet.load({"inputs": {"x": {"shape": [2, 9, 9]}}, "nodes": [
        {"name": "c", "op": "conv2d", "filters": 2, "kernel": 3, "stride": 4,
         "padding": [0, 0, 7, 5]},
        {"name": "p", "op": "max_pool2d", "inputs": ["x"], "kernel": 2, "ceil_mode": True}]})
    for name, padded in (("c", (16, 14)), ("p", (10, 10))):
        window = limits._window_of(graph, name)
        assert limits._padded_sizes(window, (9, 9), graph.nodes[name].shape[1:]) == padded


def test_a_window_that_leaves_its_end_padding_unstated_is_never_underestimated_by_much():
    """Without the end padding the estimate takes the most the output's size allows: never
    less than the copy, so an end padding cannot slip a padded copy past the memory limit.
    The one case it counts no copy (nothing before the input, no window past it, no pixel
    skipped) pads at most a kernel's span."""
    from graphnet.op import Window

    for window in _windows():
        unstated = Window(window.kernel, window.stride, window.before, window.dilation)
        estimated = limits._padded_sizes(unstated, window.input_hw, window.output_hw)
        real = _padded_copy_sizes(window)
        if estimated == (0,):
            assert all(size <= hw + extent for size, hw, extent in
                       zip(real, window.input_hw, window.extent)) or real == (0,), window
        else:
            assert all(guess >= size for guess, size in zip(estimated, real)), window


def test_end_padding_past_a_huge_stride_counts_against_the_limit(no_limit_env):
    """A 1×8×8 input padded only at its end by 99999 under a stride of 100000: two outputs a
    side, a 100007×100007 padded copy (37 GiB). The estimate missed it (296 bytes) and the
    layer's first call asked numpy for the 37 GiB."""
    graph = graphnet.load({"inputs": {"x": {"shape": [1, 8, 8]}},
                           "nodes": [{"name": "c", "op": "conv2d", "filters": 1, "kernel": 1,
                                      "stride": 100000, "padding": [0, 0, 99999, 99999]}]})
    assert graph.nodes["c"].shape == (1, 2, 2)
    found = limits.estimate(graph, batch_size=1, limit="16GiB")
    assert found.scratch_bytes >= 100007 ** 2 * 4 and found.exceeds
    network = graphnet.Network(graph, memory_limit="16GiB")
    with pytest.raises(graphnet.ResourceError, match="padded and gathered windows"):
        network.forward({"x": np.zeros((1, 1, 8, 8), np.float32)})
