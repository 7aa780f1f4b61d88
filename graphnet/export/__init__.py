"""Translations of a graph into other frameworks' formats.

:mod:`graphnet.export.torch` writes a PyTorch ``nn.Module`` (``graphnet export SPEC --to
torch``): plain text that needs nothing but graphnet; loading it needs PyTorch.
:mod:`graphnet.export.onnx` writes a network's inference graph with its parameters as an ONNX
model (``--to onnx``, ``graphnet.export_onnx``); it needs the ``onnx`` extra.

Each op describes itself through a method of the op contract (``Op.to_torch``, returning a
:class:`graphnet.op.TorchLayer`; ``Op.to_onnx``, adding nodes to the exporter's builder); an
exporter only assembles those descriptions: identifiers, source text or graph, parameter
names. A further target is one more such pair: a sibling method on the op and an assembler
module here.
"""
from __future__ import annotations

import importlib

from ..errors import UsageError, plugin_failure
from ..op import Op
from ..text import install_hint


class ExportError(UsageError):
    """A graph that cannot be translated: an op with no translation, or a framework missing."""


def require(module: str, what: str, extra: str):
    """Import ``module`` (an optional dependency), or raise an ExportError naming ``what`` is
    missing and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"{what} is not installed", expected=f"the {module} package",
                          hint=install_hint(extra)) from None


def translate(graph, node, method: str, framework: str, argument):
    """What the op of ``node`` says it is in another framework: its ``method`` (``to_torch``,
    ``to_onnx``) called with the input shapes, attributes and ``argument``. An op without
    that method, or whose method raises, is an error naming the node and the op."""
    if getattr(type(node.op), method) is getattr(Op, method):
        raise ExportError(f"op {node.op_name!r} has no {framework} translation",
                          file=graph.file, node=node.name, field="op",
                          found=f"{node.op_name!r} from plugin {node.plugin!r}",
                          hint=f"give its class a {method}(input_shapes, attrs, ...) method "
                               f"(see graphnet.op.Op.{method})")
    input_shapes = graph.input_shapes(node.name)
    try:
        return getattr(node.op, method)(input_shapes, node.attrs, argument)
    except Exception as error:  # a plugin's bug: named, never a traceback
        raise plugin_failure(error, f"{method} of op {node.op_name!r} (plugin {node.plugin!r}) "
                             "failed", located={"file": graph.file, "node": node.name},
                             file=graph.file, node=node.name) from error
