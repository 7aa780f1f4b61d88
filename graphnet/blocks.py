"""Spec format 2: reusable blocks, expanded into the plain format-1 node list.

A block is a named sub-graph with arguments (``[blocks.NAME]``: ``args``, ``required``,
``inputs``, ``output`` and ``[[blocks.NAME.nodes]]``). A node with ``block = "NAME"`` instead of
``op`` is an instance of it; ``repeat = N`` chains N instances. :func:`expand` turns a format-2
spec dict into a format-1 one (nodes named ``NODE.INNER``, ``NODE.I.INNER`` under ``repeat``,
joined when nested) plus an :class:`Expansion` that remembers which node came from which
instance, so inspect can fold them back and a block node's name can stand for its output.

Inside a block, a value that is a whole string ``"${...}"`` is an expression over the block's
arguments: names, integers, floats, ``+ - * / //``, unary signs and parentheses. It is parsed
with :mod:`ast` and walked under a strict whitelist; nothing is ever evaluated by Python.
``"${name}"`` alone gives the argument itself, of whatever type.
"""
from __future__ import annotations

import ast
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError
from .text import suggest

FORMAT = 2
"""The newest spec format this graphnet reads (format 1: no blocks; 2: blocks)."""
BLOCK_KEYS = ("args", "required", "inputs", "output", "nodes", "description")
INSTANCE_KEYS = ("name", "block", "inputs", "repeat", "trainable")
STRUCTURE = ("name", "op", "block", "inputs")
"""A node's keys that shape the graph: never expressions, fixed where they are written."""
"""Keys of a block node that are not arguments of the block."""
MAX_EXPRESSION = 200
"""Longest expression text: enough for any real formula, too short to build huge numbers."""
MAX_EXPANDED_NODES = 100_000
"""Nested repeats multiply; past this many nodes the spec is refused rather than expanded."""
MAX_REPEAT = 10_000
_EXPRESSION = re.compile(r"\A\$\{(.*)\}\Z", re.DOTALL)


class BlockError(SpecError):
    """A problem inside a block or an instance of it: names the block as well as node and field."""

    def __init__(self, message: str = "", *, block=None, **where):
        self.block = block
        super().__init__(message, **where)

    def where(self) -> str:
        location = super().where()
        if self.block is None:
            return location
        label = f"block {self.block!r}"
        if self.file and location.startswith(self.file):
            rest = location[len(self.file):].lstrip(": ")
            return f"{self.file}: {label}" + (f", {rest}" if rest else "")
        return f"{label}, {location}" if location else label


@dataclass
class Instance:
    """One block instance, or a repeated group of them, as expanded.

    ``name`` is the block node's full name (``layer1``, ``layer1.0``, ``body.2.second``);
    ``repeat`` is N for a group of N chained instances and None for a single instance;
    ``members`` are the full names of every op node inside it (nested ones too), in spec order;
    ``output`` is the op node whose value the instance gives.
    """

    name: str
    block: str
    repeat: int | None
    depth: int
    parent: str | None
    members: list[str] = field(default_factory=list)
    output: str = ""


@dataclass
class Expansion:
    """What :func:`expand` learned: the instances (outer before inner), each op node's scope
    (the instances holding it, outermost first), block names standing for outputs, warnings."""

    format: int
    instances: list[Instance] = field(default_factory=list)
    scope: dict[str, tuple[str, ...]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def resolve(self, name: str) -> str:
        """The op node (or input) that ``name`` stands for: itself, or a block's output."""
        for _ in range(MAX_EXPANDED_NODES):
            if name not in self.aliases:
                return name
            name = self.aliases[name]
        return name  # pragma: no cover - aliases follow nesting and cannot loop


@dataclass
class _Block:
    name: str
    args: dict[str, Any]
    required: list[str]
    inputs: list[str]
    output: str
    nodes: list[dict]


def spec_format(data: dict, file=None) -> int:
    """The spec's ``graph.format``: 1 when absent without blocks, 2 when absent with them; a
    format newer than :data:`FORMAT` is refused."""
    graph = data.get("graph") if isinstance(data.get("graph"), dict) else {}
    if "format" not in graph:
        return 2 if "blocks" in data else 1
    value = graph["format"]
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError("bad spec format", file=file, field="graph.format",
                        expected=f"an integer from 1 to {FORMAT}", found=_show(value))
    if value > FORMAT:
        from . import __version__
        raise SpecError(f"this spec is written in format {value}, newer than this graphnet "
                        f"({__version__}) reads", file=file, field="graph.format",
                        expected=f"format 1 to {FORMAT}", found=str(value),
                        hint=f"install a graphnet that reads format {value}")
    if value == 1 and "blocks" in data:
        raise SpecError("blocks need spec format 2", file=file, field="graph.format",
                        expected="format = 2 (or no format key)", found="1")
    return value


def expand(data: dict, file=None) -> tuple[dict, Expansion | None, list[SpecError]]:
    """A format-2 spec dict → (the same spec as format 1, its :class:`Expansion`, problems).

    A format-1 dict is returned as it is with None. Each problem names the file, block, node
    and field; when there are any, the returned spec is not to be used. A format newer than
    :data:`FORMAT` raises SpecError.
    """
    if not isinstance(data, dict):
        return data, None, []
    fmt = spec_format(data, file)
    if fmt == 1:
        return data, None, []
    return _Expander(data, None if file is None else str(file), fmt).run()


class _Expander:
    def __init__(self, data: dict, file: str | None, fmt: int):
        self.data = data
        self.file = file
        self.expansion = Expansion(format=fmt)
        self.problems: list[SpecError] = []
        self.seen: set[tuple] = set()
        self.blocks: dict[str, _Block] = {}
        self.used: set[str] = set()
        self.count = 0

    # --- reporting ----------------------------------------------------------------------------
    def problem(self, message, *, block=None, node=None, field=None, **detail) -> None:
        key = (message, block, field, detail.get("found"))
        if key in self.seen:  # the same fault in every instance of a block: say it once
            return
        self.seen.add(key)
        self.problems.append(BlockError(message, block=block, node=node, field=field,
                                        file=self.file, **detail))

    def run(self) -> tuple[dict, Expansion, list[SpecError]]:
        self.read_blocks(self.data.get("blocks", {}))
        if not self.problems:
            self.check_cycles()
        nodes = self.data.get("nodes")
        expanded = self.expand_top(nodes) if isinstance(nodes, list) and not self.problems \
            else nodes
        if self.problems:
            return self.data, self.expansion, self.problems
        for name in self.blocks:
            if name not in self.used:
                self.expansion.warnings.append(
                    f"{self.file or 'spec'}: block {name!r} is defined but never used")
        for instance in self.expansion.instances:
            instance.output = self.expansion.resolve(instance.output)
        plain = {key: value for key, value in self.data.items() if key != "blocks"}
        plain["nodes"] = expanded
        outputs = self.data.get("outputs")
        if isinstance(outputs, dict):
            plain["outputs"] = {key: self.expansion.resolve(value) if isinstance(value, str)
                                else value for key, value in outputs.items()}
        return plain, self.expansion, []

    # --- block definitions --------------------------------------------------------------------
    def read_blocks(self, section) -> None:
        if not isinstance(section, dict):
            self.problem("wrong type", field="blocks", expected="a table of named blocks",
                         found=_show(section))
            return
        for name, raw in section.items():
            block = self.read_block(name, raw)
            if block is not None:
                self.blocks[name] = block

    def read_block(self, name: str, raw) -> _Block | None:
        where = dict(block=name)
        if not _valid_name(name):
            self.problem("bad block name", field="blocks", expected="a printable name",
                         found=_show(name))
            return None
        if not isinstance(raw, dict):
            self.problem("wrong type", field=f"blocks.{name}", expected="a table with inputs, "
                         "output and nodes", found=_show(raw), **where)
            return None
        for key in raw:
            if key not in BLOCK_KEYS:
                self.problem("unknown key", field=key, expected="one of " + ", ".join(BLOCK_KEYS),
                             found=_show(key), hint=_suggest(key, BLOCK_KEYS), **where)
        args = raw.get("args", {})
        if not isinstance(args, dict) or not all(_valid_identifier(a) for a in args):
            self.problem("bad args", field="args", expected="a table of argument names (letters, "
                         "digits, _) and their defaults", found=_show(args), **where)
            args = {}
        required = raw.get("required", [])
        if not isinstance(required, list) or not all(_valid_identifier(r) for r in required):
            self.problem("bad required", field="required", expected="a list of argument names",
                         found=_show(required), **where)
            required = []
        inputs = raw.get("inputs", ["x"])
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(_valid_name(i) for i in inputs) \
                or len(set(inputs)) != len(inputs):
            self.problem("bad inputs", field="inputs", expected="a list of distinct names the "
                         "block's nodes use for its inputs, such as [\"x\"]", found=_show(inputs),
                         **where)
            return None
        nodes = raw.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            self.problem("missing nodes", field="nodes", expected=f"at least one "
                         f"[[blocks.{name}.nodes]]", found=_show(nodes), **where)
            return None
        names: list[str] = []
        for index, node in enumerate(nodes):
            label = f"nodes[{index}]"
            if not isinstance(node, dict):
                self.problem("wrong type", field=label, expected="a table with name and op (or "
                             "block)", found=_show(node), **where)
                return None
            node_name = node.get("name")
            fixed = next((key for key in STRUCTURE if _has_expression(node.get(key))), None)
            if fixed is not None:  # else "${n}" was kept as a literal name, input or op
                self.problem("expressions are allowed only in attribute values",
                             node=node_name if isinstance(node_name, str) else None,
                             field=f"{label}.{fixed}", expected="a plain value: a node's name, "
                             "op, block and inputs are fixed where the block is written",
                             found=_show(node[fixed]), **where)
                return None
            if not _valid_name(node_name):
                self.problem("bad or missing node name", field=f"{label}.name",
                             expected="a printable name", found=_show(node_name), **where)
                return None
            if node_name in names or node_name in inputs:
                self.problem("duplicate name", node=node_name, field="name",
                             expected="a name used once in the block", found=_show(node_name),
                             **where)
                return None
            names.append(node_name)
        output = raw.get("output", names[-1])
        if output not in names:
            self.problem("output names a missing node", field="output",
                         expected="the name of one of the block's nodes", found=_show(output),
                         hint=_suggest(output, names), **where)
            return None
        known_args = set(args) | set(required)
        return _Block(name, dict(args), [r for r in required if r in known_args], inputs,
                      output, nodes)

    def check_cycles(self) -> None:
        """A block that uses itself, directly or through others, is named with its cycle."""
        uses = {name: [n.get("block") for n in block.nodes if isinstance(n.get("block"), str)]
                for name, block in self.blocks.items()}
        state: dict[str, int] = {}  # 1 on the current path, 2 done

        def visit(name: str, path: list[str]) -> bool:
            state[name] = 1
            path.append(name)
            for used in uses.get(name, []):
                if used not in self.blocks:
                    continue
                if state.get(used) == 1:
                    cycle = path[path.index(used):] + [used]
                    self.problem("a block uses itself", block=used, field="block",
                                 expected="blocks that do not contain themselves",
                                 found=" → ".join(cycle))
                    return True
                if used not in state and visit(used, path):
                    return True
            path.pop()
            state[name] = 2
            return False

        for name in self.blocks:
            if name not in state and visit(name, []):
                return

    # --- expansion ----------------------------------------------------------------------------
    def expand_top(self, nodes: list) -> list:
        """The top-level [[nodes]]: plain ones pass through, block nodes are expanded."""
        expanded: list = []
        graph_inputs = self.data.get("inputs")
        graph_inputs = list(graph_inputs) if isinstance(graph_inputs, dict) else []
        previous: str | None = None
        after_block = False
        for index, raw in enumerate(nodes):
            name = raw.get("name") if isinstance(raw, dict) else None
            if not isinstance(raw, dict) or "block" not in raw:
                if isinstance(raw, dict):
                    self.refuse_expressions(raw, name if isinstance(name, str) else f"nodes[{index}]")
                    if after_block and "inputs" not in raw and previous is not None:
                        raw = dict(raw, inputs=[previous])
                expanded.append(raw)
                after_block = False
                previous = name if isinstance(name, str) else previous
                continue
            if not _valid_name(name):
                self.problem("bad or missing node name", field=f"nodes[{index}].name",
                             expected="a printable name", found=_show(name))
                continue
            inputs, fault = node_inputs(raw.get("inputs"), previous, graph_inputs)
            if fault:
                self.problem(fault.pop("message"), node=name, field="inputs", **fault)
                continue
            self.refuse_expressions(raw, name)
            self.instantiate(raw, name, inputs, expanded, depth=0, parent=None, scope=(),
                             trainable=True, context=None)
            previous, after_block = name, True
        for node in expanded:  # a block's name stands for its output, wherever it is written
            if isinstance(node, dict) and isinstance(node.get("inputs"), list):
                inputs = node["inputs"]
                if any(isinstance(i, str) and i in self.expansion.aliases for i in inputs):
                    node["inputs"] = [self.expansion.resolve(i) if isinstance(i, str) else i
                                      for i in inputs]
        return expanded

    def refuse_expressions(self, raw: dict, name: str) -> None:
        for key, value in raw.items():
            if key not in STRUCTURE and _has_expression(value):
                self.problem("expressions are allowed only inside blocks", node=name,
                             field=str(key), expected="a plain value", found=_show(value))

    def instantiate(self, raw: dict, name: str, inputs: list[str], out: list, *, depth: int,
                    parent: str | None, scope: tuple, trainable: bool, context) -> None:
        """Expand one block node (with its ``repeat``) into ``out``. ``context`` is the block
        holding this node (None at the top level), for messages."""
        block_name = raw.get("block")
        where = dict(block=context, node=name)
        if "op" in raw:
            self.problem("a node has either op or block, not both", field="block",
                         expected="one of them", found=f"op = {_show(raw['op'])}, block = "
                         f"{_show(block_name)}", **where)
            return
        if not isinstance(block_name, str) or block_name not in self.blocks:
            known = sorted(self.blocks)
            self.problem(f"unknown block {_show(block_name)}", field="block",
                         expected="one of: " + (", ".join(known) or "no blocks are defined"),
                         found=_show(block_name), hint=_suggest(block_name, known), **where)
            return
        block = self.blocks[block_name]
        self.used.add(block_name)
        if "weights" in raw:
            self.problem("a block node takes no weights", field="weights",
                         expected="weights on the block's own nodes", found="weights", **where)
            return
        own_trainable = raw.get("trainable", True)
        if not isinstance(own_trainable, bool):
            self.problem("wrong type", field="trainable", expected="true or false",
                         found=_show(own_trainable), **where)
            return
        args = dict(block.args)
        for key, value in raw.items():
            if key in INSTANCE_KEYS:
                continue
            if key not in block.args and key not in block.required:
                known = sorted(set(block.args) | set(block.required))
                self.problem(f"unknown argument of block {block_name!r}", field=str(key),
                             expected="one of: " + (", ".join(known) or "no arguments"),
                             found=_show(key), hint=_suggest(key, known), **where)
                continue
            args[key] = value
        missing = [r for r in block.required if r not in raw]
        if missing:
            self.problem(f"missing required argument of block {block_name!r}",
                         field=missing[0], expected="a value for " + ", ".join(missing), **where)
            return
        repeat = raw.get("repeat")
        if repeat is not None:
            if not isinstance(repeat, int) or isinstance(repeat, bool) or \
                    not 1 <= repeat <= MAX_REPEAT:
                self.problem("bad repeat", field="repeat",
                             expected=f"an integer from 1 to {MAX_REPEAT}", found=_show(repeat),
                             **where)
                return
            if len(block.inputs) != 1:
                self.problem("repeat needs a block with one input", field="repeat",
                             expected=f"block {block_name!r} with one input",
                             found=f"{len(block.inputs)} inputs: {block.inputs}", **where)
                return
        if len(inputs) != len(block.inputs):
            self.problem(f"block {block_name!r} takes {len(block.inputs)} input(s)",
                         field="inputs", expected=f"{len(block.inputs)} input(s) "
                         f"(its {', '.join(block.inputs)})", found=f"{len(inputs)}: {inputs}",
                         **where)
            return
        trainable = trainable and own_trainable
        group = Instance(name, block_name, repeat, depth, parent)
        self.expansion.instances.append(group)
        if repeat is None:
            self.expand_instance(block, group, inputs, args, out, scope + (name,), trainable)
            self.expansion.aliases[name] = group.output
            return
        source = inputs
        for index in range(repeat):
            one = Instance(f"{name}.{index}", block_name, None, depth + 1, name)
            self.expansion.instances.append(one)
            self.expand_instance(block, one, source, args, out, scope + (name, one.name),
                                 trainable)
            self.expansion.aliases[one.name] = one.output
            group.members.extend(one.members)
            source = [one.name]
            if self.problems:
                return
        group.output = source[0]
        self.expansion.aliases[name] = group.output

    def expand_instance(self, block: _Block, instance: Instance, inputs: list[str], args: dict,
                        out: list, scope: tuple, trainable: bool) -> None:
        prefix = instance.name + "."
        local = dict(zip(block.inputs, inputs))
        inner_names = {node["name"] for node in block.nodes}
        previous = inputs[0] if len(inputs) == 1 else None
        for raw in block.nodes:
            inner = raw["name"]
            full = prefix + inner
            where = dict(block=block.name, node=full)
            node_inputs = raw.get("inputs")
            if node_inputs is None:
                if previous is None:
                    self.problem("inputs not given", field="inputs", expected="the names of its "
                                 f"inputs (the block has {len(block.inputs)} inputs)", **where)
                    return
                resolved = [previous]
            else:
                if isinstance(node_inputs, str):
                    node_inputs = [node_inputs]
                if not isinstance(node_inputs, list) or not all(isinstance(i, str)
                                                                for i in node_inputs):
                    self.problem("wrong type", field="inputs", expected="a list of names",
                                 found=_show(node_inputs), **where)
                    return
                resolved = []
                for source in node_inputs:
                    if source in local:
                        resolved.append(local[source])
                    elif source in inner_names:
                        resolved.append(prefix + source)
                    else:
                        known = sorted(set(block.inputs) | inner_names)
                        self.problem("unknown input", field="inputs",
                                     expected="one of the block's inputs or nodes: "
                                     + ", ".join(known), found=_show(source),
                                     hint=_suggest(source, known), **where)
                        return
            previous = full
            values = {}
            for key, value in raw.items():
                if key in STRUCTURE:
                    continue
                try:
                    values[key] = substitute(value, args)
                except SpecError as error:
                    self.problem(error.message, field=str(key), expected=error.expected,
                                 found=error.found, hint=error.hint, **where)
            if self.problems:
                return
            if "block" in raw:
                nested = dict(values, block=raw["block"])
                if "op" in raw:
                    nested["op"] = raw["op"]
                before = len(out)
                self.instantiate(nested, full, resolved, out, depth=len(scope), parent=instance.name,
                                 scope=scope, trainable=trainable, context=block.name)
                instance.members.extend(node["name"] for node in out[before:])
            else:
                self.count += 1
                if self.count > MAX_EXPANDED_NODES:
                    self.problem("blocks expand to too many nodes", field="repeat",
                                 expected=f"at most {MAX_EXPANDED_NODES:,} nodes in all",
                                 found=f"more, at {full!r}", **where)
                    return
                node = dict(values, name=full, op=raw.get("op"), inputs=resolved)
                if not trainable:
                    node["trainable"] = False
                out.append(node)
                self.expansion.scope[full] = scope
                instance.members.append(full)
            if self.problems:
                return
        instance.output = prefix + block.output


def node_inputs(written, previous: str | None, graph_inputs: list[str]):
    """(inputs, None) for a node: as written, else the node before it, else the spec's only
    input; (None, the problem's message and details) when neither is there or they are not
    names. Plain nodes (spec.py) and block nodes take their inputs alike."""
    if written is None:
        if previous is not None:
            return [previous], None
        if len(graph_inputs) == 1:
            return list(graph_inputs), None
        return None, dict(message="inputs not given", expected="the names of its inputs (the "
                          "first node has no node before it and the spec has "
                          f"{len(graph_inputs)} inputs)")
    if isinstance(written, str):
        written = [written]
    if not isinstance(written, list) or not all(isinstance(i, str) for i in written):
        return None, dict(message="wrong type", expected="a list of names", found=_show(written))
    return written, None


# --- expressions --------------------------------------------------------------------------------
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv}
_SIGNS = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//"}


def substitute(value, args: dict):
    """``value`` with every whole-string ``"${...}"`` in it (in lists and tables too) replaced
    by the expression's value over ``args``; raises SpecError naming what is wrong."""
    if isinstance(value, str):
        match = _EXPRESSION.match(value)
        if match:
            return evaluate(match.group(1), args)
        if "${" in value:
            raise SpecError("an expression must be the whole string", expected='"${...}" and '
                            "nothing around it", found=_show(value))
        return value
    if isinstance(value, list):
        return [substitute(item, args) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, args) for key, item in value.items()}
    return value


def evaluate(text: str, args: dict):
    """The value of one expression (the text inside ``${...}``) over the block's ``args``.

    A lone argument name gives the argument as it is (any type). Otherwise only numbers,
    argument names holding numbers, ``+ - * / //``, unary ``+ -`` and parentheses are allowed.
    """
    source = text.strip()
    if source in args:
        return args[source]
    if len(source) > MAX_EXPRESSION:
        raise SpecError("expression too long", expected=f"at most {MAX_EXPRESSION} characters",
                        found=f"{len(source)} characters")
    if not source:
        raise SpecError("empty expression", expected="an argument name or arithmetic",
                        found='"${}"')
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise SpecError("not an expression", expected="argument names, numbers, + - * / // "
                        "and parentheses", found=_show(source)) from None
    try:
        value = _value(tree.body, args, source)
    except ZeroDivisionError:
        raise SpecError("division by zero", found=_show(source)) from None
    except (OverflowError, RecursionError):
        raise SpecError("number too large", found=_show(source)) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError("number too large", found=_show(source))
    return value


def _value(node, args: dict, source: str):
    if isinstance(node, ast.Constant):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        raise _refused("a constant that is not a number", repr(node.value), source)
    if isinstance(node, ast.Name):
        if node.id not in args:
            known = sorted(args)
            raise SpecError(f"unknown name {node.id!r} in an expression",
                            expected="the block's arguments: " + (", ".join(known) or "none"),
                            found=_show(source), hint=_suggest(node.id, known))
        value = args[node.id]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SpecError(f"argument {node.id!r} is not a number, so it takes no part in "
                            "arithmetic", expected="a number", found=_show(value),
                            hint=f'"${{{node.id}}}" alone passes it on as it is')
        return value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left = _value(node.left, args, source)
        right = _value(node.right, args, source)
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _SIGNS:
        return _SIGNS[type(node.op)](_value(node.operand, args, source))
    if isinstance(node, ast.BinOp):
        return _refused_operator(node, source)
    what = {ast.Call: "a call", ast.Attribute: "an attribute", ast.Subscript: "an index",
            ast.Lambda: "a lambda", ast.Compare: "a comparison", ast.BoolOp: "and/or"}
    raise _refused(what.get(type(node), f"{type(node).__name__.lower()}"), None, source)


def _refused_operator(node, source: str):
    symbol = type(node.op).__name__
    raise _refused(f"the operator {symbol}", None, source)


def _refused(what: str, detail, source: str) -> SpecError:
    return SpecError(f"{what} is not allowed in an expression" + (f": {detail}" if detail else ""),
                     expected="argument names, numbers, + - * / // and parentheses",
                     found=_show(source))


# --- helpers ------------------------------------------------------------------------------------
def _has_expression(value) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, list):
        return any(_has_expression(item) for item in value)
    if isinstance(value, dict):
        return any(_has_expression(item) for item in value.values())
    return False


def _valid_name(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200 and value.strip() == value \
        and value.isprintable()


def _valid_identifier(value) -> bool:
    return isinstance(value, str) and value.isidentifier() and len(value) <= 100


def _suggest(name, known) -> str | None:
    return suggest(name, known) if isinstance(name, str) else None


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
