"""Rendering of check results (gradcheck)."""
from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import stdout


def render_gradcheck(graph, report) -> None:
    table = Table(title=Text(f"gradient check: {graph.name}"), title_justify="left")
    table.add_column("node")
    table.add_column("op")
    table.add_column("worst array")
    table.add_column("rel. error", justify="right")
    table.add_column("", justify="center")
    for node_name, check in report.worst_by_node.items():
        node = graph.nodes[node_name]
        ok = check.error <= report.tolerance
        table.add_row(Text(node_name), Text(node.op_name), Text(check.array), f"{check.error:.2e}",
                      "[green]ok[/]" if ok else "[bold red]FAIL[/]")
    console = stdout()
    console.print(table)
    verdict = "[green]all gradients agree[/]" if report.passed else "[bold red]gradients disagree[/]"
    console.print(f"{verdict}: worst relative error {report.worst:.2e} "
                  f"(tolerance {report.tolerance:.0e}, {report.arrays} arrays: parameters, "
                  "inputs and each node's backward on its own)")
    culprit = report.first_wrong_backward
    if culprit is not None:
        node = graph.nodes[culprit.node]
        console.print(f"[bold red]the first node whose backward disagrees with its forward:[/] "
                      f"{escape(culprit.node)} (op {escape(node.op_name)}, plugin "
                      f"{escape(str(node.plugin))}), gradient of its {escape(culprit.array)}: "
                      f"relative error {culprit.error:.2e}")
