"""Training settings: the spec's ``[train]`` section merged with overrides, validated, and the
data they name — loaded, checked against the graph's inputs and split.

``[train]`` keys (each can be overridden; ``graphnet train --help`` lists the flags):

==================  ================================================================================
dataset             a name, or ``{ name = "npz", path = "…" }`` with the dataset's options
                    (default ``shapes``; ``size``/``channels`` options not given are filled from
                    the spec's image input)
epochs              passes over the training split (10)
batch_size          samples per step (64)
eval_batch_size     samples per evaluation batch (256)
optimizer           a name, or ``{ name = "sgd", lr = 0.05, momentum = 0.9 }`` (adam; lr: the
                    optimizer's default, 0.001 for adam and adamw, 0.01 for sgd and rmsprop)
schedule            a name, or ``{ name = "cosine", floor = 0.001 }`` (constant)
clip_norm           clip gradients to this global norm (off)
seed                initialisation, shuffling and splitting (0)
val_fraction        share of the training split held out for validation, evaluated after every
                    epoch (0.1; 0 turns it off). The test split is evaluated once, at the end
early_stop          stop when the validation loss has not improved for this many epochs (off)
max_loss_growth     stop when a step's loss exceeds this many times the run's first step's loss
                    (1e4; 0: never); past 100 times an epoch's running loss is warned about
limit_train         use only this many training samples (all)
image_input         the float input fed images (found by dtype when only one)
label_input         the integer input fed labels (found by dtype when only one)
logits_output       the output holding class scores (``logits`` or the only non-loss output)
run_dir             where checkpoints and history go (``runs/<spec name>``)
watch               after each epoch, a per-node table of gradient norms, update ratios and
                    zero activations (false)
augment             transforms of the training batches, in order: ``["crop:4", "flip"]``, or
                    tables such as ``{ name = "shift", pixels = 2 }`` (none; see
                    :mod:`graphnet.data.augment`)
==================  ================================================================================

Overrides (keyword arguments of :func:`graphnet.train.train`, or flags) use the same names,
plus ``lr`` and ``momentum`` (options of the optimizer) and ``dataset_options``,
``optimizer_options`` and ``schedule_options`` (dicts). Naming another optimizer (or dataset,
or schedule) than the spec's drops the spec's options for it, except ``lr``. Every error names
where the value came from: the spec file and ``train.<key>``, or the flag.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Any

import numpy as np

from .data import Dataset, Split, load_from
from .data.augment import parse_augment
from .data.cache import default_cache_dir
from .errors import DataError, GraphnetError, SpecError, UsageError
from .inference import Bindings, json_ready
from .op import Attr, format_shape
from .optim import Optimizer
from .options import parse_options
from .registry import suggest

DEFAULT_DATASET = "shapes"
DEFAULT_OPTIMIZER = "adam"  # at its 0.001 it trains a small CNN well untuned; sgd needs tuning
DEFAULT_SCHEDULE = "constant"
DEFAULT_LR = 0.001
"""The default optimizer's ``default_lr``; only a TrainConfig built by hand, not resolved, uses it."""

SCALAR_KEYS: dict[str, Attr] = {
    "epochs": Attr("int", default=10, minimum=1),
    "batch_size": Attr("int", default=64, minimum=1),
    "eval_batch_size": Attr("int", default=256, minimum=1),
    "clip_norm": Attr("float", default=None, minimum=0),
    "seed": Attr("int", default=0, minimum=0),
    "val_fraction": Attr("float", default=0.1, minimum=0, maximum=0.9),
    "early_stop": Attr("int", default=None, minimum=1),
    "max_loss_growth": Attr("float", default=1e4, minimum=0),
    "limit_train": Attr("int", default=None, minimum=1),
    "image_input": Attr("str", default=None),
    "label_input": Attr("str", default=None),
    "logits_output": Attr("str", default=None),
    "run_dir": Attr("str", default=None),
    "watch": Attr("bool", default=False),
}
NAMED_KEYS = {"dataset": DEFAULT_DATASET, "optimizer": DEFAULT_OPTIMIZER,
              "schedule": DEFAULT_SCHEDULE}
"""Keys that take a registered name, or a table of the name and its options."""
SHORTCUTS = {"lr": "optimizer", "momentum": "optimizer"}
"""Override-only keys that set one option of a named key (``--lr``, ``--momentum``)."""
OPTION_OVERRIDES = {"dataset_options": "dataset", "optimizer_options": "optimizer",
                    "schedule_options": "schedule"}
"""Override-only keys holding a dict of options for a named key."""
AUGMENT_KEY = "augment"


# --- configuration ----------------------------------------------------------------------------
@dataclass
class TrainConfig:
    """Every training setting, validated. ``origins`` remembers where each came from (the spec's
    ``train.x``, a flag such as ``--epochs``, or the default) so that errors found later — an
    unknown dataset option, say — still name the right place."""

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 256
    clip_norm: float | None = None
    seed: int = 0
    val_fraction: float = 0.1
    early_stop: int | None = None
    max_loss_growth: float = 1e4
    limit_train: int | None = None
    image_input: str | None = None
    label_input: str | None = None
    logits_output: str | None = None
    run_dir: str | None = None
    watch: bool = False
    augment: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    dataset: str = DEFAULT_DATASET
    dataset_options: dict[str, Any] = field(default_factory=dict)
    optimizer: str = DEFAULT_OPTIMIZER
    optimizer_options: dict[str, Any] = field(default_factory=dict)
    schedule: str = DEFAULT_SCHEDULE
    schedule_options: dict[str, Any] = field(default_factory=dict)
    file: str | None = field(default=None, compare=False)
    origins: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def lr(self) -> float:
        """The base learning rate: the spec's or ``--lr``, else the optimizer's ``default_lr``
        (filled in when the settings are resolved)."""
        return self.optimizer_options.get("lr", DEFAULT_LR)

    @classmethod
    def from_graph(cls, graph, overrides: dict[str, Any] | None = None,
                   labels: dict[str, str] | None = None) -> "TrainConfig":
        """The spec's ``[train]`` merged with ``overrides``; ``labels`` names each override key
        in messages (``{"epochs": "--epochs"}``; the key itself by default)."""
        return resolve_config(graph.spec.train, overrides or {}, file=graph.file,
                              registry=graph.registry, labels=labels or {})

    def error(self, path: str, message: str, cls=None, **details) -> GraphnetError:
        """An error located where setting ``path`` (``"dataset.size"``) came from."""
        origin = self.origins.get(path) or self.origins.get(path.split(".")[0])
        return _located(origin or ("default", path), message, self.file, cls, **details)

    def to_dict(self) -> dict[str, Any]:
        return json_ready({f.name: getattr(self, f.name) for f in fields(self)
                           if f.name not in ("file", "origins")})


def _located(origin: tuple[str, str], message: str, file, cls=None, **details) -> GraphnetError:
    kind, label = origin
    if kind == "spec":
        return (cls or SpecError)(message, file=file, field=label, **details)
    return (cls or UsageError)(message, field=label, **details)


def _relocated(error: GraphnetError, origin, file, message=None) -> GraphnetError:
    return _located(origin, message or error.message, file, expected=error.expected,
                    found=error.found, hint=error.hint)


def resolve_config(section: dict, overrides: dict, *, file, registry,
                   labels: dict[str, str]) -> TrainConfig:
    """Validate ``[train]`` and the overrides into a TrainConfig (see the module docstring)."""
    allowed = list(SCALAR_KEYS) + list(NAMED_KEYS) + [AUGMENT_KEY]
    for key in section:
        if key not in allowed:
            raise SpecError("unknown key in [train]", file=file, field=f"train.{key}",
                            expected="one of: " + ", ".join(allowed), hint=suggest(key, allowed))
    allowed_overrides = allowed + list(SHORTCUTS) + list(OPTION_OVERRIDES)
    for key in overrides:
        if key not in allowed_overrides:
            raise UsageError("unknown training setting", field=labels.get(key, key),
                             expected="one of: " + ", ".join(allowed_overrides),
                             hint=suggest(key, allowed_overrides))
    config = TrainConfig(file=file)
    origins = config.origins

    for key, attr in SCALAR_KEYS.items():
        if key in overrides and overrides[key] is not None:
            value, origin = overrides[key], ("override", labels.get(key, key))
        elif key in section:
            value, origin = section[key], ("spec", f"train.{key}")
        else:
            setattr(config, key, attr.default)
            continue
        try:
            setattr(config, key, attr.parse(value, key))
        except SpecError as error:
            raise _relocated(error, origin, file, "bad value") from None
        origins[key] = origin

    if overrides.get(AUGMENT_KEY) is not None or AUGMENT_KEY in section:
        from_flag = overrides.get(AUGMENT_KEY) is not None
        origin = (("override", labels.get(AUGMENT_KEY, AUGMENT_KEY)) if from_flag
                  else ("spec", f"train.{AUGMENT_KEY}"))
        try:
            config.augment = parse_augment(overrides[AUGMENT_KEY] if from_flag
                                           else section[AUGMENT_KEY], registry)
        except SpecError as error:
            label = origin[1] + (error.field or "") if origin[0] == "spec" else origin[1]
            raise _relocated(error, (origin[0], label), file) from None
        origins[AUGMENT_KEY] = origin

    for key, default in NAMED_KEYS.items():
        name, options = _named_setting(section, overrides, key, default, labels, file, origins)
        setattr(config, key, name)
        setattr(config, f"{key}_options", options)

    for key, kind in (("optimizer", "optimizer"), ("schedule", "schedule")):
        try:
            entry = registry.entry(kind, getattr(config, key))
        except GraphnetError as error:
            raise _relocated(error, origins.get(key, ("default", key)), file) from None
        schema = dict(entry.value.options)
        if kind == "optimizer":
            # the optimizer's own default rate (Adam's 0.001, SGD's 0.01) when none is given
            default_lr = getattr(entry.value, "default_lr", Optimizer.default_lr)
            schema["lr"] = Attr("float", default=default_lr, minimum=0)
        options = getattr(config, f"{key}_options")
        try:
            parsed = parse_options(schema, options, what=f"{kind} {entry.name!r}")
        except SpecError as error:
            origin = origins.get(f"{key}.{error.field}", origins.get(key, ("default", key)))
            raise _relocated(error, origin, file) from None
        setattr(config, f"{key}_options", parsed)
    return config


def _named_setting(section, overrides, key, default, labels, file, origins):
    """(name, raw options) of a named key; each option's origin is recorded as ``key.option``."""
    raw = section.get(key, default)
    if isinstance(raw, str):
        name, options = raw, {}
        origins[key] = ("spec", f"train.{key}") if key in section else ("default", key)
    elif isinstance(raw, dict):
        options = {k: v for k, v in raw.items() if k != "name"}
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"[train] {key} needs a name", file=file, field=f"train.{key}.name",
                            expected=f"a registered {key} name", found=repr(name))
        origins[key] = ("spec", f"train.{key}.name")
        for option in options:
            origins[f"{key}.{option}"] = ("spec", f"train.{key}.{option}")
    else:
        raise SpecError("wrong type", file=file, field=f"train.{key}",
                        expected=f'a name or a table such as {{ name = "{default}" }}',
                        found=repr(raw))
    if overrides.get(key) is not None:
        chosen = overrides[key]
        if not isinstance(chosen, str) or not chosen:
            raise UsageError("wrong type", field=labels.get(key, key), expected="a name",
                             found=repr(chosen))
        if chosen != name:  # the spec's options were meant for the other one
            options = {k: v for k, v in options.items() if k == "lr"}
            origins[key] = ("override", labels.get(key, key))
        name = chosen
    for shortcut, owner in SHORTCUTS.items():
        if owner == key and overrides.get(shortcut) is not None:
            options[shortcut] = overrides[shortcut]
            origins[f"{key}.{shortcut}"] = ("override", labels.get(shortcut, shortcut))
    for option_key, owner in OPTION_OVERRIDES.items():
        if owner == key and overrides.get(option_key):
            for option, value in overrides[option_key].items():
                options[option] = value
                origins[f"{key}.{option}"] = ("override",
                                              f"{labels.get(option_key, option_key)} {option}")
    return name, options


# --- data ---------------------------------------------------------------------------------------
def load_dataset(graph, config: TrainConfig, bindings: Bindings) -> tuple[Dataset, dict]:
    """Load the configured dataset; returns it and the options it was loaded with (see
    :class:`DatasetRequest`)."""
    return DatasetRequest.of(graph, config, bindings).load(config.seed)


@dataclass
class DatasetRequest:
    """The dataset training asks for: its registry entry and its options — ``[train]``'s and
    the flags', and ``size`` and ``channels`` from the image input's shape where those leave
    them out, so ``shapes`` renders at the spec's resolution. ``graphnet check`` parses the
    options as training would, without loading any data."""

    entry: Any
    options: dict
    followed: set
    """The options taken from the image input's shape."""
    config: TrainConfig
    image: str
    shape: tuple

    @classmethod
    def of(cls, graph, config: TrainConfig, bindings: Bindings) -> DatasetRequest:
        try:
            entry = graph.registry.entry("dataset", config.dataset)
        except GraphnetError as error:
            raise _relocated(error, config.origins.get("dataset", ("default", "dataset")),
                             config.file) from None
        options, followed = dict(config.dataset_options), set()
        shape = graph.nodes[bindings.image].shape
        if len(shape) == 3:
            channels, height, width = shape
            if "channels" in entry.value.options and "channels" not in options:
                options["channels"] = channels
                followed.add("channels")
            if "size" in entry.value.options and "size" not in options and height == width:
                options["size"] = height
                followed.add("size")
        return cls(entry, options, followed, config, bindings.image, shape)

    def parse(self) -> dict:
        """The options checked against the dataset's schema, defaults filled in."""
        try:
            return parse_options(self.entry.value.options, self.options,
                                 what=f"dataset {self.config.dataset!r}")
        except GraphnetError as error:
            raise self.located(error) from None

    def load(self, seed: int) -> tuple[Dataset, dict]:
        parsed = self.parse()
        try:
            return load_from(self.entry, SimpleNamespace(**parsed), seed=seed,
                             cache_dir=default_cache_dir()), parsed
        except GraphnetError as error:
            raise self.located(error) from None

    def located(self, error: GraphnetError) -> GraphnetError:
        """A refused option, said where its value came from: the image input's shape, or
        [train] and the flags."""
        config = self.config
        if error.field in self.followed:
            return SpecError(f"dataset {config.dataset!r} cannot make images of this input's "
                             f"shape: its {error.field!r}", file=config.file,
                             field=f"inputs.{self.image}.shape", expected=error.expected,
                             found=f"{error.found} (the shape is {list(self.shape)})",
                             hint="change the input's shape, or train on another dataset")
        if isinstance(error, SpecError) or (error.field in self.options and error.file is None):
            return config.error(f"dataset.{error.field}", error.message, expected=error.expected,
                                found=error.found, hint=error.hint)
        return error


def check_dataset(graph, dataset: Dataset, bindings: Bindings) -> None:
    """The images fit the image input, labels index the class scores, both splits have data."""
    shape = graph.nodes[bindings.image].shape
    for split_name in ("train", "test"):
        split = getattr(dataset, split_name)
        if split.images.shape[1:] != shape:
            raise DataError(f"dataset {dataset.name!r} does not fit input {bindings.image!r}",
                            file=graph.file, field=f"inputs.{bindings.image}",
                            expected=f"images of {format_shape(shape)} (the spec's input shape)",
                            found=f"{split_name} images of {format_shape(split.images.shape[1:])}")
        if len(split) == 0 or split.labels.shape != (len(split.images),):
            raise DataError(f"dataset {dataset.name!r}: its {split_name} split is empty or its "
                            "labels do not match its images",
                            expected="N images and N labels, N >= 1",
                            found=f"{format_shape(split.images.shape)} images, "
                                  f"{format_shape(split.labels.shape)} labels")
        if not np.issubdtype(split.labels.dtype, np.integer):
            raise DataError(f"dataset {dataset.name!r}: labels must be integers",
                            found=str(split.labels.dtype))
        low, high = int(split.labels.min()), int(split.labels.max())
        if low < 0 or high >= bindings.classes:
            problem = ("has negative labels" if low < 0 else
                       f"has more classes than output {bindings.logits!r} scores")
            raise DataError(f"dataset {dataset.name!r} {problem}", file=graph.file,
                            field=f"outputs.{bindings.logits}",
                            expected=f"labels in 0..{bindings.classes - 1}",
                            found=f"labels {low}..{high} in the {split_name} split")


def carve(train: Split, config: TrainConfig) -> tuple[Split, Split | None]:
    """Hold out ``val_fraction`` of the training split, then keep at most ``limit_train``
    samples; both drawn with a generator of the seed (the same split on every run)."""
    count = len(train)
    if not config.val_fraction and not config.limit_train:
        return train, None
    order = np.random.default_rng([config.seed, 3]).permutation(count)
    held = max(1, round(count * config.val_fraction)) if config.val_fraction else 0
    if "val_fraction" not in config.origins and count * config.val_fraction < 1:
        held = 0  # the default's share of a tiny training split would not be one sample
    kept = order[held:held + config.limit_train] if config.limit_train else order[held:]
    if len(kept) == 0:
        raise config.error("val_fraction", "no training samples are left", found=f"{count} "
                           "samples, all held out for validation")
    validation = Split(train.images[order[:held]], train.labels[order[:held]]) if held else None
    return Split(train.images[kept], train.labels[kept]), validation
