"""Stride-1 convolution as one matrix product per kernel tap, with no im2col matrix.

A tile of samples is copied, channels-last, into a flat buffer with one row per pixel, its
image rows laid end to end and its samples stacked, with zero gaps between rows and between
samples at least as wide as the padding. Then the input pixel that kernel tap (r, c) reads
for output position q sits a fixed number of rows further on, the same for every q:

    offset(r, c) = (r·dilation_h − top) · pitch + c·dilation_w − left

so each tap's share of the whole tile's output is one product of a *contiguous slice* of the
buffer (positions × channels) with the tap's (channels × filters) weight, added into the
output by BLAS itself (:func:`graphnet.blas.sum_products`): no gathering, no partial sums.
Reads that fall in padding land on the zero gaps. The output is computed on the same grid,
gaps included (a few percent more work for "same"-padded layers), and returned as a view of
its valid part.

Backward runs the same taps: the weight gradient of tap t is (buffer slice)ᵀ × output
gradient, and the input gradient adds each tap's output gradient × weightᵀ at the slice the
tap read, the output gradient sitting on the same grid with zeros at the gap positions.
Up to 32 filters (on grids without pairs) both run a kernel row's taps as one product,
through the output gradient copied kernel-width pixels wide (:class:`WideGradient`: the
classic net's conv2 backward 1.03-1.09x faster at batch 64, 1.07-1.11x at 256). From 32
channels the weight gradient's products read a copy of the input with every kernel row's
pixels side by side (:func:`stacked_input`), kh times deeper (the classic net's conv3
backward 1.1x faster).

Measured at batch 256 on two threads against the kernel-row products of :mod:`.tiled`,
on the bench's 32-channel 3×3 layer over 32×32: forward and input gradient 1.3x faster, weight
gradient 5% slower, a whole backward 1.1x faster; the output and input gradient are views of
the grid the products wrote (no copy out), which consumers read about 1.2x slower than
contiguous memory. Over fewer channels or with more waste, see TapKernel.

Over 8-24 channels the taps' products are too shallow for BLAS (~50 GFLOP/s per core at 16
channels against ~65 at 32): there the grid's pitch is made even and the taps are computed
over pairs of neighbouring pixels (:mod:`.pairs`), two thirds of the work in products twice
as deep and wide: the products 1.1x faster, a 16-channel layer 1.05-1.1x (see TapKernel).

Measured not to pay, on the two-core machine the figures come from (interleaved A/B in one
process, CPU time where other processes held the cores): splitting one image's grid positions
between the two threads (the pool's hand-off and join took 80-200 µs even at real-time
priority, against some 300 µs of products in the classic net's batch-1 layer); copying the
output out of the grid contiguous (0-5% on the forward, no gain downstream once batch norm
reads the grid's view as rows); products over a copy three pixels wide (inner dimension three
times the channels: -3% to +20% per layer, copies included, as noisy as the machine); strided
convs as taps over the input's phases (stride 2, 16-64 channels: forward 1.2-1.4x slower than
im2col, backward within 15% either way); Winograd F(2×2) at 16 channels (forward and backward
2-2.5x slower). At 16 channels, a tile's nine forward products (0.40 ms) against other
layouts (products alone unless said): over groups of four pixels (64 deep and wide, 6 of 16
blocks zero) 0.47 ms; over a copy of each pixel with its two vertical neighbours (48 deep,
three products, pairs or not) 0.32 ms plus 0.11 ms of copying; over a copy of each pair's
four input pixels (64 deep, 2 of 8 blocks zero) 0.37 ms plus 0.04 ms; channels-first
buffers (filters × positions products) 0.39 ms. Pairs: 0.36 ms.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from graphnet import blas, parallel

from .._pixels import channel_rows
from .._window import SlidingWindow
from .pairs import pair_plan


@dataclass(frozen=True)
class TapKernel:
    """One-group, stride-1 convolutions over enough channels, with little of the grid wasted."""

    min_channels: int = 8
    """Fewest input channels (and filters) for tap products: each product's inner dimension
    is the channel count. With 8 channels and filters (3×3 over 32×32, batch 128) a training
    step's conv was 1.25x faster than by kernel rows; with 4, the forward was 1.9x slower."""
    max_waste: float = 1.2
    """Most grid positions per output position. A "valid" conv computes its output on the
    whole input grid: 5×5 over 28×28 (waste 1.36) and 16×16 "same" (1.27) were 5-10% slower
    than by kernel rows, 3×3 "same" over 16×16 and 32×32 (1.13, 1.06) 1.1-1.3x faster."""
    tile_bytes: int = 5 << 18
    """Target bytes of a backward tile's input and output buffers together: they stay in the
    L2 cache through the taps' products, beside the gradient's copies (on the bench's
    32-channel 32×32 layers 4 samples were 1.15x faster than 8; twice this made the classic
    net's training step at batch 256 5 % slower)."""
    forward_tile_bytes: int = 5 << 20
    """The same for a forward tile, whose only buffers are those two: larger tiles took
    fewer calls for the same products (two threads, inference, interleaved, against
    tile_bytes): the classic net at batch 256 39.8 → 35.4 ms, at 64 9.7 → 9.2 ms, the CIFAR
    ResNet at 256 32.1 → 31.2 ms; every thread still gets a few tiles (TapGrid.tile)."""
    tile: int | None = None
    """Samples per tile, if fixed; by default from the tile bytes and the thread count."""
    pair_channels: tuple[int, int] = (8, 24)
    """Fewest and most channels and filters for products over pairs of pixels (:mod:`.pairs`),
    where their taps pay for it. 3×3 over 32×32 with a fused ReLU, one thread, CPU time,
    interleaved, forward and backward faster by: 1.10x, 1.12x at 8 channels (batch 64) and
    1.16x, 1.27x (256); 1.03-1.10x, 1.04-1.09x at 16 (64) and 1.07-1.10x, 1.05-1.06x (256);
    1.08x, 1.07x at 24 (64) and 1.04x, 1.05x (256). At 32: 1.05x, 1.06x (64) but 1.06x, 0.94x
    (256) and 0.97x, 0.94x at batch 1; at 64: 1.01x, 0.97x."""
    pair_max_growth: float = 1.04
    """Most grid positions the even pitch of pairs may add: over 32×32 (pitch 33 → 34, 3%
    more positions) pairs paid as above, over 16×16 (17 → 18, 6%) only 1.00-1.05x."""
    wide_filters: int = 32
    """Most filters for a backward through the output gradient copied kernel-width pixels wide
    (:class:`WideGradient`), on grids without pairs. 3×3 with a fused ReLU, one thread, CPU
    time, best of and median ratio over 21-41 interleaved runs in each order: 32 → 32 channels
    over 32×32 (the classic net's conv2) 1.03-1.09x faster at batch 64 (44.70 → 41.05 ms at
    best), 1.07-1.11x at 256 (194.9 → 176.0 ms), 1.04x at 1; 64 → 32 over 16×16 1.08-1.13x;
    32 → 32 over 16×16 1.03-1.07x; 8 and 16 channels over 16×16 1.07-1.13x and 1.04-1.09x;
    48 → 48 1.03x; 32 → 64 (the classic net's conv3) 0.95-1.01x."""
    stack_min_channels: int = 32
    """Fewest channels for a weight gradient over the input rows of every kernel row side by
    side (:func:`stacked_input`): kh times as many rows in each product. 3×3, one tile in
    cache, one thread, the products and the copy (OpenBLAS's SkylakeX kernels): 32 → 32 over
    32×32 with the widened gradient 0.57 → 0.45 ms, tap by tap 0.66 → 0.55; 32 → 64 over
    16×16 0.60 → 0.46; 64 → 64 over 8×8 0.63 → 0.58; at 16 channels the products gained
    nothing (0.19 ms each way) for the copy. In the classic net (two threads, CPU time,
    median of interleaved steps), conv3's backward (32 → 64) 9.7 → 8.8 ms at batch 64 and
    40.1 → 35.9 at 256, conv2's (32 → 32, widened) 18.7 → 18.1 and 74.9 → 72.5."""
    name = "taps"

    def fits(self, window: SlidingWindow, channels: int, filters: int, groups: int) -> bool:
        if groups != 1 or window.stride != (1, 1) or min(channels, filters) < self.min_channels:
            return False
        return self.layer_grid(window, channels, filters).waste <= self.max_waste

    def layer_grid(self, window: SlidingWindow, channels: int, filters: int) -> TapGrid:
        """The layer's grid: of even pitch, for products over pairs, where they pay."""
        plain = tap_grid(channels, window)
        low, high = self.pair_channels
        if low <= min(channels, filters) and max(channels, filters) <= high:
            grid = tap_grid(channels, window, pairs=True)
            if grid.pairs.pays and grid.per_sample <= plain.per_sample * self.pair_max_growth:
                return grid
        return plain

    def takes_epilogue(self, window, channels, filters, groups) -> bool:
        """Always: each tile's products are still in cache."""
        return True

    def forward(self, images, weight, bias, window: SlidingWindow, groups: int = 1, *,
                epilogue=None):
        """(output, saved): :func:`tap_forward`'s output, and the input itself."""
        grid, tile = self.grid(images, weight, window, self.forward_tile_bytes)
        return tap_forward(images, weight, bias, grid, tile, epilogue=epilogue), images

    def backward(self, grad_output, images, weight, window: SlidingWindow, groups: int = 1, *,
                 input_grad: bool, param_grads: bool, bias: bool, epilogue=None, output=None):
        grid, tile = self.grid(images, weight, window, self.tile_bytes)
        products = grid.gradient_products(wide=len(weight) <= self.wide_filters,
                                          stacked=images.shape[1] >= self.stack_min_channels)
        return tap_backward(grad_output, images, weight, grid, tile, input_grad=input_grad,
                            param_grads=param_grads, bias=bias, epilogue=epilogue,
                            output=output, products=products)

    def grid(self, images, weight, window: SlidingWindow,
             tile_bytes: int) -> tuple[TapGrid, int]:
        """The batch's grid and samples per tile (tiles of about ``tile_bytes``)."""
        grid = self.layer_grid(window, images.shape[1], len(weight))
        return grid, self.tile or grid.tile(len(weight), images.itemsize, len(images),
                                            tile_bytes)


@functools.lru_cache(maxsize=256)
def tap_grid(channels: int, window: SlidingWindow, pairs: bool = False) -> TapGrid:
    """The TapGrid of a layer, made once (it is only read): making it took ~4 µs, asked for
    by fits and again by each forward and backward."""
    return TapGrid(channels, window, pairs)


class TapGrid:
    """The flat, gap-stacked layout of a stride-1 conv's tiles, and each tap's offset in it.
    With ``pairs``, the pitch is even and ``pairs`` is the taps' :class:`.pairs.PairPlan`
    (``input_pairs`` the input gradient's), else ``pairs`` is None."""

    def __init__(self, channels: int, window: SlidingWindow, pairs: bool = False):
        self.channels, self.window = channels, window
        height, width = self.input_hw = window.input_hw
        top, bottom, left, right = window.pads
        out_h, out_w = window.output_hw
        # gaps at least as wide as the padding, and as the output's overhang of the input
        gap_h = max(top, bottom, out_h - height)
        gap_w = max(left, right, out_w - width)
        self.pitch = width + gap_w
        if pairs:  # an odd pitch would split the pairs of every other image row
            self.pitch += self.pitch % 2
        self.rows_per_sample = height + gap_h
        self.per_sample = self.rows_per_sample * self.pitch
        self.output_hw = window.output_hw
        dilation_h, dilation_w = window.dilation
        self.offsets = [(row * dilation_h - top) * self.pitch + col * dilation_w - left
                        for row in range(window.kernel[0]) for col in range(window.kernel[1])]
        # zero rows before the first sample and after the last: the taps read that far out
        self.before = max(0, -min(self.offsets))
        self.after = max(0, max(self.offsets))
        self.pairs = pair_plan(tuple(self.offsets)) if pairs else None
        # made once (their terms are cached per object), keyed as gradient_products picks
        self._gradients = ({"pairs": PairGradient(self)} if pairs else
                           {(False, False): TapGradient(self), (True, False): WideGradient(self),
                            (False, True): StackedTapGradient(self),
                            (True, True): StackedWideGradient(self)})

    def gradient_products(self, wide: bool = False, stacked: bool = False):
        """How the backward's products run on this grid: over pixel pairs on a grid of pairs,
        else one kernel row at a time through a widened gradient if ``wide`` (and the kernel
        is wider than one pixel), else one tap at a time; with ``stacked`` (and a kernel
        taller than one pixel) the weight gradient's products read every kernel row's input
        at once. Each of :class:`TapGradient`, :class:`PairGradient`, :class:`WideGradient`
        and the stacked two gives the gradient buffer's zero ``margins``, the ``source`` the
        products read, a tile's weight gradient ``part``, the input gradient's ``matrices``
        and products (``add_input``), and ``taps`` from the sum of the parts."""
        if self.pairs is not None:
            return self._gradients["pairs"]
        kernel_h, kernel_w = self.window.kernel
        return self._gradients[wide and kernel_w > 1, stacked and kernel_h > 1]

    @property
    def waste(self) -> float:
        """Grid positions computed per output position."""
        return self.per_sample / max(1, self.output_hw[0] * self.output_hw[1])

    def tile(self, filters: int, itemsize: int, batch: int, tile_bytes: int) -> int:
        """Samples per tile: about ``tile_bytes`` of buffers, and every thread a few tiles."""
        per_sample = self.per_sample * (self.channels + filters) * itemsize
        balanced = -(-batch // (parallel.TILES_PER_THREAD * parallel.num_threads()))
        return max(1, min(tile_bytes // per_sample, balanced))

    def buffer(self, name: str, tile: int, values: np.ndarray, count: int, margin_before: int,
               margin_after: int, fill=None) -> np.ndarray:
        """This thread's zero-gapped flat buffer for ``count`` samples, ``values`` (count, h, w,
        columns) copied in at the top-left of each sample's block (or ``fill(values, view)``
        writes them), ``margin_before`` zero rows first. The gaps are zeroed once, when the
        buffer is made, and never written."""
        columns = values.shape[3]
        rows = margin_before + tile * self.per_sample + margin_after
        # keyed by where the gaps are, the image size too: a layer whose pixels cover another
        # layer's gaps (same pitch, larger image) must not share its buffer. (A new tile size
        # changes only the length: scratch then makes a new zeroed buffer.)
        gaps = (values.shape[1:3], self.pitch, self.rows_per_sample, margin_before)
        key = f"conv_taps_{name}{gaps}"
        buffer = parallel.scratch(key, (rows, columns), values.dtype, zeroed=True)
        end = margin_before + count * self.per_sample
        view = self.valid(buffer[margin_before:end], count, values.shape[1:3])
        if fill is None:
            view[...] = values
        else:
            fill(values, view)
        # a short last tile: the next sample's block may hold an earlier tile's values, which
        # the taps of the last samples would read past the end
        buffer[end:end + margin_after] = 0
        return buffer

    def valid(self, grid_rows: np.ndarray, count: int, hw) -> np.ndarray:
        """The (count, h, w, columns) view of the positions of grid-shaped rows that hold real
        pixels or outputs. Its image rows are contiguous: numpy copies them whole (measured 3x
        faster than the same copy seen as rows of ``columns`` values)."""
        columns = grid_rows.shape[1]
        blocks = grid_rows.reshape(count, self.rows_per_sample, self.pitch * columns)
        return blocks[:, :hw[0], :hw[1] * columns].reshape(count, *hw, columns)


class TapGradient:
    """The backward's products one kernel tap at a time: tap t's weight gradient is (the input
    rows it read)ᵀ × the output gradient, its input gradient the output gradient × tapᵀ added
    at those rows. The gradient's buffer has the grid's ``after`` zero rows before it and
    ``before`` after it, as far as the input gradient's products read."""

    def __init__(self, grid: TapGrid):
        self.margins = (grid.after, grid.before)
        self.tap_count = len(grid.offsets)
        self.input_starts = [grid.before + offset for offset in grid.offsets]
        self.grad_starts = [grid.after - offset for offset in grid.offsets]

    def source(self, grads: np.ndarray, positions: int, capacity: int) -> np.ndarray:
        """What the products read: the gradient's buffer itself."""
        return grads

    def part_shape(self, channels: int, filters: int) -> tuple:
        return (self.tap_count, channels, filters)

    def weight_part(self, inputs, grads, channels: int, filters: int, positions: int):
        """A tile's weight gradient, (taps, channels, filters)."""
        grad_rows = grads[self.margins[0]:self.margins[0] + positions]
        return blas.window_products(inputs, self.input_starts, grad_rows,
                                    np.empty(self.part_shape(channels, filters), grads.dtype))

    def matrices(self, taps: np.ndarray) -> np.ndarray:
        """The input gradient's matrices: the taps, transposed by the products."""
        return taps

    def add_input(self, grads, matrices, grad_inputs, channels: int, filters: int,
                  positions: int) -> None:
        blas.sum_products(grads, self.grad_starts, matrices, grad_inputs, trans_b=True)

    def taps(self, total: np.ndarray, channels: int, filters: int) -> np.ndarray:
        """(taps, channels, filters) from the sum of the tiles' parts."""
        return total


class PairGradient(TapGradient):
    """The backward's products over pairs of pixels (:mod:`.pairs`), on a grid of even pitch:
    the weight gradient is the forward's pair products taken as (input)ᵀ × (output gradient),
    each tap's two blocks (one per output parity) summed once, after the tiles; the input
    gradient runs the pair products of the transposed taps at the negated offsets."""

    def __init__(self, grid: TapGrid):
        super().__init__(grid)
        self.before, self.after = grid.before, grid.after
        self.plan = grid.pairs
        self.input_plan = pair_plan(tuple(-offset for offset in grid.offsets))

    def part_shape(self, channels: int, filters: int) -> tuple:
        return (2 * self.tap_count * channels * filters,)

    def weight_part(self, inputs, grads, channels: int, filters: int, positions: int):
        """A tile's weight gradient blocks, packed as the pair products' matrices."""
        return blas.strided_products(
            inputs, grads, np.empty(self.part_shape(channels, filters), grads.dtype),
            self.plan.gradient_terms(channels, filters, positions, self.before, self.after))

    def matrices(self, taps: np.ndarray) -> np.ndarray:
        return self.input_plan.pack(np.ascontiguousarray(taps.transpose(0, 2, 1)))

    def add_input(self, grads, matrices, grad_inputs, channels: int, filters: int,
                  positions: int) -> None:
        blas.strided_products(grads, matrices, grad_inputs, self.input_plan.product_terms(
            filters, channels, positions, self.after))

    def taps(self, total: np.ndarray, channels: int, filters: int) -> np.ndarray:
        return self.plan.unpack_sum(total, channels, filters)


class WideGradient:
    """The backward's products one kernel row at a time, through the output gradient copied
    ``kw`` pixels wide (``kw`` the kernel's width, ``d`` its column dilation).

    Row q of the copy holds the gradient of grid positions q, q + d, …, q + (kw−1)·d side by
    side (overlapping rows of the gradient's grid, one numpy copy: :meth:`source`). The taps of
    kernel row r sit at offset(r, 0) + c·d, so block b of the copy pairs with tap (r, kw−1−b)
    when the copy is read ``reach`` = (kw−1)·d rows early, and each kernel row is one product
    each way:

    - weight gradient: (input buffer from offset(r, 0))ᵀ × copy, (channels × kw·filters),
      block b tap (r, kw−1−b)'s gradient; the sum runs over ``reach`` more rows than the
      tile's positions, whose extra terms meet the gradient's zero margins;
    - input gradient: copy × the row's taps transposed and stacked right to left
      (kw·filters × channels, :meth:`matrices`), added at each position.

    The products are kw times wider (weight gradient) and deeper (input gradient) than one
    tap's. 32 channels and filters, 3×3, a tile of four 32×32 samples in cache, one thread,
    CPU time: nine weight products 1.23-1.31 ms → three 1.11 ms, nine input products
    1.19-1.23 → three 1.01-1.04 ms, the copy 0.06 ms; in the layer's backward (batch 64)
    weight products 21.1 → 17.6 ms, input products 20.8 → 17.2 ms, the copy 1.3 ms. At 64
    filters the products gain less (weight 1.67 → 1.57 ms, input 1.59 → 1.49 ms a tile) and
    the copy, three times the gradient, no longer fits the cache beside the tile's other
    buffers: no gain on the layer (see TapKernel.wide_filters).

    Measured not to pay (3×3, 32 → 32 channels over 32×32, batch 64): the weight gradient as
    one product of all nine taps, (kh·channels × kw·filters), over a second copy of the input
    stacking each pixel with the pixels ``pitch`` and 2·``pitch`` rows on: the product 86-89
    GFLOP/s in cache against 72 for the three above (15.6 against 17.6 ms in the layer), but
    the copy took 2.1 ms (the layer 1.02-1.07x faster, against 1.03-1.09x without it); that
    copy written straight from the images, without the input's grid buffer, 3.6 ms; the wide
    copy's first block filled by the ReLU's gradient and the others copied from it (one numpy
    copy fewer, but of rows 32 values long): 0.98x. Nine taps wide (the input gradient 288
    deep: 83 against 79 GFLOP/s) would copy the gradient nine times.

    The gradient's buffer needs at least ``reach`` zero rows on each side (``margins``)."""

    def __init__(self, grid: TapGrid):
        self.kernel_w = grid.window.kernel[1]
        self.dilation = grid.window.dilation[1]
        self.reach = (self.kernel_w - 1) * self.dilation
        self.margins = (max(grid.after, self.reach), max(grid.before, self.reach))
        self.bases = tuple(grid.offsets[::self.kernel_w])  # offset(r, 0) of each kernel row
        self.before = grid.before

    def source(self, grads: np.ndarray, positions: int, capacity: int) -> np.ndarray:
        """What the products read: this thread's copy of the gradient's buffer kw pixels wide,
        its ``positions`` rows and the margins but ``reach`` (a scratch buffer for
        ``capacity`` positions, so that a short last tile reuses it)."""
        extra = sum(self.margins) - self.reach
        rows, capacity = positions + extra, capacity + extra
        filters, itemsize = grads.shape[1], grads.itemsize
        wide = parallel.scratch("conv_taps_grad_wide", (capacity, self.kernel_w * filters),
                                grads.dtype)[:rows]
        overlapping = np.lib.stride_tricks.as_strided(
            grads, (rows, self.kernel_w, filters),
            (filters * itemsize, self.dilation * filters * itemsize, itemsize))
        np.copyto(wide.reshape(rows, self.kernel_w, filters), overlapping)
        return wide

    def part_shape(self, channels: int, filters: int) -> tuple:
        return (len(self.bases) * self.kernel_w * channels * filters,)

    def weight_part(self, inputs, wide, channels: int, filters: int, positions: int):
        """A tile's weight gradient, each kernel row's (channels × kw·filters) blocks."""
        return blas.strided_products(inputs, wide,
                                     np.empty(self.part_shape(channels, filters), wide.dtype),
                                     self.weight_terms(channels, filters, positions))

    def add_input(self, wide, matrices, grad_inputs, channels: int, filters: int,
                  positions: int) -> None:
        blas.strided_products(wide, matrices, grad_inputs,
                              self.input_terms(channels, filters, positions))

    @functools.lru_cache(maxsize=64)
    def weight_terms(self, channels: int, filters: int, positions: int) -> tuple:
        """:func:`graphnet.blas.strided_products` terms writing each kernel row's (channels ×
        kw·filters) gradient blocks, from the input buffer and the wide copy."""
        wide, margin = self.kernel_w * filters, self.margins[0]
        return tuple((True, channels, wide, positions + self.reach,
                      (self.before + base) * channels, channels, (margin - self.reach) * wide,
                      wide, row * channels * wide, wide, 0.0)
                     for row, base in enumerate(self.bases))

    @functools.lru_cache(maxsize=64)
    def input_terms(self, channels: int, filters: int, positions: int) -> tuple:
        """Terms adding each kernel row's product into the input gradient's ``positions``
        rows, from the wide copy and :meth:`pack`'s matrices."""
        wide, margin = self.kernel_w * filters, self.margins[0]
        return tuple((False, positions, channels, wide, (margin - base - self.reach) * wide, wide,
                      row * wide * channels, channels, 0, channels, float(row > 0))
                     for row, base in enumerate(self.bases))

    def matrices(self, taps: np.ndarray) -> np.ndarray:
        """The input gradient's matrices, flat: per kernel row the taps (channels × filters)
        transposed and stacked, right to left."""
        _, channels, filters = taps.shape
        rows = taps.reshape(-1, self.kernel_w, channels, filters)[:, ::-1]
        return np.ascontiguousarray(rows.transpose(0, 1, 3, 2)).reshape(-1)

    def taps(self, total: np.ndarray, channels: int, filters: int) -> np.ndarray:
        """(taps, channels, filters) from the weight products' blocks."""
        blocks = total.reshape(-1, channels, self.kernel_w, filters)[:, :, ::-1]
        return blocks.transpose(0, 2, 1, 3).reshape(-1, channels, filters)


def stacked_input(inputs: np.ndarray, grid: TapGrid, positions: int) -> np.ndarray:
    """This thread's copy of the input rows the kernel rows' taps read, side by side: row j
    holds ``inputs[grid.before + offset(r, 0) + j]`` for each kernel row r, kh·C values, for
    j < ``positions`` + the kernel's reach along a row, (kw − 1)·dilation. One product over
    it computes a tap for every kernel row at once: (kh·C × positions) by the gradient, where
    one tap's product is C rows deep, which BLAS runs slowly (3×3 over 32 channels, one tile
    in cache: the nine taps' weight products at 130 GFLOP/s, three stacked ones at 174).
    ``inputs`` is the tile's input buffer (:meth:`TapGrid.buffer`)."""
    channels = inputs.shape[1]
    kernel_w, dilation = grid.window.kernel[1], grid.window.dilation[1]
    reach = (kernel_w - 1) * dilation
    rows = positions + reach
    bases = grid.offsets[::kernel_w]
    # a buffer for the tile's capacity, so that a short last tile reuses it
    capacity = len(inputs) - grid.before - grid.after + reach
    stacked = parallel.scratch("conv_taps_stacked", (capacity, len(bases) * channels),
                               inputs.dtype)[:rows]
    for row, base in enumerate(bases):
        start = grid.before + base
        np.copyto(stacked[:, row * channels:(row + 1) * channels], inputs[start:start + rows])
    return stacked


class StackedWeightPart:
    """The weight gradient's products over :func:`stacked_input` (every kernel row's input
    side by side), for a gradient class that gives their ``stacked_terms``; the rest of the
    class (margins, input gradient, taps) is its own."""

    def __init__(self, grid: TapGrid):
        super().__init__(grid)
        self.grid = grid

    def weight_part(self, inputs, source, channels: int, filters: int, positions: int):
        """A tile's weight gradient, from its input buffer and what the products read."""
        stacked = stacked_input(inputs, self.grid, positions)
        return blas.strided_products(stacked, source,
                                     np.empty(self.part_shape(channels, filters), source.dtype),
                                     self.stacked_terms(channels, filters, positions))


class StackedTapGradient(StackedWeightPart, TapGradient):
    """:class:`TapGradient` with the weight gradient one product per kernel column over the
    stacked input: column c's product gives taps (r, c) for every r, (kh·channels × filters),
    so a tile's part holds the taps column by column."""

    def __init__(self, grid: TapGrid):
        super().__init__(grid)
        (self.kernel_h, self.kernel_w), self.dilation = grid.window.kernel, grid.window.dilation[1]

    def part_shape(self, channels: int, filters: int) -> tuple:
        return (self.tap_count * channels * filters,)

    @functools.lru_cache(maxsize=64)
    def stacked_terms(self, channels: int, filters: int, positions: int) -> tuple:
        """:func:`graphnet.blas.strided_products` terms, one per kernel column."""
        deep = self.kernel_h * channels
        return tuple((True, deep, filters, positions, column * self.dilation * deep, deep,
                      self.margins[0] * filters, filters, column * deep * filters, filters, 0.0)
                     for column in range(self.kernel_w))

    def taps(self, total: np.ndarray, channels: int, filters: int) -> np.ndarray:
        """(taps, channels, filters) from the kernel columns' blocks."""
        columns = total.reshape(self.kernel_w, self.kernel_h, channels, filters)
        return columns.transpose(1, 0, 2, 3).reshape(-1, channels, filters)


class StackedWideGradient(StackedWeightPart, WideGradient):
    """:class:`WideGradient` with the weight gradient one product over the stacked input and
    the widened gradient: (kh·channels × kw·filters), every tap at once, laid out as
    WideGradient's kernel-row blocks."""

    @functools.lru_cache(maxsize=64)
    def stacked_terms(self, channels: int, filters: int, positions: int) -> tuple:
        """The one :func:`graphnet.blas.strided_products` term of the weight gradient."""
        deep, wide = len(self.bases) * channels, self.kernel_w * filters
        return ((True, deep, wide, positions + self.reach, 0, deep,
                 (self.margins[0] - self.reach) * wide, wide, 0, wide, 0.0),)


def tap_weights(weight: np.ndarray) -> np.ndarray:
    """(filters, channels, kh, kw) → (kh·kw, channels, filters): each tap's product matrix."""
    filters, channels = weight.shape[:2]
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(-1, channels, filters)


def tap_forward(images: np.ndarray, weight: np.ndarray, bias, grid: TapGrid, tile: int, *,
                epilogue=None) -> np.ndarray:
    """The NHWC output of a stride-1, one-group conv (see the module docstring): a view of the
    grid the products wrote, gaps skipped, so no copy. Consumers take any memory layout. An
    ``epilogue`` is applied to each tile's products while they are in cache."""
    taps = tap_weights(weight)
    filters, channels = weight.shape[:2]
    packed = None if grid.pairs is None else grid.pairs.pack(taps)
    source = images.transpose(0, 2, 3, 1)
    output_grid = np.empty((len(images) * grid.per_sample, filters), dtype=images.dtype)
    starts = [grid.before + offset for offset in grid.offsets]

    def work(index, part):
        count = part.stop - part.start
        inputs = grid.buffer("input", tile, source[part], count, grid.before, grid.after)
        products = output_grid[part.start * grid.per_sample:part.stop * grid.per_sample]
        if bias is not None:
            rows, row = channel_rows(products, bias)
            rows[...] = row  # the taps' products are added onto it by BLAS
        if grid.pairs is None:
            blas.sum_products(inputs, starts, taps, products, accumulate=bias is not None)
        else:
            blas.strided_products(inputs, packed, products, grid.pairs.product_terms(
                channels, filters, len(products), grid.before), accumulate=bias is not None)
        if epilogue is not None:
            epilogue.forward(products)  # the gaps' values too: never read

    parallel.run_tiles(work, len(images), tile)
    return grid.valid(output_grid, len(images), grid.output_hw)


def tap_backward(grad_output, images, weight, grid: TapGrid, tile: int, *, input_grad: bool,
                 param_grads: bool, bias: bool, epilogue=None, output=None, products=None):
    """(input gradient NHWC or None, weight gradient or None, bias gradient or None) of
    :func:`tap_forward`'s conv, in one pass over the tiles. Each tile's parameter gradients are
    kept and summed in tile order, so the result does not depend on the thread count. With an
    ``epilogue``, ``grad_output`` is the gradient of its result, ``output``, and each tile's
    gradient goes through the epilogue as it is copied onto the grid. ``products`` says how
    the products run (:meth:`TapGrid.gradient_products`; by default tap by tap, or over pairs
    on a grid of pairs)."""
    products = products or grid.gradient_products()
    taps = tap_weights(weight)
    filters, channels = weight.shape[:2]
    source = images.transpose(0, 2, 3, 1)
    grad_nhwc = grad_output.transpose(0, 2, 3, 1)
    output_nhwc = None if epilogue is None else output.transpose(0, 2, 3, 1)
    tiles = -(-len(images) // tile)
    # written on the grid and returned as a view of its pixels, as tap_forward's output
    grad_input_grid = (np.empty((len(images) * grid.per_sample, channels), dtype=images.dtype)
                       if input_grad else None)
    weight_parts = [None] * tiles
    bias_parts = [None] * tiles
    matrices = products.matrices(taps) if input_grad else None
    margin_before, margin_after = products.margins

    def work(index, part):
        count = part.stop - part.start
        positions = count * grid.per_sample
        # the output gradient on the grid, zero at the gap positions and in margins as wide as
        # the products read past the tile's positions
        fill = None if epilogue is None else (
            lambda grad, view: epilogue.backward(grad, output_nhwc[part], view))
        grads = grid.buffer("grad", tile, grad_nhwc[part], count, margin_before, margin_after,
                            fill)
        read = products.source(grads, positions, tile * grid.per_sample)
        if param_grads:
            inputs = grid.buffer("input", tile, source[part], count, grid.before, grid.after)
            weight_parts[index] = products.weight_part(inputs, read, channels, filters,
                                                       positions)
            if bias:
                bias_parts[index] = blas.column_sums(
                    grads[margin_before:margin_before + positions])
        if input_grad:
            grad_inputs = grad_input_grid[part.start * grid.per_sample:
                                          part.stop * grid.per_sample]
            products.add_input(read, matrices, grad_inputs, channels, filters, positions)

    parallel.run_tiles(work, len(images), tile)
    grad_weight = grad_bias = None
    if param_grads:
        total = parallel.ordered_sum(weight_parts, products.part_shape(channels, filters),
                                     images.dtype)
        kernel_h, kernel_w = grid.window.kernel
        grad_weight = np.ascontiguousarray(products.taps(total, channels, filters).reshape(
            kernel_h, kernel_w, channels, filters).transpose(3, 2, 0, 1))
        if bias:
            grad_bias = parallel.ordered_sum(bias_parts, (filters,), images.dtype)
    grad_input = (grid.valid(grad_input_grid, len(images), grid.input_hw) if input_grad
                  else None)
    return grad_input, grad_weight, grad_bias

