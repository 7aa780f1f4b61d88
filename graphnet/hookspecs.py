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

``GRAPHNET_DISABLE_PLUGINS`` (comma-separated plugin names) turns plugins off; a disabled plugin
is never imported.

Each hook is called once when the registry is built, through pluggy's hook caller: every
plugin's implementation runs, built-in plugins first, then entry points, then files, unless an
implementation asks for ``@hookimpl(tryfirst=True)`` or ``trylast=True``; one marked
``hookwrapper=True`` or ``wrapper=True`` runs around all the others (code after its ``yield``
sees what they registered). An implementation that raises is reported naming its plugin, and
every other plugin keeps working. Results are not used.
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

    ``OpClass`` derives from :class:`graphnet.op.Op`. A malformed op, or an op name another
    plugin registered too, is reported naming the plugin (both plugins, for a name); the other
    ops keep working. Called once when the registry is built; every implementation runs.
    """


@hookspec
def graphnet_register_optimizers(registry):
    """Register optimizers and learning-rate schedules.

    Call ``registry.add_optimizer(OptimizerClass)`` and ``registry.add_schedule(ScheduleClass)``;
    each class has a ``name`` (what ``[train] optimizer = {name = ...}`` and ``--optimizer`` use).
    Called once when the registry is built; every implementation runs.
    """


@hookspec
def graphnet_register_datasets(registry):
    """Register datasets by calling ``registry.add_dataset(DatasetClass)``, and the transforms
    that augment their training batches by calling ``registry.add_transform(TransformClass)``
    (see :mod:`graphnet.data.augment`).

    Each class has a ``name`` (what ``[train] dataset`` and ``--dataset``, or ``[train] augment``
    and ``--augment``, use). Called once when the registry is built; every implementation runs.
    """
