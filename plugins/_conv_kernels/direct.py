"""The direct convolution: the definition, one kernel tap at a time, in plain numpy.

For every tap (r, c) of the kernel, the padded input's slice that the tap reads across all
output positions, times the tap's (channels → filters) weight, is added to the output. Its
gradients are the same sums read backwards. It fits every convolution and is the slowest
kernel: the oracle every other kernel is tested against, and the last in the list.
"""
from __future__ import annotations

import numpy as np

from .._window import SlidingWindow
from .im2col import padded_channels_last


class DirectKernel:
    """Any convolution, one einsum per kernel tap and group, channels-last."""

    name = "direct"

    def fits(self, window: SlidingWindow, channels: int, filters: int, groups: int) -> bool:
        return True

    def takes_epilogue(self, window, channels, filters, groups) -> bool:
        return False

    def forward(self, images, weight, bias, window: SlidingWindow, groups: int, *,
                epilogue=None):
        padded = grouped(padded_channels_last(images, window), groups)
        taps = tap_weights(weight, groups)
        output = np.zeros((len(images), *window.output_hw, groups, len(weight) // groups),
                          dtype=images.dtype)
        for row, col, rows, cols in window.taps():
            output += np.einsum("nhwgc,gfc->nhwgf", padded[:, rows, cols], taps[row, col])
        output = output.reshape(*output.shape[:3], len(weight))
        if bias is not None:
            output += bias
        return output, padded

    def backward(self, grad_output, padded, weight, window: SlidingWindow, groups: int, *,
                 input_grad: bool, param_grads: bool, bias: bool, epilogue=None, output=None):
        filters = len(weight)
        grad = grad_output.transpose(0, 2, 3, 1).reshape(
            *grad_output.shape[:1], *window.output_hw, groups, filters // groups)
        taps = tap_weights(weight, groups)
        grad_padded = np.zeros_like(padded) if input_grad else None
        grad_taps = np.zeros_like(taps) if param_grads else None
        for row, col, rows, cols in window.taps():
            if input_grad:
                grad_padded[:, rows, cols] += np.einsum("nhwgf,gfc->nhwgc", grad, taps[row, col])
            if param_grads:
                grad_taps[row, col] = np.einsum("nhwgf,nhwgc->gfc", grad, padded[:, rows, cols])
        grad_input = grad_weight = grad_bias = None
        if input_grad:
            top, _, left, _ = window.pads
            height, width = window.input_hw
            grad_input = grad_padded[:, top:top + height, left:left + width]
            grad_input = grad_input.reshape(*grad_input.shape[:3], -1)
        if param_grads:
            # (kh, kw, groups, filters/group, channels/group) → (filters, channels/group, kh, kw)
            grad_weight = grad_taps.transpose(2, 3, 4, 0, 1).reshape(weight.shape)
            if bias:
                grad_bias = grad_output.sum(axis=(0, 2, 3))
        return grad_input, grad_weight, grad_bias


def grouped(channels_last: np.ndarray, groups: int) -> np.ndarray:
    """(..., channels) → (..., groups, channels/group): a view."""
    return channels_last.reshape(*channels_last.shape[:-1], groups, -1)


def tap_weights(weight: np.ndarray, groups: int) -> np.ndarray:
    """(filters, channels/group, kh, kw) → (kh, kw, groups, filters/group, channels/group)."""
    filters, channels_per_group, kernel_h, kernel_w = weight.shape
    per_group = weight.reshape(groups, filters // groups, channels_per_group, kernel_h, kernel_w)
    return per_group.transpose(3, 4, 0, 1, 2)
