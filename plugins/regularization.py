"""Layers that behave differently while training: dropout and batch_norm."""
from __future__ import annotations

import math

import numpy as np

from graphnet.hookspecs import hookimpl
from graphnet.op import Attr, Op, Param, format_shape, shape_error



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


class BatchNorm(Op):
    """Batch normalisation per channel (C, H, W inputs) or per feature (F inputs).

    While training, each channel is normalised with the mean and biased variance of the batch
    (over the batch and spatial axes), then scaled by ``weight`` and shifted by ``bias``; the
    running statistics are updated in place the PyTorch way, running = (1 − momentum)·running +
    momentum·batch, the variance with its unbiased estimate. Outside training the running
    statistics are used instead. MACs: one multiply-add per element.
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

    def forward(self, inputs, params, attrs, ctx):
        x = inputs[0]
        reduce_axes = _all_axes_but_channels(x.ndim)
        per_channel = _per_channel_shape(x.ndim)
        if ctx.training:
            mean = x.mean(axis=reduce_axes)
            variance = x.var(axis=reduce_axes)
            _update_running_stats(params, mean, variance, count=x.size // x.shape[1],
                                  momentum=attrs.momentum)
        else:
            mean, variance = params["running_mean"], params["running_var"]
        inv_std = 1 / np.sqrt(variance + attrs.eps)
        normalised = (x - mean.reshape(per_channel)) * inv_std.reshape(per_channel)
        output = (normalised * params["weight"].reshape(per_channel)
                  + params["bias"].reshape(per_channel))
        return output, (normalised, inv_std, ctx.training)

    def backward(self, grad_output, saved, params, attrs, ctx):
        normalised, inv_std, used_batch_stats = saved
        reduce_axes = _all_axes_but_channels(grad_output.ndim)
        per_channel = _per_channel_shape(grad_output.ndim)
        input_grads = [None]
        if ctx.wants_input_grad(0):
            grad_normalised = grad_output * params["weight"].reshape(per_channel)
            if used_batch_stats:
                # The batch mean and variance depend on every input too; their share of the
                # gradient removes the mean of g and its component along the normalised input.
                mean_grad = grad_normalised.mean(axis=reduce_axes, keepdims=True)
                mean_grad_along = (grad_normalised * normalised).mean(axis=reduce_axes,
                                                                        keepdims=True)
                grad_normalised = grad_normalised - mean_grad - normalised * mean_grad_along
            input_grads = [grad_normalised * inv_std.reshape(per_channel)]
        param_grads = {}
        if ctx.needs_param_grad:
            param_grads["weight"] = (grad_output * normalised).sum(axis=reduce_axes)
            param_grads["bias"] = grad_output.sum(axis=reduce_axes)
        return input_grads, param_grads

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        layer = "BatchNorm1d" if len(input_shapes[0]) == 1 else "BatchNorm2d"
        return TorchLayer.applied(names, f"nn.{layer}({input_shapes[0][0]}, "
                                         f"eps={attrs.eps!r}, momentum={attrs.momentum!r})")


def _all_axes_but_channels(ndim: int) -> tuple[int, ...]:
    """The batch axis and every spatial axis: what a per-channel statistic reduces over."""
    return (0,) + tuple(range(2, ndim))


def _per_channel_shape(ndim: int) -> tuple[int, ...]:
    """The shape that broadcasts a (C,) vector along axis 1 of an ``ndim``-dimensional batch."""
    return (1, -1) + (1,) * (ndim - 2)


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
