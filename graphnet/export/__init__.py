"""Translations of a graph into other frameworks' source code.

:mod:`graphnet.export.torch` writes a PyTorch ``nn.Module`` (``graphnet export SPEC --to torch``).
A translation produces plain text and needs nothing but graphnet; loading the generated text
needs the framework itself.
"""
from __future__ import annotations

from ..errors import UsageError


class ExportError(UsageError):
    """A graph that cannot be translated: an op with no translation, or a framework missing."""
