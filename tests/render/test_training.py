"""Rendering of training: the epoch line on a terminal of 80 columns and in a piped log; the
--watch table."""
from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from graphnet.render.training import TrainingView, watch_table
from graphnet.train import EpochDone, WatchRow

ROOT = Path(__file__).resolve().parents[2]

RECORD = {"epoch": 12, "train_loss": 0.1234, "train_accuracy": 0.9612, "val_loss": 0.2345,
          "val_accuracy": 0.9321, "seconds": 12.5, "samples_per_second": 12345.0}
FIGURES = ("epoch 12/12", "train loss 0.1234 acc 96.1%", "val loss 0.2345 acc 93.2%",
           "12.5s, 12,345 samples/s")


def epoch_text(terminal: bool) -> str:
    console = Console(width=80, record=True, file=io.StringIO(), force_terminal=terminal,
                      color_system=None)
    with TrainingView(console) as view:
        view(EpochDone(record=RECORD, epochs=12, checkpoint=Path("run/checkpoint.npz")))
    return console.export_text()


def test_epoch_line_fits_80_columns_on_a_terminal_without_breaking_a_figure():
    lines = epoch_text(terminal=True).splitlines()
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines), lines
    for figure in FIGURES:
        assert any(figure in line for line in lines), figure


def test_a_piped_log_keeps_one_line_per_epoch():
    (line,) = epoch_text(terminal=False).splitlines()
    assert all(figure in line for figure in FIGURES)


def test_a_notice_is_a_warning_unless_it_says_otherwise(monkeypatch):
    from graphnet import render
    from graphnet.train import Notice

    stream = io.StringIO()
    console = Console(width=200, file=stream, color_system=None)
    monkeypatch.setitem(render._consoles, "err", console)
    with TrainingView(console) as view:
        view(Notice("settings differ"))
        view(Notice("starting from the parameters in x.npz", warning=False))
    assert stream.getvalue().splitlines() == [
        "warning: settings differ", "note: starting from the parameters in x.npz"]


def watch_text(rows) -> str:
    console = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    console.print(watch_table(rows, 1))
    return console.export_text()


def test_the_watch_table_has_a_problem_column_only_when_a_node_has_a_problem():
    healthy = WatchRow("conv1", "conv2d", 0.5, 0.01, 0.0, [])
    dead = WatchRow("relu1", "relu", None, None, 1.0, ["dead"])
    header = watch_text([healthy]).splitlines()[2]
    assert header.rstrip().endswith("zeros ┃"), header
    text = watch_text([healthy, dead])
    assert "problem" in text and " dead " in text


# --- the first output a user sees, at common widths -------------------------------------------
def train_shapes_cnn(run_cli, monkeypatch, tmp_path, width: int, terminal: bool) -> str:
    """`graphnet train specs/shapes_cnn.toml` (small data, 2 epochs, --watch) in a folder that
    holds an earlier run, on recorded consoles; returns what stderr and stdout showed, with
    the progress bar's transient frames left out."""
    from graphnet import render
    consoles = {key: Console(width=width, record=True, file=io.StringIO(),
                             force_terminal=terminal, color_system=None) for key in ("err", "out")}
    for key, console in consoles.items():
        monkeypatch.setitem(render._consoles, key, console)
    folder = tmp_path / f"{width}-{terminal}"
    run_dir = folder / "runs" / "shapes_cnn"  # the default, as the README's first command has it
    run_dir.mkdir(parents=True)
    (run_dir / "checkpoint.npz").write_bytes(b"an earlier run")
    (run_dir / "history.json").write_text("[]")
    monkeypatch.chdir(folder)
    status, _, err = run_cli("train", ROOT / "specs" / "shapes_cnn.toml", "--epochs", "2",
                             "--watch", "--dataset-option", "train_size=64",
                             "--dataset-option", "test_size=20")
    assert status == 0, err
    text = consoles["err"].export_text() + consoles["out"].export_text()
    return "\n".join(line for line in text.splitlines() if "samples/s loss" not in line)


def test_the_first_command_breaks_no_word_at_80_100_or_160_columns(run_cli, monkeypatch,
                                                                  tmp_path):
    piped = train_shapes_cnn(run_cli, monkeypatch, tmp_path, 80, terminal=False)
    messages = [line for line in piped.splitlines()
                if line.startswith(("training ", "warning:", "note:", "checkpoint:", "Δw/w"))]
    assert len(messages) == 5, piped  # run, earlier run kept, 2 watch legends, checkpoint
    assert any("19,466 parameters" in line for line in messages)
    assert any("checkpoint.previous.npz" in line for line in messages)
    for width in (80, 100, 160):
        shown = train_shapes_cnn(run_cli, monkeypatch, tmp_path, width, terminal=True)
        assert max(len(line) for line in shown.splitlines()) <= width
        words = " ".join(shown.split())
        for message in messages:
            # the message's words, each whole, in order: the terminal breaks only at spaces
            assert " ".join(message.split()) in words, (width, message)


def test_the_watch_legend_uses_the_terminal_width_not_the_table_s():
    rows = [WatchRow("conv1", "conv2d", 0.5, 0.01, 0.0, [])]
    console = Console(width=160, record=True, file=io.StringIO(), force_terminal=True,
                      color_system=None)
    with TrainingView(console) as view:
        view(EpochDone(record=RECORD, epochs=12, checkpoint=Path("run/checkpoint.npz"),
                       watch=rows))
    lines = console.export_text().splitlines()
    table_width = max(len(line.rstrip()) for line in lines if line.startswith(("┏", "└")))
    legend = lines[next(i for i, line in enumerate(lines) if line.startswith("Δw/w")):]
    assert len(legend[0].rstrip()) > table_width and all(len(line) <= 160 for line in legend)


def test_the_chart_draws_train_and_test_where_they_meet():
    from graphnet.render.training import curves
    history = [{"train_loss": loss, "test_loss": loss, "train_accuracy": 0.5,
                "test_accuracy": 0.5} for loss in (2.0, 1.0, 0.5)]
    for metric in ("loss", "accuracy"):
        chart = curves(history, metric).plain.split("\n", 1)[1]  # below the legend
        assert chart.count("●") == 3 and chart.count("○") == 3, chart


def test_the_watch_table_flags_what_it_shows():
    from graphnet.training.watch import watch_problems
    assert watch_problems(None, None, 0.98) == ["mostly zeros"]
    assert watch_problems(None, None, 0.995) == ["dead"]
    assert watch_problems(0.5, 1e-6, 0.1) == ["stalled"]
    assert watch_problems(0.5, 1e-3, 0.5) == []
    text = watch_text([WatchRow("relu1", "relu", None, None, 0.98, ["mostly zeros"])])
    assert "mostly zeros" in text and "98.0%" in text
