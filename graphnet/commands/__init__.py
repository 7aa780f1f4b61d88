"""One module per ``graphnet`` subcommand, named after it and listed in :data:`NAMES`; see
:mod:`graphnet.cli`.

A command module defines ``ORDER`` (its place in the help listing), ``HELP`` (the one line the
listing shows), ``register(subparsers, common)`` (adds its parser, sets ``run``) and ``run``.
Listing the commands (``graphnet --help``, or a command line naming none) imports every module
for ``ORDER`` and ``HELP`` but calls no ``register``; so a module imports at its top nothing
but the standard library and :mod:`graphnet.errors`. What building its parser needs (a default
from :mod:`graphnet.limits`, say) it imports in ``register``, what running it needs (rendering,
training, inspection, PyTorch) in ``run``. A command that computes nothing (no network, no
matrix product: it reads specs and prints figures) says ``COMPUTES = False``; run as the
``graphnet`` program it then starts numpy without BLAS's worker threads (see
:func:`graphnet.cli.main`). Shared plumbing for commands lives in
:mod:`graphnet.commands._common`.
"""

NAMES = ("bench", "check", "data", "eval", "export", "gradcheck", "import", "inspect", "ops",
         "predict", "schema", "show", "train")
"""The command modules (a test checks that it names every one): listed, not discovered, since
discovering them (pkgutil) imports the standard library's inspect, a tenth of ``--help``."""
