"""The im2col stack that the grouped and the tiled kernels share: window views, the column
and weight-matrix layouts, col2im's scatter, and the one rule for the input gradient's method.

Columns are ordered (kernel row, kernel column, channel) in every kernel, so one weight matrix
layout serves them all. Groups are a leading axis: ``(groups, rows, columns / group)``; one
group is the same memory with that axis of length 1.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from graphnet import parallel

from .._window import SlidingWindow


def window_view(padded: np.ndarray, window: SlidingWindow, axes=(1, 2)) -> np.ndarray:
    """A read-only view of every window of ``padded`` over its two spatial ``axes``, stride and
    dilation applied: the output's positions replace the spatial axes, the kernel's two axes
    come last. One copy of it (measured 1.5-4x faster than one copy per kernel tap, whose
    calls cost more than they copy for small images) builds an im2col matrix."""
    return strided_windows(padded, axes, window.kernel, window.stride, window.dilation)


def strided_windows(padded: np.ndarray, axes, kernel, stride, dilation) -> np.ndarray:
    """:func:`window_view` from the window's numbers, made from the strides directly: numpy's
    sliding_window_view and the slicing of its result cost some 20 µs a call, against an
    RGB image's whole 3×3 gather and product of about 45 at batch 1."""
    first, second = axes
    shape, strides = list(padded.shape), list(padded.strides)
    for axis, size, step, spacing in zip(axes, kernel, stride, dilation):
        shape[axis] = (padded.shape[axis] - (size - 1) * spacing - 1) // step + 1
        strides[axis] *= step
    if min(shape[first], shape[second]) < 1:  # no window fits: numpy says why
        return sliding_window_view(padded, [(size - 1) * spacing + 1 for size, spacing
                                            in zip(kernel, dilation)], axis=axes)
    shape += kernel
    strides += (padded.strides[first] * dilation[0], padded.strides[second] * dilation[1])
    if not padded.flags.c_contiguous:
        return as_strided(padded, shape, strides, writeable=False)
    views = np.ndarray(shape, padded.dtype, padded, 0, strides)  # 1 µs, as_strided 4
    views.flags.writeable = False
    return views


def im2col(padded: np.ndarray, window: SlidingWindow, groups: int,
           out: np.ndarray | None = None) -> np.ndarray:
    """The im2col matrices of a padded NHWC array, ``(groups, positions, taps·channels/group)``:
    a row per output position, columns (kernel row, kernel column, channel). Copied into
    ``out`` (memory for at least that many values, e.g. a scratch buffer) if given, else new."""
    windows = window_view(padded, window)
    batch, out_h, out_w, channels = windows.shape[:4]
    windows = windows.reshape(batch, out_h, out_w, groups, channels // groups, *window.kernel)
    # (batch, out_h, out_w, groups, channels/group, kh, kw) → group-major, channels last
    ordered = windows.transpose(3, 0, 1, 2, 5, 6, 4)
    if out is None:
        columns = np.ascontiguousarray(ordered)
    else:
        columns = out.reshape(-1)[:ordered.size].reshape(ordered.shape)
        np.copyto(columns, ordered)
    return columns.reshape(groups, batch * out_h * out_w, -1)


def weight_matrix(weight: np.ndarray, groups: int) -> np.ndarray:
    """(filters, channels/group, kh, kw) → (groups, kh·kw·channels/group, filters/group),
    contiguous, rows in the column order of :func:`im2col`."""
    filters, channels_per_group, kernel_h, kernel_w = weight.shape
    per_group = weight.reshape(groups, filters // groups, channels_per_group, kernel_h, kernel_w)
    return per_group.transpose(0, 3, 4, 2, 1).reshape(groups, -1, filters // groups)


def torch_layout(grad_matrix: np.ndarray, kernel) -> np.ndarray:
    """The inverse of :func:`weight_matrix` (for the weight's gradient): a contiguous
    (filters, channels/group, kh, kw) array."""
    groups, rows, filters_per_group = grad_matrix.shape
    channels_per_group = rows // (kernel[0] * kernel[1])
    per_group = grad_matrix.reshape(groups, *kernel, channels_per_group, filters_per_group)
    return np.ascontiguousarray(per_group.transpose(0, 4, 3, 1, 2)).reshape(
        groups * filters_per_group, channels_per_group, *kernel)


# --- the input gradient ----------------------------------------------------------------------
def transposed_gradient(window: SlidingWindow, filters: int, channels: int) -> bool:
    """Which of two equivalent methods computes d loss / d input: True for the transposed
    convolution (:func:`transposed_window`), False for col2im (:func:`scatter_taps`).

    The transposed convolution has no scatter-add but gathers ``filters`` channels per tap
    over the whole input, so it pays only at stride 1 with no more filters than channels (its
    im2col matrix is then no larger than col2im's): measured 1.4-4x faster there, and 1.7-3.6x
    slower at stride 2 or with 10x more filters.
    """
    return transposed_fits(window) and filters <= channels


def transposed_fits(window: SlidingWindow) -> bool:
    """Whether :func:`transposed_window` exists: stride 1, and padding narrower than the
    dilated kernel on every side (the gradient is read through padding of extent − 1 − pad)."""
    top, bottom, left, right = window.pads
    extent = window.extent
    return (window.stride == (1, 1)
            and max(top, bottom) < extent[0] and max(left, right) < extent[1])


def transposed_window(window: SlidingWindow) -> SlidingWindow:
    """The stride-1 window whose convolution of the output gradient, with the kernel flipped
    (:func:`flipped_weight_matrix`), is the input gradient of ``window``'s convolution (where
    :func:`transposed_fits`): output row o feeds input row o − top + k·dilation, so the
    gradient is padded by extent − 1 − top above, and likewise on every side. Its output is
    the input's size."""
    assert transposed_fits(window), window
    top, bottom, left, right = window.pads
    extent = window.extent
    return SlidingWindow(window.output_hw, window.kernel, dilation=window.dilation,
                         pads=(extent[0] - 1 - top, extent[0] - 1 - bottom,
                               extent[1] - 1 - left, extent[1] - 1 - right))


def flipped_weight_matrix(weight: np.ndarray, groups: int) -> np.ndarray:
    """(filters, channels/group, kh, kw) → (groups, kh·kw·filters/group, channels/group): the
    kernel flipped in both spatial axes and transposed, rows in :func:`im2col`'s order over
    the output gradient's channels."""
    filters, channels_per_group = weight.shape[:2]
    per_group = weight.reshape(groups, filters // groups, channels_per_group, *weight.shape[2:])
    flipped = per_group[:, :, :, ::-1, ::-1].transpose(0, 3, 4, 1, 2)
    return np.ascontiguousarray(flipped).reshape(groups, -1, channels_per_group)


def scatter_taps(tap_grads, window: SlidingWindow, destination: np.ndarray, *,
                 capacity: int | None = None) -> None:
    """col2im: add each tap's gradient ``tap_grads[tap]`` (count, out_h, out_w, channels…,
    channels-last) onto the padded input positions that tap read (overlapping windows add),
    and write the sums inside the padding into ``destination`` (count, height, width,
    channels…).

    The sums are kept as the padded gradient's stride_h × stride_w *phases*: phase (p, q)
    holds the padded positions (stride_h·i + p, stride_w·j + q), so that every tap, whose
    positions are one phase's, is added over a contiguous block of whole rows of it rather
    than at every stride-th position; the phases' interiors are then copied into the input's
    rows and columns they hold. At stride 1 this is one phase, the padded gradient itself.
    Against adds at every stride-th position of the padded gradient, the CIFAR ResNet's 3×3
    stride-2 convs' input gradients (one thread, CPU time, interleaved): 16 → 32 over 32×32
    6.8 → 5.6 ms at batch 64, 35.7 → 27.3 at 256; 32 → 64 over 16×16 3.7 → 3.4 and 19.5 →
    18.9 ms. Each position sums its taps in tap order from zero either way: the same bits.
    The phases are this thread's scratch memory, sized for ``capacity`` samples (a tile's;
    by default ``count``)."""
    (stride_h, stride_w), (dilation_h, dilation_w) = window.stride, window.dilation
    (out_h, out_w), (padded_h, padded_w) = window.output_hw, window.padded_hw
    top, _, left, _ = window.pads
    count, kernel_w = tap_grads.shape[1], window.kernel[1]
    phases = parallel.scratch(
        "conv_grad_phases", (stride_h, stride_w, capacity or count, -(-padded_h // stride_h),
                             -(-padded_w // stride_w), *tap_grads.shape[4:]),
        tap_grads.dtype)[:, :, :count]
    phases[...] = 0
    for tap, tap_grad in enumerate(tap_grads):
        row, col = divmod(tap, kernel_w)
        # the padded row stride_h·o + row·dilation_h is phase row (row·dilation_h) % stride_h
        (down, phase_row), (across, phase_col) = (divmod(row * dilation_h, stride_h),
                                                  divmod(col * dilation_w, stride_w))
        phases[phase_row, phase_col, :, down:down + out_h, across:across + out_w] += tap_grad
    for phase_row in range(stride_h):
        # the input rows this phase holds: padded rows stride_h·i + phase_row from top on
        first_row = -(-(top - phase_row) // stride_h)
        start_row = stride_h * first_row + phase_row - top
        for phase_col in range(stride_w):
            first_col = -(-(left - phase_col) // stride_w)
            start_col = stride_w * first_col + phase_col - left
            target = destination[:, start_row::stride_h, start_col::stride_w]
            target[...] = phases[phase_row, phase_col, :,
                                 first_row:first_row + target.shape[1],
                                 first_col:first_col + target.shape[2]]


def padded_channels_last(images: np.ndarray, window: SlidingWindow) -> np.ndarray:
    """NCHW ``images`` → a contiguous NHWC array with the window's zero padding.

    No copy for an unpadded input whose memory is already channels-last (a conv's output).
    """
    channels_last = images.transpose(0, 2, 3, 1)
    if not any(window.pads):
        return np.ascontiguousarray(channels_last)
    top, _, left, _ = window.pads
    height, width = window.input_hw
    padded = np.zeros((len(images), *window.padded_hw, images.shape[1]), dtype=images.dtype)
    padded[:, top:top + height, left:left + width] = channels_last
    return padded
