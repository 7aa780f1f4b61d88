"""``graphnet check SPEC...``: validate specs, one summary line each or one message per problem."""
from __future__ import annotations

from ._common import add_memory_limit_argument, load_graph, warn_about

ORDER = 10
COMPUTES = False
HELP = "validate graph specs"


def register(subparsers, common) -> None:
    parser = subparsers.add_parser("check", parents=[common], help=HELP,
                                   description="Validate graph specs, the whole file: the graph, "
                                   "its [train] section and [outputs]; exit 0 when all are "
                                   "valid, 2 when any is not (one message per problem).")
    parser.add_argument("specs", nargs="+", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    add_memory_limit_argument(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from .. import checks, limits
    from ..errors import GraphnetError
    from ..render import print_error, print_result, print_warning

    limits.memory_limit(args.memory_limit)  # a bad --memory-limit is reported before any spec
    status = 0
    for path in args.specs:
        try:
            graph = load_graph(args, path)
        except GraphnetError as error:
            print_error(error)
            status = 2
            continue
        # Known from the spec alone: a graph that cannot train even one sample at a time.
        warn_about(graph, path, batch_size=1, memory_limit=args.memory_limit)
        for hint in checks.spec_hints(graph):
            print_warning(hint)
        problems = checks.spec_problems(graph)  # the rest of the file: [train], [outputs]
        for problem in problems:
            print_error(problem)
        if problems:
            status = 2
            continue
        print_result("ok", "green", f"{path}: {graph.summary()}")
    return status
