"""A spec dict as readable TOML: ``[graph]``, ``[inputs]``, one ``[[nodes]]`` table per node,
``[outputs]``. Values are what an import produces: strings, integers, finite floats, booleans
and lists of them."""
from __future__ import annotations

import json
import math
import re

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def spec_to_toml(spec: dict, header: str = "") -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    if lines:
        lines.append("")
    lines.append("[graph]")
    lines += [f"{_key(k)} = {_value(v)}" for k, v in spec["graph"].items()]
    lines += ["", "[inputs]"]
    for name, declaration in spec["inputs"].items():
        table = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in declaration.items())
        lines.append(f"{_key(name)} = {{ {table} }}")
    for node in spec["nodes"]:
        lines += ["", "[[nodes]]"]
        lines += [f"{_key(k)} = {_value(v)}" for k, v in node.items()]
    lines += ["", "[outputs]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in spec["outputs"].items()]
    for section in ("train",):
        if spec.get(section):
            lines += ["", f"[{section}]"]
            lines += [f"{_key(k)} = {_value(v)}" for k, v in spec[section].items()]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a spec holds finite numbers only, not {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} in a spec")


def spec_to_json(spec: dict) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
