"""Spec + registry → :class:`Graph`: a validated networkx DAG of op nodes in a fixed order.

Building a graph resolves every op through the registry, checks its attributes against the op's
schema, rejects cycles (naming the nodes on one), then runs the analysis passes
(:mod:`graphnet.analysis`): shapes, parameters, costs and receptive fields. No layer math lives
here; nothing is allocated but Python ints.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import networkx as nx
import numpy as np

from .errors import GraphnetError, PluginError, SpecError, plugin_failure
from .op import Op, Param, parse_number_array
from . import analysis
from .registry import Registry, get_registry
from .spec import Spec, SpecErrors, load_spec
from .text import clip, suggest


@dataclass
class Node:
    """One vertex of the graph: a graph input (``op is None``) or an op node, plus what the
    analysis passes wrote about it."""

    name: str
    index: int
    op_name: str = "input"
    op: Op | None = None
    plugin: str | None = None
    attrs: SimpleNamespace = field(default_factory=SimpleNamespace)
    inputs: tuple[str, ...] = ()
    trainable: bool = True
    fixed_weights: dict[str, np.ndarray] = field(default_factory=dict)
    # written by the analysis passes
    shape: tuple[int, ...] | None = None
    dtype_kind: str = "float"  # "float" or "int"
    param_specs: dict[str, Param] = field(default_factory=dict)
    params: int = 0
    macs: int = 0
    receptive_field: Any = None

    @property
    def is_input(self) -> bool:
        return self.op is None

    @property
    def is_loss(self) -> bool:
        return self.op is not None and self.op.is_loss


@dataclass
class Graph:
    """A validated, analysed graph. ``order`` is the deterministic topological order (spec order
    breaks ties); ``dag`` is the networkx DiGraph (edges input → consumer)."""

    spec: Spec
    dag: nx.DiGraph
    nodes: dict[str, Node]
    order: list[str]
    registry: Registry
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def file(self) -> str | None:
        return self.spec.file

    @property
    def outputs(self) -> dict[str, str]:
        return self.spec.outputs

    @property
    def loss(self) -> str | None:
        return self.spec.loss

    @property
    def inputs(self) -> list[str]:
        return [n for n in self.order if self.nodes[n].is_input]

    @property
    def op_nodes(self) -> list[Node]:
        return [self.nodes[n] for n in self.order if not self.nodes[n].is_input]

    def input_shapes(self, name: str) -> list[tuple]:
        """The per-sample shapes of node ``name``'s inputs, in order: what its op is asked
        about (shape, params, MACs, receptive field, fusion, export)."""
        return [self.nodes[source].shape for source in self.nodes[name].inputs]

    def consumers(self, name: str) -> list[str]:
        """The nodes that take ``name`` as an input, in execution order (each once)."""
        # From the DAG's edges, not a scan of every node: callers ask once per node.
        return sorted(self.dag.successors(name), key=self.position.__getitem__)

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """Each node's index in ``order``."""
        return {name: index for index, name in enumerate(self.order)}

    @property
    def total_params(self) -> int:
        return sum(n.params for n in self.nodes.values())

    @property
    def total_macs(self) -> int:
        return sum(n.macs for n in self.nodes.values())

    @property
    def total_state(self) -> int:
        """Elements of state such as batch norm's running statistics: saved, never learned."""
        return sum(spec.size for node in self.op_nodes for spec in node.param_specs.values()
                   if not spec.trainable)

    def summary(self) -> str:
        """One line: name, node count, parameters (state apart, as PyTorch and Keras count
        them), MACs per sample."""
        count = len(self.op_nodes)
        state = self.total_state
        params = f"{self.total_params - state:,} parameters" + (f" (+{state:,} state)" if state else "")
        return (f"{self.name}: {count} node{'s' if count != 1 else ''}, {params}, "
                f"{self.total_macs:,} MACs per sample")


def load(source: str | Path | dict, *, registry: Registry | None = None,
         plugins=()) -> Graph:
    """Load, validate and analyse a graph spec (a TOML/JSON path or a dict).

    Raises :class:`graphnet.SpecError` (or :class:`graphnet.spec.SpecErrors` holding several),
    each naming the file, node and field.
    """
    registry = registry or get_registry(plugins)
    spec = load_spec(source)
    return build_graph(spec, registry)


def build_graph(spec: Spec, registry: Registry) -> Graph:
    """Resolve ops and attributes, check for cycles, order the nodes and run the analyses."""
    missing = registry.missing_plugins(spec.requires)
    if missing:  # one error, instead of an unknown op for every node that uses them
        raise PluginError(f"this spec needs plugin {missing[0]!r}: install it, or pass "
                          "--plugin FILE / GRAPHNET_PLUGINS", file=spec.file,
                          field="graph.requires", found=", ".join(map(repr, missing)))
    problems: list[SpecError] = []
    nodes: dict[str, Node] = {}
    for position, input_spec in enumerate(spec.inputs.values()):
        nodes[input_spec.name] = Node(input_spec.name, index=-len(spec.inputs) + position,
                                      shape=input_spec.shape,
                                      dtype_kind="int" if input_spec.is_integer else "float")
    for node_spec in spec.nodes:
        try:
            nodes[node_spec.name] = _resolve_node(node_spec, registry)
        except SpecErrors as errors:
            problems.extend(e.with_context(file=spec.file, node=node_spec.name) for e in errors.errors)
        except GraphnetError as error:
            problems.append(SpecError(error.message, field=error.field, expected=error.expected,
                                      found=error.found, hint=error.hint,
                                      file=spec.file, node=node_spec.name))

    dag = nx.DiGraph()
    for name, node in nodes.items():
        dag.add_node(name)
    for node_spec in spec.nodes:
        for input_name in node_spec.inputs:
            dag.add_edge(input_name, node_spec.name)
    index = {name: -len(spec.inputs) + position for position, name in enumerate(spec.inputs)}
    index.update((node_spec.name, node_spec.index) for node_spec in spec.nodes)
    try:
        # The sort fails exactly when there is a cycle, and only then is one looked for:
        # find_cycle costs more than the sort on a graph of thousands of nodes.
        order = list(nx.lexicographical_topological_sort(dag, key=index.__getitem__))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(dag)
        names = [edge[0] for edge in cycle] + [cycle[0][0]]
        if len(names) > 12:  # a cycle through thousands of nodes: its ends say where it is
            names = names[:6] + [f"… {len(names) - 10} more …"] + names[-4:]
        problems.append(SpecError("the graph has a cycle", file=spec.file, node=names[0],
                                  field="inputs", expected="a DAG (no node may depend on itself)",
                                  found=" → ".join(names)))
    SpecErrors.raise_any(problems)

    graph = Graph(spec=spec, dag=dag, nodes=nodes, order=order, registry=registry,
                  warnings=list(spec.expansion.warnings) if spec.expansion else [])
    analysis.run_passes(graph)
    return graph


def _resolve_node(node_spec, registry: Registry) -> Node:
    """The node's op instance and parsed attributes; errors name the field."""
    entry = registry.entry("op", node_spec.op, field_name="op")
    op_class = entry.value
    try:
        op = op_class()
    except Exception as error:  # a plugin's constructor: name it, the other nodes go on
        raise plugin_failure(error, f"op {op_class.name!r} (plugin {entry.plugin!r}) could not "
                                    "be created", field="op")
    problems: list[SpecError] = []
    parsed = {}
    for key, value in node_spec.attrs.items():
        if key not in op_class.attrs:
            known = sorted(op_class.attrs)
            problems.append(SpecError(f"unknown attribute for op {op_class.name!r}", field=clip(key),
                                      expected="one of: " + (", ".join(known) or "no attributes"),
                                      hint=suggest(key, known)))
            continue
        try:
            parsed[key] = op_class.attrs[key].parse(value, key)
        except SpecError as error:
            problems.append(error)
    for key, attr in op_class.attrs.items():
        if key not in node_spec.attrs:
            if attr.required:
                problems.append(SpecError(f"missing required attribute of op {op_class.name!r}",
                                          field=key, expected=attr.describe()))
            else:
                parsed[key] = _default_value(attr, key, op_class, entry.plugin)
    low, high = op_class.arity_range()
    count = len(node_spec.inputs)
    if count < low or (high is not None and count > high):
        wanted = str(low) if low == high else (f"at least {low}" if high is None
                                                else f"{low} to {high}")
        problems.append(SpecError(f"op {op_class.name!r} takes {wanted} input(s)", field="inputs",
                                  expected=f"{wanted} input(s)", found=f"{count}: {node_spec.inputs}"))
    weights = {}
    if node_spec.weights is not None:
        try:
            weights = _parse_weights(node_spec.weights)
        except SpecError as error:
            problems.append(error)
    SpecErrors.raise_any(problems)
    return Node(name=node_spec.name, index=node_spec.index, op_name=op_class.name, op=op,
                plugin=entry.plugin, attrs=SimpleNamespace(**parsed),
                inputs=tuple(node_spec.inputs), trainable=node_spec.trainable,
                fixed_weights=weights)


def _default_value(attr, key: str, op_class, plugin: str):
    """An attribute's default in the same normalised form as a written value (1 → (1, 1) for a
    pair), so an op sees one form; None stays None ("not given")."""
    if attr.default is None:
        return None
    try:
        return attr.parse(attr.default, key)
    except SpecError as error:
        raise PluginError(f"plugin {plugin!r}, op {op_class.name!r}: the default of attribute "
                          f"{key!r} is invalid: {error.render()}") from None


def _parse_weights(raw) -> dict[str, np.ndarray]:
    """``weights = [[...]]`` (the op's first parameter) or ``weights = { name = [...] }``."""
    if isinstance(raw, list):
        return {"": parse_number_array(raw, "weights")}
    if isinstance(raw, dict):
        return {str(name): parse_number_array(value, f"weights.{name}")
                for name, value in raw.items()}
    raise SpecError("wrong type", field="weights",
                    expected="a list of numbers or a table of parameter name → list",
                    found=type(raw).__name__)

