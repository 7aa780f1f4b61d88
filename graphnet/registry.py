"""Build the plugin manager and collect what plugins register.

Built-in plugins, entry-point plugins and plugin files take the same path: each is registered
with pluggy, then every register hook is called once through pluggy's hook caller, so the order
pluggy promises holds (``tryfirst``, ``trylast``, ``hookwrapper`` and ``wrapper``
implementations included). pluggy registers a stand-in for each plugin whose implementations
are the plugin's own inside a guard: it tells the registry which plugin is registering and
turns that plugin's exceptions into problems naming it, so that a broken plugin is reported
while every other plugin keeps working.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, SpecError
from .op import Attr, Op
from .spec import RESERVED_NODE_KEYS
from .text import clip, suggest

ENTRY_POINT_GROUP = "graphnet.plugins"
PLUGINS_ENV = "GRAPHNET_PLUGINS"
DISABLE_ENV = "GRAPHNET_DISABLE_PLUGINS"
REGISTER_HOOKS = ("graphnet_register_ops", "graphnet_register_optimizers",
                  "graphnet_register_datasets")


@dataclass
class Entry:
    """One registered thing (op, optimizer, schedule, dataset or transform class) and the plugin
    it came from."""

    kind: str
    name: str
    value: Any
    plugin: str


@dataclass
class Registry:
    """What the plugins registered, by kind and name, plus the problems found while loading them."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {
        "op": {}, "optimizer": {}, "schedule": {}, "dataset": {}, "transform": {}})
    conflicts: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    problems: list[PluginError] = field(default_factory=list)
    plugin_names: list[str] = field(default_factory=list)
    current_plugin: str = "?"

    # --- called by plugins -----------------------------------------------------------------
    def add_op(self, op_class) -> None:
        """Register an op class (a subclass of :class:`graphnet.op.Op`)."""
        problem = _op_problem(op_class)
        if problem:
            label = getattr(op_class, "name", None) or getattr(op_class, "__name__", repr(op_class))
            raise PluginError(f"plugin {self.current_plugin!r}, op {label!r}: {problem}")
        self._add("op", op_class.name, op_class)

    def add_optimizer(self, optimizer_class) -> None:
        """Register an optimizer class with a ``name`` (see :mod:`graphnet.optim`)."""
        self._add("optimizer", _named(optimizer_class, "optimizer", self.current_plugin),
                  optimizer_class)

    def add_schedule(self, schedule_class) -> None:
        """Register a learning-rate schedule class with a ``name`` (see :mod:`graphnet.optim`)."""
        self._add("schedule", _named(schedule_class, "schedule", self.current_plugin),
                  schedule_class)

    def add_dataset(self, dataset_class) -> None:
        """Register a dataset class with a ``name`` (see :mod:`graphnet.data`)."""
        self._add("dataset", _named(dataset_class, "dataset", self.current_plugin), dataset_class)

    def add_transform(self, transform_class) -> None:
        """Register a data-augmentation transform class with a ``name`` (see
        :mod:`graphnet.data.augment`)."""
        self._add("transform", _named(transform_class, "transform", self.current_plugin),
                  transform_class)

    def _add(self, kind: str, name: str, value) -> None:
        table = self.entries[kind]
        if name in table or (kind, name) in self.conflicts:
            owners = self.conflicts.setdefault((kind, name), [table[name].plugin] if name in table
                                               else [])
            owners.append(self.current_plugin)
            table.pop(name, None)
            self.problems.append(PluginError(
                f"{kind} {name!r} is registered by more than one plugin: "
                + " and ".join(repr(p) for p in owners)))
            return
        table[name] = Entry(kind, name, value, self.current_plugin)

    # --- used by graphnet ------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def entry(self, kind: str, name: str, *, field_name: str | None = None) -> Entry:
        """The entry registered under ``name``; a clear error (with suggestions) if there is none."""
        table = self.entries[kind]
        if name in table:
            return table[name]
        if (kind, name) in self.conflicts:
            owners = " and ".join(repr(p) for p in self.conflicts[(kind, name)])
            raise PluginError(f"{kind} {name!r} is registered by more than one plugin: {owners}; "
                              "disable one with GRAPHNET_DISABLE_PLUGINS", field=field_name)
        broken = [p for p in self.problems if f"{kind} {name!r}" in p.message]
        hint = suggest(name, table)
        if broken:
            hint = f"it failed to register: {broken[0].message}"
        known = ", ".join(sorted(table)) or "none"
        raise SpecError(f"unknown {kind} {clip(repr(name))}", field=field_name,
                        expected=f"one of: {known}", found=clip(repr(name)), hint=hint)

    def op(self, name: str) -> Op:
        """A fresh instance of the op registered under ``name``."""
        return self.entry("op", name, field_name="op").value()

    def missing_plugins(self, names) -> list[str]:
        """Those of ``names`` (as a spec's ``requires`` gives them) that no loaded plugin
        answers to; a plugin answers to the names :func:`_is_disabled` accepts."""
        return [name for name in names
                if not any(_is_disabled(plugin, {name}) for plugin in self.plugin_names)]

    def plugin_of(self, kind: str, name: str) -> str:
        return self.entries[kind][name].plugin


def _named(value, kind: str, plugin: str) -> str:
    name = getattr(value, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"plugin {plugin!r}: a {kind} must have a non-empty string 'name', "
                          f"found {name!r} on {value!r}")
    return name


def _op_problem(op_class) -> str | None:
    """Why ``op_class`` is not a usable op, or None."""
    if not (isinstance(op_class, type) and issubclass(op_class, Op)):
        return f"expected a subclass of graphnet.op.Op, found {op_class!r}"
    name = op_class.name
    if not isinstance(name, str) or not name.replace("_", "a").isalnum() or name[0].isdigit():
        return f"'name' must be an identifier such as 'my_conv', found {name!r}"
    if not isinstance(op_class.attrs, dict):
        return f"'attrs' must be a dict of Attr, found {type(op_class.attrs).__name__}"
    for attr_name, attr in op_class.attrs.items():
        if not isinstance(attr, Attr):
            return f"attribute {attr_name!r} must be an Attr, found {attr!r}"
        if attr_name in RESERVED_NODE_KEYS:
            return f"attribute {attr_name!r} is reserved for every node ({', '.join(RESERVED_NODE_KEYS)})"
    for method in ("shape", "forward", "backward"):
        if getattr(op_class, method) is getattr(Op, method):
            return f"does not define {method}()"
    try:
        low, high = op_class.arity_range()
        if low < 0 or (high is not None and high < low):
            raise ValueError
    except (TypeError, ValueError):
        return f"'arity' must be an int or (minimum, maximum), found {op_class.arity!r}"
    if not op_class.doc():
        return "has no docstring (its first line is the op's one-line doc)"
    return None


# --- building the manager --------------------------------------------------------------------
def _builtin_plugins(problems: list[PluginError], disabled=frozenset()) -> list[tuple[str, Any]]:
    import graphnet_plugins
    found = []
    for name in graphnet_plugins.BUILTIN_PLUGINS:
        if _is_disabled(f"builtin:{name}", disabled):
            continue
        try:
            found.append((f"builtin:{name}", importlib.import_module(f"graphnet_plugins.{name}")))
        except Exception as error:  # reported like any plugin's failure; the rest keep working
            problems.append(PluginError(f"plugin 'builtin:{name}' failed to import: "
                                        f"{type(error).__name__}: {error}"))
    return found


def _entry_point_plugins(problems: list[PluginError], disabled=frozenset()) -> list[tuple[str, Any]]:
    found = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if _is_disabled(entry_point.name, disabled):
            continue
        try:
            found.append((entry_point.name, entry_point.load()))
        except (Exception, SystemExit) as error:  # a broken third-party plugin must not stop graphnet
            problems.append(PluginError(
                f"plugin {entry_point.name!r} ({entry_point.value}) failed to import: "
                f"{type(error).__name__}: {error}"))
    return found


def load_plugin_file(path: str | os.PathLike) -> Any:
    """Import a plugin from a Python file the user named; raises PluginError on failure."""
    path = Path(path)
    if not path.is_file():
        raise PluginError("plugin file not found", file=path, expected="a Python file",
                          found="nothing at that path")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"graphnet_user_plugin_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError("cannot import plugin file", file=path, expected="a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # sys.exit() in a plugin must not end graphnet
        del sys.modules[module_name]
        raise PluginError(f"plugin failed to import: {type(error).__name__}: {error}",
                          file=path) from None
    return module


def _is_disabled(name: str, disabled) -> bool:
    """A plugin is named by its entry-point name, its file path or stem, or ``builtin:x``/``x``."""
    stem = Path(name).stem if name.endswith(".py") else name
    return name in disabled or stem in disabled or name.removeprefix("builtin:") in disabled


def plugin_paths_from_env() -> list[str]:
    return [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p.strip()]


def disabled_from_env() -> set[str]:
    return {p.strip() for p in os.environ.get(DISABLE_ENV, "").split(",") if p.strip()}


def build_registry(plugin_paths=(), *, entry_points: bool = True, environment: bool = True,
                   disabled=()) -> Registry:
    """Load the built-in plugins, installed entry-point plugins and the named plugin files.

    With ``environment`` (the default), ``GRAPHNET_PLUGINS`` adds plugin files and
    ``GRAPHNET_DISABLE_PLUGINS`` turns plugins off. Problems are collected in
    ``registry.problems``, never raised: every plugin that works stays usable.
    """
    registry = Registry()
    disabled = set(disabled) | (disabled_from_env() if environment else set())
    # A disabled plugin is never imported: importing it would run its code.
    candidates = _builtin_plugins(registry.problems, disabled)
    if entry_points:
        candidates += _entry_point_plugins(registry.problems, disabled)
    paths = list(plugin_paths) + (plugin_paths_from_env() if environment else [])
    for path in dict.fromkeys(str(p) for p in paths):
        if _is_disabled(path, disabled):
            continue
        try:
            candidates.append((path, load_plugin_file(path)))
        except PluginError as error:
            registry.problems.append(error)

    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    unique, seen_names, seen_plugins = [], set(), set()
    for name, plugin in candidates:  # a module found twice (say, entry point and file) runs once
        if name not in seen_names and id(plugin) not in seen_plugins:
            seen_names.add(name)
            seen_plugins.add(id(plugin))
            unique.append((name, plugin))
    # pluggy calls implementations last registered first: registering in reverse keeps today's
    # order (built-ins, entry points, files), which the messages naming two plugins show.
    invalid = {}
    for name, plugin in reversed(unique):
        try:
            manager.register(_stand_in(manager, plugin, name, registry), name=name)
            manager.check_pending()
        except pluggy.PluginValidationError as error:
            if manager.get_plugin(name) is not None:
                manager.unregister(name=name)
            invalid[name] = PluginError(f"plugin {name!r} is not a valid plugin: {error}")
    registry.problems += [invalid[name] for name, _ in unique if name in invalid]
    registry.plugin_names += [name for name, _ in unique if name not in invalid]

    for hook_name in REGISTER_HOOKS:
        getattr(manager.hook, hook_name)(registry=registry)
    registry.current_plugin = "?"
    return registry


def _stand_in(manager: pluggy.PluginManager, plugin, name: str, registry: Registry):
    """What pluggy registers for ``plugin``: its hook implementations, each inside a guard
    (:func:`_guard`) and carrying the plugin's own options (``tryfirst``, ``hookwrapper``, …)."""
    stand_in = types.ModuleType(f"graphnet plugin {name}")
    for attribute in dir(plugin):
        if manager.parse_hookimpl_opts(plugin, attribute) is not None:
            setattr(stand_in, attribute, _guard(getattr(plugin, attribute), name, registry))
    return stand_in


def _guard(function, plugin: str, registry: Registry):
    """``function`` (with its signature and hookimpl marker) made to tell ``registry`` which
    plugin is registering, and to record what it raises as a problem naming ``plugin`` rather
    than let it stop the hook call. A wrapper (a generator function) is guarded around its
    ``yield`` too: pluggy resumes it after every other implementation has run."""
    def report(error: BaseException) -> None:
        registry.problems.append(error if isinstance(error, PluginError) else PluginError(
            f"plugin {plugin!r} raised while registering: {type(error).__name__}: {error}"))

    if not inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def guarded(*args, **kwargs):
            registry.current_plugin = plugin
            try:
                return function(*args, **kwargs)
            except (Exception, SystemExit) as error:  # isolate a plugin that raises
                report(error)
                return None
        return guarded

    @functools.wraps(function)
    def guarded_wrapper(*args, **kwargs):
        registry.current_plugin = plugin
        inner = function(*args, **kwargs)
        try:
            before = next(inner)
        except StopIteration:
            report(PluginError(f"plugin {plugin!r}: its hook wrapper returned without yielding"))
            inner = before = None
        except (Exception, SystemExit) as error:
            report(error)
            inner = before = None
        try:
            sent = yield before  # the other implementations run here
        except BaseException:
            if inner is not None:
                inner.close()
            raise
        if inner is None:
            return sent
        registry.current_plugin = plugin
        try:
            inner.send(sent)
        except StopIteration as stop:
            return stop.value
        except (Exception, SystemExit) as error:
            report(error)
            return sent
        inner.close()
        report(PluginError(f"plugin {plugin!r}: its hook wrapper yielded more than once"))
        return sent
    return guarded_wrapper


_default_registries: dict[tuple, Registry] = {}


def get_registry(plugin_paths=()) -> Registry:
    """The registry for these plugin files (plus the environment's), built once per process."""
    key = (tuple(str(p) for p in plugin_paths), os.environ.get(PLUGINS_ENV, ""),
           os.environ.get(DISABLE_ENV, ""))
    if key not in _default_registries:
        _default_registries[key] = build_registry(plugin_paths)
    return _default_registries[key]
