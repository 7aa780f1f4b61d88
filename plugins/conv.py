"""Convolution: the ``conv2d`` op.

This file is the op: its attributes, shape, parameters, receptive field, cost, and which
kernel computes it. The kernels themselves (:mod:`._conv_kernels`: direct, grouped, depthwise,
tiled im2col, kernel taps, Winograd) sit behind one interface over one window geometry
(:mod:`._window`).

Which kernel: the default is the first of :data:`._conv_kernels.KERNELS` that fits. Where
one of :data:`._conv_kernels.ALTERNATIVES` fits too (Winograd, for 3×3 stride-1 convs), a
network measures them the first time a node runs — forward and backward of each, interleaved,
on that batch, the fastest of three rounds — and the node keeps the fastest from then on
(alike layers are measured once; an alternative must beat the default by LEAST_GAIN). The
choice is recorded in the network's :class:`graphnet.op.Choices`, which checkpoints keep, so a
resumed run computes exactly as before. float64 keeps the default (its gradient checks and figures stay as they were), and so
does an op called outside a network. To pin: ``Network(choices={node: kernel name})`` or
``choices="default"``, or the environment variable ``GRAPHNET_CONV_KERNEL`` (``default``, or
a kernel name: that kernel wherever it fits, the default elsewhere). Kernels given to the op
(``Conv2d(kernels=[...])``, as the tests do) are taken first-fit, nothing measured.

Inside the kernels images are channels-last (NHWC): the NCHW array the op returns is a
transposed *view* of channels-last memory, which the next conv (after elementwise ops, which
keep the layout) reads without a copy. Gradients flowing back are channels-last views likewise.
"""
from __future__ import annotations

import math
import os
import time
from types import SimpleNamespace

import numpy as np

from graphnet.errors import UsageError
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr, Op, Param, shape_error

from ._conv_kernels import ALTERNATIVES, KERNELS, ConvKernel
from ._window import KeptPerShape, SlidingWindow, check_image, onnx_pads

INITS = ("he_normal", "he_uniform", "glorot_uniform", "glorot_normal")
KERNEL_ENV = "GRAPHNET_CONV_KERNEL"
"""Environment variable pinning the kernel: "default", "measure" (as unset) or a kernel name."""
MEASURE_ROUNDS = 3
"""Rounds of timing per candidate kernel (each kernel once per round, the best round counts:
the first pays for scratch buffers, and another process may take a core during any one)."""
DROP_AFTER = 2.5
"""A candidate this many times slower than the best after a round is not timed again."""
LEAST_GAIN = 1.05
"""An alternative replaces the default only if the default takes at least this many times
its time: Winograd rounds 3-30x more than the default kernels, a gain of a percent or two is
not worth that, and between two kernels that close the machine's noise picks the winner (one
side's rounds spread by 4-8 % on an idle two-core machine)."""


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
                        doc='zeros around the input: "valid", "same" (as TensorFlow), a size, or '
                            "four sides [top, left, bottom, right] (ONNX's pads)"),
        "dilation": Attr("pair", default=1, minimum=1, doc="spacing between kernel taps"),
        "groups": Attr("int", default=1, minimum=1,
                       doc="split channels and filters into this many independent blocks"),
        "bias": Attr("bool", default=True, doc="whether to add a learned bias per filter"),
        "init": Attr("str", default="he_normal", choices=INITS,
                     doc="how the weight is initialised (the bias starts at zero)"),
    }

    def __init__(self, kernels: tuple[ConvKernel, ...] | None = None):
        """``kernels``: the kernels to choose from, first fit, nothing measured (tests pass one
        to test it); by default :data:`KERNELS`, with :data:`ALTERNATIVES` measured."""
        self.kernels = KERNELS if kernels is None else tuple(kernels)
        self.alternatives = ALTERNATIVES if kernels is None else ()
        self._chosen = KeptPerShape()  # see choose_kernel

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
        return self._window(input_shapes[0], attrs).field_window()

    def macs(self, input_shapes, output_shape, attrs):
        filters, out_h, out_w = output_shape
        return (out_h * out_w * filters * (input_shapes[0][0] // attrs.groups)
                * attrs.kernel[0] * attrs.kernel[1])

    # --- execution -------------------------------------------------------------------------
    def choose_kernel(self, input_shape, attrs) -> tuple[ConvKernel, SlidingWindow]:
        """The first of this op's kernels that fits a per-sample ``input_shape``, and the
        window. The choice follows from shapes and attributes alone: the same in analysis,
        forward and backward, so it is kept per shape and attributes (resolving the window
        and asking each kernel took some 15 µs per call, a tenth of a small batch's conv)."""
        return self._chosen.get(input_shape, attrs,
                                lambda: self._first_fit(input_shape, attrs))

    def _first_fit(self, input_shape, attrs) -> tuple[ConvKernel, SlidingWindow]:
        window = self._window(input_shape, attrs)
        for kernel in self.kernels:
            if kernel.fits(window, input_shape[0], attrs.filters, attrs.groups):
                return kernel, window
        raise ValueError(f"none of the conv kernels {[k.name for k in self.kernels]} fits "
                         f"{attrs.groups} group(s) of {input_shape[0]} channels → "
                         f"{attrs.filters} filters over {window}")

    def kernel_for(self, images, weight, bias, attrs, ctx) -> tuple[ConvKernel, SlidingWindow]:
        """The kernel this node runs (see the module docstring: recorded or pinned, else
        measured or the default), recorded in ``ctx.choices``."""
        default, window = self.choose_kernel(images.shape[1:], attrs)
        choices, node = ctx.choices, ctx.node
        if choices is not None and node in choices.by_node:
            name = choices.by_node[node]
            if name == default.name:  # it fits: it was chosen for fitting
                return default, window
            return self.kernel_named(name, window, images.shape[1], attrs, field=node), window
        channels, filters, groups = images.shape[1], attrs.filters, attrs.groups
        candidates = [default] + [kernel for kernel in self.alternatives
                                  if kernel.fits(window, channels, filters, groups)]
        pinned = os.environ.get(KERNEL_ENV, "").strip()
        if pinned not in ("", "measure"):
            kernel = default
            if pinned != "default":
                named = self.kernel_named(pinned, None, channels, attrs, field=KERNEL_ENV)
                if named.fits(window, channels, filters, groups):
                    kernel = named
        elif (choices is None or not choices.measure or len(candidates) == 1
              or images.dtype != np.float32):
            kernel = default
        else:
            key = (images.shape, window, filters, groups, bias is not None)
            if key not in choices.measured:
                choices.measured[key] = fastest(candidates, images, weight, bias, window,
                                                groups).name
            kernel = next(k for k in candidates if k.name == choices.measured[key])
        if choices is not None and node is not None:
            choices.by_node[node] = kernel.name
        return kernel, window

    def implementations(self, input_shapes, attrs):
        """The kernels that compute this conv, by name (what a checkpoint may record)."""
        _, window = self.choose_kernel(input_shapes[0], attrs)
        return tuple(kernel.name for kernel in self._fitting(window, input_shapes[0][0], attrs))

    def _fitting(self, window, channels: int, attrs) -> list[ConvKernel]:
        return [kernel for kernel in self.kernels + self.alternatives
                if kernel.fits(window, channels, attrs.filters, attrs.groups)]

    def kernel_named(self, name: str, window, channels: int, attrs, *, field: str):
        """This op's kernel called ``name``; a UsageError if there is none, or if it does not
        compute this conv (``window`` given)."""
        kernels = self.kernels + self.alternatives
        for kernel in kernels:
            if kernel.name == name:
                if window is None or kernel.fits(window, channels, attrs.filters, attrs.groups):
                    return kernel
                fitting = [k.name for k in self._fitting(window, channels, attrs)]
                raise UsageError(f"conv kernel {name!r} does not compute this convolution",
                                 field=field, expected="one of " + ", ".join(fitting),
                                 found=repr(name))
        raise UsageError("unknown conv kernel", field=field,
                         expected="default, measure or one of "
                                  + ", ".join(k.name for k in kernels), found=repr(name))

    def forward(self, inputs, params, attrs, ctx):
        return self.forward_with_epilogue(inputs, params, attrs, ctx, None)

    def backward(self, grad_output, saved, params, attrs, ctx):
        return self.backward_with_epilogue(grad_output, saved, params, attrs, ctx, None)

    # fusion (graphnet.fusion): an elementwise op after it, applied by the kernel in cache
    def accepts_epilogue(self, input_shapes, attrs):
        """Where the chosen kernel applies an epilogue to each output tile in cache (a ReLU
        after it, and its gradient to each tile of output gradient)."""
        kernel, window = self.choose_kernel(input_shapes[0], attrs)
        return kernel.takes_epilogue(window, input_shapes[0][0], attrs.filters, attrs.groups)

    def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue):
        """With an ``epilogue`` only where accepts_epilogue."""
        images = inputs[0]
        weight = params["weight"].astype(images.dtype, copy=False)
        bias = params["bias"].astype(images.dtype, copy=False) if attrs.bias else None
        kernel, window = self.kernel_for(images, weight, bias, attrs, ctx)
        # a kernel pinned or measured in place of the default may not take the epilogue the
        # default accepted: then it is applied to the whole output here
        inside = epilogue is not None and kernel.takes_epilogue(
            window, images.shape[1], attrs.filters, attrs.groups)
        output, saved = kernel.forward(images, weight, bias, window, attrs.groups,
                                       epilogue=epilogue if inside else None)
        if epilogue is not None and not inside:
            epilogue.forward(output)  # memory the kernel made for this call
        output = output.transpose(0, 3, 1, 2)
        # with an epilogue, the output too: the epilogue's derivative follows from it
        return output, (kernel, window, saved, images.dtype, output if epilogue else None,
                        inside)

    def backward_with_epilogue(self, grad_output, saved, params, attrs, ctx, epilogue):
        """``grad_output`` is the gradient of the epilogue's result, if there is one."""
        kernel, window, kernel_saved, dtype, output, inside = saved
        if epilogue is not None and not inside:
            grad_output, epilogue = epilogue.gradient(grad_output, output), None
        weight = params["weight"]
        grad_input, grad_weight, grad_bias = kernel.backward(
            grad_output.astype(dtype, copy=False), kernel_saved,
            weight.astype(dtype, copy=False), window, attrs.groups,
            input_grad=ctx.wants_input_grad(0), param_grads=ctx.needs_param_grad,
            bias=attrs.bias, epilogue=epilogue, output=output)
        param_grads = {}
        if ctx.needs_param_grad:
            param_grads["weight"] = grad_weight.astype(weight.dtype, copy=False)
            if attrs.bias:
                param_grads["bias"] = grad_bias.astype(params["bias"].dtype, copy=False)
        return [None if grad_input is None else grad_input.transpose(0, 3, 1, 2)], param_grads

    # folding (graphnet.fusion): a per-channel affine map after it (batch norm at inference)
    def absorb_channel_affine(self, params, attrs, scale, shift):
        """The parameters and attributes of this conv followed by x·scale + shift per filter."""
        weight = params["weight"]
        bias = params["bias"].astype(np.float64) if attrs.bias else 0.0
        folded = {"weight": (weight * scale.reshape(-1, 1, 1, 1)).astype(weight.dtype),
                  "bias": (bias * scale + shift).astype(weight.dtype)}
        return folded, SimpleNamespace(**{**vars(attrs), "bias": True})

    # --- export ----------------------------------------------------------------------------
    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        window = self._window(input_shapes[0], attrs)
        source, padding = TorchLayer.padded(names.inputs[0], window.pads)
        options = TorchLayer.options(
            stride=window.stride if window.stride != (1, 1) else None, padding=padding,
            dilation=window.dilation if window.dilation != (1, 1) else None,
            groups=attrs.groups if attrs.groups != 1 else None,
            bias=False if not attrs.bias else None)
        return TorchLayer(f"{names.layer}({source})", f"nn.Conv2d({input_shapes[0][0]}, "
                          f"{attrs.filters}, kernel_size={window.kernel}{options})")

    def to_onnx(self, input_shapes, attrs, builder):
        window = self._window(input_shapes[0], attrs)
        inputs = [builder.inputs[0], builder.param("weight")]
        if attrs.bias:
            inputs.append(builder.param("bias"))
        return builder.add_node("Conv", inputs, builder.output, kernel_shape=list(window.kernel),
                                strides=list(window.stride), pads=onnx_pads(window),
                                dilations=list(window.dilation), group=attrs.groups)


def fastest(candidates, images, weight, bias, window: SlidingWindow, groups: int):
    """The candidate kernel whose forward and backward (both gradients) take least time on
    these arrays: each timed once per round, interleaved, the best of MEASURE_ROUNDS rounds;
    the default (first) stays unless another is LEAST_GAIN times faster, and a tie goes to the
    earlier. A candidate taking more than DROP_AFTER times the best is not timed again: a
    first step of a wide network would otherwise spend seconds re-timing kernels that cannot
    win."""
    best = [math.inf] * len(candidates)
    for _ in range(MEASURE_ROUNDS):
        leader = min(best)
        for position, kernel in enumerate(candidates):
            if best[position] > DROP_AFTER * leader:
                continue
            start = time.perf_counter()
            output, saved = kernel.forward(images, weight, bias, window, groups)
            # any gradient of the output's shape times the same: the output itself
            kernel.backward(output.transpose(0, 3, 1, 2), saved, weight, window, groups,
                            input_grad=True, param_grads=True, bias=bias is not None)
            best[position] = min(best[position], time.perf_counter() - start)
            del output, saved  # before the next candidate makes its own: two at once were
            # the first step's peak (34 + 36 MiB at batch 256 on the classic net's conv2)
    handicapped = [best[0]] + [time_taken * LEAST_GAIN for time_taken in best[1:]]
    return candidates[handicapped.index(min(handicapped))]


@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(Conv2d)
