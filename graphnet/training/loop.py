"""The training loop: epochs of steps over a task's training samples, a checkpoint and a
history record after every epoch, and a clean stop on Ctrl-C.

The loop knows nothing of images or classes. A *task* (:class:`Task`; classification is
:mod:`graphnet.training.classification`) says what a batch of training samples feeds the graph,
how many predictions in it were right, and what to evaluate after each epoch. The step itself —
forward, backward, update — is a :class:`~graphnet.training.step.TrainStep`; the run's state on
disk and resuming are :mod:`graphnet.training.state`.

On SIGINT (Ctrl-C) or SIGTERM training stops at the end of the current step and writes a checkpoint *of
that step* (partial epoch), so resuming loses no work; a second one stops at once, leaving the
last checkpoint. A killed process leaves the last checkpoint intact (writes are atomic). A loss
that becomes NaN or infinite stops training with a NumericError naming the epoch, the step and
the first node whose output went non-finite; the last good checkpoint is kept. A loss that stays
finite but explodes is caught too, measured against the run's first step's loss (the untrained
network's, kept in the checkpoint): an epoch's running loss above ``GROWTH_WARNING`` (100) times
it is warned about once, and a step's loss above ``max_loss_growth`` (10⁴) times it stops
training like a NaN (``max_loss_growth = 0`` never stops).

After each epoch the task evaluates the validation split (if any) and the schedule is told the
epoch's record (reduce-on-plateau watches ``val_loss``). The epoch with the lowest ``val_loss``
so far also has its checkpoint copied to ``best.npz``; with ``early_stop = N`` training stops
once N epochs in a row have not lowered it. Both are read from the history, which the checkpoint
holds, so resuming keeps them.
"""
from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import signal
import threading
import time
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from ..checkpoint import best_checkpoint_in, checkpoint_in, spec_hash
from ..errors import CheckpointError, NumericError, PluginError, plugin_failure
from ..files import atomic_writer
from ..optim import Schedule
from . import state
from .events import EpochDone, EpochStarted, Interrupted, Notice, StepDone
from .state import Progress
from .step import NonFiniteLoss, TrainStep
from .watch import node_health

if TYPE_CHECKING:
    from ..train_config import TrainConfig

GROWTH_WARNING = 100.0
"""An epoch's running loss this many times the run's first step's loss is warned about (once)."""
MONITOR = "val_loss"
"""What ``best.npz`` and early stopping go by (lower is better)."""


class Task(Protocol):
    """What the loop trains on: ``samples`` training samples, fed a batch at a time."""

    samples: int

    def batch(self, indices: np.ndarray, at: tuple[int, int] | None = None
              ) -> dict[str, np.ndarray]:
        """The feeds of these training samples; ``at`` is the (epoch, step) of the training
        step they are for, whose random augmentation they draw (None: as they are)."""

    def correct(self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> int:
        """How many samples of a batch the step's outputs got right."""

    def evaluate(self) -> dict[str, Any]:
        """The epoch's evaluation (validation, not test), as entries of its history record."""

    def meta(self) -> dict[str, Any]:
        """What a checkpoint holds about the task (JSON-ready)."""

    def restore(self, meta: dict[str, Any], path: Path) -> None:
        """Take back what :meth:`meta` wrote to the checkpoint at ``path``, when resuming."""


class Loop:
    """One training session: ``step`` takes the steps, ``schedule`` gives their learning rates,
    ``task`` the batches and evaluations; checkpoints go to ``run_dir``; ``emit`` receives the
    events of :mod:`graphnet.training.events`."""

    def __init__(self, step: TrainStep, schedule: Schedule, task: Task, config: TrainConfig,
                 run_dir: Path, emit: Callable[[Any], None]):
        self.step, self.schedule, self.task = step, schedule, task
        self.config, self.run_dir, self.emit = config, run_dir, emit
        self.checkpoint_path = checkpoint_in(run_dir)
        self.best_path = best_checkpoint_in(run_dir)
        self.spec_hash = spec_hash(step.network.graph)
        self.steps = math.ceil(task.samples / config.batch_size)
        self.progress = Progress()
        self.shuffle_rng = np.random.default_rng([config.seed, 2])
        self.saved = False
        self.stop_signal: int | None = None
        """The signal (SIGINT, SIGTERM) that stopped the run, when one did."""
        self.last_lr: float | None = None
        self.epoch_start_params: dict[str, np.ndarray] | None = None
        self.warned_growth = False
        self.stopped_early = False

    def run(self) -> bool:
        """Run the remaining epochs; True when stopped by Ctrl-C or SIGTERM before the last."""
        progress = self.progress
        # Overflow shows up as a non-finite loss, which is reported with the node that caused
        # it; numpy's own warnings would only repeat it without saying where.
        with _signals_request_stop() as stop, np.errstate(all="ignore"):
            while progress.epoch < self.config.epochs:
                if self._patience_exhausted():
                    break
                if not self._train_epoch(stop):
                    self.stop_signal = stop.signal
                    return True
                self._end_epoch()
                if stop.requested and progress.epoch < self.config.epochs:
                    self.stop_signal = stop.signal
                    self._emit_interrupted()
                    return True
        return False

    def _train_epoch(self, stop) -> bool:
        """Steps of the current epoch from ``progress.step``; False when stopped part-way."""
        progress, config, task = self.progress, self.config, self.task
        if progress.step == 0:
            progress.epoch_shuffle_state = self.shuffle_rng.bit_generator.state
            progress.start_epoch()
        else:  # resuming part-way: draw this epoch's order again from the saved state
            self.shuffle_rng.bit_generator.state = progress.epoch_shuffle_state
        order = self.shuffle_rng.permutation(task.samples)
        self.epoch_start_params = ({key: array.copy() for key, array in
                                    self.step.network.flat_params().items()}
                                   if config.watch else None)
        epoch = progress.epoch
        self.emit(EpochStarted(epoch + 1, config.epochs, self.steps, progress.step,
                               task.samples, progress.seen))
        started = time.perf_counter()
        seconds_before, seen_before = progress.seconds, progress.seen
        while progress.step < self.steps:
            indices = order[progress.step * config.batch_size:
                            (progress.step + 1) * config.batch_size]
            lr = checked_rate(self.schedule, epoch, progress.step)
            try:
                loss, correct = self._step(indices, epoch, lr)
            except NonFiniteLoss as error:
                raise self._non_finite(error) from None
            self._check_growth(loss)
            progress.loss_sum += loss * len(indices)
            progress.correct += correct
            progress.seen += len(indices)
            progress.step += 1
            progress.global_step += 1
            progress.seconds = seconds_before + time.perf_counter() - started
            self._warn_growth(progress.loss_sum / progress.seen)
            self.emit(StepDone(epoch + 1, progress.step, self.steps, progress.seen,
                               task.samples, progress.loss_sum / progress.seen,
                               progress.correct / progress.seen, lr,
                               (progress.seen - seen_before) / (time.perf_counter() - started)))
            if stop.requested and progress.step < self.steps:
                self._save(partial=True)
                self._emit_interrupted()
                return False
        self.last_lr = checked_rate(self.schedule, epoch, self.steps - 1)
        return True

    def _step(self, indices: np.ndarray, epoch: int, lr: float) -> tuple[float, int]:
        """One step on the training samples ``indices``: its loss and how many it got right.
        (Data-parallel training, :mod:`graphnet.distributed`, takes it on several workers.)"""
        feeds = self.task.batch(indices, at=(epoch, self.progress.step))
        loss, outputs = self.step(feeds, lr)
        return loss, self.task.correct(outputs, feeds)

    def _end_epoch(self) -> None:
        """Evaluate, record, checkpoint; the epoch counts as done once its checkpoint is written."""
        progress, config = self.progress, self.config
        started = time.perf_counter()
        record = {"epoch": progress.epoch + 1,
                  "train_loss": progress.loss_sum / progress.seen,
                  "train_accuracy": progress.correct / progress.seen,
                  **self.task.evaluate()}
        try:
            self.schedule.observe(progress.epoch, record)
        except Exception as error:
            raise plugin_failure(error, f"schedule {self.schedule.name!r} (plugin "
                                        f"{getattr(self.schedule, 'plugin', '?')!r}) failed "
                                        f"observing epoch {progress.epoch + 1}'s results")
        watch = None
        if config.watch:
            feeds = self.task.batch(np.arange(min(self.task.samples, config.batch_size)))
            watch = node_health(self.step.network, feeds, self.step.loss,
                                self.epoch_start_params)
        seconds = progress.seconds + time.perf_counter() - started
        record.update(lr=self.last_lr, seconds=seconds,
                      samples_per_second=progress.seen / progress.seconds if progress.seconds
                      else math.nan)
        progress.history.append(record)
        progress.epoch += 1
        progress.step = 0
        progress.epoch_shuffle_state = None
        progress.start_epoch()
        self._save(partial=False)
        if self.best_epoch() == record["epoch"]:
            _keep_as_best(self.checkpoint_path, self.best_path)
        state.write_history(self.run_dir, progress.history)
        self.emit(EpochDone(record, config.epochs, self.checkpoint_path, watch))

    def best_epoch(self) -> int | None:
        """The epoch (from 1) with the lowest validation loss so far; the first of equals."""
        scored = [(record[MONITOR], record["epoch"]) for record in self.progress.history
                  if math.isfinite(record.get(MONITOR, math.nan))]
        return min(scored)[1] if scored else None

    def _patience_exhausted(self) -> bool:
        """With ``early_stop = N``: N epochs since the best one (says so, once)."""
        patience, best = self.config.early_stop, self.best_epoch()
        if not patience or best is None or self.progress.step:
            return False
        history = self.progress.history
        waited = history[-1]["epoch"] - best
        if waited < patience:
            return False
        self.stopped_early = True
        self.emit(Notice(f"stopping early after epoch {history[-1]['epoch']}: {MONITOR} has not "
                         f"improved for {waited} epochs (early_stop = {patience}); the best was "
                         f"{history[best - 1][MONITOR]:.4f} at epoch {best}, kept in "
                         f"{self.best_path}", warning=False))
        return True

    def _check_growth(self, loss: float) -> None:
        """Stop on a finite loss that exploded: past ``max_loss_growth`` times the first step's."""
        progress, limit = self.progress, self.config.max_loss_growth
        if progress.reference_loss is None:
            progress.reference_loss = loss
            return
        reference = progress.reference_loss
        if limit and reference > 0 and loss > limit * reference:
            kept = (f"the last good checkpoint is kept: {self.checkpoint_path}"
                    if self.checkpoint_path.exists() else "no checkpoint was written")
            raise NumericError(
                f"the loss exploded to {loss:.3g} at epoch {progress.epoch + 1}, step "
                f"{progress.step + 1}: {loss / reference:,.0f} times the first step's loss "
                f"{reference:.4g}, past max_loss_growth ({limit:,g} times)",
                hint=f"{kept}; try a lower learning rate or clip_norm, or raise max_loss_growth "
                     "(0: never stop)")

    def _warn_growth(self, running_loss: float) -> None:
        reference = self.progress.reference_loss
        if (self.warned_growth or not reference or reference <= 0
                or running_loss <= GROWTH_WARNING * reference):
            return
        self.warned_growth = True
        limit = self.config.max_loss_growth
        stop = f"; training stops past {limit:,g} times (max_loss_growth)" if limit else ""
        self.emit(Notice(f"the loss is growing: epoch {self.progress.epoch + 1}'s running loss "
                         f"{running_loss:.3g} is {running_loss / reference:,.0f} times the first "
                         f"step's {reference:.4g}{stop}; try a lower learning rate or clip_norm"))

    def _save(self, *, partial: bool) -> None:
        state.save(self, partial=partial)
        self.saved = True

    def _emit_interrupted(self) -> None:
        self.emit(Interrupted(self.progress.epoch + (1 if self.progress.step else 0),
                              self.progress.step, self.steps, self.checkpoint_path, self.run_dir))

    def _non_finite(self, error: NonFiniteLoss) -> NumericError:
        kept = (f"the last good checkpoint is kept: {self.checkpoint_path}"
                if self.checkpoint_path.exists() else "no checkpoint was written")
        return NumericError(f"the loss became {error.loss} at epoch {self.progress.epoch + 1}, "
                            f"step {self.progress.step + 1}; the first non-finite output is node "
                            f"{error.node!r}", file=error.file, node=error.node,
                            hint=f"{kept}; try a lower learning rate or clip_norm")


def _keep_as_best(checkpoint: Path, best: Path) -> None:
    """Make ``best`` the checkpoint just written: a second name for the same file (checkpoints
    are replaced by a rename, never rewritten in place, so the link keeps this epoch's), which
    costs no disk; a copy where the file system has no hard links. Atomic either way."""
    temporary = best.with_name(f".{best.name}.{os.getpid()}.link")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        try:
            os.link(checkpoint, temporary)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise
            with open(checkpoint, "rb") as reader, atomic_writer(best) as writer:
                shutil.copyfileobj(reader, writer)
            return
        os.replace(temporary, best)
    except OSError as error:
        reason = "the disk is full" if error.errno == errno.ENOSPC else error.strerror
        raise CheckpointError(f"could not write the best epoch's checkpoint: {reason}; the "
                              "previous one is kept", file=best) from None


def checked_rate(schedule: Schedule, epoch: int, step: int,
                 plugin: str | None = None) -> float:
    """``schedule.rate`` (``lr_at`` with the warm-up), refused naming the plugin unless it is a
    finite number >= 0."""
    plugin = plugin or getattr(schedule, "plugin", "?")
    try:
        rate = schedule.rate(epoch, step)
    except Exception as error:
        raise plugin_failure(error, f"schedule {schedule.name!r} (plugin {plugin!r}) failed at "
                                    f"epoch {epoch + 1}, step {step + 1}")
    if isinstance(rate, bool) or not isinstance(rate, Real) or not math.isfinite(rate) \
            or rate < 0:
        raise PluginError(f"schedule {schedule.name!r} (plugin {plugin!r}) gave a learning rate "
                          f"that is not a number >= 0 at epoch {epoch + 1}, step {step + 1}",
                          found=repr(rate)[:60])
    return float(rate)


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
