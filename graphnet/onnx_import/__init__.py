"""Import ONNX models: the CNNs PyTorch's exporters (TorchScript and dynamo), tf2onnx and Keras
write become graphnet specs with their parameters.

    graph, params = graphnet.import_onnx("model.onnx")
    graphnet.Network(graph, params=params).forward({"image": x}, training=False)

``graphnet import MODEL.onnx -o NET.toml`` writes the spec (readable TOML, nodes named after the
ONNX nodes) and ``NET.npz``, a checkpoint every ``--checkpoint`` and ``train --init-from``
take; every command that takes a SPEC takes an ``.onnx`` file too (imported in memory). ONNX
graph inputs and outputs keep their names. What graphnet cannot express exactly is refused
with one message per unsupported op type, never approximated. :func:`supported_ops` lists
what is imported; :mod:`graphnet.onnx_import.ops` holds one converter per ONNX op.

The ``onnx`` package (``graphnet[onnx]``) is imported only when a model is read.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import SpecError

SUFFIX = ".onnx"
LABEL_INPUT = "label"
LOSS_OUTPUT = "loss"


def is_onnx_path(path) -> bool:
    """Whether ``path`` names an ONNX model (by its suffix), for the commands taking a SPEC."""
    return isinstance(path, (str, Path)) and Path(path).suffix.lower() == SUFFIX


def supported_ops() -> list[str]:
    """The ONNX op types the importer converts or folds (evaluates on constants)."""
    from .fold import FOLDERS
    from .ops import CONVERTERS

    return sorted(CONVERTERS.keys() | FOLDERS.keys())


def import_spec(path, *, registry=None, add_loss: bool = False):
    """Read the ONNX model at ``path`` (or a ``ModelProto``): an
    :class:`~graphnet.onnx_import.convert.Imported` with the spec as a dict and the parameters
    keyed ``"node/param"``. ``add_loss`` adds an integer ``label`` input and a softmax
    cross-entropy ``loss`` on the class scores, so that ``graphnet train`` can fine-tune it."""
    from ..registry import get_registry
    from .convert import Converter
    from .fold import FOLDERS
    from .model import model_label, read_model
    from .ops import CONVERTERS

    model = read_model(path)
    if not isinstance(path, (str, Path)):  # a ModelProto given in memory
        path = model_label(model)
        name = _graph_name(model.graph.name or "imported")
    else:
        name = _graph_name(Path(path).stem)
    imported = Converter(model, path, registry or get_registry(), CONVERTERS,
                         FOLDERS).run(name)
    if add_loss:
        _add_loss(imported.spec, path)
    return imported


def import_onnx(path, *, registry=None, plugins=(), add_loss: bool = False):
    """``(graph, params)`` of the ONNX model at ``path`` (or a ``ModelProto``): the validated,
    analysed :class:`graphnet.Graph` and its parameters keyed ``"node/param"`` (what
    ``graphnet.Network(graph, params=params)`` takes)."""
    from ..registry import get_registry

    registry = registry or get_registry(plugins)
    imported = import_spec(path, registry=registry, add_loss=add_loss)
    return build(imported, imported.file, registry), imported.params


def build(imported, path, registry):
    """The graph of an import, each node's shape checked against ONNX's own inference (a
    difference would be a different network). The model's weights are the nodes' fixed
    weights, so a network made without ``params`` starts from them too (as a spec's
    ``weights =`` do; ``graphnet import`` writes them to a checkpoint instead)."""
    from ..graph import build_graph
    from ..spec import parse_spec

    graph = build_graph(parse_spec(imported.spec, file=str(path)), registry)
    for name, shape in imported.expected_shapes.items():
        found = graph.nodes[name].shape
        if tuple(found) != tuple(shape):
            raise SpecError("the imported node's shape differs from the ONNX model's", file=path,
                            node=name, expected=str(list(shape)), found=str(list(found)))
    for key, array in imported.params.items():
        node, param = key.rsplit("/", 1)
        graph.nodes[node].fixed_weights[param] = array
    return graph


def _graph_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("._") or "imported"


def _add_loss(spec: dict, path) -> None:
    outputs = spec["outputs"]
    if len(outputs) != 1:
        raise SpecError("a loss can be added to a model with one output (the class scores)",
                        file=path, field="outputs", expected="1 output",
                        found=", ".join(outputs))
    (scores,) = outputs.values()
    taken = set(spec["inputs"]) | {node["name"] for node in spec["nodes"]}
    label = _free(LABEL_INPUT, taken)
    loss = _free(LOSS_OUTPUT, taken | {label})
    spec["inputs"][label] = {"shape": [], "dtype": "int64"}
    spec["nodes"].append({"name": loss, "op": "softmax_cross_entropy", "inputs": [scores, label]})
    outputs[LOSS_OUTPUT] = loss


def _free(name: str, taken: set) -> str:
    candidate, count = name, 1
    while candidate in taken:
        count += 1
        candidate = f"{name}_{count}"
    return candidate
