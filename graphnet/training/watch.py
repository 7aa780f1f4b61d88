"""Node health after an epoch (``--watch``): per node, the gradient norm and the share of
exactly-zero outputs on a fixed batch, and how far its weights moved over the epoch.

Watching never changes what is trained: the batch runs in training mode with a throwaway
generator, no update is applied, and state parameters (batch-norm statistics) are put back.
"""
from __future__ import annotations

import math

import numpy as np

from ..engine import Network
from .events import WatchRow

DEAD_SHARE = 0.99
MOSTLY_ZERO_SHARE = 0.95
STALLED_RATIO = 1e-5
VANISHED_GRADIENT = 1e-10


def node_health(network: Network, feeds: dict[str, np.ndarray], loss: str,
                epoch_start_params: dict[str, np.ndarray] | None) -> list[WatchRow]:
    """A row per node but the loss, from one forward and backward of ``feeds``; update ratios
    compare the parameters with ``epoch_start_params`` (none without them)."""
    graph = network.graph
    trainable_keys = {f"{node}/{name}" for node, name, _ in network.trainable()}
    state = {key: array.copy() for key, array in network.flat_params().items()
             if key not in trainable_keys}
    names = [node.name for node in graph.op_nodes if not node.is_loss]
    network.forward(feeds, training=True, capture=names, rng=np.random.default_rng(0),
                    outputs=[loss])
    captured = dict(network.captured)
    gradients = network.backward()
    flat = network.flat_params()
    for key, array in state.items():
        flat[key][...] = array
    rows = []
    for node in graph.op_nodes:
        if node.is_loss:
            continue
        grads = gradients.params.get(node.name, {})
        grad_norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())) \
            if grads else None
        ratio = None
        keys = [f"{node.name}/{name}" for name in grads]
        if keys and epoch_start_params is not None:
            before = math.sqrt(sum(float(np.vdot(epoch_start_params[k], epoch_start_params[k]))
                                   for k in keys))
            change = math.sqrt(sum(float(np.vdot(d, d)) for d in (
                flat[k] - epoch_start_params[k] for k in keys)))
            ratio = change / before if before else (math.inf if change else 0.0)
        zero_share = float(np.mean(captured[node.name] == 0)) if node.name in captured else 0.0
        rows.append(WatchRow(node.name, node.op_name, grad_norm, ratio, zero_share,
                             watch_problems(grad_norm, ratio, zero_share)))
    return rows


def watch_problems(grad_norm, ratio, zero_share) -> list[str]:
    """Signs that a node has stopped learning, at the figures the watch table shows: ``dead``
    (>= 99 % of its outputs are zero, so almost nothing flows back through it), ``mostly
    zeros`` (>= 95 %: a ReLU on its way there), ``no gradient`` (its parameters get none),
    ``stalled`` (its weights moved by at most 1e-5 of their size this epoch)."""
    problems = []
    if zero_share >= DEAD_SHARE:
        problems.append("dead")
    elif zero_share >= MOSTLY_ZERO_SHARE:
        problems.append("mostly zeros")
    if grad_norm is not None and grad_norm < VANISHED_GRADIENT:
        problems.append("no gradient")
    if ratio is not None and ratio <= STALLED_RATIO:
        problems.append("stalled")
    return problems
