"""One module per ``graphnet`` subcommand, named after it; see :mod:`graphnet.cli`.

A command module imports at its top only what building its parser needs; what running it needs
(rendering, training, inspection, PyTorch) it imports inside ``run``, so that listing every
command for ``graphnet --help`` stays cheap. Shared plumbing for commands lives in
:mod:`graphnet.commands._common`.
"""
