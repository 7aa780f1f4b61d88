"""graphnet's built-in plugins (installed as the ``graphnet_plugins`` package).

Each module is an ordinary pluggy plugin, registered exactly as a user's plugin is: it implements
hooks from :mod:`graphnet.hookspecs` with ``@hookimpl`` and calls ``registry.add_op(...)``.
"""

BUILTIN_PLUGINS = (
    "conv", "pooling", "activations", "dense", "regularization", "merge", "losses",
    "optimizers", "datasets", "transforms",
)
"""Module names of the built-in plugins, registered in this order."""
