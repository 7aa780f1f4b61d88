"""Layers that behave differently while training: dropout and batch_norm."""
from __future__ import annotations

import math

import numpy as np

from graphnet.fusion import TakesEpilogue
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr, Op, Param, format_shape, shape_error

from . import _batch_norm as kernels



class Dropout(Op):
    """Inverted dropout: while training, zero each element with probability rate, scale the rest.

    Kept elements are multiplied by 1/(1 − rate) so that the expected output equals the input and
    evaluation needs no rescaling: outside training the op is the identity. Masks are drawn from
    the run's generator (``ctx.rng``), so a seeded run repeats. MACs: 0.
    """

    name = "dropout"
    attrs = {"rate": Attr("float", default=0.5, minimum=0.0, maximum=1.0,
                          doc="the probability of zeroing an element while training, below 1")}

    def shape(self, input_shapes, attrs):
        # The schema bounds are inclusive; a rate of 1 would drop everything and divide by zero.
        if attrs.rate >= 1:
            raise shape_error("dropout rate must be below 1", field="rate",
                              expected="a number >= 0 and < 1", found=f"{attrs.rate:g}")
        return input_shapes[0]

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        if not ctx.training or attrs.rate == 0:
            return x, None
        kept = ctx.rng.random(x.shape) >= attrs.rate
        scaled_mask = kept.astype(x.dtype) / (1 - attrs.rate)
        return x * scaled_mask, scaled_mask

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        scaled_mask = saved
        return [grad_output if scaled_mask is None else grad_output * scaled_mask], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer.applied(names, f"nn.Dropout({attrs.rate!r})")

    def to_onnx(self, input_shapes, attrs, builder):
        return builder.inputs[0]  # the identity at inference: no node at all


class BatchNorm(TakesEpilogue, Op):
    """Batch normalisation per channel (C, H, W inputs) or per feature (F inputs).

    While training, each channel is normalised with the mean and biased variance of the batch
    (over the batch and spatial axes), then scaled by ``weight`` and shifted by ``bias``; the
    running statistics are updated in place the PyTorch way, running = (1 − momentum)·running +
    momentum·batch, the variance with its unbiased estimate. Outside training the running
    statistics are used instead. MACs: one multiply-add per element.

    The passes over memory are :mod:`._batch_norm`'s: one for the statistics, one for the
    normalisation; backward's two reductions in one, then one for the input gradient. A ReLU
    after it runs inside those passes (:mod:`graphnet.fusion`).
    """

    name = "batch_norm"
    attrs = {
        "momentum": Attr("float", default=0.1, minimum=0.0, maximum=1.0,
                         doc="the weight of each batch in the running statistics"),
        "eps": Attr("float", default=1e-5, minimum=0.0,
                    doc="added to the variance before its square root"),
    }

    def shape(self, input_shapes, attrs):
        sample_shape = input_shapes[0]
        if len(sample_shape) not in (1, 3):
            raise shape_error(
                "batch_norm normalises features or image channels", field="inputs",
                expected="a shape of rank 1 (features) or rank 3 (channels×height×width)",
                found=f"{format_shape(sample_shape)} (rank {len(sample_shape)})")
        return sample_shape

    def params(self, input_shapes, attrs):
        channels = (input_shapes[0][0],)
        return {
            "weight": Param(channels, init="ones"),
            "bias": Param(channels, init="zeros"),
            "running_mean": Param(channels, init="zeros", trainable=False),
            "running_var": Param(channels, init="ones", trainable=False),
        }

    def macs(self, input_shapes, output_shape, attrs):
        return math.prod(input_shapes[0])

    # fusion (graphnet.fusion): a ReLU after it costs no pass of its own, either way
    def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue):
        layout, x, xv = kernels.viewed(inputs[0])
        if ctx.training:
            mean, variance = kernels.statistics(layout, xv)
            _update_running_stats(params, mean, variance, count=layout.count,
                                  momentum=attrs.momentum)
        else:
            mean = params["running_mean"].astype(np.float64)
            variance = params["running_var"].astype(np.float64)
        inv_std, affine = _affine(params, mean, variance, attrs.eps)
        output = kernels.normalise(layout, xv, *affine, epilogue=epilogue)
        # x itself, not x̂: backward recomputes x̂ tile by tile; with an epilogue, its result
        # too, for its derivative (the op after it keeps that result anyway)
        return output, (layout, xv, mean, inv_std, ctx.training,
                        output if epilogue is not None else None)

    def backward_with_epilogue(self, grad_output, saved, params, attrs, ctx, epilogue):
        """``grad_output`` is the gradient of the epilogue's result, if there is one."""
        layout, xv, mean, inv_std, used_batch_stats, output = saved
        grad_input, grad_sum, grad_dot_normalised = kernels.backward(
            layout, xv, grad_output, mean=mean, inv_std=inv_std, weight=params["weight"],
            used_batch_stats=used_batch_stats, input_grad=ctx.wants_input_grad(0),
            sums=ctx.needs_param_grad, epilogue=epilogue, output=output)
        param_grads = {}
        if ctx.needs_param_grad:
            param_grads["weight"] = grad_dot_normalised.astype(params["weight"].dtype)
            param_grads["bias"] = grad_sum.astype(params["bias"].dtype)
        return [grad_input], param_grads

    # folding (graphnet.fusion): outside training, x·scale + shift per channel, which the conv
    # before it absorbs into its weights and bias
    def channel_affine(self, params, attrs):
        _, affine = _affine(params, params["running_mean"].astype(np.float64),
                            params["running_var"].astype(np.float64), attrs.eps)
        return affine

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        layer = "BatchNorm1d" if len(input_shapes[0]) == 1 else "BatchNorm2d"
        return TorchLayer.applied(names, f"nn.{layer}({input_shapes[0][0]}, "
                                         f"eps={attrs.eps!r}, momentum={attrs.momentum!r})")

    def to_onnx(self, input_shapes, attrs, builder):
        # inference: the running statistics (ONNX's momentum weighs the running value, ours
        # the batch's; it is not used at inference but stated the ONNX way)
        return builder.add_node(
            "BatchNormalization",
            [builder.inputs[0], *(builder.param(name) for name in
                                  ("weight", "bias", "running_mean", "running_var"))],
            builder.output, epsilon=attrs.eps, momentum=1.0 - attrs.momentum)


def _affine(params, mean, variance, eps: float):
    """1/√(variance + eps), and batch norm as x·scale + shift per channel (float64)."""
    inv_std = 1 / np.sqrt(variance + eps)
    scale = params["weight"] * inv_std
    return inv_std, (scale, params["bias"] - mean * scale)


def _update_running_stats(params, batch_mean, batch_variance, *, count: int, momentum: float):
    """Blend the batch statistics into the running ones, in place (they are engine-owned state)."""
    # The unbiased variance divides by count − 1; a channel of one value has no spread to
    # correct, so it contributes its (zero) variance as is rather than 0/0.
    unbiased_variance = batch_variance * (count / max(count - 1, 1))
    running_mean, running_var = params["running_mean"], params["running_var"]
    running_mean[...] = (1 - momentum) * running_mean + momentum * batch_mean
    running_var[...] = (1 - momentum) * running_var + momentum * unbiased_variance


@hookimpl
def graphnet_register_ops(registry):
    for op_class in (Dropout, BatchNorm):
        registry.add_op(op_class)
