"""A JSON Schema of the spec format, built from the registry: every op with its attributes
(types, ranges, defaults, docs), plugins' ops included, the blocks of format 2 and the
``[train]`` keys. ``graphnet schema`` prints it; editors that read JSON Schema (taplo and VS
Code's Even Better TOML for TOML files, VS Code itself for JSON) then complete op names and flag
unknown attributes as a spec is typed.

The schema is draft-07, the draft that taplo and VS Code read. It checks what can be known
from the file alone; shapes, references between nodes and expressions are checked by graphnet.
"""
from __future__ import annotations

from typing import Any

from .blocks import FORMAT
from .op import REQUIRED, Attr
from .spec import GRAPH_KEYS, INPUT_DTYPES
from .train_config import NAMED_KEYS, SCALAR_KEYS

DRAFT = "http://json-schema.org/draft-07/schema#"
EXPRESSION = {"type": "string", "pattern": r"^\$\{.*\}$",
              "description": "inside a block: an expression over the block's arguments"}
PAIR_ITEMS = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}


def attribute_schema(attr: Attr) -> dict[str, Any]:
    """One attribute as JSON Schema: its kind, bounds, choices, default and doc."""
    bounds = {key: value for key, value in (("minimum", attr.minimum),
                                            ("maximum", attr.maximum)) if value is not None}
    if attr.kind == "int":
        schema: dict[str, Any] = {"type": "integer", **bounds}
    elif attr.kind == "float":
        schema = {"type": "number", **bounds}
    elif attr.kind == "bool":
        schema = {"type": "boolean"}
    elif attr.kind == "str":
        schema = {"type": "string"}
        if attr.choices:
            schema["enum"] = list(attr.choices)
    elif attr.kind == "pair":
        items = dict(PAIR_ITEMS, items={"type": "integer", **bounds})
        schema = {"anyOf": [{"type": "integer", **bounds}, items]}
    elif attr.kind == "padding":
        schema = {"anyOf": [{"enum": ["valid", "same"]}, {"type": "integer", "minimum": 0},
                            dict(PAIR_ITEMS, items={"type": "integer", "minimum": 0}),
                            {"type": "array", "minItems": 4, "maxItems": 4,
                             "items": {"type": "integer", "minimum": 0}}]}
    elif attr.kind == "shape":
        schema = {"type": "array", "items": {"type": "integer", **bounds}}
    else:  # array: nested lists of numbers
        schema = {"type": "array"}
    description = attr.doc or attr.describe()
    schema["description"] = f"{description} ({attr.describe()})" if attr.doc else description
    if attr.default is not REQUIRED and _json_value(attr.default):
        schema["default"] = attr.default
    return schema


def _json_value(value) -> bool:
    return value is not None and isinstance(value, (bool, int, float, str, list))


def _reserved(expressions: bool) -> dict[str, Any]:
    names = {"type": "array", "items": {"type": "string"}}
    return {
        "name": {"type": "string", "minLength": 1, "description": "the node's name, unique"},
        "inputs": {"anyOf": [{"type": "string"}, names],
                   "description": "the names of its inputs (default: the node before it)"},
        "trainable": _maybe({"type": "boolean", "description": "false freezes its parameters"},
                            expressions),
        "weights": {"anyOf": [{"type": "array"}, {"type": "object"}],
                    "description": "fixed weights: a list (its first parameter) or a table of "
                                   "parameter name → list"},
    }


def _maybe(schema: dict, expressions: bool) -> dict:
    return {"anyOf": [schema, EXPRESSION], "description": schema.get("description", "")} \
        if expressions else schema


def node_schema(registry, *, expressions: bool) -> dict[str, Any]:
    """A node: an op node (its attributes checked against the op) or a block node (its
    arguments are the block's, known only from the file). ``expressions`` allows ``"${...}"``
    for attribute values, as inside a block."""
    ops = registry.entries["op"]
    rules = []
    for name, entry in ops.items():
        op_class = entry.value
        properties = dict(_reserved(expressions))
        properties["op"] = {"const": name}
        for key, attr in op_class.attrs.items():
            properties[key] = _maybe(attribute_schema(attr), expressions)
        required = [key for key, attr in op_class.attrs.items() if attr.required]
        then: dict[str, Any] = {"properties": properties, "additionalProperties": False}
        if required:
            then["required"] = required
        rules.append({"if": {"properties": {"op": {"const": name}}, "required": ["op"]},
                      "then": then})
    return {
        "type": "object",
        "required": ["name"],
        "properties": {
            **_reserved(expressions),
            "op": {"enum": list(ops), "description": "the op: " + ", ".join(ops),
                   "markdownEnumDescriptions": [_op_doc(e.value) for e in ops.values()]},
            "block": {"type": "string", "description": "instead of op: an instance of this "
                                                       "block (spec format 2)"},
            "repeat": _maybe({"type": "integer", "minimum": 1,
                              "description": "with block: chain this many instances"},
                             expressions),
        },
        "oneOf": [{"required": ["op"], "not": {"required": ["block"]}},
                  {"required": ["block"], "not": {"required": ["op"]}}],
        "allOf": rules,
    }


def _op_doc(op_class) -> str:
    return (op_class.__doc__ or "").strip().split("\n")[0]


def spec_schema(registry) -> dict[str, Any]:
    """The JSON Schema of a whole spec (TOML or JSON, one schema)."""
    train_properties: dict[str, Any] = {key: attribute_schema(attr)
                                        for key, attr in SCALAR_KEYS.items()}
    for key, default in NAMED_KEYS.items():
        names = registry.names(key)
        train_properties[key] = {
            "anyOf": [{"enum": names}, {"type": "object", "required": ["name"],
                                        "properties": {"name": {"enum": names}}}],
            "description": f"a {key} name, or a table of its name and options "
                           f"(default {default!r})"}
    transforms = registry.names("transform")
    train_properties["augment"] = {
        "type": "array", "items": {"anyOf": [
            {"type": "string", "pattern": "^(" + "|".join(transforms) + ")(:.*)?$"},
            {"type": "object", "required": ["name"], "properties": {"name": {"enum": transforms}}}]},
        "description": 'transforms of the training batches, e.g. ["crop:4", "flip"]'}
    graph_properties = {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "format": {"enum": list(range(1, FORMAT + 1)),
                   "description": "the spec format: 1 (plain nodes) or 2 (blocks)"},
        "requires": {"type": "array", "items": {"type": "string"},
                     "description": "plugins the spec needs, by name"},
    }
    assert set(graph_properties) == set(GRAPH_KEYS)
    return {
        "$schema": DRAFT,
        "title": "graphnet graph spec",
        "description": "A CNN as data: inputs, nodes (ops or blocks), outputs and training.",
        "type": "object",
        "additionalProperties": False,
        "required": ["inputs", "nodes"],
        "definitions": {"node": node_schema(registry, expressions=False),
                        "block_node": node_schema(registry, expressions=True)},
        "properties": {
            "graph": {"type": "object", "properties": graph_properties,
                      "additionalProperties": False},
            "inputs": {"type": "object", "minProperties": 1, "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["shape"],
                "properties": {
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 1},
                              "description": "per sample: channels, height, width for "
                                             "images; [] for a scalar such as a label"},
                    "dtype": {"enum": list(INPUT_DTYPES), "default": "float32"}}}},
            "nodes": {"type": "array", "items": {"$ref": "#/definitions/node"}},
            "blocks": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["nodes"],
                "properties": {
                    "args": {"type": "object", "description": "arguments and their defaults"},
                    "required": {"type": "array", "items": {"type": "string"}},
                    "inputs": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                               "default": ["x"]},
                    "output": {"type": "string", "description": "the node whose value the "
                                                                "block gives (default: the last)"},
                    "description": {"type": "string"},
                    "nodes": {"type": "array", "minItems": 1,
                              "items": {"$ref": "#/definitions/block_node"}}}}},
            "outputs": {"type": "object", "additionalProperties": {"type": "string"}},
            "train": {"type": "object", "properties": train_properties,
                      "additionalProperties": False},
        },
    }
