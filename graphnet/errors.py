"""User-facing errors: each carries where it happened and what was expected versus found.

Only the CLI catches these; it prints ``str(error)`` (no traceback) and exits with status 2.
"""
from __future__ import annotations


class GraphnetError(Exception):
    """Base of every error a user can cause: a bad spec, data file, checkpoint, plugin or argument.

    Fields (all optional but ``message``): ``file``, ``node``, ``field``, ``expected``, ``found``,
    ``hint``. ``str()`` renders them as one line such as
    ``specs/net.toml: node 'conv1', field 'kernel': expected an integer >= 1, found 0``.
    """

    def __init__(self, message: str = "", *, file=None, node=None, field=None,
                 expected=None, found=None, hint=None):
        self.message = message
        self.file = None if file is None else str(file)
        self.node = node
        self.field = field
        self.expected = expected
        self.found = found
        self.hint = hint
        super().__init__(self.render())

    def where(self) -> str:
        """The location prefix: file, node and field, whichever are known."""
        parts = []
        if self.node is not None:
            parts.append(f"node {self.node!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        location = ", ".join(parts)
        if self.file and location:
            return f"{self.file}: {location}"
        return self.file or location

    def render(self) -> str:
        body = self.message
        if self.expected is not None or self.found is not None:
            detail = ", ".join(
                text for text in (
                    None if self.expected is None else f"expected {_clip(self.expected)}",
                    None if self.found is None else f"found {_clip(self.found)}",
                ) if text
            )
            body = f"{body}: {detail}" if body else detail
        where = self.where()
        line = f"{where}: {body}" if where else body
        if self.hint:
            line += f" ({self.hint})"
        return line

    def with_context(self, **context) -> "GraphnetError":
        """Fill in location fields that are still unknown (e.g. the file, added by the loader)."""
        for key, value in context.items():
            if getattr(self, key) is None and value is not None:
                setattr(self, key, str(value) if key == "file" else value)
        self.args = (self.render(),)
        return self

    def __str__(self) -> str:
        return self.render()


MAX_DETAIL = 300
"""Longest ``expected``/``found`` shown: a value from an untrusted file may be megabytes long."""


def _clip(detail) -> str:
    text = str(detail)
    return text if len(text) <= MAX_DETAIL else f"{text[:MAX_DETAIL - 20]}… ({len(text):,} characters)"


class SpecError(GraphnetError):
    """A graph spec that cannot be read, is malformed, or does not fit together."""


MAX_NAMED_NODES = 5
"""How many other nodes a repeated problem names before it counts the rest."""


def one_per_cause(problems: list[GraphnetError]) -> list[GraphnetError]:
    """Problems that differ only in the node they were found at, as one: the first, naming
    the other nodes in one line. One misspelt name used by five nodes is one mistake, and
    five identical lines hide the next real one."""
    first_of: dict[tuple, GraphnetError] = {}
    others: dict[tuple, list] = {}
    for problem in problems:
        cause = (type(problem), problem.file, problem.message, problem.field, problem.expected,
                 problem.found, problem.hint)
        if problem.node is None or cause not in first_of:
            first_of.setdefault(cause if problem.node is not None else (id(problem),), problem)
            others.setdefault(cause, [])
        else:
            others[cause].append(problem.node)
    for cause, nodes in others.items():
        if nodes:
            distinct = list(dict.fromkeys(nodes))
            named = ", ".join(repr(node) for node in distinct[:MAX_NAMED_NODES])
            if len(distinct) > MAX_NAMED_NODES:
                named += f" and {len(distinct) - MAX_NAMED_NODES:,} more"
            first = first_of[cause]
            also = f"the same in node{'s' if len(nodes) > 1 else ''} {named}"
            if first.hint:
                joined = first.hint.endswith(("?", "."))
                also = f"{first.hint} {also[0].upper()}{also[1:]}" if joined else \
                    f"{first.hint}; {also}"
            first.hint = also
            first.args = (first.render(),)
    return list(first_of.values())


class ShapeError(SpecError):
    """Shapes that do not fit: raised by an op's shape inference, located by the graph builder."""


class PluginError(GraphnetError):
    """A plugin that failed to import, registered a malformed op, or misbehaved while running."""


class DataError(GraphnetError):
    """A dataset or input file that is missing, truncated, corrupt or of the wrong layout."""


class CheckpointError(GraphnetError):
    """A checkpoint that is corrupt, of another spec, or of a newer format."""


class NumericError(GraphnetError):
    """A value that became NaN or infinite while running the graph."""


class UsageError(GraphnetError):
    """A bad command-line argument or API call."""


class ResourceError(GraphnetError):
    """A graph whose estimated memory exceeds the allowed limit."""


def plugin_failure(error: Exception, doing: str, *, located: dict | None = None,
                   **fields) -> Exception:
    """What to raise when a plugin's code raised ``error`` while graphnet was ``doing`` something
    (a phrase naming the plugin and what of it ran: ``"dataset 'x' (plugin 'p') failed to
    load"``). Call it in ``except Exception`` and raise what it returns:

    - a GraphnetError the plugin raised on purpose keeps its words; ``located`` (file, node,
      field) fills in where it happened, if it does not say;
    - a MemoryError stays itself: it is not the plugin's fault;
    - anything else becomes a PluginError ``"{doing}: {type}: {message}"`` with ``fields``,
      caused by the original (kept for a debugger; the CLI prints no traceback).
    """
    if isinstance(error, GraphnetError):
        return error.with_context(**(located or {}))
    if isinstance(error, MemoryError):
        return error
    failure = PluginError(f"{doing}: {type(error).__name__}: {error}", **fields)
    failure.__cause__ = error
    return failure
