"""``graphnet export SPEC --to torch|onnx [-o FILE]``: the graph as a PyTorch module's source, or
its inference graph with parameters as an ONNX model."""
from __future__ import annotations

from ..errors import UsageError
from ._common import load_graph, non_negative_int, output_path

ORDER = 85
HELP = "write the graph as PyTorch source or an ONNX model"
TARGETS = ("onnx", "torch")
METADATA = ("standardise", "class_names")
"""The checkpoint metadata an ONNX export carries as ``graphnet.<key>`` (JSON) properties."""


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "export", parents=[common], help=HELP,
        description="--to torch (the default) translates a spec into a Python module holding "
        "an nn.Module class: layers in __init__, forward() in the graph's order, and "
        "load_graphnet_params() to copy a graphnet network's or checkpoint's parameters in; "
        "writing it does not need PyTorch. --to onnx writes the inference graph (no labels, "
        "no loss) with its parameters, from --checkpoint or else the spec's initial ones for "
        "--seed, as an ONNX model (opset 17, batch axis N); it needs the onnx extra.")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    parser.add_argument("--to", choices=TARGETS, default="torch",
                        help="the format (default torch)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write it here (default for torch: print it; onnx needs a file)")
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="onnx: the parameters of this checkpoint (or run dir holding one)")
    parser.add_argument("--seed", type=non_negative_int, default=None, metavar="N",
                        help="onnx without --checkpoint: the spec's initial parameters for "
                        "this seed (default 0)")
    parser.set_defaults(run=run)


def run(args) -> int:
    if args.output:
        output_path(args, args.output, reads=_reads(args))
    if args.to == "onnx":
        return _onnx(args)
    for flag, value in (("--checkpoint", args.checkpoint), ("--seed", args.seed)):
        if value is not None:
            raise UsageError(f"{flag} applies to --to onnx", field=flag,
                             hint="the PyTorch module holds no parameters: its "
                             "load_graphnet_params() copies a checkpoint's in")
    from ..export.torch import to_source

    graph = load_graph(args, args.spec)
    source = to_source(graph)
    if args.output:
        from ..files import atomic_write_text

        atomic_write_text(args.output, source)
        _wrote(args.output)
    else:
        print(source, end="")
    return 0


def _onnx(args) -> int:
    import json

    from ..engine import Network
    from ..export.onnx import export_onnx, require_onnx

    if not args.output:
        raise UsageError("an ONNX model is a binary file", field="-o",
                         expected="-o FILE (for example net.onnx)")
    if args.checkpoint is not None and args.seed is not None:
        raise UsageError("--seed chooses initial parameters, --checkpoint gives trained ones",
                         field="--seed", expected="one of --checkpoint and --seed")
    require_onnx()  # before any work: a missing extra is the first thing to say
    graph = load_graph(args, args.spec)
    network = Network(graph, seed=args.seed or 0)
    metadata = {}
    if args.checkpoint is not None:
        from ..checkpoint import find_checkpoint, restore_params

        meta = restore_params(find_checkpoint(args.checkpoint), network).meta
        # what a runtime needs besides the graph: training's input statistics (the model
        # takes standardised images, as the network does) and the class names
        metadata = {f"graphnet.{key}": json.dumps(meta[key]) for key in METADATA if key in meta}
    export_onnx(network, args.output, metadata=metadata)
    _wrote(args.output)
    return 0


def _reads(args) -> list[tuple[str, str]]:
    """The files export reads: the spec and the checkpoint (in a run folder, the one used)."""
    reads = [("spec", args.spec)]
    if args.checkpoint is not None:
        from ..checkpoint import find_checkpoint

        reads.append(("checkpoint", find_checkpoint(args.checkpoint)))
    return reads


def _wrote(path) -> None:
    from ..render import stdout

    stdout().print(f"wrote {path}", soft_wrap=True, markup=False)
