"""Activations: values against plain numpy, gradients against central differences, stability."""
import numpy as np
import pytest

from graphnet.errors import ShapeError, SpecError
from graphnet.op import POINTWISE
from graphnet_plugins import activations
from graphnet_plugins.activations import LeakyRelu, Relu, Sigmoid, Softmax, Tanh

# (op class, raw attrs, per-sample input shape): one row per variant whose math differs.
CASES = [
    (Relu, {}, (3, 4, 4)),
    (LeakyRelu, {}, (5,)),
    (LeakyRelu, {"slope": 0.3}, (3, 4, 4)),
    (Sigmoid, {}, (3, 4, 4)),
    (Tanh, {}, (5,)),
    (Softmax, {}, (6,)),
    (Softmax, {}, (4, 3, 3)),
]
CASE_IDS = ["relu", "leaky-default", "leaky-0.3", "sigmoid", "tanh", "softmax-features",
            "softmax-channels"]


def away_from_zero(shape, seed=0, dtype=np.float64):
    """Values in ±[0.1, 2]: no finite-difference step crosses relu's kink at 0."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)


def run(op_class, x, attrs, context, **options):
    return op_class().forward([x], {}, attrs, context(**options))[0]


def test_registers_every_activation(registered_ops):
    assert registered_ops(activations) == {"relu", "leaky_relu", "sigmoid", "tanh", "softmax"}


def test_relu_and_leaky_relu_values(attrs_for, context):
    x = np.array([[-2.0, -0.5, 0.0, 1.5]])
    assert np.array_equal(run(Relu, x, attrs_for(Relu), context), [[0, 0, 0, 1.5]])
    assert np.allclose(run(LeakyRelu, x, attrs_for(LeakyRelu), context),
                       [[-0.02, -0.005, 0, 1.5]])
    assert np.allclose(run(LeakyRelu, x, attrs_for(LeakyRelu, slope=0.5), context),
                       [[-1, -0.25, 0, 1.5]])


def test_sigmoid_and_tanh_values(attrs_for, context):
    x = np.linspace(-6, 6, 13).reshape(1, 13)
    assert np.allclose(run(Sigmoid, x, attrs_for(Sigmoid), context), 1 / (1 + np.exp(-x)))
    assert np.allclose(run(Tanh, x, attrs_for(Tanh), context), np.tanh(x))


def test_softmax_normalises_the_channel_axis(attrs_for, context):
    x = away_from_zero((2, 4, 3, 3))
    expected = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    output = run(Softmax, x, attrs_for(Softmax), context)
    assert np.allclose(output, expected)
    assert np.allclose(output.sum(axis=1), 1)


@pytest.mark.parametrize("op_class, raw, shape", CASES, ids=CASE_IDS)
def test_gradients_match_finite_differences(op_class, raw, shape, attrs_for, check_gradients):
    x = away_from_zero((3,) + shape)
    errors = check_gradients(op_class(), [x], {}, attrs_for(op_class, **raw))
    assert set(errors) == {"input 1"}


@pytest.mark.parametrize("op_class, raw, shape", CASES, ids=CASE_IDS)
def test_shape_matches_forward(op_class, raw, shape, attrs_for, context):
    op, attrs = op_class(), attrs_for(op_class, **raw)
    output = run(op_class, away_from_zero((2,) + shape), attrs, context)
    assert op.shape([shape], attrs) == output.shape[1:] == shape
    assert op.receptive_field([shape], attrs) == POINTWISE
    assert op.macs([shape], shape, attrs) == 0


@pytest.mark.parametrize("op_class, raw, shape", CASES, ids=CASE_IDS)
def test_float32_stays_float32(op_class, raw, shape, attrs_for, context):
    op, attrs = op_class(), attrs_for(op_class, **raw)
    x = away_from_zero((2,) + shape, dtype=np.float32)
    output, saved = op.forward([x], {}, attrs, context(dtype=np.float32))
    (grad,), _ = op.backward(np.ones_like(output), saved, {}, attrs, context(dtype=np.float32))
    assert output.dtype == grad.dtype == np.float32


@pytest.mark.parametrize("op_class", [Relu, LeakyRelu, Sigmoid, Tanh, Softmax])
def test_no_input_gradient_when_not_wanted(op_class, attrs_for, context):
    op, attrs = op_class(), attrs_for(op_class)
    output, saved = op.forward([away_from_zero((2, 3))], {}, attrs, context())
    assert op.backward(output, saved, {}, attrs, context(needs_input_grad=(False,))) == ([None], {})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite_and_exact(dtype, attrs_for, context):
    x = np.array([[1e4, -1e4, 0.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sigmoid, sigmoid_saved = Sigmoid().forward([x], {}, attrs_for(Sigmoid), context())
        softmax, softmax_saved = Softmax().forward([x], {}, attrs_for(Softmax), context())
        (sigmoid_grad,), _ = Sigmoid().backward(np.ones_like(x), sigmoid_saved, {},
                                                attrs_for(Sigmoid), context())
        (softmax_grad,), _ = Softmax().backward(np.array([[1.0, 2.0, 3.0]], dtype=dtype),
                                                softmax_saved, {}, attrs_for(Softmax), context())
    assert np.array_equal(sigmoid, np.array([[1, 0, 0.5]], dtype=dtype))
    assert np.array_equal(softmax, np.array([[1, 0, 0]], dtype=dtype))
    assert sigmoid.dtype == softmax.dtype == dtype
    assert np.isfinite(sigmoid_grad).all() and np.isfinite(softmax_grad).all()


def test_softmax_needs_an_axis(attrs_for):
    with pytest.raises(ShapeError) as raised:
        Softmax().shape([()], attrs_for(Softmax))
    assert raised.value.field == "inputs"
    assert raised.value.found == "scalar"


def test_leaky_relu_rejects_a_negative_slope():
    with pytest.raises(SpecError):
        LeakyRelu.attrs["slope"].parse(-0.1, "slope")


def test_every_op_has_a_one_line_doc():
    for op_class in (Relu, LeakyRelu, Sigmoid, Tanh, Softmax):
        assert op_class.doc() and "MACs: 0" in op_class.__doc__
