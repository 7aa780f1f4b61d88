"""Conformance checks for ops, for graphnet's tests and for plugin authors' own tests::

    from graphnet.testing import check_op
    check_op("my_op", input_shapes=[(3, 8, 8)], attrs={"factor": 2.0}, plugins=["my_op.py"])

It builds a one-node graph, checks that shape inference equals what forward returns (the engine
checks every output's shape and dtype), that every gradient equals central differences in
float64, and that the receptive-field contribution is sane.
"""
from __future__ import annotations

from .engine import Network
from .gradcheck import GradcheckReport, gradcheck, random_feeds
from .graph import load
from .op import GLOBAL, POINTWISE, Window
from .registry import get_registry

import numpy as np


def single_op_spec(op_name: str, input_shapes, attrs=None, *, registry=None) -> dict:
    """A spec dict with one input per shape feeding one node of ``op_name``."""
    registry = registry or get_registry()
    op_class = registry.entry("op", op_name).value
    inputs = {}
    for position, shape in enumerate(input_shapes):
        dtype = "int64" if position in op_class.integer_inputs else "float32"
        inputs[f"x{position}"] = {"shape": list(shape), "dtype": dtype}
    node = {"name": "node", "op": op_name, "inputs": list(inputs), **(attrs or {})}
    outputs = {"loss": "node"} if op_class.is_loss else {"output": "node"}
    return {"graph": {"name": f"check_{op_name}"}, "inputs": inputs, "nodes": [node],
            "outputs": outputs}


def check_op(op_name: str, input_shapes, attrs=None, *, plugins=(), registry=None,
             tolerance: float = 1e-6, batch_size: int = 2, seed: int = 0) -> GradcheckReport:
    """Run the conformance checks for one op; raise AssertionError describing any failure."""
    registry = registry or get_registry(plugins)
    graph = load(single_op_spec(op_name, input_shapes, attrs, registry=registry),
                 registry=registry)
    node = graph.nodes["node"]

    # Shape inference equals the forward pass (the engine raises if they differ), in both dtypes.
    for dtype in ("float32", "float64"):
        network = Network(graph, dtype=dtype, seed=seed)
        feeds = random_feeds(graph, batch_size, np.random.default_rng(seed), dtype=np.float64)
        for training in (True, False):
            network.forward(feeds, training=training)

    contribution = node.op.receptive_field(list(input_shapes), node.attrs)
    if contribution == POINTWISE:
        spatial_in = [s[1:] for s in input_shapes if len(s) == 3]
        if len(node.shape) == 3 and spatial_in:
            _require(node.shape[1:] == spatial_in[0],
                     f"op {op_name!r} says its receptive field is pointwise but maps spatial "
                     f"size {spatial_in[0]} to {node.shape[1:]}")
    elif isinstance(contribution, Window):
        for values, what in ((contribution.kernel, "kernel"), (contribution.stride, "stride"),
                             (contribution.dilation, "dilation")):
            _require(len(values) == 2 and min(values) >= 1,
                     f"{op_name}: receptive-field {what} {values}")
        _require(min(contribution.padding) >= 0,
                 f"{op_name}: negative padding {contribution.padding}")
    else:
        _require(contribution == GLOBAL,
                 f"{op_name}: unknown receptive-field value {contribution!r}")

    report = gradcheck(graph, batch_size=batch_size, seed=seed, points_per_array=None,
                       tolerance=tolerance)
    _require(report.passed, f"op {op_name!r}: gradients differ from central differences: "
             + ", ".join(f"{c.node}.{c.array} rel. error {c.error:.2e}"
                         for c in report.checks if c.error > tolerance))
    return report


def _require(condition: bool, message: str) -> None:
    """Raise AssertionError unless ``condition``: a plain ``assert`` vanishes under
    ``python -O``, and these checks are this module's whole purpose."""
    if not condition:
        raise AssertionError(message)
