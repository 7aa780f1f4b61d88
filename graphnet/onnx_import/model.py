"""Reading an ONNX file: onnx's own loader (external data from the model's folder) and checker,
the default-domain opset, and static shapes from onnx's shape inference.

A file that is not a model, is truncated or fails the checker is one :class:`SpecError` naming
the file; ``onnx`` itself is imported here, only when a model is read.
"""
from __future__ import annotations

import stat
from pathlib import Path

from ..errors import SpecError
from ..text import install_hint

DEFAULT_DOMAINS = ("", "ai.onnx")
"""The domains of ONNX's standard operators (custom domains are refused op by op)."""


def require_onnx():
    """The ``onnx`` module, or an error saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise SpecError("reading ONNX models needs the onnx package",
                        hint=install_hint("onnx")) from None
    return onnx


def read_model(path):
    """The checked ``ModelProto`` of ``path`` (or ``path`` itself when it is a ``ModelProto``),
    its external data loaded, shapes inferred."""
    onnx = require_onnx()
    if isinstance(path, onnx.ModelProto):
        return _checked(onnx, path, model_label(path))
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise SpecError("ONNX model not found", file=path) from None
    except OSError as error:
        raise SpecError(f"cannot read ONNX model: {error.strerror}", file=path) from None
    if not stat.S_ISREG(status.st_mode):
        raise SpecError("ONNX model path is not a regular file", file=path, expected="a file")
    try:
        # load_external_data reads MODEL.onnx.data (or whatever the tensors name) beside the file
        model = onnx.load(str(path), load_external_data=True)
    except Exception as error:  # DecodeError, a missing data file, …: onnx raises many kinds
        raise SpecError("not a readable ONNX model (truncated or corrupt?)", file=path,
                        found=_reason(error)) from None
    return _checked(onnx, model, path)


def model_label(model) -> str:
    """How messages name a model given as a ``ModelProto`` rather than a file."""
    return f"<ONNX model {model.graph.name or 'without a name'}>"


def _checked(onnx, model, path):
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # onnx.checker.ValidationError and kin
        raise SpecError("the ONNX model fails onnx's checker", file=path,
                        found=_reason(error)) from None
    if not model.HasField("graph") or not model.graph.node:
        raise SpecError("the ONNX model has no graph", file=path,
                        expected="a model with nodes (truncated file?)")
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception as error:
        raise SpecError("onnx's shape inference failed on the model", file=path,
                        found=_reason(error)) from None
    return model


def opset_of(model, domain: str = "") -> int | None:
    """The opset version ``model`` imports for ``domain`` (the standard one by default)."""
    domains = DEFAULT_DOMAINS if domain in DEFAULT_DOMAINS else (domain,)
    for entry in model.opset_import:
        if entry.domain in domains:
            return int(entry.version)
    return None


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
