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

import math

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


def _dtype(conv: Converter, node, element_type: int, field: str):
    """The numpy type of ONNX ``element_type``, refused unless numeric: a string (or an unknown
    type number) has no value an import could compute with."""
    from onnx import TensorProto, helper

    known = element_type in helper.get_all_tensor_dtypes()
    if not known or np.dtype(helper.tensor_dtype_to_np_dtype(element_type)).kind not in "biufc":
        name = TensorProto.DataType.Name(element_type) if known else "unknown"
        raise conv.refuse(f"{node.op_type} is imported to a numeric element type only",
                          field=field, expected="a numeric ONNX element type (FLOAT, INT64, ...)",
                          found=f"{element_type} ({name})")
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
    data, indices = np.asarray(inputs[0]), np.asarray(inputs[1])
    axis = conv.axis(node, int(conv.attr(node, "axis", 0)), data.ndim)
    size = data.shape[axis]
    if indices.size and not -size <= indices.min() <= indices.max() < size:
        raise conv.refuse("a Gather's indices must lie within the axis it gathers from",
                          field="input 2", expected=f"indices from {-size} to {size - 1}",
                          found=str(ints(indices)))
    return np.take(data, indices, axis=axis)


@folds("Unsqueeze", moves=(0,))
def unsqueeze(conv: Converter, node, inputs):
    data = np.asarray(inputs[0])
    axes = conv.axes(node, 1, since=13)
    rank = data.ndim + len(axes)  # the axes index the output
    return data.reshape(_unsqueezed(data.shape, sorted(conv.distinct_axes(node, axes, rank))))


def _unsqueezed(shape, axes):
    dims = list(shape)
    for axis in axes:
        dims.insert(axis, 1)
    return dims


@folds("Squeeze", moves=(0,))
def squeeze(conv: Converter, node, inputs):
    data = np.asarray(inputs[0])
    axes = conv.axes(node, 1, since=13, rank=data.ndim)
    if axes is None:
        return data.reshape([d for d in data.shape if d != 1])
    if any(data.shape[axis] != 1 for axis in axes):
        raise conv.refuse("a Squeeze removes axes of size 1 only", field="axes",
                          expected="axes of size 1",
                          found=f"axes {axes} of a constant of shape {list(data.shape)}")
    return np.squeeze(data, axis=tuple(axes))


@folds("Concat", moves=ALL_INPUTS)
def concat(conv: Converter, node, inputs):
    arrays = [np.asarray(value) for value in inputs]
    axis = conv.axis(node, int(conv.attr(node, "axis")), arrays[0].ndim)
    others = {(array.ndim, array.shape[:axis] + array.shape[axis + 1:]) for array in arrays}
    if len(others) > 1:
        raise conv.refuse("a Concat's inputs must have one shape but along its axis",
                          field="inputs", expected=f"sizes equal but along axis {axis}",
                          found=" and ".join(str(list(array.shape)) for array in arrays))
    return np.concatenate(arrays, axis=axis)


@folds("Cast", moves=(0,))
def cast(conv: Converter, node, inputs):
    return np.asarray(inputs[0]).astype(_dtype(conv, node, conv.attr(node, "to"), "to"))


@folds("CastLike", moves=(0,))
def cast_like(conv: Converter, node, inputs):
    data, like = inputs
    if isinstance(like, Tensor):  # a network value: the element type ONNX gives it
        dtype = _dtype(conv, node, conv.element_types.get(node.input[1], 1), "input 2")
    else:
        dtype = np.asarray(like).dtype
    return np.asarray(data).astype(dtype)


@folds("Expand", moves=(0,))
def expand(conv: Converter, node, inputs):
    data, shape = np.asarray(inputs[0]), tuple(ints(inputs[1]))
    # ONNX's broadcasting, from the last axis: sizes equal, or one of them 1
    clashing = [(size, target) for size, target in zip(data.shape[::-1], shape[::-1])
                if size != target and 1 not in (size, target)]
    if clashing or min(shape, default=0) < 0:
        raise conv.refuse("an Expand's shape must broadcast with its input's", field="input 2",
                          expected=f"sizes that broadcast with {list(data.shape)}",
                          found=str(list(shape)))
    return np.broadcast_to(data, np.broadcast_shapes(data.shape, shape)).copy()


@folds("Reshape", moves=(0,))
def reshape(conv: Converter, node, inputs):
    data = np.asarray(inputs[0])
    target = ints(inputs[1] if conv.opset >= 5 else conv.attr(node, "shape"))
    keep = not conv.attr(node, "allowzero", 0)
    return data.reshape(_reshape_sizes(conv, node, data.shape, target, keep_zeros=keep))


def _reshape_sizes(conv: Converter, node, shape, target, *, keep_zeros: bool) -> list[int]:
    """A Reshape's ``target`` for an input of ``shape``: a 0 the input's size there (where
    ``keep_zeros``), at most one -1 (inferred). Refused unless ONNX's rules give it the input's
    number of elements: numpy raised, or read a -2 as a -1."""
    sizes = [shape[i] if size == 0 and keep_zeros and i < len(shape) else size
             for i, size in enumerate(target)]
    known, total = math.prod(size for size in sizes if size != -1), math.prod(shape)
    if keep_zeros and 0 in target[len(shape):]:
        why = "a 0 keeps the input's size at its position, where the input has no axis"
    elif min(sizes, default=0) < -1 or sizes.count(-1) > 1:
        why = "its sizes must not be negative but for one -1 (inferred)"
    elif -1 in sizes and (known == 0 or total % known):
        why = "its -1 must stand for a whole size"
    elif -1 not in sizes and known != total:
        why = "it must hold as many elements as its input"
    else:
        return sizes
    raise conv.refuse(f"a Reshape's target is malformed: {why}",
                      field="input 2" if conv.opset >= 5 else "shape",
                      expected=f"a shape of {total} elements for an input of shape {list(shape)}"
                               + ("" if keep_zeros else " (allowzero = 1: a 0 is a size of 0)"),
                      found=str(target))


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
    axes = conv.distinct_axes(node, range(len(starts)) if axes is None else axes, data.ndim)
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise conv.refuse("a Slice's starts, ends, axes and steps must have one length",
                          field="starts", expected="one entry each per axis sliced",
                          found=f"starts {list(starts)}, ends {list(ends)}, axes {axes}, "
                                f"steps {list(steps)}")
    if 0 in steps:
        raise conv.refuse("a Slice's steps must not be 0", field="steps",
                          expected="steps other than 0", found=str(list(steps)))
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        index[axis] = slice(start, end, step)
    return data[tuple(index)]


@folds("ConstantOfShape")
def constant_of_shape(conv: Converter, node, inputs):
    value = conv.attr(node, "value")
    fill = conv.to_array(value).reshape(-1)[0] if value is not None else np.float32(0)
    sizes = ints(inputs[0])
    if min(sizes, default=0) < 0:
        raise conv.refuse("a ConstantOfShape's sizes must not be negative", field="input 1",
                          expected="sizes of 0 or more", found=str(sizes))
    return np.full(sizes, fill, dtype=np.asarray(fill).dtype)


@folds("Add", "Sub", "Mul", "Div")
def constant_arithmetic(conv: Converter, node, inputs):
    first, second = (np.asarray(value) for value in inputs)
    if node.op_type == "Div" and first.dtype.kind in "iu":  # ONNX's integer division truncates
        quotient = np.abs(first) // np.abs(second)
        return (np.sign(first) * np.sign(second) * quotient).astype(first.dtype)
    operation = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
    return operation[node.op_type](first, second).astype(first.dtype)
