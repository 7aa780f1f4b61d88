"""Activations: values against plain numpy, gradients against central differences, stability."""
import numpy as np
import pytest

from graphnet.errors import ShapeError, SpecError
from graphnet.op import POINTWISE, Window
from graphnet_plugins import activations
from graphnet_plugins.activations import Clip, LeakyRelu, Relu, Relu6, Sigmoid, Softmax, Tanh

# (op class, raw attrs, per-sample input shape): one row per variant whose math differs.
CASES = [
    (Relu, {}, (3, 4, 4)),
    (LeakyRelu, {}, (5,)),
    (LeakyRelu, {"slope": 0.3}, (3, 4, 4)),
    (Sigmoid, {}, (3, 4, 4)),
    (Tanh, {}, (5,)),
    (Softmax, {}, (6,)),
    (Softmax, {}, (4, 3, 3)),
    (Softmax, {"axis": -1}, (6,)),
    (Clip, {"min": -1.0, "max": 1.5}, (3, 4, 4)),
    (Clip, {"min": 0.5}, (5,)),
    (Clip, {"max": -0.5}, (3, 4, 4)),
    (Relu6, {}, (3, 4, 4)),
]
CASE_IDS = ["relu", "leaky-default", "leaky-0.3", "sigmoid", "tanh", "softmax-features",
            "softmax-channels", "softmax-last-axis", "clip-both", "clip-min", "clip-max",
            "relu6"]


def away_from_zero(shape, seed=0, dtype=np.float64):
    """Values in ±[0.1, 2]: no finite-difference step crosses relu's kink at 0."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.1, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(dtype)


def run(op_class, x, attrs, context, **options):
    return op_class().forward([x], {}, attrs, context(**options))[0]


def test_registers_every_activation(registered_ops):
    assert registered_ops(activations) == {"relu", "leaky_relu", "clip", "relu6", "sigmoid",
                                           "tanh", "softmax"}


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


@pytest.mark.parametrize("op_class, raw", [(Relu, {}), (LeakyRelu, {}), (Clip, {"min": 0.0}),
                                           (Relu6, {}), (Sigmoid, {}), (Tanh, {}),
                                           (Softmax, {})])
def test_no_input_gradient_when_not_wanted(op_class, raw, attrs_for, context):
    op, attrs = op_class(), attrs_for(op_class, **raw)
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
    for op_class in (Relu, LeakyRelu, Clip, Relu6, Sigmoid, Tanh, Softmax):
        assert op_class.doc() and "MACs: 0" in op_class.__doc__


# --- clip and relu6 --------------------------------------------------------------------------
def test_clip_and_relu6_values(attrs_for, context):
    x = np.array([[-7.0, -1.0, -0.25, 0.0, 0.3, 5.5, 6.0, 9.0]])
    assert np.array_equal(run(Relu6, x, attrs_for(Relu6), context),
                          [[0, 0, 0, 0, 0.3, 5.5, 6, 6]])
    assert np.array_equal(run(Clip, x, attrs_for(Clip, min=-1.0, max=0.5), context),
                          [[-1, -1, -0.25, 0, 0.3, 0.5, 0.5, 0.5]])
    assert np.array_equal(run(Clip, x, attrs_for(Clip, min=0.0), context), np.maximum(x, 0))
    assert np.array_equal(run(Clip, x, attrs_for(Clip, max=1.0), context), np.minimum(x, 1))
    # min above max: every output is max, as ONNX's Clip and torch.clamp define it
    assert np.array_equal(run(Clip, x, attrs_for(Clip, min=2.0, max=1.0), context),
                          np.ones_like(x))


def test_clip_gradient_passes_strictly_inside_the_bounds_only(attrs_for, context):
    x = np.array([[-7.0, -1.0, -0.25, 0.5, 0.7, 6.0, 9.0]])
    attrs = attrs_for(Clip, min=-1.0, max=0.5)
    _, saved = Clip().forward([x], {}, attrs, context())
    (grad,), _ = Clip().backward(np.full_like(x, 2.0), saved, {}, attrs, context())
    assert np.array_equal(grad, [[0, 0, 2, 0, 0, 0, 0]])
    _, saved = Relu6().forward([x], {}, attrs_for(Relu6), context())
    (grad,), _ = Relu6().backward(np.ones_like(x), saved, {}, attrs_for(Relu6), context())
    assert np.array_equal(grad, [[0, 0, 0, 1, 1, 0, 0]])


def test_relu6_gradient_on_both_sides_of_its_cap(attrs_for, check_gradients):
    x = away_from_zero((3, 3, 4, 4)) * 4  # ±[0.4, 8]: some above 6
    assert (x > 6).any() and ((x > 0) & (x < 6)).any()
    check_gradients(Relu6(), [x], {}, attrs_for(Relu6))


@pytest.mark.parametrize("op_class, raw", [(Clip, {"min": -0.5, "max": 0.25}), (Relu6, {}),
                                           (Clip, {"min": 0.1})])
def test_clip_epilogue_equals_the_op(op_class, raw, attrs_for, context):
    """The form a conv applies to its output in cache: the same values and gradients."""
    attrs = attrs_for(op_class, **raw)
    x = away_from_zero((2, 3, 4, 4)) * 4
    output, saved = op_class().forward([x], {}, attrs, context())
    grad_output = away_from_zero(x.shape, seed=1)
    (grad,), _ = op_class().backward(grad_output, saved, {}, attrs, context())
    epilogue = op_class().epilogue(attrs)
    values = x.copy()
    epilogue.forward(values)
    assert np.array_equal(values, output)
    assert np.array_equal(epilogue.gradient(grad_output, values), grad)


def test_clip_needs_a_bound(attrs_for):
    with pytest.raises(ShapeError) as raised:
        Clip().shape([(3,)], attrs_for(Clip))
    assert raised.value.field == "min" and raised.value.found == "neither"


def test_clip_and_relu6_agree_with_pytorch(attrs_for, context):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    x = away_from_zero((2, 3, 4, 4), seed=3) * 4
    grad_output = away_from_zero(x.shape, seed=4)
    for op_class, raw, reference in [
            (Relu6, {}, torch.nn.functional.relu6),
            (Clip, {"min": -1.0, "max": 0.5}, lambda t: torch.clamp(t, -1.0, 0.5)),
            (Clip, {"max": 0.5}, lambda t: torch.clamp(t, max=0.5))]:
        attrs = attrs_for(op_class, **raw)
        output, saved = op_class().forward([x], {}, attrs, context())
        (grad,), _ = op_class().backward(grad_output, saved, {}, attrs, context())
        x_torch = torch.tensor(x, requires_grad=True)
        expected = reference(x_torch)
        expected.backward(torch.tensor(grad_output))
        assert np.array_equal(output, expected.detach().numpy())
        assert np.array_equal(grad, x_torch.grad.numpy())


# --- softmax over any axis of a sample -------------------------------------------------------
@pytest.mark.parametrize("axis, numpy_axis", [(0, 1), (1, 2), (2, 3), (-1, 3), (-3, 1)])
def test_softmax_normalises_the_axis_it_is_given(axis, numpy_axis, attrs_for, context,
                                                 check_gradients):
    """The axis counts the axes of one sample: the batch axis is not counted."""
    x = away_from_zero((2, 3, 4, 5))
    attrs = attrs_for(Softmax, axis=axis)
    output = run(Softmax, x, attrs, context)
    expected = np.exp(x) / np.exp(x).sum(axis=numpy_axis, keepdims=True)
    assert np.allclose(output, expected, rtol=1e-12)
    check_gradients(Softmax(), [x], {}, attrs)


def test_softmax_agrees_with_pytorch_on_every_axis(attrs_for, context):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    x = away_from_zero((2, 3, 4, 5), seed=2)
    grad_output = away_from_zero(x.shape, seed=6)
    for axis in (0, 1, 2, -1):
        attrs = attrs_for(Softmax, axis=axis)
        output, saved = Softmax().forward([x], {}, attrs, context())
        (grad,), _ = Softmax().backward(grad_output, saved, {}, attrs, context())
        x_torch = torch.tensor(x, requires_grad=True)
        expected = torch.softmax(x_torch, dim=axis + 1 if axis >= 0 else axis)
        expected.backward(torch.tensor(grad_output))
        assert np.allclose(output, expected.detach().numpy(), rtol=1e-12, atol=1e-15)
        assert np.allclose(grad, x_torch.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_softmax_over_a_spatial_axis_sees_the_whole_row_or_column(attrs_for):
    # a 3×4×5 sample: over the width (axis 2), each unit sees its row's 5 pixels from any of
    # them — a window of 9 columns starting 4 before the unit
    assert Softmax().receptive_field([(3, 4, 5)], attrs_for(Softmax, axis=-1)) == Window(
        (1, 9), (1, 1), (0, 4))
    assert Softmax().receptive_field([(3, 4, 5)], attrs_for(Softmax, axis=1)) == Window(
        (7, 1), (1, 1), (3, 0))
    assert Softmax().receptive_field([(3, 4, 5)], attrs_for(Softmax, axis=-3)) == POINTWISE


@pytest.mark.parametrize("axis", [3, -4])
def test_softmax_rejects_an_axis_outside_the_sample(axis, attrs_for):
    with pytest.raises(ShapeError) as raised:
        Softmax().shape([(3, 4, 5)], attrs_for(Softmax, axis=axis))
    assert raised.value.field == "axis" and raised.value.found == str(axis)
    assert "-3 to 2 (the batch axis not counted)" in raised.value.expected


@pytest.mark.parametrize("op_name, shape, raw", [
    ("clip", (3, 4, 4), {"min": -0.5, "max": 0.5}), ("clip", (5,), {"min": 0.0}),
    ("relu6", (3, 4, 4), {}), ("softmax", (3, 4, 5), {"axis": -1}),
    ("softmax", (3, 4, 5), {"axis": 1}), ("softmax", (6,), {"axis": -1})])
def test_exports_to_pytorch(op_name, shape, raw):
    pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    from graphnet.testing import check_torch_export
    check_torch_export(op_name, [shape], raw, batch_size=2)


def test_spec_errors_name_the_node_and_field_with_exit_2(run_cli, write_spec):
    path = write_spec({"inputs": {"image": {"shape": [3, 8, 8]}}, "nodes": [
        {"name": "cap", "op": "clip"},
        {"name": "sm", "op": "softmax", "axis": 3, "inputs": ["image"]},
        {"name": "p", "op": "avg_pool2d", "kernel": 2, "padding": [1, 1, 1],
         "inputs": ["image"]}]})
    status, _, err = run_cli("check", path)
    assert status == 2 and "Traceback" not in err
    assert ("node 'p', field 'padding': bad attribute value: expected \"valid\", \"same\", an "
            "integer, [height, width] or [top, left, bottom, right], found [1, 1, 1]") in err
    path = write_spec({"inputs": {"image": {"shape": [3, 8, 8]}}, "nodes": [
        {"name": "cap", "op": "clip"},
        {"name": "sm", "op": "softmax", "axis": 3, "inputs": ["image"]}]})
    status, _, err = run_cli("check", path)
    assert status == 2
    assert "node 'cap', field 'min': clip needs a bound: expected min, max or both" in err
    assert "node 'sm', field 'axis': softmax axis outside the input" in err


@pytest.mark.parametrize("op_name, shape, raw, nodes", [
    ("clip", (3, 4, 4), {"min": -0.5, "max": 0.5}, ["Clip"]), ("clip", (5,), {"min": 0.0}, ["Clip"]),
    ("clip", (5,), {"max": 0.25}, ["Clip"]), ("relu6", (3, 4, 4), {}, ["Clip"]),
    ("softmax", (3, 4, 5), {"axis": -1}, ["Softmax"]), ("softmax", (3, 4, 5), {"axis": 1}, ["Softmax"]),
    ("softmax", (3, 4, 5), {}, ["Softmax"]), ("softmax", (6,), {"axis": -1}, ["Softmax"])])
def test_exports_to_onnx(op_name, shape, raw, nodes):
    pytest.importorskip("onnx", reason="onnx is not installed (the onnx extra)")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the test extra)")
    from graphnet.testing import check_onnx_export
    assert check_onnx_export(op_name, [shape], raw)["nodes"] == nodes
