"""Read a graph spec (TOML or JSON, one schema) into a validated, plain :class:`Spec`.

This module checks structure only: sections, names, references, types of the reserved keys.
Whether an op exists and its attributes are right is checked by :mod:`graphnet.graph`, which
knows the registry.
"""
from __future__ import annotations

import json
import math
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .blocks import expand, node_inputs as node_inputs_of
from .errors import SpecError, one_per_cause
from .text import clip, suggest

RESERVED_NODE_KEYS = ("name", "op", "inputs", "trainable", "weights")
"""Keys of a node that are not op attributes (an op may not declare an attribute of these names)."""

SECTIONS = ("graph", "inputs", "nodes", "outputs", "train", "blocks")
GRAPH_KEYS = ("name", "description", "format", "requires")
INPUT_KEYS = ("shape", "dtype")
INPUT_DTYPES = ("float32", "float64", "int64", "int32")
MAX_NAME_LENGTH = 200
MAX_SPEC_BYTES = 256 * 2**20
"""Larger spec files are refused before reading: a spec is text, weights belong in checkpoints."""
MAX_SUGGESTIONS = 20
"""Unknown names past this many get no "did you mean" (each is a pass over every name)."""


@dataclass
class InputSpec:
    """A named input: per-sample ``shape`` and ``dtype`` (float32 unless given)."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def is_integer(self) -> bool:
        return self.dtype.startswith("int")


@dataclass
class NodeSpec:
    """A node as written: op name, input names, raw attributes, trainability and fixed weights."""

    name: str
    op: str
    inputs: list[str]
    attrs: dict[str, Any]
    trainable: bool = True
    weights: Any = None
    index: int = 0


@dataclass
class Spec:
    """A whole graph spec, structurally valid (names unique, references resolved)."""

    name: str
    description: str
    inputs: dict[str, InputSpec]
    nodes: list[NodeSpec]
    outputs: dict[str, str]
    train: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    """Plugins the spec needs, by name (``graph.requires``); the graph builder checks them."""
    expansion: Any = None
    """For a format-2 spec, the :class:`graphnet.blocks.Expansion` of its blocks."""

    @property
    def loss(self) -> str | None:
        """The node whose scalar output backward differentiates (``outputs.loss``), if any."""
        return self.outputs.get("loss")


class SpecErrors(SpecError):
    """Several problems found in one spec; ``errors`` holds each as its own SpecError."""

    def __init__(self, errors: list[SpecError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def render(self) -> str:
        return "\n".join(str(e) for e in getattr(self, "errors", []))

    @classmethod
    def raise_any(cls, problems: list[SpecError]) -> None:
        """Raise the problems found, if any: one as itself, several together, each cause once
        (see :func:`graphnet.errors.one_per_cause`)."""
        problems = one_per_cause(problems)
        if problems:
            raise problems[0] if len(problems) == 1 else cls(problems)


def read_spec_file(path: str | Path) -> dict:
    """Parse a .toml or .json file into a dict; syntax errors name the line and column."""
    path = Path(path)
    if path.suffix.lower() not in (".toml", ".json"):
        # an ONNX model carries weights a spec has no place for: loading only its graph
        # would run it on fresh ones
        hint = ("an ONNX model: graphnet.import_onnx(path) gives its graph and weights, and "
                "every graphnet command takes the file as it is"
                if path.suffix.lower() == ".onnx" else None)
        raise SpecError("cannot tell the spec's format", file=path,
                        expected="a file ending in .toml or .json",
                        found=repr(path.suffix or "no suffix"), hint=hint)
    try:
        status = path.stat()
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError
        # A FIFO or a device (/dev/zero) could block or never end; a huge file would fill memory.
        if not stat.S_ISREG(status.st_mode):
            raise SpecError("spec path is not a regular file", file=path, expected="a file")
        if status.st_size > MAX_SPEC_BYTES:
            raise SpecError("spec file is too large", file=path,
                            expected=f"at most {MAX_SPEC_BYTES // 2**20} MiB",
                            found=f"{status.st_size / 2**20:.0f} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError("spec file not found", file=path) from None
    except IsADirectoryError:
        raise SpecError("spec path is a directory", file=path, expected="a file") from None
    except OSError as error:
        raise SpecError(f"cannot read spec: {error.strerror}", file=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise SpecError("spec is not UTF-8 text", file=path,
                        found=f"byte 0x{data[error.start]:02x} at line {line}, column {column} "
                              f"(offset {error.start})") from None
    if not text.strip():
        raise SpecError("spec file is empty", file=path,
                        expected="[inputs], [[nodes]] and [outputs] sections")
    if path.suffix.lower() == ".toml":
        try:
            parsed = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise SpecError(f"TOML syntax error: {_with_end_position(str(error), text)}",
                            file=path) from None
        except RecursionError:
            raise SpecError("TOML syntax error: arrays or tables nested too deeply",
                            file=path) from None
    else:
        try:
            parsed = json.loads(text, parse_constant=_reject_constant,
                                parse_int=lambda digits: _parse_json_int(digits, text),
                                object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            raise SpecError(f"JSON syntax error: {error.msg} (at line {error.lineno}, "
                            f"column {error.colno})", file=path) from None
        except _RepeatedKey as error:
            where = f" in the object named {error.object_name!r}" if error.object_name else ""
            raise SpecError(f"a key given twice{where}", file=path, field=error.key,
                            expected="each key once (JSON readers keep only the last; TOML "
                                     "refuses it)",
                            found=" and ".join(json.dumps(value, default=str)[:60]
                                               for value in error.values)) from None
        except RecursionError:
            raise SpecError("JSON syntax error: arrays or objects nested too deeply",
                            file=path) from None
        except ValueError as error:
            raise SpecError(f"JSON syntax error: {error}", file=path) from None
    if not isinstance(parsed, dict):
        raise SpecError("spec must be an object/table at the top level", file=path,
                        found=type(parsed).__name__)
    return parsed


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number a spec may hold")


def _unique_keys(pairs: list) -> dict:
    """A JSON object whose keys are unique. json.loads keeps the last of a repeated key, so
    ``"kernel": 3, "kernel": 5`` built a 5×5 conv without a word; TOML refuses the same."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            name = dict(pairs).get("name")
            raise _RepeatedKey(key, [seen[key], value], name if isinstance(name, str) else None)
        seen[key] = value
    return seen


class _RepeatedKey(Exception):
    def __init__(self, key: str, values: list, object_name: str | None):
        super().__init__(key)
        self.key, self.values, self.object_name = key, values, object_name


def _position(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"line {line}, column {offset - text.rfind(chr(10), 0, offset)}"


def _with_end_position(message: str, text: str) -> str:
    """tomllib says "at end of document" without a line; name the last line and column."""
    return message.replace("(at end of document)",
                           f"(at {_position(text, len(text))}: the end of the file)")


def _parse_json_int(digits: str, text: str) -> int:
    """An integer from JSON; one too long for Python to convert is named with its position."""
    try:
        return int(digits)
    except ValueError:
        raise ValueError(f"a number of {len(digits)} digits is too long "
                         f"(at {_position(text, max(text.find(digits), 0))})") from None


def parse_spec(data: dict, file: str | Path | None = None) -> Spec:
    """Validate the structure of a spec dict and return a :class:`Spec`.

    Every structural problem is collected; one raises :class:`SpecError`, several raise
    :class:`SpecErrors`. Each names the file, node and field.
    """
    file = None if file is None else str(file)
    problems: list[SpecError] = []

    def problem(message, **where):
        problems.append(SpecError(message, file=file, **where))

    if not isinstance(data, dict):
        raise SpecError("spec must be a table/object", file=file, found=type(data).__name__)
    data, expansion, block_problems = expand(data, file)  # format 2: blocks become plain nodes
    if block_problems:
        raise block_problems[0] if len(block_problems) == 1 else SpecErrors(block_problems)
    for key in data:
        if key not in SECTIONS:
            problem("unknown section", field=clip(key), expected="one of " + ", ".join(SECTIONS),
                    hint=suggest(key, SECTIONS))

    graph_section = _table(data.get("graph", {}), "graph", problem)
    name = graph_section.get("name", Path(file).stem if file else "graph")
    description = graph_section.get("description", "")
    for key, value, allowed in (("name", name, ""), ("description", description, "\n\t")):
        if not isinstance(value, str):
            problem("wrong type", field=f"graph.{clip(key)}", expected="a string", found=_show(value))
        elif not _printable(value, allowed):
            problem("control characters in text that is printed", field=f"graph.{key}",
                    expected="printable text" + (" (line breaks and tabs too)" if allowed else ""),
                    found=_show(value))
    for key in graph_section:
        if key not in GRAPH_KEYS:
            problem("unknown key", field=f"graph.{clip(key)}", expected=", ".join(GRAPH_KEYS),
                    hint=suggest(key, GRAPH_KEYS))
    requires = graph_section.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(r, str) and r for r in requires):
        problem("wrong type", field="graph.requires", expected='a list of plugin names such as '
                '["prelu"]', found=_show(requires))
        requires = []

    inputs = _parse_inputs(data.get("inputs"), problem)
    nodes = _parse_nodes(data.get("nodes"), inputs, problem)
    node_names = [n.name for n in nodes]
    outputs = _parse_outputs(data.get("outputs"), node_names, list(inputs), problem)
    train = _table(data.get("train", {}), "train", problem)

    SpecErrors.raise_any(problems)
    return Spec(name=name, description=description, inputs=inputs, nodes=nodes, outputs=outputs,
                train=train, file=file, raw=data, requires=requires, expansion=expansion)


def load_spec(source: str | Path | dict) -> Spec:
    """A Spec from a file path (TOML or JSON) or from an already parsed dict."""
    if isinstance(source, dict):
        return parse_spec(plain_data(source))
    return parse_spec(read_spec_file(source), file=source)


def plain_data(value):
    """A spec built in Python, as a parsed file would hold it: tuples become lists, numpy arrays
    nested lists and numpy scalars Python numbers (``[3, 32, 32]`` and ``(3, 32, 32)``,
    ``np.int64(16)`` and ``16`` and weights given as arrays all mean the same). Everything else
    is kept, for the checks that follow to judge."""
    try:
        return _plain(value)
    except RecursionError:
        raise SpecError("spec nested too deeply", expected="tables and lists a few levels deep") \
            from None


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return value.tolist()  # numpy is not imported to read a spec; its values say what they are
    return value


# --- sections --------------------------------------------------------------------------------
def _table(value, section: str, problem) -> dict:
    if isinstance(value, dict):
        return value
    problem("wrong type", field=section, expected="a table/object", found=_show(value))
    return {}


def _printable(text: str, allowed: str = "") -> bool:
    """No control characters but ``allowed`` ones: a spec's names and texts are printed, and
    an escape sequence in them would be obeyed by the reader's terminal."""
    return all(char.isprintable() or char in allowed for char in text)


def _valid_name(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH and value.strip() == value \
        and value.isprintable()


def _parse_inputs(section, problem) -> dict[str, InputSpec]:
    if section is None:
        problem("missing section", field="inputs",
                expected='at least one input, e.g. image = { shape = [3, 32, 32] }')
        return {}
    section = _table(section, "inputs", problem)
    if not section:
        problem("no inputs", field="inputs", expected="at least one named input")
    inputs = {}
    for name, declaration in section.items():
        field_name = f"inputs.{clip(name)}"
        if not _valid_name(name):
            problem("bad input name", field=field_name,
                    expected=f"a printable name of 1 to {MAX_NAME_LENGTH} characters without "
                    "surrounding spaces", found=_show(name))
            continue
        if not isinstance(declaration, dict):
            problem("wrong type", field=field_name, expected="a table such as { shape = [1, 28, 28] }",
                    found=_show(declaration))
            continue
        for key in declaration:
            if key not in INPUT_KEYS:
                problem("unknown key", field=f"{field_name}.{clip(key)}", expected="shape or dtype",
                        hint=suggest(key, INPUT_KEYS))
        shape = declaration.get("shape")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) for d in shape):
            problem("bad shape", field=f"{field_name}.shape",
                    expected="a list of positive integers (per sample, e.g. [3, 32, 32]; [] for a "
                    "scalar such as a label)", found=_show(shape))
            inputs[name] = InputSpec(name, (), "float32")  # named by nodes: no second error
            continue
        if any(d <= 0 for d in shape):
            problem("bad shape", field=f"{field_name}.shape", expected="dimensions >= 1",
                    found=_show(shape))
            inputs[name] = InputSpec(name, (), "float32")
            continue
        dtype = declaration.get("dtype", "float32")
        if dtype not in INPUT_DTYPES:
            problem("bad dtype", field=f"{field_name}.dtype",
                    expected="one of " + ", ".join(INPUT_DTYPES), found=_show(dtype),
                    hint=suggest(dtype, INPUT_DTYPES))
            dtype = "float32"  # kept, so that the nodes naming it report nothing more
        inputs[name] = InputSpec(name, tuple(shape), dtype)
    return inputs


def _parse_nodes(section, inputs: dict, problem) -> list[NodeSpec]:
    if section is None:
        problem("missing section", field="nodes", expected="a list of [[nodes]]")
        return []
    if not isinstance(section, list):
        problem("wrong type", field="nodes", expected="a list of tables ([[nodes]])",
                found=_show(section))
        return []
    nodes: list[NodeSpec] = []
    seen: dict[str, int] = {}
    previous: str | None = None  # the node written before this one, even if it was faulty
    for index, raw in enumerate(section):
        label = f"nodes[{index}]"
        if not isinstance(raw, dict):
            problem("wrong type", field=label, expected="a table with name and op", found=_show(raw))
            continue
        name = raw.get("name")
        if not _valid_name(name):
            problem("bad or missing node name", field=f"{label}.name",
                    expected=f"a printable name of 1 to {MAX_NAME_LENGTH} characters",
                    found=_show(name))
            continue
        if name in seen or name in inputs:
            problem("duplicate name", node=name, field="name",
                    expected="a name used once", found=f"{name!r} also used by "
                    + (f"nodes[{seen[name]}]" if name in seen else f"input {name!r}"))
            continue
        seen[name] = index
        before, previous = previous, name
        op = raw.get("op")
        if not isinstance(op, str) or not op:
            problem("missing op", node=name, field="op", expected="an op name such as 'conv2d'",
                    found=_show(op))
            continue
        node_inputs, fault = node_inputs_of(raw.get("inputs"), before, list(inputs))
        if fault:
            problem(fault.pop("message"), node=name, field="inputs", **fault)
            continue
        trainable = raw.get("trainable", True)
        if not isinstance(trainable, bool):
            problem("wrong type", node=name, field="trainable", expected="true or false",
                    found=_show(trainable))
            continue
        attrs = {k: v for k, v in raw.items() if k not in RESERVED_NODE_KEYS}
        nodes.append(NodeSpec(name, op, node_inputs, attrs, trainable, raw.get("weights"), index))

    known = set(inputs) | set(seen)
    suggestions = MAX_SUGGESTIONS  # each costs a pass over every name: not for thousands
    for node in nodes:
        for input_name in node.inputs:
            if input_name not in known:
                suggestions -= 1
                problem("unknown input", node=node.name, field="inputs",
                        expected="the name of an input or node", found=_show(input_name),
                        hint=suggest(input_name, known) if suggestions >= 0 else None)
    return nodes


def _parse_outputs(section, node_names: list[str], input_names: list[str], problem) -> dict[str, str]:
    if section is None:
        return {"output": node_names[-1]} if node_names else {}
    section = _table(section, "outputs", problem)
    outputs = {}
    for key, target in section.items():
        if isinstance(key, str) and not _printable(key):
            problem("bad output name", field=f"outputs.{clip(key)}",
                    expected="a printable name", found=_show(key))
        elif not isinstance(target, str):
            problem("wrong type", field=f"outputs.{clip(key)}", expected="a node name",
                    found=_show(target))
        elif target not in node_names and target not in input_names:
            problem("output names a missing node", field=f"outputs.{clip(key)}",
                    expected="the name of a node", found=_show(target),
                    hint=suggest(target, node_names))
        else:
            outputs[str(key)] = target
    return outputs


def _show(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
