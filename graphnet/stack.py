"""A graph named as "what is a conv layer" articles name a network: its main path in plain words
(``(conv → ReLU → pool) ×3 → fully connected → softmax``), repeats folded, branches counted.

Generic over graphs and ops: an op's word comes from :data:`WORDS` (built-in names; a plugin's
op is called by its own name), the main path is the longest path through the DAG, and a merge
on it is a skip connection when its other input comes from the main path itself, a side branch
when it comes from nodes off it.
"""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from .analysis import ReceptiveField
from .op import format_shape

WORDS = {
    "conv2d": "conv", "relu": "ReLU", "leaky_relu": "leaky ReLU", "sigmoid": "sigmoid",
    "tanh": "tanh", "max_pool2d": "pool", "avg_pool2d": "average pool",
    "global_avg_pool": "global average pool", "dense": "fully connected", "dropout": "dropout",
    "batch_norm": "batch norm", "softmax": "softmax", "softmax_cross_entropy": "softmax",
    "mse_loss": "squared-error loss", "add": "add", "concat": "concat",
}
UNNAMED = {"flatten"}
"""Ops the articles leave out: a reshape, not a layer."""


@dataclass(frozen=True)
class Stack:
    """The main path in words (repeats folded), its merges, the size of the whole graph."""

    path: str
    skip_connections: int
    side_branches: int
    parameters: int
    input_shape: tuple[int, ...] | None

    def __str__(self) -> str:
        merges = [f"{count} {noun if count == 1 else plural}"
                  for count, noun, plural in (
                      (self.skip_connections, "skip connection", "skip connections"),
                      (self.side_branches, "side branch", "side branches"))
                  if count]
        text = self.path + (" with " + " and ".join(merges) if merges else "")
        if self.input_shape is not None:
            text += f"; input {format_shape(self.input_shape)}"
        return text + f"; {self.parameters:,} parameters"


def describe(graph) -> Stack:
    """The :class:`Stack` of an analysed graph."""
    main = nx.dag_longest_path(graph.dag) if graph.dag.number_of_nodes() else []
    on_main = set(main)
    words, skips, branches = [], 0, 0
    for previous, name in zip([None, *main], main):
        node = graph.nodes[name]
        if node.is_input:
            continue
        for source in node.inputs:
            if source == previous or graph.nodes[source].is_input:
                continue
            if source in on_main:
                skips += 1
            else:
                branches += 1
        if node.op_name not in UNNAMED:
            words.append(WORDS.get(node.op_name, node.op_name))
    images = [n for n in graph.inputs if len(graph.nodes[n].shape) == 3]
    first = images[0] if images else (main[0] if main and graph.nodes[main[0]].is_input else None)
    return Stack(fold(words), skips, branches, graph.total_params - graph.total_state,
                 graph.nodes[first].shape if first is not None else None)


def fold(words: list[str]) -> str:
    """Words joined by arrows, each run of a repeated block written once with ``×N`` after it
    (in parentheses when it has several words, so ``(conv → ReLU) ×2`` is not read as two
    ReLUs). Of all the ways to fold, the one that shows the fewest words, then the fewest
    parts, folding as early as it can: ``conv → (conv → conv → add) ×3``, not ``conv ×3 →
    (add → conv → conv) ×2 → add``."""
    count = len(words)
    # best[i]: (cost, parts) of the shortest description of words[i:]; a part costs 10 per
    # word it shows and 1 for being a part
    best: list[tuple[int, list[str]]] = [(0, [])] * (count + 1)
    for index in range(count - 1, -1, -1):
        cost, parts = best[index + 1]
        choice = (cost + 11, [words[index], *parts])
        for length in range(1, (count - index) // 2 + 1):
            block = words[index:index + length]
            repeats = 1
            while words[index + repeats * length:index + (repeats + 1) * length] == block:
                repeats += 1
                cost, parts = best[index + repeats * length]
                text = " → ".join(block)
                text = (f"({text})" if length > 1 else text) + f" ×{repeats}"
                if cost + 10 * length + 1 <= choice[0]:  # a tie: fold where it starts
                    choice = (cost + 10 * length + 1, [text, *parts])
        best[index] = choice
    return " → ".join(best[0][1])


def deepest_field_node(graph) -> str | None:
    """The last node (in order) whose units see a window of the image, not all of it: the one
    whose receptive field ``graphnet inspect --rf`` has the most to say about."""
    found = [node.name for node in graph.op_nodes
             if isinstance(node.receptive_field, ReceptiveField)]
    return found[-1] if found else None
