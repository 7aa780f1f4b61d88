"""Losses: one scalar for the whole batch, the value that backward differentiates.

Each is averaged over the batch, so its scale does not depend on the batch size.
"""
from __future__ import annotations

import numpy as np

from graphnet.errors import DataError
from graphnet.hookspecs import hookimpl
from graphnet.op import GLOBAL, Op, format_shape, shape_error



def _per_sample_scale(grad_output, batch_size: int, dtype) -> np.ndarray:
    """d loss / d (a sample's term): the incoming gradient over the batch size, in ``dtype``.

    The incoming gradient is cast first: a float64 seed must not upcast a float32 graph.
    """
    return np.asarray(grad_output, dtype=dtype) / batch_size


class MseLoss(Op):
    """Squared error ½·Σ(target − output)², summed over each sample and averaged over the batch.

    Inputs: [output, target], of the same shape. Both receive a gradient. MACs: 0.
    """

    name = "mse_loss"
    arity = 2
    is_loss = True

    def shape(self, input_shapes, attrs):
        output_shape, target_shape = input_shapes
        if target_shape != output_shape:
            raise shape_error("mse_loss compares an output with a target of the same shape",
                              field="inputs",
                              expected=f"a target of shape {format_shape(output_shape)} "
                                       "(like the output, input 1)",
                              found=f"{format_shape(target_shape)} at input 2")
        return ()

    def receptive_field(self, input_shapes, attrs):
        return GLOBAL

    def forward(self, inputs, params, attrs, ctx):
        output, target = inputs
        error = output - target
        loss = 0.5 * np.sum(error * error) / len(error)
        return np.asarray(loss, dtype=error.dtype), error

    def backward(self, grad_output, saved, params, attrs, ctx):
        error = saved
        grad_wrt_output = error * _per_sample_scale(grad_output, len(error), error.dtype)
        return [grad_wrt_output if ctx.wants_input_grad(0) else None,
                -grad_wrt_output if ctx.wants_input_grad(1) else None], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        output, target = names.inputs
        # ½·Σ(output − target)² per sample, averaged over the batch, as forward computes it
        return TorchLayer(f"0.5 * F.mse_loss({output}, {target}, reduction='sum') "
                          f"/ {output}.shape[0]")


class SoftmaxCrossEntropy(Op):
    """Cross-entropy of softmax(logits) against integer class labels, averaged over the batch.

    Inputs: [logits of shape (K,), labels of shape () holding class indices in [0, K)]. Computed
    from the logits with log-sum-exp, so ±1e4 stays finite. Labels get no gradient; a label
    outside [0, K) raises DataError. MACs: 0.
    """

    name = "softmax_cross_entropy"
    arity = 2
    integer_inputs = (1,)
    is_loss = True

    def shape(self, input_shapes, attrs):
        logits_shape, labels_shape = input_shapes
        if len(logits_shape) != 1:
            raise shape_error("softmax_cross_entropy takes one score per class", field="inputs",
                              expected="logits of shape K (a vector of class scores) at input 1",
                              found=f"{format_shape(logits_shape)} at input 1")
        if len(labels_shape) != 0:
            raise shape_error("softmax_cross_entropy takes one class index per sample",
                              field="inputs", expected="labels of shape scalar at input 2",
                              found=f"{format_shape(labels_shape)} at input 2")
        return ()

    def receptive_field(self, input_shapes, attrs):
        return GLOBAL

    def forward(self, inputs, params, attrs, ctx):
        logits, labels = inputs
        _check_labels(labels, class_count=logits.shape[1])
        shifted = logits - logits.max(axis=1, keepdims=True)  # ≤ 0, so exp cannot overflow
        log_normaliser = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        log_probabilities = shifted - log_normaliser
        rows = np.arange(len(labels))
        loss = -np.mean(log_probabilities[rows, labels])
        return np.asarray(loss, dtype=logits.dtype), (np.exp(log_probabilities), labels)

    def backward(self, grad_output, saved, params, attrs, ctx):
        probabilities, labels = saved
        if not ctx.wants_input_grad(0):
            return [None, None], {}
        scale = _per_sample_scale(grad_output, len(labels), probabilities.dtype)
        # d loss / d logits = (softmax − one_hot(label)) per sample, over the batch size.
        grad_logits = probabilities * scale
        grad_logits[np.arange(len(labels)), labels] -= scale
        return [grad_logits, None], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        logits, labels = names.inputs
        return TorchLayer(f"{names.layer}({logits}, {labels})", "nn.CrossEntropyLoss()")


def _check_labels(labels: np.ndarray, class_count: int) -> None:
    """Raise DataError unless every label is an integer class index in [0, class_count)."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError("class labels must be integers", expected="an integer array",
                        found=f"dtype {labels.dtype}")
    out_of_range = np.flatnonzero((labels < 0) | (labels >= class_count))
    if out_of_range.size:
        first_bad = out_of_range[0]
        raise DataError(f"class label {labels[first_bad]} is out of range for "
                        f"{class_count} classes", expected=f"labels in [0, {class_count})",
                        found=f"{labels[first_bad]} at batch index {first_bad}")


@hookimpl
def graphnet_register_ops(registry):
    for op_class in (MseLoss, SoftmaxCrossEntropy):
        registry.add_op(op_class)
