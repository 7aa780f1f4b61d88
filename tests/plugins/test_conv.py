"""conv2d: the direct kernel against a naive loop and central differences, every other kernel
against the direct one, the choice of kernel, shape inference, errors, parameters, costs and
receptive fields."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from graphnet.errors import ShapeError, SpecError
from graphnet.op import Window
from graphnet_plugins import conv
from graphnet_plugins._conv_kernels import (ALTERNATIVES, KERNELS, DirectKernel, GroupedKernel,
                                            TapKernel, TiledKernel, WinogradKernel)
from graphnet_plugins._conv_kernels.im2col import transposed_fits
from graphnet_plugins._window import SlidingWindow
from graphnet_plugins.conv import Conv2d

DIRECT = Conv2d(kernels=[DirectKernel()])
VARIANTS = {
    # every kernel of the op's list as it is, and each other way a kernel can compute
    **{kernel.name: kernel for kernel in KERNELS + ALTERNATIVES if kernel.name != "direct"},
    "grouped-block-per-sample": GroupedKernel(block_bytes=1),
    "tiled-kernel-rows": TiledKernel(row_min_columns=0),
    "tiled-channel-planes": TiledKernel(plane_channels=1 << 30),
    "taps-wherever-they-compute": TapKernel(min_channels=1, max_waste=math.inf),
    "taps-over-pairs-wherever-they-pay": TapKernel(min_channels=1, max_waste=math.inf,
                                                   pair_channels=(1, 1 << 30),
                                                   pair_max_growth=math.inf),
    "winograd2-tile-per-sample": WinogradKernel(2, min_channels=1, tile=1),
    "winograd4-wherever-it-computes": WinogradKernel(4, min_channels=1),
}


def make_attrs(**raw):
    """Attrs as a spec node gets them: the raw values merged over the defaults, each parsed."""
    merged = {name: attr.default for name, attr in Conv2d.attrs.items() if not attr.required}
    merged.update(raw)
    return SimpleNamespace(**{name: Conv2d.attrs[name].parse(value, name)
                              for name, value in merged.items()})


def random(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def random_params(input_shape, attrs, seed=1, dtype=np.float64):
    """Random arrays of the declared shapes (a zero bias would hide a missing bias add)."""
    declared = Conv2d().params([input_shape], attrs)
    return {name: random(param.shape, seed + index, dtype)
            for index, (name, param) in enumerate(declared.items())}


def naive_conv2d(x, weight, bias, attrs):
    """The definition, one output element at a time (loops are fine in tests)."""
    batch = len(x)
    filters, channels_per_group, kernel_h, kernel_w = weight.shape
    (stride_h, stride_w), (dilation_h, dilation_w) = attrs.stride, attrs.dilation
    pad_top, pad_bottom, pad_left, pad_right = SlidingWindow.of(x.shape[1:], attrs).pads
    padded = np.pad(x, ((0, 0), (0, 0), (pad_top, pad_bottom), (pad_left, pad_right)))
    span_h, span_w = dilation_h * (kernel_h - 1) + 1, dilation_w * (kernel_w - 1) + 1
    out_h = (padded.shape[2] - span_h) // stride_h + 1
    out_w = (padded.shape[3] - span_w) // stride_w + 1
    filters_per_group = filters // attrs.groups
    output = np.zeros((batch, filters, out_h, out_w))
    for n in range(batch):
        for f in range(filters):
            first_channel = f // filters_per_group * channels_per_group
            for i in range(out_h):
                for j in range(out_w):
                    top, left = i * stride_h, j * stride_w
                    patch = padded[n, first_channel:first_channel + channels_per_group,
                                   top:top + span_h:dilation_h, left:left + span_w:dilation_w]
                    output[n, f, i, j] = np.sum(patch * weight[f])
            if bias is not None:
                output[n, f] += bias[f]
    return output


# (per-sample input shape, raw attributes): each row changes the math somewhere.
CASES = {
    "3x3-valid": ((3, 6, 7), {"filters": 4, "kernel": 3}),
    "stride2-pad1": ((3, 7, 8), {"filters": 2, "kernel": 3, "stride": 2, "padding": 1}),
    "rect-kernel-pair-stride-pair-pad": ((2, 6, 9), {"filters": 3, "kernel": [2, 3],
                                                     "stride": [1, 2], "padding": [2, 0]}),
    "explicit-valid": ((2, 5, 6), {"filters": 2, "kernel": [3, 2], "padding": "valid"}),
    "same-odd-kernel": ((2, 5, 6), {"filters": 3, "kernel": 3, "padding": "same"}),
    "same-even-kernel-asymmetric": ((2, 5, 6), {"filters": 2, "kernel": [2, 4],
                                                "padding": "same"}),
    "same-stride2-asymmetric": ((3, 6, 7), {"filters": 2, "kernel": 3, "stride": 2,
                                            "padding": "same"}),
    "dilation2-pad2": ((2, 7, 7), {"filters": 2, "kernel": 3, "dilation": 2, "padding": 2}),
    "dilation-pair-same": ((2, 6, 8), {"filters": 2, "kernel": [2, 3], "dilation": [2, 1],
                                       "padding": "same"}),
    "groups2": ((4, 5, 6), {"filters": 6, "kernel": 3, "groups": 2, "padding": 1}),
    "groups2-stride2-no-bias": ((4, 7, 6), {"filters": 4, "kernel": 2, "groups": 2,
                                            "stride": 2, "bias": False}),
    "depthwise": ((3, 5, 6), {"filters": 3, "kernel": 3, "groups": 3, "padding": 1}),
    "depthwise-multiplier2-stride2": ((2, 6, 7), {"filters": 4, "kernel": [3, 2], "groups": 2,
                                                  "stride": 2, "padding": "same"}),
    "no-bias": ((2, 5, 5), {"filters": 3, "kernel": 2, "bias": False}),
    "padding-wider-than-kernel": ((2, 4, 5), {"filters": 2, "kernel": 3, "padding": 4}),
    "1x1": ((4, 3, 5), {"filters": 2, "kernel": 1}),
    "fewer-filters-than-channels": ((5, 5, 6), {"filters": 2, "kernel": 3, "padding": 1}),
    # four sides in ONNX's order, [top, left, bottom, right]
    "four-sides-stride2": ((2, 7, 6), {"filters": 3, "kernel": 3, "stride": 2,
                                       "padding": [2, 0, 1, 1]}),
    "four-sides-depthwise": ((3, 6, 7), {"filters": 3, "kernel": 3, "groups": 3,
                                         "padding": [0, 1, 2, 1]}),
    "four-sides-wider-than-kernel": ((4, 6, 7), {"filters": 4, "kernel": 3,
                                                 "padding": [1, 3, 0, 2]}),
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    input_shape, raw = CASES[request.param]
    return input_shape, make_attrs(**raw)


def run_case(name, context, grad_seed, op=None, batch=2, dtype=np.float64):
    """One named case forward and backward: (x, params, attrs, window, output, grad_output,
    grad_input, param_grads)."""
    op = op or Conv2d()
    input_shape, raw = CASES[name]
    attrs = make_attrs(**raw)
    x, params = random((batch, *input_shape), dtype=dtype), random_params(input_shape, attrs)
    output, saved = op.forward([x], params, attrs, context(dtype=dtype))
    grad_output = random(output.shape, seed=grad_seed, dtype=dtype)
    (grad_input,), param_grads = op.backward(grad_output, saved, params, attrs,
                                             context(dtype=dtype))
    return x, params, attrs, saved[1], output, grad_output, grad_input, param_grads


def test_registers_conv2d(registered_ops):
    assert registered_ops(conv) == {"conv2d"}


@pytest.mark.parametrize("op", [DIRECT, Conv2d()], ids=["direct", "default"])
def test_forward_equals_naive_loop_and_shape_inference(op, case, context):
    input_shape, attrs = case
    x, params = random((2, *input_shape)), random_params(input_shape, attrs)
    output, _ = op.forward([x], params, attrs, context())
    expected = naive_conv2d(x, params["weight"], params.get("bias"), attrs)
    assert output.shape == expected.shape
    assert np.allclose(output, expected, rtol=1e-12, atol=1e-12)
    assert Conv2d().shape([input_shape], attrs) == output.shape[1:]


@pytest.mark.parametrize("op", [DIRECT, Conv2d()], ids=["direct", "default"])
def test_gradients_equal_central_differences(op, case, check_gradients):
    input_shape, attrs = case
    x, params = random((2, *input_shape)), random_params(input_shape, attrs)
    errors = check_gradients(op, [x], params, attrs)
    assert set(errors) == {"input 1", *params}


def fits(variant, name) -> bool:
    input_shape, raw = CASES[name]
    attrs = make_attrs(**raw)
    return VARIANTS[variant].fits(SlidingWindow.of(input_shape, attrs), input_shape[0],
                                  attrs.filters, attrs.groups)


def test_every_kernel_is_compared_with_the_direct_one_somewhere():
    """A kernel added to the lists without a case here that it fits fails this test."""
    for kernel in KERNELS[:-1] + ALTERNATIVES:
        assert any(type(VARIANTS[variant]) is type(kernel) and fits(variant, name)
                   for variant in VARIANTS for name in CASES), kernel.name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("variant, name", [(variant, name) for variant in VARIANTS
                                           for name in CASES if fits(variant, name)])
def test_every_kernel_equals_the_direct_one(variant, name, batch, dtype, context):
    found = run_case(name, context, 7, Conv2d(kernels=[VARIANTS[variant]]), batch, dtype)
    expected = run_case(name, context, 7, DIRECT, batch, dtype)
    tolerance = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5,
                                                                              atol=2e-5)
    for position in (4, 6):  # output, input gradient
        assert found[position].dtype == dtype
        np.testing.assert_allclose(found[position], expected[position], **tolerance)
    for param, grad in expected[7].items():
        np.testing.assert_allclose(found[7][param], grad, **tolerance)


@pytest.mark.parametrize("method", ["transposed_gradient", "col2im_gradient"])
@pytest.mark.parametrize("name", list(CASES))
def test_both_input_gradient_methods_hold_for_every_case(name, method, context):
    """Each method is right beyond where the kernels pick it (they pick by speed)."""
    x, params, attrs, window, _, grad_output, expected, _ = run_case(name, context, 7, DIRECT)
    if method == "transposed_gradient" and not transposed_fits(window):
        return  # stride 2 or padding as wide as the kernel: only col2im computes it
    grad_nhwc = np.ascontiguousarray(grad_output.transpose(0, 2, 3, 1))
    grad_input = getattr(GroupedKernel(), method)(grad_nhwc, params["weight"], window,
                                                  attrs.groups)
    assert np.allclose(grad_input.transpose(0, 3, 1, 2), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("input_shape, raw, chosen, epilogue", [
    ((32, 16, 16), {"filters": 32, "kernel": 3, "padding": "same"}, "taps", True),
    ((32, 16, 16), {"filters": 32, "kernel": 3, "stride": 2, "padding": 1}, "tiled", True),
    ((3, 32, 32), {"filters": 16, "kernel": 5}, "tiled", True),   # RGB: channel planes
    ((4, 8, 8), {"filters": 4, "kernel": 3, "padding": 1}, "tiled", True),
    ((8, 8, 8), {"filters": 8, "kernel": 3, "groups": 8}, "depthwise", True),
    ((8, 8, 8), {"filters": 8, "kernel": 3, "groups": 2}, "grouped", False),
], ids=["taps", "strided", "rgb", "few-channels", "depthwise", "grouped"])
def test_the_op_takes_the_first_kernel_that_fits(input_shape, raw, chosen, epilogue):
    attrs = make_attrs(**raw)
    kernel, window = Conv2d().choose_kernel(input_shape, attrs)
    assert kernel.name == chosen and window == SlidingWindow.of(input_shape, attrs)
    assert Conv2d().accepts_epilogue([input_shape], attrs) is epilogue
    assert [k.name for k in KERNELS][-1] == "direct"  # the last resort fits everything


def test_a_kept_choice_follows_the_shape_and_attribute_values():
    """The op keeps its choice per input shape and attribute object: the same answer as
    choosing afresh, and a new one when the shape or an attribute's value changes."""
    op, attrs = Conv2d(), make_attrs(filters=32, kernel=3, padding=1)
    assert op.choose_kernel((32, 16, 16), attrs)[0].name == "taps"
    assert op.choose_kernel((32, 16, 16), attrs) == Conv2d().choose_kernel((32, 16, 16), attrs)
    assert op.choose_kernel((3, 16, 16), attrs)[0].name == "tiled"
    attrs.stride = (2, 2)
    kernel, window = op.choose_kernel((32, 16, 16), attrs)
    assert kernel.name == "tiled" and window.output_hw == (8, 8)


def test_a_kernel_list_that_cannot_compute_a_conv_says_so():
    with pytest.raises(ValueError, match="none of the conv kernels"):
        Conv2d(kernels=[TapKernel()]).choose_kernel((8, 8, 8), make_attrs(filters=8, kernel=3,
                                                                          stride=2))


def test_blocks_of_samples_give_the_same_result_as_one_product(context):
    attrs = make_attrs(filters=4, kernel=3, padding=1, groups=2)
    x, params = random((5, 4, 6, 5)), random_params((4, 6, 5), attrs)
    grad_output = random((5, 4, 6, 5), seed=3)

    def run(kernel):
        op = Conv2d(kernels=[kernel])
        output, saved = op.forward([x], params, attrs, context())
        return output, op.backward(grad_output, saved, params, attrs, context())

    whole_output, ((whole_grad,), whole_param_grads) = run(GroupedKernel())
    one_per_block = GroupedKernel(block_bytes=1)
    assert len(one_per_block.blocks(5, SlidingWindow((6, 5), (3, 3)), x)) == 5
    block_output, ((block_grad,), block_param_grads) = run(one_per_block)
    assert np.allclose(block_output, whole_output, rtol=1e-12, atol=1e-12)
    assert np.allclose(block_grad, whole_grad, rtol=1e-12, atol=1e-12)
    for name in params:
        assert np.allclose(block_param_grads[name], whole_param_grads[name], rtol=1e-12)


def test_any_input_memory_layout_gives_the_same_output(context):
    attrs = make_attrs(filters=3, kernel=3, padding="same")
    x, params = random((2, 4, 5, 6)), random_params((4, 5, 6), attrs)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    strided = np.repeat(x, 2, axis=3)[..., ::2]
    expected, _ = Conv2d().forward([x], params, attrs, context())
    for layout in (channels_last, strided):
        assert np.array_equal(Conv2d().forward([layout], params, attrs, context())[0], expected)


# --- what backward is asked for --------------------------------------------------------------
def test_skips_the_input_gradient_when_not_needed(context):
    attrs = make_attrs(filters=2, kernel=3)
    x, params = random((2, 3, 5, 5)), random_params((3, 5, 5), attrs)
    output, saved = Conv2d().forward([x], params, attrs, context())
    (grad_input,), param_grads = Conv2d().backward(
        np.ones_like(output), saved, params, attrs, context(needs_input_grad=(False,)))
    assert grad_input is None
    assert set(param_grads) == {"weight", "bias"}


def test_frozen_conv_returns_no_param_gradients(context):
    attrs = make_attrs(filters=2, kernel=3)
    x, params = random((2, 3, 5, 5)), random_params((3, 5, 5), attrs)
    output, saved = Conv2d().forward([x], params, attrs, context())
    (grad_input,), param_grads = Conv2d().backward(
        np.ones_like(output), saved, params, attrs, context(needs_param_grad=False))
    assert grad_input.shape == x.shape
    assert param_grads == {}


@pytest.mark.parametrize("raw", [{"filters": 4, "kernel": 3, "padding": 1},
                                 {"filters": 4, "kernel": 3, "groups": 4, "stride": 2},
                                 {"filters": 8, "kernel": 2, "groups": 2}],
                         ids=["dense", "depthwise", "groups"])
def test_float32_stays_float32(raw, context):
    attrs = make_attrs(**raw)
    x = random((2, 4, 6, 6), dtype=np.float32)
    params = random_params((4, 6, 6), attrs, dtype=np.float32)
    output, saved = Conv2d().forward([x], params, attrs, context(dtype=np.float32))
    (grad_input,), param_grads = Conv2d().backward(
        np.ones_like(output), saved, params, attrs, context(dtype=np.float32))
    assert output.dtype == grad_input.dtype == np.float32
    assert all(grad.dtype == np.float32 for grad in param_grads.values())
    # float64 parameters do not upcast a float32 input
    params64 = {name: value.astype(np.float64) for name, value in params.items()}
    assert Conv2d().forward([x], params64, attrs, context())[0].dtype == np.float32


def test_handles_an_empty_batch(context):
    attrs = make_attrs(filters=2, kernel=3, padding=1)
    params = random_params((3, 4, 4), attrs)
    output, saved = Conv2d().forward([np.zeros((0, 3, 4, 4))], params, attrs, context())
    assert output.shape == (0, 2, 4, 4)
    (grad_input,), param_grads = Conv2d().backward(output, saved, params, attrs, context())
    assert grad_input.shape == (0, 3, 4, 4)
    assert not param_grads["weight"].any() and not param_grads["bias"].any()


# --- the classic facts -----------------------------------------------------------------------
def test_one_5x5_filter_over_a_32x32_rgb_image_gives_784_positions(context):
    attrs = make_attrs(filters=1, kernel=5)
    assert Conv2d().shape([(3, 32, 32)], attrs) == (1, 28, 28)
    assert 28 * 28 == 784
    weight = Conv2d().params([(3, 32, 32)], attrs)["weight"]
    assert weight.shape == (1, 3, 5, 5)  # the filter is as deep as its input
    x, params = random((1, 3, 32, 32)), random_params((3, 32, 32), attrs)
    assert Conv2d().forward([x], params, attrs, context())[0].shape == (1, 1, 28, 28)
    assert Conv2d().macs([(3, 32, 32)], (1, 28, 28), attrs) == 784 * 3 * 5 * 5


def test_two_filters_give_two_activation_maps():
    attrs = make_attrs(filters=2, kernel=5)
    assert Conv2d().shape([(3, 32, 32)], attrs) == (2, 28, 28)
    assert Conv2d().params([(3, 32, 32)], attrs)["weight"].shape == (2, 3, 5, 5)


# --- parameters, costs, receptive field ------------------------------------------------------
def test_declares_pytorch_layout_params():
    attrs = make_attrs(filters=6, kernel=[3, 2], groups=2, init="glorot_uniform")
    params = Conv2d().params([(4, 8, 8)], attrs)
    weight, bias = params["weight"], params["bias"]
    assert (weight.shape, weight.init, weight.fan_in, weight.fan_out) == (
        (6, 2, 3, 2), "glorot_uniform", 2 * 3 * 2, 3 * 3 * 2)
    assert (bias.shape, bias.init) == ((6,), "zeros")
    assert set(Conv2d().params([(4, 8, 8)], make_attrs(filters=2, kernel=3, bias=False))) == {
        "weight"}


def test_macs_count_one_group_of_channels_per_filter():
    attrs = make_attrs(filters=8, kernel=3, groups=4, stride=2, padding=1)
    output_shape = Conv2d().shape([(4, 9, 10)], attrs)
    assert output_shape == (8, 5, 5)
    assert Conv2d().macs([(4, 9, 10)], output_shape, attrs) == 5 * 5 * 8 * 1 * 3 * 3


@pytest.mark.parametrize("raw, expected", [
    ({"kernel": 3}, Window((3, 3), (1, 1), (0, 0), (1, 1), (0, 0))),
    ({"kernel": [3, 5], "stride": 2, "padding": [1, 2], "dilation": [1, 2]},
     Window((3, 5), (2, 2), (1, 2), (1, 2), (1, 2))),
    # same, 5×6 input: 3 rows of padding split 1 before / 2 after, 1 column split 0 / 1
    ({"kernel": [4, 2], "padding": "same"}, Window((4, 2), (1, 1), (1, 0), (1, 1), (2, 1))),
    # four sides [top, left, bottom, right]: the field starts at the top and left ones, the
    # padded copy (the memory estimate) holds the bottom and right ones too
    ({"kernel": 3, "padding": [2, 1, 0, 3]}, Window((3, 3), (1, 1), (2, 1), (1, 1), (0, 3))),
], ids=["plain", "strided-dilated", "same-asymmetric", "four-sides"])
def test_receptive_field_names_the_padding_before_and_after(raw, expected):
    assert Conv2d().receptive_field([(2, 5, 6)], make_attrs(filters=1, **raw)) == expected


# --- attributes and shape errors -------------------------------------------------------------
def test_defaults():
    attrs = make_attrs(filters=1, kernel=3)
    assert (attrs.stride, attrs.padding, attrs.dilation, attrs.groups, attrs.bias,
            attrs.init) == ((1, 1), (0, 0), (1, 1), 1, True, "he_normal")
    assert Conv2d.attrs["filters"].required and Conv2d.attrs["kernel"].required


def test_unparsed_defaults_work_as_the_graph_builder_passes_them(context):
    """The graph builder stores a default as declared (``stride = 1``), unparsed."""
    parsed = make_attrs(filters=2, kernel=3)
    unparsed = SimpleNamespace(**{**vars(parsed), "stride": 1, "padding": 0, "dilation": 1})
    x, params = random((2, 3, 5, 5)), random_params((3, 5, 5), parsed)
    assert Conv2d().shape([(3, 5, 5)], unparsed) == (2, 3, 3)
    assert np.array_equal(Conv2d().forward([x], params, unparsed, context())[0],
                          Conv2d().forward([x], params, parsed, context())[0])


@pytest.mark.parametrize("raw", [
    {"filters": 0, "kernel": 3}, {"filters": 2, "kernel": [0, 3]},
    {"filters": 2, "kernel": 3, "stride": 0}, {"filters": 2, "kernel": 3, "padding": "full"},
    {"filters": 2, "kernel": 3, "padding": -1}, {"filters": 2, "kernel": 3, "dilation": 0},
    {"filters": 2, "kernel": 3, "groups": 0}, {"filters": 2, "kernel": 3, "init": "xavier"},
    {"filters": 2, "kernel": [3, 3, 3]}, {"filters": 2, "kernel": 3, "padding": [1, 1, 1]},
    {"filters": 2, "kernel": 3, "padding": [1, -1, 0, 0]},
    {"filters": 2, "kernel": 3, "padding": [1, 1, 1, 1, 1]},
])
def test_rejects_bad_attributes(raw):
    with pytest.raises(SpecError):
        make_attrs(**raw)


@pytest.mark.parametrize("input_shape", [(3, 32), (3 * 32 * 32,), (1, 3, 8, 8)])
def test_rejects_an_input_that_is_not_an_image(input_shape):
    with pytest.raises(ShapeError) as error:
        Conv2d().shape([input_shape], make_attrs(filters=1, kernel=3))
    assert error.value.field == "inputs"
    assert "channels, height, width" in error.value.expected
    assert error.value.found.startswith("×".join(map(str, input_shape)))


def test_rejects_channels_not_divisible_by_groups():
    with pytest.raises(ShapeError) as error:
        Conv2d().shape([(6, 8, 8)], make_attrs(filters=8, kernel=3, groups=4))
    assert error.value.field == "groups"
    assert "6 input channels" in error.value.expected and error.value.found == "4"


def test_rejects_filters_not_divisible_by_groups():
    with pytest.raises(ShapeError) as error:
        Conv2d().shape([(6, 8, 8)], make_attrs(filters=4, kernel=3, groups=3))
    assert error.value.field == "groups"
    assert "4 filters" in error.value.expected and error.value.found == "3"


def test_rejects_a_kernel_larger_than_its_padded_input():
    with pytest.raises(ShapeError) as error:
        Conv2d().shape([(3, 6, 6)], make_attrs(filters=1, kernel=7))
    assert error.value.field == "kernel"
    assert error.value.expected == "a kernel of at most 6×6 (the padded input is 3×6×6)"
    assert error.value.found == "7×7"
    # padding makes room for it
    assert Conv2d().shape([(3, 6, 6)], make_attrs(filters=1, kernel=7, padding=1)) == (1, 2, 2)


def test_rejects_a_dilated_kernel_larger_than_its_padded_input():
    with pytest.raises(ShapeError) as error:
        Conv2d().shape([(3, 6, 8)], make_attrs(filters=1, kernel=3, dilation=3))
    assert error.value.field == "kernel"
    assert "6×8" in error.value.expected and error.value.found == "3×3 (dilated, it spans 7×7)"


@pytest.mark.parametrize("size, kernel, stride", [(5, 3, 1), (6, 4, 1), (7, 3, 2), (8, 2, 3),
                                                  (2, 5, 1), (1, 1, 4)])
def test_same_padding_keeps_ceil_of_size_over_stride(size, kernel, stride):
    attrs = make_attrs(filters=1, kernel=kernel, stride=stride, padding="same")
    assert Conv2d().shape([(1, size, size)], attrs) == (1, math.ceil(size / stride),
                                                       math.ceil(size / stride))


# --- against PyTorch, when it is installed ---------------------------------------------------
@pytest.mark.parametrize("name", ["stride2-pad1", "same-even-kernel-asymmetric", "dilation2-pad2",
                                  "groups2", "depthwise-multiplier2-stride2",
                                  "four-sides-stride2", "four-sides-depthwise",
                                  "four-sides-wider-than-kernel"])
def test_matches_pytorch(name, context):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    functional = torch.nn.functional
    x, params, attrs, window, output, grad_output, grad_input, param_grads = run_case(
        name, context, grad_seed=5)

    top, bottom, left, right = window.pads  # PyTorch pads symmetrically: pad explicitly
    x_torch = torch.tensor(x, requires_grad=True)
    weight = torch.tensor(params["weight"], requires_grad=True)
    bias = torch.tensor(params["bias"], requires_grad=True) if "bias" in params else None
    expected = functional.conv2d(functional.pad(x_torch, (left, right, top, bottom)), weight,
                                 bias, stride=attrs.stride, dilation=attrs.dilation,
                                 groups=attrs.groups)
    expected.backward(torch.tensor(grad_output))
    assert np.allclose(output, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert np.allclose(grad_input, x_torch.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert np.allclose(param_grads["weight"], weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    if bias is not None:
        assert np.allclose(param_grads["bias"], bias.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_four_sided_padding_is_exported_as_an_explicit_pad():
    """PyTorch's layer pads both sides alike: four different sides become an F.pad."""
    pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, part of the test extra)")
    from graphnet.testing import check_torch_export
    for name in ("four-sides-stride2", "four-sides-depthwise"):
        input_shape, raw = CASES[name]
        report = check_torch_export("conv2d", [input_shape], raw, batch_size=2)
        assert report["passed"]
