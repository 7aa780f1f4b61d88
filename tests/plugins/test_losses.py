"""mse_loss and softmax_cross_entropy: hand examples, gradients, stability, errors."""
import numpy as np
import pytest

from graphnet.errors import DataError, ShapeError
from graphnet.op import GLOBAL
from graphnet_plugins import losses
from graphnet_plugins.losses import MseLoss, SoftmaxCrossEntropy


def random(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def cross_entropy(logits, labels, attrs, context):
    return SoftmaxCrossEntropy().forward([logits, labels], {}, attrs, context())


def test_registers_both_losses(registered_ops):
    assert registered_ops(losses) == {"mse_loss", "softmax_cross_entropy"}


@pytest.mark.parametrize("op_class", [MseLoss, SoftmaxCrossEntropy])
def test_losses_are_scalar_global_and_free(op_class, attrs_for):
    shapes = [(4,), (4,)] if op_class is MseLoss else [(4,), ()]
    attrs = attrs_for(op_class)
    assert op_class.is_loss and op_class.arity == 2
    assert op_class().shape(shapes, attrs) == ()
    assert op_class().receptive_field(shapes, attrs) == GLOBAL
    assert op_class().macs(shapes, (), attrs) == 0
    assert op_class.doc() and "MACs: 0" in op_class.__doc__


# --- mse_loss --------------------------------------------------------------------------------
def test_mse_hand_example(attrs_for, context):
    loss, _ = MseLoss().forward([np.array([[1.0, 2.0]]), np.zeros((1, 2))], {},
                                attrs_for(MseLoss), context())
    assert loss.shape == () and loss == 2.5  # ½·(1 + 4)


def test_mse_sums_per_sample_and_averages_the_batch(attrs_for, context):
    outputs = np.array([[1.0, 2.0], [3.0, 0.0]])
    loss, _ = MseLoss().forward([outputs, np.zeros((2, 2))], {}, attrs_for(MseLoss), context())
    assert loss == pytest.approx((0.5 * 5 + 0.5 * 9) / 2)


@pytest.mark.parametrize("sample_shape", [(4,), (2, 3, 3)])
def test_mse_gradients_of_output_and_target(sample_shape, attrs_for, check_gradients):
    inputs = [random((3,) + sample_shape), random((3,) + sample_shape, 1)]
    errors = check_gradients(MseLoss(), inputs, {}, attrs_for(MseLoss))
    assert set(errors) == {"input 1", "input 2"}


def test_mse_gives_gradients_only_where_wanted(attrs_for, context):
    op, attrs = MseLoss(), attrs_for(MseLoss)
    loss, saved = op.forward([random((2, 3)), random((2, 3), 1)], {}, attrs, context())
    grads, _ = op.backward(np.array(1.0), saved, {}, attrs, context(needs_input_grad=(True, False)))
    assert grads[0].shape == (2, 3) and grads[1] is None


def test_mse_shape_mismatch(attrs_for):
    with pytest.raises(ShapeError) as raised:
        MseLoss().shape([(10,), (3, 4)], attrs_for(MseLoss))
    error = raised.value
    assert error.field == "inputs"
    assert "10" in error.expected and error.found == "3×4 at input 2"


def test_mse_float32_stays_float32_even_with_a_float64_seed(attrs_for, context):
    op, attrs = MseLoss(), attrs_for(MseLoss)
    inputs = [random((2, 3), 0, np.float32), random((2, 3), 1, np.float32)]
    loss, saved = op.forward(inputs, {}, attrs, context(dtype=np.float32))
    grads, _ = op.backward(np.float64(1.0), saved, {}, attrs, context(dtype=np.float32))
    assert loss.dtype == grads[0].dtype == grads[1].dtype == np.float32


# --- softmax_cross_entropy -------------------------------------------------------------------
def test_cross_entropy_matches_negative_log_softmax(attrs_for, context):
    logits = random((4, 5))
    labels = np.array([0, 4, 2, 2])
    loss, _ = cross_entropy(logits, labels, attrs_for(SoftmaxCrossEntropy), context)
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss.shape == ()
    assert loss == pytest.approx(-np.log(probabilities[np.arange(4), labels]).mean())


def test_cross_entropy_of_uniform_logits_is_log_k(attrs_for, context):
    loss, _ = cross_entropy(np.zeros((3, 10)), np.array([1, 5, 9]),
                            attrs_for(SoftmaxCrossEntropy), context)
    assert loss == pytest.approx(np.log(10))


def test_cross_entropy_gradient(attrs_for, check_gradients):
    inputs = [random((4, 6)), np.array([5, 0, 3, 3])]
    errors = check_gradients(SoftmaxCrossEntropy(), inputs, {}, attrs_for(SoftmaxCrossEntropy))
    assert set(errors) == {"input 1"}  # labels are integer data: no gradient


def test_cross_entropy_skips_the_logits_gradient_when_not_wanted(attrs_for, context):
    op, attrs = SoftmaxCrossEntropy(), attrs_for(SoftmaxCrossEntropy)
    loss, saved = op.forward([random((2, 3)), np.array([0, 1])], {}, attrs, context())
    assert op.backward(np.array(1.0), saved, {}, attrs,
                       context(needs_input_grad=(False, False))) == ([None, None], {})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_of_huge_logits_stays_finite(dtype, attrs_for, context):
    op, attrs = SoftmaxCrossEntropy(), attrs_for(SoftmaxCrossEntropy)
    logits = np.array([[1e4, -1e4, 0.0], [1e4, -1e4, 0.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, saved = op.forward([logits, np.array([0, 1])], {}, attrs, context(dtype=dtype))
        (grad, label_grad), _ = op.backward(np.array(1.0, dtype=dtype), saved, {}, attrs,
                                            context(dtype=dtype))
    assert loss.dtype == grad.dtype == dtype
    assert loss == pytest.approx((0 + 2e4) / 2)  # right class certain; wrong one 2e4 behind
    assert np.allclose(grad, [[0, 0, 0], [0.5, -0.5, 0]])
    assert label_grad is None


@pytest.mark.parametrize("bad_label", [3, -1])
def test_cross_entropy_rejects_labels_out_of_range(bad_label, attrs_for, context):
    with pytest.raises(DataError) as raised:
        cross_entropy(random((3, 3)), np.array([0, bad_label, 2]),
                      attrs_for(SoftmaxCrossEntropy), context)
    message = str(raised.value)
    assert str(bad_label) in message and "3 classes" in message and "[0, 3)" in message


def test_cross_entropy_rejects_float_labels(attrs_for, context):
    with pytest.raises(DataError, match="integer"):
        cross_entropy(random((2, 3)), np.array([0.0, 1.0]), attrs_for(SoftmaxCrossEntropy),
                      context)


@pytest.mark.parametrize("shapes, found", [([(3, 4), ()], "3×4 at input 1"),
                                           ([(), ()], "scalar at input 1"),
                                           ([(10,), (1,)], "1 at input 2"),
                                           ([(10,), (10,)], "10 at input 2")],
                         ids=["logits-2d", "logits-scalar", "labels-1", "labels-10"])
def test_cross_entropy_shape_errors(shapes, found, attrs_for):
    with pytest.raises(ShapeError) as raised:
        SoftmaxCrossEntropy().shape(shapes, attrs_for(SoftmaxCrossEntropy))
    assert (raised.value.field, raised.value.found) == ("inputs", found)
    assert raised.value.expected


def test_cross_entropy_labels_are_integer_data():
    assert SoftmaxCrossEntropy.integer_inputs == (1,)
