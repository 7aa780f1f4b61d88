"""Convolution: the ``conv2d`` op.

Inside the op, images are channels-last (NHWC). The im2col matrix has one row per output
position and one column per (kernel row, kernel column, channel), so its product with the
weight matrix is the output already channels-last; the NCHW array returned is a transposed
*view* of that memory, which the next conv (after elementwise ops, which keep the layout) reads
without a copy. Gradients flowing back are channels-last views likewise.

Groups add a leading group axis to every matrix and one batched product does all groups;
group-major memory keeps each group's matrix contiguous, which BLAS needs (strided per-group
views measured 2-8x slower). Depthwise convs skip im2col for a loop over kernel taps.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from graphnet.hookspecs import hookimpl
from graphnet.op import Attr, Op, Param, Window, shape_error

from ._conv_tiles import takes_epilogue, tiled_backward, tiled_forward
from ._window import SlidingWindow, check_image

INITS = ("he_normal", "he_uniform", "glorot_uniform", "glorot_normal")

COLUMN_BLOCK_BYTES = 8 * 2**20
"""The most bytes of im2col matrix built at once. Products run over blocks of whole samples:
a block stays in cache and under malloc's mmap threshold (a fresh mapping page-faults on every
call), measured 1.7-2x faster than one product over a batch of 64 for 32- and 64-channel layers,
and it bounds the op's peak memory. A small layer is one block: a single product."""


class Conv2d(Op):
    """2-D convolution (cross-correlation) with stride, padding, dilation and groups.

    The weight has PyTorch's layout, ``(filters, channels / groups, kernel_h, kernel_w)``, so
    results equal ``torch.nn.functional.conv2d``. MACs per sample:
    ``out_h · out_w · filters · (channels / groups) · kernel_h · kernel_w`` (bias not counted).
    """

    name = "conv2d"
    attrs = {
        "filters": Attr("int", minimum=1, doc="output channels (the number of filters)"),
        "kernel": Attr("pair", minimum=1, doc="kernel height and width"),
        "stride": Attr("pair", default=1, minimum=1, doc="step between windows"),
        "padding": Attr("padding", default=0,
                        doc='zeros around the input: "valid", "same" (as TensorFlow) or a size'),
        "dilation": Attr("pair", default=1, minimum=1, doc="spacing between kernel taps"),
        "groups": Attr("int", default=1, minimum=1,
                       doc="split channels and filters into this many independent blocks"),
        "bias": Attr("bool", default=True, doc="whether to add a learned bias per filter"),
        "init": Attr("str", default="he_normal", choices=INITS,
                     doc="how the weight is initialised (the bias starts at zero)"),
    }

    # --- static analysis -------------------------------------------------------------------
    def _window(self, input_shape, attrs) -> SlidingWindow:
        check_image(input_shape, self.name)
        channels, groups = input_shape[0], attrs.groups
        if channels % groups:
            raise shape_error("input channels not divisible by groups", field="groups",
                              expected=f"a divisor of the {channels} input channels",
                              found=str(groups))
        if attrs.filters % groups:
            raise shape_error("filters not divisible by groups", field="groups",
                              expected=f"a divisor of the {attrs.filters} filters",
                              found=str(groups))
        return SlidingWindow.of(input_shape, attrs)

    def shape(self, input_shapes, attrs):
        return (attrs.filters, *self._window(input_shapes[0], attrs).output_hw)

    def params(self, input_shapes, attrs):
        channels_per_group = input_shapes[0][0] // attrs.groups
        kernel_area = attrs.kernel[0] * attrs.kernel[1]
        params = {"weight": Param(
            (attrs.filters, channels_per_group, *attrs.kernel), init=attrs.init,
            fan_in=channels_per_group * kernel_area,
            fan_out=attrs.filters // attrs.groups * kernel_area)}
        if attrs.bias:
            params["bias"] = Param((attrs.filters,), init="zeros")
        return params

    def receptive_field(self, input_shapes, attrs):
        window = self._window(input_shapes[0], attrs)
        return Window(window.kernel, window.stride, window.before, window.dilation)

    def macs(self, input_shapes, output_shape, attrs):
        filters, out_h, out_w = output_shape
        return (out_h * out_w * filters * (input_shapes[0][0] // attrs.groups)
                * attrs.kernel[0] * attrs.kernel[1])

    # --- execution -------------------------------------------------------------------------
    def forward(self, inputs, params, attrs, ctx):
        return self.forward_with_epilogue(inputs, params, attrs, ctx, None)

    def backward(self, grad_output, saved, params, attrs, ctx):
        return self.backward_with_epilogue(grad_output, saved, params, attrs, ctx, None)

    # fusion (graphnet.fusion): an elementwise op after it, applied by the tiles in cache
    def accepts_epilogue(self, input_shapes, attrs):
        """One group, where the tiles take an epilogue (see _conv_tiles.takes_epilogue): a ReLU
        after it is then applied to each output tile in cache, and its gradient to each tile of
        output gradient as the weight gradient takes it."""
        if attrs.groups != 1:
            return False
        window = self._window(input_shapes[0], attrs)
        return takes_epilogue((1, *input_shapes[0]), attrs.filters, window)

    def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue):
        """With an ``epilogue`` only for one group (see accepts_epilogue)."""
        images = inputs[0]
        window = self._window(images.shape[1:], attrs)
        weight = params["weight"].astype(images.dtype, copy=False)
        if attrs.groups == 1:
            # Tiles of the batch across the worker threads (see _conv_tiles). Saved: the input
            # itself, no copy; backward rebuilds each tile's columns from it. With an epilogue,
            # the output too: the epilogue's derivative follows from it.
            bias = params["bias"].astype(images.dtype, copy=False) if attrs.bias else None
            output = tiled_forward(images, weight, bias, window,
                                   epilogue=epilogue).transpose(0, 3, 1, 2)
            return output, (images, images.shape, window, output if epilogue else None)
        padded = padded_channels_last(images, window.pads)
        if is_depthwise(images.shape[1], attrs.groups):
            output = depthwise_forward(padded, weight, window)
        else:
            output = im2col_forward(padded, weight, window, attrs.groups)
        if attrs.bias:
            output += params["bias"].astype(images.dtype, copy=False)
        # Saved: the padded input, not the im2col matrix. Backward rebuilds the columns block
        # by block rather than holding kernel-area times the activation per layer.
        return output.transpose(0, 3, 1, 2), (padded, images.shape, window)

    def backward_with_epilogue(self, grad_output, saved, params, attrs, ctx, epilogue):
        """``grad_output`` is the gradient of the epilogue's result, if there is one."""
        if attrs.groups == 1:
            return self._tiled_backward(grad_output, saved, params, attrs, ctx, epilogue)
        padded, input_shape, window = saved
        weight, groups = params["weight"], attrs.groups
        depthwise = is_depthwise(input_shape[1], groups)
        # channels-last and contiguous: no copy when the gradient comes from a conv above
        grad_nhwc = np.ascontiguousarray(grad_output.transpose(0, 2, 3, 1), dtype=padded.dtype)

        grad_input = None
        if ctx.wants_input_grad(0):
            weight_in_dtype = weight.astype(padded.dtype, copy=False)
            if depthwise:
                grad_input = depthwise_input_gradient(grad_nhwc, weight_in_dtype, input_shape,
                                                      window)
            else:
                grad_input = input_gradient(grad_nhwc, weight_in_dtype, input_shape, window,
                                            groups)
            grad_input = grad_input.transpose(0, 3, 1, 2)

        param_grads = {}
        if ctx.needs_param_grad:
            if depthwise:
                grad_weight = depthwise_weight_gradient(padded, grad_nhwc, window)
            else:
                grad_weight = im2col_weight_gradient(padded, grad_nhwc, window, groups)
            param_grads["weight"] = grad_weight.astype(weight.dtype, copy=False)
            if attrs.bias:
                # a product with ones, not .sum(axis=0): BLAS measured 3x faster (and its
                # blocked sums round less than numpy's row-by-row accumulation)
                grad_rows = grad_nhwc.reshape(-1, attrs.filters)
                grad_bias = np.ones(len(grad_rows), dtype=grad_rows.dtype) @ grad_rows
                param_grads["bias"] = grad_bias.astype(params["bias"].dtype, copy=False)
        return [grad_input], param_grads

    def _tiled_backward(self, grad_output, saved, params, attrs, ctx, epilogue):
        images, _, window, output = saved
        weight = params["weight"]
        grad_input, grad_weight, grad_bias = tiled_backward(
            grad_output.astype(images.dtype, copy=False), images,
            weight.astype(images.dtype, copy=False), window, input_grad=ctx.wants_input_grad(0),
            param_grads=ctx.needs_param_grad, bias=attrs.bias, epilogue=epilogue,
            output=output)
        param_grads = {}
        if ctx.needs_param_grad:
            param_grads["weight"] = grad_weight.astype(weight.dtype, copy=False)
            if attrs.bias:
                param_grads["bias"] = grad_bias.astype(params["bias"].dtype, copy=False)
        return [None if grad_input is None else grad_input.transpose(0, 3, 1, 2)], param_grads


# --- im2col: every conv but depthwise --------------------------------------------------------
def im2col_forward(padded, weight, window: SlidingWindow, groups: int) -> np.ndarray:
    """The NHWC output: per block of samples, im2col matrix × weight matrix."""
    batch, channels = len(padded), padded.shape[3]
    output = np.empty((batch, *window.output_hw, weight.shape[0]), dtype=padded.dtype)
    weight_matrix = forward_weight_matrix(weight, groups)
    for block in sample_blocks(batch, column_bytes(window.output_hw, window, channels, padded)):
        matmul_into(im2col(padded[block], window, groups), weight_matrix, output[block])
    return output


def im2col_weight_gradient(padded, grad_nhwc, window: SlidingWindow, groups: int):
    """d loss / d weight = im2col matrixᵀ × output gradient, summed over blocks of samples."""
    batch, channels = len(padded), padded.shape[3]
    filters = grad_nhwc.shape[3]
    columns_per_group = window.kernel[0] * window.kernel[1] * channels // groups
    grad_matrix = np.zeros((groups, columns_per_group, filters // groups), dtype=padded.dtype)
    for block in sample_blocks(batch, column_bytes(window.output_hw, window, channels, padded)):
        columns = im2col(padded[block], window, groups)
        grad_matrix += np.matmul(columns.transpose(0, 2, 1),
                                 split_groups(grad_nhwc[block], groups))
    return torch_weight_layout(grad_matrix, window.kernel)


def input_gradient(grad_nhwc, weight, input_shape, window: SlidingWindow, groups: int):
    """d loss / d input, channels-last.

    Two equivalent methods. The transposed convolution has no scatter-add but works on the
    zero-stuffed output gradient, so it pays off only at stride 1 with no more filters than
    channels (its im2col matrix is then no larger than col2im's): measured 1.4-2.8x faster
    there, and 1.7-3.6x slower at stride 2 or with 10x more filters, where col2im is used.
    """
    filters, channels = weight.shape[0], input_shape[1]
    if window.stride == (1, 1) and filters <= channels:
        return transposed_conv_gradient(grad_nhwc, weight, input_shape, window, groups)
    return col2im_gradient(grad_nhwc, weight, input_shape, window, groups)


def col2im_gradient(grad_nhwc, weight, input_shape, window: SlidingWindow, groups: int):
    """The im2col matrix's gradient (one batched product per block), scatter-added onto the
    padded input by a loop over kernel taps."""
    batch, channels, height, width = input_shape
    filters = weight.shape[0]
    top, bottom, left, right = window.pads
    tap_count = window.kernel[0] * window.kernel[1]
    # (groups, taps, filters/group, channels/group): one small matrix per group and tap
    tap_matrices = weight.reshape(groups, filters // groups, channels // groups, tap_count)
    tap_matrices = tap_matrices.transpose(0, 3, 1, 2)
    grad_padded = np.zeros((batch, height + top + bottom, width + left + right, groups,
                            channels // groups), dtype=grad_nhwc.dtype)
    for block in sample_blocks(batch, column_bytes(window.output_hw, window, channels,
                                                   grad_nhwc)):
        # tap-major (groups, taps, positions, channels/group): each tap's share is contiguous,
        # so the strided adds below run over whole rows (measured up to 1.4x faster than
        # position-major columns, most for few channels)
        grad_columns = np.matmul(split_groups(grad_nhwc[block], groups)[:, None], tap_matrices)
        grad_columns = grad_columns.reshape(groups, tap_count, -1, *window.output_hw,
                                            channels // groups)
        grad_block = grad_padded[block]
        for tap, (_, _, rows, cols) in enumerate(window.taps()):
            grad_block[:, rows, cols] += grad_columns[:, tap].transpose(1, 2, 3, 0, 4)
    grad_padded = grad_padded.reshape(*grad_padded.shape[:3], channels)
    return grad_padded[:, top:top + height, left:left + width]


def transposed_conv_gradient(grad_nhwc, weight, input_shape, window: SlidingWindow,
                             groups: int):
    """The input gradient as a stride-1 convolution of the output gradient with the flipped,
    transposed kernel.

    Input row y receives output row o through kernel row k when o·stride + k·dilation − top = y.
    Placing output row o at o·stride − top + extent − 1 of a zero buffer turns that sum into a
    plain dilated window over the buffer, read with the kernel flipped.
    """
    batch, channels, height, width = input_shape
    filters = grad_nhwc.shape[3]
    extent = window.extent
    buffer_hw = (height + extent[0] - 1, width + extent[1] - 1)
    buffer = np.zeros((batch, *buffer_hw, filters), dtype=grad_nhwc.dtype)
    (buffer_rows, grad_rows), (buffer_cols, grad_cols) = (
        _placement(window.output_hw[axis], window.stride[axis],
                   extent[axis] - 1 - window.before[axis], buffer_hw[axis]) for axis in (0, 1))
    buffer[:, buffer_rows, buffer_cols] = grad_nhwc[:, grad_rows, grad_cols]

    # (g·f, c, kh, kw) → per group (kh, kw, f, c), flipped in both spatial axes
    per_group = weight.reshape(groups, filters // groups, channels // groups, *window.kernel)
    flipped = per_group[:, :, :, ::-1, ::-1].transpose(0, 3, 4, 1, 2)
    flipped = flipped.reshape(groups, -1, channels // groups)

    unit_stride = SlidingWindow(buffer_hw, window.kernel, dilation=window.dilation)
    grad_input = np.empty((batch, height, width, channels), dtype=grad_nhwc.dtype)
    for block in sample_blocks(batch, column_bytes((height, width), window, filters, buffer)):
        matmul_into(im2col(buffer[block], unit_stride, groups), flipped, grad_input[block])
    return grad_input


def _placement(out_size: int, stride: int, first: int, buffer_size: int) -> tuple[slice, slice]:
    """(buffer slice, gradient slice) putting gradient entry o at ``first + o·stride``; entries
    that fall outside the buffer belong to windows over padding only, and are dropped."""
    lowest = max(0, math.ceil(-first / stride))
    highest = min(out_size, (buffer_size - 1 - first) // stride + 1)
    if highest <= lowest:
        return slice(0, 0), slice(0, 0)
    return (slice(first + lowest * stride, first + (highest - 1) * stride + 1, stride),
            slice(lowest, highest))


# --- depthwise: one input channel per group --------------------------------------------------
def is_depthwise(channels: int, groups: int) -> bool:
    """Whether each group sees one input channel. Im2col would then gather single elements
    a whole pixel apart; whole-array multiply-adds in a loop over kernel taps measured about
    3x faster, forward and backward."""
    return groups == channels and groups > 1


def depthwise_forward(padded, weight, window: SlidingWindow) -> np.ndarray:
    """NHWC output of a depthwise conv: filter c·multiplier + m sees input channel c only."""
    batch, _, _, channels = padded.shape
    multiplier = weight.shape[0] // channels
    taps = weight.reshape(channels, multiplier, *window.kernel)
    output = np.empty((batch, *window.output_hw, channels, multiplier), dtype=padded.dtype)
    product = np.empty_like(output)
    for row, col, rows, cols in window.taps():
        if row == col == 0:
            np.multiply(padded[:, rows, cols, :, None], taps[:, :, 0, 0], out=output)
        else:
            np.multiply(padded[:, rows, cols, :, None], taps[:, :, row, col], out=product)
            output += product
    return output.reshape(batch, *window.output_hw, channels * multiplier)


def depthwise_weight_gradient(padded, grad_nhwc, window: SlidingWindow) -> np.ndarray:
    """d loss / d weight of a depthwise conv, in (filters, 1, kh, kw) layout."""
    batch, out_h, out_w, filters = grad_nhwc.shape
    channels = padded.shape[3]
    grad_by_channel = grad_nhwc.reshape(batch, out_h, out_w, channels, filters // channels)
    grad_weight = np.einsum("nhwcij,nhwcm->cmij", window_view(padded, window), grad_by_channel)
    return grad_weight.reshape(filters, 1, *window.kernel)


def depthwise_input_gradient(grad_nhwc, weight, input_shape, window: SlidingWindow):
    """d loss / d input of a depthwise conv, channels-last."""
    batch, channels, height, width = input_shape
    top, bottom, left, right = window.pads
    multiplier = weight.shape[0] // channels
    taps = weight.reshape(channels, multiplier, *window.kernel)
    grad_by_channel = grad_nhwc.reshape(*grad_nhwc.shape[:3], channels, multiplier)
    grad_padded = np.zeros((batch, height + top + bottom, width + left + right, channels),
                           dtype=grad_nhwc.dtype)
    for row, col, rows, cols in window.taps():
        if multiplier == 1:
            grad_padded[:, rows, cols] += grad_nhwc * taps[:, 0, row, col]
        else:
            grad_padded[:, rows, cols] += np.einsum("nhwcm,cm->nhwc", grad_by_channel,
                                                    taps[:, :, row, col])
    return grad_padded[:, top:top + height, left:left + width]


# --- layouts ---------------------------------------------------------------------------------
def padded_channels_last(images: np.ndarray, pads) -> np.ndarray:
    """NCHW ``images`` → a contiguous NHWC array with zero ``pads`` (top, bottom, left, right).

    No copy for an unpadded input whose memory is already channels-last (a conv's output).
    """
    channels_last = images.transpose(0, 2, 3, 1)
    if not any(pads):
        return np.ascontiguousarray(channels_last)
    top, bottom, left, right = pads
    batch, height, width, channels = channels_last.shape
    padded = np.zeros((batch, height + top + bottom, width + left + right, channels),
                      dtype=images.dtype)
    padded[:, top:top + height, left:left + width] = channels_last
    return padded


def window_view(padded: np.ndarray, window: SlidingWindow) -> np.ndarray:
    """A read-only (batch, out_h, out_w, channels, kernel_h, kernel_w) view of every window of
    a padded NHWC array, strides and dilation applied; no copy."""
    (stride_h, stride_w), (dilation_h, dilation_w) = window.stride, window.dilation
    windows = sliding_window_view(padded, window.extent, axis=(1, 2))
    return windows[:, ::stride_h, ::stride_w, :, ::dilation_h, ::dilation_w]


def im2col(padded: np.ndarray, window: SlidingWindow, groups: int) -> np.ndarray:
    """The im2col matrices of a padded NHWC array: ``(groups, positions, taps·channels/group)``,
    contiguous, a row per output position, columns ordered (kernel row, kernel column,
    channel)."""
    windows = window_view(padded, window)
    batch, out_h, out_w, channels = windows.shape[:4]
    windows = windows.reshape(batch, out_h, out_w, groups, channels // groups, *window.kernel)
    columns = np.ascontiguousarray(windows.transpose(3, 0, 1, 2, 5, 6, 4))
    return columns.reshape(groups, batch * out_h * out_w, -1)


def column_bytes(output_hw, window: SlidingWindow, channels: int, like: np.ndarray) -> int:
    """Bytes of im2col matrix per sample, for ``channels`` input channels."""
    return (output_hw[0] * output_hw[1] * window.kernel[0] * window.kernel[1] * channels
            * like.itemsize)


def sample_blocks(batch: int, bytes_per_sample: int) -> list[slice]:
    """Consecutive slices of the batch whose im2col matrices fit ``COLUMN_BLOCK_BYTES``."""
    per_block = max(1, COLUMN_BLOCK_BYTES // max(1, bytes_per_sample))
    return [slice(start, min(start + per_block, batch)) for start in range(0, batch, per_block)]


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


def forward_weight_matrix(weight: np.ndarray, groups: int) -> np.ndarray:
    """(filters, channels/group, kh, kw) → (groups, kh·kw·channels/group, filters/group), rows
    in the column order of :func:`im2col`."""
    filters, channels_per_group, kernel_h, kernel_w = weight.shape
    per_group = weight.reshape(groups, filters // groups, channels_per_group, kernel_h, kernel_w)
    return per_group.transpose(0, 3, 4, 2, 1).reshape(groups, -1, filters // groups)


def torch_weight_layout(weight_matrix: np.ndarray, kernel) -> np.ndarray:
    """The inverse of :func:`forward_weight_matrix`: back to (filters, channels/group, kh, kw)."""
    groups, rows, filters_per_group = weight_matrix.shape
    channels_per_group = rows // (kernel[0] * kernel[1])
    per_group = weight_matrix.reshape(groups, *kernel, channels_per_group, filters_per_group)
    return per_group.transpose(0, 4, 3, 1, 2).reshape(groups * filters_per_group,
                                                      channels_per_group, *kernel)


@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(Conv2d)
