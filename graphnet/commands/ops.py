"""``graphnet ops [NAME]``: the op catalogue (every registered op, its plugin, attributes and
doc), or one op in full."""
from __future__ import annotations

import sys

from ._common import registry_from_args

ORDER = 16
COMPUTES = False
HELP = "list the registered ops (layers)"


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "ops", parents=[common], help=HELP,
        description="List every registered op with the plugin it came from, its attributes "
        "(with defaults) and its one-line doc; name one op to see it in full.")
    parser.add_argument("name", nargs="?", metavar="NAME", help="show this op in full")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="table (default) or json")
    parser.set_defaults(run=run)


def run(args) -> int:
    import json
    from .. import inspection

    registry = registry_from_args(args)
    if args.name:
        detail = inspection.describe_op(registry, args.name)
        if args.format == "json":
            sys.stdout.write(json.dumps(detail, indent=2) + "\n")
        else:
            from ..render.inspect import render_op  # rich, for the tables only

            render_op(detail)
        return 0
    catalogue = inspection.op_catalogue(registry)
    if args.format == "json":
        sys.stdout.write(json.dumps(catalogue, indent=2) + "\n")
    else:
        from ..render.inspect import render_catalogue

        render_catalogue(catalogue)
    return 0
