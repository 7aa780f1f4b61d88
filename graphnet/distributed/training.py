"""The training loop on workers (``graphnet train --workers N``) and ``graphnet bench --workers N``.

:class:`DistributedLoop` is the ordinary loop (:mod:`graphnet.training.loop`) whose steps run
on a :class:`~.group.WorkerGroup`: the epochs, the shuffle, the learning rates, the history, Ctrl-C
and the checkpoints are the loop's own, so a run directory is the same as one process's. Before
each checkpoint and each evaluation the driver takes rank 0's parameters and optimizer state;
the checkpoint is written once, by the driver, atomically, in the usual format. A resumed run
may use any worker count.

When a worker dies or stops answering, every worker is stopped, the run goes back to its last
checkpoint (or to where this session started, before the first), a new group starts from it,
and the output says so; after ``max_failures`` restarts the run stops with
:class:`WorkersFailed` (exit 2), naming the worker and what happened to it.
"""
from __future__ import annotations

import copy
import statistics
from typing import Any

import numpy as np

from ..errors import GraphnetError
from ..training import state
from ..training.events import Notice, StepDone, WorkersStarted
from ..training.loop import Loop
from ..training.step import NonFiniteLoss
from . import cluster
from .group import StepTimes, WorkerGroup, WorkerLost
from .worker import Setup, plugins_of

DEFAULT_MAX_FAILURES = 3
EXCHANGE = "all-gather through Ray's object store"


class WorkersFailed(GraphnetError):
    """Workers kept failing: more restarts than ``--max-failures`` allows."""


class DistributedLoop(Loop):
    """The loop, with each step taken by ``workers`` Ray workers (see the module docstring)."""

    def __init__(self, *args, workers: int, ray_address: str | None = None,
                 max_failures: int = DEFAULT_MAX_FAILURES):
        super().__init__(*args)
        self.workers, self.ray_address, self.max_failures = workers, ray_address, max_failures
        self.group: WorkerGroup | None = None
        self.synced = True
        self.last_times: StepTimes | None = None
        self.failures: list[str] = []
        emit = self.emit

        def emit_with_times(event):
            if isinstance(event, StepDone) and self.last_times is not None:
                event.compute_shares = self.last_times.compute_shares
            emit(event)

        self.emit = emit_with_times

    def run(self) -> bool:
        with cluster.session(self.ray_address) as session:
            start = self._snapshot()
            while True:
                try:
                    self.group = self._start_group(session)
                    return super().run()
                except WorkerLost as lost:
                    self._recover(lost, start)
                finally:
                    if self.group is not None:
                        self.group.stop()
                        self.group = None

    # --- the steps ------------------------------------------------------------------------------
    def _step(self, indices: np.ndarray, epoch: int, lr: float) -> tuple[float, int]:
        progress = self.progress
        loss, correct, times, bad = self.group.step(indices, epoch, progress.step,
                                                    progress.global_step, lr)
        if bad is not None:
            raise NonFiniteLoss(loss, bad, self.step.network.graph.file)
        self.last_times = times
        self.synced = False
        return loss, correct

    def _end_epoch(self) -> None:
        self._sync()  # the evaluation runs on the driver's network
        super()._end_epoch()

    def _save(self, *, partial: bool) -> None:
        self._sync()
        super()._save(partial=partial)

    def _sync(self) -> None:
        """Take rank 0's parameters and optimizer state into the driver's network."""
        if self.synced or self.group is None:
            return
        params, optimizer_state, choices = self.group.state()
        network = self.step.network
        network.load_params(params)
        self.step.optimizer.load_state_dict(optimizer_state, params=network.flat_params())
        # the checkpoint records rank 0's kernels, which a resumed run pins again
        network.choices.by_node.update(choices)
        self.synced = True

    # --- the workers ----------------------------------------------------------------------------
    def _start_group(self, session) -> WorkerGroup:
        network, task = self.step.network, self.task
        files, names = plugins_of(network.graph.registry)
        setup = Setup(spec=network.graph.spec, plugin_files=files, plugin_names=names,
                      config=self.config, bindings=task.bindings, standardise=task.standardise,
                      params={k: a.copy() for k, a in network.flat_params().items()},
                      optimizer_state=self.step.optimizer.state_dict(),
                      choices=network.choices)
        group = WorkerGroup(session.ray, setup, task.train.images, task.train.labels,
                            self.workers, session.where)
        self.synced = True
        self.emit(WorkersStarted(group.size, session.where, group.threads,
                                 [pid for pid, _ in group.places],
                                 [node for _, node in group.places], EXCHANGE))
        return group

    def _snapshot(self) -> dict[str, Any]:
        """Where this session starts: what a restart before the first checkpoint goes back to."""
        return {"params": {k: a.copy() for k, a in self.step.network.flat_params().items()},
                "optimizer": self.step.optimizer.state_dict(),
                "schedule": copy.deepcopy(self.schedule.state_dict()),
                "progress": copy.deepcopy(self.progress),
                "shuffle": copy.deepcopy(self.shuffle_rng.bit_generator.state)}

    def _recover(self, lost: WorkerLost, start: dict[str, Any]) -> None:
        """After a lost worker: give up past ``max_failures``, else go back to the last
        checkpoint (or the session's start) for a new group."""
        self.failures.append(lost.what)
        if len(self.failures) > self.max_failures:
            raise WorkersFailed(
                f"{lost.what}; the workers failed {len(self.failures)} times, more than "
                f"--max-failures {self.max_failures} allows", hint="the last checkpoint is kept: "
                f"{self.checkpoint_path}" if self.saved else "no checkpoint was written")
        if self.group is not None:
            self.group.stop()
            self.group = None
        if self.saved:
            back_to = f"the last checkpoint ({self.checkpoint_path})"
            quiet: list = []
            emit, self.emit = self.emit, quiet.append  # its notices were told at the start
            try:
                state.restore(self, self.checkpoint_path)
            finally:
                self.emit = emit
        else:
            back_to = ("where this run started" if not start["progress"].global_step
                       else "the checkpoint this run resumed from")
            network = self.step.network
            network.load_params(start["params"])
            self.step.optimizer.load_state_dict(start["optimizer"],
                                                params=network.flat_params())
            self.schedule.load_state_dict(copy.deepcopy(start["schedule"]))
            self.progress = copy.deepcopy(start["progress"])
            self.shuffle_rng.bit_generator.state = copy.deepcopy(start["shuffle"])
        self.synced, self.last_times = True, None
        self.emit(Notice(f"{lost.what}; restarting the {self.workers} workers from {back_to} "
                         f"(restart {len(self.failures)} of at most {self.max_failures})"))


# --- graphnet bench --workers ---------------------------------------------------------------------
def bench(graph, *, workers: int, batch_size: int, steps: int, warmup: int, seed: int,
          ray_address: str | None = None) -> dict[str, Any]:
    """Time data-parallel steps (SGD with momentum) on a random batch: the median step time,
    samples per second and each worker's share of the step spent computing (the rest is
    communication: the gradients' exchange and Ray's calls)."""
    from ..engine import Network
    from ..inference import Standardiser, bind
    from ..train_config import TrainConfig

    config = TrainConfig.from_graph(graph, {"batch_size": batch_size, "seed": seed,
                                            "optimizer": "sgd", "momentum": 0.9, "augment": ""})
    bindings = bind(graph, config.image_input, config.label_input, config.logits_output)
    bindings.require_labels(graph.file)
    rng = np.random.default_rng(seed)
    shape = graph.nodes[bindings.image].shape
    images = rng.standard_normal((batch_size, *shape), dtype=np.float32)
    labels = rng.integers(0, bindings.classes, batch_size)
    network = Network(graph, seed=seed)
    files, names = plugins_of(graph.registry)
    setup = Setup(spec=graph.spec, plugin_files=files, plugin_names=names, config=config,
                  bindings=bindings, standardise=Standardiser.fit(images),
                  params=network.flat_params(), optimizer_state=None)
    indices = np.arange(batch_size)
    with cluster.session(ray_address) as session:
        group = WorkerGroup(session.ray, setup, images, labels, workers, session.where)
        try:
            times = []
            for step in range(warmup + steps + 1):
                _, _, took, _ = group.step(indices, 0, step, step, 0.01)
                if step > warmup:  # a step's timings arrive with the next one's
                    times.append(took)
            group.state()
            threads = group.threads
        finally:
            group.stop()
    seconds = statistics.median(t.seconds for t in times)
    shares = [statistics.median(t.compute_shares[rank] for t in times)
              for rank in range(workers)]
    return {"graph": graph.name, "workers": workers, "where": session.where,
            "threads": threads, "batch_size": batch_size, "steps": steps,
            "parameters": int(sum(a.size for _, _, a in network.trainable())),
            "step_seconds": seconds, "samples_per_second": batch_size / seconds,
            "compute_shares": shares, "exchange": EXCHANGE}
