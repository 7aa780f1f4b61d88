"""A run's state on disk, and resuming from it.

After every epoch (and on Ctrl-C, part-way through one) the loop writes ``<run dir>/
checkpoint.npz``: the parameters (state such as batch-norm statistics included), the optimizer's
and the schedule's state, the progress (epoch, step, running sums), the shuffle generator's and
the network's step generator's states, the task's metadata (for classification: dataset,
bindings, class names, standardisation) and the history — everything that influences what comes
next, so that N epochs straight and K epochs + resume to N give bit-identical parameters.
``<run dir>/history.json`` holds one record per epoch.

A new run in a directory that holds one keeps the earlier checkpoint and history as
``*.previous.*`` (one generation). ``<run dir>/best.npz`` is the checkpoint of the epoch with the
lowest validation loss (written by the loop).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import (BEST_NAME, CHECKPOINT_NAME, Checkpoint, restore_params, save_checkpoint,
                          spec_hash)
from ..errors import CheckpointError, GraphnetError
from ..files import atomic_write_text
from ..inference import json_ready
from ..op import Choices
from ..optim import Schedule
from .events import Notice

HISTORY_NAME = "history.json"
RESUME_IGNORES = ("epochs", "watch", "run_dir", "eval_batch_size", "early_stop",
                  "max_loss_growth")
"""Settings that may change between a run and its resumption without breaking bit-identity."""


@dataclass
class Progress:
    """Where a run is, besides its arrays and generators."""

    epoch: int = 0  # completed epochs
    step: int = 0  # steps done in the current, unfinished epoch
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_shuffle_state: dict | None = None  # shuffle generator before drawing this epoch's order
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0  # spent on the unfinished epoch so far
    reference_loss: float | None = None  # the run's first step's loss: explosions are measured by it

    def start_epoch(self) -> None:
        """Zero the running sums of an epoch."""
        self.loss_sum, self.correct, self.seen, self.seconds = 0.0, 0, 0, 0.0


# --- writing ------------------------------------------------------------------------------------
def save(loop, *, partial: bool) -> None:
    """Write the checkpoint of ``loop`` (a :class:`graphnet.training.loop.Loop`); ``partial``
    when stopped part-way through an epoch (its shuffle order and running sums are kept, so
    resuming loses no work)."""
    progress, step = loop.progress, loop.step
    network, config = step.network, loop.config
    meta = {"spec_hash": loop.spec_hash, "graph": network.graph.name,
            "config": config.to_dict(), **loop.task.meta()}
    meta.update(
        epoch=progress.epoch, step=progress.step, global_step=progress.global_step,
        partial=partial, history=json_ready(progress.history),
        reference_loss=progress.reference_loss,
        rng={"shuffle": progress.epoch_shuffle_state if partial
             else loop.shuffle_rng.bit_generator.state,
             "network": network.step_rng.bit_generator.state},
        running={"loss_sum": progress.loss_sum, "correct": progress.correct,
                 "seen": progress.seen, "seconds": progress.seconds},
        optimizer=config.optimizer, schedule=config.schedule,
        # what each node ran (a conv's kernel): the resumed run runs the same
        choices=dict(network.choices.by_node))
    state = {f"optimizer/{k}": v for k, v in step.optimizer.state_dict().items()}
    state.update({f"schedule/{k}": v for k, v in loop.schedule.state_dict().items()})
    save_checkpoint(loop.checkpoint_path, Checkpoint(params=network.flat_params(), optimizer=state,
                                                     meta=json_ready(meta)))


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / HISTORY_NAME, json.dumps(json_ready(history), indent=1) + "\n")


def keep_previous_run(run_dir: Path, emit) -> None:
    """A new run in a folder that holds one: keep the earlier run's checkpoint and history as
    ``*.previous.*`` instead of overwriting them at the first epoch. A folder that keeps one
    already keeps this one beside it as ``*.previous-2.*`` (``-3``, …): a finished run is
    never deleted to make room for another, and a run's files share one suffix."""
    names = (CHECKPOINT_NAME, BEST_NAME, HISTORY_NAME)
    current = [run_dir / name for name in names if (run_dir / name).is_file()]
    if not current:
        return
    generation = 1
    while any(_kept_as(run_dir / name, generation).exists() for name in names):
        generation += 1
    kept = []
    for path in current:
        previous = _kept_as(path, generation)
        os.replace(path, previous)
        kept.append(previous.name)
    emit(Notice(f"{run_dir} held an earlier run; starting anew and keeping it as "
                f"{_and(kept)} (use --resume to continue a run instead)", warning=False))


def _kept_as(path: Path, generation: int) -> Path:
    """``checkpoint.npz`` → ``checkpoint.previous.npz`` (generation 1), ``….previous-2.npz``, …"""
    tag = "previous" if generation == 1 else f"previous-{generation}"
    return path.with_name(f"{path.stem}.{tag}{path.suffix}")


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# --- resuming -----------------------------------------------------------------------------------
def choices_of(meta: dict, graph, path: Path) -> Choices:
    """The implementation choices a checkpoint's run made, pinned for the resumed run (a node
    it never ran is measured as usual). A checkpoint written before choices were recorded ran
    every op's default, so the resumed run does too. A choice that does not compute its node
    of this spec is the checkpoint's error (a node the spec lacks never runs: left alone)."""
    if "choices" not in meta:
        return Choices(measure=False)
    by_node = dict(meta["choices"])
    for name, implementation in by_node.items():
        node = graph.nodes.get(name)
        if node is None or node.is_input:
            continue
        fitting = node.op.implementations(graph.input_shapes(name), node.attrs)
        if fitting is None or implementation not in fitting:
            raise CheckpointError(
                f"the checkpoint's run chose an implementation that does not compute node "
                f"{name!r} of this spec", file=path, field=f"choices.{name}",
                expected=("one of " + ", ".join(fitting) if fitting
                          else f"no choice: {node.op_name} has none"),
                found=repr(implementation))
    return Choices(by_node=by_node)


def restore(loop, path: Path) -> None:
    """Load everything the checkpoint at ``path`` holds into ``loop`` (a
    :class:`graphnet.training.loop.Loop`); settings that differ from the checkpoint's run are
    told as notices."""
    if not path.exists():
        raise CheckpointError("nothing to resume: no checkpoint here", file=path,
                              hint="train without --resume to start a new run")
    network, config, emit, schedule = loop.step.network, loop.config, loop.emit, loop.schedule
    checkpoint = restore_params(path, network)
    meta = checkpoint.meta
    if meta.get("spec_hash") != spec_hash(network.graph):
        emit(Notice(f"{path} was written for a different version of this spec; its parameters "
                    "fit, so training continues from them"))
    try:
        network.step_rng.bit_generator.state = meta["rng"]["network"]
        progress = Progress(epoch=int(meta["epoch"]), step=int(meta["step"]),
                            global_step=int(meta["global_step"]), history=list(meta["history"]),
                            reference_loss=meta.get("reference_loss"))
        if meta["partial"]:
            progress.epoch_shuffle_state = meta["rng"]["shuffle"]
            running = meta["running"]
            progress.loss_sum = float(running["loss_sum"])
            progress.correct, progress.seen = int(running["correct"]), int(running["seen"])
            progress.seconds = float(running["seconds"])
        else:
            loop.shuffle_rng.bit_generator.state = meta["rng"]["shuffle"]
        loop.task.restore(meta, path)
        network.choices = choices_of(meta, network.graph, path)
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint lacks training state ({type(error).__name__}: "
                              f"{error}); was it written by graphnet train?", file=path) from None
    if progress.step >= schedule.steps_per_epoch or (progress.step and not meta["partial"]):
        raise CheckpointError("checkpoint's step does not fit this run's epoch", file=path,
                              field="step", expected=f"below {schedule.steps_per_epoch} steps "
                              "per epoch, in a partial epoch", found=str(progress.step))
    loop.progress = progress
    # A kill between writing an epoch's checkpoint and its history leaves history.json an epoch
    # behind; catch it up now, or a second such kill would leave it two behind.
    write_history(loop.run_dir, progress.history)
    changed = [key for key, value in config.to_dict().items()
               if key not in RESUME_IGNORES and meta.get("config", {}).get(key, value) != value]
    if changed:
        emit(Notice("settings differ from the checkpoint's run, so this does not continue it "
                    "bit for bit: " + ", ".join(changed)))
    trained_for = meta.get("config", {}).get("epochs")
    if (isinstance(trained_for, int) and trained_for != config.epochs
            and meta.get("schedule") == config.schedule
            and _rates_differ(schedule, trained_for, progress.epoch, progress.step)):
        emit(Notice(f"schedule {config.schedule!r} depends on the run's length: the steps "
                    f"already taken had a {trained_for}-epoch run's learning rates, not a "
                    f"{config.epochs}-epoch run's, so the result will differ from a straight "
                    f"{config.epochs}-epoch run"))
    optimizer_state = {k[len("optimizer/"):]: v for k, v in checkpoint.optimizer.items()
                       if k.startswith("optimizer/")}
    schedule_state = {k[len("schedule/"):]: v for k, v in checkpoint.optimizer.items()
                      if k.startswith("schedule/")}
    if meta.get("optimizer") == config.optimizer:
        _restore_state(loop.step.optimizer, path, "optimizer", optimizer_state,
                       params=network.flat_params())
    else:
        emit(Notice(f"the checkpoint was trained with optimizer {meta.get('optimizer')!r}; "
                    f"{config.optimizer!r} starts with fresh state"))
    if meta.get("schedule") == config.schedule:
        _restore_state(schedule, path, "schedule", schedule_state)
    if progress.epoch >= config.epochs:
        done = f"{progress.epoch} epoch{'s' if progress.epoch != 1 else ''}"
        emit(Notice(f"the checkpoint's run has done {done}, as many as --epochs "
                    f"{config.epochs} asks for; raise --epochs to train further"))


def _restore_state(owner, path, kind: str, state: dict, **extra) -> None:
    """``owner.load_state_dict(state)`` (an optimizer's or a schedule's), its refusals naming
    the checkpoint: they named no file, and a schedule's state of the wrong shape (a list
    where a number belongs) ended in a traceback."""
    try:
        owner.load_state_dict(state, **extra)
    except GraphnetError as error:
        if error.field is not None and not error.field.startswith(f"{kind}/"):
            error.field = f"{kind}/{error.field}"
        raise error.with_context(file=path) from None
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint's {kind} state cannot be restored", file=path,
                              field=kind, expected=f"the state {kind} {owner.name!r} writes",
                              found=f"{type(error).__name__}: {error}") from None


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
    return any(earlier.rate(*divmod(p, steps)) != schedule.rate(*divmod(p, steps))
               for p in positions)


RATES_COMPARED = 10_000
