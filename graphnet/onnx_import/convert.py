"""ONNX graph → a graphnet spec (a plain dict, as a parsed file holds it) and its parameters.

The walk is in the ONNX file's node order (ONNX requires it topological). Every ONNX value is
either a constant (an initializer or a ``Constant`` node's output, kept as a numpy array) or a
:class:`Tensor`, the output of a graphnet node or input. Each ONNX op type has one converter in
:data:`graphnet.onnx_import.ops.CONVERTERS`; what a converter cannot express exactly is
refused with a message naming the ONNX node, never approximated.

Two foldings keep the spec the one a person would write: an ``Add``, ``Sub``, ``Mul`` or
``Div`` of a constant (one value, or one per channel) after a ``Conv``, ``Gemm`` or ``MatMul``
goes into that layer's weights and bias (a ``MatMul`` and the ``Add`` of its bias are one
``dense``); on an image otherwise, into the weights and bias of the ``Conv`` reading it (see
:mod:`graphnet.onnx_import.ops`). A global average pool followed by a flatten
(``GlobalAveragePool`` + ``Flatten``, or ``ReduceMean`` + ``Reshape(N, -1)``) becomes one
``global_avg_pool``. Each changes the node before it, so only where nothing else reads that
node's value under any ONNX name (:meth:`Converter.readers_of_value`).
"""
from __future__ import annotations

import ast
import dataclasses
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError
from .model import DEFAULT_DOMAINS, opset_of

FLOAT_TYPES = {1: "float32", 11: "float64", 10: "float16"}
"""ONNX element types of graph inputs graphnet reads (as float32)."""
TYPE_ONLY = {"Shape": 0, "CastLike": 1}
"""ONNX op type → the input it reads for its static shape or element type only: a network
value there is not computed with, so that read does not count as a use (a bias folded into
the conv before it needs the conv's output to have one reader)."""


@dataclass(frozen=True)
class Held:
    """An ONNX node graphnet has no op for, held on the value it outputs for the node reading
    that value to take into its own attributes or weights (which nodes take each kind:
    :data:`HELD_FOR`)."""

    kind: str
    """What is held: ``"pad"``, ``"affine"``, ``"transpose"`` or ``"order"``."""
    data: Any
    """The kind's data: ``pad`` (top, left, bottom, right, value); ``affine`` (per-channel
    scale, shift); ``transpose`` (perm, the sample shape before it); ``order`` (the flattened
    features' order, an index array)."""
    made_by: str
    """The name of the ONNX node that made the held value, for messages."""


@dataclass
class Tensor:
    """A value computed by the network: the graphnet node (or input) that holds it, its
    per-sample shape, and the spec entry that made it (for the foldings)."""

    source: str
    shape: tuple[int, ...]
    entry: dict | None = None
    flattens_to_global_pool: bool = False
    """An average pool over the whole image: a flatten after it makes it ``global_avg_pool``."""
    held: Held | None = None
    """An ONNX node on ``source`` that graphnet has no op for, held for the node reading it to
    take (``shape`` is the value's after it)."""

    def holds(self, kind: str):
        """The data held of ``kind``, or None."""
        return self.held.data if self.held is not None and self.held.kind == kind else None


NHWC_HINT = ("a Transpose of a graph input is how tf2onnx feeds a channels-last (NHWC) input "
             "to channels-first convs: export with tf2onnx's --inputs-as-nchw INPUT, and the "
             "model takes NCHW images as graphnet does")
HELD_FOR = {  # Held.kind: (the ONNX node that makes it, what may read it)
    "pad": ("Pad", "the padding of a Conv, MaxPool or AveragePool"),
    "affine": ("Mul, Div, Add or Sub of a constant", "the weights (and, where it does not "
               "pad, the bias) of a Conv reading it, or of the Conv, Gemm or MatMul right "
               "before it when nothing else reads that layer's output"),
    "transpose": ("Transpose", "the order of a flatten's features, taken into the weights of "
                               "the Gemm or MatMul reading that flatten (Keras' Flatten)"),
    "order": ("flatten of a Transpose", "the order of the weights of the Gemm or MatMul "
                                        "reading it"),
}


@dataclass
class BatchShape:
    """A ``Shape`` of a network value: its sizes, where it holds the batch size marked (held
    as 0, which a Reshape with ``allowzero = 0`` reads as "keep this size")."""

    dims: np.ndarray
    mark: np.ndarray


@dataclass
class Imported:
    """What an import gives: the spec as a dict, parameters keyed ``"node/param"``, and notes
    for the user (choices the import made)."""

    spec: dict[str, Any]
    params: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    opset: int | None = None
    file: str = ""
    """The model's file (or how messages name a model given in memory)."""
    expected_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """Per-sample shape of each graphnet node by ONNX's rules (checked after the build)."""


class Unsupported(SpecError):
    """An ONNX construct graphnet cannot express exactly."""


class Converter:
    """One model's conversion; :meth:`run` returns an :class:`Imported`."""

    def __init__(self, model, file: str | Path, registry, converters: dict, folders: dict):
        """``converters``: ONNX op type → function(converter, node) (see
        :data:`graphnet.onnx_import.ops.CONVERTERS`); ``folders``: the ops evaluated on
        constant inputs (:data:`graphnet.onnx_import.fold.FOLDERS`)."""
        from onnx import numpy_helper

        self.converters, self.folders = converters, folders
        self.model, self.graph, self.file, self.registry = model, model.graph, str(file), registry
        self.to_array = numpy_helper.to_array
        self.opset = opset_of(model)
        self.initializers = {init.name for init in self.graph.initializer}
        """The model's stored tensors (its parameters); other constants are computed by nodes."""
        self.constants: dict[str, np.ndarray] = {
            init.name: self.to_array(init) for init in self.graph.initializer}
        self.values: dict[str, Tensor] = {}
        self.shapes, self.element_types = _inferred_types(model)
        self.batch_entries: dict[str, np.ndarray] = {}
        """Constant → where it holds the batch size (see :mod:`graphnet.onnx_import.fold`)."""
        self.uses = Counter(name for node in self.graph.node
                            for position, name in enumerate(node.input)
                            if name and TYPE_ONLY.get(node.op_type) != position)
        self.uses.update(output.name for output in self.graph.output)
        self.readers: dict[str, list] = {}  # value → the nodes reading it
        for node in self.graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.nodes: list[dict] = []
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.names: set[str] = set()
        self.notes: list[str] = []
        self.expected_shapes: dict[str, tuple[int, ...]] = {}
        self.node = None  # the ONNX node being converted, for messages

    # --- the walk -----------------------------------------------------------------------------
    def run(self, name: str) -> Imported:
        self._refuse_unsupported_types(self.converters.keys() | self.folders.keys())
        inputs = self._inputs()
        for node in self.graph.node:
            self.node = node
            if self.fold(node):
                continue
            if node.op_type not in self.converters:
                raise self.refuse(f"{node.op_type} is imported only when all its inputs are "
                                  "constants: graphnet has no op computing it on the network's "
                                  "values", field="inputs",
                                  found=", ".join(repr(name) for name in node.input
                                                  if name in self.values))
            self.converters[node.op_type](self, node)
        self.node = None
        outputs = {}
        for output in self.graph.output:
            value = self.values.get(output.name)
            if value is None:
                raise SpecError("a graph output is a constant, not computed from the inputs",
                                file=self.file, field=f"outputs.{output.name}",
                                expected="an output computed by the network")
            if value.held is not None:
                held_op, reader = HELD_FOR[value.held.kind]
                raise Unsupported(f"a graph output is the {held_op} {value.held.made_by!r}, "
                                  f"imported only as {reader}: graphnet has no op for it",
                                  file=self.file, field=f"outputs.{output.name}")
            outputs[output.name] = value.source
        producer = " ".join(filter(None, (self.model.producer_name, self.model.producer_version)))
        description = f"imported from {Path(self.file).name} (ONNX opset {self.opset}" + \
                      (f", written by {producer})" if producer else ")")
        spec = {"graph": {"name": name, "description": description}, "inputs": inputs,
                "nodes": self.nodes, "outputs": outputs}
        flat = {f"{node}/{param}": np.ascontiguousarray(array, dtype=np.float32)
                for node, arrays in self.params.items() for param, array in arrays.items()}
        return Imported(spec, flat, self.notes, self.opset, self.file, self.expected_shapes)

    def fold(self, node) -> bool:
        """Evaluate ``node`` when its inputs are constants (``Shape`` and ``CastLike`` may read
        a network value's static size or type) and bind its output; False when it computes on
        the network's values (its converter takes it, if there is one).

        The batch size is not static: a ``Shape`` of a network value holds it as an entry
        marked in :attr:`batch_entries`; ops that only move elements carry the mark along, only
        ``Reshape`` may read it (as "the batch axis"), and computing with it is refused."""
        if node.op_type not in self.folders:
            return False
        function, moved = self.folders[node.op_type]
        inputs = []
        for position, name in enumerate(node.input):
            if not name:
                inputs.append(None)
            elif name in self.constants:
                inputs.append(self.constants[name])
            elif name in self.values and TYPE_ONLY.get(node.op_type) == position:
                inputs.append(self.values[name])
            else:
                return False
        marks = [self.batch_entries.get(name) for name in node.input]
        for position, mark in enumerate(marks):
            if mark is not None and mark.any() and position not in moved:
                raise self.refuse("the batch size is computed with: graphnet's networks take "
                                  "any batch size, so only a Reshape may read it",
                                  field=f"input {position + 1}",
                                  found=f"{node.input[position]!r}, which holds the batch size")
        result = function(self, node, inputs)
        if isinstance(result, BatchShape):
            self.constants[node.output[0]] = result.dims
            self.batch_entries[node.output[0]] = result.mark
            return True
        self.constants[node.output[0]] = result
        if any(mark is not None for mark in marks):
            # the same op over the marks (False where an input has none) marks what it moved
            as_marks = [marks[i] if marks[i] is not None else np.zeros(np.shape(value), bool)
                        if i in moved else value for i, value in enumerate(inputs)]
            self.batch_entries[node.output[0]] = np.asarray(function(self, node, as_marks), bool)
        return True

    def _refuse_unsupported_types(self, converters) -> None:
        """One error per unsupported op type (its first node named), listing what is supported."""
        unsupported: dict[str, list] = {}
        for node in self.graph.node:
            standard = node.domain in DEFAULT_DOMAINS
            key = node.op_type if standard else f"{node.domain}.{node.op_type}"
            if key not in converters or not standard:
                unsupported.setdefault(key, []).append(node)
        if not unsupported:
            return
        from ..spec import SpecErrors

        supported = ", ".join(sorted(converters))
        problems = []
        for op_type, nodes in unsupported.items():
            opset = opset_of(self.model, nodes[0].domain)
            more = f" (and {len(nodes) - 1} more node(s) of this type)" if len(nodes) > 1 else ""
            problems.append(Unsupported(
                f"ONNX op {op_type} (opset {opset}) is not supported{more}", file=self.file,
                node=_display_name(nodes[0]), field="op_type",
                expected=f"one of the ops graphnet imports: {supported}", found=op_type))
        SpecErrors.raise_any(problems)

    def _inputs(self) -> dict[str, dict]:
        inputs = {}
        batch_sizes = set()
        for value in self.graph.input:
            if value.name in self.constants:  # IR < 4 lists initializers as inputs too
                continue
            tensor_type = value.type.tensor_type
            if tensor_type.elem_type not in FLOAT_TYPES:
                raise Unsupported("graphnet imports float inputs only", file=self.file,
                                  field=f"inputs.{value.name}", expected="a float tensor",
                                  found=f"ONNX element type {tensor_type.elem_type}")
            dims = [d.dim_value if d.HasField("dim_value") else None
                    for d in tensor_type.shape.dim] if tensor_type.HasField("shape") else None
            if not dims or any(not d for d in dims[1:]):
                raise Unsupported("an input needs a batch axis and fixed per-sample sizes",
                                  file=self.file, field=f"inputs.{value.name}",
                                  expected="a shape such as [N, 3, 32, 32]",
                                  found=str(["?" if not d else d for d in dims or []]))
            if dims[0]:
                batch_sizes.add(dims[0])
            shape = tuple(int(d) for d in dims[1:])
            self.names.add(value.name)
            self.values[value.name] = Tensor(value.name, shape)
            inputs[value.name] = {"shape": list(shape)}
        for size in sorted(batch_sizes - {1}):
            self.notes.append(f"the model's inputs have a fixed batch size of {size}: its first "
                              "axis is read as the batch axis, any batch size runs")
        return inputs

    # --- what converters use ------------------------------------------------------------------
    def attr(self, node, name: str, default=None):
        from onnx import helper

        for attribute in node.attribute:
            if attribute.name == name:
                value = helper.get_attribute_value(attribute)
                if isinstance(value, bytes):
                    return value.decode("utf-8")
                if isinstance(value, list):
                    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value]
                return value
        return default

    def tensor(self, node, position: int, *, takes: tuple[str, ...] = ()) -> Tensor:
        """Input ``position`` of ``node``, which must be computed by the network; a value with
        a node held on it (:attr:`Tensor.held`) only when ``node`` takes that kind."""
        name = node.input[position] if position < len(node.input) else ""
        if name in self.values:
            value = self.values[name]
            held = value.held
            if held is not None and held.kind not in takes:
                held_op, reader = HELD_FOR[held.kind]
                inputs = {graph_input.name for graph_input in self.graph.input}
                of_transpose = node.op_type == "Transpose" or held.kind in ("transpose", "order")
                raise self.refuse(f"the {held_op} before it is imported only as {reader}: "
                                  "graphnet has no op for it", field=f"input {position + 1}",
                                  found=f"{name!r} from {held.made_by!r}, read by {node.op_type}",
                                  hint=NHWC_HINT if value.source in inputs and of_transpose
                                  else None)
            return value
        if name in self.constants:
            raise self.refuse(f"input {position + 1} is a constant, where graphnet needs a "
                              "value computed by the network", field=f"input {position + 1}",
                              found=f"constant {name!r} of shape "
                                    f"{list(self.constants[name].shape)}")
        raise self.refuse(f"input {position + 1} is missing", field=f"input {position + 1}")

    def constant(self, node, position: int, *, optional: bool = False):
        """Input ``position`` of ``node`` as a numpy array (None when absent and optional); a
        constant holding the batch size is refused (only Reshape reads one, as the batch axis)."""
        name = node.input[position] if position < len(node.input) else ""
        if not name:
            if optional:
                return None
            raise self.refuse(f"input {position + 1} is missing", field=f"input {position + 1}")
        if name in self.batch_entries and self.batch_entries[name].any():
            raise self.refuse(f"input {position + 1} holds the batch size, which graphnet "
                              "leaves open (any batch runs)", field=f"input {position + 1}",
                              found=repr(name))
        if name in self.constants:
            return self.constants[name]
        raise self.refuse(f"input {position + 1} must be a constant (an initializer): graphnet "
                          "keeps weights and sizes fixed", field=f"input {position + 1}",
                          found=f"{name!r}, computed by the network")

    def shape_target(self, node, position: int) -> tuple[list[int], bool]:
        """A Reshape's target shape (input ``position``) as ints, and whether its first entry
        is the batch size, taken from a Shape of a network value (see :attr:`batch_entries`):
        the one place the batch size may go, as the batch axis, which stays open. The batch
        size anywhere else is refused, as :meth:`constant` refuses it."""
        name = node.input[position] if position < len(node.input) else ""
        marks = np.ravel(self.batch_entries.get(name, False))
        if marks[0] and not marks[1:].any():
            return ints(self.constants[name]), True
        return ints(self.constant(node, position)), False

    def axes(self, node, position: int, *, since: int, rank: int | None = None
             ) -> list[int] | None:
        """``node``'s axes as ints (None when it gives none): its input ``position`` from opset
        ``since`` on, where ONNX moved them from the ``axes`` attribute, which older opsets
        read. Given the ``rank`` they index, each is counted from 0 and checked
        (:meth:`distinct_axes`)."""
        if self.opset >= since:
            axes = self.constant(node, position, optional=True)
        else:
            axes = self.attr(node, "axes")
        if axes is None:
            return None
        return ints(axes) if rank is None else self.distinct_axes(node, ints(axes), rank)

    def axis(self, node, axis: int, rank: int, *, field: str = "axis") -> int:
        """``axis`` of a rank-``rank`` value counted from 0 (ONNX counts a negative one from the
        end), refused outside ``-rank`` to ``rank - 1``: numpy raised there, and ``% rank``
        read it as another axis."""
        if not -rank <= axis < rank:
            raise self.refuse(f"{node.op_type}'s {field} names no axis of a rank-{rank} value",
                              field=field,
                              expected=f"an axis from {-rank} to {rank - 1}", found=str(axis))
        return axis % rank

    def distinct_axes(self, node, axes, rank: int, *, field: str = "axes") -> list[int]:
        """``axes`` of a rank-``rank`` value counted from 0 (:meth:`axis`), refused when one
        names an axis twice."""
        counted = [self.axis(node, axis, rank, field=field) for axis in axes]
        if len(set(counted)) != len(counted):
            raise self.refuse(f"{node.op_type}'s {field} must name each axis once", field=field,
                              expected=f"distinct axes of a rank-{rank} value",
                              found=str(list(axes)))
        return counted

    def permutation(self, node, rank: int) -> list[int]:
        """A Transpose's ``perm`` as ints (ONNX's default: the ``rank`` axes reversed), refused
        unless it names each axis once: onnx's checker checks only its type, and a perm too
        short, repeated or out of range ended in a traceback from numpy."""
        perm = ints(self.attr(node, "perm", range(rank - 1, -1, -1)))
        if sorted(perm) != list(range(rank)):
            raise self.refuse("a Transpose's perm must name each axis once", field="perm",
                              expected=f"an order of the axes 0 to {rank - 1}", found=str(perm))
        return perm

    def used(self, name: str) -> bool:
        return bool(name) and self.uses[name] > 0

    def readers_of_value(self, value: Tensor) -> int:
        """How many nodes (and graph outputs) read the graphnet value ``value`` under any ONNX
        name bound to it: an Identity, a zero Pad, x + 0 or a Dropout binds another name to the
        same value, and its own read of it is not counted (what reads that name is). A fold
        into the node making ``value`` (its weights, its op) needs this to be one, the reader
        folding: else something else reads it as it was."""
        names = [name for name, bound in self.values.items() if bound.source == value.source]
        return sum(self.uses[name] for name in names) - (len(names) - 1)

    def emit(self, node, op: str, inputs: list[Tensor], attrs: dict | None = None,
             params: dict | None = None, *, shape: tuple[int, ...], suffix: str = "") -> Tensor:
        """Add a graphnet node for ONNX ``node`` (named after it) and bind its first output,
        whose per-sample ``shape`` the converter computed by ONNX's rules (checked against
        graphnet's own shape inference once the graph is built)."""
        name = self.unique(node_name(node) + suffix)
        entry = {"name": name, "op": op, "inputs": [t.source for t in inputs], **(attrs or {})}
        self.nodes.append(entry)
        if params:
            self.params[name] = params
        self.expected_shapes[name] = shape
        tensor = Tensor(name, shape, entry)
        self.values[node.output[0]] = tensor
        return tensor

    def hold(self, node, x: Tensor, shape, kind: str, data) -> None:
        """Bind ``node``'s output to ``x`` with ``node`` held on it (:attr:`Tensor.held`), its
        shape after the node ``shape`` (None: ``x``'s)."""
        self.values[node.output[0]] = dataclasses.replace(
            x, shape=x.shape if shape is None else shape,
            held=Held(kind, data, made_by=_display_name(node)))

    def alias(self, node, value) -> None:
        """ONNX ``node``'s first output is ``value`` (a Tensor or a constant array)."""
        if isinstance(value, Tensor):
            self.values[node.output[0]] = value
        else:
            self.constants[node.output[0]] = value

    def unique(self, name: str) -> str:
        candidate, count = name, 1
        while candidate in self.names:
            count += 1
            candidate = f"{name}_{count}"
        self.names.add(candidate)
        return candidate

    def refuse(self, message: str, *, field: str | None = None, expected=None, found=None,
               hint=None) -> Unsupported:
        """The error for the node being converted (raise it)."""
        node = self.node
        op = f"ONNX {node.op_type} (opset {self.opset}): " if node is not None else ""
        return Unsupported(op + message, file=self.file,
                           node=_display_name(node) if node is not None else None, field=field,
                           expected=expected, found=found, hint=hint)

    def require_attribute(self, op: str, attribute: str, value, what: str) -> None:
        """Refuse ``what`` unless graphnet's ``op`` accepts ``attribute = value``."""
        op_class = _op_class(self.registry, op)
        schema = getattr(op_class, "attrs", {}) if op_class is not None else {}
        try:
            if attribute not in schema:
                raise SpecError("no such attribute")
            schema[attribute].parse(value, attribute)
        except SpecError:
            raise self.refuse(f"{what} is not supported by this graphnet's {op!r} op",
                              field=attribute, found=repr(value)) from None

    def has_op(self, op: str) -> bool:
        return _op_class(self.registry, op) is not None


def ints(values) -> list[int]:
    """``values`` (an attribute's list or a constant of any shape) as a flat list of ints."""
    return [int(v) for v in np.ravel(values)]


def _op_class(registry, op: str):
    entry = registry.entries["op"].get(op)
    return entry.value if entry is not None else None


def _inferred_types(model) -> tuple[dict[str, list], dict[str, int]]:
    """Value name → full shape (batch first; None for a symbolic size), and value name → ONNX
    element type, from the model's value_info, inputs and outputs."""
    shapes, element_types = {}, {}
    for value in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            element_types[value.name] = tensor_type.elem_type
        if not tensor_type.HasField("shape"):
            continue
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None
                              for d in tensor_type.shape.dim]
    return shapes, element_types


_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def node_name(node) -> str:
    """A spec name for an ONNX node: the module path the dynamo exporter records with it
    (:func:`_torch_scopes`), else its name (else its first output's) less the dynamo
    exporter's ``node_`` prefix; TorchScript's scopes (``/layer1/layer1.0/conv1/Conv``) become
    the module's path (``layer1.0.conv1``: a scope repeating its parent's path replaces it, a
    last part naming the op type goes, unless the path is only numbers, as in an
    ``nn.Sequential``: ``/0/Conv`` becomes ``Conv.0``); anything but letters, digits, ``_``,
    ``.`` and ``-`` becomes ``_``."""
    raw = node.name or (node.output[0] if node.output else "") or node.op_type
    if raw.startswith("node_") and len(raw) > 5:  # the dynamo exporter's prefix says nothing
        raw = raw[5:]
    parts = _torch_scopes(node) or [part for part in raw.split("/") if part]
    kept: list[str] = []
    for part in parts:
        if kept and part.startswith(kept[-1] + "."):
            kept[-1] = part  # TorchScript scopes: the child's name holds its parent's path
        else:
            kept.append(part)
    if len(kept) > 1 and re.fullmatch(re.escape(node.op_type) + r"(_\d+)?", kept[-1]) \
            and not re.fullmatch(r"[\d.]+", ".".join(kept[:-1])):
        kept.pop()  # "/features/conv/Conv": the module's path says it, the op column the rest
    elif len(kept) > 1 and re.fullmatch(r"[\d.]+", ".".join(kept[:-1])):
        kept = [kept[-1], *kept[:-1]]  # nn.Sequential's "/0/Conv": Conv.0, not a bare 0
    name = _UNSAFE.sub("_", ".".join(kept)).strip("._") or node.op_type
    return name[:120]


def _torch_scopes(node) -> list[str]:
    """The module path the dynamo exporter records with a node (its ``name_scopes`` metadata:
    ``layer1``, ``layer1.0``, ``layer1.0.conv1``, then the aten op's name, ``conv2d_1``), the
    op's name left out where the module is one of torch.nn's layers (not a container, nor a
    module of the user's own, whose ops the name tells apart: ``layer1.0.add``); [] without."""
    metadata = {entry.key: entry.value for entry in node.metadata_props}
    try:
        scopes = ast.literal_eval(metadata["pkg.torch.onnx.name_scopes"])
        classes = ast.literal_eval(metadata.get("pkg.torch.onnx.class_hierarchy", "[]"))
    except (KeyError, ValueError, SyntaxError, MemoryError, RecursionError):
        return []
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        return []
    layer = classes[-2] if isinstance(classes, list) and len(classes) == len(scopes) >= 3 else ""
    if isinstance(layer, str) and layer.startswith("torch.nn.modules.") \
            and ".container." not in layer and not re.fullmatch(r"[\d.]+", scopes[-2]):
        scopes = scopes[:-1]
    return [scope for scope in scopes if scope]


def _display_name(node) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)
