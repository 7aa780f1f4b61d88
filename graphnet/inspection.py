"""What ``graphnet inspect``, ``ops`` and ``show`` display, as plain data: no printing, no rich.

- :func:`figures`: per-node rows (shape, parameters, MACs, receptive field) and totals, the
  structure ``inspect --format json`` prints and the table renders;
- :func:`lane_rows`: a git-log-style lane drawing of the DAG (forks, merges, skip connections);
- :func:`to_dot`, :func:`to_mermaid`: the DAG as text for diagram tools;
- :func:`field_view`: where one unit's receptive field lies on the input image;
- :func:`op_catalogue`: every registered op with its plugin, attributes and docs;
- :func:`filter_nodes`, :func:`filter_weights`, :func:`activation_maps`, :func:`load_image`: the
  learned filters and activation maps of convolution-like nodes.

Like the engine, this module knows graphs, not layers: a "convolution" is any node whose op
slides a window (its receptive-field contribution is a :class:`graphnet.op.Window`) and owns a
4-D weight (filters × channels × height × width).
"""
from __future__ import annotations

import heapq
import inspect as pyinspect
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from .analysis import memory_estimate
from .errors import SpecError, UsageError
from .op import Op, Window, format_shape
from .registry import suggest

# --- per-node figures ------------------------------------------------------------------------


def node_rows(graph) -> list[dict]:
    """One dict per node in topological order (graph inputs first, op ``"input"``)."""
    rows = []
    sees_image = _nodes_seeing_image(graph)
    for name in graph.order:
        node = graph.nodes[name]
        field = node.receptive_field
        rows.append({
            "name": name,
            "op": node.op_name,
            "plugin": node.plugin,
            "inputs": list(node.inputs),
            "output_shape": list(node.shape) if node.shape is not None else None,
            "params": node.params,
            "trainable_params": _trainable(node),
            "macs": node.macs,
            "receptive_field": field.as_dict() if field is not None else None,
            "sees_image": name in sees_image,
        })
    return rows


def _trainable(node) -> int:
    """Parameters the optimizer updates: not state (batch norm's running statistics), not
    those of a frozen node."""
    if not node.trainable:
        return 0
    return sum(p.size for p in node.param_specs.values() if p.trainable)


def _state(node) -> int:
    """Arrays the engine keeps but never differentiates (batch norm's running statistics)."""
    return sum(p.size for p in node.param_specs.values() if not p.trainable)


def resolve_name(graph, name: str) -> str:
    """The node ``name`` stands for: itself, or for a block node (format 2) its output."""
    expansion = graph.spec.expansion
    return expansion.resolve(name) if expansion is not None else name


def _nodes_seeing_image(graph) -> set[str]:
    """The nodes an image input (C×H×W) reaches, where a None field means "all of it": one
    pass in topological order (a node sees the image when one of its inputs does), so a long
    chain or a wide fan-out costs linear time, not an ancestor search per node."""
    seeing: set[str] = set()
    for name in graph.order:
        node = graph.nodes[name]
        if (node.is_input and len(node.shape) == 3) or any(s in seeing for s in node.inputs):
            seeing.add(name)
    return seeing


def totals(graph, batch_size: int = 1) -> dict:
    """Parameters, MACs per sample and float32 memory for one batch of ``batch_size``."""
    if batch_size < 1:
        raise UsageError("bad argument", field="--batch-size", expected="an integer >= 1",
                         found=str(batch_size))
    memory = memory_estimate(graph, batch_size)
    trainable = sum(_trainable(node) for node in graph.nodes.values())
    state = sum(_state(node) for node in graph.nodes.values())
    return {
        "params": graph.total_params,
        "trainable_params": trainable,
        "non_trainable": graph.total_params - trainable - state,
        "state": state,
        "macs": graph.total_macs,
        "activation_bytes": memory["activation_bytes"],
        "parameter_bytes": memory["parameter_bytes"],
        "inference_bytes": memory["inference_bytes"],
        "training_bytes": memory["training_bytes"],
        "batch_size": batch_size,
    }


def figures(graph, batch_size: int = 1, *, for_table: bool = False, depth=0) -> dict:
    """Everything ``inspect`` shows, JSON-ready: every node (full names), every block instance
    with its totals (``blocks``), totals. ``for_table`` keeps each row's ``sees_image``, which
    tells a global node ("whole") from one without an image input, and adds ``rows``: the
    table's rows with blocks folded to ``depth`` (see :func:`folded_rows`)."""
    rows = node_rows(graph)
    instances = block_rows(graph, rows)
    result = {
        "graph": {"name": graph.name, "description": graph.spec.description,
                  "file": graph.file},
        "nodes": rows,
        "blocks": instances,
        "outputs": dict(graph.outputs),
        "totals": totals(graph, batch_size),
        "warnings": list(graph.warnings),
    }
    if for_table:
        result["rows"] = folded_rows(graph, rows, instances, depth)
    else:
        result["nodes"] = [{key: value for key, value in row.items() if key != "sees_image"}
                           for row in rows]
        for row in result["nodes"]:
            scope = _scope(graph, row["name"])
            if scope:
                row["block"] = scope[-1]
    return result


# --- blocks (spec format 2), folded ----------------------------------------------------------


def _scope(graph, name: str) -> tuple[str, ...]:
    expansion = graph.spec.expansion
    return expansion.scope.get(name, ()) if expansion is not None else ()


def block_rows(graph, rows: list[dict]) -> list[dict]:
    """One dict per block instance and per repeated group (outer before inner): its block,
    ``repeat``, nesting depth, parent, node count and the sums of its nodes' parameters and
    MACs, with its output's shape and receptive field."""
    expansion = graph.spec.expansion
    if expansion is None:
        return []
    by_name = {row["name"]: row for row in rows}
    result = []
    for instance in expansion.instances:
        members = [by_name[name] for name in instance.members]
        output = by_name[instance.output]
        result.append({
            "name": instance.name, "block": instance.block, "repeat": instance.repeat,
            "depth": instance.depth, "parent": instance.parent, "nodes": len(members),
            "output": instance.output, "output_shape": output["output_shape"],
            "params": sum(row["params"] for row in members),
            "trainable_params": sum(row["trainable_params"] for row in members),
            "macs": sum(row["macs"] for row in members),
            "receptive_field": output["receptive_field"],
        })
    return result


def parse_depth(text) -> int | None:
    """``--depth``: an integer >= 0 (how many levels of blocks to unfold) or ``all`` (None)."""
    if text is None:
        return 0
    if str(text).lower() == "all":
        return None
    if not str(text).isdigit():
        raise UsageError("bad argument", field="--depth", expected="an integer >= 0 or all",
                         found=repr(text))
    return int(text)


def _representative(graph, depth: int | None):
    """name → the row that shows it at ``depth``: the instance ``depth`` levels down that holds
    it, or the node itself. ``depth`` None unfolds everything."""
    expansion = graph.spec.expansion
    if expansion is None or depth is None:
        return lambda name: name
    scope = expansion.scope

    def representative(name: str) -> str:
        levels = scope.get(name, ())
        return levels[depth] if len(levels) > depth else name
    return representative


def _contracted(graph, depth: int | None):
    """(order, inputs of each row, representative) of the DAG with each block instance (at
    ``depth``) contracted to one row; None when a contraction would form a cycle (blocks of
    several inputs wired around each other), so the caller shows the nodes themselves."""
    import networkx as nx  # here, not at the top: `graphnet ops` needs no graph

    representative = _representative(graph, depth)
    first: dict[str, int] = {}
    inputs: dict[str, list[str]] = {}
    for position, name in enumerate(graph.order):
        row = representative(name)
        first.setdefault(row, position)
        sources = inputs.setdefault(row, [])
        for source in graph.nodes[name].inputs:
            source_row = representative(source)
            if source_row != row and source_row not in sources:
                sources.append(source_row)
    if len(first) == len(graph.order):
        return list(graph.order), inputs, representative
    dag = nx.DiGraph()
    dag.add_nodes_from(first)
    dag.add_edges_from((source, row) for row, sources in inputs.items() for source in sources)
    try:
        order = list(nx.lexicographical_topological_sort(dag, key=first.__getitem__))
    except nx.NetworkXUnfeasible:
        return None
    return order, inputs, representative


def folded_rows(graph, rows: list[dict], instances: list[dict], depth: int | None = 0) -> list:
    """The table's rows: each node, except that a block instance (or a repeated group, ``×N``)
    at ``depth`` shows as one row summing its nodes, with its output's shape and field."""
    contracted = _contracted(graph, depth)
    if contracted is None or graph.spec.expansion is None:
        return rows
    order, inputs, _ = contracted
    by_name = {row["name"]: row for row in rows}
    by_instance = {row["name"]: row for row in instances}
    result = []
    for name in order:
        if name in by_name:
            result.append(dict(by_name[name], inputs=inputs.get(name, [])))
            continue
        instance = by_instance[name]
        output = by_name[instance["output"]]
        label = instance["block"] + (f" ×{instance['repeat']}" if instance["repeat"] else "")
        result.append({
            "name": name, "op": label, "block": instance["block"],
            "repeat": instance["repeat"], "plugin": None, "inputs": inputs.get(name, []),
            "output_shape": instance["output_shape"], "params": instance["params"],
            "trainable_params": instance["trainable_params"], "macs": instance["macs"],
            "receptive_field": instance["receptive_field"], "sees_image": output["sees_image"],
        })
    return result


# --- the DAG as lanes ------------------------------------------------------------------------


@dataclass
class LaneRow:
    """One node of the lane drawing.

    ``connector`` is the row drawn above the node where other lanes join it or it branches off
    an existing lane (None when it simply continues the lane above); ``line`` holds the node's
    mark; ``below`` the lanes that pass on under it (for a row taller than one line).
    Lanes are two characters apart.
    """

    node: str
    column: int
    connector: str | None
    line: str
    below: str


INPUT_MARK, NODE_MARK = "○", "●"
DRAWN_LANES = 120
"""Lanes drawn at most (240 characters, wider than any terminal): a 4000-way fan-out keeps
thousands of lanes open, and drawing every one on every row would make the picture — and the
time to build and measure it — grow with nodes × lanes. Lines cut here end in ``…``."""


def lane_rows(graph, depth: int | None = 0) -> list[LaneRow]:
    """Lay the DAG out in lanes, in topological order, the way ``git log --graph`` does; block
    instances folded at ``depth`` as :func:`folded_rows` folds them.

    A lane carries a node's output down to its consumers. A node continues the lane of an input
    whose last consumer it is, else it opens a new lane (a branch, drawn ``├─╮``). Inputs whose
    lanes end here join it from the side (``╰``, ``╯``, ``┴``); inputs still needed below keep
    their lanes (``├``, ``┤``): a skip connection is a lane running beside a branch and joining
    it further down. Only the first :data:`DRAWN_LANES` lanes are drawn.
    """
    contracted = _contracted(graph, depth) if graph.spec.expansion is not None else None
    if contracted is None:
        order = graph.order
        inputs_of = {name: list(dict.fromkeys(graph.nodes[name].inputs)) for name in order}
        consumers_of = {name: graph.consumers(name) for name in order}
    else:
        order, inputs_of, _ = contracted
        consumers_of = {name: [] for name in order}
        for name in order:
            for source in inputs_of.get(name, []):
                consumers_of[source].append(name)
    lanes: list[str | None] = []
    lane_of: dict[str, int] = {}  # node → its lane's column, while the lane is open
    free: list[int] = []  # a heap of columns that were freed (some may be reused since)
    remaining: dict[str, int] = {}
    rows = []
    for name in order:
        is_input = name in graph.nodes and graph.nodes[name].is_input
        sources = list(dict.fromkeys(inputs_of.get(name, [])))
        column_of = {source: lane_of[source] for source in sources}
        ending = [s for s in sources if remaining[s] == 1]
        if ending:
            column = min(column_of[s] for s in ending)
        else:
            while free and (free[0] >= len(lanes) or lanes[free[0]] is not None):
                heapq.heappop(free)  # reused or trimmed off the end since it was freed
            column = free[0] if free else len(lanes)
        joining = [s for s in sources if column_of[s] != column]
        connector = (_connector(lanes, column, column_of, joining, remaining)
                     if joining else None)
        for source in sources:
            remaining[source] -= 1
            if remaining[source] == 0:
                lanes[column_of[source]] = None
                heapq.heappush(free, column_of[source])
                del lane_of[source]
        consumers = list(dict.fromkeys(consumers_of[name]))
        while len(lanes) <= column:
            heapq.heappush(free, len(lanes))
            lanes.append(None)
        if consumers:
            remaining[name] = len(consumers)
            lanes[column] = name
            lane_of[name] = column
        mark = INPUT_MARK if is_input else NODE_MARK
        line = _lane_line(lanes, {column: mark})
        while lanes and lanes[-1] is None:
            lanes.pop()
        rows.append(LaneRow(name, column, connector, line, _lane_line(lanes, {})))
    return rows


def _lane_line(lanes, marks: dict[int, str]) -> str:
    width = max([len(lanes)] + [c + 1 for c in marks])
    cells = [marks.get(i, "│" if i < len(lanes) and lanes[i] is not None else " ")
             for i in range(min(width, DRAWN_LANES))]
    return " ".join(cells).rstrip() + (" …" if width > DRAWN_LANES else "")


def _connector(lanes, column: int, column_of: dict, joining: list, remaining: dict) -> str:
    """The row where ``joining`` lanes turn into ``column`` (see :func:`lane_rows`)."""
    low = min([column] + [column_of[s] for s in joining])
    high = max([column] + [column_of[s] for s in joining])
    width = max(len(lanes), column + 1)
    joined_at = {column_of[s]: remaining[s] > 1 for s in joining}  # column → lane continues
    cells = []
    for i in range(min(width, DRAWN_LANES)):
        active = i < len(lanes) and lanes[i] is not None
        if i == column:
            from_above = active  # the node continues an input's lane
            left, right = low < column, high > column
            cells.append({(True, True, True): "┼", (True, True, False): "┤",
                          (True, False, True): "├", (False, True, True): "┬",
                          (False, True, False): "╮", (False, False, True): "╭"}
                         [(from_above, left, right)])
        elif i in joined_at:
            continues = joined_at[i]
            if i in (low, high):
                cells.append(("├" if continues else "╰") if i == low
                             else ("┤" if continues else "╯"))
            else:
                cells.append("┼" if continues else "┴")
        elif low < i < high:
            cells.append("┼" if active else "─")
        else:
            cells.append("│" if active else " ")
    text = "".join(cell + ("─" if low <= i < high else " ") for i, cell in enumerate(cells))
    return text.rstrip() + (" …" if width > DRAWN_LANES else "")


# --- diagram text ----------------------------------------------------------------------------


def _label_lines(graph, name: str) -> tuple[str, str]:
    node = graph.nodes[name]
    shape = format_shape(node.shape) if node.shape is not None else "?"
    return name, f"{node.op_name} {shape}"


def to_dot(graph) -> str:
    """Graphviz DOT: one box per node labelled with name, op and output shape."""
    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = [f"digraph {quote(graph.name)} {{", "  rankdir=TB;",
             '  node [shape=box, style=rounded, fontname="Helvetica"];']
    outputs = set(graph.outputs.values())
    for name in graph.order:
        title, detail = _label_lines(graph, name)
        style = ", shape=ellipse" if graph.nodes[name].is_input else (
            ", peripheries=2" if name in outputs else "")
        lines.append(f"  {quote(name)} [label={quote(title + chr(10) + detail)}{style}];")
    for name in graph.order:
        for source in dict.fromkeys(graph.nodes[name].inputs):
            lines.append(f"  {quote(source)} -> {quote(name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph) -> str:
    """A Mermaid flowchart. Node ids are generated (``n0``, ``n1``…) because a spec's names may
    hold any printable character; labels are quoted with Mermaid's entity escapes."""
    def label(text: str) -> str:
        escaped = "".join(_MERMAID_ESCAPES.get(ch, ch) for ch in text)
        return f'"{escaped}"'

    ids = {name: f"n{position}" for position, name in enumerate(graph.order)}
    lines = ["flowchart TD"]
    for name in graph.order:
        title, detail = _label_lines(graph, name)
        text = label(title + "\n" + detail).replace("\n", "<br/>")
        opening, closing = ("([", "])") if graph.nodes[name].is_input else ("[", "]")
        lines.append(f"  {ids[name]}{opening}{text}{closing}")
    for name in graph.order:
        for source in dict.fromkeys(graph.nodes[name].inputs):
            lines.append(f"  {ids[source]} --> {ids[name]}")
    return "\n".join(lines) + "\n"


_MERMAID_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "#": "#35;", "&": "#amp;"}


# --- receptive field on the image ------------------------------------------------------------


def field_view(graph, node_name: str, unit: tuple[int, int] | None = None) -> dict:
    """Where one unit of ``node_name`` looks in its input image.

    The unit defaults to the centre of the node's output. Coordinates are input pixels, rows
    then columns; the field's box is inclusive and may reach outside the image (padding).
    ``neighbours`` are the centres of the adjacent units' fields, ``jump`` pixels apart;
    ``path`` is the field size of every node on the way from the image, to show its growth.
    """
    import networkx as nx

    node_name = resolve_name(graph, node_name)
    if node_name not in graph.nodes:
        raise UsageError("unknown node", field="--rf", expected="a node of the graph",
                         found=repr(node_name), hint=suggest(node_name, graph.order))
    node = graph.nodes[node_name]
    images = [s for s in graph.order if s in nx.ancestors(graph.dag, node_name) | {node_name}
              and graph.nodes[s].is_input and len(graph.nodes[s].shape) == 3]
    if not images:
        raise UsageError(f"node {node_name!r} does not depend on an image input", field="--rf",
                         expected="a node fed by a C×H×W input")
    image = graph.nodes[images[0]]
    view = {"node": node_name, "op": node.op_name, "input": image.name,
            "image": list(image.shape[1:]), "path": _field_path(graph, node_name)}
    field = node.receptive_field
    if field is None:
        return dict(view, whole=True)
    out_h, out_w = node.shape[1:]
    if unit is None:
        unit = ((out_h - 1) // 2, (out_w - 1) // 2)
    if not (0 <= unit[0] < out_h and 0 <= unit[1] < out_w):
        raise UsageError("unit outside the node's output", field="--unit",
                         expected=f"Y in 0..{out_h - 1} and X in 0..{out_w - 1}",
                         found=f"{unit[0]},{unit[1]}")
    top, left = (field.start[a] + unit[a] * field.jump[a] for a in range(2))
    bottom, right = top + field.size[0] - 1, left + field.size[1] - 1

    def centre(y, x):
        return [field.start[0] + y * field.jump[0] + (field.size[0] - 1) / 2,
                field.start[1] + x * field.jump[1] + (field.size[1] - 1) / 2]

    neighbours = [centre(unit[0] + dy, unit[1] + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  if (dy or dx) and 0 <= unit[0] + dy < out_h and 0 <= unit[1] + dx < out_w]
    height, width = image.shape[1:]
    seen_rows = max(0, min(bottom, height - 1) - max(top, 0) + 1)
    seen_columns = max(0, min(right, width - 1) - max(left, 0) + 1)
    return dict(view, whole=False, output=[out_h, out_w], unit=list(unit),
                size=list(field.size), jump=list(field.jump), start=list(field.start),
                box={"top": top, "left": left, "bottom": bottom, "right": right},
                centre=centre(*unit), neighbours=neighbours,
                padded=top < 0 or left < 0 or bottom >= height or right >= width,
                coverage=seen_rows * seen_columns / (height * width))


def _field_path(graph, node_name: str) -> list[dict]:
    """The field size of each ancestor that changes it (and of the node), in topological order;
    None where the field is the whole input."""
    import networkx as nx

    wanted = nx.ancestors(graph.dag, node_name) | {node_name}
    path = []
    for name in graph.order:
        node = graph.nodes[name]
        if name not in wanted or node.is_input:
            continue
        field = node.receptive_field
        unchanged = any(graph.nodes[s].receptive_field == field for s in node.inputs)
        if name == node_name or not unchanged:
            path.append({"name": name, "op": node.op_name,
                         "size": list(field.size) if field is not None else None})
    return path


def parse_unit(text: str | None) -> tuple[int, int] | None:
    """``"Y,X"`` → (Y, X); None stays None."""
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
        raise UsageError("bad argument", field="--unit", expected="Y,X such as 3,4",
                         found=repr(text))
    return int(parts[0]), int(parts[1])


# --- the op catalogue ------------------------------------------------------------------------


def op_catalogue(registry) -> list[dict]:
    """Every registered op, in registration order (so grouped by plugin), with its plugin,
    arity, attributes and docs."""
    return [describe_op(registry, name) for name in registry.entries["op"]]


def describe_op(registry, name: str) -> dict:
    """One op in full; an unknown name raises SpecError with a suggestion."""
    entry = registry.entry("op", name, field_name="op")
    op_class = entry.value
    low, high = op_class.arity_range()
    attributes = []
    for attr_name, attr in op_class.attrs.items():
        attributes.append({
            "name": attr_name, "kind": attr.kind, "required": attr.required,
            "default": None if attr.required else _plain(attr.default),
            "default_text": "required" if attr.required else format_default(attr.default),
            "accepts": attr.describe(),
            "choices": list(attr.choices) if attr.choices else None,
            "minimum": attr.minimum, "maximum": attr.maximum, "doc": attr.doc,
        })
    return {
        "name": op_class.name, "plugin": entry.plugin, "doc": op_class.doc(),
        "docstring": pyinspect.cleandoc(op_class.__doc__ or ""),
        "arity": [low, high], "arity_text": _arity_text(low, high),
        **_parameters_of(op_class),
        "integer_inputs": list(op_class.integer_inputs), "is_loss": op_class.is_loss,
        "attributes": attributes,
    }


SAMPLE_INPUT_SHAPE = (4, 6, 6)
"""The per-sample shape the catalogue gives an op to ask which parameters it creates."""


SAMPLE_ATTR_VALUES = {"int": 2, "float": 1.0, "bool": True, "str": "", "pair": (1, 1),
                      "padding": (0, 0), "shape": (), "array": np.ones(1)}
"""Stand-ins for required attributes when the catalogue asks an op which parameters it makes."""


def _parameters_of(op_class) -> dict:
    """``has_params`` and, where the op can say without a spec, the names of its learned
    parameters and of its state (such as batch norm's running statistics), as created with its
    default attributes (required ones given sample values) and sample inputs. An op that
    overrides ``params`` may still create none; one that cannot answer is reported as
    creating some."""
    if op_class.params is Op.params:
        return {"has_params": False, "learned": [], "state": []}
    attrs = {}
    for name, attr in op_class.attrs.items():
        if not attr.required:
            attrs[name] = attr.default
        elif attr.choices:
            attrs[name] = attr.choices[0]
        else:
            sample = SAMPLE_ATTR_VALUES[attr.kind]
            attrs[name] = max(sample, attr.minimum) if attr.kind in ("int", "float") and \
                attr.minimum is not None else sample
    try:
        specs = op_class().params([SAMPLE_INPUT_SHAPE] * max(op_class.arity_range()[0], 1),
                                  SimpleNamespace(**attrs))
        learned = [name for name, spec in specs.items() if spec.trainable]
        state = [name for name, spec in specs.items() if not spec.trainable]
    except Exception:  # noqa: BLE001 — a plugin's params() on made-up inputs: no answer
        return {"has_params": True, "learned": None, "state": None}
    return {"has_params": bool(specs), "learned": learned, "state": state}


def _arity_text(low: int, high: int | None) -> str:
    if high == low:
        return f"{low} input" + ("" if low == 1 else "s")
    if high is None:
        return f"{low} or more inputs"
    return f"{low} to {high} inputs"


def format_default(value) -> str:
    """A default as a spec would write it: ``1`` for (1, 1), ``true``, ``"same"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return str(value[0])
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_default(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, np.ndarray):
        return f"array {format_shape(value.shape)}"
    return str(value)


def _plain(value):
    """A default as JSON can hold it (a plugin's unusual default becomes its text)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# --- filters and activation maps -------------------------------------------------------------


def filter_nodes(graph) -> list[str]:
    """Nodes that slide a window with a 4-D weight (filters, channels, height, width), in order."""
    found = []
    for node in graph.op_nodes:
        if _filter_param(node) is None:
            continue
        contribution = node.op.receptive_field(graph.input_shapes(node.name),
                                               node.attrs)
        if isinstance(contribution, Window):
            found.append(node.name)
    return found


def _filter_param(node) -> str | None:
    for name, param in node.param_specs.items():
        if len(param.shape) == 4:
            return name
    return None


def pick_filter_node(graph, name: str | None = None) -> str:
    """``name`` if it is a convolution-like node, else the first one; errors say what exists."""
    found = filter_nodes(graph)
    if name is None:
        if not found:
            raise SpecError("the spec has no convolution layer (a node that slides a window and "
                            "has a 4-D filter weight), so there are no filters to show",
                            file=graph.file)
        return found[0]
    name = resolve_name(graph, name)
    if name not in graph.nodes:
        raise UsageError("unknown node", field="--node", expected="a node of the graph",
                         found=repr(name), hint=suggest(name, found or graph.order))
    if name not in found:
        raise UsageError(f"node {name!r} (op {graph.nodes[name].op_name}) has no filters",
                         field="--node",
                         expected="a convolution layer: " + (", ".join(found) or "none in this spec"))
    return name


def filter_weights(network, node_name: str) -> np.ndarray:
    """The node's filters as float64, shape (filters, channels, height, width)."""
    node = network.graph.nodes[node_name]
    return np.asarray(network.params[node_name][_filter_param(node)], dtype=np.float64)


def load_image(path, graph, index: int = 0) -> tuple[str, np.ndarray]:
    """One image for the graph's first image input, read as training and prediction read them
    (:func:`graphnet.inference.read_images`: an ``.npz``/``.npy`` of images or a picture;
    0–255 integers become 0–1); returns (input name, float32 array of shape 1×C×H×W)."""
    from .inference import read_images  # the one reader of images to predict on

    inputs = [n for n in graph.inputs
              if len(graph.nodes[n].shape) == 3 and graph.nodes[n].dtype_kind == "float"]
    if not inputs:
        raise SpecError("the spec has no image input (C×H×W)", file=graph.file)
    images = read_images(path, graph.nodes[inputs[0]].shape)
    if not -len(images) <= index < len(images):
        raise UsageError("bad argument", field="--index",
                         expected=f"0..{len(images) - 1}", found=str(index))
    return inputs[0], images[index % len(images)][None]


def standardised(image: np.ndarray, meta: dict, path=None) -> tuple[np.ndarray, bool]:
    """The image as the trained network saw its training data: standardised with the
    statistics a checkpoint (``path``) stores, when it stores them, refused unless they fit
    the image as predict refuses them; returns (image, whether it was)."""
    from .inference import stored_standardiser

    if not (meta and meta.get("standardise")):
        return image, False
    return stored_standardiser(meta, image.shape[1:], path)(image), True


def activation_maps(network, input_name: str, image: np.ndarray, node_names) -> dict:
    """Each named node's output for one image (batch of one), as (channels, height, width)."""
    node_names = list(node_names)
    network.forward({input_name: image}, outputs=(), capture=node_names)
    return {name: np.asarray(network.captured[name][0], dtype=np.float64) for name in node_names}


def shrink(array: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor``×``factor`` blocks of the last two axes (edges padded by repetition)."""
    if factor <= 1:
        return array
    height, width = array.shape[-2:]
    pad_h, pad_w = (-height) % factor, (-width) % factor
    widths = [(0, 0)] * (array.ndim - 2) + [(0, pad_h), (0, pad_w)]
    padded = np.pad(array, widths, mode="edge")
    new_shape = padded.shape[:-2] + (padded.shape[-2] // factor, factor,
                                     padded.shape[-1] // factor, factor)
    return padded.reshape(new_shape).mean(axis=(-3, -1))


def zoom_for(size: int, target: int) -> int:
    """The integer zoom that brings ``size`` pixels closest to ``target`` without exceeding it
    (at least 1)."""
    return max(1, target // max(size, 1))


def shrink_for(size: int, limit: int) -> int:
    """The smallest integer factor that brings ``size`` within ``limit``."""
    return max(1, math.ceil(size / max(limit, 1)))
