"""Training as a library: mini-batch gradient descent over a graph, with checkpoints.

In a notebook::

    import graphnet
    graph = graphnet.load("specs/classic.toml")
    result = graphnet.train.train(graph, epochs=3, run_dir="runs/try")   # [train], overridden
    result.final["test_accuracy"], result.confusion                      # per-class counts
    result.predict(images)                                               # N×K probabilities
    result = graphnet.train.train(graph, epochs=6, run_dir="runs/try", resume=True)

``train(graph, dataset=None, config=None, *, run_dir=None, resume=False, on_event=None,
**overrides)`` takes the spec's ``[train]`` section merged with keyword overrides (or a ready
:class:`TrainConfig`); ``dataset`` may be a :class:`graphnet.data.Dataset` or a registered name.
It prints nothing: ``on_event`` receives the events of :mod:`graphnet.training.events`
(``graphnet train`` renders them with :mod:`graphnet.render.training`).

This module puts the pieces together; each lives in its own:

- :mod:`graphnet.train_config` — the ``[train]`` keys, how overrides merge with them, the data;
- :mod:`graphnet.training.step` — one step: forward with the loss, backward, clipping, update
  (also what ``graphnet bench`` times);
- :mod:`graphnet.training.loop` — epochs, steps, Ctrl-C, a checkpoint and history per epoch;
- :mod:`graphnet.training.state` — what a checkpoint holds besides parameters, and resuming
  from it bit for bit;
- :mod:`graphnet.training.classification` — what the loop trains: images and labels,
  standardised; accuracy; validation after each epoch, test at the end; evaluating a checkpoint;
- :mod:`graphnet.training.watch` — node health after an epoch (``--watch``);
- :mod:`graphnet.checkpoint` — the checkpoint file, where it is, restoring parameters.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from . import limits
from .checkpoint import (BEST_NAME, CHECKPOINT_NAME, checkpoint_in, find_checkpoint,
                         restore_params, run_dir_of)
from .data import Dataset
from .data.augment import Augmentation
from .data.arrays import DEFAULT_TEST_FRACTION, dataset_from_arrays
from .engine import Network
from .errors import PluginError, UsageError, plugin_failure
from .files import claim_run_folder
from .inference import Bindings, Standardiser, bind, class_names_for, predict_probabilities
from .optim import Optimizer, Schedule
from .train_config import (SCALAR_KEYS, TrainConfig, carve, check_dataset,  # noqa: F401
                           load_dataset, resolve_config)
from .training import state
from .training.classification import Classification, evaluate_checkpoint
from .training.events import (EpochDone, EpochStarted, Finished, Interrupted, Notice,
                              RunStarted, StepDone, WatchRow)
from .training.loop import Loop, checked_rate
from .training.state import HISTORY_NAME, RESUME_IGNORES, Progress
from .training.step import TrainStep
from .training.watch import watch_problems

__all__ = [
    "CHECKPOINT_NAME", "EpochDone", "EpochStarted", "Finished", "HISTORY_NAME", "Interrupted",
    "Notice", "Progress", "RESUME_IGNORES", "RunStarted", "StepDone", "TrainConfig", "TrainResult",
    "WatchRow", "evaluate_checkpoint", "train", "watch_problems",
]


@dataclass
class TrainResult:
    """What a run produced. ``final`` is the last epoch's record, which alone holds the test
    figures (``test_loss``, ``test_accuracy``: the test split is evaluated once, at the end, with
    the last epoch's parameters); ``confusion`` counts test samples by true class (rows) and
    predicted class (columns)."""

    history: list[dict[str, Any]]
    confusion: np.ndarray
    class_names: list[str]
    network: Network
    bindings: Bindings
    standardise: Standardiser
    config: TrainConfig
    run_dir: Path
    checkpoint: Path | None
    interrupted: bool = False
    stop_signal: int | None = None
    """The signal that stopped the run (SIGINT, SIGTERM), when one did."""
    best: Path | None = None
    """``best.npz``: the checkpoint of the epoch with the lowest validation loss (None without a
    validation split)."""
    stopped_early: bool = False

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N×K) for images shaped like the image input."""
        return predict_probabilities(self.network, np.asarray(images), self.bindings,
                                     self.standardise)


def _within_memory_limit(function):
    """``function``'s ``memory_limit`` holds for everything it does (see
    :func:`graphnet.limits.limit_in_force`), the dataset it reads or generates included."""
    @functools.wraps(function)
    def run(*args, memory_limit=None, **kwargs):
        with limits.limit_in_force(memory_limit):
            return function(*args, memory_limit=memory_limit, **kwargs)
    return run


@_within_memory_limit
def train(graph, dataset: Dataset | str | None = None, config: TrainConfig | None = None, *,
          run_dir: str | Path | None = None, resume: bool | str | Path = False,
          on_event: Callable[[Any], None] | None = None, labels: dict[str, str] | None = None,
          memory_limit=None, new_run_dir: bool = False, x=None, y=None, x_test=None,
          y_test=None, test_fraction: float = DEFAULT_TEST_FRACTION,
          init_from: str | Path | None = None, workers: int | None = None,
          ray_address: str | None = None, max_failures: int = 3,
          **overrides) -> TrainResult:
    """Train ``graph``; see the module docstring. ``resume`` is True (the run directory's
    checkpoint) or a checkpoint path. ``memory_limit`` (bytes or text such as ``"8GiB"``;
    default: see :mod:`graphnet.limits`) refuses a graph that would need more to train at the
    configured batch size, and a dataset that would need more to read or generate. The run
    holds its folder until it returns: another run into it is refused, or with
    ``new_run_dir`` goes into a fresh ``RUN_DIR-2``, ``-3``, … (as does a new run where one
    was kept). Returns when done or interrupted (``result.interrupted``,
    ``result.stop_signal``). ``init_from`` (a checkpoint, or a run directory holding one, such
    as ``graphnet import`` writes) starts a new run from its parameters with a fresh optimizer:
    fine-tuning; a checkpoint of another graph is refused naming the first parameter that
    does not fit.

    ``x``/``y`` train on images and labels in memory instead of a dataset (the layouts and
    checks of the ``npz`` dataset, see :mod:`graphnet.data.arrays`): ``x_test``/``y_test`` are
    the test split, or ``test_fraction`` of each class is held out, drawn by the seed.

    ``workers`` trains data-parallel on that many Ray workers (:mod:`graphnet.distributed`),
    on a local Ray instance or the cluster at ``ray_address`` (else ``RAY_ADDRESS``);
    ``max_failures`` restarts after lost workers are allowed."""
    distributed = None
    if workers is not None:
        from .distributed import cluster

        distributed = {"workers": cluster.check_workers(workers),
                       "max_failures": cluster.check_max_failures(max_failures),
                       "ray_address": ray_address}
        cluster.import_ray(local=cluster.address_from(ray_address) is None)
    if config is None:
        if isinstance(dataset, str):
            overrides["dataset"] = dataset
        config = TrainConfig.from_graph(graph, overrides, labels)
    elif overrides:
        raise UsageError("pass either a TrainConfig or keyword settings, not both",
                         field=next(iter(overrides)))
    elif isinstance(dataset, str):
        config = replace(config, dataset=dataset, dataset_options={})
    if init_from is not None and resume:
        raise UsageError("start either from a checkpoint's parameters or resume a run, not both",
                         field="init_from", hint="--resume continues a run, optimizer and all; "
                         "--init-from starts a new one from the parameters")
    emit = on_event or (lambda event: None)
    # From the spec's numbers alone: before the dataset is loaded or any batch is run.
    limits.check_memory(graph, batch_size=config.batch_size, training=True, limit=memory_limit)
    bindings = bind(graph, config.image_input, config.label_input, config.logits_output)
    bindings.require_labels(graph.file)
    if x is not None or y is not None:
        if dataset is not None:
            raise UsageError("pass either a dataset or arrays (x=, y=), not both", field="x")
        dataset = dataset_from_arrays(x, y, x_test, y_test, num_classes=bindings.classes,
                                      test_fraction=test_fraction, seed=config.seed)
    elif x_test is not None or y_test is not None:
        raise UsageError("x_test and y_test need the training arrays", field="x",
                         expected="train(graph, x=images, y=labels, x_test=..., y_test=...)")
    if isinstance(dataset, Dataset):
        data, dataset_options = dataset, {}
    else:
        data, dataset_options = load_dataset(graph, config, bindings)
    check_dataset(graph, data, bindings)
    train_split, val_split = carve(data.train, config)
    if config.early_stop and val_split is None:
        raise config.error("early_stop", "early stopping watches the validation loss, and this "
                           "run has no validation split", hint="set val_fraction above 0")
    run_dir = run_dir_of(graph, run_dir, config.run_dir)
    folder = claim_run_folder(run_dir, UsageError, fresh=new_run_dir and not resume,
                              outputs=(CHECKPOINT_NAME, BEST_NAME, HISTORY_NAME))
    try:
        return _train_claimed(graph, data, dataset_options, config, bindings, train_split,
                              val_split, folder.path, resume, emit, memory_limit, init_from,
                              distributed)
    finally:
        folder.release()


def _train_claimed(graph, data, dataset_options, config, bindings, train_split, val_split,
                   run_dir, resume, emit, memory_limit, init_from=None,
                   distributed=None) -> TrainResult:
    network = Network(graph, seed=config.seed, memory_limit=memory_limit)
    if init_from is not None:  # fine-tuning: the parameters only, the optimizer starts afresh
        init_path = find_checkpoint(init_from)
        restore_params(init_path, network)
        emit(Notice(f"starting from the parameters in {init_path} (a new run, a fresh "
                    "optimizer)", warning=False))
    optimizer, schedule = _build_optimizer(graph, config,
                                           math.ceil(len(train_split) / config.batch_size))
    step = TrainStep(network, optimizer, loss=bindings.loss,
                     outputs=[bindings.loss, bindings.logits], clip_norm=config.clip_norm)
    task = Classification(network=network, bindings=bindings,
                          standardise=Standardiser.fit(train_split.images), train=train_split,
                          validation=val_split, test=data.test,
                          class_names=class_names_for(data.class_names, bindings.classes),
                          dataset={"name": data.name, "options": dataset_options},
                          eval_batch_size=config.eval_batch_size,
                          augment=Augmentation(config.augment, graph.registry, config.seed))
    if distributed:
        from .distributed.training import DistributedLoop

        loop = DistributedLoop(step, schedule, task, config, run_dir, emit, **distributed)
    else:
        loop = Loop(step, schedule, task, config, run_dir, emit)
    resumed_from = None
    if resume:
        resumed_from = (checkpoint_in(run_dir) if isinstance(resume, bool)
                        else find_checkpoint(resume))
        state.restore(loop, resumed_from)
    else:
        state.keep_previous_run(run_dir, emit)
    progress = loop.progress
    emit(RunStarted(graph.name, data.name, len(train_split), len(val_split or ()), len(data.test),
                    task.class_names, config.epochs, progress.epoch, progress.step, loop.steps,
                    config.batch_size, config.optimizer, config.lr, graph.total_params, run_dir,
                    resumed_from))
    interrupted = loop.run()
    progress = loop.progress
    if not interrupted and progress.history:
        # The test split, once: its figures go into the final record only (never chosen by).
        progress.history[-1].update(task.evaluate_test())
        state.write_history(run_dir, progress.history)
    best = loop.best_path if loop.best_epoch() is not None and loop.best_path.exists() else None
    result = TrainResult(progress.history, task.confusion(evaluate=not interrupted),
                         task.class_names, network, bindings, task.standardise, config, run_dir,
                         loop.checkpoint_path if loop.saved else resumed_from, interrupted,
                         loop.stop_signal, best, loop.stopped_early)
    if not interrupted:
        emit(Finished(result))
    return result


def _build_optimizer(graph, config: TrainConfig, steps_per_epoch: int) -> tuple[Optimizer,
                                                                                Schedule]:
    optimizer_entry = graph.registry.entry("optimizer", config.optimizer)
    schedule_entry = graph.registry.entry("schedule", config.schedule)
    optimizer_class, schedule_class = optimizer_entry.value, schedule_entry.value
    options = {k: v for k, v in config.optimizer_options.items() if k != "lr"}
    try:
        optimizer = optimizer_class(SimpleNamespace(**options))
    except Exception as error:
        raise plugin_failure(error, f"optimizer {config.optimizer!r} (plugin "
                                    f"{optimizer_entry.plugin!r}) could not be created")
    try:
        schedule = schedule_class(SimpleNamespace(**config.schedule_options), base_lr=config.lr,
                                  epochs=config.epochs, steps_per_epoch=steps_per_epoch)
    except Exception as error:
        raise plugin_failure(error, f"schedule {config.schedule!r} (plugin "
                                    f"{schedule_entry.plugin!r}) could not be created")
    for made, kind, base, entry in ((optimizer, "optimizer", Optimizer, optimizer_entry),
                                    (schedule, "schedule", Schedule, schedule_entry)):
        if not isinstance(made, base):
            raise PluginError(f"{kind} {entry.name!r} (plugin {entry.plugin!r}) made "
                              f"{type(made).__name__}", expected=f"a graphnet.optim.{base.__name__}")
    checked_rate(schedule, 0, 0, schedule_entry.plugin)  # one that cannot say a rate: now
    schedule.plugin = schedule_entry.plugin
    optimizer.plugin = optimizer_entry.plugin
    return optimizer, schedule
