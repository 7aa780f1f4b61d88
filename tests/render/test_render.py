"""graphnet.render's own printing: a result line written without rich reads exactly as rich
would have written it, and a terminal still gets rich's styling."""
import io

import pytest
from rich.console import Console
from rich.markup import escape

from graphnet import render

TEXTS = ["specs/lenet5.toml: lenet5: 13 nodes, 61,706 parameters", "a [bold]b[/] [c] [/]",
         "ends in [", "é × 👍", "", "C:\\nets\\[x]", "tab\there", "cr\rlf", "x :smile: y",
         "back\\", "a\\[x", "a:b:c"]


@pytest.mark.parametrize("text", TEXTS)
def test_a_piped_result_line_is_what_rich_writes(text, monkeypatch, capsys):
    monkeypatch.setattr(render, "_consoles", {})
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    piped = io.StringIO()  # no terminal, as rich sees it
    Console(file=piped, highlight=False).print(f"[green]ok[/] {escape(text)}", soft_wrap=True)
    render.print_result("ok", "green", text)
    assert capsys.readouterr().out == piped.getvalue()


def test_a_terminal_gets_the_label_styled(monkeypatch):
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, color_system="standard",
                      highlight=False)
    monkeypatch.setattr(render, "_consoles", {"out": console})
    render.print_result("ok", "green", "lenet5 [3]")
    assert terminal.getvalue() == "\x1b[32mok\x1b[0m lenet5 [3]\n"
