"""The driver's side of the workers: starting them, one step over all of them, their state for a
checkpoint, and noticing a worker that died or stopped answering.

A step is two calls per worker: ``compute`` (its share's gradients, put into Ray's object
store) and ``apply`` (all gradients fetched from the store, summed in rank order, the update).
The driver waits for every ``compute`` — it needs the loss, and a NaN must stop the run before
any update — then sends ``apply`` and returns at once: the workers' next ``compute`` queues
behind it, and its timings come back with the next step's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphnetError, UsageError
from .worker import Setup, Shard, Worker

START_TIMEOUT = 300.0
"""Seconds for the workers to start (a cluster's node may first install graphnet's
environment)."""
STEP_TIMEOUT = 120.0
"""Seconds a worker may take for one step before it counts as lost (at least; 20 times the
slowest step so far when that is longer). A worker that dies is noticed at once."""
POLL = 1.0
"""Seconds between looks at the driver's signals while waiting for workers."""


class WorkerLost(Exception):
    """A worker died or stopped answering; ``what`` says which and how."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


@dataclass
class StepTimes:
    """One step's wall time on the driver and each worker's seconds of computation in it."""

    seconds: float
    compute: list[float] = field(default_factory=list)

    @property
    def compute_shares(self) -> list[float]:
        return [min(1.0, c / self.seconds) if self.seconds > 0 else 1.0 for c in self.compute]


class WorkerGroup:
    """``workers`` workers built from ``setup`` and the training split."""

    def __init__(self, ray, setup: Setup, images: np.ndarray, labels: np.ndarray, workers: int,
                 where: str):
        self.ray = ray
        cpus = ray.cluster_resources().get("CPU", 0)
        if workers > cpus:
            raise UsageError(f"{workers} workers need a CPU each, and {where} has {cpus:g}",
                             field="--workers", expected=f"at most {cpus:g}")
        images_ref, labels_ref = ray.put(images), ray.put(labels)
        actor_class = ray.remote(num_cpus=1, max_restarts=0)(Worker)
        self.actors = [actor_class.remote(setup, images_ref, labels_ref, rank, workers, 1)
                       for rank in range(workers)]
        self.places: list[tuple[int | None, str]] = [(None, "?")] * workers
        try:
            self.places = self._get([actor.where.remote() for actor in self.actors],
                                    list(range(workers)), START_TIMEOUT)
            self.threads = self._share_cores()
            self._get([actor.set_threads.remote(threads)
                       for actor, threads in zip(self.actors, self.threads)],
                      list(range(workers)), START_TIMEOUT)
        except BaseException:  # a joined cluster would keep the ones that started
            self.stop()
            raise
        self.pending: list = []  # the last step's apply calls
        self.slowest = 0.0
        self.returned = time.perf_counter()
        self.last_updates = [0.0] * workers

    @property
    def size(self) -> int:
        return len(self.actors)

    def _share_cores(self) -> list[int]:
        """Each worker's threads: its node's CPUs shared among the workers on that node."""
        cpus_by_node = {node["NodeManagerAddress"]: node.get("Resources", {}).get("CPU", 1)
                        for node in self.ray.nodes() if node.get("Alive")}
        counts: dict[str, int] = {}
        for _, node in self.places:
            counts[node] = counts.get(node, 0) + 1
        return [max(1, int(cpus_by_node.get(node, 1)) // counts[node]) for _, node in self.places]

    def describe(self, rank: int) -> str:
        pid, node = self.places[rank]
        return f"worker {rank} (pid {pid} on {node})" if pid else f"worker {rank}"

    # --- a step ---------------------------------------------------------------------------------
    def step(self, indices: np.ndarray, epoch: int, step: int, global_step: int,
             lr: float) -> tuple[float, int, StepTimes, str | None]:
        """One step on the global batch ``indices``: its loss, how many it got right, the
        timings, and the first non-finite node when the loss is not finite (no update then)."""
        batch = len(indices)
        sizes = [batch // self.size + (rank < batch % self.size) for rank in range(self.size)]
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        ranks = [rank for rank in range(self.size) if sizes[rank]]
        calls = [self.actors[rank].compute.options(num_returns=2).remote(
                 Shard(indices, int(bounds[rank]), int(bounds[rank + 1]), epoch, step,
                       global_step)) for rank in ranks]
        stats_refs = [stats for stats, _ in calls]
        gradient_refs = [gradients for _, gradients in calls]
        timeout = max(STEP_TIMEOUT, 20 * self.slowest)
        answers = self._get(self.pending + stats_refs,
                            list(range(len(self.pending))) + ranks, timeout)
        updates, stats = answers[:len(self.pending)], answers[len(self.pending):]
        for rank, update in enumerate(updates):
            self.last_updates[rank] = update["update"]
        self.pending = []
        loss = sum(s["loss"] * s["samples"] for s in stats) / batch
        correct = sum(s["correct"] for s in stats)
        bad = next((s["non_finite_node"] for s in stats if "non_finite_node" in s), None)
        if bad is None:
            self.pending = [actor.apply.remote(gradient_refs, lr) for actor in self.actors]
        now = time.perf_counter()
        compute = [0.0] * self.size
        for rank, s in zip(ranks, stats):
            compute[rank] = s.get("compute", 0.0)
        times = StepTimes(now - self.returned,
                          [c + u for c, u in zip(compute, self.last_updates)])
        self.slowest = max(self.slowest, times.seconds)
        self.returned = now
        return loss, correct, times, bad

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, str]]:
        """Rank 0's parameters, optimizer state and kernel choices, after every update sent so
        far."""
        pending, self.pending = self.pending, []
        answers = self._get(pending + [self.actors[0].state.remote()],
                            list(range(len(pending))) + [0], max(STEP_TIMEOUT, 20 * self.slowest))
        return answers[-1]

    def stop(self) -> None:
        """End every worker's process (a joined cluster keeps running)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self.actors = []

    # --- waiting --------------------------------------------------------------------------------
    def _get(self, refs: list, ranks: list[int], timeout: float) -> list:
        """The values of ``refs`` (the calls of workers ``ranks``); WorkerLost as soon as one
        of them died, or when they take longer than ``timeout`` seconds. Waits in short slices
        so that Ctrl-C is seen while waiting."""
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError

        rank_of = {ref: rank for ref, rank in zip(refs, ranks)}
        deadline = time.monotonic() + timeout
        waiting = list(refs)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerLost(f"{self.describe(rank_of[waiting[0]])} did not answer within "
                                 f"{timeout:.0f} s")
            ready, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=min(POLL, left))
            for ref in ready:
                try:
                    ray.get(ref)
                except RayTaskError as error:
                    cause = getattr(error, "cause", None)
                    if isinstance(cause, (GraphnetError, AssertionError)):
                        raise cause from None
                    raise WorkerLost(f"{self.describe(rank_of[ref])} failed: "
                                     f"{_first_line(cause or error)}") from None
                except RayActorError as error:
                    raise WorkerLost(f"{self.describe(rank_of[ref])} died: "
                                     f"{_death_cause(error)}") from None
                except ray.exceptions.RayError as error:
                    raise WorkerLost(f"{self.describe(rank_of[ref])} was lost: "
                                     f"{_first_line(error)}") from None
        return ray.get(list(refs))


def _first_line(error: Any) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _death_cause(error: Exception) -> str:
    """Ray's long account of an actor's death, cut to what happened."""
    text = str(error)
    if type(error).__name__ == "OutOfMemoryError" or "running low on memory" in text:
        return "Ray stopped it, its node running low on memory"
    if "node has died" in text or "node died" in text:
        return "its node was lost"
    return "its process ended unexpectedly (killed, out of memory or crashed)"
