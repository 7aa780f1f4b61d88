"""Rendering of ``graphnet bench`` reports (plain data from :func:`graphnet.bench.run`)."""
from __future__ import annotations

import sys

from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from . import stdout


def render_json(text: str) -> None:
    """JSON for scripts: plain text, no colour or wrapping."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _number(value, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(value, higher_is_better: bool = False) -> str:
    """graphnet / PyTorch, green where graphnet does at least as well."""
    if value is None:
        return "—"
    cost = 1 / value if higher_is_better and value else value
    colour = "green" if cost <= 1.0 else "yellow" if cost <= 1.5 else "red"
    return f"[{colour}]{value:.2f}×[/]"


SUMMARY_ROWS = (("training step (ms)", "step_ms", 1), ("training images/s", "images_per_s", 0),
                ("inference (ms)", "inference_ms", 1),
                ("inference images/s", "inference_images_per_s", 0),
                ("peak memory (MiB)", "peak_mib", 0))
THROUGHPUTS = ("images_per_s", "inference_images_per_s")


def render_bench(report: dict) -> None:
    console = stdout()
    theirs = report.get("torch")
    console.print(
        f"[bold]{escape(report['graph'])}[/]: batch {report['batch_size']}, float32, "
        f"{report['threads']} thread(s); BLAS: {escape(report['blas'])}; median of "
        f"{report['steps']} steps after {report['warmup']} warm-up"
        + (f"; PyTorch {escape(report['torch_version'])} timed in alternating bursts in this "
           "process"
           if theirs else "")
        + (f"; load average {report['load_average']:.1f}"
           if report.get("load_average") is not None else "")
        + (f"; other processes used {report['other_cores']:.1f} cores while it ran"
           if report.get("other_cores") is not None else ""), soft_wrap=True)

    summary = Table(title="step: forward, loss, backward, SGD momentum", title_justify="left")
    summary.add_column("figure")
    summary.add_column("graphnet", justify="right")
    if theirs:
        summary.add_column("PyTorch", justify="right")
        summary.add_column("ratio", justify="right")
    for label, key, digits in SUMMARY_ROWS:
        row = [label, _number(report.get(key), digits)]
        if theirs:
            row += [_number(theirs.get(key), digits),
                    _ratio(report["ratio"].get(key), higher_is_better=key in THROUGHPUTS)]
        summary.add_row(*row)
    console.print(summary)

    console.print(_fitting_node_table(report, theirs, console))
    console.print(f"numpy float32 matrix product on this machine: "
                  f"{report['gemm_gflops']:.0f} GFLOP/s ({report['threads']} thread(s))")
    if report.get("peak_mib") is not None:
        console.print(f"memory: {escape(report['memory_method'])}; before the first step "
                      f"graphnet {_number(report.get('baseline_mib'), 0)} MiB"
                      + (f", PyTorch {_number(theirs.get('baseline_mib'), 0)} MiB" if theirs else ""),
                      soft_wrap=True)
    agreement = report.get("agreement")
    if agreement is not None:
        parts = []
        for mode, result in agreement["modes"].items():
            if "skipped" in result:
                parts.append(f"{mode}: not compared ({escape(result['skipped'])})")
            else:
                parts.append(f"{mode}: worst relative difference {result['worst']:.1e}"
                             + (f" ({escape(result['where'])})" if result["where"] else "")
                             + _rounding_note(result.get("float64")))
        verdict = "[green]agree[/]" if agreement["passed"] else "[bold red]DISAGREE[/]"
        console.print(f"outputs and gradients {verdict} with PyTorch — " + "; ".join(parts),
                      soft_wrap=True)
        if not agreement["passed"]:
            for mode, result in agreement["modes"].items():
                for key, value in (result.get("failures") or {}).items():
                    console.print(f"  [red]{mode}: {escape(key)} differs by {value:.1e}[/]")


def _rounding_note(exact: dict | None) -> str:
    """Why a float32 difference over the tolerance still agrees: the float64 recheck's."""
    if exact is None:
        return ""
    return (f", float32 rounding the network amplifies: in float64 {exact['worst']:.0e}"
            + (f" ({escape(exact['where'])})" if exact["where"] else ""))


def render_workers(report: dict) -> None:
    """``graphnet bench --workers N``: the step time and each worker's compute/communication."""
    console = stdout()
    console.print(f"[bold]{escape(report['graph'])}[/]: data-parallel training step on "
                  f"{report['workers']} workers ({escape(report['where'])}; threads "
                  f"{', '.join(map(str, report['threads']))}), batch {report['batch_size']}, "
                  f"{report['parameters']:,} parameters exchanged by "
                  f"{escape(report['exchange'])}", soft_wrap=True)
    console.print(f"step: {report['step_seconds'] * 1000:.1f} ms median of {report['steps']}, "
                  f"{report['samples_per_second']:,.0f} samples/s", soft_wrap=True)
    table = Table("worker", "compute", "communication")
    for rank, share in enumerate(report["compute_shares"]):
        table.add_row(str(rank), f"{100 * share:.0f}%", f"{100 * (1 - share):.0f}%")
    console.print(table)


def _fitting_node_table(report: dict, theirs, console) -> Table:
    """The per-node table at the console's width: too wide, it drops the GFLOP/s columns, then
    the kernel column (the JSON report keeps both), then cuts op names, rather than let rich
    cut every column, node names and numbers included."""
    unlimited = console.options.update_width(10_000)
    for gflops, kernels in ((True, True), (False, True), (False, False)):
        nodes = _node_table(report, theirs, gflops=gflops, kernels=kernels)
        excess = Measurement.get(console, unlimited, nodes).maximum - console.width
        if excess <= 0:
            return nodes
    op_width = Measurement.get(console, unlimited, nodes.columns[1].header).maximum
    op_width = max(op_width, *(Measurement.get(console, unlimited, cell).maximum
                               for cell in nodes.columns[1].cells))
    nodes.columns[1].max_width = max(op_width - excess, 4)
    return nodes


def _node_table(report: dict, theirs, *, gflops: bool, kernels: bool = True) -> Table:
    """Per node: the kernel it ran if ``kernels`` (where the report names one), milliseconds,
    share of the step, GFLOP/s if ``gflops``, PyTorch's if ``theirs``. Node names are never
    cut (they are what a reader looks for); ops may be."""
    nodes = Table(title="per node: milliseconds, share of the step"
                  + (", GFLOP/s" if gflops else "")
                  + ("; PyTorch's from separate steps with timing hooks" if theirs else ""),
                  title_justify="left")
    names = list(report["nodes"]) + ["(rest)"]
    kernels = kernels and any(node.get("kernel") for node in report["nodes"].values())
    nodes.add_column("node", no_wrap=True, min_width=max(len(name) for name in names))
    nodes.add_column("op", no_wrap=True, overflow="ellipsis")
    if kernels:  # which of an op's kernels the node ran (measured or pinned)
        nodes.add_column("kernel", no_wrap=True)
    columns = ("fwd", "bwd", "share") + (("GF/s fwd", "GF/s bwd") if gflops else ())
    for column in columns + (("torch fwd", "torch bwd", "ratio") if theirs else ()):
        nodes.add_column(column, justify="right", no_wrap=True)
    for name, node in report["nodes"].items():
        share = node.get("share")
        row = [escape(name), node["op"], _number(node["forward_ms"], 2),
               _number(node["backward_ms"], 2), "—" if share is None else f"{share:.0%}"]
        if node.get("fused_into"):  # timed as part of the node it runs in
            row[2:4] = [f"in {escape(node['fused_into'])}", ""]
        if kernels:
            row.insert(2, escape(node.get("kernel") or ""))
        if gflops:
            row += [_number(node.get("forward_gflops"), 0),
                    _number(node.get("backward_gflops"), 0)]
        if theirs:
            other = theirs["nodes"].get(name, {})
            ours_total = (node["forward_ms"] or 0) + (node["backward_ms"] or 0)
            their_total = (other.get("forward_ms") or 0) + (other.get("backward_ms") or 0)
            row += [_number(other.get("forward_ms"), 2), _number(other.get("backward_ms"), 2),
                    _ratio(ours_total / their_total)
                    if their_total and not node.get("fused_into") else "—"]
        nodes.add_row(*row)
    if report.get("outside_nodes_ms") is not None:
        outside = report["outside_nodes_ms"] / report["step_ms"]
        nodes.add_row("(rest)", "engine, optimizer", *([""] * kernels), "", "",
                      f"{outside:.0%}", *([""] * (len(nodes.columns) - 5 - kernels)))
    return nodes
