"""Round trips: every spec in specs/ exported to ONNX (graphnet.export_onnx), run in onnxruntime,
imported back (graphnet.import_onnx): equal outputs, and the same figures in `inspect` for
every node (output shape, parameters, MACs, receptive field) and in total."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("graphnet.export.onnx")  # graphnet.export_onnx

import graphnet  # noqa: E402
from graphnet.onnx_import import import_onnx  # noqa: E402

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.[tj][os][mo]*"))
LARGE = {"resnet18", "vgg11"}
"""Specs whose export, import and forward take seconds each: `pytest -m slow` runs them."""


def _figures(graph, node) -> tuple:
    field = node.receptive_field
    return (node.op_name, tuple(node.shape), node.params, node.macs,
            None if field is None else repr(field))


def _round_trip(spec_path: Path, tmp_path: Path):
    graph = graphnet.load(spec_path)
    network = graphnet.Network(graph, seed=0)
    model_path = tmp_path / f"{spec_path.stem}.onnx"
    graphnet.export_onnx(network, model_path)
    onnx.checker.check_model(str(model_path), full_check=True)

    imported, params = import_onnx(model_path)
    float_inputs = [name for name in imported.inputs]
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((2, *imported.nodes[name].shape)).astype(np.float32)
             for name in float_inputs}
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    output_names = [value.name for value in session.get_outputs()]
    expected = dict(zip(output_names, session.run(None, feeds)))
    outputs = graphnet.Network(imported, params=params).forward(feeds, training=False)
    original = network.forward({**feeds, **_labels(graph)}, training=False,
                               outputs=output_names)
    for name in output_names:
        # float32 sums in another order: a tolerance on the scale of the outputs
        atol = 1e-5 * max(1.0, float(np.abs(expected[name]).max()))
        np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-4, atol=atol,
                                   err_msg=f"{spec_path.name}: {name} against onnxruntime")
        np.testing.assert_allclose(outputs[name], original[name], rtol=1e-4, atol=atol,
                                   err_msg=f"{spec_path.name}: {name} against the original")

    # the same figures: every node kept by the export (losses are not), and the totals
    needed = _needed(graph, output_names)
    inference_nodes = [node for node in graph.op_nodes if node.name in needed]
    kept = [node for node in inference_nodes if node.name in imported.nodes]
    # dropout is the identity in an inference graph: the export leaves it out
    assert all(node.op_name == "dropout" for node in inference_nodes if node not in kept)
    assert sorted(n.name for n in imported.op_nodes) == sorted(n.name for n in kept)
    for node in kept:
        assert _figures(imported, imported.nodes[node.name]) == _figures(graph, node), node.name
    assert sum(n.params for n in kept) == imported.total_params
    assert sum(n.macs for n in kept) == imported.total_macs


def _labels(graph) -> dict:
    return {name: np.zeros(2, np.int64) for name in graph.inputs
            if graph.nodes[name].dtype_kind == "int"}


def _needed(graph, outputs) -> set[str]:
    import networkx as nx

    targets = {graph.outputs[name] for name in outputs}
    needed = set(targets)
    for target in targets:
        needed |= nx.ancestors(graph.dag, target)
    return needed


@pytest.mark.parametrize("spec", [path for path in SPECS if path.stem not in LARGE],
                         ids=lambda path: path.name)
def test_export_then_import_gives_the_same_network(spec, tmp_path):
    _round_trip(spec, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("spec", [path for path in SPECS if path.stem in LARGE],
                         ids=lambda path: path.name)
def test_export_then_import_gives_the_same_large_network(spec, tmp_path):
    _round_trip(spec, tmp_path)
