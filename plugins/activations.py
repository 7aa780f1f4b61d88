"""Activation functions: relu, leaky_relu, clip, relu6, sigmoid, tanh and softmax.

Each maps its input to an output of the same shape and costs no multiply-accumulates (MACs count
only weighted sums). Backward passes are written from the forward's output or a mask, so no op
keeps a copy of its input. ReLU, leaky ReLU, clip, ReLU6 and tanh also offer themselves as an
epilogue (see graphnet.fusion), so a conv or dense layer before them can apply them to its
output in cache.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from graphnet import parallel
from graphnet.fusion import Epilogue
from graphnet.hookspecs import hookimpl
from graphnet.op import POINTWISE, Attr, Op, Window, format_shape, shape_error


class _Elementwise(Op):
    """Base of the activations applied to each element on its own: the shape is unchanged."""

    def shape(self, input_shapes, attrs):
        return input_shapes[0]


class Relu(_Elementwise):
    """Rectified linear unit: max(x, 0).

    MACs: 0. The gradient at exactly 0 is taken as 0.
    """

    name = "relu"

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        output = np.empty_like(x)  # x's memory layout
        # The mask is a second pass; outside training it waits for a backward that may not
        # come (the input is saved for it instead).
        training = getattr(ctx, "training", True)
        positive = np.empty_like(x, dtype=bool) if training else None

        def work(part):
            source, target = long_rows(x[part], output[part])
            np.maximum(source, zeros_like_row(source), out=target)
            if positive is not None:
                np.greater(x[part], 0, out=positive[part])

        parallel.run_batch_tiles(work, x, TILE_BYTES)
        return output, (positive if training else x)

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        positive = saved if saved.dtype == bool else saved > 0
        grad_input = np.empty_like(grad_output)

        def work(part):
            np.multiply(grad_output[part], positive[part], out=grad_input[part])

        parallel.run_batch_tiles(work, grad_output, TILE_BYTES)
        return [grad_input], {}

    def epilogue(self, attrs):
        return RELU_EPILOGUE

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(names, "nn.ReLU()")

    def to_onnx(self, input_shapes, attrs, builder):
        return builder.add_node("Relu", builder.inputs, builder.output)


def _relu_in_place(values):
    rows, = long_rows(values)
    np.maximum(rows, zeros_like_row(rows), out=rows)


LONG_ROW_VALUES = 8192
"""Most values in a row that :func:`long_rows` makes."""
SHORTEST_LONG_ROW = 256
"""Fewer values than this in a row: :func:`long_rows` leaves the arrays as they are."""
LONG_ROWS_MIN_VALUES = 1 << 15
"""Smaller arrays are left as they are: finding their rows (2-5 µs) would cost about what it
saves."""


def long_rows(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Arrays of one shape whose memory is one contiguous block in the same axis order (a conv's
    channels-last output seen as NCHW, say) as views of rows of up to LONG_ROW_VALUES values,
    for an elementwise op against a broadcast row (:func:`zeros_like_row`): numpy runs that
    loop once per row, and a row of a layer's 16 or 32 filters is short. A ReLU over 1 MiB in
    cache (float32, one thread) took 150 µs against rows of 16 values, 104 against 32 and 54
    against rows of 4096. Arrays that are not such blocks, or small, are returned as they are."""
    first = arrays[0]
    if first.size < LONG_ROWS_MIN_VALUES:
        return arrays
    if all(array.flags.c_contiguous for array in arrays):
        in_memory_order = arrays
    else:  # the axes from the largest stride down: C order in memory, whatever the shape's
        axes = sorted(range(first.ndim), key=lambda axis: -first.strides[axis])
        in_memory_order = [array.transpose(axes) for array in arrays]
    if any(array.strides != in_memory_order[0].strides or not array.flags.c_contiguous
           for array in in_memory_order):
        return arrays
    length = math.gcd(first.size, LONG_ROW_VALUES)
    if length < max(SHORTEST_LONG_ROW, first.shape[-1]):
        return arrays
    return tuple(array.reshape(-1, length) for array in in_memory_order)


def zeros_like_row(values: np.ndarray) -> np.ndarray:
    """Zeros of ``values``' last axis and dtype, for ``np.maximum(values, zeros)``: numpy's
    maximum against a scalar 0 runs its slow loop, against a row its vector one — a ReLU over a
    2 MiB tile in cache took 0.25 ms of CPU against 0 and 0.13 ms against a row (float32, one
    thread, numpy 2.4; the same bits: both give +0.0 for −0.0 and keep NaN)."""
    return _zero_row(values.shape[-1] if values.ndim else 1, values.dtype)


@functools.lru_cache(maxsize=128)
def _zero_row(length: int, dtype) -> np.ndarray:
    zeros = np.zeros(length, dtype)
    zeros.flags.writeable = False
    return zeros


def _relu_gradient(grad, output, out):
    np.multiply(grad, output > 0, out=out)


RELU_EPILOGUE = Epilogue(_relu_in_place, _relu_gradient)
"""ReLU fused into the op before it: max(x, 0) in place, and the gradient through the output's
sign (positive output ⇔ positive input, so no mask is kept)."""


TILE_BYTES = 2 << 20
"""Bytes of input per tile of samples: the batch is split among graphnet's worker threads
(memory-bound passes measured 1.4x faster at batch 64, 2x at 256, on two threads), and a
tile's second pass reads cache, not memory. Smaller arrays stay on one thread: handing
LeNet's first ReLU (1.2 MB) to the pool in 512 KiB tiles made it 1.5x slower."""


class LeakyRelu(_Elementwise):
    """Leaky rectified linear unit: x where x > 0, slope·x elsewhere.

    MACs: 0.
    """

    name = "leaky_relu"
    attrs = {"slope": Attr("float", default=0.01, minimum=0.0,
                           doc="the gradient for negative inputs")}

    def forward(self, inputs, params, attrs, ctx):
        positive = inputs[0] > 0
        return np.where(positive, inputs[0], inputs[0] * attrs.slope), positive

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        positive = saved
        return [np.where(positive, grad_output, grad_output * attrs.slope)], {}

    def epilogue(self, attrs):
        slope = attrs.slope

        def in_place(values):
            np.multiply(values, slope, out=values, where=values < 0)

        def gradient(grad, output, out):
            # slope ≥ 0: a positive output means a positive input
            np.copyto(out, grad)
            np.multiply(out, slope, out=out, where=output <= 0)

        return Epilogue(in_place, gradient)

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(names, f"nn.LeakyReLU({attrs.slope!r})")

    def to_onnx(self, input_shapes, attrs, builder):
        return builder.add_node("LeakyRelu", builder.inputs, builder.output, alpha=attrs.slope)


class Clip(_Elementwise):
    """Clamp to [min, max]: min(max(x, min), max), either bound optional (ONNX's Clip).

    MACs: 0. The gradient passes where min < x < max and is 0 elsewhere, the bounds included.
    With min > max every output is max (as ONNX and PyTorch define it), and no gradient passes.
    """

    name = "clip"
    attrs = {"min": Attr("float", default=None, doc="the lower bound (default: none)"),
             "max": Attr("float", default=None, doc="the upper bound (default: none)")}

    def shape(self, input_shapes, attrs):
        if attrs.min is None and attrs.max is None:
            raise shape_error("clip needs a bound", field="min",
                              expected="min, max or both", found="neither")
        return input_shapes[0]

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        low, high = _bounds(attrs)
        output = np.minimum(np.maximum(x, low, dtype=x.dtype), high, dtype=x.dtype)
        return output, (low < x) & (x < high)

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        inside = saved
        return [grad_output * inside], {}

    def epilogue(self, attrs):
        return _clip_epilogue(*_bounds(attrs))

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer(f"torch.clamp({names.inputs[0]}"
                          f"{TorchLayer.options(min=attrs.min, max=attrs.max)})")

    def to_onnx(self, input_shapes, attrs, builder):
        # bounds are inputs since opset 11; an absent one is an omitted input ("")
        bounds = ["" if bound is None else builder.constant(bound, name)
                  for name, bound in (("min", attrs.min), ("max", attrs.max))]
        return builder.add_node("Clip", [builder.inputs[0], *bounds], builder.output)


def _bounds(attrs) -> tuple[float, float]:
    """A clip's bounds, an absent one as an infinity."""
    return (-np.inf if attrs.min is None else attrs.min,
            np.inf if attrs.max is None else attrs.max)


def _clip_epilogue(low: float, high: float) -> Epilogue:
    def in_place(values):
        np.clip(values, low, high, out=values)

    def gradient(grad, output, out):
        # low < output < high exactly where low < x < high: the output is x there, and a
        # bound elsewhere
        np.multiply(grad, (low < output) & (output < high), out=out)

    return Epilogue(in_place, gradient)


class Relu6(_Elementwise):
    """ReLU capped at 6: min(max(x, 0), 6), MobileNet's activation (clip with min 0, max 6).

    MACs: 0. The gradient passes where 0 < x < 6.
    """

    name = "relu6"

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        return np.clip(x, 0, 6), (0 < x) & (x < 6)

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        return [grad_output * saved], {}

    def epilogue(self, attrs):
        return RELU6_EPILOGUE

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(names, "nn.ReLU6()")

    def to_onnx(self, input_shapes, attrs, builder):
        bounds = [builder.constant(bound, name) for name, bound in (("min", 0.0), ("max", 6.0))]
        return builder.add_node("Clip", [builder.inputs[0], *bounds], builder.output)


RELU6_EPILOGUE = _clip_epilogue(0.0, 6.0)


class Sigmoid(_Elementwise):
    """Logistic sigmoid: 1 / (1 + exp(−x)), squashing to (0, 1).

    MACs: 0. Computed from exp(−|x|), which never overflows, so ±1e4 stays exact.
    """

    name = "sigmoid"

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        decay = np.exp(-np.abs(x))  # in (0, 1]: exp of a non-positive number cannot overflow
        # σ(x) = 1/(1+e^−x) for x ≥ 0 and e^x/(1+e^x) for x < 0; both are written with exp(−|x|).
        output = np.where(x >= 0, 1.0, decay) / (1 + decay)
        return output, output

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        output = saved
        return [grad_output * output * (1 - output)], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(names, "nn.Sigmoid()")

    def to_onnx(self, input_shapes, attrs, builder):
        return builder.add_node("Sigmoid", builder.inputs, builder.output)


class Tanh(_Elementwise):
    """Hyperbolic tangent, squashing to (−1, 1).

    MACs: 0.
    """

    name = "tanh"

    def forward(self, inputs, params, attrs, ctx):
        output = np.tanh(inputs[0])
        return output, output

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        output = saved
        return [grad_output * (1 - output * output)], {}

    def epilogue(self, attrs):
        return Epilogue(lambda values: np.tanh(values, out=values),
                        lambda grad, output, out: np.multiply(grad, 1 - output * output,
                                                              out=out))

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(names, "nn.Tanh()")

    def to_onnx(self, input_shapes, attrs, builder):
        return builder.add_node("Tanh", builder.inputs, builder.output)


class Softmax(Op):
    """Softmax over one axis of a sample (the channels by default): exp(x) / Σ exp(x).

    ``axis`` counts the axes of one sample (the batch axis is not counted): 0, the default, is
    the channel (feature) axis — for a (C,) input the C features, for (C, H, W) the C channels
    at every pixel; negative counts from the end (−1 is the last: ONNX's and PyTorch's
    ``dim=-1``). Normalising a spatial axis makes every unit see its whole row or column.
    MACs: 0. The largest score is subtracted first, so ±1e4 does not overflow.
    """

    name = "softmax"
    attrs = {"axis": Attr("int", default=0,
                          doc="the axis of one sample to normalise over: 0 = channels or "
                              "features; negative counts from the end")}

    def _axis(self, input_shape, attrs) -> int:
        """The axis of one sample, from 0; a ShapeError (field "axis") if there is none."""
        rank = len(input_shape)
        if rank == 0:
            raise shape_error("softmax needs a channel or feature axis to normalise over",
                              field="inputs", expected="a shape with at least one axis",
                              found=format_shape(input_shape))
        if not -rank <= attrs.axis < rank:
            raise shape_error("softmax axis outside the input", field="axis",
                              expected=f"an axis of a {format_shape(input_shape)} sample: "
                                       f"{-rank} to {rank - 1} (the batch axis not counted)",
                              found=str(attrs.axis))
        return attrs.axis % rank

    def shape(self, input_shapes, attrs):
        self._axis(input_shapes[0], attrs)
        return input_shapes[0]

    def receptive_field(self, input_shapes, attrs):
        axis, shape = self._axis(input_shapes[0], attrs), input_shapes[0]
        if len(shape) != 3 or axis == 0:
            return POINTWISE
        # a spatial axis: each unit sees its whole row (column), from any position in it — a
        # window twice its length less one, padded by its length less one before
        kernel, padding = [1, 1], [0, 0]
        kernel[axis - 1], padding[axis - 1] = 2 * shape[axis] - 1, shape[axis] - 1
        return Window(tuple(kernel), (1, 1), tuple(padding))

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        axis = 1 + self._axis(x.shape[1:], attrs)
        exponent = np.exp(x - x.max(axis=axis, keepdims=True))  # ≤ 1; the largest is exactly 1
        output = exponent / exponent.sum(axis=axis, keepdims=True)
        return output, (output, axis)

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        output, axis = saved
        # The Jacobian diag(y) − y·yᵀ applied to g without forming it: y ⊙ (g − ⟨g, y⟩).
        projection = (grad_output * output).sum(axis=axis, keepdims=True)
        return [output * (grad_output - projection)], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(
            names, f"nn.Softmax(dim={1 + self._axis(input_shapes[0], attrs)})")

    def to_onnx(self, input_shapes, attrs, builder):
        # over that one axis of the batch (one axis only since opset 13)
        return builder.add_node("Softmax", builder.inputs, builder.output,
                                axis=1 + self._axis(input_shapes[0], attrs))


@hookimpl
def graphnet_register_ops(registry):
    for op_class in (Relu, LeakyRelu, Clip, Relu6, Sigmoid, Tanh, Softmax):
        registry.add_op(op_class)
