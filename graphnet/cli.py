"""The ``graphnet`` command: argument parsing and exit codes only.

Each subcommand is a module in :mod:`graphnet.commands` defining ``register(subparsers, common)``
(which adds its parser and sets ``run``) and an ``ORDER`` for the help listing; the module is
named after its command. Only the command asked for is imported (all of them when the help must
list them), so ``graphnet check`` does not pay for training or PyTorch. Exit status: 0
success, 1 a check that ran and failed (e.g. gradcheck), 2 bad input of any kind (spec, data,
checkpoint, plugin or argument; also a file the system refuses and memory that runs out),
130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from . import __version__, commands
from .errors import GraphnetError


def command_names() -> tuple[str, ...]:
    """The commands: one module of :mod:`graphnet.commands` each, named after it."""
    return commands.NAMES


def command_module(name: str):
    return importlib.import_module(f"{commands.__name__}.{name}")


def build_parser(command: str | None = None, *, listing: bool = False) -> argparse.ArgumentParser:
    """The argument parser with every command, or with only ``command`` when one is named so.
    With ``listing``, every command is there by its one-line ``HELP`` only, without its
    arguments: enough for ``graphnet --help`` and for naming a command that does not exist, and
    building it imports nothing that a command's own parser needs (numpy among them)."""
    parser = argparse.ArgumentParser(
        prog="graphnet",
        description="Declare, inspect, train and extend convolutional neural networks as data.")
    parser.add_argument("--version", action="version", version=f"graphnet {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plugin", action="append", default=[], metavar="PATH",
                        help="load layer plugins from this Python file (repeatable; also "
                             "GRAPHNET_PLUGINS)")
    common.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                        help="turn this plugin off (repeatable; also GRAPHNET_DISABLE_PLUGINS)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = command_names()
    modules = [command_module(name) for name in ([command] if command in names else names)]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 99), m.__name__)):
        if listing:
            subparsers.add_parser(module.__name__.rpartition(".")[2], help=module.HELP)
        else:
            module.register(subparsers, common)
    parser.set_defaults(command_parsers=subparsers.choices)
    return parser


def _parser_for(argv: list[str], command: str | None) -> argparse.ArgumentParser:
    """The parser ``argv`` needs: only ``command``'s when the command line starts with it; the
    listing when it names no command (its parse ends in help or a usage error); every command
    in full when one comes after other words (``--plugin x.py check``)."""
    if command is not None:
        return build_parser(command)
    names = command_names()
    return build_parser(listing=not any(word in names for word in argv))


BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
"""What OpenBLAS reads its thread count from, first found first; one the user set is obeyed."""


def _start_numpy_without_blas_threads() -> None:
    """Import numpy with OpenBLAS starting no worker threads, for a command that computes
    nothing (``COMPUTES = False``) in a process it owns. OpenBLAS starts its threads as numpy
    loads it and they spin a while waiting for work: on 2 cores that was 0.04 s of the
    0.15 s of CPU ``import numpy`` takes (alternating runs, 15 each), a tenth of ``graphnet
    check`` spent on threads it never uses. OpenBLAS reads the variable once, as it loads, so
    it leaves the environment again at once: a child process sees the user's environment."""
    if "numpy" in sys.modules or any(name in os.environ for name in BLAS_THREAD_VARIABLES):
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401  (loads OpenBLAS)
    finally:
        del os.environ["OPENBLAS_NUM_THREADS"]


def _status_after_plugin_problems(args) -> int:
    """2 when a plugin failed to load (its problems were printed as it was loaded), else 0:
    the command ran with every plugin that works, but what was asked for was not all there."""
    from .commands._common import plugin_problems_reported

    count = plugin_problems_reported(args)
    if not count:
        return 0
    print_error(GraphnetError(
        f"exit status 2: {count} plugin problem{'s' if count > 1 else ''} (named above)",
        hint="fix the plugin, or leave it out with --disable-plugin NAME or "
             "GRAPHNET_DISABLE_PLUGINS"))
    return 2


def _refuse_empty_arguments(parser: argparse.ArgumentParser, args) -> None:
    """An empty argument is refused naming its flag: it is most often a shell variable that
    was never set, and as a path it meant the current folder (``--checkpoint "$CKPT"``
    evaluated the newest .npz there; ``--run-dir ""`` trained into the default folder)."""
    from .errors import UsageError

    actions, parsers = [], [parser]
    while parsers:  # the command's, and those of its subcommands (data sample …)
        for action in parsers.pop()._actions:
            actions.append(action)
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    for action in actions:
        value = getattr(args, action.dest, None)
        if value == "" or (isinstance(value, list) and "" in value):
            name = action.option_strings[-1] if action.option_strings else action.metavar
            raise UsageError("empty argument", field=name or action.dest,
                             expected="a value (is a shell variable unset?)", found="''")


def print_error(error) -> None:
    from .render import print_error as render_error  # rich, only when there is an error

    render_error(error)


def main(argv=None) -> int:
    # Run as the `graphnet` program (no argv given), a command owns its process and may tune
    # it (graphnet.runtime.own_process); called from Python, it is a guest like the library.
    owns_process = argv is None
    argv = sys.argv[1:] if argv is None else argv
    # the first word that is not an option names the command (the top level takes no values)
    command = next((word for word in argv if not word.startswith("-")), None)
    command = command if command in command_names() else None
    if owns_process and command and not getattr(command_module(command), "COMPUTES", True):
        _start_numpy_without_blas_threads()  # before its parser, which may import numpy
    parser = _parser_for(argv, command)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # with the command's usage and name, not the top-level "usage: graphnet COMMAND"
        parser = args.command_parsers.get(args.command, parser)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    args.owns_process = owns_process
    from .commands._common import begin_command
    begin_command()
    try:
        _refuse_empty_arguments(args.command_parsers[args.command], args)
        status = int(args.run(args) or 0)
        return status or _status_after_plugin_problems(args)
    except GraphnetError as error:
        print_error(error)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MemoryError as error:  # limits.py refuses what the spec shows; this is the rest
        # What ran out is not known here (the batch, the graph, a dataset): say so plainly.
        print_error(GraphnetError(f"not enough memory: {error}".rstrip(": "),
                                  hint="the machine (or its limits) had less memory than this "
                                       "needed; GRAPHNET_MEMORY_LIMIT makes graphnet refuse "
                                       "such work up front"))
        return 2
    except BrokenPipeError:  # `graphnet ops | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE  # what a shell reports for a command its reader closed on
    except OSError as error:  # a file or folder the system refused (permissions, full disk, …)
        print_error(GraphnetError(error.strerror or str(error), file=error.filename))
        return 2


if __name__ == "__main__":
    sys.exit(main())
