"""Static analysis passes over a :class:`graphnet.graph.Graph`: they write into node metadata.

Run before any data exists: per-sample output shapes, parameter specs and counts,
multiply-accumulates, and receptive fields after Araujo, Norris & Sim, "Computing Receptive
Fields of Convolutional Neural Networks" (Distill, 2019): per spatial axis the size ``r``, the
jump ``j`` (distance in input pixels between neighbouring units) and the start (input coordinate
of the first unit's field's first pixel, negative under padding).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

from .errors import GraphnetError, PluginError, SpecError
from .op import GLOBAL, POINTWISE, Param, Window, format_shape
from .spec import SpecErrors


@dataclass(frozen=True)
class ReceptiveField:
    """Size, jump and start of one unit's field in the input image, per axis (height, width)."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]

    def through(self, window: Window) -> "ReceptiveField":
        """The field after a sliding window: r += (k_eff − 1)·j, j *= s, start −= p·j."""
        size, jump, start = [], [], []
        for axis in range(2):
            effective_kernel = window.dilation[axis] * (window.kernel[axis] - 1) + 1
            size.append(self.size[axis] + (effective_kernel - 1) * self.jump[axis])
            start.append(self.start[axis] - window.padding[axis] * self.jump[axis])
            jump.append(self.jump[axis] * window.stride[axis])
        return ReceptiveField(tuple(size), tuple(jump), tuple(start))

    @staticmethod
    def union(fields: list["ReceptiveField"]) -> "ReceptiveField":
        """The field of a merge: it covers every input's field (the larger jump is kept)."""
        if len(fields) == 1:
            return fields[0]
        size, jump, start = [], [], []
        for axis in range(2):
            first = min(f.start[axis] for f in fields)
            last = max(f.start[axis] + f.size[axis] for f in fields)
            start.append(first)
            size.append(last - first)
            jump.append(max(f.jump[axis] for f in fields))
        return ReceptiveField(tuple(size), tuple(jump), tuple(start))

    def as_dict(self) -> dict:
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start)}


IMAGE_FIELD = ReceptiveField((1, 1), (1, 1), (0, 0))


def run_passes(graph) -> None:
    """Shapes, parameters, costs, receptive fields and warnings, in that order."""
    infer_shapes(graph)
    infer_params(graph)
    count_macs(graph)
    infer_receptive_fields(graph)
    graph.warnings.extend(unused_node_warnings(graph))


def _located(graph, node, error: GraphnetError) -> SpecError:
    cls = type(error) if isinstance(error, SpecError) else SpecError
    return cls(error.message, file=graph.file, node=node.name, field=error.field,
               expected=error.expected, found=error.found, hint=error.hint)


def _crashed(graph, node, method: str, error: Exception) -> SpecError:
    """An op's analysis method raised something other than a GraphnetError: name the plugin."""
    return SpecError(f"{method} of op {node.op_name!r} (plugin {node.plugin!r}) raised "
                     f"{type(error).__name__}: {error}", file=graph.file, node=node.name)


def _raise_all(problems: list) -> None:
    SpecErrors.raise_any(problems)


def infer_shapes(graph) -> None:
    """Each op node's per-sample output shape; also checks integer vs float inputs and the loss."""
    problems: list[SpecError] = []
    failed: set[str] = set()
    for name in graph.order:
        node = graph.nodes[name]
        if node.is_input:
            continue
        if any(source in failed for source in node.inputs):
            failed.add(name)  # its cause is already reported
            continue
        try:
            _check_input_kinds(graph, node)
            node.shape = tuple(int(d) for d in node.op.shape(
                graph.input_shapes(node.name), node.attrs))
            if node.op.is_loss and node.shape != ():
                raise SpecError("a loss op must produce a scalar", field="op",
                                expected="shape ()", found=format_shape(node.shape))
            if any(d <= 0 for d in node.shape):
                raise SpecError("the output would be empty", field="inputs",
                                expected="every dimension >= 1", found=format_shape(node.shape))
        except GraphnetError as error:
            problems.append(_located(graph, node, error))
            failed.add(name)
        except Exception as error:  # a plugin's shape() crashed: name it, keep the rest going
            problems.append(_crashed(graph, node, "shape inference", error))
            failed.add(name)
    loss = graph.loss
    # Backward seeds the loss with one scalar for the whole batch: only a loss op makes that.
    if loss is not None and loss not in failed and not graph.nodes[loss].is_loss:
        problems.append(SpecError("the loss output must name a loss node (one scalar per batch)",
                                  file=graph.file, field="outputs.loss",
                                  expected="a loss op such as softmax_cross_entropy",
                                  found=f"{loss!r} ({graph.nodes[loss].op_name}) of shape "
                                        f"{format_shape(graph.nodes[loss].shape)}"))
    _raise_all(problems)


def _check_input_kinds(graph, node) -> None:
    for position, source in enumerate(node.inputs):
        source_node = graph.nodes[source]
        wants_integer = position in node.op.integer_inputs
        if graph.nodes[source].is_loss:
            raise SpecError("a loss cannot feed another node", field="inputs",
                            expected="a per-sample tensor", found=f"loss {source!r}")
        if wants_integer and source_node.dtype_kind != "int":
            raise SpecError(f"input {position + 1} of op {node.op_name!r} takes integer labels",
                            field="inputs", expected="an input declared with dtype int64",
                            found=f"{source!r} ({source_node.dtype_kind})")
        if not wants_integer and source_node.dtype_kind == "int":
            raise SpecError(f"input {position + 1} of op {node.op_name!r} takes float data",
                            field="inputs", expected="a float tensor",
                            found=f"{source!r}, which holds integers")


def infer_params(graph) -> None:
    """Parameter specs and counts; spec-given fixed weights are fitted to their parameters."""
    problems = []
    for node in graph.op_nodes:
        try:
            input_shapes = graph.input_shapes(node.name)
            node.param_specs = dict(node.op.params(input_shapes, node.attrs))
            for param_name, param in node.param_specs.items():
                _check_param(node, param_name, param)
            node.params = sum(math.prod(p.shape) for p in node.param_specs.values())
            fitted = {}
            for key, array in node.fixed_weights.items():
                if not node.param_specs:
                    raise SpecError(f"op {node.op_name!r} has no parameters", field="weights")
                name = key or next(iter(node.param_specs))
                if name not in node.param_specs:
                    raise SpecError(f"op {node.op_name!r} has no parameter {name!r}",
                                    field=f"weights.{name}",
                                    expected="one of: " + ", ".join(node.param_specs))
                fitted[name] = fit_fixed_weight(array, node.param_specs[name].shape,
                                                f"weights.{name}" if key else "weights")
            node.fixed_weights = fitted
        except GraphnetError as error:
            problems.append(_located(graph, node, error))
        except Exception as error:
            problems.append(_crashed(graph, node, "params()", error))
    _raise_all(problems)


def fit_fixed_weight(array: np.ndarray, shape: tuple, field_name: str) -> np.ndarray:
    """Reshape a spec-given weight to the parameter's shape when only leading 1s differ
    (a 7×7 filter for a 1×1×7×7 kernel); otherwise raise SpecError naming both shapes."""
    def squeeze(dims):
        dims = list(dims)
        while dims and dims[0] == 1:
            dims.pop(0)
        return dims
    if tuple(array.shape) == tuple(shape) or squeeze(array.shape) == squeeze(shape):
        return array.reshape(shape)
    raise SpecError("fixed weights do not fit the parameter", field=field_name,
                    expected=format_shape(shape), found=format_shape(array.shape))


def _check_param(node, name, param) -> None:
    """What an op's params() returned must be usable by the engine: a Param with an int shape."""
    if not isinstance(param, Param) or not isinstance(name, str):
        raise PluginError(f"plugin {node.plugin!r}, op {node.op_name!r}: params() must map "
                          "names to graphnet.op.Param", found=f"{name!r}: {param!r}")
    try:
        dims = [operator.index(d) for d in param.shape]
    except TypeError:
        dims = None
    if dims is None or any(d < 0 for d in dims):
        raise PluginError(f"plugin {node.plugin!r}, op {node.op_name!r}: parameter {name!r} has "
                          "a bad shape", expected="a tuple of integers >= 0",
                          found=repr(param.shape))


def count_macs(graph) -> None:
    problems = []
    for node in graph.op_nodes:
        try:
            node.macs = int(node.op.macs(graph.input_shapes(node.name), node.shape,
                                         node.attrs))
        except GraphnetError as error:
            problems.append(_located(graph, node, error))
        except Exception as error:
            problems.append(_crashed(graph, node, "macs()", error))
    _raise_all(problems)


def infer_receptive_fields(graph) -> None:
    """Each node's field in its image input; None where it sees the whole input (or no image)."""
    for name in graph.order:
        node = graph.nodes[name]
        if node.is_input:
            node.receptive_field = IMAGE_FIELD if len(node.shape) == 3 else None
            continue
        fields = [graph.nodes[s].receptive_field for s in node.inputs]
        fields = [f for f in fields if f is not None]
        try:
            contribution = node.op.receptive_field(graph.input_shapes(node.name),
                                                   node.attrs)
        except GraphnetError as error:
            raise _located(graph, node, error) from None
        except Exception as error:
            raise _crashed(graph, node, "receptive_field()", error) from None
        if contribution == GLOBAL or not fields or len(node.shape) != 3:
            node.receptive_field = None
        elif contribution == POINTWISE:
            node.receptive_field = ReceptiveField.union(fields)
        elif isinstance(contribution, Window):
            node.receptive_field = ReceptiveField.union(fields).through(contribution)
        else:
            raise SpecError("receptive_field() returned an unknown value", file=graph.file,
                            node=name, expected="a Window, POINTWISE or GLOBAL",
                            found=repr(contribution))


def unused_node_warnings(graph) -> list[str]:
    outputs = set(graph.outputs.values())
    warnings = []
    for name in graph.order:
        if graph.dag.out_degree(name) == 0 and name not in outputs:
            kind = "input" if graph.nodes[name].is_input else "node"
            warnings.append(f"{graph.file or graph.name}: {kind} {name!r}: its output is not used "
                            "by any node or output")
    return warnings


def activation_elements(graph) -> int:
    """Per-sample elements of every node's output (inputs included)."""
    return sum(math.prod(n.shape) for n in graph.nodes.values() if n.shape is not None)


def memory_estimate(graph, batch_size: int, itemsize: int = 4) -> dict[str, int]:
    """Bytes for parameters and for one batch's activations; training adds gradients and
    optimizer state (a conservative ×4 on parameters, ×2 on activations)."""
    parameter_bytes = graph.total_params * itemsize
    activation_bytes = activation_elements(graph) * batch_size * itemsize
    return {
        "parameter_bytes": parameter_bytes,
        "activation_bytes": activation_bytes,
        "inference_bytes": parameter_bytes + activation_bytes,
        "training_state_bytes": 4 * parameter_bytes,  # parameters, gradients, optimizer state
        "training_activation_bytes": 2 * activation_bytes,  # activations and their gradients
        "training_bytes": 4 * parameter_bytes + 2 * activation_bytes,
    }


def required_inputs(graph) -> dict:
    """Which graph inputs every output needs (``"inputs"``) and which only some do
    (``"optional"``: class labels, read only by the loss); ``"by_node"``: the inputs each node
    needs; ``"computable"``: the nodes the required inputs alone determine."""
    by_node: dict[str, set[str]] = {}
    for name in graph.order:
        node = graph.nodes[name]
        by_node[name] = ({name} if node.is_input
                         else set().union(*(by_node[source] for source in node.inputs)))
    outputs_need = [by_node[target] for target in graph.outputs.values()]
    required = set.intersection(*outputs_need) if outputs_need else set(graph.inputs)
    return {"inputs": [n for n in graph.inputs if n in required],
            "optional": [n for n in graph.inputs if n not in required],
            "by_node": by_node,
            "computable": {name for name, needed in by_node.items() if needed <= required}}
