"""Sliding-window geometry: the one description of a window sliding over an image, shared by
every convolution kernel, the pooling ops, the exporters and the tests (a helper module, not a
plugin).

Sizes, kernels, strides and dilations are ``(height, width)`` pairs; padding is resolved per
side, ``(top, bottom, left, right)``. Code that uses a window reads only its resolved fields
(``pads``, ``output_hw``, ``padded_hw``, ``read_pads``, ``taps()`` …), never the attribute that
produced them: the ways to state the padding (a size, a pair, four sides in ONNX's
``[top, left, bottom, right]`` order, "same") and to round the output size (pooling's
``ceil_mode``) are resolved in :meth:`SlidingWindow.resolve` and this class alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator

from graphnet.op import Window, format_shape, shape_error


@dataclass(frozen=True)
class SlidingWindow:
    """A kernel sliding over a zero-padded ``input_hw``: where each window starts, where its
    taps fall, and how many windows there are.

    Build one with :meth:`resolve` (from attribute values) or :meth:`of` (from an op's attrs);
    the constructor takes the padding already resolved to four sides.
    """

    input_hw: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    """(top, bottom, left, right): "same" or four explicit sides may make them asymmetric."""
    ceil_mode: bool = False
    """Round the count of windows up (pooling's ``ceil_mode``, as PyTorch and ONNX do): a last
    window may then reach past the end padding, but one that would start inside that padding
    (or past it) is dropped."""
    padded_hw: tuple[int, int] = field(init=False)
    """The input's size with its padding."""
    output_hw: tuple[int, int] = field(init=False)
    """How many windows fit down and across: the output's size."""
    overhang: tuple[int, int] = field(init=False)
    """Rows and columns the last window reads past the end padding (ceil_mode only; else 0).
    They are not padding: a max ignores them, an average never counts them."""

    def __post_init__(self):
        top, bottom, left, right = self.pads
        padded = (self.input_hw[0] + top + bottom, self.input_hw[1] + left + right)
        output, overhang = [], []
        for size, before, axis_padded, span, step in zip(self.input_hw, (top, left), padded,
                                                         self.extent, self.stride):
            count = (axis_padded - span) // step + 1
            if self.ceil_mode:
                count = -(-(axis_padded - span) // step) + 1
                if (count - 1) * step >= size + before:  # it would start in the end padding
                    count -= 1
            output.append(count)
            overhang.append(max(0, (count - 1) * step + span - axis_padded))
        object.__setattr__(self, "padded_hw", padded)
        object.__setattr__(self, "output_hw", tuple(output))
        object.__setattr__(self, "overhang", tuple(overhang))

    @classmethod
    def resolve(cls, input_hw, kernel, *, stride=1, padding=0, dilation=1,
                ceil_mode=False) -> SlidingWindow:
        """The window of these attribute values over an image of ``input_hw``.

        ``kernel``, ``stride`` and ``dilation`` are ints or pairs; a ``stride`` of None means
        the kernel size (pooling's default). ``padding`` is "valid" (none), an int or a
        (height, width) pair applied on both sides, four sides ``(top, left, bottom, right)``
        (ONNX's ``pads`` order: the beginnings, then the ends), or "same" as in TensorFlow:
        output = ceil(input / stride), the total padding split with the odd row or column
        after. ``ceil_mode`` rounds the output size up (see the field).
        """
        kernel = as_pair(kernel)
        stride = kernel if stride is None else as_pair(stride)
        dilation = as_pair(dilation)
        extent = effective_kernel(kernel, dilation)
        pads = []
        for axis in range(2):
            if padding == "same":
                size, step = input_hw[axis], stride[axis]
                total = max((math.ceil(size / step) - 1) * step + extent[axis] - size, 0)
                pads += [total // 2, total - total // 2]
            elif padding == "valid":
                pads += [0, 0]
            elif not isinstance(padding, int) and len(padding) == 4:
                pads += [padding[axis], padding[axis + 2]]
            else:
                pads += [as_pair(padding)[axis]] * 2
        return cls(tuple(input_hw), kernel, stride, dilation, tuple(pads), bool(ceil_mode))

    @classmethod
    def of(cls, input_shape, attrs) -> SlidingWindow:
        """The window of an op's ``kernel``, ``stride``, ``padding`` and (if it has them)
        ``dilation`` and ``ceil_mode`` attributes over a per-sample ``input_shape`` (channels,
        height, width). Raises a ShapeError (field "kernel") when the dilated kernel is larger
        than the padded input."""
        window = cls.resolve(tuple(input_shape[1:]), attrs.kernel, stride=attrs.stride,
                             padding=attrs.padding, dilation=getattr(attrs, "dilation", 1),
                             ceil_mode=getattr(attrs, "ceil_mode", False))
        extent, padded_hw = window.extent, window.padded_hw
        if extent[0] > padded_hw[0] or extent[1] > padded_hw[1]:
            found = format_shape(window.kernel)
            if extent != window.kernel:
                found += f" (dilated, it spans {format_shape(extent)})"
            raise shape_error(
                "kernel larger than its padded input", field="kernel",
                expected=f"a kernel of at most {format_shape(padded_hw)} "
                         f"(the padded input is {format_shape((input_shape[0], *padded_hw))})",
                found=found)
        return window

    @property
    def extent(self) -> tuple[int, int]:
        """The span of the dilated kernel, per axis."""
        return effective_kernel(self.kernel, self.dilation)

    @property
    def before(self) -> tuple[int, int]:
        """The padding before the first row and column: where the first window starts."""
        return self.pads[0], self.pads[2]

    def field_window(self) -> Window:
        """The layer's :class:`graphnet.op.Window`: how it grows the receptive field, and the
        padding after the input (ceil_mode's overhang included) that its padded copy holds,
        for the memory estimate."""
        _, bottom, _, right = self.read_pads
        return Window(self.kernel, self.stride, self.before, self.dilation,
                      padding_end=(bottom, right))

    @property
    def read_pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the padded array the windows read: the padding, and
        past the end padding the ceil_mode overhang."""
        top, bottom, left, right = self.pads
        return top, bottom + self.overhang[0], left, right + self.overhang[1]

    @property
    def read_hw(self) -> tuple[int, int]:
        """The size of the padded array the windows read (``padded_hw`` and the overhang)."""
        return self.padded_hw[0] + self.overhang[0], self.padded_hw[1] + self.overhang[1]

    def taps(self) -> Iterator[tuple[int, int, slice, slice]]:
        """For each kernel tap (row-major): its row, its column, and the row and column slices
        of the padded input it reads across all output positions."""
        out_h, out_w = self.output_hw
        (stride_h, stride_w), (dilation_h, dilation_w) = self.stride, self.dilation
        for row in range(self.kernel[0]):
            for col in range(self.kernel[1]):
                top, left = row * dilation_h, col * dilation_w
                yield (row, col, slice(top, top + stride_h * (out_h - 1) + 1, stride_h),
                       slice(left, left + stride_w * (out_w - 1) + 1, stride_w))


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


def onnx_pads(window: SlidingWindow) -> list[int]:
    """The window's padding in ONNX's order: every axis's start, then every axis's end
    (top, left, bottom, right)."""
    top, bottom, left, right = window.pads
    return [top, left, bottom, right]


class KeptPerShape:
    """What follows from a per-sample input shape and an op's attributes alone (a conv's
    kernel choice, a pool's checked window), kept per input shape and attribute object — a
    node's attributes are one object from call to call — and checked against the attribute
    values it was made from, so a changed value makes it anew. Working it out again took
    15-38 µs per call, a tenth to a half of a batch-1 conv or pool."""

    most = 256
    """Entries kept before all are forgotten (ops called on ever new shapes)."""

    def __init__(self):
        self._kept: dict = {}

    def get(self, input_shape, attrs, make):
        """The value for ``input_shape`` and ``attrs``: kept, or ``make()``'s (kept unless it
        raises)."""
        key = (tuple(input_shape), id(attrs))
        kept = self._kept.get(key)
        if kept is not None and kept[0] is attrs and kept[1] == vars(attrs):
            return kept[2]
        value = make()
        if len(self._kept) >= self.most:
            self._kept.clear()
        self._kept[key] = (attrs, dict(vars(attrs)), value)
        return value
