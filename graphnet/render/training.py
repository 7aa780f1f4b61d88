"""Rendering of training, evaluation and prediction: progress, epoch lines, curves, tables.

:class:`TrainingView` is the ``on_event`` callback of :func:`graphnet.train.train`. On a
terminal it shows a progress bar per epoch (samples/s, loss, accuracy, time left); otherwise one
plain line per epoch. Renderers take plain data and hold no training logic.
"""
from __future__ import annotations

import math
import time

import numpy as np
from rich import box
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from ..training.events import (EpochDone, EpochStarted, Finished, Interrupted, Notice, RunStarted,
                     StepDone, WorkersStarted)
from . import one_line, print_note, print_warning, stderr, stdout

MARKERS = {"train": ("●", "cyan"), "val": ("◆", "magenta"), "test": ("○", "yellow")}
PLOT_HEIGHT = 8
PLOT_WIDTH = 48
PLAIN_INTERVAL = 15.0
"""Seconds between plain progress lines when the output is not a terminal."""


class TrainingView:
    """Renders training events; use as a context manager so a progress bar never outlives an
    error. ``resume_command`` is shown when training is interrupted."""

    def __init__(self, console=None, resume_command: str | None = None):
        self.console = console or stdout()
        self.resume_command = resume_command
        self.progress: Progress | None = None
        self.task = None
        self.last_line = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stop_progress()
        return False

    def __call__(self, event) -> None:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    # --- events ------------------------------------------------------------------------------
    def _on_Notice(self, event: Notice) -> None:
        self._stop_progress()
        (print_warning if event.warning else print_note)(event.text)

    def _on_RunStarted(self, event: RunStarted) -> None:
        split = f"{event.train_samples:,} train"
        if event.val_samples:
            split += f" / {event.val_samples:,} val"
        split += f" / {event.test_samples:,} test"
        self.console.print(
            f"[bold]training {escape(event.graph)}[/] on {escape(event.dataset)}: {split} samples, "
            f"{len(event.class_names)} classes; {_plural(event.epochs, 'epoch')} of "
            f"{_plural(event.steps_per_epoch, 'step')} × {event.batch_size}; {escape(event.optimizer)} lr {event.lr:g}; "
            f"{event.parameters:,} parameters; run dir {escape(str(event.run_dir))}",
            soft_wrap=one_line(self.console))
        if event.resumed_from is not None:
            where = f"epoch {event.start_epoch + 1}"
            if event.start_step:
                where += f", step {event.start_step + 1}"
            self.console.print(f"resuming from {escape(str(event.resumed_from))} at {where}",
                               soft_wrap=one_line(self.console))

    def _on_WorkersStarted(self, event: WorkersStarted) -> None:
        self._stop_progress()
        threads = sorted(set(event.threads))
        each = (_plural(threads[0], "thread") + " each" if len(threads) == 1
                else "threads " + ", ".join(map(str, event.threads)))
        nodes = sorted(set(event.nodes))
        self.console.print(
            f"{_plural(event.workers, 'worker')} on {escape(event.where)}: pids "
            f"{', '.join(map(str, event.pids))} on {escape(', '.join(nodes))}, {each}; gradients "
            f"summed by {escape(event.exchange)}", soft_wrap=one_line(self.console))

    def _on_EpochStarted(self, event: EpochStarted) -> None:
        self.last_line = time.monotonic()
        if not self.console.is_terminal:
            return
        self.progress = Progress(
            TextColumn(f"epoch {event.epoch}/{event.epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7} samples/s"), TextColumn("loss {task.fields[loss]}"),
            TextColumn("acc {task.fields[accuracy]}"), TextColumn("{task.fields[workers]}"),
            TimeRemainingColumn(), console=self.console, transient=True)
        self.task = self.progress.add_task("train", total=event.samples,
                                           completed=event.samples_done,
                                           rate="–", loss="–", accuracy="–", workers="")
        self.progress.start()

    def _on_StepDone(self, event: StepDone) -> None:
        if self.progress is None:
            # Not a terminal: a plain line now and then, so a slow epoch still shows life.
            now = time.monotonic()
            if now - self.last_line >= PLAIN_INTERVAL and event.step < event.steps:
                self.last_line = now
                self.console.print(
                    f"epoch {event.epoch}: {event.samples:,}/{event.total_samples:,} samples, "
                    f"loss {event.loss:.4f}, acc {_percent(event.accuracy)}, "
                    f"{_count(event.samples_per_second)} samples/s"
                    + (f", {worker_shares(event.compute_shares)}" if event.compute_shares
                       else ""), soft_wrap=True)
            return
        self.progress.update(self.task, completed=event.samples,
                             rate=_count(event.samples_per_second),
                             loss=f"{event.loss:.4f}", accuracy=_percent(event.accuracy),
                             workers=worker_shares(event.compute_shares)
                             if event.compute_shares else "")

    def _on_EpochDone(self, event: EpochDone) -> None:
        self._stop_progress()
        # a terminal breaks a long line anywhere; piped logs keep one line per epoch for grep
        width = self.console.width if self.console.is_terminal else None
        self.console.print(epoch_line(event.record, event.epochs, width), soft_wrap=True)
        if event.watch is not None:
            self.console.print(watch_table(event.watch, event.record["epoch"]))
            # under the table, not its caption: a caption wraps at the table's width
            self.console.print(WATCH_LEGEND, style="bright_black", soft_wrap=one_line(self.console))

    def _on_Interrupted(self, event: Interrupted) -> None:
        self._stop_progress()
        if event.step:
            where = f"epoch {event.epoch}, step {event.step}/{event.steps}"
        else:
            where = f"the end of epoch {event.epoch}"
        console = stderr()
        console.print(f"[yellow]interrupted:[/] stopped at {where}; checkpoint written to "
                      f"{escape(str(event.checkpoint))}", soft_wrap=one_line(console))
        if self.resume_command:
            console.print(f"resume with: {escape(self.resume_command)}",
                          soft_wrap=one_line(console))

    def _on_Finished(self, event: Finished) -> None:
        result = event.result
        history = result.history
        if len(history) > 1:
            self.console.print(curves(history, "loss"))
            self.console.print(curves(history, "accuracy"))
        if history:
            self.console.print(evaluation_line("test", history[-1]["test_loss"],
                                               history[-1]["test_accuracy"],
                                               int(result.confusion.sum())))
        self.console.print(confusion_table(result.confusion, result.class_names,
                                           self.console.width))
        if result.checkpoint is not None:
            self.console.print(f"checkpoint: {escape(str(result.checkpoint))}",
                               soft_wrap=one_line(self.console))
        if result.best is not None:
            best = min((r["val_loss"], r["epoch"]) for r in history if "val_loss" in r)
            self.console.print(f"best: {escape(str(result.best))} (epoch {best[1]}, val loss "
                               f"{best[0]:.4f})", soft_wrap=one_line(self.console))

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


# --- pieces ------------------------------------------------------------------------------------
def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _percent(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def _count(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:,.0f}"


def worker_shares(compute_shares: list[float]) -> str:
    """Each worker's share of a step in compute, the rest being communication:
    ``compute 81%/79% · comm 19%/21%``."""
    compute = "/".join(f"{100 * share:.0f}%" for share in compute_shares)
    comm = "/".join(f"{100 * (1 - share):.0f}%" for share in compute_shares)
    return f"compute {compute} · comm {comm}"


def epoch_line(record: dict, epochs: int, width: int | None = None) -> str:
    """The epoch's figures on one line, or, past ``width``, on as few lines as fit (the
    terminal would otherwise break the line in the middle of a figure)."""
    parts = [f"epoch {record['epoch']}/{epochs}",
             f"train loss {record['train_loss']:.4f} acc {_percent(record['train_accuracy'])}"]
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f} acc {_percent(record['val_accuracy'])}")
    parts.append(f"{record['seconds']:.1f}s, {_count(record['samples_per_second'])} samples/s")
    separator = "  │  "
    lines = [parts[0]]
    for part in parts[1:]:
        joined = lines[-1] + separator + part
        if width is None or len(joined) <= width:
            lines[-1] = joined
        else:
            lines.append(" " * len(f"epoch {record['epoch']}/{epochs}") + separator + part)
    return "\n".join(lines)


def evaluation_line(split: str, loss: float, accuracy: float, samples: int) -> str:
    correct = round(accuracy * samples) if samples else 0
    return (f"[bold]{split}[/]: loss {loss:.4f}, accuracy {_percent(accuracy)} "
            f"({correct:,}/{samples:,})")


def curves(history: list[dict], metric: str, height: int = PLOT_HEIGHT,
           width: int = PLOT_WIDTH) -> Text:
    """A small text plot of ``<split>_<metric>`` per epoch for every split the history holds."""
    # splits measured every epoch (the test split is measured once, at the end)
    series = {split: [r[f"{split}_{metric}"] for r in history]
              for split in MARKERS if all(f"{split}_{metric}" in r for r in history)}
    values = [v for points in series.values() for v in points if math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    epochs = len(history)
    width = min(width, max(epochs, 2) * 4)
    grid = [[(" ", None)] * width for _ in range(height)]
    for split, points in series.items():
        marker, style = MARKERS[split]
        for index, value in enumerate(points):
            if not math.isfinite(value):
                continue
            column = round(index * (width - 1) / max(epochs - 1, 1))
            row = round((high - value) / (high - low) * (height - 1))
            grid[row][_free_column(grid[row], column)] = (marker, style)
    text = Text()
    text.append(f"{metric} by epoch   ", style="bold")
    for split in series:
        marker, style = MARKERS[split]
        text.append(f"{marker} {split}  ", style=style)
    text.append("\n")
    label_width = 8
    for row_index, row in enumerate(grid):
        if row_index == 0:
            label = _axis(high, metric)
        elif row_index == height - 1:
            label = _axis(low, metric)
        else:
            label = ""
        text.append(f"{label:>{label_width}} ┤")
        for char, style in row:
            text.append(char, style=style)
        text.append("\n")
    text.append(" " * label_width + " └" + "─" * width + "\n")
    last = str(epochs)
    text.append(" " * (label_width + 2) + "1" + " " * max(width - 1 - len(last), 1) + last)
    text.append("  (epoch)")
    return text


def _free_column(row: list, column: int) -> int:
    """``column``, or beside it when another split's marker is there already (train and test
    at the same height would otherwise hide one another): right, else left."""
    for candidate in (column, column + 1, column - 1):
        if 0 <= candidate < len(row) and row[candidate][1] is None:
            return candidate
    return column


def _axis(value: float, metric: str) -> str:
    return f"{100 * value:.1f}%" if metric == "accuracy" else f"{value:.4g}"


def confusion_table(confusion: np.ndarray, class_names: list[str], width: int = 80) -> Table:
    """Rows: true class; columns: predicted class, by index. Rows carry the class names when the
    table still fits ``width``; otherwise a legend under the table names the indices."""
    count_width = max(len(str(int(confusion.max()))), 1)
    labels = [f"{index} {name}" for index, name in enumerate(class_names)]
    label_width = max([len(label) for label in labels] + [len("true ╲ predicted")])
    # each column: its cells, one space of padding and the box's one-space rule
    named = label_width + len(class_names) * (count_width + 2) + len("recall") + 4 <= width
    table = Table(title="confusion matrix", title_justify="left", box=box.SIMPLE_HEAD,
                  padding=(0, 1, 0, 0), caption=None if named else Text("  ".join(labels)),
                  caption_justify="left")
    table.add_column("true ╲ predicted" if named else "true", no_wrap=True)
    for index in range(len(class_names)):
        table.add_column(str(index), justify="right", no_wrap=True)
    table.add_column("recall", justify="right", no_wrap=True)
    largest = max(int(confusion.max()), 1)
    for index, label in enumerate(labels):
        row = confusion[index]
        cells = []
        for column, count in enumerate(row):
            if column == index:
                cells.append(Text(str(count), style="bold green"))
            elif count:
                cells.append(Text(str(count), style="bold red" if count * 10 >= largest else "red"))
            else:
                cells.append(Text("·", style="dim"))
        total = int(row.sum())
        recall = _percent(row[index] / total) if total else "–"
        table.add_row(Text(label if named else str(index)), *cells, recall)
    return table


WATCH_LEGEND = ("Δw/w: relative weight change over the epoch; zeros: share of zero outputs on "
                "one batch; problems: dead (≥ 99 % zeros: nothing flows back), mostly zeros "
                "(≥ 95 %), no gradient, stalled (Δw/w ≤ 1e-5)")


def watch_table(rows, epoch: int) -> Table:
    """The per-node health table; :data:`WATCH_LEGEND` explains its columns."""
    table = Table(title=f"node health after epoch {epoch}", title_justify="left")
    # the problems column only when a node has one: empty, it was a blank column at the edge
    flagged = any(row.problems for row in rows)
    columns = (("node", "left"), ("op", "left"), ("grad norm", "right"), ("Δw/w epoch", "right"),
               ("zeros", "right")) + ((("problem", "left"),) if flagged else ())
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True)
    for row in rows:
        grad = "" if row.grad_norm is None else f"{row.grad_norm:.2e}"
        ratio = "" if row.update_ratio is None else f"{row.update_ratio:.2e}"
        zeros = _percent(row.zero_share)
        problems = [Text(", ".join(row.problems), style="bold red")] if flagged else []
        style = "red" if row.problems else None
        table.add_row(Text(row.node), Text(row.op), grad, ratio, zeros, *problems, style=style)
    return table


def render_stack(stack: str) -> None:
    """Before training: the network as the articles name it (a :class:`graphnet.stack.Stack`)."""
    console = stdout()
    console.print(f"[bold]network:[/] {escape(stack)}", soft_wrap=one_line(console))


def render_next_steps(spec, rf_node: str | None, checkpoint) -> None:
    """After training: the commands that show what this run's network sees and learned."""
    from shlex import quote

    steps = []
    if rf_node is not None:
        steps.append(f"graphnet inspect {quote(str(spec))} --rf {quote(rf_node)} (what one unit "
                     f"of {rf_node} sees)")
    if checkpoint is not None:
        steps.append(f"graphnet show {quote(str(spec))} --checkpoint {quote(str(checkpoint))} "
                     "(the learned filters)")
    if steps:
        console = stdout()
        console.print("[bold]next:[/] " + escape("; ".join(steps)), soft_wrap=one_line(console))


def render_evaluation(evaluation, class_names: list[str], title: str) -> None:
    console = stdout()
    console.print(f"[bold]{escape(title)}[/]", soft_wrap=one_line(console))
    console.print(evaluation_line("test", evaluation.loss, evaluation.accuracy,
                                  evaluation.samples))
    console.print(confusion_table(evaluation.confusion, class_names, console.width))


def probability_text(pairs) -> str:
    """``.80 cat, .15 dog, .05 bird``."""
    def number(p):
        text = f"{p:.2f}"
        return text[1:] if text.startswith("0.") else text
    return ", ".join(f"{number(p)} {name}" for p, name in pairs)


def render_predictions(lines: list[tuple[str | None, list]]) -> None:
    """One line per image: an optional label, then the classes most likely first."""
    console = stdout()
    for label, pairs in lines:
        prefix = f"{label}: " if label else ""
        # Text, not escaped markup: escape() doubles a trailing backslash ("diagonal \\")
        console.print(Text(prefix + probability_text(pairs)), soft_wrap=one_line(console),
                      highlight=False)
