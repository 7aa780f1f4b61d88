"""What training tells its caller, in order: :class:`RunStarted`; per epoch
:class:`EpochStarted`, a :class:`StepDone` per step and :class:`EpochDone`; then
:class:`Finished`, or :class:`Interrupted` after Ctrl-C. :class:`Notice` may come at any time.

``graphnet train`` renders them with :mod:`graphnet.render.training`; a notebook may pass any
callable as ``on_event``. Events are plain data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class RunStarted:
    graph: str
    dataset: str
    train_samples: int
    val_samples: int
    test_samples: int
    class_names: list[str]
    epochs: int
    start_epoch: int
    start_step: int
    steps_per_epoch: int
    batch_size: int
    optimizer: str
    lr: float
    parameters: int
    run_dir: Path
    resumed_from: Path | None


@dataclass
class Notice:
    """Something the user should know that does not stop training: a warning (settings changed
    between a run and its resumption) or, with ``warning`` False, a note of what was done as
    asked or on the user's behalf (parameters taken from ``--init-from``, an earlier run's
    files kept, early stopping)."""

    text: str
    warning: bool = True


@dataclass
class WorkersStarted:
    """Data-parallel training (``--workers``): the workers are up (again, after a restart)."""

    workers: int
    where: str  # which Ray instance
    threads: list[int]  # per worker
    pids: list[int]
    nodes: list[str]
    exchange: str  # how gradients are summed


@dataclass
class EpochStarted:
    epoch: int  # from 1
    epochs: int
    steps: int
    start_step: int
    samples: int
    samples_done: int  # already done when resuming part-way


@dataclass
class StepDone:
    epoch: int
    step: int  # steps done in this epoch, from 1
    steps: int
    samples: int  # samples done in this epoch
    total_samples: int
    loss: float  # running mean over the epoch
    accuracy: float
    lr: float
    samples_per_second: float  # since this epoch (or its resumption) started
    compute_shares: list[float] | None = None
    """On workers (``--workers``): each worker's share of the step spent computing; the rest
    is communication (see :mod:`graphnet.distributed`)."""


@dataclass
class WatchRow:
    """One node's health after an epoch (None where it has no parameters)."""

    node: str
    op: str
    grad_norm: float | None
    update_ratio: float | None  # ‖w_end − w_start‖ / ‖w_start‖ over the epoch (its resumed part)
    zero_share: float  # share of exactly-zero outputs on a fixed batch
    problems: list[str]


@dataclass
class EpochDone:
    record: dict[str, Any]
    epochs: int
    checkpoint: Path
    watch: list[WatchRow] | None = None


@dataclass
class Interrupted:
    epoch: int
    step: int
    steps: int
    checkpoint: Path
    run_dir: Path


@dataclass
class Finished:
    result: Any  # the run's graphnet.train.TrainResult
