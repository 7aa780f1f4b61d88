"""Max pooling over tiles of the batch on several threads gives exactly the one-piece result."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from graphnet import parallel
from graphnet_plugins import pooling
from graphnet_plugins.pooling import MaxPool2d


@pytest.mark.parametrize("options", [dict(kernel=2), dict(kernel=3, stride=2, padding=1),
                                     dict(kernel=2, padding="same")])
def test_tiles_and_threads_change_nothing(monkeypatch, context, options):
    raw = {"stride": None, "padding": 0, **options}
    attrs = SimpleNamespace(**{name: value if value is None else
                               MaxPool2d.attrs[name].parse(value, name)
                               for name, value in raw.items()})
    rng = np.random.default_rng(0)
    # ReLU-like inputs: many ties, where the first winning tap matters
    images = np.maximum(rng.standard_normal((7, 3, 9, 8)), 0)
    images = np.ascontiguousarray(images.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    output, saved = MaxPool2d().forward([images], {}, attrs, context(training=True))
    grad_output = rng.standard_normal(output.shape)
    (grad_input,), _ = MaxPool2d().backward(grad_output, saved, {}, attrs, context())
    monkeypatch.setattr(pooling, "TILE_BYTES", 1)  # a tile per sample
    parallel.set_num_threads(2)
    try:
        tiled, tiled_saved = MaxPool2d().forward([images], {}, attrs, context(training=True))
        (tiled_grad,), _ = MaxPool2d().backward(grad_output, tiled_saved, {}, attrs, context())
        # outside training the winners are found in backward instead: the same gradient
        _, eval_saved = MaxPool2d().forward([images], {}, attrs, context(training=False))
        (eval_grad,), _ = MaxPool2d().backward(grad_output, eval_saved, {}, attrs, context())
    finally:
        parallel.set_num_threads(parallel.available_cores())
    assert np.array_equal(tiled, output) and np.array_equal(tiled_saved[0], saved[0])
    assert np.array_equal(tiled_grad, grad_input) and np.array_equal(eval_grad, grad_input)
    assert eval_saved[0] is None
    assert tiled.strides == output.strides  # channels-last stays channels-last


def test_a_gradient_in_another_memory_layout_gives_the_same_result(context):
    raw = {"kernel": MaxPool2d.attrs["kernel"].parse(2, "kernel"), "stride": None, "padding": 0}
    attrs = SimpleNamespace(**raw)
    rng = np.random.default_rng(1)
    images = np.ascontiguousarray(np.maximum(rng.standard_normal((3, 4, 4, 5)), 0))
    images = images.transpose(0, 3, 1, 2)  # channels-last memory, as after a conv
    output, saved = MaxPool2d().forward([images], {}, attrs, context())
    grad_nchw = rng.standard_normal(output.shape)  # as through flatten: C-contiguous NCHW
    grad_nhwc = np.ascontiguousarray(grad_nchw.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    (from_nchw,), _ = MaxPool2d().backward(grad_nchw, saved, {}, attrs, context())
    (from_nhwc,), _ = MaxPool2d().backward(grad_nhwc, saved, {}, attrs, context())
    assert np.array_equal(from_nchw, from_nhwc) and from_nchw.strides == from_nhwc.strides


@pytest.mark.parametrize("options", [
    dict(kernel=2), dict(kernel=3, stride=2, padding=1), dict(kernel=2, stride=1),
    dict(kernel=2, stride=3), dict(kernel=3, stride=2, padding=1, dilation=2)],
    ids=["tiling", "padded", "stride1", "gaps", "dilated"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_channels_last_pixels_pick_the_same_winners_as_nchw(context, options, dtype):
    """A channels-last input's taps (and gradient shares) are copied a pixel (C values) at a
    time, an NCHW input's value by value: the same maxima, winners and gradient, ties after
    ReLU included."""
    raw = {"stride": None, "padding": 0, "dilation": 1, **options}
    attrs = SimpleNamespace(**{name: value if value is None else
                               MaxPool2d.attrs[name].parse(value, name)
                               for name, value in raw.items()})
    rng = np.random.default_rng(2)
    nchw = np.maximum(rng.standard_normal((3, 6, 9, 8)), 0).astype(dtype)
    channels_last = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    output, saved = MaxPool2d().forward([nchw], {}, attrs, context(training=True))
    output_cl, saved_cl = MaxPool2d().forward([channels_last], {}, attrs, context(training=True))
    assert np.array_equal(output, output_cl) and np.array_equal(saved[0], saved_cl[0])
    grad_output = rng.standard_normal(output.shape).astype(dtype)
    (grad_input,), _ = MaxPool2d().backward(grad_output, saved, {}, attrs, context())
    (grad_input_cl,), _ = MaxPool2d().backward(grad_output, saved_cl, {}, attrs, context())
    assert np.array_equal(grad_input, grad_input_cl)
