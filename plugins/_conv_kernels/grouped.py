"""Convolutions of several groups: im2col over blocks of samples (depthwise ones, a channel per
group, have a kernel of their own: :mod:`.depthwise`).

Groups add a leading group axis to every matrix and one batched product does all groups;
group-major memory keeps each group's matrix contiguous, which BLAS needs (strided per-group
views measured 2-8x slower). Forward saves the padded channels-last input, not the im2col
matrix: backward rebuilds the columns block by block rather than holding kernel-area times
the activation per layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphnet import blas

from .._window import SlidingWindow
from .im2col import (flipped_weight_matrix, im2col, padded_channels_last, scatter_taps,
                     torch_layout, transposed_gradient, transposed_window, weight_matrix)


@dataclass(frozen=True)
class GroupedKernel:
    """Two or more groups: per block of samples, the group-major im2col matrices times the
    weight matrices, in one batched product."""

    block_bytes: int = 8 * 2**20
    """The most bytes of im2col matrix built at once. Products run over blocks of whole
    samples: a block stays in cache and under malloc's mmap threshold (a fresh mapping
    page-faults on every call), measured 1.7-2x faster than one product over a batch of 64 for
    32- and 64-channel layers, and it bounds the op's peak memory. A small layer is one block."""
    name = "grouped"

    def fits(self, window: SlidingWindow, channels: int, filters: int, groups: int) -> bool:
        return groups > 1

    def takes_epilogue(self, window, channels, filters, groups) -> bool:
        return False

    def forward(self, images, weight, bias, window: SlidingWindow, groups: int, *,
                epilogue=None):
        padded = padded_channels_last(images, window)
        output = self.output(padded, weight, window, groups)
        if bias is not None:
            output += bias
        return output, padded

    def backward(self, grad_output, padded, weight, window: SlidingWindow, groups: int, *,
                 input_grad: bool, param_grads: bool, bias: bool, epilogue=None, output=None):
        # channels-last and contiguous: no copy when the gradient comes from a conv above
        grad_nhwc = np.ascontiguousarray(grad_output.transpose(0, 2, 3, 1))
        grad_input = grad_weight = grad_bias = None
        if input_grad:
            grad_input = self.input_gradient(grad_nhwc, weight, window, groups)
        if param_grads:
            grad_weight = self.weight_gradient(padded, grad_nhwc, window, groups)
            if bias:
                grad_bias = blas.column_sums(grad_nhwc.reshape(-1, len(weight)))
        return grad_input, grad_weight, grad_bias

    # --- im2col ----------------------------------------------------------------------------
    def output(self, padded, weight, window: SlidingWindow, groups: int) -> np.ndarray:
        """The NHWC output: per block of samples, im2col matrix × weight matrix."""
        output = np.empty((len(padded), *window.output_hw, len(weight)), dtype=padded.dtype)
        matrix = weight_matrix(weight, groups)
        for block in self.blocks(len(padded), window, padded):
            matmul_into(im2col(padded[block], window, groups), matrix, output[block])
        return output

    def weight_gradient(self, padded, grad_nhwc, window: SlidingWindow, groups: int):
        """d loss / d weight = im2col matrixᵀ × output gradient, summed over blocks."""
        channels, filters = padded.shape[3], grad_nhwc.shape[3]
        columns_per_group = window.kernel[0] * window.kernel[1] * channels // groups
        grad_matrix = np.zeros((groups, columns_per_group, filters // groups),
                               dtype=padded.dtype)
        for block in self.blocks(len(padded), window, padded):
            columns = im2col(padded[block], window, groups)
            grad_matrix += np.matmul(columns.transpose(0, 2, 1),
                                     split_groups(grad_nhwc[block], groups))
        return torch_layout(grad_matrix, window.kernel)

    def input_gradient(self, grad_nhwc, weight, window: SlidingWindow, groups: int):
        """d loss / d input, channels-last, by the method :func:`transposed_gradient` picks."""
        channels = weight.shape[1] * groups
        if transposed_gradient(window, len(weight), channels):
            return self.transposed_gradient(grad_nhwc, weight, window, groups)
        return self.col2im_gradient(grad_nhwc, weight, window, groups)

    def col2im_gradient(self, grad_nhwc, weight, window: SlidingWindow, groups: int):
        """The im2col matrix's gradient (one batched product per block), scatter-added onto
        the padded input tap by tap."""
        batch, filters = len(grad_nhwc), len(weight)
        channels = weight.shape[1] * groups
        (height, width), tap_count = window.input_hw, window.kernel[0] * window.kernel[1]
        # (groups, taps, filters/group, channels/group): one small matrix per group and tap
        tap_matrices = weight.reshape(groups, filters // groups, channels // groups, tap_count)
        tap_matrices = tap_matrices.transpose(0, 3, 1, 2)
        grad_input = np.empty((batch, height, width, groups, channels // groups),
                              dtype=grad_nhwc.dtype)
        for block in self.blocks(batch, window, grad_nhwc, channels):
            # tap-major (groups, taps, positions, channels/group): each tap's share is
            # contiguous, so the strided adds run over whole rows (measured up to 1.4x faster
            # than position-major columns, most for few channels)
            grad_columns = np.matmul(split_groups(grad_nhwc[block], groups)[:, None],
                                     tap_matrices)
            grad_columns = grad_columns.reshape(groups, tap_count, -1, *window.output_hw,
                                                channels // groups)
            # per tap: (samples, out_h, out_w, groups, channels/group)
            scatter_taps(grad_columns.transpose(1, 2, 3, 4, 0, 5), window, grad_input[block])
        return grad_input.reshape(batch, height, width, channels)

    def transposed_gradient(self, grad_nhwc, weight, window: SlidingWindow, groups: int):
        """The input gradient as a stride-1 convolution of the padded output gradient with the
        flipped, transposed kernel (:func:`.im2col.transposed_window`)."""
        unit = transposed_window(window)
        channels = weight.shape[1] * groups
        buffer = padded_channels_last(grad_nhwc.transpose(0, 3, 1, 2), unit)
        flipped = flipped_weight_matrix(weight, groups)
        grad_input = np.empty((len(grad_nhwc), *window.input_hw, channels), dtype=grad_nhwc.dtype)
        for block in self.blocks(len(grad_nhwc), unit, buffer):
            matmul_into(im2col(buffer[block], unit, groups), flipped, grad_input[block])
        return grad_input

    def blocks(self, batch: int, window: SlidingWindow, like: np.ndarray,
               channels: int | None = None) -> list[slice]:
        """Consecutive slices of the batch whose im2col matrices (over ``channels``, by default
        ``like``'s last axis) fit ``block_bytes``."""
        channels = like.shape[-1] if channels is None else channels
        per_sample = (window.output_hw[0] * window.output_hw[1] * window.kernel[0]
                      * window.kernel[1] * channels * like.itemsize)
        per_block = max(1, self.block_bytes // max(1, per_sample))
        return [slice(start, min(start + per_block, batch))
                for start in range(0, batch, per_block)]


def matmul_into(columns: np.ndarray, matrix: np.ndarray, destination: np.ndarray) -> None:
    """Write ``columns @ matrix`` of every group into the contiguous channels-last
    ``destination`` (group g fills channels g·n … g·n + n − 1)."""
    groups, per_group = columns.shape[0], matrix.shape[2]
    if groups == 1:  # the product is already channels-last: let BLAS write it in place
        np.matmul(columns[0], matrix[0], out=destination.reshape(-1, per_group))
    else:
        destination.reshape(-1, groups, per_group)[...] = (
            np.matmul(columns, matrix).transpose(1, 0, 2))


def split_groups(channels_last: np.ndarray, groups: int) -> np.ndarray:
    """Contiguous (..., channels) → ``(groups, positions, channels/group)``, contiguous; no
    copy for one group."""
    channels = channels_last.shape[-1]
    per_group = channels_last.reshape(-1, groups, channels // groups).transpose(1, 0, 2)
    return np.ascontiguousarray(per_group)
