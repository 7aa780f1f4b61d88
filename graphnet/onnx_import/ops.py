"""One converter per ONNX op type: ONNX node → graphnet node(s), exactly or not at all.

A converter reads its node's attributes and inputs through the :class:`Converter` and either
emits graphnet nodes, binds its output to a value it already has (``Identity``, a folded bias),
or refuses with :meth:`Converter.refuse`. Attribute values that graphnet's ops may not accept
(four-sided padding, ``ceil_mode``, pooling dilation, ``relu6``, ``clip``, softmax's ``axis``)
are checked against the registered op's schema, so the import follows the ops it has.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .convert import HELD_FOR, Converter, Tensor, ints, node_name

CONVERTERS = {}


def converts(*op_types):
    """Register the decorated ``function(converter, node)`` in :data:`CONVERTERS` as the
    converter of each ONNX op type in ``op_types`` (a later registration of a type replaces an
    earlier one). It reads the node's inputs through the converter and binds its outputs
    (``emit``, ``alias`` or ``hold``), or refuses the node."""
    def register(function):
        for op_type in op_types:
            CONVERTERS[op_type] = function
        return function
    return register


def _number(value) -> float:
    """A float attribute (stored as float32 in ONNX) as its shortest decimal: 1e-05, not
    9.999999747378752e-06."""
    return float(str(np.float32(value)))


# --- windows ------------------------------------------------------------------------------------
def _window_attrs(conv: Converter, node, op: str, input_shape, kernel, *, ceil_mode=False,
                  pad=(0, 0, 0, 0)):
    """kernel, stride, dilation and explicit padding (top, left, bottom, right) of a Conv or
    pool node, ``auto_pad`` resolved against the static input size, ``pad`` (an ONNX Pad's
    sides before it, its input size ``input_shape``) added; and the output's height and width
    by ONNX's formula (onnx's own shape inference leaves out ceil_mode's rule that drops a last
    window starting in the end padding, which onnxruntime and PyTorch apply)."""
    if len(input_shape) != 3 or len(kernel) != 2:
        raise conv.refuse("graphnet imports 2-D windows over (channels, height, width) images",
                          field="kernel_shape", expected="a 2-D kernel",
                          found=f"kernel {list(kernel)} over a sample of shape {list(input_shape)}")
    stride = list(conv.attr(node, "strides", [1, 1]))
    dilation = list(conv.attr(node, "dilations", [1, 1]))
    auto_pad = conv.attr(node, "auto_pad", "NOTSET") or "NOTSET"
    if auto_pad == "NOTSET":
        pads = list(conv.attr(node, "pads", [0, 0, 0, 0]))
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        before, after = [], []
        for size, k, s, d in zip(input_shape[1:], kernel, stride, dilation):
            total = max((math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size, 0)
            small, large = total // 2, total - total // 2
            before.append(small if auto_pad == "SAME_UPPER" else large)
            after.append(large if auto_pad == "SAME_UPPER" else small)
        pads = before + after
    else:
        raise conv.refuse("unknown auto_pad", field="auto_pad",
                          expected="NOTSET, VALID, SAME_UPPER or SAME_LOWER", found=auto_pad)
    if len(pads) != 4 or len(stride) != 2 or len(dilation) != 2:
        raise conv.refuse("graphnet imports 2-D windows", field="pads",
                          found=f"pads {pads}, strides {stride}, dilations {dilation}")
    top, left, bottom, right = (int(p) + extra for p, extra in zip(pads, pad))
    own_pads = ints(pads)
    if top == bottom and left == right:
        padding = top if top == left else [top, left]
    else:
        padding = [top, left, bottom, right]
        conv.require_attribute(op, "padding", padding,
                               f"padding with four different sides {padding}")
    attrs = {"kernel": _pair(kernel), "stride": _pair(stride)}
    if padding != 0:
        attrs["padding"] = padding
    if list(dilation) != [1, 1]:
        attrs["dilation"] = _pair(dilation)
    output_hw = []
    for size, before, after, k, s, d in zip(input_shape[1:], own_pads[:2], own_pads[2:],
                                            kernel, stride, dilation):
        windows = (size + before + after - d * (k - 1) - 1) / s
        count = (math.ceil(windows) if ceil_mode else math.floor(windows)) + 1
        if ceil_mode and (count - 1) * s >= size + before:
            count -= 1  # the last window would start in the end padding
        output_hw.append(int(count))
    return attrs, tuple(output_hw)


def _pair(values):
    values = ints(values)
    return values[0] if values[0] == values[1] else values


def _pad_of(conv: Converter, x: Tensor, op: str, exact, what: str):
    """The sides of the Pad before a Conv or pool (zeros when there is none), refused unless
    its value pads as ``op`` itself does (``exact(value)``; ``what`` says what that needs)."""
    padding = x.holds("pad")
    if padding is None:
        return (0, 0, 0, 0)
    if not exact(padding[4]):
        raise conv.refuse(f"a Pad before {op} is imported as its padding only {what}",
                          field="input 1", found=f"pads (top, left, bottom, right, value) "
                                                 f"{padding}")
    return padding[:4]


@converts("Conv")
def conv_op(conv: Converter, node):
    x = conv.tensor(node, 0, takes=("pad", "affine"))
    weight = conv.constant(node, 1)
    bias = conv.constant(node, 2, optional=True)
    if weight.ndim != 4:
        raise conv.refuse("graphnet imports 2-D convolutions only", field="input 2",
                          expected="a 4-D weight (filters, channels/groups, kh, kw)",
                          found=f"a {weight.ndim}-D weight")
    if bias is not None and node.input[2] not in conv.initializers and not bias.any():
        bias = None  # not a parameter: PyTorch's dynamo writes a bias-less conv's as Expand(0)
    groups = int(conv.attr(node, "group", 1))
    kernel = ints(conv.attr(node, "kernel_shape", weight.shape[2:]))
    if kernel != list(weight.shape[2:]):
        raise conv.refuse("Conv's kernel_shape differs from its weight's kernel",
                          field="kernel_shape", expected=str(list(weight.shape[2:])),
                          found=str(kernel))
    attrs = {"filters": int(weight.shape[0])}
    pad = _pad_of(conv, x, "Conv", lambda value: value == 0, "with zeros")
    window, output_hw = _window_attrs(conv, node, "conv2d", x.shape, kernel, pad=pad)
    attrs.update(window)
    if x.holds("affine") is not None:
        weight, bias = _take_affine(conv, x.holds("affine"), weight, bias, groups, attrs)
    if attrs["stride"] == 1:  # conv2d's default (a pool's is its kernel: always written)
        del attrs["stride"]
    if groups != 1:
        attrs["groups"] = groups
    params = {"weight": weight}
    if bias is None:
        attrs["bias"] = False
    else:
        params["bias"] = bias
    conv.emit(node, "conv2d", [x], attrs, params, shape=(attrs["filters"], *output_hw))


def _take_affine(conv: Converter, affine, weight, bias, groups: int, attrs: dict):
    """A Conv's weight and bias for its input ``x · scale + shift`` (per input channel): the
    scale goes into the weights, exactly whatever the padding (0 · s is 0); the shift into the
    bias only where the Conv does not pad, since its zero padding would not be shifted."""
    filters, per_group = weight.shape[:2]
    scale, shift = (values.reshape(groups, per_group)[np.arange(filters) // (filters // groups)]
                    [:, :, None, None] for values in affine)
    if affine[1].any():
        if "padding" in attrs:
            raise conv.refuse("a constant added before a Conv is imported only when the Conv "
                              "does not pad: its zero padding would not be shifted",
                              field="pads", found=f"padding {attrs['padding']}",
                              hint="Keras' Rescaling with an offset, or Normalization, before "
                                   "a convolution with padding='same' writes this")
        shifted = (weight * shift).sum(axis=(1, 2, 3))
        bias = shifted if bias is None else bias + shifted
    return weight * scale, bias


@converts("MaxPool", "AveragePool")
def pool_op(conv: Converter, node):
    average = node.op_type == "AveragePool"
    op = "avg_pool2d" if average else "max_pool2d"
    if len(node.output) > 1 and conv.used(node.output[1]):
        raise conv.refuse("the indices output of MaxPool is not supported", field="output 2")
    x = conv.tensor(node, 0, takes=("pad",))
    padding = x.holds("pad")
    kernel = list(conv.attr(node, "kernel_shape"))
    ceil_mode = bool(conv.attr(node, "ceil_mode", 0))
    own_pads = any(conv.attr(node, "pads", [0])) or conv.attr(node, "auto_pad", "NOTSET") \
        not in ("NOTSET", "VALID")
    include_pad = bool(conv.attr(node, "count_include_pad", 0))
    if average:  # zeros it divides by: its own padding must count too
        pad = _pad_of(conv, x, node.op_type, lambda value: not ceil_mode and value == 0
                      and (include_pad or not own_pads),
                      "with zeros, without ceil_mode, and with count_include_pad = 1 when the "
                      "pool pads too")
        include_pad = include_pad or padding is not None
    else:  # max pooling pads with -inf; zeros are the same over values that are not negative
        pad = _pad_of(conv, x, node.op_type, lambda value: not ceil_mode and (
            value == -np.inf or value == 0 and _not_negative(conv, x)),
            "with -inf, or zeros after a ReLU, ReLU6 or sigmoid, and without ceil_mode")
    attrs, output_hw = _window_attrs(conv, node, op, x.shape, kernel, ceil_mode=ceil_mode,
                                     pad=pad)
    _refuse_windows_of_padding_only(conv, x, pad, attrs, output_hw)
    if "dilation" in attrs:
        conv.require_attribute(op, "dilation", attrs["dilation"], "pooling with dilations")
        auto_pad = conv.attr(node, "auto_pad", "NOTSET")
        if auto_pad.startswith("SAME"):
            # ONNX sizes the padding for the dilated window; onnxruntime for the kernel
            # alone, which gives a smaller output: which one the model meant is not known
            raise conv.refuse(f"a dilated {node.op_type} with auto_pad {auto_pad} is not "
                              "imported: ONNX's rule and onnxruntime pad it differently, to "
                              "different output sizes", field="auto_pad",
                              expected="explicit pads, VALID or no dilations",
                              found=f"auto_pad {auto_pad}, dilations {attrs['dilation']}")
    if ceil_mode:
        conv.require_attribute(op, "ceil_mode", True, "ceil_mode")
        attrs["ceil_mode"] = True
    if average:  # ONNX's default leaves padding out of the divisor; graphnet's depends
        attrs["count_include_pad"] = include_pad
    conv.emit(node, op, [x], attrs, shape=(x.shape[0], *output_hw))


def _refuse_windows_of_padding_only(conv: Converter, x: Tensor, pad, attrs: dict, output_hw):
    """graphnet's pools keep a pixel of the image in every window; a Pad before the pool as
    wide as its window (or its own pads) would leave one over padding only."""
    padding = attrs.get("padding", 0)
    padding = [padding] * 4 if isinstance(padding, int) else \
        list(padding) * 2 if len(padding) == 2 else list(padding)
    for axis in range(2):
        size = x.shape[1 + axis] - pad[axis] - pad[axis + 2]  # the image before the Pad
        kernel, stride, dilation = (
            _pair_list(attrs.get(key, default))[axis]
            for key, default in (("kernel", None), ("stride", 1), ("dilation", 1)))
        for index in range(output_hw[axis]):
            start = index * stride - padding[axis]
            if not any(0 <= start + tap * dilation < size for tap in range(kernel)):
                pads = f"{list(x.holds('pad')[:4])} from the Pad before it, " \
                    if x.holds("pad") is not None else ""
                raise conv.refuse(
                    f"{conv.node.op_type} is imported only where every window keeps a pixel of "
                    "the image: graphnet's pools have no window over padding alone",
                    field="pads", expected="padding narrower than the window on each side",
                    found=f"padding (top, left, bottom, right) {pads}{padding} in all: "
                          f"window {index + 1} of {output_hw[axis]} "
                          f"{('down', 'across')[axis]} covers padding only")


def _pair_list(value) -> list[int]:
    return [int(value)] * 2 if isinstance(value, (int, np.integer)) else [int(v) for v in value]


def _not_negative(conv: Converter, x: Tensor) -> bool:
    entry = x.entry or {}
    return entry.get("op") in ("relu", "relu6", "sigmoid") or \
        entry.get("op") == "clip" and entry.get("min", -1) >= 0


@converts("Pad")
def pad_op(conv: Converter, node):
    """Held on the value (:attr:`Tensor.held`) for the Conv or pool reading it to take as its
    padding: graphnet has no pad op."""
    x = conv.tensor(node, 0)
    mode = conv.attr(node, "mode", "constant")
    if conv.opset >= 11:
        pads, value = conv.constant(node, 1), conv.constant(node, 2, optional=True)
    else:
        pads, value = conv.attr(node, "pads"), conv.attr(node, "value", 0.0)
    pads = ints(pads)
    rank = len(x.shape) + 1
    axes = conv.axes(node, 3, since=11, rank=rank)  # an input only, optional (opset 18 on)
    axes = range(rank) if axes is None else axes
    if len(pads) != 2 * len(axes):
        raise conv.refuse("a Pad's pads must give a start and an end for each axis it pads",
                          field="pads", expected=f"{2 * len(axes)} values",
                          found=f"{len(pads)}: {pads}")
    before, after = [0] * rank, [0] * rank
    for index, axis in enumerate(axes):
        before[axis], after[axis] = pads[index], pads[index + len(pads) // 2]
    if mode != "constant" or rank != 4 or any(before[:2] + after[:2]) or min(pads) < 0:
        raise conv.refuse("Pad is imported as the constant padding of a Conv or pool's image "
                          "only", field="pads", expected="mode constant, over height and "
                          "width, none negative", found=f"mode {mode}, pads {pads}")
    value = 0.0 if value is None else float(np.ravel(value)[0])
    shape = (x.shape[0], x.shape[1] + before[2] + after[2], x.shape[2] + before[3] + after[3])
    if any(pads):
        conv.hold(node, x, shape, "pad", (before[2], before[3], after[2], after[3], value))
    else:
        conv.alias(node, x)


@converts("GlobalAveragePool")
def global_average_pool(conv: Converter, node):
    _whole_image_mean(conv, node, conv.tensor(node, 0), keepdims=True)


@converts("GlobalMaxPool")
def global_max_pool(conv: Converter, node):
    _whole_image_window(conv, node, conv.tensor(node, 0), "max_pool2d")


@converts("ReduceMean")
def reduce_mean(conv: Converter, node):
    x = conv.tensor(node, 0)
    rank = len(x.shape) + 1
    axes = conv.axes(node, 1, since=18, rank=rank)
    spatial = sorted(axes) if axes else None
    if rank != 4 or spatial != [2, 3]:
        raise conv.refuse("ReduceMean is imported as a mean over the image (global average "
                          "pooling) only", field="axes", expected="axes [2, 3] of an N×C×H×W "
                          "value", found=f"axes {axes} of a rank-{rank} value")
    _whole_image_mean(conv, node, x, keepdims=bool(conv.attr(node, "keepdims", 1)))


def _whole_image_mean(conv: Converter, node, x: Tensor, *, keepdims: bool):
    if not keepdims:
        _require_image(conv, x, "global average pooling")
        conv.emit(node, "global_avg_pool", [x], shape=(x.shape[0],))
        return
    # (C, 1, 1), as ONNX keeps it; a flatten right after makes it one global_avg_pool
    _whole_image_window(conv, node, x, "avg_pool2d").flattens_to_global_pool = True


def _whole_image_window(conv: Converter, node, x: Tensor, op: str) -> Tensor:
    """A pool (``op``) of one window over the whole image: (C, 1, 1), as ONNX keeps it."""
    _require_image(conv, x, "global pooling")
    channels, height, width = x.shape
    return conv.emit(node, op, [x], {"kernel": _pair([height, width])},
                     shape=(channels, 1, 1))


def _require_image(conv: Converter, x: Tensor, what: str):
    if len(x.shape) != 3:
        raise conv.refuse(f"{what} needs (channels, height, width) samples",
                          field="input 1", found=str(list(x.shape)))


# --- shapes -------------------------------------------------------------------------------------
@converts("Flatten")
def flatten(conv: Converter, node):
    x = conv.tensor(node, 0, takes=("transpose",))
    rank = len(x.shape) + 1
    axis = int(conv.attr(node, "axis", 1))
    if axis != rank:  # Flatten's axis may also be the rank: all in the first dimension
        axis = conv.axis(node, axis, rank)
    if axis != 1:
        raise conv.refuse("Flatten is imported with axis 1 (each sample to a vector) only",
                          field="axis", expected="1", found=str(axis))
    _flatten(conv, node, x)


@converts("Reshape")
def reshape(conv: Converter, node):
    x = conv.tensor(node, 0, takes=("transpose",))
    if conv.opset >= 5:  # the target an input: its first entry may be the batch size
        target, batch_first = conv.shape_target(node, 1)
    else:
        target, batch_first = ints(conv.attr(node, "shape")), False
    features = math.prod(x.shape)
    batch = (conv.shapes.get(node.input[0]) or [None])[0]
    allow_zero = bool(conv.attr(node, "allowzero", 0))
    batch_ok = batch_first or (target[0] == 0 and not allow_zero) \
        or (batch is not None and target[0] == batch) \
        or (target[0] == -1 and len(target) == 2 and target[1] == features)
    if len(target) != 2 or not batch_ok or target[1] not in (-1, features):
        raise conv.refuse("Reshape is imported as a flatten of each sample, to (N, -1), only",
                          field="input 2", expected="the shape (N, -1)", found=str(target))
    _flatten(conv, node, x)


@converts("Squeeze")
def squeeze(conv: Converter, node):
    x = conv.tensor(node, 0, takes=("transpose",))
    rank = len(x.shape) + 1
    axes = conv.axes(node, 1, since=13, rank=rank)
    axes = None if axes is None else sorted(axes)
    if rank != 4 or x.shape[1:] != (1, 1) or axes not in ([2, 3], None):
        raise conv.refuse("Squeeze is imported as the flatten of a (C, 1, 1) sample to (C,), "
                          "as a pooled image's, only", field="axes", expected="axes [2, 3] of "
                          "an N×C×1×1 value", found=f"axes {axes} of a sample of shape "
                                                    f"{list(x.shape)}")
    if axes is None:  # every axis of size 1 goes: the batch's too, in a batch of 1
        batch = (conv.shapes.get(node.input[0]) or [None])[0]
        if batch == 1 or x.shape[0] == 1:
            raise conv.refuse("Squeeze without axes removes every axis of size 1, here the "
                              "batch's or the channels' too, which graphnet keeps",
                              field="axes", expected="axes [2, 3]",
                              found="none, over a value of shape [" + ", ".join(
                                  str(size) for size in (batch or "N", *x.shape)) + "]")
        conv.notes.append(f"Squeeze {node_name(node)!r} has no axes: ONNX removes the batch "
                          "axis too when a batch of 1 runs, the imported flatten keeps it")
    _flatten(conv, node, x)


def _flatten(conv: Converter, node, x: Tensor):
    transposed = x.holds("transpose")
    if transposed is None:
        _flatten_in_order(conv, node, x)
        return
    # Keras' Flatten, channels-last: the features of the value before the Transpose, in the
    # order the Transpose gives them; the dense layer reading them takes that order instead
    perm, before = transposed
    order = np.arange(math.prod(before)).reshape(before).transpose(
        [axis - 1 for axis in perm[1:]]).ravel()
    _flatten_in_order(conv, node, dataclasses.replace(x, shape=before, held=None))
    if (order != np.arange(order.size)).any():
        conv.hold(node, conv.values[node.output[0]], None, "order", order)


def _flatten_in_order(conv: Converter, node, x: Tensor):
    readers = conv.readers.get(node.output[0], [])
    if conv.uses[node.output[0]] == 1 and len(readers) == 1 \
            and readers[0].op_type in ("Gemm", "MatMul") and node_name(readers[0]) == node_name(node):
        # one layer written as two ONNX nodes (named alike: "fc", "fc/Gemm"): graphnet's dense
        # flattens its input itself, so it reads the unflattened value
        conv.alias(node, Tensor(x.source, (math.prod(x.shape),), x.entry))
        return
    if x.flattens_to_global_pool and conv.readers_of_value(x) == 1:
        # the pool's (C, 1, 1) flattened: one global_avg_pool, as a person would write it
        name, inputs = x.entry["name"], x.entry["inputs"]
        x.entry.clear()
        x.entry.update(name=name, op="global_avg_pool", inputs=inputs)
        conv.expected_shapes[x.source] = (x.shape[0],)
        conv.alias(node, Tensor(x.source, (x.shape[0],), x.entry))
        return
    conv.emit(node, "flatten", [x], shape=(math.prod(x.shape),))


@converts("Identity")
def identity(conv: Converter, node):
    conv.alias(node, conv.tensor(node, 0, takes=tuple(HELD_FOR)))  # of a constant: folded


@converts("Dropout")
def dropout(conv: Converter, node):
    if len(node.output) > 1 and conv.used(node.output[1]):
        raise conv.refuse("the mask output of Dropout is not supported", field="output 2")
    _refuse_training_mode_before_opset_7(conv, node)
    x = conv.tensor(node, 0)
    if conv.opset >= 12:
        ratio = conv.constant(node, 1, optional=True)
        ratio = 0.5 if ratio is None else float(np.ravel(ratio)[0])
        training = conv.constant(node, 2, optional=True)
        if training is not None and bool(np.ravel(training)[0]):
            raise conv.refuse("Dropout in training mode is not imported", field="input 3")
    else:
        ratio = float(conv.attr(node, "ratio", 0.5))
    if ratio == 0:
        conv.alias(node, x)
        return
    conv.emit(node, "dropout", [x], {"rate": _number(ratio)}, shape=x.shape)


# --- layers -------------------------------------------------------------------------------------
def _refuse_training_mode_before_opset_7(conv: Converter, node):
    """Before opset 7, BatchNormalization and Dropout run in training mode (the batch's
    statistics; dropped values) unless ``is_test`` is 1, and its default is 0 (PyTorch's
    exporters of that time wrote 1 for a model in eval mode)."""
    is_test = conv.attr(node, "is_test")
    if conv.opset < 7 and not is_test:
        raise conv.refuse(f"{node.op_type} before opset 7 runs in training mode unless "
                          "is_test = 1: training mode is not imported", field="is_test",
                          expected="1", found="0 (the default)" if is_test is None else "0")


@converts("BatchNormalization")
def batch_norm(conv: Converter, node):
    # the outputs of the statistics ask for training mode where they are declared, read or
    # not: onnxruntime then normalises with the batch's statistics (opsets 7-13; from 14 on
    # ONNX allows them only with training_mode = 1)
    declared = [name for name in node.output[1:] if name]
    if declared:
        raise conv.refuse("BatchNormalization with its statistics' outputs declared runs in "
                          "training mode, normalising with the batch's statistics: not "
                          "imported", field="outputs", expected="one output (inference)",
                          found=f"{len(declared) + 1} outputs: {', '.join(node.output)}")
    _refuse_training_mode_before_opset_7(conv, node)
    if conv.attr(node, "training_mode", 0):
        raise conv.refuse("BatchNormalization in training mode is not imported",
                          field="training_mode", expected="0", found="1")
    x = conv.tensor(node, 0)
    if len(x.shape) not in (1, 3):
        raise conv.refuse("batch norm over features or image channels only", field="input 1",
                          found=str(list(x.shape)))
    if not conv.attr(node, "spatial", 1) and math.prod(x.shape[1:]) != 1:
        # spatial = 0 (opsets 7-8) keeps statistics per activation: per channel where a
        # channel is one value, as after a dense layer (MXNet's and Caffe2's BatchNorm1d)
        raise conv.refuse("BatchNormalization with spatial = 0 (statistics per activation) is "
                          "imported over features or 1×1 images only", field="spatial",
                          expected="1, or samples of shape (C,) or (C, 1, 1)",
                          found=f"0, over samples of shape {list(x.shape)}")
    statistics = []
    for position in (1, 2, 3, 4):
        values = conv.constant(node, position)
        if values.size != x.shape[0]:
            raise conv.refuse("batch norm needs one value per channel", field=f"input "
                              f"{position + 1}", expected=f"{x.shape[0]} values",
                              found=f"shape {list(values.shape)}")
        statistics.append(values.reshape(-1))
    weight, bias, mean, var = statistics
    attrs = {}
    eps = _number(conv.attr(node, "epsilon", 1e-5))
    # ONNX's momentum weighs the running statistics, graphnet's (PyTorch's) the batch
    momentum = round(1.0 - _number(conv.attr(node, "momentum", 0.9)), 6)
    if eps != 1e-5:
        attrs["eps"] = eps
    if momentum != 0.1:
        attrs["momentum"] = momentum
    conv.emit(node, "batch_norm", [x], attrs, {"weight": weight, "bias": bias,
                                               "running_mean": mean, "running_var": var},
              shape=x.shape)


@converts("Gemm")
def gemm(conv: Converter, node):
    x = conv.tensor(node, 0, takes=("order",))
    if conv.attr(node, "transA", 0):
        raise conv.refuse("Gemm with transA = 1 is not imported: the batch must be the first "
                          "axis of the input", field="transA", expected="0", found="1")
    if len(x.shape) != 1:
        raise conv.refuse("Gemm needs one vector per sample", field="input 1",
                          found=str(list(x.shape)))
    matrix = conv.constant(node, 1)
    weight = (matrix if conv.attr(node, "transB", 0) else matrix.T) * conv.attr(node, "alpha", 1.0)
    weight = _in_feature_order(x, weight)
    units = weight.shape[0]
    bias = conv.constant(node, 2, optional=True)
    params = {"weight": weight}
    if bias is not None:
        params["bias"] = _bias_vector(conv, bias * conv.attr(node, "beta", 1.0), units, "input 3")
    conv.emit(node, "dense", [x], {"units": int(units)} | ({} if bias is not None else
                                                          {"bias": False}), params,
              shape=(int(units),))


@converts("MatMul")
def matmul(conv: Converter, node):
    x = conv.tensor(node, 0, takes=("order",))
    matrix = conv.constant(node, 1)
    if len(x.shape) != 1 or matrix.ndim != 2 or matrix.shape[0] != x.shape[0]:
        raise conv.refuse("MatMul is imported as a dense layer (a vector per sample times a "
                          "constant matrix) only", field="input 2",
                          found=f"{list(x.shape)} per sample times {list(matrix.shape)}")
    units = int(matrix.shape[1])
    conv.emit(node, "dense", [x], {"units": units, "bias": False},
              {"weight": _in_feature_order(x, matrix.T)}, shape=(units,))


def _in_feature_order(x: Tensor, weight):
    """A dense layer's (units, features) weight for the features as graphnet flattens them,
    when a Transpose before the flatten ordered them otherwise (``Tensor.held``)."""
    order = x.holds("order")
    if order is None:
        return weight
    reordered = np.empty_like(weight)
    reordered[:, order] = weight  # feature i of the transposed order is feature order[i]
    return reordered


def _bias_vector(conv: Converter, bias, units: int, field: str):
    bias = np.asarray(bias)
    if bias.size not in (1, units) or (bias.ndim == 2 and bias.shape[0] != 1) or bias.ndim > 2:
        raise conv.refuse("a bias must hold one value per unit", field=field,
                          expected=f"shape [{units}] or [1, {units}]", found=str(list(bias.shape)))
    return np.broadcast_to(bias.reshape(-1), (units,)).copy()


# --- merges -------------------------------------------------------------------------------------
@converts("Add", "Sub", "Mul", "Div")
def sum_or_affine(conv: Converter, node):
    """A residual sum; or a value and a constant (two constants are folded): adding zero or
    multiplying by one is the value itself, any other constant goes into a layer's weights and
    bias (:func:`_fold_affine_into_producer`, :func:`_hold_affine_for_reader`)."""
    names = list(node.input)
    if not any(name in conv.constants for name in names):
        if node.op_type != "Add":
            raise conv.refuse(f"{node.op_type} of two values computed by the network is not "
                              "imported: graphnet has no op for it", field="inputs")
        _residual_sum(conv, node)
        return
    position = 0 if names[0] in conv.values else 1
    if position == 1 and node.op_type in ("Sub", "Div"):
        raise conv.refuse(f"a constant {'minus' if node.op_type == 'Sub' else 'over'} a value "
                          "computed by the network is not imported: graphnet has no op for it",
                          field="inputs", found=f"constant {names[0]!r} first")
    constant = np.asarray(conv.constant(node, 1 - position))  # refused: the batch size
    value = conv.tensor(node, position, takes=tuple(HELD_FOR))
    if position == 0:
        constant = _aligned_as_from_opset_7(conv, node, constant, rank=len(value.shape) + 1)
    full = (1, *value.shape)
    fits = constant.ndim <= len(full) and all(
        size in (1, whole) for size, whole in zip(constant.shape[::-1], full[::-1]))
    if fits and np.all(constant == (0 if node.op_type in ("Add", "Sub") else 1)):
        conv.alias(node, value)  # x + 0, x · 1 (Keras' Rescaling writes its offset of 0)
        return
    x = conv.tensor(node, position, takes=("affine",))
    constant = _per_channel(conv, constant, x, f"{node.op_type} of a constant")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        value_of = {"Add": constant, "Sub": -constant, "Mul": constant, "Div": 1 / constant}
    if not np.all(np.isfinite(value_of[node.op_type])):
        what = "a Div by a constant holding a zero" if node.op_type == "Div" and \
            not constant.all() else f"{node.op_type} of a constant that is not finite"
        raise conv.refuse(f"{what} is not imported: it would make the layer's weights "
                          "infinite or NaN", field=f"input {2 - position}",
                          expected="finite values" + (", none zero" if node.op_type == "Div"
                                                      else ""),
                          found=f"{names[1 - position]!r}, holding "
                                f"{int(np.sum(~np.isfinite(value_of[node.op_type])))} "
                                + ("zero(s)" if "zero" in what else "value(s) not finite"))
    constant = value_of[node.op_type]
    factor, term = (None, constant) if node.op_type in ("Add", "Sub") else (constant, None)
    entry = x.entry or {}
    if x.held is None and entry.get("op") in ("conv2d", "dense") and conv.readers_of_value(x) == 1:
        _fold_affine_into_producer(conv, node, x, factor=factor, term=term)
    else:
        _hold_affine_for_reader(conv, node, x, factor=factor, term=term)


@converts("Sum")
def sum_of_values(conv: Converter, node):
    """A residual sum of two or more values (an old exporter's, Caffe2's); of one, the value."""
    if len(node.input) == 1:
        conv.alias(node, conv.tensor(node, 0))
    else:
        _residual_sum(conv, node)


def _residual_sum(conv: Converter, node):
    """graphnet's add of ``node``'s inputs, values of one shape computed by the network."""
    tensors = [conv.tensor(node, position) for position in range(len(node.input))]
    if len({tensor.shape for tensor in tensors}) > 1:
        raise conv.refuse(f"{node.op_type} is imported for values of one shape (a residual "
                          "sum) only: graphnet's add does not broadcast", field="inputs",
                          found=" and ".join(str(list(tensor.shape)) for tensor in tensors))
    conv.emit(node, "add", tensors, shape=tensors[0].shape)


def _aligned_as_from_opset_7(conv: Converter, node, constant, *, rank: int):
    """Before opset 7 an Add, Sub, Mul or Div with ``broadcast = 1`` and an ``axis`` lines its
    second input's axes up with the first's from that axis on (Caffe2's per-channel (C,) at
    axis 1), where later opsets line them up from the last: ``constant`` with the trailing
    ones that make the later rule read it alike."""
    axis = conv.attr(node, "axis")
    if conv.opset >= 7 or not conv.attr(node, "broadcast", 0) or axis is None:
        return constant
    trailing = rank - conv.axis(node, axis, rank) - constant.ndim
    return constant.reshape(*constant.shape, *[1] * trailing)


def _fold_affine_into_producer(conv: Converter, node, x: Tensor, *, factor=None, term=None):
    """``x · factor`` or ``x + term`` (one value per channel), where ``x`` is the output of a
    Conv or Gemm that nothing else reads and holds nothing: taken into that layer's weights
    and bias, and ``node``'s output is ``x``."""
    entry = x.entry
    params = conv.params[entry["name"]]
    if factor is not None:
        params["weight"] = params["weight"] * factor.reshape(
            -1, *[1] * (params["weight"].ndim - 1))
        if "bias" in params:
            params["bias"] = params["bias"] * factor
    else:
        params["bias"] = params.get("bias", 0) + term
        entry.pop("bias", None)  # bias = true is the default
    conv.alias(node, x)


def _hold_affine_for_reader(conv: Converter, node, x: Tensor, *, factor=None, term=None):
    """``x · factor`` or ``x + term`` (one value per channel) that no layer before it can take:
    held on the value (an image's; composed with an affine it already holds) for the Conv
    reading it to take into its weights and bias (:func:`_take_affine`)."""
    entry = x.entry or {}
    if len(x.shape) != 3:
        raise conv.refuse(f"{node.op_type} of a constant is imported only into the weights and "
                          "bias of the Conv, Gemm or MatMul right before it when nothing else "
                          "reads that layer's output, or of a Conv reading it (graphnet has no "
                          "op for it)", field="inputs",
                          found=f"a value of shape {list(x.shape)} from "
                                f"{entry.get('op') or 'an input'}")
    scale, shift = x.holds("affine") or (np.ones(x.shape[0]), np.zeros(x.shape[0]))
    if factor is not None:
        scale, shift = scale * factor, shift * factor
    else:
        shift = shift + term
    conv.hold(node, x, x.shape, "affine", (scale, shift))


def _per_channel(conv: Converter, constant, x: Tensor, what: str):
    """A constant broadcast over ``x`` one value per channel (or one value): a vector of them."""
    constant = np.asarray(constant)
    channels, rest = x.shape[0], x.shape[1:]
    expected = (channels, *[1] * len(rest))
    constant = constant.astype(np.float64)
    if constant.ndim > len(expected) + 1:  # it would broadcast the value to a higher rank
        raise conv.refuse(f"{what} must be one value, or one per channel, of at most the "
                          "value's rank: a higher rank broadcasts it to another shape",
                          field="inputs", expected=f"at most rank {len(expected) + 1}",
                          found=f"rank {constant.ndim}, shape {list(constant.shape)}")
    if constant.size == 1:
        return np.full(channels, constant.reshape(-1)[0])
    if constant.ndim >= len(expected) and constant.shape[-len(expected):] == expected \
            and constant.size == channels:
        return constant.reshape(-1)
    raise conv.refuse(f"{what} must be one value, or one per channel", field="inputs",
                      expected=f"shape {list(expected)}", found=str(list(constant.shape)))


@converts("Transpose")
def transpose(conv: Converter, node):
    """Held on the value for a flatten to take (Keras' Flatten of a channels-last image)."""
    x = conv.tensor(node, 0)
    perm = conv.permutation(node, len(x.shape) + 1)
    if perm[0] != 0:
        raise conv.refuse("a Transpose is imported only when it keeps the batch axis first",
                          field="perm", expected="perm[0] = 0", found=str(perm))
    conv.hold(node, x, tuple(x.shape[axis - 1] for axis in perm[1:]), "transpose",
              (perm, x.shape))


@converts("Concat")
def concat(conv: Converter, node):
    tensors = [conv.tensor(node, i) for i in range(len(node.input))]
    rank = len(tensors[0].shape) + 1
    axis = int(conv.attr(node, "axis"))
    if conv.axis(node, axis, rank) != 1:
        raise conv.refuse("Concat is imported along the channel axis (1) only", field="axis",
                          expected="1", found=str(axis))
    if len(tensors) == 1:
        conv.alias(node, tensors[0])  # graphnet's concat joins two or more
        return
    channels = sum(t.shape[0] for t in tensors)
    conv.emit(node, "concat", tensors, shape=(channels, *tensors[0].shape[1:]))


# --- activations --------------------------------------------------------------------------------
@converts("Relu", "Sigmoid", "Tanh")
def elementwise(conv: Converter, node):
    x = conv.tensor(node, 0)
    conv.emit(node, node.op_type.lower(), [x], shape=x.shape)


@converts("LeakyRelu")
def leaky_relu(conv: Converter, node):
    x = conv.tensor(node, 0)
    slope = _number(conv.attr(node, "alpha", 0.01))
    conv.emit(node, "leaky_relu", [x], {} if slope == 0.01 else {"slope": slope}, shape=x.shape)


@converts("Clip")
def clip(conv: Converter, node):
    x = conv.tensor(node, 0)
    if conv.opset >= 11:
        low, high = (conv.constant(node, i, optional=True) for i in (1, 2))
        low = None if low is None else float(np.ravel(low)[0])
        high = None if high is None else float(np.ravel(high)[0])
    else:
        low, high = conv.attr(node, "min"), conv.attr(node, "max")
    finite = np.finfo(np.float32).max
    low = None if low is None or low <= -finite else _number(low)
    high = None if high is None or high >= finite else _number(high)
    if low is None and high is None:
        conv.alias(node, x)  # no bounds (ONNX's defaults): the value itself
    elif low == 0 and high is None:
        conv.emit(node, "relu", [x], shape=x.shape)
    elif low == 0 and high == 6 and conv.has_op("relu6"):
        conv.emit(node, "relu6", [x], shape=x.shape)
    elif conv.has_op("clip"):
        bounds = {key: value for key, value in (("min", low), ("max", high)) if value is not None}
        for key, value in bounds.items():
            conv.require_attribute("clip", key, value, f"Clip's {key}")
        conv.emit(node, "clip", [x], bounds, shape=x.shape)
    else:
        raise conv.refuse("Clip needs graphnet's clip (or relu6) op, which this graphnet lacks",
                          field="min/max", found=f"min {low}, max {high}")


@converts("Softmax")
def softmax(conv: Converter, node):
    x = conv.tensor(node, 0)
    rank = len(x.shape) + 1
    axis = conv.axis(node, int(conv.attr(node, "axis", 1 if conv.opset < 13 else -1)), rank)
    if conv.opset < 13 and axis != 0:
        # before opset 13 Softmax normalises the axes from `axis` on together, flattened: over
        # one axis where the others have size 1 (Caffe2's SqueezeNet: N×1000×1×1, axis 1)
        sizes = dict(enumerate(x.shape, start=1))
        wider = [other for other in range(axis, rank) if sizes[other] != 1]
        if len(wider) > 1:
            raise conv.refuse("Softmax before opset 13 normalises the axes from its axis on "
                              "together: imported where at most one of them is longer than 1",
                              field="axis", expected=f"{rank - 1} (the last)",
                              found=f"{axis}, over a sample of shape {list(x.shape)}")
        axis = wider[0] if wider else rank - 1
    if axis == 0:
        raise conv.refuse("Softmax over the batch axis is not imported", field="axis",
                          found="0")
    attrs = {}
    if axis != 1:
        per_sample = -1 if axis == rank - 1 else axis - 1
        conv.require_attribute("softmax", "axis", per_sample, f"Softmax over axis {axis}")
        attrs["axis"] = per_sample
    conv.emit(node, "softmax", [x], attrs, shape=x.shape)
