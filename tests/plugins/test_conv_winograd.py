"""The Winograd kernels, F(2×2, 3×3) and F(4×4, 3×3), called directly: outputs and all
gradients equal the direct kernel's in float64 over odd sizes, one-sided and asymmetric
padding, any channel count, tile size and thread count, with and without a fused ReLU; in
float32 on realistic magnitudes their error against the float64 direct kernel stays within the
bound measured for them; and they fit exactly the convolutions they compute.
(tests/plugins/test_conv.py runs them through the op over the conv test grid.)"""
from __future__ import annotations

import numpy as np
import pytest

from graphnet.fusion import Epilogue
from graphnet_plugins._conv_kernels import DirectKernel, TapKernel, WinogradKernel
from graphnet_plugins._window import SlidingWindow

from .test_conv_kernels import thread_count


def run(kernel, images, weight, bias, window, grad_output, **options):
    """(output, input gradient, weight gradient, bias gradient) of ``kernel``, NHWC."""
    output, saved = kernel.forward(images, weight, bias, window, 1)
    grads = kernel.backward(grad_output, saved, weight, window, 1, input_grad=True,
                            param_grads=True, bias=bias is not None, **options)
    return (output, *grads)


def problem(seed, batch, channels, filters, input_hw, pads, dtype=np.float64):
    rng = np.random.default_rng(seed)
    window = SlidingWindow(input_hw, (3, 3), pads=pads)
    images = rng.standard_normal((batch, channels, *input_hw)).astype(dtype)
    weight = rng.standard_normal((filters, channels, 3, 3)).astype(dtype)
    bias = rng.standard_normal(filters).astype(dtype)
    grad_output = rng.standard_normal((batch, filters, *window.output_hw)).astype(dtype)
    return images, weight, bias, window, grad_output


@pytest.mark.parametrize("size", [2, 4])
@pytest.mark.parametrize("input_hw, pads", [
    ((9, 8), (1, 1, 1, 1)),      # "same", output not a whole number of tiles
    ((7, 5), (0, 0, 0, 0)),      # "valid": 5×3, a tile and a part
    ((6, 7), (2, 1, 0, 2)),      # four sides, asymmetric
    ((3, 3), (2, 2, 2, 2)),      # padding the full reach: 5×5 out of 3×3
    ((11, 13), (1, 0, 2, 1)),
])
@pytest.mark.parametrize("channels, filters", [(1, 1), (5, 7), (17, 3)])
def test_equals_the_direct_kernel(size, input_hw, pads, channels, filters):
    images, weight, bias, window, grad_output = problem(0, 3, channels, filters, input_hw, pads)
    expected = run(DirectKernel(), images, weight, bias, window, grad_output)
    found = run(WinogradKernel(size), images, weight, bias, window, grad_output)
    for value, wanted in zip(found, expected):
        np.testing.assert_allclose(value, wanted, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size", [2, 4])
@pytest.mark.parametrize("threads, tile", [(1, 1), (2, 2), (3, None)])
def test_any_tile_size_and_thread_count_gives_the_same_result(size, threads, tile):
    images, weight, bias, window, grad_output = problem(1, 7, 4, 6, (10, 9), (1, 1, 1, 1))
    with thread_count(1):
        whole = run(WinogradKernel(size, tile=7), images, weight, bias, window, grad_output)
    with thread_count(threads):
        found = run(WinogradKernel(size, tile=tile), images, weight, bias, window,
                    grad_output)
    for value, wanted in zip(found, whole):
        # tiles only regroup the sums of the weight gradient
        np.testing.assert_allclose(value, wanted, rtol=1e-10, atol=1e-10)
    with thread_count(threads):  # the same tiles on other threads: the same bits
        again = run(WinogradKernel(size, tile=tile), images, weight, bias, window, grad_output)
    for value, first in zip(again, found):
        assert np.array_equal(value, first)


@pytest.mark.parametrize("size, bound", [(2, 2e-6), (4, 3e-5)])
def test_float32_error_on_realistic_magnitudes_stays_within_the_measured_bound(size, bound):
    """He-initialised weights, post-ReLU activations, 64 channels: the error of every result
    against the float64 direct kernel, relative to the result's largest value. Measured
    (3 to 512 channels): direct and taps 1-4e-7, F(2×2) 2-7e-7, F(4×4) 3e-6 to 9e-6."""
    rng = np.random.default_rng(2)
    channels = 64
    window = SlidingWindow((12, 12), (3, 3), pads=(1, 1, 1, 1))
    images = np.maximum(rng.standard_normal((4, channels, 12, 12)), 0)
    weight = rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / (9 * channels))
    bias = np.zeros(channels)
    grad_output = rng.standard_normal((4, channels, 12, 12)) * 1e-3
    expected = run(DirectKernel(), images, weight, bias, window, grad_output)
    as32 = [array.astype(np.float32) for array in (images, weight, bias, grad_output)]
    found = run(WinogradKernel(size), as32[0], as32[1], as32[2], window, as32[3])
    baseline = run(TapKernel(), as32[0], as32[1], as32[2], window, as32[3])
    for value, reference, wanted in zip(found, baseline, expected):
        assert value.dtype == np.float32
        scale = np.abs(wanted).max()
        error = np.abs(value - wanted).max() / scale
        assert error < bound, error
        # and not better than what float32 allows: the comparison sees rounding at all
        assert np.abs(reference - wanted).max() / scale > 1e-9


def test_a_fused_relu_equals_relu_after_the_conv():
    relu = Epilogue(lambda values: np.maximum(values, 0, out=values),
                    lambda grad, output, out: np.multiply(grad, output > 0, out=out))
    images, weight, bias, window, grad_output = problem(3, 4, 3, 5, (7, 6), (1, 1, 1, 1))
    kernel = WinogradKernel(2, tile=3)
    assert kernel.takes_epilogue(window, 3, 5, 1)
    output, saved = kernel.forward(images, weight, bias, window, 1, epilogue=relu)
    output = output.transpose(0, 3, 1, 2)
    plain, _ = DirectKernel().forward(images, weight, bias, window, 1)
    np.testing.assert_allclose(output, np.maximum(plain.transpose(0, 3, 1, 2), 0), rtol=1e-10)
    found = kernel.backward(grad_output, saved, weight, window, 1, input_grad=True,
                            param_grads=True, bias=True, epilogue=relu, output=output)
    expected = run(DirectKernel(), images, weight, bias, window, grad_output * (output > 0))
    for value, wanted in zip(found, expected[1:]):
        np.testing.assert_allclose(value, wanted, rtol=1e-10, atol=1e-10)


def test_only_the_gradients_asked_for():
    images, weight, _, window, grad_output = problem(4, 2, 3, 4, (5, 5), (0, 0, 0, 0))
    kernel = WinogradKernel(4)
    _, saved = kernel.forward(images, weight, None, window, 1)
    grad_input, grad_weight, grad_bias = kernel.backward(
        grad_output, saved, weight, window, 1, input_grad=False, param_grads=True, bias=False)
    assert grad_input is None and grad_bias is None and grad_weight.shape == weight.shape
    grad_input, grad_weight, _ = kernel.backward(
        grad_output, saved, weight, window, 1, input_grad=True, param_grads=False, bias=True)
    assert grad_weight is None and grad_input.shape == (2, 5, 5, 3)


def test_an_empty_batch_works():
    weight = np.ones((3, 2, 3, 3), np.float32)
    window = SlidingWindow((4, 4), (3, 3), pads=(1, 1, 1, 1))
    output, _ = WinogradKernel(2).forward(np.ones((0, 2, 4, 4), np.float32), weight, None,
                                          window, 1)
    assert output.shape == (0, 4, 4, 3) and output.dtype == np.float32


@pytest.mark.parametrize("window, groups, fits", [
    (SlidingWindow((8, 8), (3, 3), pads=(1, 1, 1, 1)), 1, True),
    (SlidingWindow((8, 8), (3, 3)), 1, True),
    (SlidingWindow((8, 8), (3, 3), pads=(2, 2, 2, 2)), 1, True),
    (SlidingWindow((8, 8), (3, 3), pads=(3, 3, 3, 3)), 1, False),   # no transposed conv
    (SlidingWindow((8, 8), (3, 3), stride=(2, 2), pads=(1, 1, 1, 1)), 1, False),
    (SlidingWindow((8, 8), (3, 3), dilation=(2, 2), pads=(2, 2, 2, 2)), 1, False),
    (SlidingWindow((8, 8), (5, 5), pads=(2, 2, 2, 2)), 1, False),
    (SlidingWindow((8, 8), (3, 3), pads=(1, 1, 1, 1)), 2, False),
])
def test_fits_3x3_stride_1_one_group_convolutions_only(window, groups, fits):
    for size in (2, 4):
        assert WinogradKernel(size).fits(window, 4, 4, groups) is fits
