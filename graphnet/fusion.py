"""Fusion, a pass over the graph: an elementwise node runs inside the node before it.

A ReLU after a conv costs a pass over memory each way on its own; applied by the conv to each
output tile while the tile is in cache, it costs next to nothing. This module holds everything
about that, so the op contract (:mod:`graphnet.op`) and the engine know nothing of it:

- :class:`Epilogue`, the form in which an elementwise op offers itself;
- two *optional* protocols, outside the base :class:`graphnet.op.Op`. A one-input,
  parameter-free, elementwise op offers an epilogue::

      def epilogue(self, attrs) -> Epilogue | None

  and an op that can apply one to its output (a producer) implements all three of::

      def accepts_epilogue(self, input_shapes, attrs) -> bool
      def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue) -> (output, saved)
      def backward_with_epilogue(self, grad_output, saved, params, attrs, ctx, epilogue)
          -> (input_grads, param_grads)

  ``forward_with_epilogue`` returns the epilogue's result, applied in place to output memory
  the producer made itself (never to an input, which is read-only: see :mod:`graphnet.op`);
  ``backward_with_epilogue`` receives the gradient *of that result* and returns the gradients
  of the producer's inputs and parameters. ``forward`` and ``backward`` keep their meaning:
  the op on its own.
  :func:`graphnet.testing.check_op` checks both sides;
- :func:`fuse_epilogues`, the pass: it turns a plan's nodes into :class:`Step` s, a producer
  and its elementwise consumer becoming one fused node whose op is a :class:`Fused`.

The engine runs steps; it has no fused branch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .op import Op

PRODUCER_METHODS = ("accepts_epilogue", "forward_with_epilogue", "backward_with_epilogue")
"""What an op implements to take an epilogue (all three, or it is never fused into)."""


@dataclass(frozen=True)
class Epilogue:
    """A one-input, parameter-free, elementwise op in a form a producer can apply to each tile
    of its output while the tile is still in cache, skipping a pass over memory each way.

    ``forward(values)`` turns the input into the output, in place. ``backward(grad, output,
    out)`` writes the gradient of the input into ``out`` from the gradient of the output and
    the output: the derivative must follow from the output. A producer applying it passes an
    ``out`` of its own: the gradient it was handed may be shared.
    """

    forward: Callable[[np.ndarray], None]
    backward: Callable[[np.ndarray, np.ndarray, np.ndarray], None]

    def gradient(self, grad: np.ndarray, output: np.ndarray) -> np.ndarray:
        """The gradient of the input as a new array, for producers that apply ``backward`` to
        a whole gradient rather than tile by tile (``grad`` may be shared: it is not written)."""
        result = np.empty_like(grad)
        self.backward(grad, output, result)
        return result


def offers_epilogue(op) -> bool:
    """Whether ``op`` implements the elementwise side of the protocol (``epilogue(attrs)``)."""
    return callable(getattr(op, "epilogue", None))


def producer_methods(op) -> list[str]:
    """Which of :data:`PRODUCER_METHODS` ``op`` implements (all or none, if it is well made)."""
    return [method for method in PRODUCER_METHODS if callable(getattr(op, method, None))]


class Fused(Op):
    """A producer with the elementwise op after it applied inside: the fused node's op.

    Its forward is the producer's ``forward_with_epilogue``, its backward the producer's
    ``backward_with_epilogue`` (the gradient it takes is the consumer's output's). The node
    keeps the producer's name, attributes and parameters.
    """

    name = "fused"

    def __init__(self, producer: Op, consumer: Op, epilogue: Epilogue):
        self.producer, self.consumer, self.epilogue = producer, consumer, epilogue
        self.integer_inputs = producer.integer_inputs
        self.is_loss = producer.is_loss

    def shape(self, input_shapes, attrs):
        return self.producer.shape(input_shapes, attrs)  # elementwise: the consumer keeps it

    def params(self, input_shapes, attrs):
        return self.producer.params(input_shapes, attrs)

    def forward(self, inputs, params, attrs, ctx):
        return self.producer.forward_with_epilogue(inputs, params, attrs, ctx, self.epilogue)

    def backward(self, grad_output, saved, params, attrs, ctx):
        return self.producer.backward_with_epilogue(grad_output, saved, params, attrs, ctx,
                                                    self.epilogue)


class Step(NamedTuple):
    """One thing a forward runs, in order: a graph node (an input or an op node) or a fused
    node. ``output`` names the value it makes: the node's own, or for a fused node the
    consumer's (the producer's own value never exists)."""

    node: object
    output: str

    @property
    def fused(self) -> bool:
        return self.output != self.node.name

    def describe(self) -> str:
        """``op conv2d``, or ``op conv2d (with 'relu1' fused into it)``, for messages."""
        text = f"op {self.node.op_name}"
        return text + (f" (with {self.output!r} fused into it)" if self.fused else "")


def plain_steps(graph, order) -> list[Step]:
    """Every node of ``order`` as its own step."""
    return [Step(graph.nodes[name], name) for name in order]


def fuse_epilogues(graph, order: list[str], *, keep=(), call=None) -> list[Step]:
    """The steps that run ``order``: a producer whose only consumer is an elementwise op
    offering an epilogue, and which accepts it for its input shapes, becomes one fused node
    with that consumer (a conv and its ReLU); every other node is a step of its own.

    A producer whose own value is wanted keeps it: one in ``keep`` (outputs, captures) or
    with a second consumer is never fused. ``call(node, method, *args)`` calls an op's method
    (the engine passes its op-call boundary, which names the node when a plugin fails).
    """
    call = call or (lambda node, method, *args: getattr(node.op, method)(*args))
    keep, in_plan = set(keep), set(order)
    fused_into: dict[str, str] = {}  # consumer → producer
    steps: dict[str, Step] = {}
    for name in order:
        node = graph.nodes[name]
        if name in fused_into:
            continue
        epilogue = None if name in keep else _epilogue_after(graph, node, in_plan, call)
        if epilogue is None:
            steps[name] = Step(node, name)
            continue
        consumer = graph.nodes[graph.consumers(name)[0]]
        fused = dataclasses.replace(node, op=Fused(node.op, consumer.op, epilogue))
        steps[name] = Step(fused, consumer.name)
        fused_into[consumer.name] = name
    return list(steps.values())


def _epilogue_after(graph, node, in_plan, call) -> Epilogue | None:
    """The epilogue of ``node``'s only consumer, if ``node`` can apply it; else None."""
    if node.is_input or len(producer_methods(node.op)) != len(PRODUCER_METHODS):
        return None
    consumers = graph.consumers(node.name)
    if len(consumers) != 1 or consumers[0] not in in_plan:
        return None
    consumer = graph.nodes[consumers[0]]
    if list(consumer.inputs) != [node.name] or consumer.param_specs or \
            not offers_epilogue(consumer.op):
        return None
    input_shapes = [graph.nodes[source].shape for source in node.inputs]
    if not call(node, "accepts_epilogue", input_shapes, node.attrs):
        return None
    return call(consumer, "epilogue", consumer.attrs)


def fused_nodes(steps) -> dict[str, str]:
    """``{consumer: producer}`` for the fused steps among ``steps``."""
    return {step.output: step.node.name for step in steps if step.fused}
