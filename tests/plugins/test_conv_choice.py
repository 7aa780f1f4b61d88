"""Which kernel a conv node runs in a network: measured among those that fit the first time it
runs (alike layers once), recorded per node, pinned by the network, by GRAPHNET_CONV_KERNEL or
by a checkpoint on resume; float64 and ops outside a network keep the default. No timing is
asserted: the measurement is replaced where a test needs to know its outcome."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import graphnet
from graphnet.checkpoint import load_checkpoint
from graphnet.checkpoint_check import check_checkpoint
from graphnet.errors import CheckpointError, GraphnetError
from graphnet.registry import build_registry
from graphnet.train import train
from graphnet.training.state import choices_of
from graphnet_plugins import conv
from graphnet_plugins._conv_kernels import ALTERNATIVES, TapKernel
from graphnet_plugins._window import SlidingWindow

TOY = Path(__file__).resolve().parent.parent / "toy_plugin.py"


def spec(**train_settings) -> dict:
    """Two alike 3×3 same convs (taps by default), a strided one (only tiled fits), a head."""
    nodes = [
        {"name": "conv1", "op": "conv2d", "inputs": ["image"], "filters": 8, "kernel": 3,
         "padding": 1},
        {"name": "relu1", "op": "relu"},
        {"name": "conv2", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1},
        {"name": "conv3", "op": "conv2d", "filters": 8, "kernel": 3, "padding": 1,
         "stride": 2},
        {"name": "flat", "op": "flatten"},
        {"name": "fc", "op": "dense", "units": 4},
        {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc", "label"]}]
    return {"graph": {"name": "convs"},
            "inputs": {"image": {"shape": [8, 16, 16]}, "label": {"shape": [], "dtype": "int64"}},
            "nodes": nodes, "outputs": {"logits": "fc", "loss": "loss"},
            "train": {"dataset": {"name": "toy", "channels": 8, "size": 16, "train": 96,
                                  "test": 32},
                      "epochs": 2, "batch_size": 32,
                      "optimizer": {"name": "sgd", "lr": 0.002, "momentum": 0.9},
                      **train_settings}}


@pytest.fixture
def graph(tmp_path):
    path = tmp_path / "convs.json"
    path.write_text(json.dumps(spec()))
    return graphnet.load(path, registry=build_registry([TOY], entry_points=False,
                                                       environment=False))


@pytest.fixture
def measured(monkeypatch):
    """Measurement on (the suite pins the default), its outcome fixed: the last candidate
    (F(4×4) where it fits). Returns the candidates' names of each measurement."""
    monkeypatch.delenv(conv.KERNEL_ENV)
    calls = []

    def fastest(candidates, *arrays):
        calls.append([kernel.name for kernel in candidates])
        return candidates[-1]

    monkeypatch.setattr(conv, "fastest", fastest)
    return calls


def feeds(batch=4, dtype=np.float32):
    rng = np.random.default_rng(0)
    return {"image": rng.standard_normal((batch, 8, 16, 16)).astype(dtype),
            "label": rng.integers(0, 4, batch)}


def test_alike_layers_are_measured_once_and_each_node_keeps_the_winner(graph, measured):
    net = graphnet.Network(graph)
    net.forward(feeds(), training=True)
    assert measured == [["taps", "winograd2", "winograd4"]]        # conv2 is conv1's twin
    assert net.choices.by_node == {"conv1": "winograd4", "conv2": "winograd4",
                                   "conv3": "tiled"}               # strided: nothing to measure
    net.forward(feeds(batch=3), training=True)  # another batch: the nodes keep their kernels
    assert len(measured) == 1
    default = graphnet.Network(graph, choices="default")
    outputs = [n.forward(feeds(), training=True)["loss"] for n in (net, default)]
    grads = [n.backward().params["conv1"]["weight"] for n in (net, default)]
    assert default.choices.by_node["conv1"] == "taps" and len(measured) == 1
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5)
    # float32 F(4×4) against the taps: F(4×4) is off the float64 gradient by up to 1.7e-6
    # here (values up to 1.6), the taps by 2.6e-7
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=5e-6)


def test_float64_and_ops_outside_a_network_keep_the_default(graph, measured):
    net = graphnet.Network(graph, dtype="float64")
    net.forward(feeds(dtype=np.float64))
    assert measured == [] and net.choices.by_node["conv1"] == "taps"
    window_of = conv.Conv2d().choose_kernel((8, 16, 16), graph.nodes["conv1"].attrs)
    assert window_of[0].name == "taps"


def test_a_network_pins_nodes(graph, measured):
    net = graphnet.Network(graph, choices={"conv2": "winograd2"})
    net.forward(feeds())
    assert net.choices.by_node == {"conv1": "winograd4", "conv2": "winograd2",
                                   "conv3": "tiled"}
    with pytest.raises(GraphnetError) as error:  # a pin that does not compute the conv
        graphnet.Network(graph, choices={"conv3": "winograd2"}).forward(feeds())
    assert "does not compute" in str(error.value) and "conv3" in str(error.value)


def test_the_environment_pins_a_kernel_wherever_it_fits(graph, measured, monkeypatch):
    monkeypatch.setenv(conv.KERNEL_ENV, "winograd2")
    net = graphnet.Network(graph)
    net.forward(feeds())
    assert net.choices.by_node == {"conv1": "winograd2", "conv2": "winograd2",
                                   "conv3": "tiled"} and measured == []
    monkeypatch.setenv(conv.KERNEL_ENV, "winograd3")
    with pytest.raises(GraphnetError) as error:
        graphnet.Network(graph).forward(feeds())
    assert conv.KERNEL_ENV in str(error.value) and "winograd4" in str(error.value)


def test_a_kernel_without_epilogues_runs_a_fused_relu_after_itself(graph, measured):
    """conv1's default (taps) takes the fused ReLU; pinned to tiled (channels-last im2col
    takes none), the op applies it to the output and its gradient on its own."""
    assert "relu1" in graphnet.Network(graph).fused_nodes()
    results = []
    for choices in ({"conv1": "tiled"}, "default"):
        net = graphnet.Network(graph, choices=choices)
        loss = net.forward(feeds(), training=True)["loss"]
        results.append((loss, net.backward(input_grads=True)))
    (loss, grads), (expected_loss, expected) = results
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    np.testing.assert_allclose(grads.inputs["image"], expected.inputs["image"], rtol=1e-4,
                               atol=1e-6)


def test_the_measurement_returns_a_candidate():
    """The real timing, on a small problem: whichever wins, it is one of those offered."""
    window = SlidingWindow((6, 6), (3, 3), pads=(1, 1, 1, 1))
    rng = np.random.default_rng(1)
    images = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    weight = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    candidates = [TapKernel(), *ALTERNATIVES]
    assert conv.fastest(candidates, images, weight, None, window, 1) in candidates


def test_a_resumed_run_runs_the_kernels_its_checkpoint_recorded(graph, measured, monkeypatch,
                                                               tmp_path):
    """Trained with F(4×4) (measured), resumed where measuring would give the default: the
    checkpoint's kernels are used, so 1 epoch + resume equals 2 epochs straight, bit for bit;
    the default kernels would not have (their rounding differs)."""
    def params(run, **settings):
        result = train(graph, run_dir=tmp_path / run, **settings)
        return {key: value.copy() for key, value in result.network.flat_params().items()}

    straight = params("straight", epochs=2)
    params("resumed", epochs=1)
    meta = load_checkpoint(tmp_path / "resumed" / "checkpoint.npz").meta
    assert meta["choices"] == {"conv1": "winograd4", "conv2": "winograd4", "conv3": "tiled"}
    monkeypatch.setenv(conv.KERNEL_ENV, "default")
    resumed = params("resumed", epochs=2, resume=True)
    default = params("default", epochs=2)
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    assert any(not np.array_equal(default[key], straight[key]) for key in straight)


def test_choices_from_a_checkpoint(graph):
    pinned = choices_of({"choices": {"conv1": "winograd2", "gone": "taps"}}, graph, "x.npz")
    assert pinned.by_node == {"conv1": "winograd2", "gone": "taps"} and pinned.measure
    assert not choices_of({}, graph, "x.npz").measure  # written before choices: the defaults
    with pytest.raises(CheckpointError) as error:
        check_checkpoint({}, {}, {"choices": {"conv1": 3}}, "x.npz")
    assert error.value.field == "choices.conv1"


@pytest.mark.parametrize("node, name, expected", [
    ("conv3", "winograd4", "one of tiled"),  # stride 2: no Winograd
    ("conv1", "fft", "one of taps, "),
    ("relu1", "taps", "no choice: relu has none"),
])
def test_a_recorded_choice_that_does_not_compute_its_node_is_the_checkpoints_error(
        graph, node, name, expected):
    """Refused as the checkpoint is read, naming it and the choice, not at the first step as
    an error of the spec's node."""
    with pytest.raises(CheckpointError) as error:
        choices_of({"choices": {node: name}}, graph, "run/checkpoint.npz")
    assert (error.value.file, error.value.field, error.value.found) == (
        "run/checkpoint.npz", f"choices.{node}", repr(name))
    assert error.value.expected.startswith(expected)


class Costly:
    """A kernel that advances a fake clock by its cost at each forward (no real timing)."""

    def __init__(self, name, seconds, clock):
        self.name, self.seconds, self.clock, self.calls = name, seconds, clock, 0

    def forward(self, images, *args):
        self.calls += 1
        self.clock[0] += self.seconds
        return np.zeros((1, 2, 2, 1)), None

    def backward(self, *args, **options):
        return None, None, None


@pytest.fixture
def clock(monkeypatch):
    """The measurement's clock, advanced only by Costly kernels."""
    now = [0.0]
    monkeypatch.setattr(conv.time, "perf_counter", lambda: now[0])
    return now


def test_the_measurement_keeps_the_fastest_and_stops_timing_clear_losers(clock):
    """Every candidate is timed in the first round, one more than DROP_AFTER times slower than
    the best never again."""
    candidates = [Costly("default", 1.0, clock), Costly("quick", 0.5, clock),
                  Costly("slow", 0.5 * conv.DROP_AFTER + 0.1, clock)]
    assert conv.fastest(candidates, None, None, None, None, 1).name == "quick"
    assert [kernel.calls for kernel in candidates] == [conv.MEASURE_ROUNDS] * 2 + [1]


@pytest.mark.parametrize("alternative_seconds, chosen", [(0.97, "default"), (0.9, "alternative")])
def test_an_alternative_must_win_clearly_to_replace_the_default(clock, alternative_seconds,
                                                                 chosen):
    """A kernel a few percent faster than the default, within the machine's noise, does not
    replace it (nor bring its larger rounding); one LEAST_GAIN faster does."""
    candidates = [Costly("default", 1.0, clock), Costly("alternative", alternative_seconds, clock)]
    assert conv.fastest(candidates, None, None, None, None, 1).name == chosen
