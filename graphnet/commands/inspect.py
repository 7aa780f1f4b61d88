"""``graphnet inspect SPEC``: per-node shapes, parameters, MACs and receptive fields, the DAG's
lanes, totals; ``--format json|dot|mermaid`` for scripts and diagram tools; ``--rf NODE`` draws
where one unit of NODE looks in the input image."""
from __future__ import annotations

import sys

from ..errors import UsageError
from ._common import add_memory_limit_argument, load_graph, warn_about

ORDER = 15
COMPUTES = False
HELP = "shapes, parameters, MACs and receptive fields"
FORMATS = ("table", "json", "dot", "mermaid")


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "inspect", parents=[common], help=HELP,
        description="Show every node of a graph spec in topological order with its output "
        "shape, parameters, multiply-accumulates and receptive field (size, jump, start in "
        "input pixels), the DAG's branches and merges, and totals. Nothing is run.")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    add_memory_limit_argument(parser)
    parser.add_argument("--format", choices=FORMATS, default="table",
                        help="table (default), json (the figures for scripts), dot (Graphviz) "
                        "or mermaid")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N",
                        help="batch size for the memory estimate (default 1)")
    parser.add_argument("--depth", metavar="N", default=None,
                        help="blocks (spec format 2) show folded, one row each; N unfolds N "
                        "levels of them, all every node (default 0)")
    parser.add_argument("--rf", metavar="NODE",
                        help="draw the receptive field of one unit of NODE on the input image")
    parser.add_argument("--unit", metavar="Y,X",
                        help="with --rf: the unit (output row, column); default the centre")
    parser.set_defaults(run=run)


def run(args) -> int:
    import json
    from .. import inspection, limits

    if args.batch_size < 1:
        raise UsageError("bad argument", field="--batch-size", expected="an integer >= 1",
                         found=str(args.batch_size))
    if args.unit is not None and args.rf is None:
        raise UsageError("--unit needs --rf NODE", field="--unit")
    depth = inspection.parse_depth(args.depth)
    limits.memory_limit(args.memory_limit)  # a bad --memory-limit is reported first
    graph = load_graph(args, args.spec)
    warn_about(graph, args.spec, batch_size=args.batch_size, memory_limit=args.memory_limit)
    if args.rf is not None:
        if args.format in ("dot", "mermaid"):
            raise UsageError("--rf draws a picture or, with --format json, gives its figures",
                             field="--format", expected="table or json", found=args.format)
        view = inspection.field_view(graph, args.rf, inspection.parse_unit(args.unit))
        if args.format == "json":
            sys.stdout.write(json.dumps(view, indent=2) + "\n")
        else:
            from ..render.inspect import render_field  # rich, for the tables only

            render_field(view)
        return 0
    if args.format == "json":
        sys.stdout.write(json.dumps(inspection.figures(graph, args.batch_size), indent=2) + "\n")
    elif args.format == "dot":
        sys.stdout.write(inspection.to_dot(graph))
    elif args.format == "mermaid":
        sys.stdout.write(inspection.to_mermaid(graph))
    else:
        from ..render.inspect import render_inspect

        render_inspect(inspection.figures(graph, args.batch_size, for_table=True, depth=depth),
                       inspection.lane_rows(graph, depth))
    return 0
