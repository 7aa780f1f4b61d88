"""``graphnet schema``: the JSON Schema of the spec format, built from the registry (plugins
included), for editors: save it and start a spec with ``#:schema PATH``."""
from __future__ import annotations

import sys

ORDER = 12
COMPUTES = False
HELP = "print the JSON Schema of the spec format"


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "schema", parents=[common], help=HELP,
        description="Print a JSON Schema (draft-07) of the spec format: every registered op "
        "with its attributes, types, ranges, defaults and docs (plugins' ops too), blocks and "
        "[train]. Save it (graphnet schema > graphnet-schema.json) and start a TOML spec with "
        "'#:schema graphnet-schema.json': taplo and VS Code's Even Better TOML then complete "
        "op names and flag unknown attributes as you type.")
    parser.set_defaults(run=run)


def run(args) -> int:
    import json
    from ..schema import spec_schema
    from ._common import registry_from_args

    sys.stdout.write(json.dumps(spec_schema(registry_from_args(args)), indent=2,
                                ensure_ascii=False) + "\n")
    return 0
