"""Graph → PyTorch: the source of an ``nn.Module`` a user can keep, and a loader for it.

:func:`to_source` writes a Python module (text; PyTorch need not be installed) holding one
``nn.Module`` class: the layers built in ``__init__``, ``forward()`` computing every node in the
graph's topological order, branches and merges included, and returning the graph's outputs by
name. Inputs that some output does not need (class labels, which only the loss reads) default to
None, and the nodes that need them are skipped when they are missing. The file also holds
``GRAPHNET_PARAMETERS`` ("node/param" → state-dict name) and ``load_graphnet_params(module,
flat)``, which copies a graphnet checkpoint's arrays in.

:func:`build` execs that text — only ever the text :func:`to_source` has just produced, never a
file — and returns the module, with a network's parameters copied in.

Translations: each built-in op has one in ``TRANSLATORS`` (used only for ops the built-in
plugins registered). Any op, a user's too, can carry its own by defining
``torch_translation(self, node: ExportNode) -> Translation`` on its class; it wins over the
table. An op with neither raises :class:`graphnet.export.ExportError` naming the node and op.
"""
from __future__ import annotations

import builtins
import keyword
import linecache
import math
import re
import types
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Callable

import numpy as np

from .. import __version__
from ..analysis import required_inputs
from . import ExportError

TARGET = "torch"


@dataclass(frozen=True)
class ExportNode:
    """What a translation sees of one node."""

    name: str
    """The node's name in the spec."""
    ident: str
    """Its Python identifier: the module attribute (``self.<ident>``) and the local variable."""
    attrs: SimpleNamespace
    inputs: tuple[str, ...]
    """The identifiers holding the node's input values, in order."""
    input_shapes: tuple[tuple, ...]
    """Per-sample input shapes (no batch axis)."""
    output_shape: tuple
    param_names: tuple[str, ...]

    @property
    def module(self) -> str:
        """The expression naming this node's layer: ``self.<ident>``."""
        return f"self.{self.ident}"


@dataclass(frozen=True)
class Translation:
    """How one node reads in PyTorch.

    ``expression`` computes the node's value from ``node.inputs`` (it may call ``node.module``);
    ``module`` constructs that layer in ``__init__`` (None if the node has none); ``params``
    maps each graphnet parameter name to its state-dict name under the layer (by default the
    same name: conv, linear and batch norm use graphnet's names and layouts).
    """

    expression: str
    module: str | None = None
    params: dict[str, str] = field(default_factory=dict)


# --- the built-in ops ------------------------------------------------------------------------
def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def window_pads(input_hw, kernel, stride, dilation, padding) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) as graphnet's sliding windows resolve them: "same" as in
    TensorFlow (output = ceil(input / stride), the odd row or column after), else symmetric."""
    # the ops' own geometry (a built-in plugins module) until conv and pooling own their exports
    from graphnet_plugins._window import SlidingWindow
    return SlidingWindow.resolve(input_hw, kernel, stride=stride, padding=padding,
                                 dilation=dilation).pads


def _padded_input(node: ExportNode, kernel, stride, dilation, fill: str | None = None):
    """(input expression, symmetric padding or None): asymmetric padding becomes an F.pad."""
    attrs = node.attrs
    padding = attrs.padding if isinstance(attrs.padding, str) else _pair(attrs.padding)
    top, bottom, left, right = window_pads(node.input_shapes[0][1:], kernel, stride, dilation,
                                           padding)
    if top == bottom and left == right:
        return node.inputs[0], ((top, left) if top or left else None)
    value = "" if fill is None else f", value={fill}"
    return f"F.pad({node.inputs[0]}, {(left, right, top, bottom)}{value})", None


def _keywords(**options) -> str:
    return "".join(f", {name}={value!r}" for name, value in options.items() if value is not None)


def _conv2d(node: ExportNode) -> Translation:
    attrs = node.attrs
    kernel, stride, dilation = _pair(attrs.kernel), _pair(attrs.stride), _pair(attrs.dilation)
    source, padding = _padded_input(node, kernel, stride, dilation)
    options = _keywords(stride=stride if stride != (1, 1) else None, padding=padding,
                        dilation=dilation if dilation != (1, 1) else None,
                        groups=attrs.groups if attrs.groups != 1 else None,
                        bias=False if not attrs.bias else None)
    return Translation(f"{node.module}({source})", f"nn.Conv2d({node.input_shapes[0][0]}, "
                       f"{attrs.filters}, kernel_size={kernel}{options})")


def _pool(layer: str, fill: str | None):
    def translate(node: ExportNode) -> Translation:
        kernel = _pair(node.attrs.kernel)
        stride = kernel if node.attrs.stride is None else _pair(node.attrs.stride)
        source, padding = _padded_input(node, kernel, stride, (1, 1), fill)
        options = _keywords(stride=stride if stride != kernel else None, padding=padding)
        return Translation(f"{node.module}({source})", f"nn.{layer}(kernel_size={kernel}{options})")
    return translate


def _global_avg_pool(node: ExportNode) -> Translation:
    return Translation(f"torch.flatten({node.module}({node.inputs[0]}), 1)",
                       "nn.AdaptiveAvgPool2d(1)")


def _layer(constructor: Callable[[SimpleNamespace], str]):
    """A node that is one layer applied to its one input."""
    def translate(node: ExportNode) -> Translation:
        return Translation(f"{node.module}({node.inputs[0]})", constructor(node.attrs))
    return translate


def _dense(node: ExportNode) -> Translation:
    features = math.prod(node.input_shapes[0])
    source = node.inputs[0]
    if len(node.input_shapes[0]) != 1:  # graphnet's dense flattens each sample first
        source = f"torch.flatten({source}, 1)"
    bias = "" if node.attrs.bias else ", bias=False"
    return Translation(f"{node.module}({source})",
                       f"nn.Linear({features}, {node.attrs.units}{bias})")


def _batch_norm(node: ExportNode) -> Translation:
    rank = len(node.input_shapes[0])
    layer = "BatchNorm1d" if rank == 1 else "BatchNorm2d"
    return Translation(f"{node.module}({node.inputs[0]})",
                       f"nn.{layer}({node.input_shapes[0][0]}, eps={node.attrs.eps!r}, "
                       f"momentum={node.attrs.momentum!r})")


def _add(node: ExportNode) -> Translation:
    return Translation(" + ".join(node.inputs))


def _concat(node: ExportNode) -> Translation:
    return Translation(f"torch.cat([{', '.join(node.inputs)}], dim=1)")


def _mse_loss(node: ExportNode) -> Translation:
    output, target = node.inputs
    # graphnet's: ½·Σ(output − target)² per sample, averaged over the batch
    return Translation(f"0.5 * F.mse_loss({output}, {target}, reduction='sum') / {output}.shape[0]")


def _softmax_cross_entropy(node: ExportNode) -> Translation:
    logits, labels = node.inputs
    return Translation(f"{node.module}({logits}, {labels})", "nn.CrossEntropyLoss()")


TRANSLATORS: dict[str, Callable[[ExportNode], Translation]] = {
    "conv2d": _conv2d,
    "max_pool2d": _pool("MaxPool2d", "float('-inf')"),
    "avg_pool2d": _pool("AvgPool2d", None),
    "global_avg_pool": _global_avg_pool,
    "relu": _layer(lambda attrs: "nn.ReLU()"),
    "leaky_relu": _layer(lambda attrs: f"nn.LeakyReLU({attrs.slope!r})"),
    "sigmoid": _layer(lambda attrs: "nn.Sigmoid()"),
    "tanh": _layer(lambda attrs: "nn.Tanh()"),
    "softmax": _layer(lambda attrs: "nn.Softmax(dim=1)"),
    "flatten": _layer(lambda attrs: "nn.Flatten()"),
    "dense": _dense,
    "dropout": _layer(lambda attrs: f"nn.Dropout({attrs.rate!r})"),
    "batch_norm": _batch_norm,
    "add": _add,
    "concat": _concat,
    "mse_loss": _mse_loss,
    "softmax_cross_entropy": _softmax_cross_entropy,
}
"""Translations of the built-in ops, by op name (used only for the built-in plugins' ops)."""

BUILTIN_PLUGIN_PREFIX = "builtin:"


# --- names -----------------------------------------------------------------------------------
MODULE_GLOBALS = ("torch", "nn", "F", "GRAPHNET_PARAMETERS", "load_graphnet_params", "outputs")
NN_MODULE_MEMBERS = frozenset((
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children",
    "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward",
    "get_buffer", "get_extra_state", "get_parameter", "get_submodule", "half", "ipu",
    "load_state_dict", "modules", "mtia", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook", "register_module", "register_parameter",
    "register_state_dict_post_hook", "register_state_dict_pre_hook", "requires_grad_",
    "set_extra_state", "set_submodule", "share_memory", "state_dict", "to", "to_empty", "train",
    "training", "type", "xpu", "zero_grad"))
"""``nn.Module``'s public members (PyTorch 2.x): a layer attribute must not shadow one."""
RESERVED = (frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))
            | frozenset(MODULE_GLOBALS) | NN_MODULE_MEMBERS | {"self"})


def identifiers(names) -> dict[str, str]:
    """A distinct, safe Python identifier per name (ASCII; spec names may hold anything)."""
    taken: set[str] = set()
    result = {}
    for name in names:
        base = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_") or "node"
        if base[0].isdigit():
            base = f"n{base}"
        if base in RESERVED or base.startswith("_"):
            base += "_"
        ident, count = base, 1
        while ident in taken:
            count += 1
            ident = f"{base}_{count}"
        taken.add(ident)
        result[name] = ident
    return result


def class_name(graph) -> str:
    words = re.findall(r"[0-9A-Za-z]+", graph.name or "")
    text = "".join(word[:1].upper() + word[1:] for word in words) or "Network"
    return text if text[0].isalpha() and text not in RESERVED else f"Net{text}"


# --- source ----------------------------------------------------------------------------------
@dataclass
class _Plan:
    """Everything the source is written from: identifiers and each node's translation."""

    idents: dict[str, str]
    translations: dict[str, Translation]
    required_inputs: list[str]
    optional_inputs: list[str]
    needs_optional: dict[str, list[str]]
    param_map: dict[str, str]


def _translate(graph, node, export_node: ExportNode) -> Translation:
    own = getattr(node.op, "torch_translation", None)
    if callable(own):
        translation = own(export_node)
    elif node.plugin and node.plugin.startswith(BUILTIN_PLUGIN_PREFIX) \
            and node.op_name in TRANSLATORS:
        translation = TRANSLATORS[node.op_name](export_node)
    else:
        raise ExportError(f"op {node.op_name!r} has no PyTorch translation", file=graph.file,
                          node=node.name, field="op", found=f"{node.op_name!r} from plugin "
                          f"{node.plugin!r}", hint="give its class a torch_translation(node) "
                          "method (see graphnet.export.torch)")
    if not isinstance(translation, Translation):
        raise ExportError(f"torch_translation of op {node.op_name!r} returned "
                          f"{type(translation).__name__}", file=graph.file, node=node.name,
                          expected="a graphnet.export.torch.Translation")
    if node.param_specs and translation.module is None and not translation.params:
        raise ExportError(f"the translation of op {node.op_name!r} has parameters but no layer "
                          "to hold them", file=graph.file, node=node.name)
    return translation


def plan(graph) -> _Plan:
    idents = identifiers(graph.order)
    translations, param_map = {}, {}
    for node in graph.op_nodes:
        export_node = ExportNode(
            name=node.name, ident=idents[node.name], attrs=node.attrs,
            inputs=tuple(idents[source] for source in node.inputs),
            input_shapes=tuple(graph.nodes[source].shape for source in node.inputs),
            output_shape=node.shape, param_names=tuple(node.param_specs))
        translation = _translate(graph, node, export_node)
        translations[node.name] = translation
        for param in node.param_specs:
            param_map[f"{node.name}/{param}"] = (
                f"{idents[node.name]}.{translation.params.get(param, param)}")
    needs = required_inputs(graph)
    needs_optional = {name: [n for n in needs["optional"] if n in needs["by_node"][name]]
                      for name in graph.order}
    return _Plan(idents, translations, needs["inputs"], needs["optional"], needs_optional,
                 param_map)


def to_source(graph) -> str:
    """The Python source of a PyTorch module computing ``graph`` (see the module docstring)."""
    p = plan(graph)
    idents = p.idents
    name = class_name(graph)
    lines = [
        f'"""PyTorch translation of the graphnet spec "{_plain(graph.name)}".',
        "",
        f"Generated by graphnet {__version__} (graphnet export --to torch). Parameters are",
        "created by PyTorch's initialisers; load_graphnet_params() copies a graphnet network's",
        "or checkpoint's in (weights are in PyTorch's layout already).",
        '"""',
        "import torch",
        "import torch.nn.functional as F",
        "from torch import nn",
        "",
        "GRAPHNET_PARAMETERS = {",
        *(f"    {key!r}: {value!r}," for key, value in p.param_map.items()),
        "}",
        '"""graphnet parameter ("node/param") → state-dict name."""',
        "",
        "",
        f"class {name}(nn.Module):",
        f"    {_docstring(graph.spec.description or graph.name)}",
        "",
        "    def __init__(self):",
        "        super().__init__()",
    ]
    for node in graph.op_nodes:
        module = p.translations[node.name].module
        if module is not None:
            lines.append(f"        self.{idents[node.name]} = {module}")
    for node in graph.op_nodes:
        if not node.trainable and p.translations[node.name].module is not None:
            lines.append(f"        self.{idents[node.name]}.requires_grad_(False)  # frozen")
    signature = [idents[n] for n in p.required_inputs] + [f"{idents[n]}=None"
                                                         for n in p.optional_inputs]
    lines += ["", f"    def forward(self, {', '.join(signature)}):"]
    for node in graph.op_nodes:
        expression = p.translations[node.name].expression
        optional = p.needs_optional[node.name]
        if optional:
            present = " and ".join(f"{idents[n]} is not None" for n in optional)
            if " if " in expression or "lambda" in expression:
                expression = f"({expression})"
            expression = f"{expression} if {present} else None"
        lines.append(f"        {idents[node.name]} = {expression}")
    result = ", ".join(f"{output!r}: {idents[target]}" for output, target in graph.outputs.items())
    if p.optional_inputs:
        lines += [f"        outputs = {{{result}}}",
                  "        return {name: value for name, value in outputs.items() "
                  "if value is not None}"]
    else:
        lines.append(f"        return {{{result}}}")
    lines += [
        "",
        "",
        "def load_graphnet_params(module, flat):",
        '    """Copy graphnet parameters ("node/param" → array, as in a checkpoint) into module."""',
        "    state = module.state_dict()",
        "    with torch.no_grad():",
        "        for key, name in GRAPHNET_PARAMETERS.items():",
        "            state[name].copy_(torch.as_tensor(flat[key]))",
        "",
    ]
    return "\n".join(lines)


def _plain(text: str) -> str:
    """``text`` safe inside a docstring: no quotes, backslashes or control characters."""
    return "".join(c if c.isprintable() and c not in "\"\\" else "?" for c in text)


def _docstring(text: str) -> str:
    """A string literal for ``text``: triple-quoted when that is safe, else its repr."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return f'"""{text}"""'
    return repr(text)


# --- loading (needs PyTorch) -----------------------------------------------------------------
def require_torch():
    """The torch module, or an ExportError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ExportError("PyTorch is not installed", expected="the torch package",
                          hint="pip install 'graphnet[torch]'") from None
    return torch


@dataclass
class TorchModel:
    """A generated module, loaded: the instance and what maps it to the graph."""

    module: object
    source: str
    param_map: dict[str, str]
    """graphnet "node/param" → state-dict name."""
    input_names: list[str]
    """The graph inputs forward() takes, in its order."""
    idents: dict[str, str]
    """Node name → the layer's attribute (and forward's variable) name."""


def build(graph, network=None, *, dtype=None) -> TorchModel:
    """Generate the source for ``graph``, exec it and instantiate the module.

    Only the text :func:`to_source` has just returned is executed. With a
    :class:`graphnet.engine.Network`, its parameters (and dtype) are copied in.
    """
    torch = require_torch()
    source = to_source(graph)
    p = plan(graph)
    filename = f"<graphnet export of {class_name(graph)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = types.ModuleType(f"graphnet_export_{class_name(graph).lower()}")
    namespace.__file__ = filename
    exec(compile(source, filename, "exec"), namespace.__dict__)  # our own text, never a file
    try:
        module = getattr(namespace, class_name(graph))()
    except Exception as error:  # a user's translation that builds a bad layer
        raise ExportError(f"the generated PyTorch module failed to build: "
                          f"{type(error).__name__}: {error}", file=graph.file) from error
    if dtype is None and network is not None:
        dtype = network.dtype
    if dtype is not None:
        module = module.to(getattr(torch, np.dtype(dtype).name))
    if network is not None:
        namespace.load_graphnet_params(module, network.flat_params())
    return TorchModel(module, source, p.param_map, p.required_inputs + p.optional_inputs,
                      p.idents)


def tensors(model: TorchModel, feeds: dict, dtype) -> list:
    """forward()'s arguments from a graphnet feed dict: floats in ``dtype``, integers as int64."""
    torch = require_torch()
    args = []
    for name in model.input_names:
        array = np.asarray(feeds[name])
        array = array.astype(dtype if array.dtype.kind == "f" else np.int64, copy=False)
        args.append(torch.from_numpy(np.ascontiguousarray(array)))
    return args
