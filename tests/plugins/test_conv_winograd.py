"""The Winograd kernels, F(2×2, 3×3) and F(4×4, 3×3), called directly: outputs and all
gradients equal the direct kernel's in float64 over odd sizes, one-sided and asymmetric
padding and channel counts from 1 up; in float32 on realistic magnitudes their error against
the float64 direct kernel stays within the bound measured for them; and they fit exactly the
convolutions they compute. (tests/plugins/test_conv_kernels.py runs them with every other
kernel through tile sizes, thread counts and a fused ReLU; tests/plugins/test_conv.py through
the op over the conv test grid.)"""
from __future__ import annotations

import numpy as np
import pytest

from graphnet_plugins._conv_kernels import DirectKernel, TapKernel, WinogradKernel
from graphnet_plugins._window import SlidingWindow

from .test_conv_kernels import run


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
    found = run(WinogradKernel(size, min_channels=1), images, weight, bias, window,
                grad_output)
    for value, wanted in zip(found, expected):
        np.testing.assert_allclose(value, wanted, rtol=1e-10, atol=1e-10)


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
        assert WinogradKernel(size).fits(window, 16, 8, groups) is fits
        # an RGB image in, or a few filters out (the input gradient's channels): too slow
        assert not WinogradKernel(size).fits(window, 3, 16, groups)
        assert not WinogradKernel(size).fits(window, 16, 4, groups)
