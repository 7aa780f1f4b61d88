"""Every example in specs/ is loaded, checked, run and gradient-checked."""
from pathlib import Path

import numpy as np
import pytest

import graphnet
from graphnet.gradcheck import gradcheck, random_feeds

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.[tj][os][mo]*"))


def test_the_examples_exist():
    names = {p.name for p in SPECS}
    assert {"classic.toml", "lenet5.toml", "branching.json", "curve_detector.toml"} <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_checks_and_runs_with_inferred_shapes(path, run_cli, load_for_running):
    status, out, err = run_cli("check", path)
    assert status == 0, err
    assert "ok" in out and "Traceback" not in err
    graph = load_for_running(path)
    net = graphnet.Network(graph)
    feeds = random_feeds(graph, 3, np.random.default_rng(0), dtype=np.float32)
    names = [n for n in graph.order if not graph.nodes[n].is_input]
    net.forward(feeds, training=False, capture=names)
    for name in names:
        node = graph.nodes[name]
        expected = () if node.is_loss else (3,) + node.shape
        assert net.captured[name].shape == expected, name


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_gradients_match_finite_differences(path, load_for_running):
    graph = load_for_running(path)
    if not any(True for _ in graphnet.Network(graph).trainable()):
        pytest.skip("nothing trainable")
    # The big specs' variants: the random direction (every element at once) without extra
    # single coordinates, which would cost two forward passes each for every array.
    points = 0 if path.name in load_for_running.variants else 3
    report = gradcheck(graph, batch_size=2, points_per_array=points)
    assert report.passed, {c.node: c.error for c in report.checks if c.error > report.tolerance}


def test_the_curve_detector_fires_on_the_curve_and_not_elsewhere():
    """The classic worked example: the filter's 30s lie along a curve; the receptive field
    holding the mouse's back (pixel values 50 and 20 along the same curve) gives
    50·30 + 20·30 + 50·30 + 50·30 + 50·30 = 6600; a patch whose strokes miss the filter's
    curve gives 0."""
    graph = graphnet.load(Path("specs/curve_detector.toml"))
    curve_patch = np.array([
        [0, 0, 0, 0, 0, 0, 30],
        [0, 0, 0, 0, 50, 50, 50],
        [0, 0, 0, 20, 50, 0, 0],
        [0, 0, 0, 50, 50, 0, 0],
        [0, 0, 0, 50, 0, 0, 0],
        [0, 0, 0, 50, 0, 0, 0],
        [0, 0, 0, 50, 0, 0, 0],
    ])
    other_patch = np.zeros((7, 7))
    other_patch[6, :] = 40        # a U: along the bottom edge and up both sides, strokes
    other_patch[:, 0] = 40        # that never cross the filter's curve
    other_patch[:, 6] = 40
    image = np.zeros((1, 1, 32, 32))
    image[0, 0, 2:9, 3:10] = curve_patch
    image[0, 0, 20:27, 18:25] = other_patch
    response = graphnet.Network(graph).forward({"image": image})["response"]
    assert response.shape == (1, 1, 26, 26)
    assert response[0, 0, 2, 3] == 6600
    assert response[0, 0, 20, 18] == 0


def test_the_curve_detector_is_frozen():
    net = graphnet.Network(graphnet.load(Path("specs/curve_detector.toml")))
    assert list(net.trainable()) == []
