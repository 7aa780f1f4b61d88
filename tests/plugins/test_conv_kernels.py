"""The one-group kernels, called directly: outputs and gradients equal the direct kernel's in
float64 for every memory layout, four-sided padding, stride and dilation, any tile size and
thread count, by each of their methods (im2col with col2im, im2col grouped by 2-4 output
columns with col2im over samples innermost, kernel-row products, kernel-tap products
through BLAS or through numpy alone, tap products over pairs of pixels, Winograd F(2×2) and
F(4×4) where they fit), with and
without a fused ReLU. (tests/plugins/test_conv.py runs every kernel through the op over the
conv test grid.)"""
from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import pytest

from graphnet import blas, parallel
from graphnet.fusion import Epilogue
from graphnet_plugins._conv_kernels import (DepthwiseKernel, DirectKernel, GroupedKernel,
                                            TapKernel, TiledKernel, WinogradKernel)
from graphnet_plugins._window import SlidingWindow

METHODS = {
    "im2col": TiledKernel(group_max_filters=0, samples_last_max_channels=0),  # and col2im
    # a row per 4, 3 or 2 output columns, whichever divides the width, for any filter count
    "grouped": TiledKernel(group_max_filters=1 << 30, column_groups=(4, 3, 2)),
    "kernel-rows": TiledKernel(row_min_columns=0),   # one product per kernel row at stride 1
    "taps": TapKernel(min_channels=1, max_waste=math.inf),
    "taps-numpy": TapKernel(min_channels=1, max_waste=math.inf),
    # products over pairs of pixels wherever the taps pay for them (3×3 with padding 1, ...)
    "taps-pairs": TapKernel(min_channels=1, max_waste=math.inf, pair_channels=(1, 1 << 30),
                            pair_max_growth=math.inf),
    "winograd2": WinogradKernel(2, min_channels=1),  # 3×3 stride 1 only
    "winograd4": WinogradKernel(4, min_channels=1),
}


@pytest.fixture(params=list(METHODS))
def method(request, monkeypatch):
    """Each one-group kernel, made to fit wherever it can compute; "taps-numpy" runs the tap
    kernel as on a machine whose BLAS graphnet cannot call (blas's numpy route)."""
    if request.param == "taps-numpy":
        monkeypatch.setattr(blas, "_routines", {})
    return request.param


@contextlib.contextmanager
def thread_count(count):
    """Run the block on ``count`` worker threads, then on the machine's again."""
    parallel.set_num_threads(count)
    try:
        yield
    finally:
        parallel.set_num_threads(parallel.available_cores())


def run(kernel, images, weight, bias, window, grad_output, **options):
    """(output, input gradient, weight gradient, bias gradient) of ``kernel``, NHWC."""
    output, saved = kernel.forward(images, weight, bias, window, 1)
    grads = kernel.backward(grad_output, saved, weight, window, 1, input_grad=True,
                            param_grads=True, bias=bias is not None, **options)
    return (output, *grads)


def assert_matches_direct(found, images, weight, bias, window, grad_output, rtol):
    expected = run(DirectKernel(), images, weight, bias, window, grad_output)
    for value, wanted in zip(found, expected):
        if wanted is not None:
            np.testing.assert_allclose(value, wanted, rtol=rtol, atol=1e-10)


CASES = [  # four-sided pads, as the kernels take them
    dict(kernel=(3, 3), pads=(1, 1, 1, 1)),
    dict(kernel=(3, 3), stride=(2, 2), pads=(1, 1, 1, 1)),
    dict(kernel=(4, 4), stride=(2, 2), pads=(1, 2, 1, 2)),       # "same": asymmetric
    dict(kernel=(3, 3), dilation=(2, 2), pads=(2, 2, 2, 2)),
    dict(kernel=(5, 3), pads=(0, 0, 0, 0)),
    dict(kernel=(1, 1)),
    dict(kernel=(3, 3), pads=(3, 3, 0, 2)),                      # pads ≥ the kernel's reach
]


@pytest.mark.parametrize("method, case", [
    (method, case) for method in METHODS for case in CASES
    if METHODS[method].fits(SlidingWindow((9, 8), **case), 1, 1, 1)  # taps: stride 1 only
], indirect=["method"], ids=lambda value: value if isinstance(value, str) else ",".join(
    f"{name}={setting}" for name, setting in value.items()))
@pytest.mark.parametrize("channels,filters", [(5, 7), (6, 3), (1, 4), (3, 3), (12, 16)])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_each_method_equals_the_direct_kernel(method, case, channels, filters, layout):
    kernel = METHODS[method]
    rng = np.random.default_rng(1)
    images = rng.standard_normal((5, channels, 9, 8))
    if layout == "nhwc":  # a conv's output: channels-last memory behind an NCHW shape
        images = np.ascontiguousarray(images.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    weight = rng.standard_normal((filters, channels, *case["kernel"]))
    bias = rng.standard_normal(filters)
    window = SlidingWindow(images.shape[2:], **case)
    grad_output = rng.standard_normal((5, filters, *window.output_hw))
    assert_matches_direct(run(kernel, images, weight, bias, window, grad_output), images,
                          weight, bias, window, grad_output, rtol=1e-10)


@pytest.mark.parametrize("method, channels", [
    (method, channels) for method in METHODS for channels in (1, 3, 8)
    # the tiled kernels take one over channel planes only (1-3 channels)
    if METHODS[method].takes_epilogue(SlidingWindow((7, 6), (3, 3)), channels, 8, 1)
], indirect=["method"])
def test_a_fused_relu_equals_relu_after_the_conv(method, channels):
    """Where a kernel takes an epilogue, forward applies it to each tile and backward takes the
    gradient of its result."""
    kernel = METHODS[method]
    window = SlidingWindow((7, 6), (3, 3), pads=(1, 1, 1, 1))
    relu = Epilogue(lambda values: np.maximum(values, 0, out=values),
                    lambda grad, output, out: np.multiply(grad, output > 0, out=out))
    rng = np.random.default_rng(5)
    images = rng.standard_normal((4, channels, 7, 6))
    weight, bias = rng.standard_normal((8, channels, 3, 3)), rng.standard_normal(8)
    grad_output = rng.standard_normal((4, 8, 7, 6))
    output, saved = kernel.forward(images, weight, bias, window, 1, epilogue=relu)
    output = output.transpose(0, 3, 1, 2)
    plain, _ = DirectKernel().forward(images, weight, bias, window, 1)
    np.testing.assert_allclose(output, np.maximum(plain.transpose(0, 3, 1, 2), 0), rtol=1e-10)
    for input_grad in (True, False):  # the epilogue's gradient taken once, or tile by tile
        found = kernel.backward(grad_output, saved, weight, window, 1, input_grad=input_grad,
                                param_grads=True, bias=True, epilogue=relu, output=output)
        expected = run(DirectKernel(), images, weight, bias, window,
                       grad_output * (output > 0))[1:]
        for value, wanted in zip(found, expected):
            if value is not None:
                np.testing.assert_allclose(value, wanted, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_any_tile_size_and_thread_count_gives_the_same_result(method, threads):
    rng = np.random.default_rng(2)
    images = rng.standard_normal((7, 4, 6, 6))
    weight, bias = rng.standard_normal((8, 4, 3, 3)), rng.standard_normal(8)
    window = SlidingWindow((6, 6), (3, 3), pads=(1, 1, 1, 1))
    grad_output = rng.standard_normal((7, 8, 6, 6))
    kernel = METHODS[method]
    if method.startswith("winograd"):
        small_tiles = WinogradKernel(kernel.size, min_channels=1, tile_bytes=1)
    elif isinstance(kernel, TiledKernel):  # its input gradient's tiles have a size of their own
        small_tiles = dataclasses.replace(kernel, tile_bytes=1, samples_last_tile_bytes=1)
    else:
        small_tiles = dataclasses.replace(kernel, tile_bytes=1)
    with thread_count(threads):
        found = run(small_tiles, images, weight, None, window, grad_output)
    assert_matches_direct(found, images, weight, None, window, grad_output, rtol=1e-10)


def test_only_the_gradients_asked_for(method):
    kernel = METHODS[method]
    rng = np.random.default_rng(3)
    images, weight = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    window = SlidingWindow((5, 5), (3, 3))
    grad_output = rng.standard_normal((2, 4, 3, 3))
    _, saved = kernel.forward(images, weight, None, window, 1)
    grad_input, grad_weight, grad_bias = kernel.backward(
        grad_output, saved, weight, window, 1, input_grad=False, param_grads=True, bias=False)
    assert grad_input is None and grad_bias is None and grad_weight.shape == weight.shape
    grad_input, grad_weight, _ = kernel.backward(
        grad_output, saved, weight, window, 1, input_grad=True, param_grads=False, bias=True)
    assert grad_weight is None and grad_input.shape == (2, 5, 5, 3)


def test_float32_stays_float32_and_empty_batches_work(method):
    kernel = METHODS[method]
    weight = np.ones((3, 2, 3, 3), np.float32)
    window = SlidingWindow((4, 4), (3, 3), pads=(1, 1, 1, 1))
    output, _ = kernel.forward(np.ones((0, 2, 4, 4), np.float32), weight, None, window, 1)
    assert output.shape == (0, 4, 4, 3) and output.dtype == np.float32
    images = np.ones((2, 2, 4, 4), np.float32)
    grads = run(kernel, images, weight, np.zeros(3, np.float32), window,
                np.ones((2, 3, 4, 4), np.float32))[1:]
    assert all(g.dtype == np.float32 for g in grads)
    assert math.isclose(float(grads[2][0]), 32.0)


def test_taps_serve_same_padded_layers_of_enough_channels_and_only_those():
    same = SlidingWindow((32, 32), (3, 3), pads=(1, 1, 1, 1))
    taps = TapKernel()
    assert taps.fits(same, 32, 32, 1)
    assert not taps.fits(same, 3, 32, 1)  # an RGB image: im2col
    assert not taps.fits(same, 32, 32, 2)  # groups
    strided = SlidingWindow((32, 32), (3, 3), stride=(2, 2), pads=(1, 1, 1, 1))
    assert not taps.fits(strided, 32, 32, 1)
    valid = SlidingWindow((14, 14), (5, 5))  # most of the grid would be computed for nothing
    assert not taps.fits(valid, 32, 32, 1)


def test_a_short_last_tile_does_not_read_what_an_earlier_tile_left():
    """Tiles of 3: a batch of 3 infinite samples, then a batch of 1 whose buffer's next
    blocks still hold them. The products of positions past the last sample (discarded, or
    times a zero gradient) must not read them: inf × 0 would be NaN."""
    kernel = TapKernel(min_channels=1, max_waste=math.inf, tile=3)
    rng = np.random.default_rng(4)
    weight, bias = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    window = SlidingWindow((5, 5), (3, 3), pads=(1, 1, 1, 1))
    with thread_count(1):
        for images in (np.full((3, 2, 5, 5), np.inf), rng.standard_normal((1, 2, 5, 5))):
            grad_output = np.ones((len(images), 3, 5, 5))
            found = run(kernel, images, weight, bias, window, grad_output)
    assert_matches_direct(found, images, weight, bias, window, grad_output, rtol=1e-9)


def test_layers_whose_grids_share_a_pitch_do_not_share_stale_gaps():
    """Two layers whose grids have the same pitch and rows per sample (33): a 32×32 image
    under padding 1, and a 31×31 one under pads (1, 2), whose gaps the first fills with
    pixels. Run after the first, the second's padding must still read zeros."""
    kernel = METHODS["taps"]
    rng = np.random.default_rng(6)
    first = SlidingWindow((32, 32), (4, 4), pads=(1, 1, 1, 1))      # 31×31 out, pitch 33
    second = SlidingWindow((31, 31), (4, 4), pads=(1, 2, 1, 2))     # 31×31 out, pitch 33
    weight, bias = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal(3)
    large = rng.standard_normal((2, 2, 32, 32)) * 1e3
    small = rng.standard_normal((2, 2, 31, 31))
    grad_output = rng.standard_normal((2, 3, 31, 31))
    options = dict(input_grad=True, param_grads=True, bias=True)
    with thread_count(1):
        _, large_saved = kernel.forward(large, weight, bias, first, 1)
        output, small_saved = kernel.forward(small, weight, bias, second, 1)
        kernel.backward(grad_output, large_saved, weight, first, 1, **options)
        grads = kernel.backward(grad_output, small_saved, weight, second, 1, **options)
    assert_matches_direct((output, *grads), small, weight, bias, second, grad_output, rtol=1e-9)


# --- channel planes a chunk of samples at a time (the first layer: grey or colour images) ---
RELU = Epilogue(lambda values: np.maximum(values, 0, out=values),
                lambda grad, output, out: np.multiply(grad, output > 0, out=out))


@pytest.mark.parametrize("case", CASES, ids=lambda case: ",".join(
    f"{name}={setting}" for name, setting in case.items()))
@pytest.mark.parametrize("channels, filters", [(1, 17), (2, 5), (3, 16), (3, 32)])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_channel_planes_in_chunks_equal_the_direct_kernel(case, channels, filters, dtype,
                                                          rtol):
    """Chunks of one sample, of a few (one short, where the tile does not divide), and as many
    as the tile holds, on one thread and on two; a batch of one and an odd one; odd image
    sizes; with and without a bias and a fused ReLU: outputs and gradients equal the direct
    kernel's (the ReLU's applied after it)."""
    rng = np.random.default_rng(7)
    window = SlidingWindow((9, 7), **case)
    positions = window.output_hw[0] * window.output_hw[1]
    settings = [  # (batch, samples per chunk, samples per tile, threads, bias and ReLU)
        (1, 1, None, 1, False), (7, 2, 5, 2, True), (7, 1, 3, 1, True),
        (5, 1 << 20, None, 2, False), (6, 3, 6, 1, True)]
    for batch, chunk, tile, threads, fused in settings:
        kernel = TiledKernel(plane_chunk_rows=chunk * positions, tile=tile)
        images = rng.standard_normal((batch, channels, 9, 7)).astype(dtype)
        weight = rng.standard_normal((filters, channels, *case["kernel"])).astype(dtype)
        bias = rng.standard_normal(filters).astype(dtype) if fused else None
        grad_output = rng.standard_normal((batch, filters, *window.output_hw)).astype(dtype)
        epilogue = RELU if fused else None
        with thread_count(threads):
            output, saved = kernel.forward(images, weight, bias, window, 1, epilogue=epilogue)
            output = output.transpose(0, 3, 1, 2)
            found = [kernel.backward(grad_output, saved, weight, window, 1,
                                     input_grad=input_grad, param_grads=True,
                                     bias=fused, epilogue=epilogue, output=output)
                     for input_grad in (True, False)]
        assert output.dtype == dtype
        expected_output, _ = DirectKernel().forward(images, weight, bias, window, 1)
        expected_output = expected_output.transpose(0, 3, 1, 2)
        if fused:
            expected_output = np.maximum(expected_output, 0)
            grad_output = grad_output * (output > 0)
        expected = run(DirectKernel(), images, weight, bias, window, grad_output)[1:]
        scale = max(np.abs(expected_output).max(), 1)
        np.testing.assert_allclose(output, expected_output, rtol=rtol, atol=rtol * scale)
        for grads in found:
            for value, wanted in zip(grads, expected):
                if value is not None:
                    assert value.dtype == dtype
                    np.testing.assert_allclose(value, wanted, rtol=rtol,
                                               atol=rtol * max(np.abs(wanted).max(), 1))


# Tap products over pairs of neighbouring pixels (pairs.py), beyond the tests above that run
# them as the "taps-pairs" method: taken where the layer's taps pay for them (3×3 and wider
# kernels with an odd left padding); the other cases run the plain taps on the same kernel.

PAIRS = METHODS["taps-pairs"]

PAIR_CASES = [
    dict(kernel=(3, 3), pads=(1, 1, 1, 1)),                      # the ResNet's convs: pairs
    dict(kernel=(3, 3), pads=(0, 0, 0, 0)),                      # left padding 0 and 2: plain
    dict(kernel=(3, 3), pads=(2, 2, 2, 2)),
    dict(kernel=(3, 3), dilation=(2, 1), pads=(2, 2, 1, 1)),     # rows dilated: pairs
    dict(kernel=(3, 3), dilation=(2, 2), pads=(2, 2, 2, 2)),     # columns dilated: plain
    dict(kernel=(5, 5), pads=(1, 3, 1, 3)),                      # odd left padding: pairs
    dict(kernel=(2, 3), pads=(0, 1, 1, 1)),                      # "same", asymmetric: pairs
]


@pytest.fixture(params=["blas", "numpy"])
def pair_route(request, monkeypatch):
    """Pair products through BLAS and through blas's numpy route."""
    if request.param == "numpy":
        monkeypatch.setattr(blas, "_routines", {})
    return request.param


def assert_random_case_matches_direct(kernel, hw, case, channels, filters, batch, seed):
    """``kernel``'s output and gradients on random arrays equal the direct kernel's (float64),
    a window of ``case`` over ``hw`` images (skipped where it has no output)."""
    rng = np.random.default_rng(seed)
    window = SlidingWindow(hw, **case)
    if min(window.output_hw) < 1:
        pytest.skip("no output")
    images = rng.standard_normal((batch, channels, *hw))
    weight = rng.standard_normal((filters, channels, *case["kernel"]))
    bias = rng.standard_normal(filters)
    grad_output = rng.standard_normal((batch, filters, *window.output_hw))
    assert_matches_direct(run(kernel, images, weight, bias, window, grad_output), images,
                          weight, bias, window, grad_output, rtol=1e-10)


@pytest.mark.parametrize("case", PAIR_CASES, ids=lambda case: ",".join(
    f"{name}={setting}" for name, setting in case.items()))
@pytest.mark.parametrize("hw", [(9, 8), (7, 9), (6, 1)])        # even and odd widths
@pytest.mark.parametrize("channels,filters,batch", [(16, 16, 3), (5, 7, 1), (3, 2, 2)])
def test_pair_products_equal_the_direct_kernel(pair_route, case, hw, channels, filters, batch):
    assert_random_case_matches_direct(PAIRS, hw, case, channels, filters, batch, seed=11)


def test_pairs_serve_the_resnets_convs_and_only_where_their_taps_pay():
    same = SlidingWindow((32, 32), (3, 3), pads=(1, 1, 1, 1))
    taps = TapKernel()
    assert taps.layer_grid(same, 16, 16).pairs is not None
    assert taps.layer_grid(same, 16, 16).pitch % 2 == 0
    assert taps.layer_grid(same, 64, 64).pairs is None    # above pair_channels
    unpadded = SlidingWindow((32, 32), (3, 3), pads=(1, 1, 0, 0))
    assert taps.layer_grid(unpadded, 16, 16).pairs is None


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-5), (np.float64, 1e-10)])
def test_pair_products_keep_the_dtype_and_the_plain_taps_accuracy(dtype, rtol):
    """float32 pair products are as close to the float64 direct kernel as the plain taps."""
    rng = np.random.default_rng(12)
    window = SlidingWindow((10, 11), (3, 3), pads=(1, 1, 1, 1))
    images = rng.standard_normal((3, 16, 10, 11))
    weight, bias = rng.standard_normal((16, 16, 3, 3)), rng.standard_normal(16)
    grad_output = rng.standard_normal((3, 16, 10, 11))
    expected = run(DirectKernel(), images, weight, bias, window, grad_output)
    plain = TapKernel(pair_channels=(1, 0))
    found = {kernel: run(kernel, *(array.astype(dtype) for array in (images, weight, bias)),
                         window, grad_output.astype(dtype)) for kernel in (PAIRS, plain)}
    for index, wanted in enumerate(expected):
        scale = np.max(np.abs(wanted))
        errors = [np.max(np.abs(found[kernel][index] - wanted)) / scale
                  for kernel in (PAIRS, plain)]
        assert found[PAIRS][index].dtype == dtype
        assert errors[0] <= max(rtol, 4 * errors[1])


# --- a fused ReLU beyond channel planes (channels-last im2col, grouped and kernel-row
# matrices), strides 1 and 2: forward and each combination of gradients asked for ---

@pytest.mark.parametrize("case", CASES, ids=lambda case: ",".join(
    f"{name}={setting}" for name, setting in case.items()))
@pytest.mark.parametrize("method", ["im2col", "grouped", "kernel-rows"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_a_fused_relu_on_channels_last_layouts_equals_relu_after_the_direct_kernel(
        case, method, dtype, rtol):
    """Batches of one and odd ones, odd sizes, tiles of one sample and of several (a short
    last tile), one thread and two, with and without a bias: the output is the direct
    kernel's through a ReLU, and the gradients, whichever are asked for, the direct kernel's
    of the output gradient masked where the output is not positive."""
    rng = np.random.default_rng(11)
    window = SlidingWindow((9, 7), **case)
    settings = [(1, None, 1, True), (5, 2, 2, False), (6, 1, 1, True), (7, 3, 2, True)]
    for batch, tile, threads, with_bias in settings:
        kernel = dataclasses.replace(METHODS[method], tile=tile)
        channels, filters = 6, 5
        images = rng.standard_normal((batch, 9, 7, channels)).astype(dtype).transpose(0, 3, 1, 2)
        weight = rng.standard_normal((filters, channels, *case["kernel"])).astype(dtype)
        bias = rng.standard_normal(filters).astype(dtype) if with_bias else None
        grad_output = rng.standard_normal((batch, filters, *window.output_hw)).astype(dtype)
        assert kernel.takes_epilogue(window, channels, filters, 1)
        with thread_count(threads):
            output, saved = kernel.forward(images, weight, bias, window, 1, epilogue=RELU)
            output = output.transpose(0, 3, 1, 2)
            found = {asked: kernel.backward(grad_output, saved, weight, window, 1,
                                            input_grad=asked[0], param_grads=asked[1],
                                            bias=with_bias, epilogue=RELU, output=output)
                     for asked in ((True, True), (True, False), (False, True))}
        plain, _ = DirectKernel().forward(images, weight, bias, window, 1)
        expected_output = np.maximum(plain.transpose(0, 3, 1, 2), 0)
        assert output.dtype == dtype
        np.testing.assert_allclose(output, expected_output, rtol=rtol,
                                   atol=rtol * max(np.abs(expected_output).max(), 1))
        expected = run(DirectKernel(), images, weight, bias, window,
                       grad_output * (output > 0))[1:]
        for (input_grad, param_grads), grads in found.items():
            for value, wanted, asked in zip(grads, expected,
                                            (input_grad, param_grads, param_grads and with_bias)):
                assert (value is not None) == asked
                if asked:
                    assert value.dtype == dtype
                    np.testing.assert_allclose(value, wanted, rtol=rtol,
                                               atol=rtol * max(np.abs(wanted).max(), 1))


# The tap kernel's backward through the output gradient copied kernel-width pixels wide
# (taps.WideGradient), taken up to TapKernel.wide_filters filters where the grid has no pairs:
# against the direct kernel and against the taps one at a time (wide_filters=0); each also
# with the weight gradient over every kernel row's input at once (taps.stacked_input), as
# from TapKernel.stack_min_channels channels.

WIDE = TapKernel(min_channels=1, max_waste=math.inf, pair_channels=(1, 0),
                 wide_filters=1 << 30, stack_min_channels=1 << 30)
ONE_TAP_AT_A_TIME = dataclasses.replace(WIDE, wide_filters=0)
WIDE_STACKED = dataclasses.replace(WIDE, stack_min_channels=1)
ONE_TAP_STACKED = dataclasses.replace(ONE_TAP_AT_A_TIME, stack_min_channels=1)

WIDE_CASES = [case for case in CASES if case.get("stride", (1, 1)) == (1, 1)] + [
    dict(kernel=(3, 3), pads=(2, 2, 2, 2)),
    dict(kernel=(3, 3), dilation=(1, 2), pads=(1, 1, 2, 2)),     # columns dilated
    dict(kernel=(2, 4), pads=(0, 1, 1, 2)),                      # even width, asymmetric
]


@pytest.mark.parametrize("kernel", [WIDE, ONE_TAP_AT_A_TIME, WIDE_STACKED, ONE_TAP_STACKED],
                         ids=["wide", "one-tap", "wide-stacked", "one-tap-stacked"])
@pytest.mark.parametrize("case", WIDE_CASES, ids=lambda case: ",".join(
    f"{name}={setting}" for name, setting in case.items()))
@pytest.mark.parametrize("hw", [(9, 8), (7, 9), (5, 3)])
@pytest.mark.parametrize("channels,filters,batch", [(32, 32, 2), (5, 7, 1), (3, 2, 3)])
def test_wide_gradient_products_equal_the_direct_kernel(pair_route, kernel, case, hw, channels,
                                                        filters, batch):
    assert_random_case_matches_direct(kernel, hw, case, channels, filters, batch, seed=13)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 2e-4), (np.float64, 1e-10)])
def test_wide_gradients_with_a_fused_relu_in_any_tiles_and_threads(dtype, rtol):
    """A fused ReLU and a bias, tiles of one sample, of a few (the last short) and of the
    whole batch, on one thread and on three, each gradient alone and all together: the direct
    kernel's gradients of the ReLU's result, float32 as float32."""
    rng = np.random.default_rng(14)
    window = SlidingWindow((11, 10), (3, 3), pads=(1, 1, 1, 1))
    images = rng.standard_normal((5, 32, 11, 10)).astype(dtype)
    weight = rng.standard_normal((24, 32, 3, 3)).astype(dtype) / 10
    bias = rng.standard_normal(24).astype(dtype)
    grad_output = rng.standard_normal((5, 24, 11, 10)).astype(dtype)
    output, saved = WIDE.forward(images, weight, bias, window, 1, epilogue=RELU)
    output = output.transpose(0, 3, 1, 2)
    expected = run(DirectKernel(), images, weight, bias, window, grad_output * (output > 0))[1:]
    for tile, threads, stacked in [(1, 1, False), (2, 3, True), (None, 1, True), (3, 3, False),
                                   (1, 1, True)]:
        kernel = dataclasses.replace(WIDE, tile=tile, stack_min_channels=1 if stacked else 99)
        for input_grad, param_grads in [(True, True), (True, False), (False, True)]:
            with thread_count(threads):
                found = kernel.backward(grad_output, saved, weight, window, 1,
                                        input_grad=input_grad, param_grads=param_grads,
                                        bias=True, epilogue=RELU, output=output)
            for value, wanted, asked in zip(found, expected,
                                            (input_grad, param_grads, param_grads)):
                assert (value is not None) == asked
                if asked:
                    assert value.dtype == dtype
                    np.testing.assert_allclose(value, wanted, rtol=rtol,
                                               atol=rtol * np.abs(wanted).max())


def test_wide_gradients_serve_the_classic_nets_32_filter_convs_only():
    same = SlidingWindow((32, 32), (3, 3), pads=(1, 1, 1, 1))
    taps = TapKernel()
    assert taps.layer_grid(same, 32, 32).pairs is None and 32 <= taps.wide_filters < 64


@pytest.mark.parametrize("case", CASES, ids=lambda case: ",".join(
    f"{name}={setting}" for name, setting in case.items()))
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_window_views_are_numpys_sliding_windows_and_read_only(case, layout):
    """The im2col gathers' window views, made from strides directly, are numpy's sliding
    windows with stride and dilation applied, over contiguous memory or a strided view, and
    cannot write into the images they view."""
    from numpy.lib.stride_tricks import sliding_window_view

    from graphnet_plugins._conv_kernels.im2col import window_view
    window = SlidingWindow((9, 7), **case)
    images = np.random.default_rng(3).standard_normal((2, *window.padded_hw, 4))
    if layout == "strided":
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    (stride_h, stride_w), (dilation_h, dilation_w) = window.stride, window.dilation
    expected = sliding_window_view(images, window.extent, axis=(1, 2))[
        :, ::stride_h, ::stride_w, :, ::dilation_h, ::dilation_w]
    found = window_view(images, window)
    np.testing.assert_array_equal(found, expected)
    assert found.shape[1:3] == window.output_hw and not found.flags.writeable


# col2im's scatter-adds into the padded gradient's stride phases (im2col.scatter_taps, which
# the tiled and the grouped kernels share): strides that divide the kernel's reach or not, that
# leave input rows no tap reads (their gradient zero), with dilation, asymmetric and wide
# padding.
PHASE_CASES = CASES + [
    dict(kernel=(3, 3), stride=(2, 3), dilation=(2, 1), pads=(2, 1, 0, 2)),
    dict(kernel=(2, 2), stride=(3, 3), pads=(0, 0, 1, 1)),      # rows and columns skipped
    dict(kernel=(1, 1), stride=(2, 2)),
    dict(kernel=(5, 3), stride=(1, 2), pads=(3, 3, 2, 2)),
]


@pytest.mark.parametrize("case", PHASE_CASES, ids=lambda case: ",".join(
    f"{name}={setting}" for name, setting in case.items()))
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("groups", [1, 2])
def test_col2im_by_stride_phases_equals_the_direct_kernel(case, dtype, rtol, groups):
    """The input gradient by col2im (more filters than channels, or any stride but 1) over
    odd image sizes, a batch of one and odd ones, tiles of one sample and of a few (the last
    short), one thread and two, by the tiled kernel (one group) and the grouped one (two):
    the direct kernel's, float32 as float32."""
    rng = np.random.default_rng(17)
    for hw, batch, tile, threads in [((9, 7), 1, None, 1), ((8, 11), 5, 2, 2),
                                     ((7, 6), 3, 1, 1)]:
        window = SlidingWindow(hw, **case)
        kernel = (dataclasses.replace(METHODS["im2col"], tile=tile) if groups == 1
                  else GroupedKernel(block_bytes=1 if tile else 1 << 20))
        images = rng.standard_normal((batch, 4, *hw)).astype(dtype)
        weight = rng.standard_normal((6, 4 // groups, *case["kernel"])).astype(dtype)
        grad_output = rng.standard_normal((batch, 6, *window.output_hw)).astype(dtype)
        with thread_count(threads):
            _, saved = kernel.forward(images, weight, None, window, groups)
            found, _, _ = kernel.backward(grad_output, saved, weight, window, groups,
                                          input_grad=True, param_grads=False, bias=False)
        _, direct_saved = DirectKernel().forward(images, weight, None, window, groups)
        expected, _, _ = DirectKernel().backward(grad_output, direct_saved, weight, window,
                                                 groups, input_grad=True, param_grads=False,
                                                 bias=False)
        assert found.dtype == dtype
        np.testing.assert_allclose(found, expected, rtol=rtol,
                                   atol=rtol * max(np.abs(expected).max(), 1))


# --- depthwise: one input channel per group -------------------------------------------------
RELU6 = Epilogue(lambda values: np.clip(values, 0, 6, out=values),
                 lambda grad, output, out: np.multiply(grad, (output > 0) & (output < 6),
                                                       out=out))


def run_grouped(kernel, images, weight, bias, window, grad_output, groups, *, epilogue=None,
                input_grad=True, param_grads=True):
    """(output, input gradient, weight gradient, bias gradient) of a ``groups``-group conv."""
    output, saved = kernel.forward(images, weight, bias, window, groups, epilogue=epilogue)
    nchw = output.transpose(0, 3, 1, 2)
    grads = kernel.backward(grad_output, saved, weight, window, groups, input_grad=input_grad,
                            param_grads=param_grads, bias=bias is not None, epilogue=epilogue,
                            output=nchw)
    return (output, *grads)


@pytest.mark.parametrize("case", CASES, ids=lambda case: ",".join(
    f"{name}={setting}" for name, setting in case.items()))
@pytest.mark.parametrize("channels, multiplier", [(6, 1), (3, 2)])
@pytest.mark.parametrize("batch, tile, threads", [(5, None, 1), (5, 1, 3), (5, 2, 2),
                                                  (1, None, 2)])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_depthwise_equals_the_direct_kernel(case, channels, multiplier, batch, tile, threads,
                                           dtype, rtol):
    """Every tap's multiply-add, over tiles of one, two or all samples (the last short) on one
    to three threads, and a batch of one, against the direct kernel; float32 stays float32."""
    rng = np.random.default_rng(21)
    images = rng.standard_normal((batch, 9, 8, channels)).astype(dtype).transpose(0, 3, 1, 2)
    weight = rng.standard_normal((channels * multiplier, 1, *case["kernel"])).astype(dtype)
    bias = rng.standard_normal(channels * multiplier).astype(dtype)
    window = SlidingWindow(images.shape[2:], **case)
    grad_output = rng.standard_normal((batch, channels * multiplier,
                                       *window.output_hw)).astype(dtype)
    with thread_count(threads):
        found = run_grouped(DepthwiseKernel(tile=tile), images, weight, bias, window,
                            grad_output, channels)
    expected = run_grouped(DirectKernel(), images, weight, bias, window, grad_output, channels)
    for value, wanted in zip(found, expected):
        assert value.dtype == dtype
        np.testing.assert_allclose(value, wanted, rtol=rtol, atol=rtol * np.abs(wanted).max())


@pytest.mark.parametrize("input_grad, param_grads", [(True, False), (False, True)])
def test_depthwise_with_a_fused_relu6_computes_only_what_is_asked(input_grad, param_grads):
    rng = np.random.default_rng(22)
    images = rng.standard_normal((4, 8, 7, 6)) * 4
    weight, bias = rng.standard_normal((8, 1, 3, 3)), rng.standard_normal(8)
    window = SlidingWindow((7, 6), (3, 3), pads=(1, 1, 1, 1))
    grad_output = rng.standard_normal((4, 8, 7, 6))
    found = run_grouped(DepthwiseKernel(tile=3), images, weight, bias, window, grad_output, 8,
                        epilogue=RELU6, input_grad=input_grad, param_grads=param_grads)
    plain, _ = DirectKernel().forward(images, weight, bias, window, 8)
    assert np.array_equal(found[0] >= 6, plain >= 6) and found[0].max() <= 6
    np.testing.assert_allclose(found[0], np.clip(plain, 0, 6), rtol=1e-12)
    inside = ((plain > 0) & (plain < 6)).transpose(0, 3, 1, 2)
    expected = run_grouped(DirectKernel(), images, weight, bias, window, grad_output * inside, 8)
    for value, wanted, asked in zip(found[1:], expected[1:],
                                    (input_grad, param_grads, param_grads)):
        assert (value is not None) == asked
        if asked:
            np.testing.assert_allclose(value, wanted, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels, hw, rows", [(64, (8, 8), True), (512, (4, 4), False),
                                                (256, (8, 8), False)])
def test_kernel_rows_only_where_samples_have_as_many_positions_as_filters(channels, hw, rows):
    """One product per kernel row runs per sample: with fewer positions than filters (VGG's
    late 512-channel layers), the tile's im2col product instead."""
    from graphnet_plugins._conv_kernels.tiled import Columns
    window = SlidingWindow(hw, (3, 3), pads=(1, 1, 1, 1))
    images = np.zeros((4, channels, *hw), np.float32)
    assert Columns(images, window, TiledKernel(), filters=channels).rows is rows
