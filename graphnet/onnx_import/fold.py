"""Constant folding: an ONNX node whose inputs are all constants is evaluated with numpy as the
walk reaches it, before any converter sees it, and its output becomes one more constant.

Exporters compute sizes, biases and bounds in the graph: PyTorch's dynamo exporter without its
optimizer writes a bias-less conv's zero bias as ``Expand(CastLike(0, x), Shape(weight))`` and
ReLU6's bounds as ``CastLike(6, x)``; ``x.view(x.size(0), -1)`` becomes ``Shape``, ``Gather``,
``Unsqueeze`` and ``Concat``. One fold takes them all, whatever wrote them.

``Shape`` and ``CastLike`` may read a network value, for its static per-sample size or its
element type. The batch size is not static: see :meth:`Converter.fold` for how it is carried
(to a Reshape, as the batch axis) and refused (in arithmetic).
"""
from __future__ import annotations

import numpy as np

from .convert import BatchShape, Converter, Tensor, ints

FOLDERS = {}
"""ONNX op type → (function(converter, node, inputs) evaluating it on constant inputs, None for
an absent optional one; the positions of the inputs whose elements it only moves or copies, so
that a batch entry among them stays marked in its output, or :data:`ALL_INPUTS`)."""


class _AllInputs:
    """``moves`` of an op that moves the elements of every input, however many (Concat)."""

    def __contains__(self, position: int) -> bool:
        return True

    def __repr__(self) -> str:
        return "ALL_INPUTS"


ALL_INPUTS = _AllInputs()


def folds(*op_types, moves=()):
    """Register the decorated ``function(converter, node, inputs)`` in :data:`FOLDERS` as the
    fold of each ONNX op type in ``op_types``; ``moves`` are the positions of the inputs whose
    elements it only moves or copies (:data:`ALL_INPUTS`: every one), so a batch-size entry
    among them stays marked in its output rather than being refused
    (:meth:`Converter.fold`)."""
    def register(function):
        for op_type in op_types:
            FOLDERS[op_type] = (function, moves)
        return function
    return register


def _dtype(element_type: int):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(element_type)


@folds("Constant")
def constant(conv: Converter, node, inputs):
    for name in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        value = conv.attr(node, name)
        if value is not None:
            return conv.to_array(value) if name == "value" else np.asarray(value)
    raise conv.refuse("Constant is imported with a dense numeric value only", field="value")


@folds("Identity", moves=(0,))
def identity(conv: Converter, node, inputs):
    return inputs[0]


@folds("Shape")
def shape(conv: Converter, node, inputs):
    (data,) = inputs
    start, end = conv.attr(node, "start", 0), conv.attr(node, "end")
    if isinstance(data, Tensor):
        dims = np.array([0, *data.shape], dtype=np.int64)
        mark = np.zeros(len(dims), bool)
        mark[0] = True
        return BatchShape(dims[start:end], mark[start:end])
    return np.array(data.shape, dtype=np.int64)[start:end]


@folds("Gather", moves=(0,))
def gather(conv: Converter, node, inputs):
    data, indices = inputs
    return np.take(data, indices, axis=conv.attr(node, "axis", 0))


@folds("Unsqueeze", moves=(0,))
def unsqueeze(conv: Converter, node, inputs):
    data = np.asarray(inputs[0])
    axes = conv.axes(node, 1, since=13)
    rank = data.ndim + len(axes)
    return data.reshape(_unsqueezed(data.shape, sorted(a % rank for a in axes)))


def _unsqueezed(shape, axes):
    dims = list(shape)
    for axis in axes:
        dims.insert(axis, 1)
    return dims


@folds("Squeeze", moves=(0,))
def squeeze(conv: Converter, node, inputs):
    data = np.asarray(inputs[0])
    axes = conv.axes(node, 1, since=13)
    if axes is None:
        return data.reshape([d for d in data.shape if d != 1])
    return np.squeeze(data, axis=tuple(a % data.ndim for a in axes))


@folds("Concat", moves=ALL_INPUTS)
def concat(conv: Converter, node, inputs):
    return np.concatenate([np.asarray(value) for value in inputs], axis=conv.attr(node, "axis"))


@folds("Cast", moves=(0,))
def cast(conv: Converter, node, inputs):
    return np.asarray(inputs[0]).astype(_dtype(conv.attr(node, "to")))


@folds("CastLike", moves=(0,))
def cast_like(conv: Converter, node, inputs):
    data, like = inputs
    if isinstance(like, Tensor):  # a network value: the element type ONNX gives it
        dtype = _dtype(conv.element_types.get(node.input[1], 1))
    else:
        dtype = np.asarray(like).dtype
    return np.asarray(data).astype(dtype)


@folds("Expand", moves=(0,))
def expand(conv: Converter, node, inputs):
    data, shape = np.asarray(inputs[0]), tuple(ints(inputs[1]))
    return np.broadcast_to(data, np.broadcast_shapes(data.shape, shape)).copy()


@folds("Reshape", moves=(0,))
def reshape(conv: Converter, node, inputs):
    data = np.asarray(inputs[0])
    target = ints(inputs[1] if conv.opset >= 5 else conv.attr(node, "shape"))
    keep = not conv.attr(node, "allowzero", 0)
    return data.reshape([data.shape[i] if size == 0 and keep else size
                         for i, size in enumerate(target)])


@folds("Transpose", moves=(0,))
def transpose(conv: Converter, node, inputs):
    return np.transpose(inputs[0], conv.permutation(node, np.ndim(inputs[0])))


@folds("Slice", moves=(0,))
def slice_(conv: Converter, node, inputs):
    data = np.asarray(inputs[0])
    if conv.opset >= 10:
        starts, ends = ints(inputs[1]), ints(inputs[2])
        axes = ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
        steps = ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else None
    else:
        starts, ends = conv.attr(node, "starts"), conv.attr(node, "ends")
        axes, steps = conv.attr(node, "axes"), None
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis % data.ndim] = slice(start, end, step)
    return data[tuple(index)]


@folds("ConstantOfShape")
def constant_of_shape(conv: Converter, node, inputs):
    value = conv.attr(node, "value")
    fill = conv.to_array(value).reshape(-1)[0] if value is not None else np.float32(0)
    return np.full(ints(inputs[0]), fill, dtype=np.asarray(fill).dtype)


@folds("Add", "Sub", "Mul", "Div")
def constant_arithmetic(conv: Converter, node, inputs):
    first, second = (np.asarray(value) for value in inputs)
    if node.op_type == "Div" and first.dtype.kind in "iu":  # ONNX's integer division truncates
        quotient = np.abs(first) // np.abs(second)
        return (np.sign(first) * np.sign(second) * quotient).astype(first.dtype)
    operation = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
    return operation[node.op_type](first, second).astype(first.dtype)
