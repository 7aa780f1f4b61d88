"""Data augmentation: transforms of the training batches, drawn from the run's seed and step.

A transform is a class a plugin registers with ``registry.add_transform(TransformClass)`` in
its ``graphnet_register_datasets`` hook, as the built-in ones (``crop``, ``flip``, ``shift``;
``graphnet_plugins.transforms``) are::

    class Flip(Transform):
        '''Mirror left–right, each image with probability p.'''
        name = "flip"
        options = {"p": Attr("float", default=0.5, minimum=0, maximum=1)}

        def apply(self, batch, rng):            # N×C×H×W float32 → the same shape
            mirrored = rng.random(len(batch)) < self.settings.p
            return np.where(mirrored[:, None, None, None], batch[..., ::-1], batch)

``apply`` is vectorised (never a loop over samples or pixels) and draws only from ``rng``.

``[train] augment = ["crop:4", "flip"]`` (``--augment crop:4,flip``) lists the transforms in
the order they run; ``"crop:4"`` sets the transform's first option, a table such as
``{ name = "shift", pixels = 2 }`` sets any. They change training batches only, before
standardisation: validation, test and prediction see the images as they are. Step ``s`` of
epoch ``e`` draws from ``default_rng([seed, AUGMENT_STREAM, e, s])``, so a resumed run draws
what a run that never stopped drew.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from ..errors import PluginError, SpecError, plugin_failure
from ..op import Attr
from ..options import literal, parse_options

AUGMENT_STREAM = 3
"""The seed sequence's second word for augmentation (the network uses 1, shuffling 2)."""


class Transform:
    """Base class of transforms: ``name``, ``options`` (an :class:`Attr` schema, the first one
    positional in ``"name:value"``) and ``apply``. The docstring's first line is its doc."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Attr]] = {}

    def __init__(self, settings: SimpleNamespace):
        self.settings = settings

    def apply(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The batch transformed (same shape and dtype); draw randomness from ``rng`` only."""
        raise NotImplementedError


def parse_augment(value: Any, registry) -> list[tuple[str, dict[str, Any]]]:
    """``[(name, options)]`` from a list of ``"name"``, ``"name:value"`` or tables, or from one
    comma-separated string (the flag); names and options checked against the registry. Raises
    SpecError with ``field`` naming the place inside the setting (``[1].pixels``)."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise SpecError("wrong type", expected='a list such as ["crop:4", "flip"]',
                        found=repr(value))
    steps = []
    for index, item in enumerate(value):
        where = f"[{index}]"
        if isinstance(item, str):
            name, colon, first = item.partition(":")
            name, raw = name.strip(), {}
        elif isinstance(item, dict):
            name, colon, raw = item.get("name"), "", {k: v for k, v in item.items() if k != "name"}
        else:
            raise SpecError("wrong type", field=where, expected='"name", "name:value" or a table '
                            'such as { name = "crop", padding = 4 }', found=repr(item))
        try:
            entry = registry.entry("transform", name)
        except (PluginError, SpecError) as error:
            raise SpecError(error.message, field=where, expected=error.expected,
                            found=error.found, hint=error.hint) from None
        schema = entry.value.options
        if colon:
            if not schema:
                raise SpecError(f"transform {name!r} takes no value", field=where,
                                expected=repr(name), found=repr(item))
            raw = {next(iter(schema)): literal(first.strip())}
        try:
            options = parse_options(schema, raw, what=f"transform {name!r}")
        except SpecError as error:
            raise SpecError(error.message, field=f"{where}.{error.field}",
                            expected=error.expected, found=error.found, hint=error.hint) from None
        steps.append((name, options))
    return steps


class Augmentation:
    """The configured transforms, made once; ``augment(images, epoch, step)`` runs them."""

    def __init__(self, steps: list[tuple[str, dict[str, Any]]], registry, seed: int):
        self.seed = seed
        self.transforms = []
        for name, options in steps:
            entry = registry.entry("transform", name)
            defaults = {key: attr.default for key, attr in entry.value.options.items()}
            try:
                transform = entry.value(SimpleNamespace(**{**defaults, **options}))
            except Exception as error:
                raise plugin_failure(error, f"transform {name!r} (plugin {entry.plugin!r}) "
                                            "could not be created")
            self.transforms.append((name, entry.plugin, transform))

    def __bool__(self) -> bool:
        return bool(self.transforms)

    def __call__(self, images: np.ndarray, epoch: int, step: int) -> np.ndarray:
        if not self.transforms:
            return images
        rng = np.random.default_rng([self.seed, AUGMENT_STREAM, epoch, step])
        batch = np.ascontiguousarray(images, dtype=np.float32)
        for name, plugin, transform in self.transforms:
            shape = batch.shape
            try:
                batch = transform.apply(batch, rng)
            except Exception as error:
                raise plugin_failure(error, f"transform {name!r} (plugin {plugin!r}) failed")
            if not isinstance(batch, np.ndarray) or batch.shape != shape:
                raise PluginError(f"transform {name!r} (plugin {plugin!r}) returned "
                                  + (f"shape {batch.shape}" if isinstance(batch, np.ndarray)
                                     else type(batch).__name__), expected=f"an array of {shape}")
            batch = batch.astype(np.float32, copy=False)
        return batch
