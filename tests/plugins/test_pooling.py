"""max_pool2d, avg_pool2d, global_avg_pool: values against naive loops, gradients against central
differences, PyTorch's padding rules, shape errors, costs and receptive fields."""
from types import SimpleNamespace

import numpy as np
import pytest

from graphnet.errors import ShapeError, SpecError
from graphnet.op import GLOBAL, Window
from graphnet_plugins import pooling
from graphnet_plugins._window import SlidingWindow
from graphnet_plugins.pooling import AvgPool2d, GlobalAvgPool, MaxPool2d, counts_padding


def make_attrs(op_class, **raw):
    """Attrs as a spec node gets them: the raw values merged over the defaults, each parsed.
    A None default (stride: "the kernel size") is kept as it is: there is nothing to parse."""
    merged = {name: attr.default for name, attr in op_class.attrs.items() if not attr.required}
    merged.update(raw)
    return SimpleNamespace(**{
        name: value if value is None else op_class.attrs[name].parse(value, name)
        for name, value in merged.items()})


def random(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def naive_pool(x, attrs, reduce):
    """Pool one window at a time (loops are fine in tests), from the definition: window (i, j)
    has the taps (i·stride + a·dilation − top, j·stride + b·dilation − left) in image
    coordinates. Max takes the largest tap in the image (padding is −inf); average sums the
    taps in the image and divides by those inside the padded input (PyTorch's and ONNX's
    count_include_pad) or inside the image only (TensorFlow's "same"), as
    ``count_include_pad`` resolves. Taps past the end padding (ceil_mode) count nowhere."""
    batch, channels, height, width = x.shape
    window = SlidingWindow.of(x.shape[1:], attrs)  # pads and output size: see test_window
    top, bottom, left, right = window.pads
    (kernel_h, kernel_w), (stride_h, stride_w) = window.kernel, window.stride
    dilation_h, dilation_w = window.dilation
    include_padding = reduce == "avg" and counts_padding(attrs)
    output = np.zeros((batch, channels, *window.output_hw))
    for i in range(window.output_hw[0]):
        for j in range(window.output_hw[1]):
            in_image, in_padding = [], 0
            for a in range(kernel_h):
                for b in range(kernel_w):
                    row = i * stride_h + a * dilation_h - top
                    col = j * stride_w + b * dilation_w - left
                    if 0 <= row < height and 0 <= col < width:
                        in_image.append((row, col))
                    elif -top <= row < height + bottom and -left <= col < width + right:
                        in_padding += 1
            values = np.stack([x[:, :, row, col] for row, col in in_image], axis=-1)
            if reduce == "max":
                output[:, :, i, j] = values.max(axis=-1)
            else:
                divisor = len(in_image) + (in_padding if include_padding else 0)
                output[:, :, i, j] = values.sum(axis=-1) / divisor
    return output


# (per-sample input shape, raw attributes): each row changes the windows somewhere.
CASES = {
    "2x2-tiling": ((2, 6, 8), {"kernel": 2}),
    "3x3-stride2-pad1": ((2, 7, 9), {"kernel": 3, "stride": 2, "padding": 1}),
    "rect-kernel-same-asymmetric": ((2, 7, 8), {"kernel": [2, 3], "padding": "same"}),
    "same-stride2": ((1, 5, 6), {"kernel": 3, "stride": 2, "padding": "same"}),
    "stride-pair-pad-pair": ((2, 5, 7), {"kernel": 3, "stride": [1, 2], "padding": [1, 0]}),
    "overlapping-stride1": ((2, 5, 6), {"kernel": 2, "stride": 1}),
    "leftover-row-and-column": ((2, 7, 5), {"kernel": 2, "padding": "valid"}),
    "gaps-stride3": ((1, 8, 7), {"kernel": 2, "stride": 3}),
    "pad-half-of-even-kernel": ((2, 6, 6), {"kernel": [4, 2], "padding": [2, 1]}),
    "same-stride1-odd": ((2, 5, 6), {"kernel": [3, 2], "stride": 1, "padding": "same"}),
    # ONNX's four sides [top, left, bottom, right], ceil_mode and dilation
    "four-sides": ((2, 7, 8), {"kernel": 3, "stride": 2, "padding": [1, 0, 0, 1]}),
    "ceil-overhang": ((2, 7, 8), {"kernel": 2, "ceil_mode": True}),
    "ceil-padded": ((2, 6, 7), {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    "ceil-drops-window-in-padding": ((2, 4, 6), {"kernel": 2, "padding": [0, 0, 1, 1],
                                                 "ceil_mode": True}),
    "dilation2": ((2, 7, 8), {"kernel": 2, "stride": 1, "dilation": 2}),
    "dilated-ceil-four-sides": ((2, 8, 9), {"kernel": 3, "stride": 2, "dilation": [2, 1],
                                            "padding": [1, 1, 0, 1], "ceil_mode": True}),
    # wider than PyTorch's layers take (half the kernel), as ONNX allows
    "pad-beyond-half-kernel": ((2, 5, 6), {"kernel": 3, "padding": 2}),
    "pad-beyond-half-ceil": ((2, 6, 5), {"kernel": 3, "stride": 2, "padding": [2, 0, 1, 2],
                                         "ceil_mode": True}),
}
AVG_ONLY_CASES = {  # count_include_pad overriding either default
    "explicit-excluding-pad": ((2, 7, 6), {"kernel": 3, "stride": 2, "padding": 1,
                                           "count_include_pad": False}),
    "same-including-pad": ((2, 5, 6), {"kernel": 3, "stride": 2, "padding": "same",
                                       "count_include_pad": True}),
    "ceil-excluding-pad": ((2, 6, 7), {"kernel": 3, "stride": 2, "padding": 1,
                                       "ceil_mode": True, "count_include_pad": False}),
    "four-sides-ceil-excluding-pad": ((2, 7, 6), {"kernel": 3, "stride": 2,
                                                  "padding": [0, 1, 1, 0], "ceil_mode": True,
                                                  "count_include_pad": False}),
    "dilated-excluding-pad": ((2, 7, 8), {"kernel": 2, "stride": 2, "padding": 1,
                                          "dilation": 2, "count_include_pad": False}),
    "beyond-half-kernel-excluding-pad": ((2, 5, 6), {"kernel": 3, "padding": 2,
                                                     "count_include_pad": False}),
}
POOLS = {"max": MaxPool2d, "avg": AvgPool2d}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    return CASES[request.param]


@pytest.fixture(params=list(AVG_ONLY_CASES), ids=list(AVG_ONLY_CASES))
def avg_case(request):
    return AVG_ONLY_CASES[request.param]


def test_registers_every_pool(registered_ops):
    assert registered_ops(pooling) == {"max_pool2d", "avg_pool2d", "global_avg_pool"}


@pytest.mark.parametrize("reduce", list(POOLS))
def test_forward_equals_naive_loop_and_shape_inference(reduce, case, context):
    input_shape, raw = case
    op_class = POOLS[reduce]
    attrs = make_attrs(op_class, **raw)
    x = random((2, *input_shape))
    output, _ = op_class().forward([x], {}, attrs, context())
    expected = naive_pool(x, attrs, reduce)
    assert output.shape == expected.shape
    assert np.allclose(output, expected, rtol=1e-12, atol=1e-12)
    assert op_class().shape([input_shape], attrs) == output.shape[1:]


@pytest.mark.parametrize("reduce", list(POOLS))
def test_gradients_equal_central_differences(reduce, case, check_gradients):
    input_shape, raw = case
    op_class = POOLS[reduce]
    check_gradients(op_class(), [random((2, *input_shape))], {}, make_attrs(op_class, **raw))


@pytest.mark.parametrize("raw", [{"kernel": 2}, {"kernel": 2, "stride": 1},
                                 {"kernel": 3, "stride": 2, "padding": 1}],
                         ids=["tiling", "overlapping", "padded"])
def test_max_pool_gradient_goes_to_the_first_maximum_only(raw, context):
    """Ties are common after ReLU; PyTorch routes each window's gradient to its first maximum."""
    attrs = make_attrs(MaxPool2d, **raw)
    x = np.zeros((1, 1, 4, 4))
    output, saved = MaxPool2d().forward([x], {}, attrs, context())
    (grad,), _ = MaxPool2d().backward(np.ones_like(output), saved, {}, attrs, context())
    expected = np.zeros_like(x)
    stride = attrs.stride or attrs.kernel
    top = -raw.get("padding", 0)
    for i in range(output.shape[2]):
        for j in range(output.shape[3]):
            # the first in-image position of the window, row-major
            row, col = max(i * stride[0] + top, 0), max(j * stride[1] + top, 0)
            expected[0, 0, row, col] += 1
    assert np.array_equal(grad, expected)
    assert grad.sum() == output.size


def test_average_pool_options_equal_naive_loop_and_central_differences(avg_case, context,
                                                                       check_gradients):
    input_shape, raw = avg_case
    attrs = make_attrs(AvgPool2d, **raw)
    x = random((2, *input_shape))
    output, _ = AvgPool2d().forward([x], {}, attrs, context())
    assert np.allclose(output, naive_pool(x, attrs, "avg"), rtol=1e-12, atol=1e-12)
    check_gradients(AvgPool2d(), [x], {}, attrs)


def test_average_pool_with_same_padding_divides_by_real_pixels_as_tensorflow():
    """TensorFlow's (and ONNX's default) "same" average: a constant image stays constant at
    the border; 3×3 windows over a 3×4 ramp, worked by hand."""
    attrs = make_attrs(AvgPool2d, kernel=3, stride=1, padding="same")
    output, _ = AvgPool2d().forward([np.ones((1, 1, 5, 4))], {}, attrs, None)
    assert np.allclose(output, 1.0)
    ramp = np.arange(12.0).reshape(1, 1, 3, 4)
    output, _ = AvgPool2d().forward([ramp], {}, attrs, None)
    # top-left window covers rows 0-1, cols 0-1: (0 + 1 + 4 + 5) / 4
    assert output[0, 0, 0, 0] == pytest.approx(10 / 4)
    # top edge, second column: rows 0-1, cols 0-2: (0+1+2+4+5+6) / 6
    assert output[0, 0, 0, 1] == pytest.approx(18 / 6)
    assert output[0, 0, 1, 1] == pytest.approx(ramp[0, 0, :, :3].mean())


def test_same_padding_divisor_reaches_a_user_through_a_spec(tmp_path):
    import graphnet
    spec = {"graph": {"name": "smooth"}, "inputs": {"image": {"shape": [1, 6, 6]}},
            "nodes": [{"name": "blur", "op": "avg_pool2d", "kernel": 3, "stride": 1,
                       "padding": "same"},
                      {"name": "blur_pytorch", "op": "avg_pool2d", "inputs": ["image"],
                       "kernel": 3, "stride": 1, "padding": "same", "count_include_pad": True}],
            "outputs": {"blur": "blur", "blur_pytorch": "blur_pytorch"}}
    network = graphnet.Network(graphnet.load(spec), seed=0)
    outputs = network.forward({"image": np.ones((1, 1, 6, 6), np.float32)})
    assert np.allclose(outputs["blur"], 1.0)
    assert outputs["blur_pytorch"][0, 0, 0, 0] == pytest.approx(4 / 9)


def test_average_pool_counts_padded_zeros():
    attrs = make_attrs(AvgPool2d, kernel=3, stride=1, padding=1)
    output, _ = AvgPool2d().forward([np.ones((1, 1, 3, 3))], {}, attrs, None)
    assert np.allclose(output[0, 0], [[4 / 9, 6 / 9, 4 / 9], [6 / 9, 1, 6 / 9],
                                      [4 / 9, 6 / 9, 4 / 9]])


def test_max_pool_pads_with_minus_infinity():
    attrs = make_attrs(MaxPool2d, kernel=2, padding=1)
    output, _ = MaxPool2d().forward([-np.ones((1, 1, 2, 2))], {}, attrs, None)
    assert np.array_equal(output, -np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("reduce", list(POOLS))
def test_any_input_memory_layout_gives_the_same_output(reduce, context):
    attrs = make_attrs(POOLS[reduce], kernel=3, stride=2, padding=1)
    x = random((2, 3, 7, 6))
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    expected, saved = POOLS[reduce]().forward([x], {}, attrs, context())
    output, saved_channels_last = POOLS[reduce]().forward([channels_last], {}, attrs, context())
    assert np.array_equal(output, expected)
    grad_output = random(expected.shape, seed=4)
    (grad,), _ = POOLS[reduce]().backward(grad_output, saved, {}, attrs, context())
    (grad_channels_last,), _ = POOLS[reduce]().backward(grad_output, saved_channels_last, {},
                                                        attrs, context())
    assert np.array_equal(grad, grad_channels_last)


# --- what backward is asked for, dtypes ------------------------------------------------------
@pytest.mark.parametrize("op_class, raw", [(MaxPool2d, {"kernel": 2}),
                                           (AvgPool2d, {"kernel": 2}), (GlobalAvgPool, {})],
                         ids=["max", "avg", "global"])
def test_skips_the_input_gradient_when_not_needed(op_class, raw, context):
    attrs = make_attrs(op_class, **raw)
    output, saved = op_class().forward([random((2, 3, 4, 4))], {}, attrs, context())
    assert op_class().backward(np.ones_like(output), saved, {}, attrs,
                               context(needs_input_grad=(False,))) == ([None], {})


@pytest.mark.parametrize("op_class, raw", [
    (MaxPool2d, {"kernel": 2}), (MaxPool2d, {"kernel": 3, "stride": 2, "padding": 1}),
    (AvgPool2d, {"kernel": 2}), (AvgPool2d, {"kernel": 3, "stride": 1, "padding": "same"}),
    (GlobalAvgPool, {})], ids=["max-tiling", "max-padded", "avg-tiling", "avg-same", "global"])
def test_float32_stays_float32(op_class, raw, context):
    attrs = make_attrs(op_class, **raw)
    x = random((2, 3, 6, 6), dtype=np.float32)
    output, saved = op_class().forward([x], {}, attrs, context(dtype=np.float32))
    (grad,), _ = op_class().backward(np.ones_like(output), saved, {}, attrs,
                                     context(dtype=np.float32))
    assert output.dtype == grad.dtype == np.float32
    assert grad.shape == x.shape


# --- global average pooling ------------------------------------------------------------------
def test_global_avg_pool_averages_each_channel(context):
    x = random((2, 3, 4, 5))
    output, _ = GlobalAvgPool().forward([x], {}, SimpleNamespace(), context())
    assert np.allclose(output, x.mean(axis=(2, 3)))
    assert GlobalAvgPool().shape([(3, 4, 5)], SimpleNamespace()) == output.shape[1:] == (3,)


def test_global_avg_pool_gradient(check_gradients):
    check_gradients(GlobalAvgPool(), [random((2, 3, 4, 5))], {}, SimpleNamespace())


@pytest.mark.parametrize("layout", ["channels-first", "channels-last", "strided", "cut grid"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_global_avg_pool_averages_any_memory_layout(layout, dtype, context):
    """The means come from a product where the memory is one block per sample, from numpy's
    mean where it is not (every other row; a conv's output cut from a larger grid)."""
    whole = random((3, 5, 9, 8), dtype=dtype)
    x = {"channels-first": whole[:, :, :4, :6].copy(),
         "channels-last": np.ascontiguousarray(whole[:, :, :4, :6].transpose(0, 2, 3, 1))
                            .transpose(0, 3, 1, 2),
         "strided": whole[:, :, ::2, :6],
         "cut grid": np.ascontiguousarray(whole.transpose(0, 2, 3, 1))[:, :4, :6]
                       .transpose(0, 3, 1, 2)}[layout]
    output, saved = GlobalAvgPool().forward([x], {}, SimpleNamespace(), context(dtype=dtype))
    expected = x.astype(np.float64).mean(axis=(2, 3))
    assert output.dtype == dtype and output.shape == (3, 5)
    assert np.allclose(output, expected, rtol=1e-6 if dtype == np.float32 else 1e-13)
    grad_output = random((3, 5), seed=1, dtype=dtype)
    (grad,), _ = GlobalAvgPool().backward(grad_output, saved, {}, SimpleNamespace(),
                                          context(dtype=dtype))
    pixels = x.shape[2] * x.shape[3]
    assert np.allclose(grad, np.broadcast_to((grad_output / pixels)[:, :, None, None], x.shape),
                       rtol=1e-6 if dtype == np.float32 else 1e-15, atol=0)


def test_global_avg_pool_is_global_and_costs_every_element():
    assert GlobalAvgPool().receptive_field([(3, 4, 5)], SimpleNamespace()) == GLOBAL
    assert GlobalAvgPool().macs([(3, 4, 5)], (3,), SimpleNamespace()) == 3 * 4 * 5


def test_global_avg_pool_rejects_an_input_that_is_not_an_image():
    with pytest.raises(ShapeError) as error:
        GlobalAvgPool().shape([(12,)], SimpleNamespace())
    assert error.value.field == "inputs" and error.value.found == "12 (1-D)"


# --- attributes, costs, receptive fields -----------------------------------------------------
def test_stride_defaults_to_the_kernel():
    attrs = make_attrs(MaxPool2d, kernel=[2, 3])
    assert attrs.stride is None and attrs.padding == (0, 0)
    assert MaxPool2d().shape([(4, 8, 9)], attrs) == (4, 4, 3)
    assert MaxPool2d().receptive_field([(4, 8, 9)], attrs) == Window((2, 3), (2, 3), (0, 0),
                                                                     padding_end=(0, 0))


def test_receptive_field_names_the_padding_before_and_after():
    attrs = make_attrs(AvgPool2d, kernel=[2, 3], stride=1, padding="same")
    # 7×8 input: 1 row of padding goes after, 2 columns split 1 / 1
    assert AvgPool2d().receptive_field([(2, 7, 8)], attrs) == Window((2, 3), (1, 1), (0, 1),
                                                                      (1, 1), (1, 1))


def test_the_padding_after_holds_ceil_modes_overhang():
    """ceil_mode's last window reads past the end padding: the padded copy holds that too."""
    attrs = make_attrs(MaxPool2d, kernel=2, ceil_mode=True)
    window = MaxPool2d().receptive_field([(1, 5, 4)], attrs)
    assert MaxPool2d().shape([(1, 5, 4)], attrs) == (1, 3, 2)
    assert window.padding == (0, 0) and window.padding_end == (1, 0)


def test_macs():
    attrs = make_attrs(MaxPool2d, kernel=3, stride=2, padding=1)
    output_shape = MaxPool2d().shape([(4, 8, 8)], attrs)
    assert output_shape == (4, 4, 4)
    assert MaxPool2d().macs([(4, 8, 8)], output_shape, attrs) == 0
    avg_attrs = make_attrs(AvgPool2d, kernel=3, stride=2, padding=1)
    assert AvgPool2d().macs([(4, 8, 8)], output_shape, avg_attrs) == 4 * 4 * 4 * 3 * 3


@pytest.mark.parametrize("op_class", [MaxPool2d, AvgPool2d])
def test_a_kept_window_follows_the_shape_and_attribute_values(op_class, context):
    """The op keeps its window per input shape and attribute object: the same output as an op
    that never ran, and a new window when the shape or an attribute's value changes (a bad
    one refused every time, never kept)."""
    op, attrs = op_class(), make_attrs(op_class, kernel=2)
    x = random((2, 3, 8, 10))
    reduce = "max" if op_class is MaxPool2d else "avg"
    for _ in range(2):
        assert np.allclose(op.forward([x], {}, attrs, context)[0], naive_pool(x, attrs, reduce))
    assert op.shape([(3, 6, 4)], attrs) == (3, 3, 2)
    attrs.stride = (1, 1)
    assert np.allclose(op.forward([x], {}, attrs, context)[0], naive_pool(x, attrs, reduce))
    assert op.shape([(3, 6, 4)], attrs) == (3, 5, 3) == op_class().shape([(3, 6, 4)], attrs)
    attrs.padding = (2, 2)
    for _ in range(2):
        with pytest.raises(ShapeError, match="only padding"):
            op.forward([x], {}, attrs, context)


@pytest.mark.parametrize("raw", [{"kernel": 0}, {"kernel": 2, "stride": 0},
                                 {"kernel": 2, "padding": "full"}, {"kernel": 2, "padding": -1},
                                 {"kernel": [2, 2, 2]}])
def test_rejects_bad_attributes(raw):
    with pytest.raises(SpecError):
        make_attrs(MaxPool2d, **raw)


@pytest.mark.parametrize("op_class", [MaxPool2d, AvgPool2d])
def test_rejects_an_input_that_is_not_an_image(op_class):
    with pytest.raises(ShapeError) as error:
        op_class().shape([(3, 8)], make_attrs(op_class, kernel=2))
    assert error.value.field == "inputs" and error.value.found == "3×8 (2-D)"


@pytest.mark.parametrize("op_class", [MaxPool2d, AvgPool2d])
def test_rejects_a_kernel_larger_than_its_padded_input(op_class):
    with pytest.raises(ShapeError) as error:
        op_class().shape([(2, 4, 6)], make_attrs(op_class, kernel=5, padding=[0, 1]))
    assert error.value.field == "kernel"
    assert error.value.expected == "a kernel of at most 4×8 (the padded input is 2×4×8)"
    assert error.value.found == "5×5"


@pytest.mark.parametrize("op_class", [MaxPool2d, AvgPool2d])
@pytest.mark.parametrize("input_hw, raw, found", [
    ((9, 9), {"kernel": 2, "padding": 2}, "[2, 2, 2, 2]: window 1 of 6 down (a 2×2 kernel)"),
    ((9, 9), {"kernel": 3, "stride": 3, "padding": [0, 0, 0, 3]},
     "[0, 0, 0, 3]: window 4 of 4 across (a 3×3 kernel)"),
    # the window's span reaches the image, but its two taps straddle it
    ((2, 5), {"kernel": [2, 1], "dilation": [3, 1], "padding": [1, 0, 1, 0]},
     "[1, 0, 1, 0]: window 1 of 1 down (a 2×1 kernel dilated by 3×1)"),
], ids=["first", "last", "dilated"])
def test_rejects_a_window_that_would_cover_only_padding(op_class, input_hw, raw, found):
    """ONNX allows any padding; a window of padding alone has no maximum and no mean."""
    with pytest.raises(ShapeError) as error:
        op_class().shape([(2, *input_hw)], make_attrs(op_class, **raw))
    assert error.value.field == "padding"
    assert error.value.message == "a window would cover only padding"
    assert error.value.found == found
    assert error.value.expected == (f"padding that leaves every window a pixel of the "
                                    f"{input_hw[0]}×{input_hw[1]} input")


@pytest.mark.parametrize("kernel", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("stride", [1, 2, 3, 7])
def test_same_padding_always_fits_pytorch_s_rule(kernel, stride):
    attrs = make_attrs(MaxPool2d, kernel=kernel, stride=stride, padding="same")
    for size in range(1, 12):
        out = -(-size // stride)
        assert MaxPool2d().shape([(1, size, size)], attrs) == (1, out, out)


# --- against PyTorch, when it is installed ---------------------------------------------------
@pytest.mark.parametrize("reduce, name", [
    (reduce, name) for name in ("3x3-stride2-pad1", "stride-pair-pad-pair", "overlapping-stride1",
                                "pad-half-of-even-kernel", "four-sides", "ceil-overhang",
                                "ceil-padded", "dilation2", "pad-beyond-half-kernel")
    for reduce in POOLS
    if not (reduce == "avg" and name == "dilation2")  # PyTorch's average pool has no dilation
] + [("avg", "explicit-excluding-pad"), ("avg", "ceil-excluding-pad")])
def test_matches_pytorch(reduce, name, context):
    """PyTorch in float64: its own padding, ceil_mode, dilation and count_include_pad, and
    four-sided padding as an F.pad (of −inf for max, of zeros that count for average)."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    functional = torch.nn.functional
    input_shape, raw = {**CASES, **AVG_ONLY_CASES}[name]
    op_class = POOLS[reduce]
    attrs = make_attrs(op_class, **raw)
    x = random((2, *input_shape))
    output, saved = op_class().forward([x], {}, attrs, context())
    grad_output = random(output.shape, seed=5)
    (grad,), _ = op_class().backward(grad_output, saved, {}, attrs, context())

    x_torch = torch.tensor(x, requires_grad=True)
    source, padding = x_torch, attrs.padding
    top, bottom, left, right = SlidingWindow.of(input_shape, attrs).pads
    if len(padding) == 4 or max(padding) > min(attrs.kernel) // 2:  # beyond PyTorch's layer
        source = functional.pad(x_torch, (left, right, top, bottom),
                                value=-np.inf if reduce == "max" else 0.0)
        padding = 0
    options = {"kernel_size": attrs.kernel, "stride": attrs.stride or attrs.kernel,
               "padding": padding, "ceil_mode": attrs.ceil_mode}
    if reduce == "max":
        expected = functional.max_pool2d(source, dilation=attrs.dilation, **options)
    else:
        expected = functional.avg_pool2d(source, count_include_pad=counts_padding(attrs),
                                         **options)
    expected.backward(torch.tensor(grad_output))
    assert output.shape == expected.shape
    assert np.allclose(output, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert np.allclose(grad, x_torch.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduce, name", [
    (reduce, name) for name in CASES for reduce in POOLS] + [
    ("avg", name) for name in AVG_ONLY_CASES])
def test_exports_to_pytorch(reduce, name):
    """The to_torch translation of every case (PyTorch's layer where it has the same rule,
    else an explicit F.pad, or sums over counts) agrees in float32, forward and backward."""
    pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    from graphnet.testing import check_torch_export
    input_shape, raw = {**CASES, **AVG_ONLY_CASES}[name]
    check_torch_export(POOLS[reduce].name, [input_shape], raw, batch_size=2)


@pytest.mark.parametrize("reduce, name", [
    (reduce, name) for name in CASES for reduce in POOLS] + [
    ("avg", name) for name in AVG_ONLY_CASES])
def test_matches_onnxruntime(reduce, name, context):
    """ONNX's MaxPool and AveragePool (opset 19: dilations on both) in onnxruntime, with the
    window's four pads, ceil_mode and count_include_pad: the reference where PyTorch has no
    word (four-sided padding with ceil_mode, a dilated average)."""
    pytest.importorskip("onnx", reason="onnx is not installed (the onnx extra)")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from onnx import TensorProto, helper
    input_shape, raw = {**CASES, **AVG_ONLY_CASES}[name]
    op_class = POOLS[reduce]
    attrs = make_attrs(op_class, **raw)
    window = SlidingWindow.of(input_shape, attrs)
    top, bottom, left, right = window.pads
    options = dict(kernel_shape=list(window.kernel), strides=list(window.stride),
                   pads=[top, left, bottom, right], dilations=list(window.dilation),
                   ceil_mode=int(window.ceil_mode))
    if reduce == "avg":
        options["count_include_pad"] = int(counts_padding(attrs))
    node = helper.make_node("MaxPool" if reduce == "max" else "AveragePool", ["x"], ["y"],
                            **options)
    graph = helper.make_graph(
        [node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    x = random((2, *input_shape), dtype=np.float32)
    expected = session.run(None, {"x": x})[0]
    output, _ = op_class().forward([x], {}, attrs, context(dtype=np.float32))
    assert output.shape == expected.shape
    assert np.allclose(output, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduce, name", [
    (reduce, name) for name in CASES for reduce in POOLS] + [
    ("avg", name) for name in AVG_ONLY_CASES])
def test_exports_to_onnx(reduce, name):
    """The to_onnx translation of every case (four pads, ceil_mode, dilations; a dilated
    average, which AveragePool takes only from opset 19, as a conv of ones times 1 / the
    divisor) passes onnx.checker and agrees in onnxruntime."""
    pytest.importorskip("onnx", reason="onnx is not installed (the onnx extra)")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the test extra)")
    from graphnet.testing import check_onnx_export
    input_shape, raw = {**CASES, **AVG_ONLY_CASES}[name]
    report = check_onnx_export(POOLS[reduce].name, [input_shape], raw)
    dilated = reduce == "avg" and make_attrs(AvgPool2d, **raw).dilation != (1, 1)
    assert report["nodes"] == (["Conv", "Mul"] if dilated
                               else ["MaxPool" if reduce == "max" else "AveragePool"])
