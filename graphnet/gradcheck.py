"""Compare the engine's gradients with central differences in float64.

Every trainable parameter array and every float input is checked along one random direction
(which touches every element) and at a sample of single coordinates. A graph without a loss
output is differentiated through a fixed random linear function of its outputs.

Each node's backward is also checked on its own (a vector–Jacobian check): with the inputs it
saw in the forward pass and a random output gradient u, the gradient its backward returns for
each float input must equal the central difference of ⟨u, forward(x)⟩. A wrong gradient in a
parameter-free op makes every parameter upstream of it disagree; this check names the op.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import limits
from .boundary import OpBoundary
from .engine import Network
from .numeric import relative_error
from .op import RunContext

INPUT_ARRAY = "input {position} ({source})"
"""How a node's own input-gradient check is named in the report."""

DEFAULT_TOLERANCE = 1e-5
GRADIENT_FLOOR = 1e-3
"""Gradients smaller than this (in norm) are compared absolutely: a gradient that is exactly zero
(a bias before batch norm) must not fail on the round-off of its finite difference."""
KINK_RETRIES = 3


@dataclass
class ArrayCheck:
    """One checked array: its owner node, its name and the relative error found."""

    node: str
    array: str
    error: float
    points: int


@dataclass
class GradcheckReport:
    """All checked arrays; ``worst_by_node`` for display, ``passed`` for the exit status."""

    checks: list[ArrayCheck] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE
    node_checks: list[ArrayCheck] = field(default_factory=list)
    """Each node's backward on its own, per float input, in the graph's order."""

    @property
    def first_wrong_backward(self) -> ArrayCheck | None:
        """The first node (in topological order) whose own backward disagrees with its forward:
        where a wrong gradient starts, whatever it did to the parameters before it."""
        return next((c for c in self.node_checks if c.error > self.tolerance), None)

    @property
    def worst_by_node(self) -> dict[str, ArrayCheck]:
        worst: dict[str, ArrayCheck] = {}
        for check in self.checks:
            if check.node not in worst or check.error > worst[check.node].error:
                worst[check.node] = check
        return worst

    @property
    def passed(self) -> bool:
        return all(c.error <= self.tolerance for c in self.checks + self.node_checks)

    @property
    def worst(self) -> float:
        return max((c.error for c in self.checks + self.node_checks), default=0.0)

    @property
    def arrays(self) -> int:
        return len(self.checks) + len(self.node_checks)


def class_count_for(graph, input_name: str) -> int:
    """How many classes an integer input may index: the per-sample size of the float input that
    its consumers pair it with (the logits), or 2 when nothing says."""
    counts = []
    for consumer in graph.consumers(input_name):
        node = graph.nodes[consumer]
        for source in node.inputs:
            shape = graph.nodes[source].shape
            if graph.nodes[source].dtype_kind == "float" and shape:
                counts.append(shape[-1] if len(shape) == 1 else shape[0])
    return max(1, min(counts)) if counts else 2


def random_feeds(graph, batch_size: int, rng: np.random.Generator | int = 0,
                 dtype=np.float64) -> dict:
    """Random data for every graph input: standard normal floats, integer labels within class
    range (:func:`class_count_for`); ``rng`` is a generator or a seed. The batch of gradient
    checks, of ``graphnet bench`` and of the bit-identity fingerprints."""
    rng = np.random.default_rng(rng)
    feeds = {}
    for name in graph.inputs:
        node = graph.nodes[name]
        shape = (batch_size,) + node.shape
        if node.dtype_kind == "int":
            feeds[name] = rng.integers(0, class_count_for(graph, name), size=shape)
        else:
            feeds[name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def gradcheck(graph, *, batch_size: int = 2, seed: int = 0, epsilon: float = 1e-5,
              tolerance: float = DEFAULT_TOLERANCE, points_per_array: int | None = 6,
              network: Network | None = None) -> GradcheckReport:
    """Check every gradient of ``graph`` (or of ``network``, converted to float64).

    ``points_per_array=None`` checks every element (for small graphs and single ops).
    """
    # Before the random batch is drawn: the network checks only batches it is handed.
    limits.check_memory(graph, batch_size=batch_size, dtype="float64", training=True)
    rng = np.random.default_rng(seed)
    net = Network(graph, dtype="float64", seed=seed)
    if network is not None:
        net.load_params({k: v.astype(np.float64) for k, v in network.flat_params().items()})
    feeds = random_feeds(graph, batch_size, rng)
    output_names = [o for o in graph.outputs if graph.nodes[graph.outputs[o]].dtype_kind == "float"]
    has_loss = graph.loss is not None

    if has_loss:
        output_names = ["loss"]
        projections = None
    else:
        probe = net.forward(feeds, training=True, outputs=output_names,
                            rng=np.random.default_rng(seed))
        projections = {o: rng.standard_normal(np.shape(v)) for o, v in probe.items()}

    def loss_value() -> float:
        outputs = net.forward(feeds, training=True, outputs=output_names, keep_for_backward=False,
                              rng=np.random.default_rng(seed))
        if has_loss:
            return float(outputs["loss"])
        return float(sum(np.sum(outputs[o] * projections[o]) for o in output_names))

    net.forward(feeds, training=True, outputs=output_names, keep_for_backward=True,
                rng=np.random.default_rng(seed))
    grads = net.backward(None if has_loss else projections, input_grads=True)

    targets = [(node, name, array, grads.params.get(node, {}).get(name))
               for node, name, array in net.trainable()]
    targets += [(name, "input", feeds[name], grads.inputs.get(name))
                for name in graph.inputs if graph.nodes[name].dtype_kind == "float"]
    report = GradcheckReport(tolerance=tolerance)
    for node, name, array, analytic in targets:
        analytic = np.zeros(array.shape) if analytic is None else analytic
        report.checks.append(_check_array(loss_value, array, analytic, rng, epsilon,
                                          points_per_array, node, name))
    report.node_checks = node_vjp_checks(net, feeds, output_names, rng, seed=seed,
                                         epsilon=epsilon)
    return report


INPUTS_CHECKED_PER_NODE = 8
"""Inputs of one node checked on their own, at most (a random choice beyond): each check runs
the node's forward, so checking all k inputs of a k-way merge would cost k² work."""


def node_vjp_checks(net: Network, feeds: dict, output_names: list[str],
                    rng: np.random.Generator, *, seed: int, epsilon: float) -> list[ArrayCheck]:
    """Check every node's backward on its own: for each float input x_k, the gradient the
    backward returns for a random output gradient u, taken along a random direction v, against
    the central difference of ⟨u, forward(x)⟩ along v. Nodes run one by one (no fusion) with
    copies of their parameters (batch norm's forward updates its running statistics) and the
    same random stream at every call (dropout draws the same mask). Float inputs get a small
    random jitter first: after a ReLU many are exactly 0, and a max-pool window of tied zeros
    has no derivative at all, while a node's backward is equally right or wrong nearby."""
    graph = net.graph
    names = [n for n in graph.order if not graph.nodes[n].is_input]
    unfused = Network(graph, dtype=net.dtype, seed=seed, fuse=False)
    unfused.load_params(net.flat_params())
    unfused.forward(feeds, training=True, outputs=output_names, keep_for_backward=False,
                    capture=[s for n in names for s in graph.nodes[n].inputs],
                    rng=np.random.default_rng(seed))
    values = unfused.captured
    calls = OpBoundary(graph, net.dtype)  # a plugin failing here is named as in a forward
    checks = []
    for name in names:
        node = graph.nodes[name]
        if not all(source in values for source in node.inputs):
            continue  # not on the way to the checked outputs
        inputs = [np.array(values[source]) for source in node.inputs]
        float_positions = [k for k, source in enumerate(node.inputs)
                           if k not in node.op.integer_inputs
                           and graph.nodes[source].dtype_kind == "float"]
        if not float_positions:
            continue
        for position in float_positions:
            scale = 1e-3 * (float(np.std(inputs[position])) + 1e-3)
            inputs[position] += scale * rng.standard_normal(inputs[position].shape)

        def run_forward(inputs=inputs, node=node):
            ctx = RunContext(training=True, rng=np.random.default_rng([seed, 2]), dtype=net.dtype)
            params = {k: v.copy() for k, v in unfused.params[node.name].items()}
            return calls.call(node, "forward", inputs, params, node.attrs, ctx), ctx

        (output, saved), ctx = run_forward()
        seed_grad = rng.standard_normal(np.shape(output))
        ctx.needs_input_grad = tuple(k in float_positions for k in range(len(inputs)))
        ctx.needs_param_grad = False
        input_grads, _ = calls.call(node, "backward", np.asarray(seed_grad, dtype=net.dtype),
                                    saved, {k: v.copy() for k, v in
                                            unfused.params[name].items()}, node.attrs, ctx)
        projected = lambda: float(np.sum(run_forward()[0][0] * seed_grad))  # noqa: E731
        if len(float_positions) > INPUTS_CHECKED_PER_NODE:  # a 4000-way merge: linear, not k²
            chosen = rng.choice(len(float_positions), INPUTS_CHECKED_PER_NODE, replace=False)
            float_positions = [float_positions[i] for i in sorted(chosen)]
        for position in float_positions:
            analytic = input_grads[position]
            analytic = np.zeros(inputs[position].shape) if analytic is None else analytic
            checks.append(_check_array(
                projected, inputs[position], analytic, rng, epsilon, 2, name,
                INPUT_ARRAY.format(position=position + 1, source=node.inputs[position])))
    return checks


def directional_derivative(loss_value, array: np.ndarray, direction: np.ndarray,
                           epsilon: float, loss_scale: float = 1.0) -> float:
    """Central difference of the loss along ``direction``, stepping around kinks.

    ReLU and max pooling are not differentiable everywhere. On a smooth stretch, central
    differences at steps ε and ε/10 agree to O(ε²); when a kink lies within reach they do not,
    so the step keeps shrinking tenfold (up to KINK_RETRIES times) until two agree. A wrong
    gradient is wrong at every step; a kink moves out of reach.
    """
    original = array.copy()

    def central(step):
        array[...] = original + step * direction
        plus = loss_value()
        array[...] = original - step * direction
        minus = loss_value()
        return (plus - minus) / (2 * step)

    def round_off(step):
        # float64 loses a few ulps of the loss per evaluation; divided by the step
        return 64 * np.finfo(np.float64).eps * (abs(loss_scale) + 1.0) / step

    try:
        previous = central(epsilon)
        for _ in range(KINK_RETRIES):
            epsilon /= 10
            current = central(epsilon)
            agreement = 1e-6 * max(abs(current), abs(previous)) + round_off(epsilon)
            if abs(current - previous) <= agreement:
                return current
            previous = current
        return previous
    finally:
        array[...] = original


def _check_array(loss_value, array, analytic, rng, epsilon, points, node, name) -> ArrayCheck:
    loss_scale = loss_value()
    # One random direction covers every element at the cost of two forward passes.
    direction = rng.standard_normal(array.shape)
    direction /= max(np.linalg.norm(direction), 1e-12)
    numeric_values = [directional_derivative(loss_value, array, direction, epsilon, loss_scale)]
    analytic_values = [float(np.sum(analytic * direction))]
    size = array.size
    if points is None or points >= size:
        indices = list(np.ndindex(array.shape))
    else:
        flat = rng.choice(size, size=points, replace=False)
        indices = [np.unravel_index(i, array.shape) for i in flat]
    for index in indices:
        unit = np.zeros(array.shape)
        unit[index] = 1.0
        numeric_values.append(directional_derivative(loss_value, array, unit, epsilon, loss_scale))
        analytic_values.append(float(analytic[index]))
    error = relative_error(analytic_values, numeric_values, floor=GRADIENT_FLOOR)
    if not math.isfinite(error):
        error = math.inf
    return ArrayCheck(node, name, error, len(indices) + 1)
