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

from ..errors import UsageError


class ExportError(UsageError):
    """A graph that cannot be translated: an op with no translation, or a framework missing."""
