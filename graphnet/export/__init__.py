"""Translations of a graph into other frameworks' source code.

:mod:`graphnet.export.torch` writes a PyTorch ``nn.Module`` (``graphnet export SPEC --to torch``).
A translation produces plain text and needs nothing but graphnet; loading the generated text
needs the framework itself.

Each op describes itself through a method of the op contract (``Op.to_torch``, returning a
:class:`graphnet.op.TorchLayer`); an exporter only assembles those descriptions into a
module: identifiers, source text, parameter names. A further target is one more such pair: a
sibling method on the op and an assembler module here.
"""
from __future__ import annotations

from ..errors import UsageError


class ExportError(UsageError):
    """A graph that cannot be translated: an op with no translation, or a framework missing."""
