"""The sliding-window geometry that conv kernels, pooling, the exporter and the tests share:
padding resolved per side, padded and output sizes, the taps' slices."""
from types import SimpleNamespace

import numpy as np
import pytest

from graphnet.errors import ShapeError
from graphnet_plugins._window import SlidingWindow


@pytest.mark.parametrize("input_hw, options, pads, output_hw", [
    ((5, 6), dict(kernel=3), (0, 0, 0, 0), (3, 4)),
    ((5, 6), dict(kernel=3, padding="valid"), (0, 0, 0, 0), (3, 4)),
    ((5, 6), dict(kernel=3, padding=[2, 1]), (2, 2, 1, 1), (7, 6)),
    # "same": output ceil(size / stride), the odd row or column after
    ((5, 6), dict(kernel=[4, 2], padding="same"), (1, 2, 0, 1), (5, 6)),
    ((7, 7), dict(kernel=3, stride=2, padding="same"), (1, 1, 1, 1), (4, 4)),
    ((6, 6), dict(kernel=3, stride=2, padding="same"), (0, 1, 0, 1), (3, 3)),
    ((6, 8), dict(kernel=[2, 3], dilation=[2, 1], padding="same"), (1, 1, 1, 1), (6, 8)),
    ((8, 7), dict(kernel=2, stride=None), (0, 0, 0, 0), (4, 3)),   # pooling: stride = kernel
    ((1, 1), dict(kernel=1, stride=4, padding="same"), (0, 0, 0, 0), (1, 1)),
    # four sides in ONNX's order, [top, left, bottom, right] → (top, bottom, left, right)
    ((5, 6), dict(kernel=3, padding=[1, 2, 3, 0]), (1, 3, 2, 0), (7, 6)),
], ids=["plain", "valid", "pair", "same-even-kernel", "same-stride2", "same-stride2-even-size",
        "same-dilated", "stride-of-kernel", "same-stride-over-size", "four-sides"])
def test_resolves_padding_per_side_and_the_output_size(input_hw, options, pads, output_hw):
    window = SlidingWindow.resolve(input_hw, **options)
    assert window.pads == pads
    assert window.output_hw == output_hw
    assert window.padded_hw == (input_hw[0] + pads[0] + pads[1], input_hw[1] + pads[2] + pads[3])


def test_taps_slice_every_window_of_the_padded_input():
    window = SlidingWindow.resolve((7, 9), (2, 3), stride=(2, 3), padding=1, dilation=(2, 1))
    padded = np.arange(np.prod(window.padded_hw)).reshape(window.padded_hw)
    taps = list(window.taps())
    assert [(row, col) for row, col, _, _ in taps] == [(r, c) for r in range(2) for c in range(3)]
    for row, col, rows, cols in taps:
        # output (i, j) reads padded (i·stride + row·dilation, j·stride + col·dilation)
        expected = padded[[[i * 2 + row * 2] for i in range(window.output_hw[0])],
                          [j * 3 + col for j in range(window.output_hw[1])]]
        assert np.array_equal(padded[rows, cols], expected)


def test_of_reads_an_ops_attributes_and_refuses_a_kernel_wider_than_its_padded_input():
    attrs = SimpleNamespace(kernel=(3, 3), stride=(1, 1), padding="same")  # no dilation: pooling
    assert SlidingWindow.of((2, 5, 5), attrs) == SlidingWindow((5, 5), (3, 3), pads=(1, 1, 1, 1))
    with pytest.raises(ShapeError) as error:
        SlidingWindow.of((2, 4, 6), SimpleNamespace(kernel=(3, 3), stride=(1, 1), padding=0,
                                                    dilation=(2, 1)))
    assert error.value.field == "kernel"
    assert error.value.expected == "a kernel of at most 4×6 (the padded input is 2×4×6)"
    assert error.value.found == "3×3 (dilated, it spans 5×3)"


def torch_pool_output_size(size, kernel, stride, pad_before, pad_after, dilation):
    """PyTorch's pooling_output_shape with ceil_mode, for a pad before and after (as ONNX
    runtimes compute it): round up, then drop a last window starting in the end padding."""
    span = dilation * (kernel - 1) + 1
    count = -(-(size + pad_before + pad_after - span) // stride) + 1
    if (count - 1) * stride >= size + pad_before:
        count -= 1
    return count


@pytest.mark.parametrize("size, kernel, stride, before, after, dilation, expected", [
    (5, 2, 2, 0, 0, 1, 3),    # rounds up: the last window reads one column past the image
    (4, 2, 2, 0, 1, 1, 2),    # a third window would start in the end padding: dropped
    (6, 3, 2, 1, 1, 1, 4),    # the last window starts on the image's last pixel: kept
    (8, 3, 3, 1, 0, 2, 3),    # dilated: a span of 5, reading 2 rows past the image
    (8, 2, 2, 0, 0, 1, 4),    # divides evenly: as floor
])
def test_ceil_mode_rounds_up_but_drops_a_window_starting_in_the_end_padding(
        size, kernel, stride, before, after, dilation, expected):
    window = SlidingWindow.resolve((size, 4), (kernel, 1), stride=(stride, 1),
                                   padding=[before, 0, after, 0], dilation=(dilation, 1),
                                   ceil_mode=True)
    assert window.output_hw[0] == expected == torch_pool_output_size(
        size, kernel, stride, before, after, dilation)
    span = dilation * (kernel - 1) + 1
    # what the windows read past the end padding, and only that, is the overhang
    assert window.overhang[0] == max(0, (expected - 1) * stride + span - (size + before + after))
    assert window.read_hw[0] == window.padded_hw[0] + window.overhang[0]
    assert window.read_pads == (before, after + window.overhang[0], 0, 0)
    floor = SlidingWindow.resolve((size, 4), (kernel, 1), stride=(stride, 1),
                                  padding=[before, 0, after, 0], dilation=(dilation, 1))
    assert floor.overhang == (0, 0) and floor.output_hw[0] <= expected


def test_ceil_mode_agrees_with_pytorch_on_a_grid_of_sizes():
    """Every small size, kernel, stride, padding (at most half the kernel) and dilation: the
    output size PyTorch's max pool gives."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (the torch extra, "
                                                "part of the test extra)")
    for size in range(3, 9):
        for kernel in (1, 2, 3):
            for stride in (1, 2, 3):
                for padding in range(kernel // 2 + 1):
                    for dilation in (1, 2):
                        if dilation * (kernel - 1) + 1 > size + 2 * padding:
                            continue
                        window = SlidingWindow.resolve(
                            (size, size + 1), kernel, stride=stride, dilation=dilation,
                            padding=padding, ceil_mode=True)
                        expected = torch.nn.functional.max_pool2d(
                            torch.zeros(1, 1, size, size + 1), kernel, stride, padding,
                            dilation, ceil_mode=True).shape[2:]
                        assert window.output_hw == tuple(expected), (
                            size, kernel, stride, padding, dilation)
