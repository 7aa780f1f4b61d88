"""Options of registered things that are not ops — optimizers, schedules, datasets — checked
against the same :class:`graphnet.op.Attr` schemas that ops use for their attributes.

``parse_options(schema, raw)`` returns the parsed values with defaults filled in, or raises a
SpecError whose ``field`` is the offending key; callers add where the value came from (the spec
file and ``train.optimizer.momentum``, or a command-line flag).
"""
from __future__ import annotations

from typing import Any

from .errors import SpecError
from .op import Attr
from .text import suggest


def parse_options(schema: dict[str, Attr], raw: dict[str, Any], *, what: str) -> dict[str, Any]:
    """Check ``raw`` against ``schema`` (``what`` names the owner in messages, e.g.
    ``"optimizer 'sgd'"``); unknown keys suggest the closest known one."""
    parsed = {}
    for key, value in raw.items():
        if key not in schema:
            known = sorted(schema)
            raise SpecError(f"unknown option of {what}", field=key,
                            expected="one of: " + (", ".join(known) or "no options"),
                            found=repr(key), hint=suggest(key, known))
        try:
            parsed[key] = schema[key].parse(value, key)
        except SpecError as error:
            raise SpecError(f"bad value for an option of {what}", field=key,
                            expected=error.expected, found=error.found) from None
    for key, attr in schema.items():
        if key in parsed:
            continue
        if attr.required:
            raise SpecError(f"missing required option of {what}", field=key,
                            expected=attr.describe())
        parsed[key] = attr.default
    return parsed


def literal(text: str) -> Any:
    """A command-line value such as ``32``, ``0.5``, ``true`` or ``data/x.npz`` as the type a
    spec would have given it."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text
