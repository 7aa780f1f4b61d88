"""A custom layer for graphnet: PReLU, a ReLU whose negative slope is learned per channel.

Use it with ``graphnet check my_spec.toml --plugin prelu.py`` (or GRAPHNET_PLUGINS=prelu.py).
"""
import numpy as np

from graphnet.hookspecs import hookimpl
from graphnet.op import POINTWISE, Attr, Op, Param, TorchLayer


class PReLU(Op):
    """ReLU with a learned slope for negative inputs, one per channel (He et al. 2015)."""

    name = "prelu"
    attrs = {"initial_slope": Attr("float", default=0.25, minimum=0.0,
                                   doc="the slope every channel starts with")}

    def shape(self, input_shapes, attrs):
        return input_shapes[0]                      # elementwise: same shape out

    def params(self, input_shapes, attrs):
        channels = input_shapes[0][0] if input_shapes[0] else 1
        slope = attrs.initial_slope
        return {"slope": Param((channels,), init=lambda rng, shape, dtype: np.full(shape, slope))}

    def receptive_field(self, input_shapes, attrs):
        return POINTWISE                            # each output sees only its own position

    def macs(self, input_shapes, output_shape, attrs):
        return int(np.prod(output_shape))           # one multiply per element

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        slope = self._broadcast(params["slope"], x)
        negative = x < 0
        return np.where(negative, slope * x, x), (x, negative)

    def backward(self, grad_output, saved, params, attrs, ctx):
        x, negative = saved
        slope = self._broadcast(params["slope"], x)
        grad_input = np.where(negative, slope * grad_output, grad_output)
        # d out / d slope = x where x < 0; sum over the batch and every position of a channel
        per_element = np.where(negative, x * grad_output, 0)
        axes = tuple(axis for axis in range(x.ndim) if axis != 1) if x.ndim > 1 else (0,)
        grad_slope = per_element.sum(axis=axes).reshape(params["slope"].shape)
        return [grad_input], {"slope": grad_slope.astype(x.dtype)}

    @staticmethod
    def _broadcast(slope, x):
        """Slope per channel (axis 1 of the batch array), shaped to broadcast over x."""
        return slope.reshape((1, -1) + (1,) * (x.ndim - 2)) if x.ndim > 1 else slope

    def to_torch(self, input_shapes, attrs, names):   # optional: for export and --compare
        channels = input_shapes[0][0] if input_shapes[0] else 1
        return TorchLayer(f"{names.layer}({names.inputs[0]})",          # the node's value
                          f"nn.PReLU({channels}, init={attrs.initial_slope!r})",  # its layer
                          params={"slope": "weight"})   # graphnet's parameter → the layer's

    def to_onnx(self, input_shapes, attrs, builder):  # optional: for graphnet export --to onnx
        rank = len(input_shapes[0])                     # slope per channel, broadcast over H, W
        slope = builder.param("slope", shape=(-1,) + (1,) * (rank - 1) if rank > 1 else None)
        return builder.add_node("PRelu", [builder.inputs[0], slope], builder.output)


@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(PReLU)
