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

Each op describes itself: :meth:`graphnet.op.Op.to_torch` returns a
:class:`graphnet.op.TorchLayer` (the layer to build and the expression computing the node), for
the built-in ops exactly as for a user's. This module only assembles: identifiers, the module's
source, the parameter map. An op without ``to_torch`` raises
:class:`graphnet.export.ExportError` naming the node and op.
"""
from __future__ import annotations

import builtins
import keyword
import linecache
import re
import types
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..analysis import required_inputs
from ..op import TorchLayer, TorchNames
from . import ExportError, require, translate

TARGET = "torch"


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
    translations: dict[str, TorchLayer]
    required_inputs: list[str]
    optional_inputs: list[str]
    needs_optional: dict[str, list[str]]
    param_map: dict[str, str]


def _translate(graph, node, names: TorchNames) -> TorchLayer:
    layer = translate(graph, node, "to_torch", "PyTorch", names)
    if not isinstance(layer, TorchLayer):
        raise ExportError(f"to_torch of op {node.op_name!r} returned {type(layer).__name__}",
                          file=graph.file, node=node.name,
                          expected="a graphnet.op.TorchLayer")
    if node.param_specs and layer.module is None and not layer.params:
        raise ExportError(f"the translation of op {node.op_name!r} has parameters but no layer "
                          "to hold them", file=graph.file, node=node.name)
    return layer


def plan(graph) -> _Plan:
    idents = identifiers(graph.order)
    translations, param_map = {}, {}
    for node in graph.op_nodes:
        names = TorchNames(inputs=tuple(idents[source] for source in node.inputs),
                           layer=f"self.{idents[node.name]}")
        translation = _translate(graph, node, names)
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
    return require("torch", "PyTorch", "torch")


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
