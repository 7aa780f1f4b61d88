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
It prints nothing: ``on_event`` receives the events below (``graphnet train`` renders them with
:mod:`graphnet.render.training`).

The ``[train]`` keys and how overrides merge with them: :mod:`graphnet.train_config`.

Checkpoints: ``<run_dir>/checkpoint.npz`` is written atomically after every epoch and holds the
parameters (state such as batch-norm statistics included), the optimizer's state, the epoch, the
shuffle generator's and the network's step generator's states, the training data's statistics
and the history — everything that influences what comes next, so that N epochs straight and
K epochs + ``resume`` to N give bit-identical parameters. ``<run_dir>/history.json`` holds one
record per epoch. On SIGINT (Ctrl-C) training stops at the end of the current step and writes a
checkpoint *of that step* (partial epoch: the epoch's shuffle order and running sums are kept),
so resuming loses no work; a second Ctrl-C stops at once, leaving the last checkpoint. A killed
process leaves the last checkpoint intact (writes are atomic).

A loss that becomes NaN or infinite stops training with a NumericError naming the epoch, the
step and the first node whose output went non-finite; the last good checkpoint is kept.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from numbers import Real
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np

from . import limits
from .checkpoint import (CHECKPOINT_NAME, Checkpoint, check_compatible, load_checkpoint,
                         save_checkpoint, spec_hash)
from .data import Dataset, Split
from .engine import Network
from .errors import (CheckpointError, GraphnetError, NumericError, PluginError, UsageError,
                     plugin_failure)
from .files import atomic_write_text, claim_run_folder, safe_folder_name
from .inference import (Bindings, Evaluation, Standardiser, Trained, bind, class_names_for,
                        evaluate_split, json_ready, load_trained, predict_probabilities,
                        stored_standardiser)
from .optim import Optimizer, Schedule, clip_by_global_norm
from .train_config import (SCALAR_KEYS, TrainConfig, carve, check_dataset,  # noqa: F401
                           load_dataset, resolve_config)

HISTORY_NAME = "history.json"
RESUME_IGNORES = ("epochs", "watch", "run_dir", "eval_batch_size")
"""Settings that may change between a run and its resumption without breaking bit-identity."""


# --- events ------------------------------------------------------------------------------------
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
    """Something the user should know that does not stop training (e.g. settings changed
    between a run and its resumption)."""

    text: str


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
    result: "TrainResult"


@dataclass
class TrainResult:
    """What a run produced. ``final`` is the last epoch's record; ``confusion`` counts test
    samples by true class (rows) and predicted class (columns)."""

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

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N×K) for images shaped like the image input."""
        return predict_probabilities(self.network, np.asarray(images), self.bindings,
                                     self.standardise)


# --- the run's mutable state (what a checkpoint holds besides arrays) -------------------------
@dataclass
class Progress:
    epoch: int = 0  # completed epochs
    step: int = 0  # steps done in the current, unfinished epoch
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_shuffle_state: dict | None = None  # shuffle generator before drawing this epoch's order
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # spent on the unfinished epoch so far


# --- the loop -----------------------------------------------------------------------------------
def train(graph, dataset: Dataset | str | None = None, config: TrainConfig | None = None, *,
          run_dir: str | Path | None = None, resume: bool | str | Path = False,
          on_event: Callable[[Any], None] | None = None, labels: dict[str, str] | None = None,
          memory_limit=None, new_run_dir: bool = False, **overrides) -> TrainResult:
    """Train ``graph``; see the module docstring. ``resume`` is True (the run directory's
    checkpoint) or a checkpoint path. ``memory_limit`` (bytes or text such as ``"8GiB"``;
    default: see :mod:`graphnet.limits`) refuses a graph that would need more to train at the
    configured batch size. The run holds its folder until it returns: another run into it is
    refused, or with ``new_run_dir`` goes into a fresh ``RUN_DIR-2``, ``-3``, … (as does a
    new run where one was kept). Returns when done or interrupted (``result.interrupted``,
    ``result.stop_signal``)."""
    if config is None:
        if isinstance(dataset, str):
            overrides["dataset"] = dataset
        config = TrainConfig.from_graph(graph, overrides, labels)
    elif overrides:
        raise UsageError("pass either a TrainConfig or keyword settings, not both",
                         field=next(iter(overrides)))
    elif isinstance(dataset, str):
        config = replace(config, dataset=dataset, dataset_options={})
    emit = on_event or (lambda event: None)
    # From the spec's numbers alone: before the dataset is loaded or any batch is run.
    limits.check_memory(graph, batch_size=config.batch_size, training=True, limit=memory_limit)
    bindings = bind(graph, config.image_input, config.label_input, config.logits_output)
    bindings.require_labels(graph.file)
    if isinstance(dataset, Dataset):
        data, dataset_options = dataset, {}
    else:
        data, dataset_options = load_dataset(graph, config, bindings)
    check_dataset(graph, data, bindings)
    train_split, val_split = carve(data.train, config)
    run_dir = Path(run_dir or config.run_dir or default_run_dir(graph))
    folder = claim_run_folder(run_dir, UsageError, fresh=new_run_dir and not resume,
                              outputs=(CHECKPOINT_NAME, HISTORY_NAME))
    try:
        return _train_claimed(graph, data, dataset_options, config, bindings, train_split,
                              val_split, folder.path, resume, emit, memory_limit)
    finally:
        folder.release()


def default_run_dir(graph) -> Path:
    """``runs/<graph name>``, the name made one safe folder name: ``[graph] name = "../../x"``
    or an absolute name never puts a run outside ``runs/``."""
    return Path("runs") / safe_folder_name(graph.name)


def _train_claimed(graph, data, dataset_options, config, bindings, train_split, val_split,
                   run_dir, resume, emit, memory_limit) -> TrainResult:
    network = Network(graph, seed=config.seed, memory_limit=memory_limit)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    optimizer, schedule = _build_optimizer(graph, config, steps_per_epoch)
    standardise = Standardiser.fit(train_split.images)
    class_names = class_names_for(data.class_names, bindings.classes)
    shuffle_rng = np.random.default_rng([config.seed, 2])
    progress = Progress()
    resumed_from = None
    if resume:
        resumed_from = Path(resume) if not isinstance(resume, bool) else run_dir / CHECKPOINT_NAME
        progress, standardise = _restore(resumed_from, graph, network, optimizer, schedule,
                                         shuffle_rng, config, emit)
    else:
        _keep_previous_run(run_dir, emit)
    meta_base = {
        "spec_hash": spec_hash(graph), "graph": graph.name, "config": config.to_dict(),
        "dataset": {"name": data.name, "options": json_ready(dataset_options)},
        "bindings": {"image": bindings.image, "label": bindings.label,
                     "logits": bindings.logits},
        "class_names": class_names, "standardise": standardise.to_meta(),
    }
    run = _Run(graph, network, optimizer, schedule, shuffle_rng, config, bindings, standardise,
               train_split, val_split, data.test, run_dir, meta_base, emit, progress)
    emit(RunStarted(graph.name, data.name, len(train_split), len(val_split or ()), len(data.test),
                    class_names, config.epochs, progress.epoch, progress.step, steps_per_epoch,
                    config.batch_size, config.optimizer, config.lr, graph.total_params, run_dir,
                    resumed_from))
    interrupted, confusion = run.loop()
    result = TrainResult(progress.history, confusion, class_names, network, bindings, standardise,
                         config, run_dir, run.checkpoint_path if run.saved else resumed_from,
                         interrupted, run.stop_signal)
    if not interrupted:
        emit(Finished(result))
    return result


def _keep_previous_run(run_dir: Path, emit) -> None:
    """A new run in a folder that holds one: keep the earlier run's checkpoint and history as
    ``*.previous.*`` instead of overwriting them at the first epoch (one generation is kept)."""
    kept = []
    for name in (CHECKPOINT_NAME, HISTORY_NAME):
        current = run_dir / name
        if current.is_file():
            previous = current.with_name(f"{current.stem}.previous{current.suffix}")
            os.replace(current, previous)
            kept.append(previous.name)
    if kept:
        emit(Notice(f"{run_dir} held an earlier run; starting anew and keeping it as "
                    f"{' and '.join(kept)} (use --resume to continue a run instead)"))


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
    _rate(schedule, 0, 0, schedule_entry.plugin)  # a schedule that cannot say one rate, now
    schedule.plugin = schedule_entry.plugin
    optimizer.plugin = optimizer_entry.plugin
    return optimizer, schedule


def _rate(schedule: Schedule, epoch: int, step: int, plugin: str | None = None) -> float:
    """``schedule.lr_at``, refused naming the plugin unless it is a finite number >= 0."""
    plugin = plugin or getattr(schedule, "plugin", "?")
    try:
        rate = schedule.lr_at(epoch, step)
    except Exception as error:
        raise plugin_failure(error, f"schedule {schedule.name!r} (plugin {plugin!r}) failed at "
                                    f"epoch {epoch + 1}, step {step + 1}")
    if isinstance(rate, bool) or not isinstance(rate, Real) or not math.isfinite(rate) \
            or rate < 0:
        raise PluginError(f"schedule {schedule.name!r} (plugin {plugin!r}) gave a learning rate "
                          f"that is not a number >= 0 at epoch {epoch + 1}, step {step + 1}",
                          found=repr(rate)[:60])
    return float(rate)


class _Run:
    """One training session: the loop, evaluation, checkpoints and diagnostics."""

    def __init__(self, graph, network, optimizer, schedule, shuffle_rng, config, bindings,
                 standardise, train_split, val_split, test_split, run_dir, meta_base, emit,
                 progress):
        self.graph, self.network, self.optimizer, self.schedule = graph, network, optimizer, schedule
        self.shuffle_rng, self.config, self.bindings = shuffle_rng, config, bindings
        self.standardise, self.emit, self.progress = standardise, emit, progress
        self.train_split, self.val_split, self.test_split = train_split, val_split, test_split
        self.run_dir, self.meta_base = run_dir, meta_base
        self.checkpoint_path = run_dir / CHECKPOINT_NAME
        self.saved = False
        self.stop_signal = None
        self.steps = math.ceil(len(train_split) / config.batch_size)

    def loop(self) -> tuple[bool, np.ndarray]:
        """Run the remaining epochs; returns (interrupted, the last test confusion matrix —
        zeros when stopped before any epoch of this session ended: Ctrl-C should not wait for
        an evaluation)."""
        config, progress = self.config, self.progress
        test = None
        # Overflow shows up as a non-finite loss, which is reported with the node that caused
        # it; numpy's own warnings would only repeat it without saying where.
        with _signals_request_stop() as stop, np.errstate(all="ignore"):
            while progress.epoch < config.epochs:
                if not self._train_epoch(stop):
                    self.stop_signal = stop.signal
                    classes = self.bindings.classes
                    return True, (test.confusion if test is not None
                                  else np.zeros((classes, classes), np.int64))
                test = self._end_epoch()
                if stop.requested and progress.epoch < config.epochs:
                    self.stop_signal = stop.signal
                    self._emit_interrupted()
                    return True, test.confusion
        return False, self._last_confusion(test)

    def _last_confusion(self, test: Evaluation | None) -> np.ndarray:
        if test is None:  # nothing trained in this session (resumed a finished run)
            test = self._evaluate(self.test_split)
        return test.confusion

    def _train_epoch(self, stop) -> bool:
        """Steps of the current epoch from ``progress.step``; False when stopped part-way."""
        progress, config, network = self.progress, self.config, self.network
        if progress.step == 0:
            progress.epoch_shuffle_state = self.shuffle_rng.bit_generator.state
            progress.loss_sum, progress.correct, progress.seen, progress.seconds = 0.0, 0, 0, 0.0
        else:  # resuming part-way: draw this epoch's order again from the saved state
            self.shuffle_rng.bit_generator.state = progress.epoch_shuffle_state
        order = self.shuffle_rng.permutation(len(self.train_split))
        self.epoch_start_params = ({key: array.copy() for key, array in
                                    network.flat_params().items()} if config.watch else None)
        epoch = progress.epoch
        self.emit(EpochStarted(epoch + 1, config.epochs, self.steps, progress.step,
                               len(self.train_split), progress.seen))
        started = time.perf_counter()
        seconds_before, seen_before = progress.seconds, progress.seen
        loss_key, logits_key = self.bindings.loss, self.bindings.logits
        while progress.step < self.steps:
            step = progress.step
            indices = order[step * config.batch_size:(step + 1) * config.batch_size]
            feeds = self._feeds(self.train_split, indices)
            rng_state = network.step_rng.bit_generator.state  # a fresh dict each time
            lr = _rate(self.schedule, epoch, step)
            outputs = network.forward(feeds, training=True, outputs=[loss_key, logits_key])
            loss = float(outputs[loss_key])
            if not math.isfinite(loss):
                raise self._non_finite(feeds, rng_state, loss)
            gradients = network.backward()
            triples = [(f"{node}/{name}", array, gradients.params[node][name])
                       for node, name, array in network.trainable()
                       if name in gradients.params.get(node, {})]
            if config.clip_norm:
                triples, _ = clip_by_global_norm(triples, config.clip_norm)
            try:
                self.optimizer.step(triples, lr)
            except Exception as error:
                raise plugin_failure(error, f"optimizer {self.optimizer.name!r} (plugin "
                                            f"{self.optimizer.plugin!r}) failed to step")
            labels = feeds[self.bindings.label]
            progress.loss_sum += loss * len(indices)
            progress.correct += int((outputs[logits_key].argmax(axis=1) == labels).sum())
            progress.seen += len(indices)
            progress.step += 1
            progress.global_step += 1
            progress.seconds = seconds_before + time.perf_counter() - started
            self.emit(StepDone(epoch + 1, progress.step, self.steps, progress.seen,
                               len(self.train_split), progress.loss_sum / progress.seen,
                               progress.correct / progress.seen, lr,
                               (progress.seen - seen_before) / (time.perf_counter() - started)))
            if stop.requested and progress.step < self.steps:
                self._save(partial=True)
                self._emit_interrupted()
                return False
        self.last_lr = _rate(self.schedule, epoch, self.steps - 1)
        return True

    def _end_epoch(self) -> Evaluation:
        """Evaluate, record, checkpoint; the epoch counts as done once its checkpoint is written."""
        progress = self.progress
        started = time.perf_counter()
        test = self._evaluate(self.test_split)
        record = {"epoch": progress.epoch + 1,
                  "train_loss": progress.loss_sum / progress.seen,
                  "train_accuracy": progress.correct / progress.seen,
                  "test_loss": test.loss, "test_accuracy": test.accuracy}
        if self.val_split is not None:
            val = self._evaluate(self.val_split)
            record.update(val_loss=val.loss, val_accuracy=val.accuracy)
        watch = self._watch() if self.config.watch else None
        seconds = progress.seconds + time.perf_counter() - started
        record.update(lr=self.last_lr, seconds=seconds,
                      samples_per_second=progress.seen / progress.seconds if progress.seconds
                      else math.nan)
        progress.history.append(record)
        progress.epoch += 1
        progress.step = 0
        progress.epoch_shuffle_state = None
        progress.loss_sum, progress.correct, progress.seen, progress.seconds = 0.0, 0, 0, 0.0
        self._save(partial=False)
        atomic_write_text(self.run_dir / HISTORY_NAME,
                          json.dumps(json_ready(progress.history), indent=1) + "\n")
        self.emit(EpochDone(record, self.config.epochs, self.checkpoint_path, watch))
        return test

    def _emit_interrupted(self) -> None:
        self.emit(Interrupted(self.progress.epoch + (1 if self.progress.step else 0),
                              self.progress.step, self.steps, self.checkpoint_path, self.run_dir))

    # --- pieces -----------------------------------------------------------------------------
    def _feeds(self, split: Split, indices) -> dict[str, np.ndarray]:
        return {self.bindings.image: self.standardise(split.images[indices]),
                self.bindings.label: split.labels[indices]}

    def _evaluate(self, split: Split) -> Evaluation:
        return evaluate_split(self.network, split.images, split.labels, self.bindings,
                              self.standardise, self.config.eval_batch_size)

    def _non_finite(self, feeds, rng_state, loss) -> NumericError:
        """Re-run the batch with finiteness checks to name the first node that went bad."""
        network = self.network
        network.step_rng.bit_generator.state = rng_state
        node = self.graph.outputs[self.bindings.loss]
        try:
            network.forward(feeds, training=True, check_finite=True,
                            outputs=[self.bindings.loss, self.bindings.logits])
        except NumericError as error:
            node = error.node or node
        kept = (f"the last good checkpoint is kept: {self.checkpoint_path}"
                if self.checkpoint_path.exists() else "no checkpoint was written")
        return NumericError(f"the loss became {loss} at epoch {self.progress.epoch + 1}, step "
                            f"{self.progress.step + 1}; the first non-finite output is node "
                            f"{node!r}", file=self.graph.file, node=node,
                            hint=f"{kept}; try a lower learning rate or clip_norm")

    def _save(self, *, partial: bool) -> None:
        progress = self.progress
        meta = dict(self.meta_base)
        meta.update(
            epoch=progress.epoch, step=progress.step, global_step=progress.global_step,
            partial=partial, history=json_ready(progress.history),
            rng={"shuffle": progress.epoch_shuffle_state if partial
                 else self.shuffle_rng.bit_generator.state,
                 "network": self.network.step_rng.bit_generator.state},
            running={"loss_sum": progress.loss_sum, "correct": progress.correct,
                     "seen": progress.seen, "seconds": progress.seconds},
            optimizer=self.config.optimizer, schedule=self.config.schedule)
        state = {f"optimizer/{k}": v for k, v in self.optimizer.state_dict().items()}
        state.update({f"schedule/{k}": v for k, v in self.schedule.state_dict().items()})
        save_checkpoint(self.checkpoint_path,
                        Checkpoint(params=self.network.flat_params(), optimizer=state,
                                   meta=json_ready(meta)))
        self.saved = True

    def _watch(self) -> list[WatchRow]:
        """Gradient norm, epoch update ratio and zero share per node, on a fixed batch. Runs in
        training mode with a throwaway generator and restores state parameters, so watching
        never changes what is trained."""
        network, graph = self.network, self.graph
        count = min(len(self.train_split), self.config.batch_size)
        feeds = self._feeds(self.train_split, np.arange(count))
        trainable_keys = {f"{node}/{name}" for node, name, _ in network.trainable()}
        state = {key: array.copy() for key, array in network.flat_params().items()
                 if key not in trainable_keys}
        names = [node.name for node in graph.op_nodes if not node.is_loss]
        network.forward(feeds, training=True, capture=names, rng=np.random.default_rng(0),
                        outputs=[self.bindings.loss])
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
            if keys and self.epoch_start_params is not None:
                before = math.sqrt(sum(float(np.vdot(self.epoch_start_params[k],
                                                     self.epoch_start_params[k])) for k in keys))
                change = math.sqrt(sum(float(np.vdot(d, d)) for d in (
                    flat[k] - self.epoch_start_params[k] for k in keys)))
                ratio = change / before if before else (math.inf if change else 0.0)
            zero_share = float(np.mean(captured[node.name] == 0)) if node.name in captured else 0.0
            rows.append(WatchRow(node.name, node.op_name, grad_norm, ratio, zero_share,
                                 watch_problems(grad_norm, ratio, zero_share)))
        return rows


DEAD_SHARE = 0.99
STALLED_RATIO = 1e-6
VANISHED_GRADIENT = 1e-10


def watch_problems(grad_norm, ratio, zero_share) -> list[str]:
    """Signs that a node has stopped learning: ``dead`` (its outputs are all zero, so nothing
    flows back through it), ``no gradient`` (its parameters get none), ``stalled`` (its weights
    barely moved this epoch)."""
    problems = []
    if zero_share >= DEAD_SHARE:
        problems.append("dead")
    if grad_norm is not None and grad_norm < VANISHED_GRADIENT:
        problems.append("no gradient")
    if ratio is not None and ratio < STALLED_RATIO:
        problems.append("stalled")
    return problems


# --- resuming -----------------------------------------------------------------------------------
def _restore(path: Path, graph, network, optimizer, schedule, shuffle_rng, config, emit):
    """Load everything a checkpoint holds into this run; returns (progress, standardiser)."""
    if not path.exists():
        raise CheckpointError("nothing to resume: no checkpoint here", file=path,
                              hint="train without --resume to start a new run")
    checkpoint = load_checkpoint(path)
    check_compatible(checkpoint, network, path)
    meta = checkpoint.meta
    if meta.get("spec_hash") != spec_hash(graph):
        emit(Notice(f"{path} was written for a different version of this spec; its parameters "
                    "fit, so training continues from them"))
    try:
        network.load_params(checkpoint.params)
        network.step_rng.bit_generator.state = meta["rng"]["network"]
        progress = Progress(epoch=int(meta["epoch"]), step=int(meta["step"]),
                            global_step=int(meta["global_step"]), history=list(meta["history"]))
        if meta["partial"]:
            progress.epoch_shuffle_state = meta["rng"]["shuffle"]
            running = meta["running"]
            progress.loss_sum, progress.correct = float(running["loss_sum"]), int(running["correct"])
            progress.seen, progress.seconds = int(running["seen"]), float(running["seconds"])
        else:
            shuffle_rng.bit_generator.state = meta["rng"]["shuffle"]
        image = bind(graph, config.image_input, config.label_input, config.logits_output).image
        standardise = stored_standardiser(meta, graph.nodes[image].shape, path)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint lacks training state ({type(error).__name__}: "
                              f"{error}); was it written by graphnet train?", file=path) from None
    if progress.step >= schedule.steps_per_epoch or (progress.step and not meta["partial"]):
        raise CheckpointError("checkpoint's step does not fit this run's epoch", file=path,
                              field="step", expected=f"below {schedule.steps_per_epoch} steps "
                              "per epoch, in a partial epoch", found=str(progress.step))
    changed = [key for key, value in config.to_dict().items()
               if key not in RESUME_IGNORES and meta.get("config", {}).get(key, value) != value]
    if changed:
        emit(Notice("settings differ from the checkpoint's run, so this does not continue it "
                    "bit for bit: " + ", ".join(changed)))
    trained_for = meta.get("config", {}).get("epochs")
    if (isinstance(trained_for, int) and trained_for != config.epochs
            and meta.get("schedule") == config.schedule
            and _rates_differ(schedule, trained_for, progress.epoch, progress.step)):
        emit(Notice(f"schedule {config.schedule!r} depends on the run's length: the steps taken "
                    f"for {trained_for} epochs had other learning rates than a run of "
                    f"{config.epochs} would have, so the result will differ from a straight "
                    f"{config.epochs}-epoch run"))
    optimizer_state = {k[len("optimizer/"):]: v for k, v in checkpoint.optimizer.items()
                       if k.startswith("optimizer/")}
    schedule_state = {k[len("schedule/"):]: v for k, v in checkpoint.optimizer.items()
                      if k.startswith("schedule/")}
    if meta.get("optimizer") == config.optimizer:
        optimizer.load_state_dict(optimizer_state, params=network.flat_params())
    else:
        emit(Notice(f"the checkpoint was trained with optimizer {meta.get('optimizer')!r}; "
                    f"{config.optimizer!r} starts with fresh state"))
    if meta.get("schedule") == config.schedule:
        schedule.load_state_dict(schedule_state)
    if progress.epoch >= config.epochs:
        emit(Notice(f"the checkpoint has {progress.epoch} epochs, which is all of the "
                    f"{config.epochs} asked for; raise --epochs to train further"))
    return progress, standardise


def _rates_differ(schedule: Schedule, trained_for: int, epoch: int, step: int) -> bool:
    """Whether ``schedule``, built for ``trained_for`` epochs, gave any step before (``epoch``,
    ``step``) another learning rate than it gives now (a cosine's depends on the run's length;
    a step decay's does not). Epochs alone are ignored on resume only when none did. At most
    :data:`RATES_COMPARED` steps are compared, evenly spread, so a long run resumes at once."""
    earlier = type(schedule)(schedule.config, base_lr=schedule.base_lr, epochs=trained_for,
                             steps_per_epoch=schedule.steps_per_epoch)
    steps = schedule.steps_per_epoch
    done = epoch * steps + step
    stride = max(1, done // RATES_COMPARED)
    positions = [*range(0, done, stride), done - 1] if done else []
    return any(earlier.lr_at(*divmod(p, steps)) != schedule.lr_at(*divmod(p, steps))
               for p in positions)


RATES_COMPARED = 10_000


# --- stopping cleanly on Ctrl-C and SIGTERM ----------------------------------------------------
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ctrl-C, and what schedulers, containers and Ray send to stop a process."""


class _StopRequest:
    requested = False
    signal: int | None = None


@contextlib.contextmanager
def _signals_request_stop():
    """The first SIGINT or SIGTERM asks the loop to stop after the current step; a second one
    acts at once (the previous handlers are back). Installed for the run only and restored
    after it; only the main thread can own signal handlers."""
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

    def restore():
        for number, handler in previous.items():
            # installed from C (None): the best stand-in is Python's own default
            signal.signal(number, handler if handler is not None else (
                signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL))

    def handler(signum, frame):
        request.requested, request.signal = True, signum
        restore()

    for number in STOP_SIGNALS:
        signal.signal(number, handler)
    try:
        yield request
    finally:
        restore()


# --- evaluating a checkpoint -------------------------------------------------------------------
def evaluate_checkpoint(graph, checkpoint: str | Path, dataset: Dataset | str | None = None, *,
                        labels: dict[str, str] | None = None,
                        **overrides) -> tuple[Evaluation, Trained]:
    """Test loss, accuracy and confusion matrix of a checkpoint, in eval mode.

    By default the dataset (name, options and seed) is the one the checkpoint was trained on;
    ``dataset`` or keyword settings (``eval_batch_size``, ``dataset_options``, …) change it.
    """
    trained = load_trained(graph, checkpoint)
    labels = dict(labels or {})
    if isinstance(dataset, Dataset):
        data = dataset
        batch_size = overrides.get("eval_batch_size") or SCALAR_KEYS["eval_batch_size"].default
    else:
        meta = trained.checkpoint.meta
        trained_on = meta.get("dataset") or {}
        settings: dict[str, Any] = {}
        if dataset is None and overrides.get("dataset") is None and trained_on.get("name"):
            settings["dataset"] = trained_on["name"]
            settings["dataset_options"] = dict(trained_on.get("options") or {})
            labels.setdefault("dataset", f"{checkpoint} (dataset)")
            labels.setdefault("dataset_options", f"{checkpoint} (dataset option)")
        if "seed" in (meta.get("config") or {}):
            settings["seed"] = meta["config"]["seed"]
            labels.setdefault("seed", f"{checkpoint} (seed)")
        settings.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(dataset, str):
            settings["dataset"] = dataset
        config = TrainConfig.from_graph(graph, settings, labels)
        data, _ = load_dataset(graph, config, trained.bindings)
        batch_size = config.eval_batch_size
    check_dataset(graph, data, trained.bindings)
    trained.class_names = class_names_for(data.class_names or trained.class_names,
                                          trained.bindings.classes)
    evaluation = evaluate_split(trained.network, data.test.images, data.test.labels,
                                trained.bindings, trained.standardise, batch_size)
    return evaluation, trained
