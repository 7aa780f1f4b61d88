"""``graphnet check SPEC...``: validate specs, one summary line each or one message per problem."""
from __future__ import annotations

from ..errors import GraphnetError
from ..render import print_error, print_warning, stdout
from ._common import load_graph

ORDER = 10


def register(subparsers, common) -> None:
    parser = subparsers.add_parser("check", parents=[common], help="validate graph specs",
                                   description="Validate graph specs: exit 0 when all are valid, "
                                   "2 when any is not (one message per problem).")
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="TOML or JSON graph spec")
    parser.set_defaults(run=run)


def run(args) -> int:
    status = 0
    for path in args.specs:
        try:
            graph = load_graph(args, path)
        except GraphnetError as error:
            print_error(error)
            status = 2
            continue
        for warning in graph.warnings:
            print_warning(warning)
        stdout().print(f"[green]ok[/] {path}: {graph.summary()}", soft_wrap=True)
    return status
