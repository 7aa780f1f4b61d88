"""Plumbing shared by the subcommands: the registry from CLI flags, loading specs."""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SpecError

if TYPE_CHECKING:
    from ..graph import Graph
    from ..registry import Registry

_registries: dict[tuple, Registry] = {}
_reported: set[tuple] = set()  # registries whose problems this command has printed


def begin_command() -> None:
    """A new command starts (``graphnet.cli.main``): registries are kept, but their plugin
    problems are printed again, once, for this command."""
    _reported.clear()


def plugin_problems_reported(args) -> int:
    """How many plugin problems the registry for these arguments printed (``graphnet`` then
    exits 2: a mistyped ``--plugin`` path must not pass a CI script silently); 0 when the
    command built no registry."""
    key = _registry_key(args)
    return len(_registries[key].problems) if key in _reported else 0


def _registry_key(args) -> tuple:
    from ..registry import DISABLE_ENV, PLUGINS_ENV

    environment = (os.environ.get(PLUGINS_ENV, ""), os.environ.get(DISABLE_ENV, ""))
    return (tuple(getattr(args, "plugin", ())), tuple(getattr(args, "disable_plugin", ())),
            environment)


def registry_from_args(args) -> Registry:
    """The registry for ``--plugin``/``--disable-plugin`` (plus the environment); plugin
    problems are printed once on stderr, every plugin that works stays usable, and the command
    exits 2 at the end (see :func:`plugin_problems_reported`)."""
    from ..registry import build_registry, disabled_from_env
    from ..render import print_error

    key = _registry_key(args)
    if key not in _registries:
        _registries[key] = build_registry(args.plugin,
                                          disabled=set(args.disable_plugin) | disabled_from_env())
    if key not in _reported:
        _reported.add(key)
        for problem in _registries[key].problems:
            print_error(problem)
    return _registries[key]


def output_path(args, path, *, field: str = "-o", reads=()) -> Path:
    """A file the command is asked to write, checked before any work: a folder there is
    refused, and so is a file the command reads — ``reads``, (what, path) pairs such as
    ``("spec", args.spec)``, and the plugin files — which writing would replace: ``graphnet
    export net.toml -o net.toml`` replaced the spec by its PyTorch translation."""
    from ..errors import UsageError
    from ..registry import plugin_paths_from_env

    output = Path(path)
    if output.is_dir():
        raise UsageError("cannot write the output", file=output, field=field,
                         expected="a file name", found="a directory")
    plugins = [("plugin", plugin) for plugin in
               [*getattr(args, "plugin", ()), *plugin_paths_from_env()]]
    for what, source in [*reads, *plugins]:
        if source is not None and output.exists() and Path(source).exists() and \
                os.path.samefile(output, source):
            raise UsageError("the output is a file this command reads", file=output,
                             field=field, expected=f"a file other than the {what}",
                             found=str(source),
                             hint="writing it would replace the input")
    return output


LOSS_COMMANDS = ("train", "eval", "bench")
"""Commands that need a loss output; an ``.onnx`` SPEC gets one (see :func:`load_graph`)."""


def load_graph(args, path) -> Graph:
    """Load one spec with the registry the flags ask for; an ``.onnx`` model is imported in
    memory (see :mod:`graphnet.onnx_import`: its weights are the nodes' initial parameters)."""
    from ..graph import load

    if Path(path).is_dir():  # spec.py says so only after the suffix check ("no suffix")
        raise SpecError("spec path is a directory", file=path, expected="a file")
    if Path(path).suffix.lower() == ".onnx":
        from ..onnx_import import import_onnx  # the onnx package is imported for models only

        # a model has no loss: the commands that run one get a classifier's, as
        # `graphnet import --add-loss` writes it (a label input, softmax cross-entropy)
        add_loss = getattr(args, "command", None) in LOSS_COMMANDS
        return import_onnx(path, registry=registry_from_args(args), add_loss=add_loss)[0]
    return load(path, registry=registry_from_args(args))


def add_memory_limit_argument(parser) -> None:
    """``--memory-limit SIZE``: the most memory a graph may need (see :mod:`graphnet.limits`)."""
    from ..limits import DEFAULT_FRACTION, LIMIT_ENV

    parser.add_argument("--memory-limit", metavar="SIZE", default=None,
                        help="refuse graphs that would need more memory than this, e.g. 8GiB, "
                             f"or none (default: {LIMIT_ENV}, else {DEFAULT_FRACTION * 100:.0f}%% of "
                             "physical memory)")


def warn_about(graph, path, *, batch_size: int, memory_limit) -> None:
    """Print the graph's warnings, and a warning with the estimate when training it at
    ``batch_size`` would need more memory than the limit (found statically, nothing allocated)."""
    from .. import limits
    from ..render import print_warning

    for warning in graph.warnings:
        print_warning(warning)
    memory = limits.estimate(graph, batch_size=batch_size, training=True, limit=memory_limit)
    if memory.exceeds:
        print_warning(f"{path}: the graph needs {memory.describe()}, more than the memory "
                      f"limit of {limits.format_bytes(memory.limit)}")


# --- argument types: a bad value is refused by argparse (usage, one error line, exit 2) -------
def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, epochs, counts)."""
    return _number(text, int, "an integer >= 1", lambda value: value >= 1)


def non_negative_int(text: str) -> int:
    return _number(text, int, "an integer >= 0", lambda value: value >= 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, tolerances)."""
    return _number(text, float, "a finite number > 0",
                   lambda value: math.isfinite(value) and value > 0)


def _number(text: str, kind, expected: str, valid):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, found {text!r}")
    return value
