"""The wording of messages, shared by every layer: names clipped to a readable length, and the
"did you mean" hint for an unknown name. Imports nothing of graphnet, so any module may use it."""
from __future__ import annotations

import difflib

DISTRIBUTION = "graphnet-cnn"
"""graphnet's name on the package index (``graphnet`` there is an unrelated project); the import
name and the command stay ``graphnet``."""


def clip(text, limit: int = 60) -> str:
    """``text`` as a string short enough for a message (a spec may hold megabyte-long keys)."""
    text = str(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def suggest(name: str, known) -> str | None:
    """``did you mean 'x'?`` for the closest known name, or None."""
    if len(str(name)) > 1000:  # no known name is this long; difflib would only spend time
        return None
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def format_bytes(size: int) -> str:
    """``1536`` → ``1.5 KiB``; huge numbers stay readable (``4.0e+12 TiB``)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 1e6 else f"{value:.1e} {unit}"
    return f"{size} B"


def install_hint(extra: str) -> str:
    """How to install one of graphnet's optional extras (``torch``, ``image``, ``digits``, …)."""
    return (f"install the {extra} extra: pip install '{DISTRIBUTION}[{extra}]' "
            f"(in a clone: pip install -e '.[{extra}]')")
