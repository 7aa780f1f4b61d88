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

At inference (a forward that keeps nothing for backward) the pass also folds a per-channel
affine map into the op before it: batch norm outside training is x·scale + shift per channel,
and a conv followed by it is a conv with rescaled weights and a shifted bias, so the batch
norm's pass over memory disappears. Two more optional protocols: the affine op offers::

      def channel_affine(self, params, attrs) -> (scale, shift)   # float64, (channels,)

  and the op before it (a producer of channels along axis 1, linear in its parameters)::

      def absorb_channel_affine(self, params, attrs, scale, shift) -> (params, attrs)

  returning new arrays (never writing the network's). A :class:`Folded` op computes the
  folded parameters once per parameter version: it keeps copies of what it folded and folds
  again when any of them changed (an optimizer step, ``load_params``, a direct write).

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


class TakesEpilogue:
    """A mixin for a producer that takes an epilogue whatever its shapes, and whose ``forward``
    and ``backward`` are its epilogue versions with none (batch norm, add): subclass it before
    :class:`graphnet.op.Op` and write the two ``_with_epilogue`` methods."""

    def accepts_epilogue(self, input_shapes, attrs):
        return True

    def forward(self, inputs, params, attrs, ctx):
        return self.forward_with_epilogue(inputs, params, attrs, ctx, None)

    def backward(self, grad_output, saved, params, attrs, ctx):
        return self.backward_with_epilogue(grad_output, saved, params, attrs, ctx, None)


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


class Folded(Op):
    """An op with the per-channel affine op after it folded into its parameters (a conv and
    the batch norm after it, at inference): the folded node's op. Inference only: a forward
    that keeps something for backward is never planned with one."""

    name = "folded"

    def __init__(self, producer: Op, consumer: Op, consumer_attrs, consumer_params: dict):
        self.producer, self.consumer = producer, consumer
        self.consumer_attrs = consumer_attrs
        self.consumer_params = consumer_params  # the network's own arrays, read at each call
        self.integer_inputs = producer.integer_inputs
        self.is_loss = producer.is_loss
        self._folded_from: list[np.ndarray] | None = None
        self._folded = None

    def folded(self, params, attrs):
        """The producer's ``(params, attrs)`` with the affine op folded in, folded again only
        when a parameter of either changed since the last fold: the copies are compared
        exactly, the affine op's small vectors first."""
        sources = list(self.consumer_params.values()) + list(params.values())
        if self._folded_from is None or len(sources) != len(self._folded_from) or not all(
                np.array_equal(now, then) for now, then in zip(sources, self._folded_from)):
            scale, shift = self.consumer.channel_affine(self.consumer_params,
                                                        self.consumer_attrs)
            self._folded = self.producer.absorb_channel_affine(params, attrs, scale, shift)
            self._folded_from = [np.array(source) for source in sources]
        return self._folded

    def shape(self, input_shapes, attrs):
        return self.producer.shape(input_shapes, attrs)  # the affine op keeps it

    def params(self, input_shapes, attrs):
        return self.producer.params(input_shapes, attrs)

    def forward(self, inputs, params, attrs, ctx):
        return self.producer.forward(inputs, *self.folded(params, attrs), ctx)

    def backward(self, grad_output, saved, params, attrs, ctx):
        raise AssertionError("a folded node runs only in forwards that keep nothing for backward")

    # a producer if the op it folds into is one (a conv takes the ReLU after the batch norm)
    def accepts_epilogue(self, input_shapes, attrs):
        return bool(producer_methods(self.producer) == list(PRODUCER_METHODS)
                    and self.producer.accepts_epilogue(input_shapes, attrs))

    def forward_with_epilogue(self, inputs, params, attrs, ctx, epilogue):
        return self.producer.forward_with_epilogue(inputs, *self.folded(params, attrs), ctx,
                                                   epilogue)

    backward_with_epilogue = backward


class Step(NamedTuple):
    """One thing a forward runs, in order: a graph node (an input or an op node) or a fused
    node. ``output`` names the value it makes: the node's own, or for a fused node the last
    consumer's (the producer's own value never exists); ``absorbed`` names the consumers run
    inside it (a batch norm folded into a conv, then the ReLU after it), in order."""

    node: object
    output: str
    absorbed: tuple[str, ...] = ()

    @property
    def fused(self) -> bool:
        return self.output != self.node.name

    def describe(self) -> str:
        """``op conv2d``, or ``op conv2d (with 'relu1' fused into it)``, for messages."""
        text = f"op {self.node.op_name}"
        inside = " and ".join(repr(name) for name in self.absorbed or (self.output,))
        return text + (f" (with {inside} fused into it)" if self.fused else "")


def plain_steps(graph, order) -> list[Step]:
    """Every node of ``order`` as its own step."""
    return [Step(graph.nodes[name], name) for name in order]


def fuse_epilogues(graph, order: list[str], *, keep=(), call=None,
                   fold_params=None) -> list[Step]:
    """The steps that run ``order``: a producer whose only consumer is an elementwise op
    offering an epilogue, and which accepts it for its input shapes, becomes one fused node
    with that consumer (a conv and its ReLU); every other node is a step of its own.

    With ``fold_params`` (the engine passes it for forwards that keep nothing for backward:
    ``fold_params(name)`` is node ``name``'s parameters), a node whose only consumer is a
    per-channel affine op it can absorb is folded with it first (a conv and its batch norm),
    and the epilogue after the affine op, if any, fused into the folded node.

    A producer whose own value is wanted keeps it: one in ``keep`` (outputs, captures) or
    with a second consumer is never fused. ``call(node, method, *args)`` calls an op's method
    (the engine passes its op-call boundary, which names the node when a plugin fails).
    """
    call = call or (lambda node, method, *args: getattr(node.op, method)(*args))
    keep, in_plan = set(keep), set(order)
    absorbed: set[str] = set()
    steps: list[Step] = []
    for name in order:
        if name in absorbed:
            continue
        node, output, inside = graph.nodes[name], name, ()
        affine = None if fold_params is None or name in keep else \
            _only_consumer(graph, node, output, in_plan, "channel_affine")
        if affine is not None and callable(getattr(node.op, "absorb_channel_affine", None)):
            node = dataclasses.replace(node, op=Folded(node.op, affine.op, affine.attrs,
                                                       fold_params(affine.name)))
            output, inside = affine.name, (affine.name,)
        epilogue = None if output in keep else _epilogue_after(graph, node, output, in_plan,
                                                               call)
        if epilogue is not None:
            consumer = graph.nodes[graph.consumers(output)[0]]
            node = dataclasses.replace(node, op=Fused(node.op, consumer.op, epilogue))
            output, inside = consumer.name, inside + (consumer.name,)
        absorbed.update(inside)
        steps.append(Step(node, output, inside))
    return steps


def _only_consumer(graph, node, output, in_plan, method):
    """``output``'s only consumer if it is in the plan, takes no other input and implements
    ``method``; else None."""
    if node.is_input:
        return None
    consumers = graph.consumers(output)
    if len(consumers) != 1 or consumers[0] not in in_plan:
        return None
    consumer = graph.nodes[consumers[0]]
    if list(consumer.inputs) != [output] or not callable(getattr(consumer.op, method, None)):
        return None
    return consumer


def _epilogue_after(graph, node, output, in_plan, call) -> Epilogue | None:
    """The epilogue of ``output``'s only consumer, if ``node`` (which makes ``output``) can
    apply it; else None."""
    if len(producer_methods(node.op)) != len(PRODUCER_METHODS):
        return None
    consumer = _only_consumer(graph, node, output, in_plan, "epilogue")
    if consumer is None or consumer.param_specs:
        return None
    input_shapes = graph.input_shapes(node.name)
    if not call(node, "accepts_epilogue", input_shapes, node.attrs):
        return None
    return call(consumer, "epilogue", consumer.attrs)


def fused_nodes(steps) -> dict[str, str]:
    """``{consumer: producer}`` for the consumers the steps run inside a node before them."""
    return {consumer: step.node.name for step in steps
            for consumer in (step.absorbed or ((step.output,) if step.fused else ()))}
