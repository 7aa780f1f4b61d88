"""Rendering of training: the epoch line on a terminal of 80 columns and in a piped log; the
--watch table."""
from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from graphnet.render.training import TrainingView, watch_table
from graphnet.train import EpochDone, WatchRow

RECORD = {"epoch": 12, "train_loss": 0.1234, "train_accuracy": 0.9612, "val_loss": 0.2345,
          "val_accuracy": 0.9321, "test_loss": 0.3456, "test_accuracy": 0.9187, "seconds": 12.5,
          "samples_per_second": 12345.0}
FIGURES = ("epoch 12/12", "train loss 0.1234 acc 96.1%", "val loss 0.2345 acc 93.2%",
           "test loss 0.3456 acc 91.9%", "12.5s, 12,345 samples/s")


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
