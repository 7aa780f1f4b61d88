"""``graphnet gradcheck SPEC``: compare every gradient with central differences in float64."""
from __future__ import annotations

from ._common import load_graph, non_negative_int, positive_float, positive_int

ORDER = 20
HELP = "check gradients against finite differences"


def register(subparsers, common) -> None:
    from ..gradcheck import DEFAULT_TOLERANCE

    parser = subparsers.add_parser(
        "gradcheck", parents=[common], help=HELP,
        description="Check every parameter's and input's gradient against central differences "
        "in float64 on a small random batch. Exit 0 when all agree within the tolerance, 1 when not.")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    parser.add_argument("--batch-size", type=positive_int, default=2, help="samples in the batch (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=positive_float, default=DEFAULT_TOLERANCE,
                        help=f"largest relative error allowed (default {DEFAULT_TOLERANCE:g})")
    parser.add_argument("--points", type=non_negative_int, default=6,
                        help="single coordinates checked per array, besides one random direction "
                        "through all of it (default 6; 0 for directions only)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..errors import UsageError
    from ..gradcheck import gradcheck
    from ..render.checks import render_gradcheck

    if args.batch_size < 1:
        raise UsageError("bad argument", field="--batch-size", expected="an integer >= 1",
                         found=str(args.batch_size))
    graph = load_graph(args, args.spec)
    report = gradcheck(graph, batch_size=args.batch_size, seed=args.seed,
                       tolerance=args.tolerance, points_per_array=max(args.points, 0))
    render_gradcheck(graph, report)
    return 0 if report.passed else 1
