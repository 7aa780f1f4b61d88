"""Network → ONNX: the inference graph as a model any ONNX runtime or viewer reads.

:func:`to_model` translates a :class:`graphnet.engine.Network` (its graph and its parameters)
into an ``onnx.ModelProto``; :func:`export_onnx` writes it to a file (atomically). What is
exported:

- the **inference graph only**: the spec's outputs that are not losses (or, when the spec
  names only its loss, the graph's sinks once losses are left out), the nodes they need and
  the graph inputs they read, so class labels and loss nodes never appear;
- inputs and outputs named as in the spec, float32 (int64 for integer inputs), the batch axis
  symbolic (:data:`BATCH_AXIS`), the other axes graphnet's per-sample shapes;
- every parameter (batch norm's running statistics too) as an initializer named
  ``"node/param"``, the network's values in float32;
- opset :data:`OPSET` of the default domain and IR version :data:`IR_VERSION`, which
  onnxruntime 1.13 and later and Netron load.

Each op describes itself through :meth:`graphnet.op.Op.to_onnx`, the built-in ops exactly as a
user's, given an :class:`OnnxBuilder` (plain Python: op modules never import ``onnx``). This
module only assembles: it names no op. An op without ``to_onnx`` raises
:class:`graphnet.export.ExportError` naming the node and op. The ``onnx`` package (the
``onnx`` extra) is imported only inside :func:`to_model`; the finished model is checked with
``onnx.checker.check_model(full_check=True)`` before it is returned, so a translation that
ONNX rejects is an error here rather than a file no runtime opens.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .. import __version__
from . import ExportError, require, translate

TARGET = "onnx"
OPSET = 17
"""The default domain's opset: onnxruntime 1.13+ and Netron read it, and every CNN op of
graphnet has its current form there (Softmax over one axis since 13, Gemm without C since 11)."""
IR_VERSION = 8
"""The IR version that goes with opset 17 (onnx's own table), so older runtimes load it too."""
BATCH_AXIS = "N"
"""The symbolic name of every input's and output's first axis."""


class OnnxBuilder:
    """The ONNX graph under construction, as :meth:`graphnet.op.Op.to_onnx` sees it.

    Plain Python: nodes are kept as ``(op_type, inputs, output, name, attributes)`` and arrays
    as numpy until the exporter turns them into protobuf. While one graphnet node is being
    translated, ``inputs`` holds the names of the values holding its inputs (in order),
    ``output`` the name its value should take, and :meth:`param` reads its parameters.
    """

    def __init__(self, params_by_node: dict[str, dict[str, np.ndarray]], reserved=(),
                 dtype=np.float32):
        self.dtype = np.dtype(dtype)
        self.nodes: list[tuple[str, list[str], str, str, dict]] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.inputs: tuple[str, ...] = ()
        self.output: str = ""
        self._params_by_node = params_by_node
        self._values: set[str] = set(reserved)
        self._node_names: set[str] = set()
        self._initializer_names: dict[tuple, str] = {}  # (node, param, shape) → its value
        self._node: str = ""

    # --- what an op uses ------------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A value name not used yet, ``hint`` itself if it is free (then taken)."""
        return _unique(hint or "value", self._values)

    def add_node(self, op_type: str, inputs, output: str | None = None, **attributes) -> str:
        """Add an ONNX node of the default domain computing ``output`` (a fresh name if None)
        from the values named in ``inputs`` ("" for an omitted optional input); ``attributes``
        are plain ints, floats, strings or lists of them. Returns the output's name."""
        if output is None:
            output = self.fresh(f"{self._node}/{op_type}")
        elif output not in self._values:
            self._values.add(output)
        # the node's first ONNX node takes its name, the others "node/OpType"
        first = self._node not in self._node_names
        name = _unique(self._node if first else f"{self._node}/{op_type}", self._node_names)
        self.nodes.append((op_type, [str(i) for i in inputs], output, name, dict(attributes)))
        return output

    def param(self, name: str, shape=None) -> str:
        """The initializer holding this node's parameter ``name`` (reshaped to ``shape`` if
        given, for broadcasting; -1 allowed), named ``"node/name"``; added once per shape."""
        array = self._params_by_node[self._node][name]
        if shape is not None:
            array = array.reshape(shape)
        key = (self._node, name, array.shape)
        if key not in self._initializer_names:
            value = self.fresh(f"{self._node}/{name}")
            self.initializers[value] = np.asarray(array, dtype=self.dtype)
            self._initializer_names[key] = value
        return self._initializer_names[key]

    def constant(self, array, hint: str = "constant") -> str:
        """An initializer holding ``array``: floats in the model's float type, integers
        (shapes, axes) as int64."""
        array = np.asarray(array)
        array = array.astype(self.dtype if array.dtype.kind == "f" else np.int64)
        value = self.fresh(f"{self._node}/{hint}" if self._node else hint)
        self.initializers[value] = array
        return value

    # --- what the exporter uses -----------------------------------------------------------
    def begin(self, node: str, inputs, output: str) -> None:
        """Start translating graphnet node ``node``."""
        self._node, self.inputs, self.output = node, tuple(inputs), output

    def produced(self) -> set[str]:
        """Every value defined so far: node outputs and initializers."""
        return {output for _, _, output, _, _ in self.nodes} | set(self.initializers)


def _unique(base: str, taken: set[str]) -> str:
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    taken.add(name)
    return name


# --- what is exported ----------------------------------------------------------------------
def exported_outputs(graph) -> dict[str, str]:
    """Output name → node for the inference graph: the spec's outputs that are not losses,
    else (a spec naming only its loss) the nodes whose consumers are all losses."""
    outputs = {name: target for name, target in graph.outputs.items()
               if not graph.nodes[target].is_loss}
    if not outputs:
        outputs = {name: name for name in graph.order
                   if not graph.nodes[name].is_input and not graph.nodes[name].is_loss
                   and all(graph.nodes[c].is_loss for c in graph.consumers(name))}
    if not outputs:
        raise ExportError("nothing to export: the graph computes only losses", file=graph.file,
                          field="outputs", expected="an output that is not a loss")
    return outputs


def _needed(graph, targets) -> list[str]:
    """The nodes (and inputs) the targets need, in the graph's order."""
    needed, pending = set(), list(targets)
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending.extend(graph.nodes[name].inputs)
    return [name for name in graph.order if name in needed]


# --- translation ---------------------------------------------------------------------------
def require_onnx():
    """The onnx module, or an ExportError saying how to install it."""
    return require("onnx", "the onnx package", "onnx")


def _translate(graph, node, builder: OnnxBuilder) -> str:
    result = translate(graph, node, "to_onnx", "ONNX", builder)
    if not isinstance(result, str) or (result not in builder.produced()
                                       and result not in builder.inputs):
        raise ExportError(f"to_onnx of op {node.op_name!r} returned {result!r}",
                          file=graph.file, node=node.name,
                          expected="the name of a value it added (or of one of its inputs)")
    return result


def to_model(network, *, metadata: dict[str, str] | None = None):
    """The ONNX model of ``network``'s inference graph (see the module docstring), checked by
    ``onnx.checker`` in full; ``metadata`` goes into the model's metadata properties. Raises
    ExportError (onnx missing, an op without a translation, a translation ONNX rejects)."""
    onnx = require_onnx()
    from onnx import helper, numpy_helper

    graph = network.graph
    outputs = exported_outputs(graph)
    order = _needed(graph, outputs.values())
    for name in order:
        if graph.nodes[name].is_loss:
            user = next(o for o, t in outputs.items() if name in _needed(graph, [t]))
            raise ExportError(f"output {user!r} needs loss node {name!r}, and losses are "
                              "never exported", file=graph.file, node=name,
                              field=f"outputs.{user}")
    inputs = [name for name in order if graph.nodes[name].is_input]
    clash = sorted(set(inputs) & set(outputs))
    if clash:
        raise ExportError("an output is named like an input; ONNX needs distinct names",
                          file=graph.file, field=f"outputs.{clash[0]}",
                          expected="an output name that no input has")
    builder = OnnxBuilder(network.params, reserved=[*inputs, *outputs])
    first_output = {}
    for output, target in outputs.items():
        first_output.setdefault(target, output)
    value_of = {name: name for name in inputs}
    for name in order:
        node = graph.nodes[name]
        if node.is_input:
            continue
        builder.begin(name, [value_of[source] for source in node.inputs],
                      first_output.get(name) or builder.fresh(name))
        value_of[name] = _translate(graph, node, builder)
    for output, target in outputs.items():
        if value_of[target] != output:
            builder.begin(output, [value_of[target]], output)
            builder.add_node("Identity", [value_of[target]], output)

    def value_info(name, node):
        kind = onnx.TensorProto.INT64 if node.dtype_kind == "int" else onnx.TensorProto.FLOAT
        return helper.make_tensor_value_info(name, kind, [BATCH_AXIS, *node.shape])

    proto = helper.make_graph(
        [helper.make_node(op_type, node_inputs, [output], name=node_name, **attributes)
         for op_type, node_inputs, output, node_name, attributes in builder.nodes],
        graph.name or "graphnet",
        [value_info(name, graph.nodes[name]) for name in inputs],
        [value_info(output, graph.nodes[target]) for output, target in outputs.items()],
        initializer=[numpy_helper.from_array(array, name)
                     for name, array in builder.initializers.items()],
        doc_string=graph.spec.description or "")
    model = helper.make_model(proto, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="graphnet", producer_version=__version__,
                              ir_version=IR_VERSION)
    if metadata:
        helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"ONNX rejects the translation: {_first_line(error)}",
                          file=graph.file) from error
    return model


def _first_line(error) -> str:
    text = re.sub(r"\s+", " ", str(error)).strip()
    return text if len(text) <= 300 else text[:297] + "..."


def export_onnx(network, path, *, metadata: dict[str, str] | None = None) -> object:
    """Write ``network``'s inference graph to ``path`` as an ONNX model (atomically); returns
    the ``onnx.ModelProto``. ``metadata``: the model's metadata properties (the CLI stores a
    checkpoint's class names and input standardisation there)."""
    from ..files import atomic_write_bytes

    model = to_model(network, metadata=metadata)
    atomic_write_bytes(Path(path), model.SerializeToString())
    return model
