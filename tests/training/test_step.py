"""One training step: what ``graphnet train`` takes and ``graphnet bench`` times."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import graphnet
from graphnet.bench import GraphnetRunner
from graphnet.engine import Network
from graphnet.gradcheck import random_feeds
from graphnet.optim import global_norm
from graphnet.registry import build_registry, load_plugin_file
from graphnet.training.step import NonFiniteLoss, TrainStep

TOY = Path(__file__).resolve().parent.parent / "toy_plugin.py"


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    spec = tmp_path_factory.mktemp("step") / "toy.json"
    spec.write_text(json.dumps(load_plugin_file(TOY).toy_spec("toy")))
    return graphnet.load(spec, registry=build_registry([TOY], entry_points=False,
                                                       environment=False))


def sgd(graph, momentum=0.0):
    return graph.registry.entry("optimizer", "sgd").value(momentum=momentum)


def test_a_step_moves_each_parameter_against_its_gradient(graph):
    feeds = random_feeds(graph, 8, 1, dtype=np.float32)
    reference = Network(graph, seed=0)
    reference.forward(feeds, training=True)
    grads = reference.backward()
    network = Network(graph, seed=0)
    before = {k: v.copy() for k, v in network.flat_params().items()}
    loss, outputs = TrainStep(network, sgd(graph), loss="loss")(feeds, 0.1)
    assert loss == float(outputs["loss"]) and set(outputs) == set(graph.outputs)
    for node, name, array in network.trainable():
        expected = before[f"{node}/{name}"] - np.float32(0.1) * grads.params[node][name]
        np.testing.assert_allclose(array, expected, rtol=1e-6, atol=1e-7, err_msg=f"{node}/{name}")


def test_clipping_bounds_the_update_by_the_norm(graph):
    feeds = random_feeds(graph, 8, 1, dtype=np.float32)
    network = Network(graph, seed=0)
    before = {k: v.copy() for k, v in network.flat_params().items()}
    TrainStep(network, sgd(graph), loss="loss", clip_norm=1e-3)(feeds, 1.0)
    moved = global_norm(network.flat_params()[k] - before[k] for k in before)
    assert 0 < moved <= 1e-3 * (1 + 1e-4)


def test_a_non_finite_loss_names_the_node_and_changes_nothing(graph):
    feeds = random_feeds(graph, 8, 1, dtype=np.float32)
    network = Network(graph, seed=0)
    network.params["fc2"]["weight"][...] = np.inf
    before = {k: v.copy() for k, v in network.flat_params().items()}
    with pytest.raises(NonFiniteLoss) as caught, np.errstate(all="ignore"):
        TrainStep(network, sgd(graph), loss="loss")(feeds, 0.1)
    assert caught.value.node == "fc2" and "loss became nan" in str(caught.value)
    for key, array in network.flat_params().items():
        np.testing.assert_array_equal(array, before[key], err_msg=key)


def test_bench_times_the_step_training_takes(graph):
    # the same parameters after a bench step as after the training step with bench's optimizer
    feeds = random_feeds(graph, 8, 1, dtype=np.float32)
    runner = GraphnetRunner(graph, feeds, seed=0, lr=0.05, momentum=0.9)
    assert isinstance(runner.step, TrainStep)
    network = Network(graph, seed=0)
    step = TrainStep(network, sgd(graph, momentum=0.9), loss="loss")
    for _ in range(2):
        runner.train_step()
        step(feeds, 0.05)
    for key, array in network.flat_params().items():
        np.testing.assert_array_equal(runner.network.flat_params()[key], array, err_msg=key)
    assert {method for _, method in runner.node_seconds} == {"forward", "backward"}
