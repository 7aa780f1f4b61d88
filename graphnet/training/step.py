"""One step of gradient descent on a batch: the step ``graphnet train`` takes and ``graphnet
bench`` times.

    step = TrainStep(network, optimizer, loss="loss", outputs=["loss", "logits"], clip_norm=1.0)
    loss, outputs = step(feeds, lr)

Forward in training mode (the loss and any other outputs asked for), a check that the loss is
finite, backward, optional clipping to a global norm, and the optimizer's in-place update of every
trainable parameter that received a gradient.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..engine import Network
from ..errors import NumericError, plugin_failure
from ..optim import Optimizer, clip_by_global_norm


class NonFiniteLoss(NumericError):
    """The loss of a step was NaN or infinite; ``node`` is the first node whose output was."""

    def __init__(self, loss: float, node: str, file=None):
        super().__init__(f"the loss became {loss}; the first non-finite output is node {node!r}",
                         file=file, node=node)
        self.loss = loss


class TrainStep:
    """Forward with the loss, backward, update. ``outputs`` are computed besides the loss (all
    of the graph's by default); ``clip_norm`` clips the gradients' global norm; ``check_loss``
    raises :class:`NonFiniteLoss` instead of applying an update from a NaN or infinite loss."""

    def __init__(self, network: Network, optimizer: Optimizer, *, loss: str,
                 outputs: Sequence[str] | None = None, clip_norm: float | None = None,
                 check_loss: bool = True):
        self.network = network
        self.optimizer = optimizer
        self.loss = loss
        self.outputs = list(outputs) if outputs is not None else list(network.graph.outputs)
        if loss not in self.outputs:
            self.outputs.insert(0, loss)
        self.clip_norm = clip_norm
        self.check_loss = check_loss

    def __call__(self, feeds: dict[str, np.ndarray], lr: float, *,
                 profile=None) -> tuple[float, dict[str, np.ndarray]]:
        """Take one step; returns the loss (before the update) and the outputs. ``profile`` is
        told each op's forward and backward time (see :meth:`Network.forward`)."""
        # One runtime entry for the whole step (forward, backward and update), not one per pass:
        # entering sets and restores the BLAS limit, tens of microseconds each time.
        with self.network.runtime:
            return self._step(feeds, lr, profile)

    def _step(self, feeds, lr, profile) -> tuple[float, dict[str, np.ndarray]]:
        network = self.network
        rng_state = network.step_rng.bit_generator.state  # to replay the batch if it goes bad
        outputs = network.forward(feeds, training=True, outputs=self.outputs, profile=profile)
        loss = float(outputs[self.loss])
        if self.check_loss and not math.isfinite(loss):
            raise NonFiniteLoss(loss, self._first_non_finite(feeds, rng_state),
                                network.graph.file)
        gradients = network.backward(profile=profile)
        triples = [(f"{node}/{name}", array, gradients.params[node][name])
                   for node, name, array in network.trainable()
                   if name in gradients.params.get(node, {})]
        if self.clip_norm:
            triples, _ = clip_by_global_norm(triples, self.clip_norm)
        try:
            self.optimizer.step(triples, lr)
        except Exception as error:
            raise plugin_failure(error, f"optimizer {self.optimizer.name!r} (plugin "
                                        f"{getattr(self.optimizer, 'plugin', '?')!r}) failed to "
                                        "step")
        return loss, outputs

    def _first_non_finite(self, feeds, rng_state) -> str:
        """Run the batch again, drawing what it drew, with finiteness checks on every node."""
        network = self.network
        network.step_rng.bit_generator.state = rng_state
        try:
            network.forward(feeds, training=True, check_finite=True, outputs=self.outputs)
        except NumericError as error:
            if error.node:
                return error.node
        return network.graph.outputs[self.loss]
