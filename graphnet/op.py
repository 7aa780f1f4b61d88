"""The op contract: what a layer defines, and nothing more.

An op is a class deriving from :class:`Op`, registered by a plugin through the
``graphnet_register_ops`` hook (see :mod:`graphnet.hookspecs`). The engine never names a layer;
it only calls the methods below. Shapes given to and returned by ``shape``/``params`` are *per
sample* (no batch axis; images are channels, height, width). Arrays given to ``forward`` and
``backward`` carry the batch axis first.

A minimal op::

    class Scale(Op):
        '''Multiply by a constant factor.'''
        name = "scale"
        attrs = {"factor": Attr("float", default=2.0, doc="the multiplier")}

        def shape(self, input_shapes, attrs):
            return input_shapes[0]

        def forward(self, inputs, params, attrs, ctx):
            return inputs[0] * attrs.factor, None

        def backward(self, grad_output, saved, params, attrs, ctx):
            return [grad_output * attrs.factor], {}

What an op may and may not do with the arrays it is given and returns — the engine, the other
ops and the optimizer rely on these rules, and the engine checks the first two:

- **Batch first.** Every array given to ``forward``/``backward`` and every array they return
  has the batch axis first, then the per-sample shape that ``shape`` promised. A loss
  (``is_loss``) returns one scalar for the whole batch (a shape-``()`` array or a numpy
  scalar) and its backward is given a shape-``()`` gradient.
- **dtype.** Float inputs, parameters and ``grad_output`` are in ``ctx.dtype`` (float32, or
  float64 on request); inputs at ``integer_inputs`` are int64. The output and every gradient
  must be in ``ctx.dtype`` (a forward may return integers); anything else is refused.
- **Any layout.** Arrays may be non-contiguous views: a conv returns NCHW views of
  channels-last memory, and the next conv reads that memory without a copy. Do not assume
  C-contiguity; return views of any strides if they are right.
- **Inputs are read-only.** Never write into ``inputs`` or ``grad_output``: an input is another
  node's value, which other consumers, captures, the caller or another op's saved state may
  hold; a gradient may be shared (``add`` hands the same array to each of its inputs).
- **Returning what you were given is fine.** An op may return its input as its output
  (dropout outside training), a view of it (flatten), and ``grad_output`` or views of it as
  input gradients: the engine never writes into an array an op returned, and sums gradients
  at fan-out into arrays of its own.
- **A returned array is never written again** by the op: not the output (consumers read it,
  its backward may read it from ``saved``), not a gradient (the optimizer reads it after
  backward). So a scratch buffer an op keeps between calls is never a result.
- **``saved`` is the op's own**, passed to ``backward`` once and then dropped; it may alias the
  inputs or the output, so backward writes into it only what forward made for itself alone.
- **Parameters** are written by nobody but the optimizer, except state (``Param(trainable=
  False)``), which ``forward`` may update in place while training (batch norm).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, ClassVar

import numpy as np

from .errors import ShapeError, SpecError

REQUIRED = object()
"""Default of an attribute that the spec must give."""

ATTR_KINDS = ("int", "float", "bool", "str", "pair", "padding", "array", "shape")


@dataclass(frozen=True)
class Attr:
    """One attribute in an op's schema.

    ``kind`` is one of:

    - ``"int"``, ``"float"``, ``"bool"``, ``"str"`` — a scalar (``choices`` restricts a str or
      an int);
    - ``"pair"`` — an int or ``[height, width]``, normalised to a tuple of two ints;
    - ``"padding"`` — ``"valid"``, ``"same"``, an int, ``[height, width]`` or four sides
      ``[top, left, bottom, right]`` (ONNX's ``pads`` order); normalised to the string or a tuple
      of two or four ints;
    - ``"array"`` — a (nested) list of numbers, normalised to a float64 numpy array;
    - ``"shape"`` — a list of ints, normalised to a tuple.

    ``minimum``/``maximum`` bound numbers (every element of a pair or shape).
    """

    kind: str
    default: Any = REQUIRED
    doc: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple | None = None

    def __post_init__(self):
        if self.kind not in ATTR_KINDS:
            raise ValueError(f"unknown attribute kind {self.kind!r}; expected one of {ATTR_KINDS}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> str:
        """A short phrase for what this attribute accepts, used in messages and the op catalogue."""
        names = {
            "int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
            "pair": "an integer or [height, width]",
            "padding": '"valid", "same", an integer, [height, width] or '
                       '[top, left, bottom, right]',
            "array": "a list of numbers", "shape": "a list of integers",
        }
        text = names[self.kind]
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        bounds = []
        if self.minimum is not None:
            bounds.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"<= {self.maximum:g}")
        if bounds:
            text += " " + " and ".join(bounds)
        return text

    def parse(self, value: Any, name: str) -> Any:
        """Check ``value`` from a spec and return it normalised; raise :class:`SpecError` if bad."""
        def fail():
            raise SpecError("bad attribute value", field=name, expected=self.describe(),
                            found=_show(value))

        if self.kind == "int":
            if not _is_int(value) or (self.choices and int(value) not in self.choices):
                fail()
            self._check_bounds(value, fail)
            return int(value)
        if self.kind == "float":
            if not _is_finite_number(value):
                fail()
            self._check_bounds(value, fail)
            return float(value)
        if self.kind == "bool":
            if not isinstance(value, bool):
                fail()
            return value
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                fail()
            return value
        if self.kind == "pair":
            pair = _as_pair(value)
            if pair is None:
                fail()
            for item in pair:
                self._check_bounds(item, fail)
            return pair
        if self.kind == "padding":
            if isinstance(value, str):
                if value not in ("valid", "same"):
                    fail()
                return value
            sides = _as_pair(value)
            if sides is None and isinstance(value, list) and len(value) == 4 \
                    and all(_is_int(v) for v in value):
                sides = tuple(int(v) for v in value)
            if sides is None or min(sides) < 0:
                fail()
            return sides
        if self.kind == "shape":
            if not isinstance(value, list) or not all(_is_int(v) for v in value):
                fail()
            for item in value:
                self._check_bounds(item, fail)
            return tuple(int(v) for v in value)
        # array
        return parse_number_array(value, name)

    def _check_bounds(self, number, fail):
        if self.minimum is not None and number < self.minimum:
            fail()
        if self.maximum is not None and number > self.maximum:
            fail()


def parse_number_array(value: Any, name: str) -> np.ndarray:
    """A nested list of numbers → float64 array; ragged or non-numeric lists raise SpecError."""
    def check(item, depth):
        if isinstance(item, list):
            if depth > 8:
                raise SpecError("array nested too deeply", field=name, expected="at most 8 levels")
            for sub in item:
                check(sub, depth + 1)
        elif not _is_finite_number(item):
            raise SpecError("bad array element", field=name, expected="finite numbers",
                            found=_show(item))

    if not isinstance(value, list):
        raise SpecError("bad attribute value", field=name, expected="a list of numbers",
                        found=_show(value))
    check(value, 0)
    try:
        array = np.array(value, dtype=np.float64)
    except ValueError:
        raise SpecError("ragged array", field=name,
                        expected="rows of equal length", found="rows of differing lengths") from None
    return array


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite_number(value) -> bool:
    """A number a float can hold: JSON integers have no bound, and one past ~1.8e308 makes
    ``math.isfinite`` raise OverflowError rather than answer."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _as_pair(value):
    if _is_int(value):
        return (int(value), int(value))
    if isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value):
        return (int(value[0]), int(value[1]))
    return None


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Param:
    """A parameter an op asks the engine to create and own.

    ``init`` is ``"he_normal"``, ``"he_uniform"``, ``"glorot_uniform"``, ``"glorot_normal"``,
    ``"zeros"``, ``"ones"``, or a callable ``init(rng, shape, dtype) -> array``. ``fan_in`` and
    ``fan_out`` feed the He/Glorot scales. A parameter with ``trainable=False`` is state (such as
    batch norm's running mean): saved in checkpoints, never given a gradient or updated by the
    optimizer; ``forward`` may update it in place while training.
    """

    shape: tuple
    init: str | Callable = "zeros"
    fan_in: int | None = None
    fan_out: int | None = None
    trainable: bool = True

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Window:
    """How one sliding-window layer changes the receptive field, per spatial axis (height, width).

    ``padding`` is the padding before the first element (top, left): it moves the field's start.
    ``padding_end`` is the padding after the last (bottom, right), which may differ (four sides,
    "same", ONNX's ``pads``): the field does not need it, the memory estimate does (the padded
    copy a layer makes). None leaves it unstated, and the estimate then takes the most that the
    output's size allows.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    padding_end: tuple[int, int] | None = None


POINTWISE = "pointwise"
"""Receptive-field contribution of an op that maps each position to itself (ReLU, batch norm, add)."""
GLOBAL = "global"
"""Receptive-field contribution of an op whose every output sees the whole input (flatten, dense)."""


@dataclass
class Choices:
    """Which of several equivalent implementations each node runs (a conv's kernels), for ops
    that pick one by measuring them: a network owns one, keeps it in its checkpoints and
    takes it back on resume, so a resumed run computes exactly as the run it continues.

    ``by_node`` holds ``{node: implementation name}``: what each node ran, or was told to run
    (pinned) before it first ran. ``measured`` memoises measurements under keys of the op's
    making (a layer's shapes), so that alike layers are timed once. ``measure`` False makes
    every node without an entry take its op's default (no timing): how a checkpoint written
    before choices existed is resumed.
    """

    by_node: dict[str, str] = field(default_factory=dict)
    measured: dict[Any, str] = field(default_factory=dict)
    measure: bool = True


@dataclass
class RunContext:
    """What the engine tells an op about the current pass."""

    training: bool
    rng: np.random.Generator
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    node: str | None = None
    """The name of the node being run (set by the engine before each forward)."""
    choices: Choices | None = None
    """The network's :class:`Choices`; None where no network runs the op (tests, gradient
    checks): an op then runs its default implementation."""
    needs_input_grad: tuple[bool, ...] = ()
    """Set before each ``backward`` call: which inputs want a gradient. An op may return None for
    an input that does not (a first conv layer need not compute the image's gradient)."""
    needs_param_grad: bool = True
    """False for a frozen node: an op may skip its parameter gradients."""

    def wants_input_grad(self, position: int) -> bool:
        """Whether input ``position`` needs a gradient (all do when the engine did not say)."""
        return position >= len(self.needs_input_grad) or self.needs_input_grad[position]


class Op:
    """Base class of every op. Override ``shape``, ``forward`` and ``backward`` at least.

    Class attributes:

    - ``name``: the name a spec uses in ``op = "..."``; the first line of the class docstring is
      its one-line doc;
    - ``attrs``: the attribute schema, ``{name: Attr}``;
    - ``arity``: how many inputs: an int, or ``(minimum, maximum)`` with ``None`` for no maximum;
    - ``integer_inputs``: positions of inputs that take integer data (class labels): they get no
      gradient and gradient checks leave them alone;
    - ``is_loss``: the output is one scalar for the whole batch (shape ``()``), not per sample.

    ``backward`` always differentiates the op's own ``forward``. An op may also take part in
    fusion through the optional protocols of :mod:`graphnet.fusion`, which this class does not
    declare.
    """

    name: ClassVar[str] = ""
    attrs: ClassVar[dict[str, Attr]] = {}
    arity: ClassVar[int | tuple[int, int | None]] = 1
    integer_inputs: ClassVar[tuple[int, ...]] = ()
    is_loss: ClassVar[bool] = False

    @classmethod
    def doc(cls) -> str:
        """The one-line doc: the first line of the class docstring."""
        text = (cls.__doc__ or "").strip()
        return text.splitlines()[0].strip() if text else ""

    @classmethod
    def arity_range(cls) -> tuple[int, int | None]:
        if isinstance(cls.arity, int):
            return cls.arity, cls.arity
        return tuple(cls.arity)

    # --- static analysis -------------------------------------------------------------------
    def shape(self, input_shapes: list[tuple], attrs: SimpleNamespace) -> tuple:
        """Per-sample output shape for these per-sample input shapes; raise ShapeError if unfit."""
        raise NotImplementedError

    def params(self, input_shapes: list[tuple], attrs: SimpleNamespace) -> dict[str, Param]:
        """The parameters to create, by name. Most ops have none."""
        return {}

    def receptive_field(self, input_shapes: list[tuple], attrs: SimpleNamespace):
        """A :class:`Window`, :data:`POINTWISE` or :data:`GLOBAL`."""
        return POINTWISE

    def macs(self, input_shapes: list[tuple], output_shape: tuple, attrs: SimpleNamespace) -> int:
        """Multiply-accumulates per sample."""
        return 0

    def implementations(self, input_shapes: list[tuple], attrs: SimpleNamespace):
        """The names of the interchangeable implementations that compute this node, which a
        :class:`Choices` may name for it (a conv's kernels), or None: the op has no choice."""
        return None

    # --- execution -------------------------------------------------------------------------
    def forward(self, inputs: list[np.ndarray], params: dict[str, np.ndarray],
                attrs: SimpleNamespace, ctx: RunContext) -> tuple[np.ndarray, Any]:
        """Return ``(output, saved)``; ``saved`` is whatever ``backward`` needs (or None)."""
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray, saved: Any, params: dict[str, np.ndarray],
                 attrs: SimpleNamespace, ctx: RunContext) -> tuple[list, dict[str, np.ndarray]]:
        """Return ``(input_grads, param_grads)``: one gradient (or None) per input, in order, and
        one gradient per trainable parameter, by name."""
        raise NotImplementedError

    # --- export (optional: an op without one cannot be exported there) ----------------------
    def to_torch(self, input_shapes: list[tuple], attrs: SimpleNamespace, names):
        """This node in PyTorch, for ``graphnet export --to torch`` and ``bench --compare``.

        ``names`` (:class:`TorchNames`) holds the variables with the input values
        (``names.inputs``) and the node's layer (``names.layer``). Return a
        :class:`TorchLayer`: the expression computing the node's value,
        the layer constructor (an ``nn`` module, or None), and the state-dict name of each
        parameter whose name differs. Parameters are copied over as they are, so a layer must
        hold them in graphnet's layout. The exporter assembles the module from these.
        """
        raise NotImplementedError

    def to_onnx(self, input_shapes: list[tuple], attrs: SimpleNamespace, builder) -> str:
        """This node in ONNX (inference only), for ``graphnet export --to onnx``.

        ``builder`` is the exporter's graph under construction (see
        :class:`graphnet.export.onnx.OnnxBuilder`; the op need not import ``onnx``):
        ``builder.inputs`` are the names of the values holding the node's inputs,
        ``builder.output`` the name its value should take, ``builder.param(name, shape=None)``
        the initializer holding one of its parameters (reshaped if ``shape`` is given),
        ``builder.constant(array)`` a constant, ``builder.fresh(hint)`` an unused value name and
        ``builder.add_node(op_type, inputs, output=None, **attributes)`` adds an ONNX node
        (the default opset, :data:`graphnet.export.onnx.OPSET`) and returns its output's name.
        Return the name of the value holding the node's result: usually ``builder.output``, or
        an input's name for an op that is the identity at inference (dropout). Values carry
        the batch axis first, as ``forward``'s arrays do.
        """
        raise NotImplementedError


def shape_error(message: str, *, field=None, expected=None, found=None) -> ShapeError:
    """Build the ShapeError an op raises from ``shape``; the graph builder adds file and node."""
    return ShapeError(message, field=field, expected=expected, found=found)


def format_shape(shape) -> str:
    """``(3, 32, 32)`` → ``3×32×32``; a scalar → ``scalar``."""
    return "×".join(str(d) for d in shape) if len(shape) else "scalar"


# --- export: what Op.to_torch receives and returns (text; PyTorch need not be installed) ------
@dataclass(frozen=True)
class TorchNames:
    """The names the exporter chose for one node, handed to :meth:`Op.to_torch`."""

    inputs: tuple[str, ...]
    """The Python variables holding the node's input values, in order."""
    layer: str
    """The expression naming the node's layer (``self.<identifier>``), if it has one."""


@dataclass(frozen=True)
class TorchLayer:
    """One node in PyTorch, as its op describes it (what :meth:`Op.to_torch` returns).

    ``expression`` computes the node's value from ``names.inputs`` (it may call
    ``names.layer``); ``module`` constructs that layer in ``__init__`` (None if the node has
    none); ``params`` maps a graphnet parameter name to its state-dict name under the layer
    where they differ (conv, linear and batch norm use graphnet's names and layouts). The
    generated module imports ``torch``, ``torch.nn as nn`` and ``torch.nn.functional as F``.
    """

    expression: str
    module: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def applied(cls, names: TorchNames, module: str) -> TorchLayer:
        """A node that is one layer, ``module``, applied to its one input."""
        return cls(f"{names.layer}({names.inputs[0]})", module)

    @staticmethod
    def options(**values) -> str:
        """``", name=value"`` for each value that is not None: a call's optional arguments."""
        return "".join(f", {name}={value!r}" for name, value in values.items()
                       if value is not None)

    @staticmethod
    def padded(source: str, pads, fill: str | None = None) -> tuple[str, tuple | None]:
        """PyTorch's windowed layers pad both sides alike. For ``pads`` (top, bottom, left,
        right): ``(input expression, the layer's padding or None)`` — symmetric pads go to the
        layer, asymmetric ones ("same" with an even kernel) become an ``F.pad`` of ``source``
        filled with ``fill`` (zeros by default)."""
        top, bottom, left, right = pads
        if top == bottom and left == right:
            return source, ((top, left) if top or left else None)
        value = "" if fill is None else f", value={fill}"
        return f"F.pad({source}, {(left, right, top, bottom)}{value})", None
