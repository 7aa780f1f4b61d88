"""``graphnet train SPEC``: train on the spec's ``[train]`` settings, overridden by flags."""
from __future__ import annotations

from ._common import add_memory_limit_argument, load_graph
from ._training import (add_setting_flags, add_worker_flags, command_line, overrides_from_args,
                        worker_settings)

ORDER = 30
HELP = "train a graph on a dataset"
INTERRUPTED = 130


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "train", parents=[common], help=HELP,
        description="Train a graph spec with its [train] settings, each overridable by a flag. "
        "A checkpoint and history.json are written to the run directory after every epoch, and "
        "best.npz holds the epoch with the lowest validation loss; the test split is evaluated "
        "once, at the end. Ctrl-C or SIGTERM stops after the current step and writes a "
        "checkpoint that --resume continues bit for bit. A run holds its directory: a second "
        "run into it is refused. Exit 0 when done (or stopped early), 2 on bad input or a "
        "non-finite or exploding loss, 130 (Ctrl-C) or 143 (SIGTERM) when stopped.")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec, or an ONNX model (.onnx)")
    add_setting_flags(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the run directory's checkpoint")
    parser.add_argument("--init-from", metavar="CKPT", default=None,
                        help="start from this checkpoint's parameters (or a run dir's), with a "
                        "fresh optimizer: fine-tune, e.g. the NET.npz graphnet import wrote")
    parser.add_argument("--new-run-dir", action="store_true",
                        help="when the run directory is in use by another run or holds an "
                        "earlier one, train into a fresh one beside it (RUN_DIR-2, -3, …)")
    parser.add_argument("--watch", action="store_true", default=None,
                        help="after each epoch, show gradient norms, update ratios and zero "
                        "activations per node")
    add_memory_limit_argument(parser)
    add_worker_flags(parser)
    parser.add_argument("--max-failures", dest="max_failures", default=None, metavar="N",
                        help="with --workers: restarts from the last checkpoint allowed after a "
                        "worker dies or stops answering (default 3); one more stops the run "
                        "with exit 2")
    parser.set_defaults(run=run)


def run(args) -> int:
    from ..inspection import filter_nodes
    from ..render.training import TrainingView, render_next_steps, render_stack
    from ..stack import deepest_field_node, describe
    from ..train import train
    from ..runtime import own_process

    if args.owns_process:  # the `graphnet` program, not a call from Python
        own_process()  # malloc may keep freed memory from step to step
    graph = load_graph(args, args.spec)
    overrides, labels = overrides_from_args(args)
    distributed = worker_settings(args)
    if args.watch:
        overrides["watch"], labels["watch"] = True, "--watch"
    render_stack(str(describe(graph)))
    with TrainingView(resume_command=command_line(args, "--resume")) as view:
        result = train(graph, resume=args.resume, on_event=view, labels=labels,
                       memory_limit=args.memory_limit, new_run_dir=args.new_run_dir,
                       init_from=args.init_from, **distributed, **overrides)
    if not result.interrupted:
        if result.checkpoint is not None:
            render_next_steps(args.spec, deepest_field_node(graph),
                              result.checkpoint if filter_nodes(graph) else None)
        return 0
    return 128 + result.stop_signal if result.stop_signal else INTERRUPTED  # 130, or 143
