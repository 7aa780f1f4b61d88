"""All rich output lives in this package; renderers take plain data and print nothing else.

Consoles: ``stdout()`` for results, ``stderr()`` for errors and warnings. Both follow rich's
terminal detection, so piped output carries no colour codes (and ``NO_COLOR`` is honoured).
rich is imported when the first console is made: :func:`print_result`'s line going to a pipe
needs none, so ``graphnet check | cat`` does not load it.
"""
from __future__ import annotations

import functools
import os
import re
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

_consoles: dict[str, Console] = {}


@functools.cache
def _console_class() -> type[Console]:
    from rich.console import Console

    class _Console(Console):
        """A Console that leaves a closed pipe to the CLI: rich's own handling exits with status
        1, which graphnet keeps for a check that ran and failed."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console


def stdout() -> Console:
    if "out" not in _consoles:
        _consoles["out"] = _console_class()(highlight=False)
    return _consoles["out"]


def stderr() -> Console:
    if "err" not in _consoles:
        _consoles["err"] = _console_class()(stderr=True, highlight=False)
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
        stderr().print(_labelled("bold red", "error:", str(problem)),
                       soft_wrap=one_line(stderr()))


def print_warning(text: str) -> None:
    stderr().print(_labelled("yellow", "warning:", text), soft_wrap=one_line(stderr()))


def print_note(text: str) -> None:
    """Something done on the user's behalf that they should know of (an image resized), on
    stderr so that results stay clean for a pipe."""
    stderr().print(_labelled("cyan", "note:", text), soft_wrap=one_line(stderr()))


def print_result(label: str, style: str, text: str) -> None:
    """``label text`` on stdout, the label in ``style`` on a terminal (``check``'s ``ok``)."""
    if "out" not in _consoles and _plain_is_rich_output(sys.stdout, text):
        print(f"{label} {text}")
        return
    stdout().print(_labelled(style, label, text), soft_wrap=True)


def _labelled(style: str, label: str, text: str) -> str:
    """rich markup for ``label text``, the label in ``style`` and the text taken literally."""
    from rich.markup import escape

    return f"[{style}]{label}[/] {escape(text)}"


_EMOJI_CODE = re.compile(r":\S*?:")  # what rich may replace by an emoji (a wider net than its own)


def _plain_is_rich_output(file, text: str) -> bool:
    """Whether rich would write ``text`` to ``file`` as it is, so print() may (and rich need not
    be imported): ``file`` is no terminal by rich's rules (no FORCE_COLOR or TTY_COMPATIBLE, not
    in IPython or IDLE) and ``text`` holds nothing rich changes (control codes, tabs, emoji
    codes; backslashes, which its markup escaping can double or drop)."""
    if any(name in os.environ for name in ("FORCE_COLOR", "TTY_COMPATIBLE")):
        return False
    if "IPython" in sys.modules or "idlelib" in getattr(sys.stdin, "__module__", ""):
        return False
    if not text.isprintable() or _EMOJI_CODE.search(text) or "\\" in text:
        return False
    try:
        return not file.isatty()
    except (AttributeError, ValueError):  # rich takes a closed or odd file for no terminal too
        return True
