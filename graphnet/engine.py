"""The scheduler: runs a :class:`graphnet.graph.Graph` forward in topological order and backward
in reverse, summing gradients where one output feeds several consumers.

It knows graphs, not layers: every op is reached through the op contract (:mod:`graphnet.op`),
every call through the op-call boundary (:mod:`graphnet.boundary`), which checks what ops return
and says which node was running when anything goes wrong. It runs a plan's steps, each a graph
node or a fused node made by the fusion pass (:mod:`graphnet.fusion`), all alike.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

import numpy as np

from . import limits
from .boundary import OpBoundary
from .errors import DataError, NumericError, PluginError, UsageError
from .fusion import Step, fuse_epilogues, fused_nodes, plain_steps
from .op import Choices, RunContext, format_shape
from .runtime import Runtime, runs_inside_runtime
from .text import suggest

FLOAT_DTYPES = {"float32": np.float32, "float64": np.float64}
PREPARED_PLANS_KEPT = 8
"""Prepared plans a network keeps (per outputs, captures and batch size), the newest."""


def resolve_dtype(dtype) -> np.dtype:
    """``"float32"``/``"float64"`` (or numpy types) → np.dtype; anything else is a UsageError."""
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in FLOAT_DTYPES:
        raise UsageError("unsupported dtype", field="dtype", expected="float32 or float64",
                         found=repr(dtype))
    return np.dtype(FLOAT_DTYPES[name])


def initialise(param, rng: np.random.Generator, dtype) -> np.ndarray:
    """A new array for a :class:`graphnet.op.Param` by its ``init`` rule (He/Glorot/zeros/ones)."""
    shape = tuple(param.shape)
    fan_in = param.fan_in or (math.prod(shape[1:]) if len(shape) > 1 else shape[0] if shape else 1)
    fan_out = param.fan_out or (shape[0] if shape else 1)
    init = param.init
    if callable(init):
        return np.asarray(init(rng, shape, dtype), dtype=dtype)
    if init == "zeros":
        return np.zeros(shape, dtype)
    if init == "ones":
        return np.ones(shape, dtype)
    if init == "he_normal":
        values = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    elif init == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        values = rng.uniform(-limit, limit, shape)
    elif init == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        values = rng.uniform(-limit, limit, shape)
    elif init == "glorot_normal":
        values = rng.standard_normal(shape) * math.sqrt(2.0 / (fan_in + fan_out))
    else:
        raise PluginError(f"unknown initialiser {init!r}", field="init",
                          expected="he_normal, he_uniform, glorot_uniform, glorot_normal, zeros, "
                          "ones or a callable")
    return values.astype(dtype)


def node_rng(seed: int, name: str) -> np.random.Generator:
    """A generator per (seed, node name): adding a node never changes another node's init."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


class Plan(NamedTuple):
    """What a forward for given outputs and captures runs: its steps in topological order
    (after the fusion pass, see :func:`graphnet.fusion.fuse_epilogues`) and ``fused_into``
    ``{consumer: producer}`` for the nodes that run inside the one before them."""

    steps: list[Step]
    fused_into: dict[str, str]


class OpRun(NamedTuple):
    """One op step of a :class:`Prepared` plan, resolved once: the values it reads, the shape
    its output must have, and the values no later step reads (freed as soon as it has run).
    Parameters are looked up at each call: a caller may replace a node's dict of them."""

    step: Step
    inputs: tuple[str, ...]
    output_shape: tuple
    frees: tuple[str, ...]


class GradRun(NamedTuple):
    """One node's backward in a :class:`Prepared` plan: which of its inputs want a gradient
    and the shapes those gradients must have."""

    step: Step
    needs_input_grad: tuple[bool, ...]
    input_shapes: list[tuple]


@dataclass
class Prepared:
    """A plan made ready for one batch size, so that a step of training or inference does
    not work out again what the last one did: each op step's inputs, parameters, output
    shape and frees (:class:`OpRun`), and per ``input_grads`` flag the backward schedule
    (:class:`GradRun`), built on first use. What the ops return is still checked at every
    call (:mod:`graphnet.boundary`); the feeds too. Buffers are not carried over: every
    output and gradient a caller receives is its own (an op's scratch memory is reused
    through :meth:`graphnet.runtime.Runtime.scratch`, never returned)."""

    plan: Plan
    batch: int
    runs: list[OpRun]
    backward: dict[bool, list[GradRun]] = field(default_factory=dict)


@dataclass
class Gradients:
    """The result of :meth:`Network.backward`: ``params[node][name]`` and ``inputs[input_name]``."""

    params: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)


class Network:
    """A graph with parameters, ready to run.

    ``forward(feeds)`` takes a dict of arrays with the batch axis first and returns the named
    outputs; after a forward with ``training=True`` (or ``keep_for_backward=True``),
    ``backward()`` returns the gradients of the loss (or of given output gradients).
    An elementwise node that follows an op accepting epilogues (a ReLU after a conv) runs inside
    that op (see :mod:`graphnet.fusion`); ``fuse=False`` runs every node on its own.
    Where an op has several equivalent implementations (a conv's kernels), each node takes the
    one its op measures fastest the first time it runs, remembered in ``choices`` (a
    :class:`graphnet.op.Choices`, kept in checkpoints); ``choices="default"`` takes every op's
    default without measuring, and ``choices={node: name}`` pins nodes.
    """

    def __init__(self, graph, *, dtype="float32", seed: int = 0, params=None, memory_limit=None,
                 fuse: bool = True, choices=None):
        self.graph = graph
        self._fuse = fuse
        self.dtype = resolve_dtype(dtype)
        self.seed = seed
        # Refused from the spec's numbers before anything is allocated (see graphnet.limits).
        self.memory_limit = memory_limit
        limits.check_parameters(graph, dtype=self.dtype, limit=memory_limit)
        self._checked_batches: set[int] = set()
        self.params: dict[str, dict[str, np.ndarray]] = {}
        for node in graph.op_nodes:
            rng = node_rng(seed, node.name)
            self.params[node.name] = {name: self._new_param(node, name, spec, rng)
                                      for name, spec in node.param_specs.items()}
        if params is not None:
            self.load_params(params)
        self.step_rng = np.random.default_rng([seed, 1])
        self._saved: dict[str, Any] = {}
        self._ran: Prepared | None = None  # the last forward's plan, for backward
        self._plans: dict[tuple, Plan] = {}
        if isinstance(choices, Choices):
            self.choices = choices
        else:
            self.choices = (Choices(measure=False) if choices == "default"
                            else Choices(by_node=dict(choices or {})))
        self._prepared_plans: dict[tuple, Prepared] = {}
        self._predict_generator = None  # (seed, generator, its first state): see predict
        self.runtime = Runtime()  # threads, BLAS limit, scratch: entered by forward and backward

    # --- parameters -------------------------------------------------------------------------
    def _new_param(self, node, name: str, spec, rng) -> np.ndarray:
        """A parameter from the spec's fixed weights or its initialiser, checked for shape and
        for values this dtype can hold."""
        if name in node.fixed_weights:
            with np.errstate(over="ignore"):
                array = np.array(node.fixed_weights[name], dtype=self.dtype)
            if not np.all(np.isfinite(array)):
                raise NumericError(f"fixed weights do not fit in {self.dtype}", node=node.name,
                                   field="weights", file=self.graph.file,
                                   expected=f"values within ±{np.finfo(self.dtype).max:.3g}")
            return array
        # a plugin's callable initialiser may run
        return OpBoundary(self.graph, self.dtype).init(node, name, spec, rng, initialise)

    def trainable(self) -> Iterable[tuple[str, str, np.ndarray]]:
        """``(node, param name, array)`` for every parameter the optimizer updates."""
        for node in self.graph.op_nodes:
            if not node.trainable:
                continue
            for name, spec in node.param_specs.items():
                if spec.trainable:
                    yield node.name, name, self.params[node.name][name]

    def flat_params(self) -> dict[str, np.ndarray]:
        """Every parameter (state included) keyed ``"node/param"``, as checkpoints store them."""
        return {f"{node}/{name}": array for node, arrays in self.params.items()
                for name, array in arrays.items()}

    def load_params(self, flat: dict[str, np.ndarray], *, strict: bool = True) -> None:
        """Copy ``"node/param"`` arrays in, every shape checked before anything is written.

        ``strict`` (the default) wants exactly this graph's parameters; ``strict=False`` sets
        the ones given and leaves the others as they are (a pretrained backbone under a new
        head). A name that is not one of this graph's parameters is refused either way.
        """
        expected = self.flat_params()
        extra = sorted(set(flat) - set(expected))
        if extra:
            raise UsageError("parameter not in this graph", field=extra[0],
                             expected="one of the graph's parameters",
                             hint=suggest(extra[0], expected))
        for key, target in expected.items():
            if key not in flat:
                if not strict:
                    continue
                raise UsageError("parameter missing", field=key, expected=format_shape(target.shape),
                                 found="nothing", hint="load_params(..., strict=False) sets only "
                                 "the parameters given")
            source = np.asarray(flat[key])
            if source.shape != target.shape:
                raise UsageError("parameter has the wrong shape", field=key,
                                 expected=format_shape(target.shape), found=format_shape(source.shape))
        for key, target in expected.items():
            if key in flat:
                target[...] = flat[key]

    # --- running ----------------------------------------------------------------------------
    def _plan(self, output_names: tuple[str, ...], capture: tuple[str, ...] = (), *,
              fold: bool = False) -> Plan:
        """The nodes needed for these outputs and captures, in topological order, as steps
        after the fusion pass (which keeps the outputs' and captures' own values; with
        ``fold``, for a forward that keeps nothing for backward, it also folds batch norms
        into the convs before them); cached."""
        key = (output_names, capture, fold)
        if key not in self._plans:
            needed = set()
            stack = [self.graph.outputs[o] for o in output_names] + list(capture)
            while stack:
                name = stack.pop()
                if name not in needed:
                    needed.add(name)
                    stack.extend(self.graph.nodes[name].inputs)
            order = [n for n in self.graph.order if n in needed]
            if self._fuse:
                keep = set(self.graph.outputs.values()) | set(capture)
                steps = fuse_epilogues(self.graph, order, keep=keep,
                                       call=OpBoundary(self.graph, self.dtype).call,
                                       fold_params=self.params.__getitem__ if fold else None)
            else:
                steps = plain_steps(self.graph, order)
            self._plans[key] = Plan(steps, fused_nodes(steps))
        return self._plans[key]

    @property
    def fuse(self) -> bool:
        """Whether elementwise nodes may run inside the node before them (fixed at construction:
        the plans are cached with their fusions)."""
        return self._fuse

    def fused_nodes(self) -> dict[str, str]:
        """``{consumer: producer}`` for the nodes a full forward runs fused into the node before
        them (``graphnet bench`` names them instead of timing them)."""
        return dict(self._plan(tuple(self.graph.outputs)).fused_into)

    def _feed(self, feeds: dict, name: str) -> np.ndarray:
        node = self.graph.nodes[name]
        if name not in feeds:
            raise DataError("missing input", field=name,
                            expected=f"an array of shape N×{format_shape(node.shape)}",
                            found="nothing fed",
                            hint="outputs that do not need it are computed without it: "
                            "forward(..., outputs=[...]) or predict(x)"
                            if node.dtype_kind == "int" else None)
        try:
            array = np.asarray(feeds[name])
        except (ValueError, TypeError) as error:  # ragged nested lists and the like
            raise DataError("input is not an array", field=name,
                            expected=f"an array of shape N×{format_shape(node.shape)}",
                            found=str(error)) from None
        if array.shape[1:] != node.shape or array.ndim != len(node.shape) + 1:
            raise DataError("input has the wrong shape", field=name,
                            expected=f"N×{format_shape(node.shape)} (batch first)",
                            found=format_shape(array.shape))
        if node.dtype_kind == "int":
            if not np.issubdtype(array.dtype, np.integer):
                raise DataError("input must hold integers", field=name, expected="an integer array",
                                found=str(array.dtype))
            return array.astype(np.int64, copy=False)
        if not np.issubdtype(array.dtype, np.number):
            raise DataError("input must hold numbers", field=name, found=str(array.dtype))
        return array.astype(self.dtype, copy=False)

    @runs_inside_runtime
    def forward(self, feeds: dict[str, np.ndarray], *, training: bool = False,
                outputs: Iterable[str] | None = None, keep_for_backward: bool | None = None,
                check_finite: bool = False, rng: np.random.Generator | None = None,
                capture: Iterable[str] = (), profile=None) -> dict[str, np.ndarray]:
        """Run the nodes the requested outputs need (all outputs by default), in order.

        ``training`` switches dropout and batch norm to their training behaviour;
        ``keep_for_backward`` (default: ``training``) keeps what backward needs;
        ``check_finite`` raises NumericError at the first node whose output is NaN or infinite;
        ``capture`` names nodes (or inputs) whose values are kept in ``self.captured`` (for
        activation maps and training diagnostics);
        ``profile``, a callable ``profile(node_name, "forward", seconds)``, is told how long each
        op's forward took (``graphnet bench``); None (the default) costs nothing.
        """
        output_names = tuple(outputs) if outputs is not None else tuple(self.graph.outputs)
        for output in output_names:
            if output not in self.graph.outputs:
                raise UsageError("unknown output", field=output,
                                 expected="one of: " + ", ".join(self.graph.outputs))
        keep = training if keep_for_backward is None else keep_for_backward
        capture = tuple(capture)
        for name in capture:
            if name not in self.graph.nodes:
                raise UsageError("unknown node", field=name, expected="a node of the graph")
        fold = not (training or keep)
        plan = self._plan(output_names, capture, fold=fold)
        calls = OpBoundary(self.graph, self.dtype, profile=profile, check_finite=check_finite,
                           capture=capture)
        self.captured = calls.captured
        ctx = RunContext(training=training, rng=rng or self.step_rng, dtype=self.dtype,
                         choices=self.choices)
        values: dict[str, np.ndarray] = {}
        self._saved = {}
        self._ran = None
        batch = None
        for step in plan.steps:  # every input first: the batch size picks the prepared plan
            if not step.node.is_input:
                continue
            name = step.output
            values[name] = self._feed(feeds, name)
            calls.record(name, values[name])
            if batch is None:
                batch = values[name].shape[0]
                self._check_batch(batch)
            elif values[name].shape[0] != batch:
                raise DataError("inputs disagree on the batch size", field=name,
                                expected=f"{batch} samples", found=f"{values[name].shape[0]}")
        prepared = self._prepared(output_names, capture, plan, batch, fold=fold)
        saved = self._saved
        runtime = self.runtime
        measured = len(self.choices.measured)
        for run in prepared.runs:
            node = run.step.node
            ctx.node = node.name
            values[run.step.output], saved_by_op = calls.forward(
                run.step, [values[source] for source in run.inputs], self.params[node.name],
                ctx, run.output_shape)
            if keep:
                saved[node.name] = saved_by_op
            for source in run.frees:
                del values[source]  # free activations as soon as no consumer needs them
            if len(self.choices.measured) == measured:
                runtime.op_call_ended()  # its scratch memory may serve the next op
            else:
                # the op timed its candidate kernels: the scratch buffers of those it did not
                # choose would stay at every later step's peak
                runtime.release_scratch()
                measured = len(self.choices.measured)
        self._ran = prepared
        self._ctx = ctx
        return {o: values[self.graph.outputs[o]] for o in output_names}

    def _prepared(self, output_names: tuple[str, ...], capture: tuple[str, ...], plan: Plan,
                  batch: int | None, *, fold: bool = False) -> Prepared:
        """The plan for these outputs and captures made ready for ``batch`` samples (see
        :class:`Prepared`); cached, for the few batch sizes last used (a training run has two:
        its batch and the last, shorter one; predict likewise)."""
        key = (output_names, capture, batch, fold)  # fold: which plan (see _plan)
        prepared = self._prepared_plans.pop(key, None)
        if prepared is None:
            kept = {self.graph.outputs[o] for o in output_names}
            last_use = {}
            for position, step in enumerate(plan.steps):
                for source in step.node.inputs:
                    last_use[source] = position
            frees = {}
            for source, position in last_use.items():
                if source not in kept:
                    frees.setdefault(position, []).append(source)
            runs = [OpRun(step, tuple(step.node.inputs),
                          self._value_shape(step.node.name, (batch,)),
                          tuple(frees.get(position, ())))
                    for position, step in enumerate(plan.steps) if not step.node.is_input]
            prepared = Prepared(plan, batch, runs)
            while len(self._prepared_plans) >= PREPARED_PLANS_KEPT:
                del self._prepared_plans[next(iter(self._prepared_plans))]  # the oldest
        self._prepared_plans[key] = prepared  # now the newest
        return prepared

    def predict(self, x, *, output: str | None = None, batch_size: int = 256) -> np.ndarray:
        """The model's output for a batch-first array of samples, in inference mode.

        ``output`` names which (default: the only output that is not the loss — the class
        scores or probabilities, as the spec's last node gives them). ``x`` is fed to the one
        input that output needs; labels are not needed. A dict of arrays feeds several inputs.
        Runs ``batch_size`` samples at a time, with a generator of its own (the training
        generator ``step_rng`` is not touched).
        """
        if output is None:
            scores = [o for o, node in self.graph.outputs.items()
                      if not self.graph.nodes[node].is_loss]
            if len(scores) != 1:
                raise UsageError("cannot tell which output to predict", field="output",
                                 expected="predict(x, output=...) naming one of: "
                                 + ", ".join(scores or self.graph.outputs))
            output = scores[0]
        elif output not in self.graph.outputs:
            raise UsageError("unknown output", field=output,
                             expected="one of: " + ", ".join(self.graph.outputs))
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UsageError("bad batch size", field="batch_size", expected="an integer >= 1",
                             found=repr(batch_size))
        needed = [step.output for step in self._plan((output,)).steps if step.node.is_input]
        if isinstance(x, dict):
            feeds = dict(x)
        elif len(needed) == 1:
            feeds = {needed[0]: x}
        else:
            raise UsageError("this output needs several inputs", field=output,
                             expected="predict({name: array, ...}) feeding " + ", ".join(needed))
        for name in needed:  # checked once, whole, before the first batch
            feeds[name] = self._feed(feeds, name)
        count = len(feeds[needed[0]]) if needed else 0
        rng = self._predict_rng()
        with self.runtime:  # entered once for all the batches, not once per batch
            rows = [self.forward({name: feeds[name][start:start + batch_size] for name in needed},
                                 outputs=[output], rng=rng)[output]
                    for start in range(0, count, batch_size)]
        if not rows:
            return np.zeros((0,) + self.graph.nodes[self.graph.outputs[output]].shape, self.dtype)
        return np.concatenate(rows)

    @runs_inside_runtime
    def backward(self, grad_outputs: dict[str, np.ndarray] | None = None, *,
                 input_grads: bool = False, check_finite: bool = False,
                 profile=None) -> Gradients:
        """Reverse-mode autodiff from the loss (or from ``grad_outputs``), in reverse order.

        Returns gradients of every trainable parameter that the seeds depend on and, with
        ``input_grads``, of every float graph input. Saved forward state is freed as it is used.
        ``check_finite`` raises NumericError naming the first node whose backward returned a NaN
        or infinite gradient. ``profile`` is told each op's backward time, as in ``forward``.
        """
        prepared = self._ran
        if prepared is None or (not self._saved and prepared.runs):
            raise UsageError("backward() needs a forward pass with training=True or "
                             "keep_for_backward=True first")
        graph = self.graph
        made = {step.output for step in prepared.plan.steps}
        grad_by_node: dict[str, np.ndarray] = {}
        owned: set[str] = set()  # gradients we allocated and may add into in place
        if grad_outputs is None:
            if graph.loss is None or graph.loss not in made:
                raise UsageError("this graph has no loss output; pass grad_outputs")
            grad_by_node[graph.loss] = np.ones((), dtype=self.dtype)
        else:
            for output, grad in grad_outputs.items():
                target = graph.outputs.get(output)
                if target is None or target not in made:
                    raise UsageError("grad_outputs names an output the last forward did not compute",
                                     field=output, expected="one of: " + ", ".join(
                                         o for o, n in graph.outputs.items() if n in made))
                grad = np.asarray(grad, dtype=self.dtype)
                expected_shape = self._value_shape(target, (prepared.batch,))
                if grad.shape != expected_shape:
                    raise UsageError("output gradient has the wrong shape", field=output,
                                     expected=format_shape(expected_shape),
                                     found=format_shape(grad.shape))
                self._accumulate(grad_by_node, owned, target, grad)
        calls = OpBoundary(graph, self.dtype, profile=profile, check_finite=check_finite)
        runtime = self.runtime
        ctx = self._ctx
        result = Gradients()
        for run in self._backward_schedule(prepared, input_grads):
            node = run.step.node
            grad = grad_by_node.pop(run.step.output, None)
            if grad is None:
                continue
            if node.is_input:
                if input_grads and node.dtype_kind == "float":
                    result.inputs[node.name] = grad
                continue
            ctx.needs_input_grad = run.needs_input_grad
            ctx.needs_param_grad = node.trainable
            source_grads, param_grads = calls.backward(node, grad, self._saved.pop(node.name),
                                                       self.params[node.name], ctx,
                                                       run.input_shapes)
            runtime.op_call_ended()
            for source, source_grad in zip(node.inputs, source_grads):
                if source_grad is not None:
                    self._accumulate(grad_by_node, owned, source, source_grad)
            if param_grads:
                result.params[node.name] = param_grads
        self._saved = {}
        return result

    # --- helpers ----------------------------------------------------------------------------
    def _predict_rng(self) -> np.random.Generator:
        """``np.random.default_rng(self.seed)`` as new, for predict: one generator wound back
        to its first state at each call (making a generator costs 15-80 µs, a good share of a
        one-sample predict; setting its state, a few)."""
        if self._predict_generator is None or self._predict_generator[0] != self.seed:
            generator = np.random.default_rng(self.seed)
            self._predict_generator = (self.seed, generator, generator.bit_generator.state)
        _, generator, first_state = self._predict_generator
        generator.bit_generator.state = first_state
        return generator

    def _check_batch(self, batch: int) -> None:
        """Refuse a batch whose activations would exceed the memory limit, before running it."""
        if batch not in self._checked_batches:
            limits.check_memory(self.graph, batch_size=batch, dtype=self.dtype,
                                limit=self.memory_limit)
            self._checked_batches.add(batch)

    def _value_shape(self, name: str, batch_shape: tuple) -> tuple:
        node = self.graph.nodes[name]
        return () if node.is_loss else batch_shape + node.shape

    def _backward_schedule(self, prepared: Prepared, input_grads: bool) -> list[GradRun]:
        """The prepared plan's steps in reverse, each with which of its inputs want a gradient
        (a value wants one when it depends on a trainable parameter, or is a float input and
        ``input_grads`` asks) and their shapes; worked out once per plan and flag."""
        schedule = prepared.backward.get(input_grads)
        if schedule is None:
            steps = prepared.plan.steps
            requires = requires_grad(((step.output, step.node) for step in steps),
                                     input_grads=input_grads)
            schedule = [GradRun(step, tuple(
                            requires[source] and position not in step.node.op.integer_inputs
                            for position, source in enumerate(step.node.inputs)),
                            [self._value_shape(source, (prepared.batch,))
                             for source in step.node.inputs])
                        if not step.node.is_input else GradRun(step, (), [])
                        for step in reversed(steps)]
            prepared.backward[input_grads] = schedule
        return schedule

    @staticmethod
    def _accumulate(grad_by_node: dict, owned: set, name: str, grad: np.ndarray) -> None:
        """Sum gradients at fan-out without writing into an array an op may still hold."""
        if name not in grad_by_node:
            grad_by_node[name] = grad
        elif name in owned:
            grad_by_node[name] += grad
        else:
            grad_by_node[name] = grad_by_node[name] + grad
            owned.add(name)


def requires_grad(made_by: Iterable[tuple[str, Any]], *, input_grads: bool = False
                  ) -> dict[str, bool]:
    """Whether each value gets a gradient in backward. ``made_by`` gives, in topological order,
    each value's name and the node that makes it (``graph.nodes[name]`` for a graph's own
    values); a value gets one when its node has a trainable parameter or reads a value that
    gets one, and an input when ``input_grads`` asks for float inputs' gradients."""
    requires = {}
    for name, node in made_by:
        if node.is_input:
            requires[name] = input_grads and node.dtype_kind == "float"
        else:
            own = node.trainable and any(p.trainable for p in node.param_specs.values())
            requires[name] = own or any(requires[s] for s in node.inputs)
    return requires
