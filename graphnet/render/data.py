"""Rendering of ``graphnet data``: the dataset table and download progress."""
from __future__ import annotations

import contextlib

from rich.markup import escape
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)
from rich.table import Table

from ..op import format_shape
from . import stdout

STATUS_STYLES = {"cached": "green", "not fetched": "yellow", "partly downloaded": "yellow"}


def render_dataset_table(rows: list[tuple[str, str, str]], cache_dir) -> None:
    """``rows``: (name, one-line doc, cache status), one per registered dataset."""
    table = Table(title=f"datasets (cache: {escape(str(cache_dir))})", title_justify="left")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("files")
    for name, doc, status in rows:
        style = next((STATUS_STYLES[key] for key in STATUS_STYLES if status.startswith(key)), None)
        shown = f"[{style}]{escape(status)}[/]" if style else escape(status)
        table.add_row(escape(name), escape(doc), shown)
    stdout().print(table)


@contextlib.contextmanager
def download_progress():
    """Yield a ``progress(file name, bytes so far, total or None)`` callback drawing one bar
    per file (on a terminal; nothing when output is piped)."""
    console = stdout()
    bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                    transient=True, disable=not console.is_terminal)
    tasks: dict[str, int] = {}

    def progress(name: str, done: int, total: int | None) -> None:
        if name not in tasks:
            tasks[name] = bars.add_task(escape(name), total=total)
        bars.update(tasks[name], completed=done)

    with bars:
        yield progress


def render_fetch_results(dataset: str, folder, results: list[tuple[str, str]]) -> None:
    """One line per file: what ``fetch`` did with it, then where the dataset now lives."""
    console = stdout()
    for name, outcome in results:
        console.print(f"  {escape(name)}: {escape(outcome)}", soft_wrap=True)
    console.print(f"[green]ok[/] {escape(dataset)} is in {escape(str(folder))}", soft_wrap=True)


def render_sample(path, dataset: str, split: str, image_shape, label_names: list[str]) -> None:
    """One line: what was written where, then the images' labels in order."""
    console = stdout()
    console.print(f"[green]wrote[/] {len(label_names)} {escape(dataset)} {split} images "
                  f"({escape(format_shape(image_shape))}) to {escape(str(path))}", soft_wrap=True)
    console.print("  labels: " + escape(", ".join(label_names)), soft_wrap=True)
