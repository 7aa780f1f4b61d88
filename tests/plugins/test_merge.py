"""add and concat: values, shape rules and errors, gradients (a node given twice included)."""
import numpy as np
import pytest

from graphnet.errors import ShapeError
from graphnet.op import POINTWISE
from graphnet_plugins import merge
from graphnet_plugins.merge import Add, Concat


def random(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_registers_add_and_concat(registered_ops):
    assert registered_ops(merge) == {"add", "concat"}


# --- add -------------------------------------------------------------------------------------
@pytest.mark.parametrize("input_count", [2, 3])
def test_add_sums_its_inputs(input_count, attrs_for, context):
    inputs = [random((2, 3, 4, 4), seed) for seed in range(input_count)]
    copies = [x.copy() for x in inputs]
    output, _ = Add().forward(inputs, {}, attrs_for(Add), context())
    assert np.allclose(output, sum(copies))
    assert all(np.array_equal(x, copy) for x, copy in zip(inputs, copies)), "inputs unchanged"
    assert Add().shape([(3, 4, 4)] * input_count, attrs_for(Add)) == output.shape[1:]


def test_add_of_a_node_with_itself(attrs_for, context, check_gradients):
    x = random((2, 5))
    output, saved = Add().forward([x, x], {}, attrs_for(Add), context())
    assert np.allclose(output, 2 * x)
    grads, _ = Add().backward(np.ones_like(x), saved, {}, attrs_for(Add), context())
    assert len(grads) == 2  # one per position; the engine sums them into x's gradient
    errors = check_gradients(Add(), [x, x], {}, attrs_for(Add))
    assert set(errors) == {"input 1"}  # checked against the sum of both positions


def test_add_gradients_of_three_inputs(attrs_for, check_gradients):
    inputs = [random((2, 3, 2, 2), seed) for seed in range(3)]
    errors = check_gradients(Add(), inputs, {}, attrs_for(Add))
    assert set(errors) == {"input 1", "input 2", "input 3"}


def test_add_gives_gradients_only_where_wanted(attrs_for, context):
    grad_output = random((2, 3))
    _, saved = Add().forward([random((2, 3), seed) for seed in range(3)], {}, attrs_for(Add),
                             context())
    grads, params = Add().backward(grad_output, saved, {}, attrs_for(Add),
                                   context(needs_input_grad=(True, False, True)))
    assert grads[1] is None and params == {}
    assert np.array_equal(grads[0], grad_output) and np.array_equal(grads[2], grad_output)


def test_add_names_the_mismatched_input(attrs_for):
    with pytest.raises(ShapeError) as raised:
        Add().shape([(3, 8, 8), (3, 8, 8), (3, 4, 4)], attrs_for(Add))
    error = raised.value
    assert error.field == "inputs"
    assert error.expected == "every input of shape 3×8×8 (like input 1)"
    assert error.found == "3×4×4 at input 3"


def test_add_float32_stays_float32(attrs_for, context):
    inputs = [random((2, 4), seed, np.float32) for seed in range(3)]
    output, _ = Add().forward(inputs, {}, attrs_for(Add), context(dtype=np.float32))
    assert output.dtype == np.float32


def cut_grid(x):
    """``x`` as a tap conv hands it on: channels-last, cut from a grid one row and column
    larger (the gap holds NaN, so reading it would show)."""
    n, c, h, w = x.shape
    grid = np.full((n, h + 1, w + 1, c), np.nan, x.dtype)
    grid[:, :h, :w] = np.moveaxis(x, 1, -1)
    return grid[:, :h, :w].transpose(0, 3, 1, 2)


def channels_last(x):
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("layouts", [(channels_last, channels_last), (cut_grid, channels_last),
                                     (channels_last, cut_grid), (np.asarray, channels_last)],
                         ids=["channels-last", "cut-grid-first", "cut-grid-second", "mixed"])
def test_add_with_its_relu_gives_the_same_bits_in_every_layout(layouts, attrs_for, context):
    """A residual sum meets channels-last conv outputs, some cut from a larger grid: the
    values never depend on the layout, and the output keeps the first input's channels-last
    order so the conv after it reads it without a copy."""
    from graphnet_plugins.activations import RELU_EPILOGUE
    terms = [random((3, 4, 5, 6), seed, np.float32) for seed in (1, 2)]
    grad = random((3, 4, 5, 6), 3, np.float32)
    expected = np.maximum(terms[0] + terms[1], 0)
    laid = [layout(term) for layout, term in zip(layouts, terms)]
    output, saved = Add().forward_with_epilogue(laid, {}, attrs_for(Add),
                                                context(dtype=np.float32), RELU_EPILOGUE)
    grads, _ = Add().backward_with_epilogue(grad, saved, {}, attrs_for(Add),
                                            context(dtype=np.float32), RELU_EPILOGUE)
    assert np.array_equal(output, expected)
    assert all(np.array_equal(g, grad * (expected > 0)) for g in grads)
    if layouts[0] is not np.asarray:
        assert np.moveaxis(output, 1, -1).flags.c_contiguous


# --- concat ----------------------------------------------------------------------------------
def test_concat_stacks_channels(attrs_for, context):
    inputs = [random((2, channels, 3, 3), channels) for channels in (1, 2, 4)]
    output, _ = Concat().forward(inputs, {}, attrs_for(Concat), context())
    assert np.array_equal(output, np.concatenate(inputs, axis=1))
    assert Concat().shape([(1, 3, 3), (2, 3, 3), (4, 3, 3)], attrs_for(Concat)) \
        == output.shape[1:] == (7, 3, 3)


def test_concat_of_feature_vectors(attrs_for, context):
    inputs = [random((2, 3)), random((2, 5), 1)]
    output, _ = Concat().forward(inputs, {}, attrs_for(Concat), context())
    assert Concat().shape([(3,), (5,)], attrs_for(Concat)) == output.shape[1:] == (8,)


def test_concat_gradients_of_three_inputs(attrs_for, check_gradients):
    inputs = [random((2, channels, 2, 3), channels) for channels in (2, 1, 3)]
    errors = check_gradients(Concat(), inputs, {}, attrs_for(Concat))
    assert set(errors) == {"input 1", "input 2", "input 3"}


def test_concat_gives_gradients_only_where_wanted(attrs_for, context):
    inputs = [random((2, 2, 3)), random((2, 1, 3), 1)]
    output, saved = Concat().forward(inputs, {}, attrs_for(Concat), context())
    grads, _ = Concat().backward(output, saved, {}, attrs_for(Concat),
                                 context(needs_input_grad=(False, True)))
    assert grads[0] is None and np.array_equal(grads[1], inputs[1])


@pytest.mark.parametrize("second, found", [((2, 4, 4), "2×4×4 at input 2"),
                                           ((2, 8), "2×8 at input 2"),
                                           ((), "scalar at input 2")],
                         ids=["spatial", "rank", "scalar"])
def test_concat_names_the_mismatched_input(second, found, attrs_for):
    with pytest.raises(ShapeError) as raised:
        Concat().shape([(3, 8, 8), second], attrs_for(Concat))
    error = raised.value
    assert error.field == "inputs"
    assert error.expected.startswith("every input of shape *×8×8 (like input 1")
    assert error.found == found


def test_concat_needs_a_channel_axis(attrs_for):
    with pytest.raises(ShapeError) as raised:
        Concat().shape([(), ()], attrs_for(Concat))
    assert (raised.value.field, raised.value.found) == ("inputs", "scalar at input 1")


def test_concat_float32_stays_float32(attrs_for, context):
    inputs = [random((2, 2), 0, np.float32), random((2, 3), 1, np.float32)]
    output, saved = Concat().forward(inputs, {}, attrs_for(Concat), context(dtype=np.float32))
    grads, _ = Concat().backward(output, saved, {}, attrs_for(Concat), context())
    assert output.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)


@pytest.mark.parametrize("op_class", [Add, Concat])
def test_merges_are_pointwise_and_free(op_class, attrs_for):
    attrs = attrs_for(op_class)
    assert op_class.arity_range() == (2, None)
    assert op_class().receptive_field([(3, 4, 4)] * 2, attrs) == POINTWISE
    assert op_class().macs([(3, 4, 4)] * 2, (3, 4, 4), attrs) == 0
    assert op_class.doc() and "MACs: 0" in op_class.__doc__

