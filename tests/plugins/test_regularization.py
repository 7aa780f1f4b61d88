"""dropout and batch_norm: training and evaluation behaviour, running statistics, gradients."""
import numpy as np
import pytest

from graphnet.errors import ShapeError, SpecError
from graphnet.op import POINTWISE
from graphnet_plugins import regularization
from graphnet_plugins.regularization import BatchNorm, Dropout


def random(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_registers_dropout_and_batch_norm(registered_ops):
    assert registered_ops(regularization) == {"dropout", "batch_norm"}


# --- dropout ---------------------------------------------------------------------------------
def test_dropout_is_the_identity_outside_training(attrs_for, context):
    x = random((2, 3, 4, 4))
    output, _ = Dropout().forward([x], {}, attrs_for(Dropout, rate=0.5), context())
    assert np.array_equal(output, x)


def test_dropout_training_uses_the_run_generator(attrs_for, context):
    x = random((4, 3, 5, 5))
    output, _ = Dropout().forward([x], {}, attrs_for(Dropout, rate=0.25),
                                  context(training=True, seed=7))
    kept = np.random.default_rng(7).random(x.shape) >= 0.25
    assert np.allclose(output, np.where(kept, x / 0.75, 0))


def test_dropout_keeps_the_expected_value(attrs_for, context):
    x = np.ones((200, 500))
    output, _ = Dropout().forward([x], {}, attrs_for(Dropout, rate=0.3), context(training=True))
    assert abs((output == 0).mean() - 0.3) < 0.01
    assert abs(output.mean() - 1) < 0.01


def test_dropout_rate_zero_is_the_identity_while_training(attrs_for, context):
    x = random((2, 6))
    output, _ = Dropout().forward([x], {}, attrs_for(Dropout, rate=0.0), context(training=True))
    assert np.array_equal(output, x)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_dropout_gradients(training, attrs_for, check_gradients):
    check_gradients(Dropout(), [random((3, 2, 4, 4))], {}, attrs_for(Dropout, rate=0.4),
                    training=training, seed=3)


def test_dropout_rate_must_be_below_one(attrs_for):
    with pytest.raises(ShapeError) as raised:
        Dropout().shape([(3,)], attrs_for(Dropout, rate=1.0))
    assert (raised.value.field, raised.value.found) == ("rate", "1")
    with pytest.raises(SpecError):
        attrs_for(Dropout, rate=-0.1)


def test_dropout_shape_cost_and_dtype(attrs_for, context):
    op, attrs = Dropout(), attrs_for(Dropout, rate=0.5)
    x = random((2, 3, 4, 4), dtype=np.float32)
    output, saved = op.forward([x], {}, attrs, context(training=True, dtype=np.float32))
    (grad,), _ = op.backward(np.ones_like(output), saved, {}, attrs, context(dtype=np.float32))
    assert op.shape([(3, 4, 4)], attrs) == output.shape[1:]
    assert output.dtype == grad.dtype == np.float32
    assert op.receptive_field([(3, 4, 4)], attrs) == POINTWISE
    assert op.macs([(3, 4, 4)], (3, 4, 4), attrs) == 0


# --- batch_norm ------------------------------------------------------------------------------
def batch_norm_params(channels, seed=1, dtype=np.float64):
    """Weight and bias away from their 1/0 start, and running stats of a model mid-training."""
    rng = np.random.default_rng(seed)
    return {"weight": rng.uniform(0.5, 2, channels).astype(dtype),
            "bias": rng.standard_normal(channels).astype(dtype),
            "running_mean": rng.standard_normal(channels).astype(dtype),
            "running_var": rng.uniform(0.5, 2, channels).astype(dtype)}


@pytest.mark.parametrize("sample_shape", [(3, 4, 5), (6,)], ids=["channels", "features"])
def test_batch_norm_training_normalises_each_channel(sample_shape, attrs_for, context):
    op, attrs = BatchNorm(), attrs_for(BatchNorm)
    x = 3 + 2 * random((8,) + sample_shape)
    params = batch_norm_params(sample_shape[0])
    output, _ = op.forward([x], params, attrs, context(training=True))
    axes = (0,) + tuple(range(2, x.ndim))
    broadcast = (1, -1) + (1,) * (x.ndim - 2)
    reference = ((x - x.mean(axis=axes, keepdims=True))
                 / np.sqrt(x.var(axis=axes, keepdims=True) + 1e-5))
    expected = reference * params["weight"].reshape(broadcast) + params["bias"].reshape(broadcast)
    assert np.allclose(output, expected)
    assert op.shape([sample_shape], attrs) == output.shape[1:]


def test_batch_norm_running_stats_after_one_step(attrs_for, context):
    op, attrs = BatchNorm(), attrs_for(BatchNorm, momentum=0.1)
    x = random((4, 2, 3, 3)) * np.array([1.0, 5.0]).reshape(1, 2, 1, 1) + 2
    params = {"weight": np.ones(2), "bias": np.zeros(2),
              "running_mean": np.zeros(2), "running_var": np.ones(2)}
    op.forward([x], params, attrs, context(training=True))
    per_channel = x.transpose(1, 0, 2, 3).reshape(2, -1)  # 36 values per channel
    assert np.allclose(params["running_mean"], 0.9 * 0 + 0.1 * per_channel.mean(axis=1))
    assert np.allclose(params["running_var"], 0.9 * 1 + 0.1 * per_channel.var(axis=1, ddof=1))


def test_batch_norm_eval_uses_running_stats_and_leaves_them(attrs_for, context):
    op, attrs = BatchNorm(), attrs_for(BatchNorm, eps=1e-3)
    params = batch_norm_params(3)
    before = {name: array.copy() for name, array in params.items()}
    x = random((2, 3))
    output, _ = op.forward([x], params, attrs, context(training=False))
    expected = ((x - before["running_mean"]) / np.sqrt(before["running_var"] + 1e-3)
                * before["weight"] + before["bias"])
    assert np.allclose(output, expected)
    assert all(np.array_equal(params[name], before[name]) for name in params)


@pytest.mark.parametrize("sample_shape", [(3, 2, 3), (4,)], ids=["channels", "features"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_gradients(sample_shape, training, attrs_for, check_gradients):
    params = batch_norm_params(sample_shape[0])
    errors = check_gradients(BatchNorm(), [random((5,) + sample_shape)], params,
                             attrs_for(BatchNorm), training=training)
    assert set(errors) == {"input 1", "weight", "bias"}  # running stats are not trainable


def test_batch_norm_declares_trainable_affine_and_state(attrs_for):
    params = BatchNorm().params([(4, 5, 5)], attrs_for(BatchNorm))
    assert {name: (p.shape, p.init, p.trainable) for name, p in params.items()} == {
        "weight": ((4,), "ones", True), "bias": ((4,), "zeros", True),
        "running_mean": ((4,), "zeros", False), "running_var": ((4,), "ones", False)}


@pytest.mark.parametrize("bad_shape, found", [((4, 5), "4×5 (rank 2)"), ((), "scalar (rank 0)"),
                                              ((1, 2, 3, 4), "1×2×3×4 (rank 4)")],
                         ids=["rank-2", "rank-0", "rank-4"])
def test_batch_norm_rejects_other_ranks(bad_shape, found, attrs_for):
    with pytest.raises(ShapeError) as raised:
        BatchNorm().shape([bad_shape], attrs_for(BatchNorm))
    assert raised.value.field == "inputs"
    assert raised.value.found == found
    assert "rank 1" in raised.value.expected and "rank 3" in raised.value.expected


def test_batch_norm_cost_and_receptive_field(attrs_for):
    attrs = attrs_for(BatchNorm)
    assert BatchNorm().macs([(3, 4, 5)], (3, 4, 5), attrs) == 60
    assert BatchNorm().receptive_field([(3, 4, 5)], attrs) == POINTWISE


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_float32_stays_float32(training, attrs_for, context):
    op, attrs = BatchNorm(), attrs_for(BatchNorm)
    params = batch_norm_params(3, dtype=np.float32)
    x = random((4, 3, 2, 2), dtype=np.float32)
    output, saved = op.forward([x], params, attrs, context(training=training, dtype=np.float32))
    (grad,), param_grads = op.backward(np.ones_like(output), saved, params, attrs,
                                       context(dtype=np.float32))
    assert output.dtype == grad.dtype == np.float32
    assert all(g.dtype == np.float32 for g in param_grads.values())
    assert params["running_mean"].dtype == params["running_var"].dtype == np.float32


def test_batch_norm_skips_what_is_not_wanted(attrs_for, context):
    op, attrs = BatchNorm(), attrs_for(BatchNorm)
    params = batch_norm_params(3)
    output, saved = op.forward([random((4, 3))], params, attrs, context(training=True))
    assert op.backward(output, saved, params, attrs, context(needs_param_grad=False))[1] == {}
    assert op.backward(output, saved, params, attrs,
                       context(needs_input_grad=(False,)))[0] == [None]


def test_docstrings_state_the_cost():
    assert Dropout.doc() and "MACs: 0" in Dropout.__doc__
    assert BatchNorm.doc() and "MACs: one multiply-add per element" in BatchNorm.__doc__


# --- batch_norm's passes over memory (graphnet_plugins._batch_norm) --------------------------
def laid_out(x, layout):
    """``x`` with the memory layout a batch norm meets: a conv's channels-last view, the same
    cut from a larger grid (a tap conv computes one extra row and column per image), a plain
    NCHW array, or none of them (Fortran order)."""
    if layout == "channels-last":
        return np.ascontiguousarray(np.moveaxis(x, 1, -1)).transpose(0, 3, 1, 2)
    if layout == "cut-grid":
        n, c, h, w = x.shape
        grid = np.full((n, h + 1, w + 1, c), np.nan, x.dtype)
        grid[:, :h, :w] = np.moveaxis(x, 1, -1)
        return grid[:, :h, :w].transpose(0, 3, 1, 2)
    return np.asfortranarray(x) if layout == "other" else x


LAYOUTS = ["channels-last", "cut-grid", "channels-first", "other"]


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of a few hundred bytes, so that small test batches take many tiles."""
    from graphnet_plugins import _batch_norm
    monkeypatch.setattr(_batch_norm, "TILE_BYTES", 256)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batch_norm_gradients_in_every_layout_over_many_tiles(layout, training, small_tiles,
                                                              attrs_for, check_gradients):
    x = laid_out(random((5, 3, 4, 3), seed=4) * 3 + 1, layout)
    check_gradients(BatchNorm(), [x], batch_norm_params(3), attrs_for(BatchNorm),
                    training=training)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_batch_norm_keeps_the_layout_and_any_thread_count_gives_the_same_bits(
        layout, small_tiles, attrs_for, context):
    """The next conv reads a channels-last output without a copy; tiles are summed in their
    order, so two threads give what one gives."""
    from graphnet import parallel
    x = laid_out(random((6, 5, 4, 4), seed=2, dtype=np.float32) * 4 + 3, layout)
    grad = random(x.shape, seed=3, dtype=np.float32)
    results = []
    for threads in (1, 2):
        parallel.set_num_threads(threads)
        try:
            params = batch_norm_params(5, dtype=np.float32)
            output, saved = BatchNorm().forward([x], params, attrs_for(BatchNorm),
                                                context(training=True, dtype=np.float32))
            (grad_input,), param_grads = BatchNorm().backward(
                grad, saved, params, attrs_for(BatchNorm), context(dtype=np.float32))
        finally:
            parallel.set_num_threads(None)
        results.append([output, grad_input, *param_grads.values(), params["running_var"]])
        if layout == "channels-last":
            assert output.strides == x.strides and grad_input.strides == x.strides
        if layout == "cut-grid":  # channels-last, with no gaps
            assert np.moveaxis(output, 1, -1).flags.c_contiguous
            assert np.moveaxis(grad_input, 1, -1).flags.c_contiguous
    for one, two in zip(*results):
        assert np.array_equal(one, two)


@pytest.mark.parametrize("relu", [False, True], ids=["alone", "with-relu"])
def test_batch_norm_gives_the_same_results_in_every_layout(relu, small_tiles, attrs_for,
                                                          context):
    """The layouts sum in different orders, so float64 agrees to rounding; a cut grid is read
    in place, never copied."""
    from graphnet_plugins import _batch_norm
    from graphnet_plugins.activations import RELU_EPILOGUE
    epilogue = RELU_EPILOGUE if relu else None
    x = random((5, 3, 4, 6), seed=8) * 2 - 1
    grad = random(x.shape, seed=9)
    results = {}
    for layout in LAYOUTS:
        params = batch_norm_params(3)
        laid = laid_out(x, layout)
        output, saved = BatchNorm().forward_with_epilogue(
            [laid], params, attrs_for(BatchNorm), context(training=True), epilogue)
        (grad_input,), param_grads = BatchNorm().backward_with_epilogue(
            laid_out(grad, layout), saved, params, attrs_for(BatchNorm), context(), epilogue)
        results[layout] = [output, grad_input, *param_grads.values(), params["running_var"]]
    for layout in LAYOUTS[1:]:
        for one, two in zip(results[LAYOUTS[0]], results[layout], strict=True):
            np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-13)
    laid = laid_out(x, "cut-grid")
    layout, _, view = _batch_norm.viewed(laid)
    assert layout.channels_last and np.shares_memory(view, laid)


def test_batch_norm_statistics_hold_far_from_zero(attrs_for, context):
    """A mean 10⁴ standard deviations from zero: the variance of each tile is taken about its
    own mean, so no large sum of squares cancels in float32."""
    x = laid_out((1e4 + random((16, 2, 16, 16), seed=5)).astype(np.float32), "channels-last")
    params = batch_norm_params(2, dtype=np.float32)
    BatchNorm().forward([x], params, attrs_for(BatchNorm, momentum=1.0),
                        context(training=True, dtype=np.float32))
    exact = x.astype(np.float64).var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(params["running_var"], exact, rtol=1e-3)




def backward_in(dtype, x, grad, *, mean, inv_std, weight):
    """batch norm's backward kernel on ``x`` and ``grad`` cast to ``dtype``, given statistics."""
    from graphnet_plugins import _batch_norm
    layout, _, view = _batch_norm.viewed(x.astype(dtype))
    return _batch_norm.backward(layout, view, grad.astype(dtype), mean=mean, inv_std=inv_std,
                                weight=weight.astype(dtype), used_batch_stats=True,
                                input_grad=True, sums=True)


def test_batch_norm_input_gradient_holds_far_from_zero():
    """A mean 100 standard deviations from zero and a gradient along x̂, as a loss gives: the
    input's share, slope·(x − centre), rounds only values of its own size. Measured 2.8e-7 of
    the largest gradient (the share as x·slope + a constant: 9.6e-7)."""
    x = laid_out((100 + random((16, 4, 16, 16), seed=6)).astype(np.float32), "channels-last")
    grad = (random(x.shape, seed=7) + 0.5 * (x - 100)).astype(np.float32)
    wide = x.astype(np.float64)  # the same statistics for both: only the backward differs
    statistics = dict(mean=wide.mean(axis=(0, 2, 3)),
                      inv_std=1 / np.sqrt(wide.var(axis=(0, 2, 3)) + 1e-5),
                      weight=batch_norm_params(4)["weight"])
    single, *_ = backward_in(np.float32, x, grad, **statistics)
    double, *_ = backward_in(np.float64, x, grad, **statistics)
    np.testing.assert_allclose(single, double, rtol=0, atol=6e-7 * np.abs(double).max())


def test_batch_norm_input_gradient_with_no_share_along_the_normalised_input():
    """Σg·x̂ = 0 exactly (x is ±1 about a zero mean, g is 1): the slope is zero and the
    offset is not, so the centre the offset folds into is taken with a tiny slope instead."""
    x = np.ones((4, 2, 4, 4))
    x[:, :, 2:] = -1
    x = laid_out(x, "channels-last")
    statistics = dict(mean=np.zeros(2), inv_std=np.ones(2), weight=np.ones(2))
    for dtype in (np.float32, np.float64):
        grad_input, grad_sum, grad_dot_normalised = backward_in(dtype, x, np.ones_like(x),
                                                                **statistics)
        assert np.all(grad_dot_normalised == 0) and np.all(grad_sum == 64)
        np.testing.assert_allclose(grad_input, 0, atol=1e-6)
