"""What runs in a worker process: the network, its optimizer and the training split, one step's
gradients of this worker's share of a global batch, and the update from everyone's.

A worker is a plain class here; :mod:`.group` makes it a Ray actor. Every worker starts from the
parameters and optimizer state the driver sends (the run's start or its checkpoint), computes
the same sum of the same gradients in the same order and applies the same update, so all hold
the same parameters after every step; batch norm's running statistics are each worker's own
(its batches' statistics), and rank 0's are the ones checkpointed.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

DROPOUT_STREAM = 7
"""Dropout and other random ops draw, per step, from ``(seed, DROPOUT_STREAM, rank,
global step)``: a stream of each worker's own, the same whatever the run was resumed from."""


@dataclass
class Setup:
    """Everything a worker is built from, besides the training split (sent apart, through the
    object store, so a node fetches it once)."""

    spec: Any  # graphnet.spec.Spec: plain data
    plugin_files: list[str]
    plugin_names: list[str]
    config: Any  # graphnet.train_config.TrainConfig
    bindings: Any
    standardise: Any
    params: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray] | None
    choices: Any = None  # graphnet.op.Choices: the kernels a resumed run ran, pinned again


@dataclass
class Shard:
    """One worker's part of step ``step`` (of ``epoch``): ``indices`` are the global batch's
    training samples, ``indices[start:stop]`` this worker's."""

    indices: np.ndarray
    start: int
    stop: int
    epoch: int
    step: int
    global_step: int


class Worker:
    """Rank ``rank`` of ``world`` workers, computing with ``threads`` threads."""

    def __init__(self, setup: Setup, images: np.ndarray, labels: np.ndarray, rank: int,
                 world: int, threads: int):
        from ..data import Split
        from ..data.augment import Augmentation
        from ..engine import Network
        from ..graph import build_graph
        from ..training.classification import Classification

        self.rank, self.world = rank, world
        self.set_threads(threads)
        config = setup.config
        graph = build_graph(setup.spec, _registry(setup.plugin_files, setup.plugin_names))
        self.network = network = Network(graph, seed=config.seed, params=setup.params,
                                         choices=setup.choices)
        # the driver built and checked this optimizer already; the same plugin makes it here
        entry = graph.registry.entry("optimizer", config.optimizer)
        self.optimizer = entry.value(SimpleNamespace(**{
            key: value for key, value in config.optimizer_options.items() if key != "lr"}))
        if setup.optimizer_state:
            self.optimizer.load_state_dict(setup.optimizer_state, params=network.flat_params())
        self.bindings, self.config = setup.bindings, config
        self.task = Classification(
            network=network, bindings=setup.bindings, standardise=setup.standardise,
            train=Split(images, labels), validation=None, test=Split(images[:0], labels[:0]),
            class_names=[], dataset={}, eval_batch_size=config.eval_batch_size,
            augment=Augmentation(config.augment, graph.registry, config.seed))
        self.keys: list[str] | None = None  # the parameters that receive gradients, in order

    def set_threads(self, threads: int) -> None:
        """Compute with ``threads`` threads. This process is the worker's alone: its share of
        the node's cores for graphnet's threads and for BLAS, so N workers on a machine never
        oversubscribe it."""
        from .. import runtime
        from ..blas import threadpoolctl

        runtime.set_num_threads(threads)
        threadpoolctl().threadpool_limits(threads)
        self.threads = threads

    def where(self) -> tuple[int, str]:
        """This worker's process id and node address."""
        import ray

        return os.getpid(), ray.util.get_node_ip_address()

    def compute(self, shard: Shard) -> tuple[dict[str, Any], np.ndarray]:
        """Forward and backward of this worker's share: its statistics and its gradients as one
        flat array, already weighted by its share of the global batch."""
        started = time.perf_counter()
        task, network, bindings = self.task, self.network, self.bindings
        # The whole batch is augmented, as one process augments it, and this share cut from it:
        # the draws do not depend on how the batch is split.
        indices = shard.indices
        images = task.train.images[indices]
        if task.augment:
            images = task.augment(images, shard.epoch, shard.step)
        part = slice(shard.start, shard.stop)
        feeds = {bindings.image: task.standardise(images[part]),
                 bindings.label: task.train.labels[indices[part]]}
        network.step_rng = np.random.default_rng([self.config.seed, DROPOUT_STREAM, self.rank,
                                                  shard.global_step])
        rng_state = network.step_rng.bit_generator.state
        with np.errstate(all="ignore"):
            outputs = network.forward(feeds, training=True,
                                      outputs=[bindings.loss, bindings.logits])
            loss = float(outputs[bindings.loss])
            stats = {"loss": loss, "correct": task.correct(outputs, feeds),
                     "samples": shard.stop - shard.start}
            if not math.isfinite(loss):
                stats["non_finite_node"] = self._first_non_finite(feeds, rng_state)
                return stats, np.zeros(0, np.float32)
            gradients = network.backward()
        trainable = [(f"{node}/{name}", gradients.params[node][name])
                     for node, name, _ in network.trainable()
                     if name in gradients.params.get(node, {})]
        if self.keys is None:
            self.keys = [key for key, _ in trainable]
        assert [key for key, _ in trainable] == self.keys, "the parameters with gradients changed"
        share = (shard.stop - shard.start) / len(indices)
        flat = np.concatenate([grad.ravel() for _, grad in trainable]) if trainable \
            else np.zeros(0, network.dtype)
        if share != 1.0:
            flat *= flat.dtype.type(share)
        stats["compute"] = time.perf_counter() - started
        return stats, flat

    def apply(self, gradient_refs: list, lr: float) -> dict[str, float]:
        """Fetch every worker's gradients, sum them in rank order and apply the update."""
        import ray

        from ..optim import clip_by_global_norm

        started = time.perf_counter()
        parts = ray.get(gradient_refs)
        total = parts[0].copy()
        for part in parts[1:]:
            total += part
        fetched = time.perf_counter()
        params = self.network.flat_params()
        triples, offset = [], 0
        for key in self.keys or ():
            array = params[key]
            triples.append((key, array, total[offset:offset + array.size].reshape(array.shape)))
            offset += array.size
        if self.config.clip_norm:
            triples, _ = clip_by_global_norm(triples, self.config.clip_norm)
        with np.errstate(all="ignore"):
            self.optimizer.step(triples, lr)
        return {"exchange": fetched - started, "update": time.perf_counter() - fetched}

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
        """Parameters (state included), optimizer state and what each node ran (a conv's
        kernel), for a checkpoint."""
        return ({key: array.copy() for key, array in self.network.flat_params().items()},
                self.optimizer.state_dict(), dict(self.network.choices.by_node))

    def _first_non_finite(self, feeds, rng_state) -> str:
        from ..errors import NumericError

        network = self.network
        network.step_rng.bit_generator.state = rng_state
        try:
            network.forward(feeds, training=True, check_finite=True,
                            outputs=[self.bindings.loss])
        except NumericError as error:
            if error.node:
                return error.node
        return network.graph.outputs[self.bindings.loss]


def _registry(plugin_files: list[str], plugin_names: list[str]):
    """The driver's plugins: its plugin files, and the built-in and installed ones it had (the
    environment's plugin variables were read by the driver and are not read again)."""
    from ..registry import build_registry

    registry = build_registry(plugin_files, environment=False)
    extra = set(registry.plugin_names) - set(plugin_names)
    if extra:  # plugins the driver had disabled
        registry = build_registry(plugin_files, environment=False, disabled=extra)
    return registry


def plugins_of(registry) -> tuple[list[str], list[str]]:
    """(plugin files, plugin names) of a registry, files as absolute paths in both, for
    :class:`Setup`: a worker's working directory is not the driver's."""
    files, names = [], []
    for name in registry.plugin_names:
        if not name.startswith("builtin:") and Path(name).is_file():
            name = str(Path(name).resolve())
            files.append(name)
        names.append(name)
    return files, names
