"""All rich output lives in this package; renderers take plain data and print nothing else.

Consoles: ``stdout()`` for results, ``stderr()`` for errors and warnings. Both follow rich's
terminal detection, so piped output carries no colour codes (and ``NO_COLOR`` is honoured).
"""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

_consoles: dict[str, Console] = {}


class _Console(Console):
    """A Console that leaves a closed pipe to the CLI: rich's own handling exits with status
    1, which graphnet keeps for a check that ran and failed."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def stdout() -> Console:
    if "out" not in _consoles:
        _consoles["out"] = _Console(highlight=False)
    return _consoles["out"]


def stderr() -> Console:
    if "err" not in _consoles:
        _consoles["err"] = _Console(stderr=True, highlight=False)
    return _consoles["err"]


def one_line(console: Console) -> bool:
    """The ``soft_wrap`` for a message: piped output keeps each message on one line (for grep);
    a terminal gets it broken at spaces to its width (left to itself, a terminal breaks a long
    line anywhere, in the middle of a word or a number)."""
    return not console.is_terminal


def print_error(error) -> None:
    """One line per problem, ``error: file: node 'x', field 'y': ...``, on stderr."""
    problems = getattr(error, "errors", None) or [error]
    for problem in problems:
        stderr().print(f"[bold red]error:[/] {escape(str(problem))}",
                       soft_wrap=one_line(stderr()))


def print_warning(text: str) -> None:
    stderr().print(f"[yellow]warning:[/] {escape(text)}", soft_wrap=one_line(stderr()))


def print_note(text: str) -> None:
    """Something done on the user's behalf that they should know of (an image resized), on
    stderr so that results stay clean for a pipe."""
    stderr().print(f"[cyan]note:[/] {escape(text)}", soft_wrap=one_line(stderr()))
