"""The tiled, threaded one-group convolution: outputs and gradients equal a direct, loop-per-tap
reference in float64, for every layout, padding, stride and dilation, any tile size and thread
count, by each of its methods (im2col, kernel-row products, kernel-tap products through BLAS or
through numpy alone)."""
from __future__ import annotations

import contextlib
import math
import numpy as np
import pytest

from graphnet import blas, parallel
from graphnet_plugins import _conv_taps as taps
from graphnet_plugins import _conv_tiles as tiles
from graphnet_plugins._window import SlidingWindow

METHODS = ["im2col", "kernel-rows", "taps", "taps-numpy"]


def use_method(monkeypatch, method):
    """Make the tiled conv take ``method`` wherever it can (taps need stride 1)."""
    monkeypatch.setattr(taps, "MIN_CHANNELS", 0 if method.startswith("taps") else 1 << 30)
    monkeypatch.setattr(taps, "MAX_WASTE", math.inf)
    if method == "kernel-rows":  # one product per kernel row wherever the stride is 1
        monkeypatch.setattr(tiles, "ROW_MIN_COLUMNS", 0)
    if method == "taps-numpy":  # as on a machine whose BLAS graphnet cannot call
        monkeypatch.setattr(blas, "_routines", {})


@contextlib.contextmanager
def thread_count(count):
    """Run the block on ``count`` worker threads, then on the machine's again."""
    parallel.set_num_threads(count)
    try:
        yield
    finally:
        parallel.set_num_threads(parallel.available_cores())


def assert_matches_reference(found, images, weight, bias, window, grad_output, rtol):
    """(output NHWC, input gradient NHWC, weight gradient) against :func:`reference`."""
    output, grad_input, grad_weight = found
    expected = reference(images, weight, bias, window, grad_output)
    np.testing.assert_allclose(output.transpose(0, 3, 1, 2), expected[0], rtol=rtol)
    np.testing.assert_allclose(grad_input.transpose(0, 3, 1, 2), expected[1], rtol=rtol)
    np.testing.assert_allclose(grad_weight, expected[2], rtol=rtol)


def reference(images, weight, bias, window, grad_output):
    """Direct convolution and its gradients, one kernel tap at a time (float64, NCHW)."""
    top, bottom, left, right = window.pads
    padded = np.pad(images, ((0, 0), (0, 0), (top, bottom), (left, right)))
    output = np.zeros((len(images), len(weight), *window.output_hw)) + bias[:, None, None]
    grad_padded = np.zeros_like(padded)
    grad_weight = np.zeros_like(weight)
    for row, col, rows, cols in window.taps():
        taps = padded[:, :, rows, cols]
        output += np.einsum("nchw,fc->nfhw", taps, weight[:, :, row, col])
        grad_weight[:, :, row, col] = np.einsum("nfhw,nchw->fc", grad_output, taps)
        grad_padded[:, :, rows, cols] += np.einsum("nfhw,fc->nchw", grad_output,
                                                   weight[:, :, row, col])
    height, width = images.shape[2:]
    grad_input = grad_padded[:, :, top:top + height, left:left + width]
    return output, grad_input, grad_weight, grad_output.sum(axis=(0, 2, 3))


CASES = [
    dict(kernel=(3, 3), pads=(1, 1, 1, 1)),
    dict(kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1)),
    dict(kernel=(4, 4), stride=(2, 2), pads=(1, 2, 1, 2)),       # "same": asymmetric
    dict(kernel=(3, 3), dilation=(2, 2), pads=(2, 2, 2, 2)),
    dict(kernel=(5, 3), pads=(0, 0, 0, 0)),
    dict(kernel=(1, 1)),
    dict(kernel=(3, 3), pads=(3, 3, 0, 2)),                      # pads ≥ the kernel's reach
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("channels,filters", [(5, 7), (6, 3), (1, 4), (3, 3)])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("method", METHODS)
def test_tiled_conv_equals_the_direct_one(monkeypatch, case, channels, filters, layout, method):
    use_method(monkeypatch, method)
    rng = np.random.default_rng(1)
    images = rng.standard_normal((5, channels, 9, 8))
    if layout == "nhwc":  # a conv's output: channels-last memory behind an NCHW shape
        images = np.ascontiguousarray(images.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    weight = rng.standard_normal((filters, channels, *case["kernel"]))
    bias = rng.standard_normal(filters)
    window = SlidingWindow(images.shape[2:], **case)
    grad_output = rng.standard_normal((5, filters, *window.output_hw))
    expected = reference(images, weight, bias, window, grad_output)

    output = tiles.tiled_forward(images, weight, bias, window)
    grad_input, grad_weight, grad_bias = tiles.tiled_backward(
        grad_output, images, weight, window, input_grad=True, param_grads=True, bias=True)
    for found, wanted in zip((output.transpose(0, 3, 1, 2), grad_input.transpose(0, 3, 1, 2),
                              grad_weight, grad_bias), expected):
        np.testing.assert_allclose(found, wanted, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("method", METHODS)
def test_any_tile_size_and_thread_count_gives_the_same_result(monkeypatch, threads, method):
    use_method(monkeypatch, method)
    rng = np.random.default_rng(2)
    images = rng.standard_normal((7, 4, 6, 6))
    weight, bias = rng.standard_normal((8, 4, 3, 3)), rng.standard_normal(8)
    window = SlidingWindow((6, 6), (3, 3), pads=(1, 1, 1, 1))
    grad_output = rng.standard_normal((7, 8, 6, 6))
    monkeypatch.setattr(tiles, "TILE_BYTES", 1)  # a tile per sample
    monkeypatch.setattr(taps, "TILE_BYTES", 1)
    with thread_count(threads):
        output = tiles.tiled_forward(images, weight, bias, window)
        grad_input, grad_weight, _ = tiles.tiled_backward(
            grad_output, images, weight, window, input_grad=True, param_grads=True, bias=False)
    assert_matches_reference((output, grad_input, grad_weight), images, weight, bias, window,
                             grad_output, rtol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_only_the_gradients_asked_for(monkeypatch, method):
    use_method(monkeypatch, method)
    rng = np.random.default_rng(3)
    images, weight = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    window = SlidingWindow((5, 5), (3, 3))
    grad_output = rng.standard_normal((2, 4, 3, 3))
    grad_input, grad_weight, grad_bias = tiles.tiled_backward(
        grad_output, images, weight, window, input_grad=False, param_grads=True, bias=False)
    assert grad_input is None and grad_bias is None and grad_weight.shape == weight.shape
    grad_input, grad_weight, _ = tiles.tiled_backward(
        grad_output, images, weight, window, input_grad=True, param_grads=False, bias=True)
    assert grad_weight is None and grad_input.shape == (2, 5, 5, 3)


@pytest.mark.parametrize("method", METHODS)
def test_float32_stays_float32_and_empty_batches_work(monkeypatch, method):
    use_method(monkeypatch, method)
    images = np.ones((0, 2, 4, 4), np.float32)
    weight = np.ones((3, 2, 3, 3), np.float32)
    window = SlidingWindow((4, 4), (3, 3), pads=(1, 1, 1, 1))
    output = tiles.tiled_forward(images, weight, None, window)
    assert output.shape == (0, 4, 4, 3) and output.dtype == np.float32
    images = np.ones((2, 2, 4, 4), np.float32)
    grads = tiles.tiled_backward(np.ones((2, 3, 4, 4), np.float32), images, weight, window,
                                 input_grad=True, param_grads=True, bias=True)
    assert all(g.dtype == np.float32 for g in grads)
    assert math.isclose(float(grads[2][0]), 32.0)


def test_taps_serve_same_padded_layers_of_enough_channels_and_only_those():
    same = SlidingWindow((32, 32), (3, 3), pads=(1, 1, 1, 1))
    assert taps.applies((8, 32, 32, 32), (32, 32, 3, 3), same)
    assert not taps.applies((8, 3, 32, 32), (32, 3, 3, 3), same)  # an RGB image: im2col
    strided = SlidingWindow((32, 32), (3, 3), stride=(2, 2), pads=(1, 1, 1, 1))
    assert not taps.applies((8, 32, 32, 32), (32, 32, 3, 3), strided)
    valid = SlidingWindow((14, 14), (5, 5))  # most of the grid would be computed for nothing
    assert not taps.applies((8, 32, 14, 14), (32, 32, 5, 5), valid)


def test_a_short_last_tile_does_not_read_what_an_earlier_tile_left(monkeypatch):
    """Tiles of 3: a batch of 3 infinite samples, then a batch of 1 whose buffer's next
    blocks still hold them. The products of positions past the last sample (discarded, or
    times a zero gradient) must not read them: inf × 0 would be NaN."""
    use_method(monkeypatch, "taps")
    monkeypatch.setattr(taps.TapGrid, "tile", lambda self, *args: 3)
    rng = np.random.default_rng(4)
    weight, bias = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    window = SlidingWindow((5, 5), (3, 3), pads=(1, 1, 1, 1))
    with thread_count(1):
        for images in (np.full((3, 2, 5, 5), np.inf), rng.standard_normal((1, 2, 5, 5))):
            grad_output = np.ones((len(images), 3, 5, 5))
            output = tiles.tiled_forward(images, weight, bias, window)
            grad_input, grad_weight, _ = tiles.tiled_backward(
                grad_output, images, weight, window, input_grad=True, param_grads=True,
                bias=True)
    assert_matches_reference((output, grad_input, grad_weight), images, weight, bias, window,
                             grad_output, rtol=1e-9)


def test_layers_whose_grids_share_a_pitch_do_not_share_stale_gaps(monkeypatch):
    """Two layers whose grids have the same pitch and rows per sample (33): a 32×32 image
    under padding 1, and a 31×31 one under pads (1, 2), whose gaps the first fills with
    pixels. Run after the first, the second's padding must still read zeros."""
    use_method(monkeypatch, "taps")
    rng = np.random.default_rng(6)
    first = SlidingWindow((32, 32), (4, 4), pads=(1, 1, 1, 1))      # 31×31 out, pitch 33
    second = SlidingWindow((31, 31), (4, 4), pads=(1, 2, 1, 2))     # 31×31 out, pitch 33
    weight, bias = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal(3)
    large = rng.standard_normal((2, 2, 32, 32)) * 1e3
    small = rng.standard_normal((2, 2, 31, 31))
    with thread_count(1):
        tiles.tiled_forward(large, weight, bias, first)
        output = tiles.tiled_forward(small, weight, bias, second)
        grad_output = rng.standard_normal((2, 3, 31, 31))
        tiles.tiled_backward(grad_output, large, weight, first, input_grad=True,
                             param_grads=True, bias=True)
        grad_input, grad_weight, _ = tiles.tiled_backward(
            grad_output, small, weight, second, input_grad=True, param_grads=True, bias=True)
    assert_matches_reference((output, grad_input, grad_weight), small, weight, bias, second,
                             grad_output, rtol=1e-9)
