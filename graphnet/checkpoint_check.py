"""What a checkpoint may hold: one validator, run on every checkpoint as it is loaded, before
anything uses its contents.

A checkpoint is a file someone else may have edited. graphnet never writes NaN or infinite
weights, a zero standard deviation, a string where a count belongs or an epoch of 10³⁰, so
such a file is refused here — naming the checkpoint and the field — instead of turning into
"nan" probabilities, "accuracy 23.4 %", a traceback or a loop that never ends.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

from .errors import CheckpointError

MAX_COUNTER = 2**53
"""Largest epoch, step, global step or sample count: where float64 stops counting exactly.
Resuming costs nothing per step done (its schedule check samples ``RATES_COMPARED`` steps), so
only absurd values are refused; 2**53 steps of a microsecond each would take 285 years."""
MAX_RECORDS = 10**7
"""Longest history: each epoch rewrites all of it, so no run gets near 10**7 epochs' records."""
MAX_NAMES = 100_000
MAX_TEXT = 10_000
"""Longest string accepted in metadata (names, hashes)."""
GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def _text(value) -> bool:
    """A string graphnet could have written and may print: not too long, and without control
    characters (an escape sequence would be obeyed by the reader's terminal)."""
    return isinstance(value, str) and len(value) <= MAX_TEXT and value.isprintable()


def check_checkpoint(params: dict, optimizer: dict, meta: dict, path) -> None:
    """Raise a CheckpointError (file ``path``, the offending field) for anything graphnet would
    not have written. Entries that are absent are not required here: the code that needs one
    says so."""
    check = _Checker(path)
    for key, array in params.items():
        check.array(f"param/{key}", array, kinds="f")
    for key, array in optimizer.items():
        check.array(f"optim/{key}", array, kinds="biuf")
    for key in ("epoch", "step", "global_step"):
        check.count(meta, key)
    check.version(meta)
    for key in ("spec_hash", "graph", "optimizer", "schedule"):
        check.text(meta, key)
    if "partial" in meta and not isinstance(meta["partial"], bool):
        check.fail("partial", "true or false", meta["partial"])
    if meta.get("reference_loss") is not None:  # the first step's loss; None before it
        check.number(meta, "reference_loss", "reference_loss")
    check.history(meta)
    check.rng(meta)
    check.running(meta)
    check.standardise(meta)
    check.names(meta)
    check.dataset(meta)
    check.bindings(meta)
    check.choices(meta)


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, field: str, expected: str, found) -> None:
        shown = found if isinstance(found, str) and found.startswith("<") else repr(found)
        raise CheckpointError("checkpoint is corrupt: it holds what graphnet never writes",
                              file=self.path,
                              field=field, expected=expected, found=shown[:80])

    # --- arrays ---------------------------------------------------------------------------
    def array(self, field: str, array: np.ndarray, *, kinds: str) -> None:
        if array.dtype.kind not in kinds:
            self.fail(field, "floating-point numbers" if kinds == "f" else "numbers",
                      f"<{array.dtype} array>")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = "NaN" if np.isnan(array).any() else "infinity"
            self.fail(field, "finite numbers", f"<{bad} in a {array.dtype} array>")

    # --- scalars ----------------------------------------------------------------------------
    def count(self, meta: dict, key: str, field: str | None = None) -> None:
        if key in meta:
            value = meta[key]
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not 0 <= value <= MAX_COUNTER:
                self.fail(field or key, f"a whole number from 0 to {MAX_COUNTER:,}", value)

    def number(self, meta: dict, key: str, field: str, *, positive=False) -> None:
        if key in meta:
            value = meta[key]
            if isinstance(value, bool) or not isinstance(value, Real) or \
                    not math.isfinite(value) or value < 0 or (positive and value <= 0):
                self.fail(field, "a finite number " + ("> 0" if positive else ">= 0"), value)

    def text(self, meta: dict, key: str, field: str | None = None, *, optional=False) -> None:
        if key in meta:
            value = meta[key]
            if (value is None and optional) or _text(value):
                return
            self.fail(field or key, f"a printable string of at most {MAX_TEXT:,} characters"
                      + (" or null" if optional else ""), value)

    def version(self, meta: dict) -> None:
        value = meta.get("format_version", 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
            self.fail("format_version", "a whole number", value)

    # --- structures -------------------------------------------------------------------------
    def mapping(self, meta: dict, key: str, field: str | None = None) -> dict:
        value = meta.get(key, {})
        if not isinstance(value, dict):
            self.fail(field or key, "a JSON object", f"<{type(value).__name__}>")
        return value

    def history(self, meta: dict) -> None:
        records = meta.get("history", [])
        if not isinstance(records, list) or len(records) > MAX_RECORDS:
            self.fail("history", "a list of epoch records", f"<{type(records).__name__}>")
        for index, record in enumerate(records):
            field = f"history[{index}]"
            if not isinstance(record, dict):
                self.fail(field, "a JSON object", f"<{type(record).__name__}>")
            for key, value in record.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, Real)):
                    self.fail(f"{field}.{key}", "a number", value)
            self.count(record, "epoch", f"{field}.epoch")

    def rng(self, meta: dict) -> None:
        states = self.mapping(meta, "rng")
        for key, state in states.items():
            field = f"rng.{key}"
            if state is None and key == "shuffle":
                continue
            if not isinstance(state, dict) or state.get("bit_generator") not in GENERATORS:
                self.fail(field, "a numpy bit generator state", f"<{type(state).__name__}>")
            generator = getattr(np.random, state["bit_generator"])()
            try:
                generator.state = state
            except (TypeError, ValueError, KeyError, OverflowError, AttributeError) as error:
                self.fail(field, "a numpy bit generator state", f"<{type(error).__name__}: "
                                                                 f"{error}>"[:80])

    def running(self, meta: dict) -> None:
        running = self.mapping(meta, "running")
        for key in ("correct", "seen"):
            self.count(running, key, f"running.{key}")
        for key in ("loss_sum", "seconds"):
            self.number(running, key, f"running.{key}")

    def standardise(self, meta: dict) -> None:
        statistics = self.mapping(meta, "standardise")
        lengths = set()
        for key in ("mean", "std"):
            if key not in statistics:
                continue
            values = statistics[key]
            field = f"standardise.{key}"
            if not isinstance(values, list) or not 0 < len(values) <= MAX_NAMES:
                self.fail(field, "a list of numbers, one per channel", f"<{type(values).__name__}>")
            for value in values:
                if isinstance(value, bool) or not isinstance(value, Real) or \
                        not math.isfinite(value):
                    self.fail(field, "finite numbers", value)
                if key == "std" and value <= 0:
                    self.fail(field, "standard deviations > 0", value)
            lengths.add(len(values))
        if len(lengths) > 1:
            self.fail("standardise", "as many means as standard deviations",
                      f"<{' and '.join(map(str, sorted(lengths)))} values>")

    def names(self, meta: dict) -> None:
        names = meta.get("class_names", [])
        if not isinstance(names, list) or len(names) > MAX_NAMES or not all(
                isinstance(name, str) for name in names):
            self.fail("class_names", "a list of names", f"<{type(names).__name__}>")
        for index, name in enumerate(names):
            if not _text(name):  # predict prints them as they are
                self.fail(f"class_names[{index}]",
                          f"a printable name of at most {MAX_TEXT:,} characters", name)

    def dataset(self, meta: dict) -> None:
        dataset = self.mapping(meta, "dataset")
        self.text(dataset, "name", "dataset.name", optional=True)
        options = self.mapping(dataset, "options", "dataset.options")
        for key, value in options.items():
            if not (value is None or isinstance(value, (str, bool))
                    or (isinstance(value, Real) and math.isfinite(value)
                        and abs(value) <= 2**53)):
                self.fail(f"dataset.options.{key}", "a string, a finite number or true/false",
                          value)

    def choices(self, meta: dict) -> None:
        """``{node: implementation name}`` (see graphnet.op.Choices)."""
        choices = self.mapping(meta, "choices")
        if len(choices) > MAX_NAMES:
            self.fail("choices", f"at most {MAX_NAMES:,} nodes", f"<{len(choices)} nodes>")
        for node, name in choices.items():
            if not isinstance(name, str) or len(name) > MAX_TEXT or len(node) > MAX_TEXT:
                self.fail(f"choices.{node[:40]}", "the name of a kernel", name)

    def bindings(self, meta: dict) -> None:
        bindings = self.mapping(meta, "bindings")
        for key in ("image", "label", "logits"):
            self.text(bindings, key, f"bindings.{key}", optional=True)
        self.mapping(meta, "config")
