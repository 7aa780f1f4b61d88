"""The optimizer and learning-rate schedule contracts, and gradient clipping.

Optimizers and schedules are registered by plugins through the ``graphnet_register_optimizers``
hook, exactly as ops are (the built-in ``sgd``, ``adam``, ``constant``, ``step`` and ``cosine``
live in ``plugins/optimizers.py``)::

    class Sign(Optimizer):
        '''signSGD: move each weight by the learning rate against its gradient's sign.'''
        name = "sign"
        options = {"weight_decay": Attr("float", default=0.0, minimum=0)}

        def update(self, key, param, grad, lr):
            param -= lr * np.sign(grad)

    @hookimpl
    def graphnet_register_optimizers(registry):
        registry.add_optimizer(Sign)

An optimizer updates parameters in place, one array at a time (``update``; the loop over
arrays lives in ``step``). Per-parameter state lives in ``self.slots[slot][key]`` — arrays the
base class creates, saves and restores — so ``state_dict()`` is a flat dict of plain arrays for
checkpoints and resuming continues bit for bit. Keys are the ``"node/param"`` names of
:meth:`graphnet.engine.Network.flat_params`.

A schedule maps (epoch, step within the epoch) to a learning rate; the built-in ones are pure
functions of the position in the run, so they have no state to save (``state_dict`` is there for
schedules that do).
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import ClassVar, Iterable

import numpy as np

from .errors import CheckpointError
from .op import Attr, format_shape
from .options import parse_options

STEPS_KEY = "steps"


def _doc(cls) -> str:
    text = (cls.__doc__ or "").strip()
    return text.splitlines()[0].strip() if text else ""


class Optimizer:
    """Base class of optimizers: ``name``, ``options`` (an Attr schema), ``slot_names`` and
    ``update``. The first line of the docstring is the one-line doc.

    ``options`` need not list ``lr``: the learning rate comes from the schedule at every step.
    Every optimizer gets ``weight_decay`` (L2: ``weight_decay·w`` is added to the gradient)
    when it declares it in ``options``.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Attr]] = {}
    slot_names: ClassVar[tuple[str, ...]] = ()
    """Per-parameter state arrays (zeros like the parameter until first used)."""
    default_lr: ClassVar[float] = 0.01
    """The learning rate when the spec and the command line give none (Adam's is 0.001)."""
    l2_weight_decay: ClassVar[bool] = True
    """Whether :meth:`step` adds ``weight_decay·w`` to the gradient; False for an optimizer that
    decays the weights itself (AdamW's decoupled decay)."""

    doc = classmethod(_doc)

    def __init__(self, options: SimpleNamespace | None = None, **raw):
        """``Optimizer(momentum=0.9)`` parses and checks the keywords against ``options``;
        ``Optimizer(namespace)`` takes already parsed options."""
        if options is None:
            options = SimpleNamespace(**parse_options(self.options, raw,
                                                      what=f"optimizer {self.name!r}"))
        self.config = options
        self.steps = 0
        self.slots: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.slot_names}

    def slot(self, slot: str, key: str, param: np.ndarray) -> np.ndarray:
        """The state array ``slot`` of parameter ``key``, created as zeros on first use."""
        table = self.slots[slot]
        if key not in table:
            table[key] = np.zeros_like(param)
        return table[key]

    def step(self, params_and_grads: Iterable[tuple[str, np.ndarray, np.ndarray]],
             lr: float) -> None:
        """Apply one update to every ``(key, param, grad)``, in place."""
        self.steps += 1
        decay = getattr(self.config, "weight_decay", 0.0) if self.l2_weight_decay else 0.0
        for key, param, grad in params_and_grads:
            if decay:
                grad = grad + decay * param
            self.update(key, param, grad, lr)

    def update(self, key: str, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        """Change ``param`` in place (``self.steps`` is already the number of this step)."""
        raise NotImplementedError

    # --- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``{"steps": n, "<slot>/<node>/<param>": array}`` — plain arrays, copies."""
        state = {STEPS_KEY: np.asarray(self.steps, dtype=np.int64)}
        for slot, table in self.slots.items():
            for key, array in table.items():
                state[f"{slot}/{key}"] = array.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray],
                        params: dict[str, np.ndarray] | None = None) -> None:
        """Restore :meth:`state_dict`; with ``params`` (``"node/param"`` arrays) each slot must
        name one of them and match its shape and dtype. Refusals are CheckpointErrors."""
        slots: dict[str, dict[str, np.ndarray]] = {slot: {} for slot in self.slot_names}
        for name, array in state.items():
            if name == STEPS_KEY:
                continue
            slot, _, key = name.partition("/")
            if slot not in slots or not key:
                raise CheckpointError(f"optimizer state does not belong to {self.name!r}",
                                      field=name, expected="slots " + (", ".join(
                                          self.slot_names) or "(none)"))
            if params is not None:
                if key not in params:
                    raise CheckpointError("optimizer state names a parameter this graph lacks",
                                          field=name)
                if array.shape != params[key].shape:
                    raise CheckpointError("optimizer state has the wrong shape", field=name,
                                          expected=format_shape(params[key].shape),
                                          found=format_shape(array.shape))
                array = array.astype(params[key].dtype, copy=False)
            slots[slot][key] = np.array(array)
        if STEPS_KEY not in state:
            raise CheckpointError("optimizer state has no step count", field=STEPS_KEY)
        self.steps = int(state[STEPS_KEY])
        self.slots = slots


WARMUP_EPOCHS = Attr("float", default=0.0, minimum=0,
                     doc="epochs over which the rate rises linearly from near 0 (0: none)")


class Schedule:
    """Base class of learning-rate schedules: ``name``, ``options`` and ``lr_at``.

    Built with the run's base learning rate, its number of epochs and the steps per epoch.
    Every schedule also takes ``warmup_epochs`` (added to its ``options``): the training loop
    asks :meth:`rate`, which scales ``lr_at`` up linearly over that many epochs' steps. A
    schedule that reacts to results (reduce-on-plateau) overrides :meth:`observe`, which the
    loop calls after every epoch with that epoch's metrics, and keeps its state in
    :meth:`state_dict` so that resuming continues bit for bit.
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Attr]] = {}

    doc = classmethod(_doc)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "warmup_epochs" not in cls.options:
            cls.options = {**cls.options, "warmup_epochs": WARMUP_EPOCHS}

    def __init__(self, options: SimpleNamespace | None = None, *, base_lr: float, epochs: int,
                 steps_per_epoch: int, **raw):
        if options is None:
            options = SimpleNamespace(**parse_options(self.options, raw,
                                                      what=f"schedule {self.name!r}"))
        self.config = options
        self.base_lr = float(base_lr)
        self.epochs = int(epochs)
        self.steps_per_epoch = max(1, int(steps_per_epoch))

    def progress(self, epoch: int, step: int) -> float:
        """How far through the run (0 → 1) step ``step`` of epoch ``epoch`` (both from 0) is."""
        total = self.epochs * self.steps_per_epoch
        return min(1.0, (epoch * self.steps_per_epoch + step) / total) if total else 1.0

    def lr_at(self, epoch: int, step: int) -> float:
        """The learning rate for step ``step`` (from 0) of epoch ``epoch`` (from 0)."""
        raise NotImplementedError

    def rate(self, epoch: int, step: int) -> float:
        """The rate the loop uses: :meth:`lr_at`, scaled by the linear warm-up if any (the
        k-th step of a warm-up of W steps runs at k/W of it)."""
        lr = self.lr_at(epoch, step)
        warmup_steps = getattr(self.config, "warmup_epochs", 0.0) * self.steps_per_epoch
        done = epoch * self.steps_per_epoch + step + 1
        return lr * done / warmup_steps if done < warmup_steps else lr

    def observe(self, epoch: int, metrics: dict[str, float]) -> None:
        """Told each finished epoch's metrics (``train_loss``, ``val_loss``, …); most schedules
        ignore them."""

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if state:
            raise CheckpointError(f"schedule {self.name!r} keeps no state",
                                  field=next(iter(state)))


def global_norm(grads: Iterable[np.ndarray]) -> float:
    """√Σ‖g‖² over all arrays: each array's sum of squares in its own dtype (no copies), the
    total across arrays as a Python float; float32 overflow is retried in float64."""
    grads = list(grads)
    with np.errstate(over="ignore"):
        total = sum(float(np.dot(g.ravel(), g.ravel())) for g in grads)
    if not math.isfinite(total):  # float32 squares overflow past ~1e19; retry in float64
        total = sum(float(np.dot(g.ravel().astype(np.float64), g.ravel().astype(np.float64)))
                    for g in grads)
    return math.sqrt(total)


def clip_by_global_norm(params_and_grads: list[tuple[str, np.ndarray, np.ndarray]],
                        max_norm: float) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], float]:
    """Scale every gradient by ``max_norm / norm`` when the global norm exceeds ``max_norm``.

    Returns the (possibly new) triples and the norm before clipping. Directions are kept; new
    arrays are made, so arrays an op still holds are never written into.
    """
    norm = global_norm(grad for _, _, grad in params_and_grads)
    if not norm > max_norm:  # also leaves a NaN norm alone: the loss check reports it
        return params_and_grads, norm
    scale = max_norm / norm
    return [(key, param, grad * scale) for key, param, grad in params_and_grads], norm

