"""``graphnet export SPEC --to torch [-o FILE]``: the graph as a PyTorch module's source."""
from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import UsageError
from ..files import atomic_write_text
from ._common import load_graph

ORDER = 85
TARGETS = {"torch": "graphnet.export.torch"}
"""Each target's module; its ``to_source(graph)`` writes the translation (imported when used)."""


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "export", parents=[common], help="write the graph as PyTorch source",
        description="Translate a spec into a Python module holding an nn.Module class: layers "
        "in __init__, forward() in the graph's order, and load_graphnet_params() to copy a "
        "graphnet network's or checkpoint's parameters in. Writing it does not need PyTorch.")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    parser.add_argument("--to", choices=sorted(TARGETS), default="torch",
                        help="the framework (default torch)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the module here (default: print it)")
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.output and Path(args.output).is_dir():
        # else the atomic write fails renaming its temp file, and names that temp file
        raise UsageError("cannot write the module", file=args.output, field="-o",
                         expected="a file name", found="a directory")
    graph = load_graph(args, args.spec)
    source = importlib.import_module(TARGETS[args.to]).to_source(graph)
    if args.output:
        from ..render import stdout

        atomic_write_text(args.output, source)
        stdout().print(f"wrote {args.output}", soft_wrap=True, markup=False)
    else:
        print(source, end="")
    return 0
