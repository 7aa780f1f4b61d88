"""Flags shared by ``train``, ``eval`` and ``predict``: settings overrides and checkpoints.

Values are read as text and converted here, so a bad one is a UsageError naming its flag
(exit 2) like every other bad input, not argparse's own exit.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import UsageError

SETTING_FLAGS = {
    # flag: (setting, type, help)
    "--dataset": ("dataset", str, "dataset name (default: [train] dataset, else shapes)"),
    "--epochs": ("epochs", int, "passes over the training split"),
    "--batch-size": ("batch_size", int, "samples per step"),
    "--eval-batch-size": ("eval_batch_size", int, "samples per evaluation batch"),
    "--lr": ("lr", float, "learning rate (default: the optimizer's; sgd 0.01, adam 0.001)"),
    "--optimizer": ("optimizer", str, "optimizer name (sgd, adam, …)"),
    "--momentum": ("momentum", float, "momentum of the optimizer"),
    "--schedule": ("schedule", str, "learning-rate schedule (constant, step, cosine, …)"),
    "--seed": ("seed", int, "seed of initialisation, shuffling and splitting"),
    "--run-dir": ("run_dir", str, "where checkpoints and history.json go (runs/<spec name>)"),
    "--val-fraction": ("val_fraction", float, "share of the training split held out for "
                       "validation after each epoch (0.1; 0: none)"),
    "--early-stop": ("early_stop", int, "stop after N epochs without a lower validation loss"),
    "--max-loss-growth": ("max_loss_growth", float, "stop when a step's loss exceeds X times the "
                          "first step's (1e4; 0: never)"),
    "--clip-norm": ("clip_norm", float, "clip gradients to this global norm"),
    "--limit-train": ("limit_train", int, "use only N training samples (quick runs)"),
    "--augment": ("augment", str, "transforms of the training batches, comma-separated "
                  "(crop:4,flip; crop, flip, shift and plugins' own)"),
}
EVAL_FLAGS = ("--dataset", "--eval-batch-size", "--seed")
METAVARS = {int: "N", float: "X", str: "NAME"}
TYPE_NAMES = {int: "an integer", float: "a number", str: "a string"}


def add_setting_flags(parser, flags=tuple(SETTING_FLAGS)) -> None:
    for flag in flags:
        setting, kind, text = SETTING_FLAGS[flag]
        metavar = {"run_dir": "DIR", "augment": "LIST"}.get(setting, METAVARS[kind])
        parser.add_argument(flag, dest=setting, default=None, metavar=metavar, help=text)
    parser.add_argument("--dataset-option", dest="dataset_options", action="append", default=[],
                        metavar="KEY=VALUE", help="an option of the dataset (repeatable), e.g. "
                        "--dataset-option size=16")


def overrides_from_args(args, flags=tuple(SETTING_FLAGS)) -> tuple[dict, dict]:
    """(settings, labels) from the flags given; labels map each setting to its flag."""
    overrides, labels = {}, {}
    for flag in flags:
        setting, kind, _ = SETTING_FLAGS[flag]
        text = getattr(args, setting, None)
        if text is None:
            continue
        try:
            overrides[setting] = kind(text)
        except ValueError:
            raise UsageError("bad argument", field=flag, expected=TYPE_NAMES[kind],
                             found=repr(text)) from None
        labels[setting] = flag
    options = dataset_options(args.dataset_options)
    if options:
        overrides["dataset_options"] = options
        labels["dataset_options"] = "--dataset-option"
    return overrides, labels


def dataset_options(items: list[str]) -> dict:
    """``--dataset-option KEY=VALUE`` flags → {key: value as a spec would give it}."""
    from ..options import literal

    options = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UsageError("bad argument", field="--dataset-option", expected="KEY=VALUE",
                             found=repr(item))
        options[key.strip()] = literal(value)
    return options


def add_worker_flags(parser) -> None:
    """``--workers N`` and ``--ray-address ADDR`` (train and bench)."""
    parser.add_argument("--workers", default=None, metavar="N",
                        help="data-parallel training on N Ray workers (needs the ray extra): each "
                        "computes the gradients of its share of every batch, the gradients are "
                        "summed and every worker applies the same update, so the result equals "
                        "one process's up to summation order. Batch norm uses each worker's own "
                        "batch statistics (as PyTorch DDP without SyncBatchNorm); dropout draws "
                        "a stream per worker from the seed. Without --ray-address a local Ray "
                        "instance is started for the run")
    parser.add_argument("--ray-address", dest="ray_address", default=None, metavar="ADDR",
                        help="with --workers: join the Ray cluster at ADDR (what `ray start "
                        "--head` prints; default: RAY_ADDRESS, else a local instance)")


def worker_settings(args) -> dict:
    """``train()``'s keywords for --workers, --ray-address and --max-failures, checked before
    anything is loaded (bad ones are UsageErrors naming the flag)."""
    workers = getattr(args, "workers", None)
    if workers is None:
        for flag, value in (("--ray-address", args.ray_address),
                            ("--max-failures", getattr(args, "max_failures", None))):
            if value is not None:
                raise UsageError(f"{flag} goes with --workers", field=flag,
                                 hint="add --workers N to train on N Ray workers")
        return {}
    from ..distributed.cluster import check_max_failures, check_workers

    settings = {"workers": check_workers(workers, "--workers"), "ray_address": args.ray_address}
    if getattr(args, "max_failures", None) is not None:
        settings["max_failures"] = check_max_failures(args.max_failures, "--max-failures")
    return settings


def add_checkpoint_flag(parser) -> None:
    from ..checkpoint import CHECKPOINT_NAME

    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help=f"checkpoint to use, or a run dir holding one (default: <run "
                        f"dir>/{CHECKPOINT_NAME}, the run dir being --run-dir, [train] run_dir or "
                        "runs/<spec name>)")
    parser.add_argument("--run-dir", dest="run_dir", default=None, metavar="DIR",
                        help="the run whose checkpoint to use")


def checkpoint_path(args, graph) -> Path:
    """``--checkpoint`` (a file, or a run directory standing for its checkpoint), else the
    checkpoint in ``--run-dir``, ``[train] run_dir`` or ``runs/<spec name>``."""
    from ..checkpoint import checkpoint_in, find_checkpoint, run_dir_of

    if args.checkpoint:
        return find_checkpoint(args.checkpoint)
    return checkpoint_in(run_dir_of(graph, args.run_dir, graph.spec.train.get("run_dir")))


def command_line(args, *extra: str) -> str:
    """The ``graphnet train`` command these arguments came from, plus ``extra`` words."""
    words = ["graphnet", "train", args.spec]
    for path in args.plugin:
        words += ["--plugin", path]
    for name in args.disable_plugin:
        words += ["--disable-plugin", name]
    for flag, (setting, _, _) in SETTING_FLAGS.items():
        if getattr(args, setting, None) is not None:
            words += [flag, getattr(args, setting)]
    for item in args.dataset_options:
        words += ["--dataset-option", item]
    if args.watch:
        words.append("--watch")
    if getattr(args, "memory_limit", None) is not None:
        words += ["--memory-limit", args.memory_limit]
    for flag, setting in (("--workers", "workers"), ("--ray-address", "ray_address"),
                          ("--max-failures", "max_failures")):
        if getattr(args, setting, None) is not None:
            words += [flag, getattr(args, setting)]
    return shlex.join([str(w) for w in words] + list(extra))
