"""Sliding-window geometry shared by convolution and pooling (a helper module, not a plugin).

Spatial sizes, kernels, strides and dilations are ``(height, width)`` pairs; padding resolves
to ``(top, bottom, left, right)``, which "same" may make asymmetric.
"""
from __future__ import annotations

import math
from typing import Iterator, NamedTuple

from graphnet.op import format_shape, shape_error


class SlidingWindow(NamedTuple):
    """A window sliding over one input: its attributes, resolved padding and output size."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]
    """(top, bottom, left, right)."""
    output_hw: tuple[int, int]

    @property
    def extent(self) -> tuple[int, int]:
        """The span of the dilated kernel, per axis."""
        return effective_kernel(self.kernel, self.dilation)

    @property
    def before(self) -> tuple[int, int]:
        """The padding before the first row and column: where the first window starts."""
        return self.pads[0], self.pads[2]


def effective_kernel(kernel, dilation) -> tuple[int, int]:
    """The span a dilated kernel covers, per axis."""
    return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))


def as_pair(value) -> tuple[int, int]:
    """An int or a pair → a tuple of two ints (defaults reach ops unparsed, e.g. ``1``)."""
    return (value, value) if isinstance(value, int) else tuple(value)


def check_image(input_shape, op_name: str) -> None:
    """Raise a ShapeError unless the per-sample ``input_shape`` is (channels, height, width)."""
    if len(input_shape) != 3:
        raise shape_error(f"{op_name} takes images", field="inputs",
                          expected="a 3-D input (channels, height, width)",
                          found=f"{format_shape(input_shape)} ({len(input_shape)}-D)")


def resolve_window(input_shape, attrs) -> SlidingWindow:
    """Resolve the ``kernel``, ``stride``, ``padding`` and (if any) ``dilation`` attributes for a
    per-sample ``input_shape`` (channels, height, width): explicit pads and the output size.

    A ``stride`` of None means the kernel size. Padding is "valid" (none), an explicit (height,
    width) applied on both sides, or "same" as in TensorFlow: output = ceil(input / stride), the
    total padding split with the odd row or column after. Raises a ShapeError (field "kernel")
    when the dilated kernel is larger than the padded input.
    """
    channels, *input_hw = input_shape
    kernel = as_pair(attrs.kernel)
    stride = kernel if attrs.stride is None else as_pair(attrs.stride)
    dilation = as_pair(getattr(attrs, "dilation", 1))
    padding = attrs.padding if isinstance(attrs.padding, str) else as_pair(attrs.padding)
    extent = effective_kernel(kernel, dilation)

    pads, output_hw = [], []
    for axis in range(2):
        size, step = input_hw[axis], stride[axis]
        if padding == "same":
            out = math.ceil(size / step)
            total = max((out - 1) * step + extent[axis] - size, 0)
            before, after = total // 2, total - total // 2
        else:
            before = after = 0 if padding == "valid" else padding[axis]
            out = (size + before + after - extent[axis]) // step + 1
        pads += [before, after]
        output_hw.append(out)

    padded_hw = (input_hw[0] + pads[0] + pads[1], input_hw[1] + pads[2] + pads[3])
    if extent[0] > padded_hw[0] or extent[1] > padded_hw[1]:
        found = format_shape(kernel)
        if extent != kernel:
            found += f" (dilated, it spans {format_shape(extent)})"
        raise shape_error(
            "kernel larger than its padded input", field="kernel",
            expected=f"a kernel of at most {format_shape(padded_hw)} "
                     f"(the padded input is {format_shape((channels, *padded_hw))})",
            found=found)
    return SlidingWindow(kernel, stride, dilation, tuple(pads), tuple(output_hw))


def kernel_offsets(window: SlidingWindow) -> Iterator[tuple[int, int, slice, slice]]:
    """For each kernel tap (row-major): its row, column, and the row and column slices of the
    padded input it reads across all output positions."""
    out_h, out_w = window.output_hw
    (stride_h, stride_w), (dilation_h, dilation_w) = window.stride, window.dilation
    for row in range(window.kernel[0]):
        for col in range(window.kernel[1]):
            top, left = row * dilation_h, col * dilation_w
            yield (row, col, slice(top, top + stride_h * (out_h - 1) + 1, stride_h),
                   slice(left, left + stride_w * (out_w - 1) + 1, stride_w))


def wants_input_grad(ctx, position: int = 0) -> bool:
    """Whether input ``position`` wants a gradient (an empty tuple means every input does)."""
    return not ctx.needs_input_grad or bool(ctx.needs_input_grad[position])
