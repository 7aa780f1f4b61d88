"""Ops that join several inputs into one: add (residual connections) and concat (channel stacking).

Both map each position to itself, so their receptive field is pointwise (the graph's analysis
takes the union of the inputs' fields).
"""
from __future__ import annotations

import numpy as np

from graphnet import parallel
from graphnet.fusion import TakesEpilogue
from graphnet.hookspecs import hookimpl
from graphnet.op import Op, format_shape, shape_error



class Add(TakesEpilogue, Op):
    """Elementwise sum of two or more inputs of the same shape.

    The same node may be given more than once (``add(x, x)``): each position gets its own gradient
    and the engine sums them. MACs: 0. The ReLU closing a residual block runs inside it
    (:mod:`graphnet.fusion`): the sum and the ReLU in one pass, tile by tile over the threads.
    """

    name = "add"
    arity = (2, None)

    def shape(self, input_shapes, attrs):
        first = input_shapes[0]
        for position, shape in enumerate(input_shapes[1:], start=2):
            if shape != first:
                raise shape_error("add needs inputs of the same shape", field="inputs",
                                  expected=f"every input of shape {format_shape(first)} "
                                           "(like input 1)",
                                  found=f"{format_shape(shape)} at input {position}")
        return first

    # fusion (graphnet.fusion): the ReLU after a residual sum costs no pass of its own
    def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue):
        # the first input's layout (a conv's channels-last), numpy's dtype for the sum
        total = np.empty_like(inputs[0], dtype=np.result_type(*inputs))

        def work(part):
            np.add(inputs[0][part], inputs[1][part], out=total[part])
            for extra in inputs[2:]:
                np.add(total[part], extra[part], out=total[part])
            if epilogue is not None:
                epilogue.forward(total[part])

        if total.ndim:
            parallel.run_batch_tiles(work, total, TILE_BYTES)
        else:  # a sum of losses
            work(...)
        # with an epilogue, the output too: the epilogue's derivative follows from it
        return total, (len(inputs), total if epilogue is not None else None)

    def backward_with_epilogue(self, grad_output, saved, params, attrs, ctx, epilogue):
        """``grad_output`` is the gradient of the epilogue's result, if there is one."""
        input_count, output = saved
        if epilogue is not None:
            grad = np.empty_like(grad_output)

            def work(part):
                epilogue.backward(grad_output[part], output[part], grad[part])

            if grad.ndim:
                parallel.run_batch_tiles(work, grad, TILE_BYTES)
            else:
                work(...)
            grad_output = grad
        # The engine never mutates a gradient it receives, so every input may share this one.
        return [grad_output if ctx.wants_input_grad(position) else None
                for position in range(input_count)], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer(" + ".join(names.inputs))

    def to_onnx(self, input_shapes, attrs, builder):
        # ONNX's Add is binary: summed left to right, as forward does
        total, last = builder.inputs[0], len(builder.inputs) - 1
        for position, term in enumerate(builder.inputs[1:], start=1):
            total = builder.add_node("Add", [total, term],
                                     builder.output if position == last else None)
        return total


TILE_BYTES = 2 << 20
"""Bytes of output per tile of samples shared among the worker threads (as ReLU's)."""


class Concat(Op):
    """Stack two or more inputs along the channel (feature) axis.

    Every other axis must match: (C1, H, W) and (C2, H, W) give (C1 + C2, H, W). MACs: 0.
    """

    name = "concat"
    arity = (2, None)

    def shape(self, input_shapes, attrs):
        first = input_shapes[0]
        if len(first) == 0:
            raise shape_error("concat needs a channel axis to stack along", field="inputs",
                              expected="inputs with at least one axis",
                              found="scalar at input 1")
        for position, shape in enumerate(input_shapes[1:], start=2):
            if len(shape) != len(first) or shape[1:] != first[1:]:
                raise shape_error(
                    "concat needs inputs that differ only in their channel count",
                    field="inputs",
                    expected=f"every input of shape {format_shape(('*',) + tuple(first[1:]))} "
                             "(like input 1; * is any channel count)",
                    found=f"{format_shape(shape)} at input {position}")
        return (sum(shape[0] for shape in input_shapes),) + tuple(first[1:])

    def forward(self, inputs, params, attrs, ctx):
        channel_counts = [x.shape[1] for x in inputs]
        return np.concatenate(inputs, axis=1), channel_counts

    def backward(self, grad_output, saved, params, attrs, ctx):
        channel_counts = saved
        split_points = np.cumsum(channel_counts)[:-1]
        slices = np.split(grad_output, split_points, axis=1)  # views: the engine does not mutate
        return [grad if ctx.wants_input_grad(position) else None
                for position, grad in enumerate(slices)], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer(f"torch.cat([{', '.join(names.inputs)}], dim=1)")

    def to_onnx(self, input_shapes, attrs, builder):
        return builder.add_node("Concat", builder.inputs, builder.output, axis=1)


@hookimpl
def graphnet_register_ops(registry):
    for op_class in (Add, Concat):
        registry.add_op(op_class)
