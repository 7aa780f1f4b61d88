"""flatten and dense: values, parameters, costs and gradients."""
import numpy as np
import pytest

from graphnet.errors import SpecError
from graphnet.op import GLOBAL
from graphnet_plugins import dense
from graphnet_plugins.dense import Dense, Flatten


def random(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def dense_params(op, input_shape, attrs, seed=1, dtype=np.float64):
    """Random arrays of the declared shapes (a zero bias would hide a missing bias add)."""
    declared = op.params([input_shape], attrs)
    return {name: random(param.shape, seed + index, dtype)
            for index, (name, param) in enumerate(declared.items())}


def test_registers_flatten_and_dense(registered_ops):
    assert registered_ops(dense) == {"flatten", "dense"}


# --- flatten ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 4, 5), (7,), ()])
def test_flatten_shape_matches_forward(shape, attrs_for, context):
    op, attrs = Flatten(), attrs_for(Flatten)
    x = random((2,) + shape)
    output, _ = op.forward([x], {}, attrs, context())
    assert np.array_equal(output, x.reshape(2, -1))
    assert op.shape([shape], attrs) == output.shape[1:] == (int(np.prod(shape)),)
    assert op.receptive_field([shape], attrs) == GLOBAL
    assert op.macs([shape], output.shape[1:], attrs) == 0


def test_flatten_gradient(attrs_for, check_gradients):
    check_gradients(Flatten(), [random((2, 3, 2, 2))], {}, attrs_for(Flatten))


def test_flatten_handles_an_empty_batch(attrs_for, context):
    output, saved = Flatten().forward([np.zeros((0, 3, 2, 2))], {}, attrs_for(Flatten), context())
    assert output.shape == (0, 12)
    (grad,), _ = Flatten().backward(output, saved, {}, attrs_for(Flatten), context())
    assert grad.shape == (0, 3, 2, 2)


# --- dense -----------------------------------------------------------------------------------
def test_dense_declares_pytorch_layout_params(attrs_for):
    attrs = attrs_for(Dense, units=4, init="he_normal")
    params = Dense().params([(3, 2, 2)], attrs)
    assert set(params) == {"weight", "bias"}
    weight = params["weight"]
    assert (weight.shape, weight.init, weight.fan_in, weight.fan_out) == ((4, 12), "he_normal",
                                                                          12, 4)
    assert weight.trainable
    assert (params["bias"].shape, params["bias"].init) == ((4,), "zeros")


def test_dense_defaults(attrs_for):
    attrs = attrs_for(Dense, units=3)
    assert (attrs.bias, attrs.init) == (True, "glorot_uniform")


def test_dense_without_bias_has_no_bias_param(attrs_for):
    assert set(Dense().params([(5,)], attrs_for(Dense, units=2, bias=False))) == {"weight"}


@pytest.mark.parametrize("raw", [{"units": 0}, {"units": 2.5}, {"units": 2, "init": "xavier"},
                                 {"units": 2, "bias": 1}])
def test_dense_rejects_bad_attributes(raw, attrs_for):
    with pytest.raises(SpecError):
        attrs_for(Dense, **raw)


def test_dense_units_is_required(attrs_for):
    assert Dense.attrs["units"].required
    with pytest.raises(KeyError):
        attrs_for(Dense)


@pytest.mark.parametrize("bias", [True, False])
def test_dense_values_flatten_each_sample(bias, attrs_for, context):
    op, attrs = Dense(), attrs_for(Dense, units=4, bias=bias)
    x = random((2, 3, 2, 2))
    params = dense_params(op, (3, 2, 2), attrs)
    output, _ = op.forward([x], params, attrs, context())
    expected = x.reshape(2, 12) @ params["weight"].T + (params["bias"] if bias else 0)
    assert np.allclose(output, expected)
    assert op.shape([(3, 2, 2)], attrs) == output.shape[1:] == (4,)


def test_dense_cost_and_receptive_field(attrs_for):
    attrs = attrs_for(Dense, units=10)
    assert Dense().macs([(3, 4, 4)], (10,), attrs) == 48 * 10
    assert Dense().receptive_field([(3, 4, 4)], attrs) == GLOBAL


@pytest.mark.parametrize("input_shape, bias", [((6,), True), ((2, 3, 3), True), ((5,), False)])
def test_dense_gradients(input_shape, bias, attrs_for, check_gradients):
    op, attrs = Dense(), attrs_for(Dense, units=3, bias=bias)
    params = dense_params(op, input_shape, attrs)
    errors = check_gradients(op, [random((4,) + input_shape)], params, attrs)
    assert set(errors) == {"input 1", "weight"} | ({"bias"} if bias else set())


def test_dense_skips_what_is_not_wanted(attrs_for, context):
    op, attrs = Dense(), attrs_for(Dense, units=3)
    params = dense_params(op, (4,), attrs)
    output, saved = op.forward([random((2, 4))], params, attrs, context())
    frozen = op.backward(output, saved, params, attrs, context(needs_param_grad=False))
    assert frozen[0][0].shape == (2, 4) and frozen[1] == {}
    first_layer = op.backward(output, saved, params, attrs, context(needs_input_grad=(False,)))
    assert first_layer[0] == [None] and set(first_layer[1]) == {"weight", "bias"}


def test_float32_stays_float32(attrs_for, context):
    op, attrs = Dense(), attrs_for(Dense, units=3)
    params = dense_params(op, (2, 2, 2), attrs, dtype=np.float32)
    x = random((2, 2, 2, 2), dtype=np.float32)
    output, saved = op.forward([x], params, attrs, context(dtype=np.float32))
    (grad,), param_grads = op.backward(np.ones_like(output), saved, params, attrs,
                                       context(dtype=np.float32))
    assert output.dtype == grad.dtype == np.float32
    assert all(g.dtype == np.float32 for g in param_grads.values())
    flat, _ = Flatten().forward([x], {}, attrs_for(Flatten), context())
    assert flat.dtype == np.float32


def test_docstrings_state_the_cost():
    assert Flatten.doc() and "MACs: 0" in Flatten.__doc__
    assert Dense.doc() and "MACs: in_features·units" in Dense.__doc__
