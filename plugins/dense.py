"""Fully connected layers: flatten and dense.

Both see the whole sample at once, so their receptive field is global.
"""
from __future__ import annotations

import math

import numpy as np

from graphnet import parallel
from graphnet.hookspecs import hookimpl
from graphnet.op import GLOBAL, Attr, Op, Param

INITS = ("he_normal", "he_uniform", "glorot_uniform", "glorot_normal")



class Flatten(Op):
    """Flatten each sample to a vector: (C, H, W), or any shape, becomes (C·H·W,).

    MACs: 0.
    """

    name = "flatten"

    def shape(self, input_shapes, attrs):
        return (math.prod(input_shapes[0]),)

    def receptive_field(self, input_shapes, attrs):
        return GLOBAL

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        # Sizes are spelled out rather than -1, which is ambiguous for an empty batch.
        return x.reshape(len(x), math.prod(x.shape[1:])), x.shape

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        input_shape = saved
        return [grad_output.reshape(input_shape)], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(names, "nn.Flatten()")

    def to_onnx(self, input_shapes, attrs, builder):
        return builder.add_node("Flatten", builder.inputs, builder.output, axis=1)


class Dense(Op):
    """Fully connected layer: x·Wᵀ + b, flattening each sample first.

    Accepts any per-sample shape; its in_features are the product of that shape. The weight has
    shape (units, in_features), PyTorch's layout. MACs: in_features·units per sample (the bias
    add is not counted).
    """

    name = "dense"
    attrs = {
        "units": Attr("int", minimum=1, doc="the number of outputs"),
        "bias": Attr("bool", default=True, doc="whether to add a learned bias"),
        "init": Attr("str", default="glorot_uniform", choices=INITS,
                     doc="how the weight is initialised (the bias starts at zero)"),
    }

    def shape(self, input_shapes, attrs):
        return (attrs.units,)

    def params(self, input_shapes, attrs):
        in_features = math.prod(input_shapes[0])
        params = {"weight": Param((attrs.units, in_features), init=attrs.init,
                                  fan_in=in_features, fan_out=attrs.units)}
        if attrs.bias:
            params["bias"] = Param((attrs.units,), init="zeros")
        return params

    def receptive_field(self, input_shapes, attrs):
        return GLOBAL

    def macs(self, input_shapes, output_shape, attrs):
        return math.prod(input_shapes[0]) * attrs.units

    def forward(self, inputs, params, attrs, ctx):
        return self.forward_with_epilogue(inputs, params, attrs, ctx, None)

    def backward(self, grad_output, saved, params, attrs, ctx):
        return self.backward_with_epilogue(grad_output, saved, params, attrs, ctx, None)

    # --- fusion (graphnet.fusion): an elementwise op after it, applied to its output ----------
    def accepts_epilogue(self, input_shapes, attrs):
        """Always: a ReLU after it is applied to its output in place, one pass fewer."""
        return True

    def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue):
        x = inputs[0]
        weight = params["weight"]
        flat = x.reshape(len(x), weight.shape[1])  # a view: saved for the weight gradient
        output = split_matmul(flat, weight.T)
        if attrs.bias:
            output += params["bias"]
        if epilogue:
            epilogue.forward(output)
        return output, (flat, x.shape, output if epilogue else None)

    def backward_with_epilogue(self, grad_output, saved, params, attrs, ctx, epilogue):
        """``grad_output`` is the gradient of the epilogue's result, if there is one."""
        flat, input_shape, output = saved
        if epilogue:
            grad_output = epilogue.gradient(grad_output, output)
        input_grads = [None]
        if ctx.wants_input_grad(0):
            input_grads = [split_matmul(grad_output, params["weight"]).reshape(input_shape)]
        param_grads = {}
        if ctx.needs_param_grad:
            param_grads["weight"] = split_matmul(grad_output.T, flat)
            if attrs.bias:
                param_grads["bias"] = grad_output.sum(axis=0)
        return input_grads, param_grads

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        source = names.inputs[0]
        if len(input_shapes[0]) != 1:  # flattened first, as forward does
            source = f"torch.flatten({source}, 1)"
        bias = "" if attrs.bias else ", bias=False"
        return TorchLayer(f"{names.layer}({source})",
                          f"nn.Linear({math.prod(input_shapes[0])}, {attrs.units}{bias})")

    def to_onnx(self, input_shapes, attrs, builder):
        source = builder.inputs[0]
        if len(input_shapes[0]) != 1:  # flattened first, as forward does
            source = builder.add_node("Flatten", [source], axis=1)
        inputs = [source, builder.param("weight")]
        if attrs.bias:
            inputs.append(builder.param("bias"))
        return builder.add_node("Gemm", inputs, builder.output, transB=1)  # x·Wᵀ + b


PART_MACS = 1 << 22
"""Multiply-accumulates below which a product is not worth splitting among threads."""


def split_matmul(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ right``, its output columns shared among graphnet's worker threads: each reads
    all of ``left`` (the batch's rows or gradients) and its own slice of ``right`` (the weight,
    or the activations for the weight's gradient). Once the pool runs, BLAS is single-threaded
    (see graphnet.parallel), so a large layer would otherwise use one core; splitting the rows
    instead measured slower, every thread then packing all of the weight. A product too
    small for two parts is one call on this thread, without the split's bookkeeping (9.7 →
    5.1 µs for the classic net's batch-1 dense layer, CPU time, one thread)."""
    column_macs = left.shape[0] * left.shape[1]
    min_part = parallel.tile_items(column_macs, PART_MACS)
    if right.shape[1] < 2 * min_part:
        return np.matmul(left, right)
    output = np.empty((left.shape[0], right.shape[1]), dtype=np.result_type(left, right))

    def work(start, stop):
        np.matmul(left, right[:, start:stop], out=output[:, start:stop])

    parallel.run_split(work, right.shape[1], min_part=min_part)
    return output


@hookimpl
def graphnet_register_ops(registry):
    for op_class in (Flatten, Dense):
        registry.add_op(op_class)
