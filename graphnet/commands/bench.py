"""``graphnet bench SPEC``: time a training step and inference, per node and in total, and
measure peak memory; with ``--compare torch``, side by side with the same network in PyTorch."""
from __future__ import annotations

from ._common import load_graph
from ._training import add_worker_flags, worker_settings

ORDER = 80
HELP = "time training and inference, per node; compare with PyTorch"


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "bench", parents=[common], help=HELP,
        description="Time a training step (forward, loss, backward, SGD with momentum) and "
        "inference on a random batch: the median of --steps steps after --warmup, per node and "
        "in total, with GFLOP/s of the weighted layers next to numpy's matrix-product rate, and "
        "the peak memory of a fresh process running the steps. --compare torch builds the same "
        "network in PyTorch, checks that outputs and gradients agree, and times both "
        "alternately on the same threads. Exit 1 if they disagree. --workers N times a "
        "data-parallel step on N Ray workers instead: the step time and each worker's share of it "
        "in compute and in communication.")
    parser.add_argument("spec", metavar="SPEC",
                        help="TOML or JSON graph spec with a loss (or an ONNX model)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step (default 64)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for graphnet's ops and for PyTorch (default: the cores "
                        "this process may use)")
    parser.add_argument("--compare", choices=["torch"], default=None,
                        help="also run the network in this framework and print the ratios")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the peak-memory measurement (it runs fresh processes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["table", "json"], default="table",
                        help="tables for people (default) or JSON for scripts")
    add_worker_flags(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    from .. import bench
    from ..render.bench import render_bench, render_json
    from ..runtime import own_process

    if args.owns_process:  # the `graphnet` program, not a call from Python
        own_process()  # malloc may keep freed memory from step to step
    config = bench.BenchConfig(
        batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, threads=args.threads,
        compare=args.compare, seed=args.seed, memory=args.memory, plugins=tuple(args.plugin),
        disabled_plugins=tuple(args.disable_plugin))
    config.check()
    distributed = worker_settings(args)
    graph = load_graph(args, args.spec)
    if distributed:
        return _bench_workers(args, graph, distributed)
    report = bench.run(graph, config)
    if args.format == "json":
        render_json(bench.as_json(report))
    else:
        render_bench(report)
    agreement = report.get("agreement")
    return 1 if agreement is not None and not agreement["passed"] else 0


def _bench_workers(args, graph, distributed: dict) -> int:
    import json

    from ..distributed.training import bench
    from ..render.bench import render_json, render_workers

    if args.compare is not None:
        from ..errors import UsageError

        raise UsageError("--compare times one process; it does not go with --workers",
                         field="--compare")
    report = bench(graph, workers=distributed["workers"], batch_size=args.batch_size,
                   steps=args.steps, warmup=args.warmup, seed=args.seed,
                   ray_address=distributed["ray_address"])
    if args.format == "json":
        render_json(json.dumps(report, indent=1))
    else:
        render_workers(report)
    return 0
