"""The extension surface of graphnet: every hook a plugin may implement.

Every op, optimizer, learning-rate schedule and dataset — the built-in ones included — reaches
graphnet through these hooks. A plugin is a module (or object) with functions decorated by
:data:`hookimpl`; it receives a :class:`graphnet.registry.Registry` and calls its ``add_*``
methods. Plugins register types, not per-call behaviour, and do nothing at import time.

A plugin becomes active in one of three ways:

- it is one of graphnet's built-in plugins (``graphnet_plugins``, the ``plugins/`` folder);
- an installed package declares it in the ``graphnet.plugins`` entry-point group::

      [project.entry-points."graphnet.plugins"]
      my_layers = "my_package.layers"

- the user names its file with ``--plugin PATH`` or in ``GRAPHNET_PLUGINS`` (paths separated by
  ``os.pathsep``).

``GRAPHNET_DISABLE_PLUGINS`` (comma-separated plugin names) turns plugins off.
"""
from __future__ import annotations

import pluggy

PROJECT_NAME = "graphnet"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Decorate a plugin's hook functions with this: ``@hookimpl def graphnet_register_ops(registry)``."""


@hookspec
def graphnet_register_ops(registry):
    """Register ops (layers) by calling ``registry.add_op(OpClass)`` once per op.

    Called once per plugin when the registry is built; every plugin's implementation runs (results
    are not used). ``OpClass`` derives from :class:`graphnet.op.Op`. A malformed op, or an op name
    another plugin registered too, is reported naming the plugin; the other ops keep working.
    """


@hookspec
def graphnet_register_optimizers(registry):
    """Register optimizers and learning-rate schedules.

    Call ``registry.add_optimizer(OptimizerClass)`` and ``registry.add_schedule(ScheduleClass)``;
    each class has a ``name`` (what ``[train] optimizer = {name = ...}`` and ``--optimizer`` use).
    Called once per plugin when the registry is built; every implementation runs.
    """


@hookspec
def graphnet_register_datasets(registry):
    """Register datasets by calling ``registry.add_dataset(DatasetClass)``.

    Each class has a ``name`` (what ``[train] dataset`` and ``--dataset`` use). Called once per
    plugin when the registry is built; every implementation runs.
    """
