"""One module per ``graphnet`` subcommand; see :mod:`graphnet.cli`.

Shared plumbing for commands lives in :mod:`graphnet.commands._common`.
"""
