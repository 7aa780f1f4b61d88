"""Helpers for testing op classes directly, without a spec or an engine.

They are fixtures (each returns a function) because tests run with ``--import-mode=importlib``,
under which a test module cannot import this file.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from graphnet.numeric import numerical_gradient, relative_error
from graphnet.op import RunContext
from graphnet.registry import Registry

GRADIENT_TOLERANCE = 1e-6


def build_attrs(op_class, **raw) -> SimpleNamespace:
    """The attrs a spec node with these raw values would get: defaults merged, each value parsed."""
    unknown = set(raw) - set(op_class.attrs)
    if unknown:
        raise KeyError(f"{op_class.name} has no attribute(s) {sorted(unknown)}")
    merged = {name: attr.default for name, attr in op_class.attrs.items() if not attr.required}
    merged.update(raw)
    missing = [name for name in op_class.attrs if name not in merged]
    if missing:
        raise KeyError(f"{op_class.name} needs attribute(s) {missing}")
    # a None default ("none given") stays None, as the graph builder keeps it
    return SimpleNamespace(**{name: None if value is None and op_class.attrs[name].default is None
                              else op_class.attrs[name].parse(value, name)
                              for name, value in merged.items()})


def make_context(*, training: bool = False, seed: int = 0, dtype=np.float64,
                 needs_input_grad: tuple = (), needs_param_grad: bool = True) -> RunContext:
    """A RunContext with a freshly seeded generator: equal seeds draw equal dropout masks."""
    return RunContext(training=training, rng=np.random.default_rng(seed), dtype=np.dtype(dtype),
                      needs_input_grad=needs_input_grad, needs_param_grad=needs_param_grad)


def gradient_errors(op, inputs, params, attrs, *, training: bool = False,
                    seed: int = 0) -> dict[str, float]:
    """Relative error of each analytic gradient against central differences, by label.

    Labels are ``"input N"`` (1-based) and the names of trainable parameters. The loss is
    Σ output·R for a fixed random R, so every output element is weighted differently. An array
    passed at several input positions (``add(x, x)``) is checked against the sum of those
    positions' gradients, as the engine sums gradients at fan-out.
    """
    def run():
        return op.forward(inputs, params, attrs, make_context(training=training, seed=seed))

    output, saved = run()
    grad_output = np.asarray(np.random.default_rng(99).standard_normal(output.shape))

    def loss_of() -> float:
        return float(np.sum(run()[0] * grad_output))

    input_grads, param_grads = op.backward(grad_output, saved, params, attrs,
                                           make_context(training=training, seed=seed))
    assert len(input_grads) == len(inputs), "backward must return one gradient per input"
    declared = op.params([x.shape[1:] for x in inputs], attrs)
    trainable = {name for name, param in declared.items() if param.trainable}
    assert set(param_grads) == trainable, "backward must return one gradient per trainable param"

    errors = {}
    summed_by_array: dict[int, tuple[str, np.ndarray, np.ndarray]] = {}
    for position, (array, grad) in enumerate(zip(inputs, input_grads)):
        if position in op.integer_inputs:
            assert grad is None, "integer inputs get no gradient"
            continue
        assert grad.shape == array.shape
        label, _, total = summed_by_array.get(id(array), (f"input {position + 1}", array, 0))
        summed_by_array[id(array)] = (label, array, total + grad)
    for label, array, analytic in summed_by_array.values():
        errors[label] = relative_error(analytic, numerical_gradient(loss_of, array))
    for name in sorted(trainable):
        assert param_grads[name].shape == params[name].shape
        errors[name] = relative_error(param_grads[name], numerical_gradient(loss_of, params[name]))
    return errors


def assert_gradients_match(op, inputs, params, attrs, **options) -> dict[str, float]:
    """Check every gradient against central differences; return the errors for further checks."""
    errors = gradient_errors(op, inputs, params, attrs, **options)
    worst = {label: error for label, error in errors.items() if not error < GRADIENT_TOLERANCE}
    assert not worst, f"gradients differ from central differences: {worst}"
    return errors


def registered_op_names(plugin_module) -> set[str]:
    """The op names a plugin module registers through its hook (add_op validates each op)."""
    registry = Registry(current_plugin=plugin_module.__name__)
    plugin_module.graphnet_register_ops(registry=registry)
    assert not registry.problems
    return set(registry.names("op"))


@pytest.fixture
def attrs_for():
    return build_attrs


@pytest.fixture
def context():
    return make_context


@pytest.fixture
def check_gradients():
    return assert_gradients_match


@pytest.fixture
def registered_ops():
    return registered_op_names
