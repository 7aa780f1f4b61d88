"""Pooling: ``max_pool2d``, ``avg_pool2d`` and ``global_avg_pool``.

Windows are read as strided slices of the (padded) input, one slice per kernel tap, so no
window is ever copied out, and the ops work in whatever memory layout they are given: a conv's
channels-last output stays channels-last, with no transposes. Max pooling pads with −inf.
Average pooling divides by the taps its window has in the image: with ``padding = "same"`` only
the real pixels, as TensorFlow (and ONNX by default) do, and with explicit padding the padded
zeros too, as PyTorch does (``count_include_pad``, PyTorch's name, says which). Padding may be
four-sided (ONNX's ``pads``) and wider than PyTorch's layers allow (half the kernel), as ONNX
allows, as long as every window keeps a tap on the image: a window of padding alone would be
−inf or 0 / 0.

``ceil_mode`` and ``dilation`` follow PyTorch and ONNX: the output size rounds up, dropping a
last window that would start inside the end padding; a window reaching past the end padding
(the overhang) is clipped there, so neither pool ever sees or counts the overhang, and
``count_include_pad`` counts the taps inside the padded input. PyTorch (symmetric padding),
onnxruntime (any padding) and ONNX's backend test cases all give these results. Where PyTorch
cannot say it — four-sided padding with ``ceil_mode`` (its drop rule, applied after an
``F.pad``, sees no padding before), average pooling with dilation — graphnet follows ONNX
(onnxruntime). ONNX's Python reference evaluator (onnx 1.23) disagrees with all of them on some
ceil_mode average pools and asymmetrically padded max pools (its windows shift); it is not
followed.
"""
from __future__ import annotations

import numpy as np

from graphnet import parallel
from graphnet.hookspecs import hookimpl
from graphnet.op import GLOBAL, Attr, Op, format_shape, shape_error

from ._pixels import pixel_items
from ._window import KeptPerShape, SlidingWindow, check_image

POOL_ATTRS = {
    "kernel": Attr("pair", minimum=1, doc="window height and width"),
    "stride": Attr("pair", default=None, minimum=1,
                   doc="step between windows (default: the kernel size)"),
    "padding": Attr("padding", default=0,
                    doc='"valid", "same" (as TensorFlow), a size, or four sides [top, left, '
                        "bottom, right] (ONNX's pads); every window must keep a pixel of the "
                        "input"),
    "dilation": Attr("pair", default=1, minimum=1, doc="spacing between window taps"),
    "ceil_mode": Attr("bool", default=False,
                      doc="round the output size up (PyTorch's and ONNX's rule: a last window "
                          "starting in the end padding is dropped)"),
}


class _Pool2d(Op):
    """Shared schema, shape inference and receptive field of the windowed pools."""

    attrs = POOL_ATTRS

    def __init__(self):
        self._windows = KeptPerShape()

    def _window(self, input_shape, attrs) -> SlidingWindow:
        """The window over a per-sample ``input_shape``, checked to keep a pixel of the input
        in every window; kept per shape and attributes (resolving and checking it took 38 µs
        per forward, half of a batch-1 pool's 79 µs on the benchmark's classic net)."""
        return self._windows.get(input_shape, attrs,
                                 lambda: self._checked_window(input_shape, attrs))

    def _checked_window(self, input_shape, attrs) -> SlidingWindow:
        check_image(input_shape, self.name)
        window = SlidingWindow.of(input_shape, attrs)
        for axis, inside in enumerate(taps_inside(window, include_padding=False)):
            if not inside.all():
                top, bottom, left, right = window.pads
                first = int(np.argmin(inside))
                raise shape_error(
                    "a window would cover only padding", field="padding",
                    expected="padding that leaves every window a pixel of the "
                             f"{format_shape(window.input_hw)} input",
                    found=f"[{top}, {left}, {bottom}, {right}]: window {first + 1} of "
                          f"{len(inside)} {('down', 'across')[axis]} "
                          f"(a {format_shape(window.kernel)} kernel"
                          + (f" dilated by {format_shape(window.dilation)})"
                             if window.dilation != (1, 1) else ")"))
        return window

    def shape(self, input_shapes, attrs):
        return (input_shapes[0][0], *self._window(input_shapes[0], attrs).output_hw)

    def receptive_field(self, input_shapes, attrs):
        # ceil_mode adds units at the end; each unit's field is the window's as ever
        return self._window(input_shapes[0], attrs).field_window()

    def _onnx_pool(self, window, builder, op_type: str, **attributes) -> str:
        """The ONNX node both windowed pools share: ``op_type`` over ``window``.

        ONNX states the drop of a last ceil_mode window starting in the end padding only from
        opset 22 (onnxruntime drops it at every opset; onnx's shape inference before 22 does
        not, and the checker then refuses the model), so the node says what every opset reads
        alike: end padding that no window reads is left out, and ceil_mode is set only where a
        window reads past the padding."""
        top, bottom, left, right = window.pads
        ends = [min(end, max(0, (count - 1) * step + span - size - before))
                for end, count, step, span, size, before in zip(
                    (bottom, right), window.output_hw, window.stride, window.extent,
                    window.input_hw, (top, left))]
        return builder.add_node(op_type, builder.inputs, builder.output,
                                kernel_shape=list(window.kernel), strides=list(window.stride),
                                pads=[top, left, *ends], ceil_mode=int(any(window.overhang)),
                                **attributes)


class MaxPool2d(_Pool2d):
    """2-D max pooling: the largest value in each window, per channel.

    Padding counts as −inf. The gradient goes to the first maximum of each window (row-major),
    as in PyTorch. MACs: 0 (comparisons only).
    """

    name = "max_pool2d"

    def forward(self, inputs, params, attrs, ctx):
        images = inputs[0]
        window = self._window(images.shape[1:], attrs)
        padded = pad_spatial(images, window, -np.inf)  # the overhang too: it never wins
        maximum = np.empty_like(images, shape=(*images.shape[:2], *window.output_hw))
        # The winners cost as much as the maximum; only training needs them, so evaluation
        # defers them to a backward that may never come (and saves the input for it).
        training = getattr(ctx, "training", True)
        winning_tap = np.empty_like(maximum, dtype=tap_index_type(window)) if training else None

        def work(part):
            if winning_tap is None:
                window_maximum(padded[part], window, out=maximum[part])
            else:
                maximum_and_first_winner(padded[part], window, maximum[part], winning_tap[part])

        parallel.run_batch_tiles(work, images, TILE_BYTES)
        deferred = None if training else (padded, maximum)
        return maximum, (winning_tap, images.shape, window, deferred)

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        winning_tap, input_shape, window, deferred = saved
        if winning_tap is None:  # a forward outside training (gradients in evaluation mode)
            padded, maximum = deferred
            winning_tap = np.empty_like(maximum, dtype=tap_index_type(window))
            again = np.empty_like(maximum)  # the maximum once more, beside the winners
            parallel.run_batch_tiles(
                lambda part: maximum_and_first_winner(padded[part], window, again[part],
                                                      winning_tap[part]), maximum, TILE_BYTES)
        # A gradient through flatten arrives NCHW while the winners are channels-last: ufuncs
        # over mixed layouts walk one array against its grain (measured 3-8x slower than one
        # copy first).
        grad_output = same_layout(grad_output, winning_tap)
        if tiles_input(window, input_shape):
            # every input belongs to exactly one window: write each tap's share in place
            grad_input = np.empty_like(winning_tap, dtype=grad_output.dtype, shape=input_shape)

            # Small channels-last pixels: a multiply into a contiguous buffer and a copy of its
            # pixels out beat one multiply into the strided tap slice (1.15-1.3x at 6 float32s;
            # none from 16, where the extra pass costs what the copy saves). Not taken,
            # measured: whole input rows at once (grad_output repeated kernel_w times into
            # rows of (out_w, kernel_w, C), times a winner mask in that layout): 0.7-0.8x.
            via_buffer = has_small_pixels(grad_input)

            def work(part):
                is_winner = np.empty_like(winning_tap[part], dtype=bool)
                routed = np.empty_like(grad_output[part]) if via_buffer else None
                grad_part = grad_input[part]
                for tap, (_, _, rows, cols) in enumerate(window.taps()):
                    np.equal(winning_tap[part], tap, out=is_winner)
                    if routed is None:
                        np.multiply(grad_output[part], is_winner,
                                    out=grad_part[:, :, rows, cols])
                    else:
                        np.multiply(grad_output[part], is_winner, out=routed)
                        copy_pixels(grad_part[:, :, rows, cols], routed)

            parallel.run_batch_tiles(work, grad_input, TILE_BYTES)
            return [grad_input], {}
        grad_padded = np.empty_like(winning_tap, dtype=grad_output.dtype,
                                    shape=(*input_shape[:2], *window.read_hw))

        no_tap = window.kernel[0] * window.kernel[1]

        def work(part):
            phases = StridePhases(window, grad_padded[part])
            winners = phases.widened(winning_tap[part], fill=no_tap)
            grads = phases.widened(grad_output[part], fill=0)
            is_winner = np.empty_like(winners, dtype=bool)
            shares = np.empty_like(grads)
            for tap, (row, col, _, _) in enumerate(window.taps()):
                np.equal(winners, tap, out=is_winner)
                np.multiply(grads, is_winner, out=shares)
                phases.add(row, col, shares)  # overlapping windows accumulate, in tap order
            phases.copy_out()

        parallel.run_batch_tiles(work, grad_padded, TILE_BYTES)
        return [unpad(grad_padded, window.read_pads)], {}

    def macs(self, input_shapes, output_shape, attrs):
        return 0

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        window = self._window(input_shapes[0], attrs)
        source, options = _torch_window(window, names.inputs[0], "float('-inf')")
        return TorchLayer(f"{names.layer}({source})",
                          f"nn.MaxPool2d(kernel_size={window.kernel}{options})")

    def to_onnx(self, input_shapes, attrs, builder):
        window = self._window(input_shapes[0], attrs)  # pads never win: as our −inf
        return self._onnx_pool(window, builder, "MaxPool", dilations=list(window.dilation))


class AvgPool2d(_Pool2d):
    """2-D average pooling: the mean of each window, per channel.

    With ``padding = "same"`` a window at the border divides by the real pixels it covers
    (TensorFlow's rule, ONNX's default), so a constant image stays constant; with explicit
    padding it divides by kernel_h · kernel_w, the padded zeros included (PyTorch's default).
    ``count_include_pad`` overrides either. Under ``ceil_mode`` a last window reaching past
    the end padding divides by its taps inside the padded input only (as PyTorch and
    onnxruntime do); with ``dilation`` the divisor counts taps, not the span. MACs: output
    elements · kernel_h · kernel_w.
    """

    name = "avg_pool2d"
    attrs = {**POOL_ATTRS, "count_include_pad": Attr(
        "bool", default=None,
        doc='whether padded zeros count in the divisor (default: false for "same", as '
            "TensorFlow; true for explicit padding, as PyTorch)")}

    def forward(self, inputs, params, attrs, ctx):
        images = inputs[0]
        window = self._window(images.shape[1:], attrs)
        padded = pad_spatial(images, window, 0.0)
        total = None
        for _, _, rows, cols in window.taps():
            if total is None:
                total = padded[:, :, rows, cols].copy(order="K")
            else:
                total += padded[:, :, rows, cols]
        reciprocal = divisor_reciprocal(window, counts_padding(attrs), total.dtype)
        total *= reciprocal
        return total, (images.shape, window, reciprocal)

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        input_shape, window, reciprocal = saved
        share = grad_output * reciprocal
        if tiles_input(window, input_shape):
            grad_input = np.empty_like(share, shape=input_shape)
            for _, _, rows, cols in window.taps():
                grad_input[:, :, rows, cols] = share
            return [grad_input], {}
        grad_padded = zeros_padded(share, input_shape, window, grad_output.dtype)
        for _, _, rows, cols in window.taps():
            grad_padded[:, :, rows, cols] += share
        return [unpad(grad_padded, window.read_pads)], {}

    def macs(self, input_shapes, output_shape, attrs):
        channels, out_h, out_w = output_shape
        kernel_h, kernel_w = self._window(input_shapes[0], attrs).kernel
        return channels * out_h * out_w * kernel_h * kernel_w

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        window = self._window(input_shapes[0], attrs)
        include_padding = counts_padding(attrs)
        top, bottom, left, right = window.pads
        if window.dilation == (1, 1) and _torch_pads_itself(window):
            # PyTorch's own layer: its padding, ceil_mode and divisor are graphnet's
            options = TorchLayer.options(
                stride=window.stride if window.stride != window.kernel else None,
                padding=(top, left) if top or left else None,
                ceil_mode=True if window.ceil_mode else None,
                count_include_pad=False if any(window.pads) and not include_padding else None)
            return TorchLayer.applied(names, f"nn.AvgPool2d(kernel_size={window.kernel}"
                                             f"{options})")
        # Asymmetric padding or dilation (which nn.AvgPool2d lacks): the sum of each window's
        # taps, a depthwise conv of ones over the input padded as the windows read it, over
        # the same conv of a mask of the taps that count (the image, and the padding if it
        # counts; never the ceil_mode overhang).
        source = names.inputs[0]
        conv = (f"F.conv2d({{}}, {{}}.new_ones({{}}, 1, {window.kernel[0]}, "
                f"{window.kernel[1]}){TorchLayer.options(stride=window.stride)}"
                f"{TorchLayer.options(dilation=window.dilation)}, groups={{}})")
        read_top, read_bottom, read_left, read_right = window.read_pads
        padded = f"F.pad({source}, {(read_left, read_right, read_top, read_bottom)})"
        mask = f"torch.ones_like({source}[:1, :1])"
        if any(window.pads):
            mask = f"F.pad({mask}, {(left, right, top, bottom)}, value={float(include_padding)})"
        if any(window.overhang):
            mask = f"F.pad({mask}, (0, {window.overhang[1]}, 0, {window.overhang[0]}))"
        channels = input_shapes[0][0]
        total = conv.format(padded, source, channels, channels)
        count = conv.format(mask, source, 1, 1)
        return TorchLayer(f"{total} / {count}")

    def to_onnx(self, input_shapes, attrs, builder):
        window = self._window(input_shapes[0], attrs)
        include_padding = counts_padding(attrs)
        if window.dilation == (1, 1):
            # ONNX's divisors are ours: the real pixels (count_include_pad=0) or the taps in
            # the padded input, never the ceil_mode overhang
            return self._onnx_pool(window, builder, "AveragePool",
                                   count_include_pad=int(include_padding))
        # AveragePool has no dilations before opset 19: the sum of each window's taps, a
        # depthwise conv of ones over the input padded as the windows read it (the overhang
        # too, as zeros), times 1 / each window's divisor, which the shapes alone fix
        channels = input_shapes[0][0]
        read_top, read_bottom, read_left, read_right = window.read_pads
        ones = builder.constant(np.ones((channels, 1, *window.kernel)), "ones")
        total = builder.add_node("Conv", [builder.inputs[0], ones],
                                 kernel_shape=list(window.kernel), strides=list(window.stride),
                                 pads=[read_top, read_left, read_bottom, read_right],
                                 dilations=list(window.dilation), group=channels)
        reciprocal = builder.constant(divisor_reciprocal(window, include_padding,
                                                         np.dtype(np.float64)), "reciprocal")
        return builder.add_node("Mul", [total, reciprocal], builder.output)


def counts_padding(attrs) -> bool:
    """Whether padded zeros count in an average pool's divisor: as asked, else TensorFlow's
    rule for "same" (they do not) and PyTorch's for explicit padding (they do)."""
    if attrs.count_include_pad is not None:
        return attrs.count_include_pad
    return attrs.padding != "same"


def divisor_reciprocal(window: SlidingWindow, include_padding: bool, dtype):
    """1 / the divisor of each window: a scalar when every window divides by the whole kernel,
    else an (out_h, out_w) array (it broadcasts over samples and channels in any layout) of
    1 / the taps each window has where they count: per axis, the taps inside the unpadded
    input (or, with ``include_padding``, inside the padded input: never in the ceil_mode
    overhang), the two axes' counts multiplied."""
    kernel_h, kernel_w = window.kernel
    if not any(window.overhang) and (include_padding or not any(window.pads)):
        return dtype.type(1.0 / (kernel_h * kernel_w))
    counted = taps_inside(window, include_padding)
    return (1.0 / np.outer(counted[0], counted[1])).astype(dtype)


def taps_inside(window: SlidingWindow, include_padding: bool) -> list[np.ndarray]:
    """Per axis, how many of each window's taps fall inside the unpadded input (or, with
    ``include_padding``, inside the padded input: never in the ceil_mode overhang)."""
    top, _, left, _ = window.pads
    counted = []
    for size, before, padded, kernel, step, dilation, count in zip(
            window.input_hw, (top, left), window.padded_hw, window.kernel, window.stride,
            window.dilation, window.output_hw):
        first, end = (0, padded) if include_padding else (before, before + size)
        taps = (np.arange(count) * step)[:, None] + np.arange(kernel) * dilation
        counted.append(((taps >= first) & (taps < end)).sum(axis=1))
    return counted


class GlobalAvgPool(Op):
    """Global average pooling: the mean of each channel over all positions, (C, H, W) → (C,).

    MACs: C · H · W.
    """

    name = "global_avg_pool"

    def shape(self, input_shapes, attrs):
        check_image(input_shapes[0], self.name)
        return (input_shapes[0][0],)

    def receptive_field(self, input_shapes, attrs):
        return GLOBAL

    def macs(self, input_shapes, output_shape, attrs):
        channels, height, width = input_shapes[0]
        return channels * height * width

    def forward(self, inputs, params, attrs, ctx):
        images = inputs[0]
        return channel_means(images), images.shape

    def backward(self, grad_output, saved, params, attrs, ctx):
        if not ctx.wants_input_grad(0):
            return [None], {}
        batch, channels, height, width = saved
        # written channels-last, the layout a conv below reads without a copy; each pixel's
        # C shares copied as one item, one loop over the pixels where a broadcast loops over
        # C values per pixel (64×32×32×32, one thread: 0.25 → 0.09 ms)
        grad_input = np.empty((batch, height, width, channels), dtype=grad_output.dtype)
        shares = np.ascontiguousarray(grad_output * (1.0 / (height * width)))
        np.copyto(pixel_items(grad_input), pixel_items(shares)[:, None, None])
        return [grad_input.transpose(0, 3, 1, 2)], {}

    def to_torch(self, input_shapes, attrs, names):
        from graphnet.op import TorchLayer
        return TorchLayer(f"torch.flatten({names.layer}({names.inputs[0]}), 1)",
                          "nn.AdaptiveAvgPool2d(1)")

    def to_onnx(self, input_shapes, attrs, builder):
        pooled = builder.add_node("GlobalAveragePool", builder.inputs)  # N×C×1×1
        return builder.add_node("Flatten", [pooled], builder.output, axis=1)


# --- helpers ---------------------------------------------------------------------------------
def channel_means(images: np.ndarray) -> np.ndarray:
    """Each sample's mean of each channel, (N, C), of an NCHW-shaped batch: one BLAS product
    of the pixels with a vector of 1 / (H·W) where the memory is a (N, H·W, C) or (N, C, H·W)
    block, numpy's mean otherwise. numpy's mean over the two spatial axes of a channels-last
    batch (a conv's output is one) loops over each pixel's few channels: 64×32×32×32 took
    0.88 ms against the product's 0.10 (one thread), 64×64×8×8 0.063 against 0.011."""
    batch, channels, height, width = images.shape
    weights = np.full(height * width, 1 / (height * width), images.dtype)
    pixels = flat_view(images.transpose(0, 2, 3, 1), (batch, height * width, channels))
    if pixels is not None:
        return np.matmul(weights, pixels)
    planes = flat_view(images, (batch, channels, height * width))
    if planes is not None:
        return np.matmul(planes, weights)
    return images.mean(axis=(2, 3))


def flat_view(array: np.ndarray, shape: tuple) -> np.ndarray | None:
    """``array`` reshaped to ``shape`` without a copy, or None where that needs one."""
    view = array.view()
    try:
        view.shape = shape  # raises rather than copy
    except AttributeError:
        return None
    return view


def _torch_pads_itself(window: SlidingWindow) -> bool:
    """Whether PyTorch's pooling layers take this padding: both sides alike, at most half the
    kernel."""
    top, bottom, left, right = window.pads
    return (top == bottom and left == right and top <= window.kernel[0] // 2
            and left <= window.kernel[1] // 2)


def _torch_window(window: SlidingWindow, source: str, fill: str) -> tuple[str, str]:
    """(input expression, layer options) of a max pool in PyTorch. Padding the layer can take
    goes to it, and its ceil_mode then drops the same windows graphnet does; other padding is
    an ``F.pad`` of ``fill`` that reaches over the overhang too, with no ceil_mode: PyTorch
    would apply its drop rule to the padded size, not to the padding before."""
    from graphnet.op import TorchLayer
    top, bottom, left, right = window.pads
    symmetric = _torch_pads_itself(window)
    if not symmetric:
        read_top, read_bottom, read_left, read_right = window.read_pads
        source = (f"F.pad({source}, {(read_left, read_right, read_top, read_bottom)}, "
                  f"value={fill})")
    options = TorchLayer.options(
        stride=window.stride if window.stride != window.kernel else None,
        padding=(top, left) if symmetric and (top or left) else None,
        dilation=window.dilation if window.dilation != (1, 1) else None,
        ceil_mode=True if symmetric and window.ceil_mode else None)
    return source, options


TILE_BYTES = 1 << 20
"""Input bytes per tile of samples, the tiles shared among graphnet's worker threads: every
pass over a tile then reads L2 cache, not memory (measured 1.3x faster than passes over the
whole batch, before threads)."""


SMALL_PIXEL_BYTES = 32
"""A channels-last pixel (its C values) at most this long is routed through a contiguous
buffer in max pooling's tiling backward and :func:`window_maximum` (see both)."""


def has_small_pixels(images: np.ndarray) -> bool:
    """Whether the NCHW-shaped ``images`` is channels-last with pixels of at most
    SMALL_PIXEL_BYTES."""
    return (images.shape[1] * images.itemsize <= SMALL_PIXEL_BYTES
            and nchw_pixel_items(images) is not None)


def same_layout(array: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``array`` with the memory layout (axis order) of ``like``: itself if it has it already,
    else a copy."""
    def order(a):
        return sorted(range(a.ndim), key=lambda axis: -a.strides[axis])
    if array.shape != like.shape or order(array) == order(like):
        return array
    copy = np.empty_like(like, dtype=array.dtype)
    np.copyto(copy, array)
    return copy


def window_maximum(padded, window: SlidingWindow, out: np.ndarray) -> np.ndarray:
    """The largest value of each window, written into ``out``. Small channels-last pixels
    are copied out of each tap first, as in :func:`maximum_and_first_winner` (1.3-1.5x faster
    at 6 float32s; from 16 the copy costs what the contiguous maximum saves, 0.8-1.2x)."""
    if has_small_pixels(padded):
        for tap, values in enumerate(copied_taps(padded, window, out, np.empty_like(out))):
            if tap > 0:
                np.maximum(out, values, out=out)
        return out
    for tap, (_, _, rows, cols) in enumerate(window.taps()):
        if tap == 0:
            np.copyto(out, padded[:, :, rows, cols])
        else:
            np.maximum(out, padded[:, :, rows, cols], out=out)
    return out


def tap_index_type(window: SlidingWindow) -> np.dtype:
    """The smallest unsigned type holding a tap index (and the tap count)."""
    return np.min_scalar_type(window.kernel[0] * window.kernel[1])


def maximum_and_first_winner(padded, window: SlidingWindow, maximum: np.ndarray,
                             winner: np.ndarray) -> None:
    """The largest value of each window into ``maximum`` and, into ``winner``, the row-major
    index of the first tap holding it (PyTorch's choice on ties, common after ReLU), in one
    scan over the taps: a tap wins only by beating the running maximum strictly, and as tap
    indices only grow, the winner is the running maximum of the winning taps' indices.

    Branch-free, four passes per tap (masked writes under such unpredictable masks measured
    4-5x slower); 1.2-1.3x faster than the maximum first and a search for it after. Each tap
    is copied out first (:func:`copied_taps`): a pass over a strided tap slice (in a
    channels-last image, runs of only C values) costs numpy several times one over a
    contiguous array, and the copy makes both of the tap's float passes contiguous (1.2-1.3x
    faster at C = 6-64 with plain copies; 1.1-1.8x with pixels copied as items). Not taken,
    measured: scanning whole rows at once (the taps as shifted views of a row, every
    stride-th pixel's result kept) and, for overlapping windows, scanning the taps in place
    in stride phases of the input (as the backward sums) were 0.5-0.9x of this.
    """
    better = np.empty_like(maximum, dtype=bool)
    bid = np.empty_like(winner)
    for tap, values in enumerate(copied_taps(padded, window, maximum, np.empty_like(maximum))):
        if tap == 0:
            winner[...] = 0
            continue
        np.greater(values, maximum, out=better)
        np.maximum(maximum, values, out=maximum)
        np.multiply(better.view(np.uint8), winner.dtype.type(tap), out=bid)
        np.maximum(winner, bid, out=winner)


def copied_taps(padded, window: SlidingWindow, first: np.ndarray, rest: np.ndarray):
    """Each kernel tap's values of the NCHW-shaped ``padded``, in tap order: the first
    copied into ``first``, each other into ``rest``, yielded once copied. Channels-last
    pixels are copied as items, as :func:`copy_pixels` does, their views made once per call,
    not per tap (a few µs a tap, on every tile)."""
    padded_pixels = nchw_pixel_items(padded)
    targets = (nchw_pixel_items(first), nchw_pixel_items(rest))
    as_items = padded_pixels is not None and all(pixels is not None for pixels in targets)
    if not as_items:
        targets = (first, rest)
    for tap, (_, _, rows, cols) in enumerate(window.taps()):
        source = padded_pixels[:, rows, cols] if as_items else padded[:, :, rows, cols]
        np.copyto(targets[tap > 0], source)
        yield rest if tap > 0 else first


def copy_pixels(destination: np.ndarray, source: np.ndarray) -> None:
    """``np.copyto(destination, source)`` for NCHW-shaped arrays of one dtype. Where both are
    channels-last, each pixel's channels are copied as one item of C values: numpy then runs
    one copy loop over the pixels, not a loop of C values per pixel (a tap slice's copy
    measured 1.5-2x faster at C = 32-6, about even at 64)."""
    destination_pixels, source_pixels = nchw_pixel_items(destination), nchw_pixel_items(source)
    if destination_pixels is None or source_pixels is None:
        np.copyto(destination, source)
    else:
        np.copyto(destination_pixels, source_pixels)


def nchw_pixel_items(images: np.ndarray) -> np.ndarray | None:
    """An NCHW-shaped ``images`` as an (N, H, W) array of pixels, each one item holding its
    C values (:func:`._pixels.pixel_items`), when its memory is channels-last; else None."""
    if images.shape[1] < 2:
        return None
    return pixel_items(images.transpose(0, 2, 3, 1))


def tiles_input(window: SlidingWindow, input_shape) -> bool:
    """Whether the windows cover the input exactly once each: no padding, no overlap, no gap.
    Backward then writes each tap's slice in place, skipping a zero fill and the additions."""
    return (not any(window.read_pads) and window.stride == window.kernel
            and window.dilation == (1, 1)
            and input_shape[2] == window.output_hw[0] * window.kernel[0]
            and input_shape[3] == window.output_hw[1] * window.kernel[1])


def pad_spatial(images: np.ndarray, window: SlidingWindow, fill: float) -> np.ndarray:
    """``images`` (NCHW-shaped) with ``fill`` around the height and width axes as the windows
    read them (the padding and any ceil_mode overhang), in the same memory layout; ``images``
    itself if there is none."""
    if not any(window.read_pads):
        return images
    top, _, left, _ = window.pads
    height, width = window.input_hw
    padded = np.full_like(images, fill, shape=(*images.shape[:2], *window.read_hw))
    padded[:, :, top:top + height, left:left + width] = images
    return padded


class StridePhases:
    """Sums for a tile of a padded input's gradient, one zeroed array per stride phase (the
    positions congruent to (a, b) modulo the stride), each tap adding into one phase.

    A tap's positions in the padded input are a strided slice, in a channels-last image runs
    of only C values, and a numpy pass over them costs several times one over contiguous
    values. Within its phase they are a block; the phases are channels-last rows of
    ``phase_w`` pixels (whatever the input's layout), and the taps' shares come as rows of
    the same width (:meth:`widened`), +0 past the last window, so a tap adds into its phase
    as one run per sample. The phases go to the padded gradient a pixel at a time at the end
    (:func:`copy_pixels`). Every position still adds its taps' shares to +0 in tap order, and
    no sum is ever −0, so the +0s change no bit: the sums are bitwise those of adding into
    the padded gradient directly.
    """

    def __init__(self, window: SlidingWindow, padded: np.ndarray):
        self.window, self.padded = window, padded
        samples, channels = padded.shape[:2]
        (stride_h, stride_w), (read_h, read_w) = window.stride, window.read_hw
        phase_h, self.phase_w = -(-read_h // stride_h), -(-read_w // stride_w)
        self.sums = {}
        for phase_row in range(stride_h):
            for phase_col in range(stride_w):
                # a spare row: a tap's run goes on past its last row's windows
                self.sums[phase_row, phase_col] = np.zeros(
                    (samples, phase_h + 1, self.phase_w, channels), padded.dtype)

    def widened(self, values: np.ndarray, fill) -> np.ndarray:
        """``values`` (NCHW-shaped, one per window) as channels-last rows of ``phase_w``
        pixels, those past the last window set to ``fill``."""
        samples, channels, out_h, out_w = values.shape
        rows = np.empty((samples, out_h, self.phase_w, channels), values.dtype)
        rows[:, :, out_w:] = fill
        copy_pixels(rows[:, :, :out_w].transpose(0, 3, 1, 2), values)
        return rows

    def add(self, row: int, col: int, shares: np.ndarray) -> None:
        """Add the kernel tap at (``row``, ``col``)'s ``shares`` (rows from :meth:`widened`,
        +0 past the last window) into its phase, one run per sample; the +0s land on the
        next row's first pixels or the spare row."""
        (stride_h, stride_w), (dilation_h, dilation_w) = self.window.stride, self.window.dilation
        top, left = row * dilation_h, col * dilation_w
        sums = self.sums[top % stride_h, left % stride_w]
        start = ((top // stride_h) * self.phase_w + left // stride_w) * sums.shape[3]
        shares_run = shares.reshape(len(shares), -1)
        sums_run = sums.reshape(len(sums), -1)[:, start:start + shares_run.shape[1]]
        sums_run += shares_run

    def copy_out(self) -> None:
        """Write every phase's sums to its positions in the padded gradient."""
        stride_h, stride_w = self.window.stride
        for (row, col), sums in self.sums.items():
            positions = self.padded[:, :, row::stride_h, col::stride_w]
            copy_pixels(positions, sums.transpose(0, 3, 1, 2)[:, :, :positions.shape[2],
                                                               :positions.shape[3]])


def zeros_padded(layout_like: np.ndarray, input_shape, window: SlidingWindow, dtype):
    """A zero gradient buffer for the input as the windows read it (padding, overhang), in
    the memory layout of ``layout_like``."""
    return np.zeros_like(layout_like, dtype=dtype, shape=(*input_shape[:2], *window.read_hw))


def unpad(padded: np.ndarray, pads) -> np.ndarray:
    """The interior of a padded NCHW array (a view)."""
    top, bottom, left, right = pads
    return padded[:, :, top:padded.shape[2] - bottom, left:padded.shape[3] - right]


@hookimpl
def graphnet_register_ops(registry):
    registry.add_op(MaxPool2d)
    registry.add_op(AvgPool2d)
    registry.add_op(GlobalAvgPool)
