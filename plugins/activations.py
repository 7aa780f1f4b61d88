"""Activation functions: relu, leaky_relu, sigmoid, tanh and softmax.

Each maps its input to an output of the same shape and costs no multiply-accumulates (MACs count
only weighted sums). Backward passes are written from the forward's output or a mask, so no op
keeps a copy of its input. ReLU, leaky ReLU and tanh also offer themselves as an epilogue (see
graphnet.fusion), so a conv or dense layer before them can apply them to its output in cache.
"""
from __future__ import annotations

import numpy as np

from graphnet import parallel
from graphnet.fusion import Epilogue
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr, Op, format_shape, shape_error



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
            np.maximum(x[part], 0, out=output[part])
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


def _relu_in_place(values):
    np.maximum(values, 0, out=values)


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


class Softmax(Op):
    """Softmax over the channel (feature) axis: exp(x) / Σ exp(x), per sample and position.

    For a (C,) input it normalises the C features; for (C, H, W) it normalises the C channels at
    every pixel. MACs: 0. The largest score is subtracted first, so ±1e4 does not overflow.
    """

    name = "softmax"

    def shape(self, input_shapes, attrs):
        if len(input_shapes[0]) == 0:
            raise shape_error("softmax needs a channel or feature axis to normalise over",
                              field="inputs", expected="a shape with at least one axis",
                              found=format_shape(input_shapes[0]))
        return input_shapes[0]

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        exponent = np.exp(x - x.max(axis=1, keepdims=True))  # ≤ 1, and the largest is exactly 1
        output = exponent / exponent.sum(axis=1, keepdims=True)
        return output, output

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        output = saved
        # The Jacobian diag(y) − y·yᵀ applied to g without forming it: y ⊙ (g − ⟨g, y⟩).
        projection = (grad_output * output).sum(axis=1, keepdims=True)
        return [output * (grad_output - projection)], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(names, "nn.Softmax(dim=1)")


@hookimpl
def graphnet_register_ops(registry):
    for op_class in (Relu, LeakyRelu, Sigmoid, Tanh, Softmax):
        registry.add_op(op_class)
