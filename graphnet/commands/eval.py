"""``graphnet eval SPEC``: test loss, accuracy and confusion matrix of a checkpoint."""
from __future__ import annotations

from ._common import load_graph
from ._training import (EVAL_FLAGS, add_checkpoint_flag, add_setting_flags, checkpoint_path,
                        overrides_from_args)

ORDER = 40
HELP = "evaluate a checkpoint on the test split"


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "eval", parents=[common], help=HELP,
        description="Report the test loss, accuracy and per-class confusion matrix of a "
        "checkpoint, in eval mode, on the dataset it was trained on (or --dataset).")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    add_checkpoint_flag(parser)
    add_setting_flags(parser, EVAL_FLAGS)
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..render import print_warning
    from ..render.training import render_evaluation
    from ..train import evaluate_checkpoint
    from ..runtime import own_process

    if args.owns_process:  # the `graphnet` program, not a call from Python
        own_process()  # malloc may keep freed memory from step to step
    graph = load_graph(args, args.spec)
    overrides, labels = overrides_from_args(args, EVAL_FLAGS)
    path = checkpoint_path(args, graph)
    evaluation, trained = evaluate_checkpoint(graph, path, labels=labels, **overrides)
    for warning in trained.warnings:
        print_warning(warning)
    epoch = trained.checkpoint.meta.get("epoch")
    render_evaluation(evaluation, trained.class_names,
                      f"{graph.name}: {path}" + (f" (after epoch {epoch})" if epoch else ""))
    return 0
