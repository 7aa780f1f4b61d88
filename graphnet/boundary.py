"""The op-call boundary: every call the engine makes into an op's code goes through here.

An op is a plugin's code, the built-in ones included. At this one boundary, and nowhere else in
the engine, graphnet

- translates what an op raises (:func:`graphnet.errors.plugin_failure`): a GraphnetError gains
  the node and the spec file; anything else becomes a PluginError naming the method, node, op
  and plugin;
- checks what it returns against the op contract (:mod:`graphnet.op`): an output and
  gradients of the shape and dtype the graph promises, one gradient (or None) per input, one
  per trainable parameter;
- times it for a ``profile`` callable, keeps the values a caller asked to capture, and with
  ``check_finite`` names the first node whose output or gradient is NaN or infinite.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .errors import NumericError, PluginError, plugin_failure
from .op import format_shape


class OpBoundary:
    """The calls of one forward or backward pass (or of building a plan) into ops.

    ``profile``, a callable ``profile(node_name, method, seconds)``, is told how long each call
    took; ``capture`` names the values kept in ``captured``.
    """

    def __init__(self, graph, dtype, *, profile=None, check_finite: bool = False,
                 capture=()):
        self.file = graph.file
        self.dtype = np.dtype(dtype)
        self.profile = profile
        self.check_finite = check_finite
        self.capture = frozenset(capture)
        self.captured: dict[str, np.ndarray] = {}

    # --- any call ---------------------------------------------------------------------------
    def call(self, node, method: str, *args) -> Any:
        """``node.op.<method>(*args)``, timed and with its exceptions translated."""
        return self._run(node, method, getattr(node.op, method), *args)

    def _run(self, node, method: str, function, *args) -> Any:
        try:
            if self.profile is None:
                return function(*args)
            start = time.perf_counter()
            result = function(*args)
            self.profile(node.name, method, time.perf_counter() - start)
            return result
        except Exception as error:
            raise plugin_failure(error, f"while running {method} of node {node.name!r} (op "
                                        f"{node.op_name!r}, plugin {node.plugin!r})",
                                 located={"node": node.name, "file": self.file})

    # --- the engine's calls -----------------------------------------------------------------
    def init(self, node, name: str, param, rng, initialise) -> np.ndarray:
        """Parameter ``name`` of ``node`` by ``initialise(param, rng, dtype)`` (a plugin's
        callable initialiser may run), checked for shape and dtype."""
        array = self._run(node, f"init of parameter {name!r}", initialise, param, rng,
                          self.dtype)
        self.check_array(node, "init", f"parameter {name!r}", array, tuple(param.shape))
        return array

    def forward(self, step, inputs: list, params: dict, ctx, expected_shape: tuple):
        """``(output, saved)`` of the step's node, the output checked against
        ``expected_shape`` (``()`` for a loss, else the batch and the node's shape) and
        captured if asked."""
        node = step.node
        result = self.call(node, "forward", inputs, params, node.attrs, ctx)
        if not _is_pair(result):
            raise PluginError(f"{self._prefix(node, 'forward')} must return (output, saved)",
                              found=type(result).__name__)
        output, saved = result
        self.check_array(node, "forward", "output", output, expected_shape)
        if self.check_finite and not np.all(np.isfinite(output)):
            raise NumericError("output became non-finite (NaN or infinite)", node=node.name,
                               hint=step.describe())
        self.record(step.output, output)
        return output, saved

    def record(self, name: str, value) -> None:
        """Keep ``value`` in ``captured`` if ``name`` was asked for."""
        if name in self.capture:
            self.captured[name] = value

    def backward(self, node, grad_output, saved, params: dict, ctx,
                 input_shapes: list[tuple]) -> tuple[list, dict]:
        """``(input_grads, param_grads)`` of ``node``, checked: one gradient per input (None
        where ``ctx.needs_input_grad`` says none is wanted) of the input's shape, and for a
        trainable node one per trainable parameter, in the op's parameter order."""
        result = self.call(node, "backward", grad_output, saved, params, node.attrs, ctx)
        if not _is_pair(result):
            raise PluginError(f"{self._prefix(node, 'backward')} must return (input_grads, "
                              "param_grads)", found=type(result).__name__)
        input_grads, param_grads = result
        if not isinstance(input_grads, (list, tuple)) or len(input_grads) != len(node.inputs):
            raise PluginError(f"plugin {node.plugin!r}, op {node.op_name!r}, node "
                              f"{node.name!r}: backward must return one gradient (or None) per "
                              "input", expected=f"{len(node.inputs)} gradients",
                              found=_describe(input_grads))
        checked = []
        for position, (source, grad) in enumerate(zip(node.inputs, input_grads)):
            if grad is None or not ctx.needs_input_grad[position]:
                checked.append(None)
                continue
            if not self._fits(grad, input_shapes[position]):  # messages composed only then
                self.check_array(node, "backward", f"gradient of input {position + 1}", grad,
                                 input_shapes[position])
            if self.check_finite:
                self._check_finite_grad(node, f"gradient of input {position + 1} ({source!r})",
                                        grad)
            checked.append(grad)
        grads = {}
        if node.trainable:
            # In param_specs order, never a set's: the gradients' order (and which missing one
            # is named) must not change with the process's string hashing.
            for name, spec in node.param_specs.items():
                if not spec.trainable:
                    continue
                if name not in (param_grads or {}):
                    raise PluginError(f"plugin {node.plugin!r}, op {node.op_name!r}, node "
                                      f"{node.name!r}: backward returned no gradient for "
                                      f"parameter {name!r}")
                grad = param_grads[name]
                if not self._fits(grad, params[name].shape):
                    self.check_array(node, "backward", f"gradient of {name!r}", grad,
                                     params[name].shape)
                if self.check_finite:
                    self._check_finite_grad(node, f"gradient of {name!r}", grad)
                grads[name] = grad
        return checked, grads

    # --- checks -----------------------------------------------------------------------------
    @staticmethod
    def _prefix(node, method: str) -> str:
        return f"plugin {node.plugin!r}, op {node.op_name!r}, node {node.name!r}: {method}"

    def _fits(self, array, expected_shape: tuple) -> bool:
        """The common case of :meth:`check_array`, decided before any message is composed:
        a numpy array of ``expected_shape`` in the network's dtype."""
        return type(array) is np.ndarray and array.dtype == self.dtype and \
            array.shape == expected_shape

    def check_array(self, node, method: str, what: str, array, expected_shape: tuple) -> None:
        """A numpy array of ``expected_shape`` in the network's dtype (an integer output of
        forward, or a numpy scalar for a scalar, passes too)."""
        if self._fits(array, expected_shape):
            return
        prefix = self._prefix(node, method)
        if not isinstance(array, np.ndarray):
            if np.isscalar(array) and expected_shape == ():
                return
            raise PluginError(f"{prefix} returned {type(array).__name__} as the {what}",
                              expected="a numpy array")
        if array.shape != tuple(expected_shape):
            raise PluginError(f"{prefix} returned {format_shape(array.shape)} as the {what}",
                              expected=format_shape(expected_shape), found=format_shape(array.shape))
        if array.dtype != self.dtype and not (method == "forward" and array.dtype.kind in "iu"):
            raise PluginError(f"{prefix} returned {array.dtype} as the {what}",
                              expected=str(self.dtype), found=str(array.dtype))

    def _check_finite_grad(self, node, what: str, grad) -> None:
        if not np.all(np.isfinite(grad)):
            raise NumericError(f"backward produced a non-finite {what} (NaN or infinite)",
                               node=node.name, hint=f"op {node.op_name}")


def _is_pair(value) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _describe(value) -> str:
    if isinstance(value, (list, tuple)):
        return f"{len(value)} gradients"
    return type(value).__name__
