"""Keras models converted to ONNX by tf2onnx (tests/onnx_models/, written by
make_keras_models.py there) import as the networks they are: equal to onnxruntime, gradients
through gradcheck. The channels-last exports are refused, naming the export option that avoids
the Transpose of the input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphnet  # noqa: E402
from graphnet.errors import SpecError  # noqa: E402
from graphnet.gradcheck import gradcheck  # noqa: E402
from graphnet.onnx_import import import_onnx  # noqa: E402

MODELS = Path(__file__).resolve().parent / "onnx_models"


@pytest.mark.parametrize("name,ops", [
    # Rescaling's Mul went into the first conv's weights (its + 0 is nothing), each Pad into
    # the padding of the conv or max pool after it, batch norm into the convs (tf2onnx), the
    # Squeeze after GlobalAveragePool into one global_avg_pool
    ("keras_cnn_13_nchw", ["conv2d", "relu", "max_pool2d", "conv2d", "relu6", "conv2d", "relu",
                           "add", "conv2d", "relu", "avg_pool2d", "global_avg_pool", "dense",
                           "softmax"]),
    ("keras_cnn_17_nchw", None),
    # Flatten's channels-last order (a Transpose before the Reshape) is in the dense's weights
    ("keras_flatten_13_nchw", ["conv2d", "relu", "max_pool2d", "conv2d", "relu", "flatten",
                               "dense"]),
    ("keras_flatten_17_nchw", None),
    # Normalization's Sub and Mul before a conv that does not pad: its weights and bias
    ("keras_normalized_valid_17_nchw", ["conv2d", "relu", "global_avg_pool", "dense"]),
])
def test_keras_models_through_tf2onnx_import_equal_to_onnxruntime(name, ops):
    path = MODELS / f"{name}.onnx"
    graph, params = import_onnx(path)
    assert list(graph.inputs) == ["image"]
    images = np.random.default_rng(0).uniform(0, 255, (3, *graph.nodes["image"].shape))
    images = images.astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": images})[0]
    outputs = graphnet.Network(graph, params=params).forward({"image": images}, training=False)
    (result,) = outputs.values()
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)
    if ops is not None:
        assert [node.op_name for node in graph.op_nodes] == ops
        report = gradcheck(graph, batch_size=2, network=graphnet.Network(graph, params=params))
        assert report.passed, report.worst_by_node


@pytest.mark.parametrize("name,why", [
    ("keras_flatten_17_nhwc", "the Transpose before it"),
    ("keras_cnn_17_nhwc", "the Mul, Div, Add or Sub of a constant before it"),
])
def test_channels_last_exports_are_refused(name, why):
    with pytest.raises(SpecError, match=why) as raised:
        import_onnx(MODELS / f"{name}.onnx")
    message = str(raised.value)
    # the first refused node: the input's Transpose, or its Rescaling, which tf2onnx put
    # before the Transpose; either way the message names the option that avoids both
    assert f"{name}.onnx" in message and "node '" in message and "--inputs-as-nchw" in message


def test_a_normalization_before_a_conv_that_pads_is_refused():
    """Keras' padding="same": the shifted image would be padded with zeros, not with the shift."""
    with pytest.raises(SpecError, match="only when the Conv does not pad") as raised:
        import_onnx(MODELS / "keras_normalized_same_17_nchw.onnx")
    assert "Normalization" in str(raised.value) and "node '" in str(raised.value)
