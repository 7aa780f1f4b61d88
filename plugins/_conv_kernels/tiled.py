"""One-group convolution by im2col over a batch in tiles, across graphnet's worker threads.

Per tile of samples (per chunk of a tile's samples, for images of 1-3 channels), the im2col
matrix is built into this thread's scratch buffer, multiplied by BLAS straight into the output,
and forgotten: no matrix for the whole batch (hundreds of MB for a 32-channel 32×32 layer at
batch 256, streamed through memory twice) and no padded copy of the input. Backward rebuilds a
tile's matrix from the input, which the op saves by reference.
The threads each take a contiguous run of tiles with single-threaded BLAS
(:mod:`graphnet.parallel`); each thread sums its tiles' weight gradients and the threads' sums
are added in order, so a run is reproducible for a given thread count.

Images arrive NCHW-shaped in any memory layout; outputs and input gradients are channels-last
(NHWC) arrays, returned by the op as NCHW-shaped views.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from graphnet import blas, parallel

from .._pixels import channel_rows, pixel_items
from .._window import SlidingWindow
from .im2col import (flipped_weight_matrix, im2col, scatter_taps, strided_windows,
                     torch_layout, transposed_gradient, transposed_window, weight_matrix,
                     window_view)

PLANE_ROW_PAD = 16
"""Values of padding after each row of a channel-plane matrix's buffer: rows a power of two
apart in memory (8192 floats, a chunk of 32×32 samples) made BLAS's reads of the transposed
matrix collide in cache, the product 1.1-1.25x slower than with rows a cache line longer."""


@dataclass(frozen=True)
class TiledKernel:
    """Any one-group convolution: im2col per tile of samples (or one product per kernel row
    at stride 1), the input gradient by a transposed convolution or col2im."""

    row_min_columns: int = 64
    """Kernel-row products (see Columns) need at least this many columns (kernel width ×
    channels) to pay: LeNet's 5×5 over 6 channels (30) measured 1.5x slower that way, 3×3
    over 32 (96) 1.13x faster. They also need a sample's output positions to be no fewer
    than the filters: the products run one per sample (a row matrix per sample, each
    sample's weight panel packed again by BLAS), and with fewer rows than columns that
    packing costs more than the multiplying. 3×3 at batch 64, one product per kernel row
    against one im2col product per tile: 512 → 512 over 4×4 (VGG-11's fourth stage) forward
    25.7 → 17.6 ms, backward 84.7 → 47.8; over 2×2 25.9 → 9.6 and 73.3 → 35.8; 256 → 256
    over 8×8 14.9 → 12.9 and 31.7 → 28.5; 64 → 64 over 8×8 (the CIFAR ResNet's third stage,
    64 positions for 64 filters) kept its kernel rows: 1.24 against 1.23 ms forward."""
    plane_channels: int = 3
    """Inputs with at most this many channels are gathered as channel planes (see Columns)."""
    tile_bytes: int = 12 << 20
    """Target size of one tile's full im2col matrix (the kernel-row matrices of stride-1 convs
    are a third of it): large enough that the per-tile Python and numpy calls (some 20, ~100
    µs) are few, while every thread still gets several tiles (parallel.tile_items). On the
    bench's 32-channel layers at batch 256 on two threads, 12 MiB was 1.15x faster than 4 MiB
    and 1.6x faster than 2 MiB; one matrix for the whole batch, hundreds of MB streamed
    through memory twice, was 1.5-2.5x slower."""
    plane_chunk_rows: int = 8192
    """Channel-plane matrices (1-3 channels) are gathered, multiplied and, forward, passed
    through the epilogue a chunk of whole samples of about this many rows (positions) at a
    time, so that the chunk's matrix and its product are still in cache when the next step
    reads them; a tile (the threads' unit of work) only pads its samples once. An RGB
    image's 3×3 "same" conv, one thread, CPU time, interleaved, against one matrix per tile
    (both with PLANE_ROW_PAD, neither with a ReLU over long rows, see
    :func:`graphnet_plugins.activations.long_rows`): into 32 filters with a fused
    ReLU at batch 256, forward 23.6 → 18.1 ms, weight gradient 22.7 → 16.9 ms; into 16
    filters, 10.3 → 8.6 and 8.1 → 7.9 ms; at batch 64, whose tiles fit the L3 cache,
    1.0-1.1x. 4096 and 16384 rows measured alike within 5 %, 2048 (two 32×32 samples) 5-10 %
    slower: each chunk costs a few numpy calls."""
    column_groups: tuple[int, ...] = (4, 2)
    """Output columns per row of a grouped matrix (see :class:`Columns`), the first that
    divides the output width: LeNet's first layer (1 → 6 filters, 5×5 over 28×28) gathered
    a quarter as much with 4 and its products ran 1.6x faster, 4 and 7 measured alike."""
    group_max_filters: int = 16
    """Grouped matrices (see :class:`Columns`) only for at most this many filters, over one
    channel or channels-last memory (not colour planes, see Columns): with 6, a product of
    26 columns by 6 ran at a third of BLAS's speed on wider shapes (20 against 55 GFLOP/s),
    and 4 columns a row made it 40 by 24; LeNet's second layer (6 → 16 filters,
    5×5 over 14×14, 2 columns a row) gathered in 0.16 ms instead of 0.29 per 32 samples, its
    products as fast (one thread, batch 256); with 32 filters grouping brought no faster
    product (1.2-1.5x slower with 2-4 columns a row) for the gathering it saved."""
    samples_last_max_channels: int = 16
    """Where col2im computes the input gradient at stride 1 (more filters than channels),
    inputs of at most this many channels take it with the samples innermost (see
    :class:`InputGradient`). One thread, CPU time, best of 7 interleaved, against col2im
    channels-last and against the grid products it replaced (each sample's gradient at the
    left of rows as wide as the padded input, each tap an offset along them, the gaps'
    products computed for nothing): LeNet's second layer (6 → 16, 5×5 over 14×14) 1.19 and
    1.01 → 0.59 ms at batch 64, 4.57 and 3.71 → 2.31 at 256; 8 → 16 there 1.10 → 0.73;
    12 → 24 (3×3 over 12×12, batch 256) 2.83 → 2.17; 16 → 32 (5×5, batch 256) 10.2 →
    8.5; an RGB image's 3×3 "same" into 16 filters 3.39 and 2.06 → 1.97, a grey image's
    5×5 "same" into 8 2.21 and 0.96 → 0.76. With more channels, 0.89-1.13x col2im's time
    (64 → 128 3×3 over 8×8 slower, 24 → 48 3×3 over 28×28 faster)."""
    samples_last_tile_bytes: int = 8 << 20
    """Most scratch memory of one tile of the input gradient with the samples innermost, whose
    tiles are as few as this allows (see :class:`InputGradient`): LeNet's second layer at
    batch 256 (one thread, 75 KB a sample) took 2.45 ms in tiles of 32 samples, 2.20 in 64,
    2.05 in 86 (6.4 MB) and 2.17 in 128."""
    tile: int | None = None
    """Samples per tile, if fixed; by default from ``tile_bytes`` and the thread count."""
    name = "tiled"

    def fits(self, window: SlidingWindow, channels: int, filters: int, groups: int) -> bool:
        return groups == 1

    def takes_epilogue(self, window, channels, filters, groups) -> bool:
        """Every layout: a ReLU over each tile in cache against the relu op's passes over
        the whole output (one thread, CPU time, best of 25-40 interleaved): the CIFAR
        ResNet's stride-2 convs at inference, batch 256, 18.1 → 17.6 ms (16 → 32 over
        32×32) and 10.0 → 10.0 (32 → 64 over 16×16); LeNet's 6 → 16 (5×5 over 14×14,
        grouped) training at batch 64, forward 0.94 → 0.89 ms, backward 3.28 → 2.78 ms, its
        gradient through the ReLU made a tile at a time in the weight pass and kept for the
        input pass. (With that gradient made for the whole batch before both passes, as
        before, the backward measured 3.29 → 3.40 ms, and only channel planes took it.)"""
        return True

    def forward(self, images, weight, bias, window: SlidingWindow, groups: int = 1, *,
                epilogue=None):
        """The NHWC output: per tile, im2col matrix × weight matrix (+ bias), written by BLAS
        straight into the output; tiles shared among the worker threads. An ``epilogue`` is
        applied to each tile's output (each chunk's, for channel planes) in cache. Saved: the
        input itself, no copy."""
        columns = Columns(images, window, self, filters=len(weight))
        matrix = weight_matrix(weight, 1)[0]
        fill_weights = columns.with_bias(matrix, bias)
        filters = len(weight)
        output = np.empty((len(images), *window.output_hw, filters), dtype=images.dtype)

        def finish(product):
            if bias is not None and not columns.ones:
                rows, row = channel_rows(product, bias)
                rows += row
            if epilogue is not None:
                epilogue.forward(product)

        def work(index, part):
            count = part.stop - part.start
            if columns.rows:
                product = output[part].reshape(count, -1, filters)
                row_products(columns.padded(part.start, count), count, window,
                             matrix.reshape(window.kernel[0], -1, filters), product)
                finish(product)
                return
            for samples, columns_matrix in columns.chunks(part.start, count):
                product = output[samples].reshape(-1, filters * columns.group)
                np.matmul(columns_matrix, fill_weights, out=product)
                finish(product)

        parallel.run_tiles(work, len(images), columns.tile)
        return output, images

    def backward(self, grad_output, images, weight, window: SlidingWindow, groups: int = 1, *,
                 input_grad: bool, param_grads: bool, bias: bool, epilogue=None, output=None):
        """(input gradient NHWC or None, weight gradient or None, bias gradient or None), tile
        by tile: the weight's from the rebuilt im2col matrix, the input's by a transposed
        convolution or col2im (see :class:`InputGradient`), in two passes over the tiles (1.2x
        faster than one doing both, whose two tile-sized matrices overflow the L2 cache). The
        tiles' weight gradients are summed in tile order, so the result does not depend on the
        thread count. With an ``epilogue``, ``grad_output`` is the gradient of its result,
        ``output``."""
        columns = Columns(images, window, self, filters=len(weight))
        grad_nhwc = grad_output.transpose(0, 2, 3, 1)
        filters = len(weight)
        gradient = InputGradient(weight, images.shape, window, self) if input_grad else None
        grad_input = (np.empty((len(images), *images.shape[2:], images.shape[1]),
                               dtype=images.dtype) if input_grad else None)

        output_nhwc = None if epilogue is None else output.transpose(0, 2, 3, 1)
        # both passes need the gradient through the epilogue: the first keeps each tile's for
        # the second (the gradient handed in may be shared), made in cache and on every thread
        through = (np.empty_like(grad_nhwc, order="C")
                   if epilogue is not None and input_grad and param_grads else None)

        def grad_rows(part):
            """The output gradient of samples ``part`` (a tile's or a chunk's) as contiguous
            rows; through the epilogue, if any, into ``through`` or else this thread's scratch
            memory (the gradient itself may be shared)."""
            if epilogue is None:
                return np.ascontiguousarray(grad_nhwc[part]).reshape(-1, filters)
            if through is not None:
                rows = through[part]
            else:
                rows = parallel.scratch(
                    "conv_epilogue_grad", (max(columns.chunk, gradient.tile if gradient else 1),
                                           *grad_nhwc.shape[1:]),
                    grad_nhwc.dtype)[:part.stop - part.start]
            epilogue.backward(grad_nhwc[part], output_nhwc[part], rows)
            return rows.reshape(-1, filters)

        grad_weight = grad_bias = None
        if param_grads:
            tiles = -(-len(images) // columns.tile)
            weight_parts, bias_parts = [None] * tiles, [None] * tiles

            def weight_work(index, part):
                count = part.stop - part.start
                if columns.rows:
                    rows = grad_rows(part)
                    weight_parts[index] = row_weight_gradient(
                        columns.padded(part.start, count), count, window,
                        rows.reshape(count, -1, filters)).reshape(columns.width, filters)
                else:
                    products = None
                    for samples, columns_matrix in columns.chunks(part.start, count):
                        # grouped: a row of the gradient holds columns.group positions
                        rows = grad_rows(samples).reshape(len(columns_matrix), -1)
                        chunk = columns_matrix.T @ rows
                        products = (chunk if products is None
                                    else np.add(products, chunk, out=products))
                    products = columns.ungroup(products)
                    weight_parts[index] = products[:columns.width]
                    # the column of ones gives the bias gradient as a last row
                    if columns.ones:
                        bias_parts[index] = products[columns.width]
                if bias and bias_parts[index] is None:
                    # no column of ones: one chunk, so these rows are the whole tile's
                    bias_parts[index] = blas.column_sums(rows)

            parallel.run_tiles(weight_work, len(images), columns.tile)
            # summed in tile order: the same result whichever thread took which tile
            summed = parallel.ordered_sum(weight_parts, (columns.width, filters), images.dtype)
            grad_weight = torch_layout(summed[None], window.kernel)
            if bias:
                grad_bias = parallel.ordered_sum(bias_parts, (filters,), images.dtype)
        if gradient:
            def input_work(index, part):
                rows = (grad_rows(part) if through is None
                        else through[part].reshape(-1, filters))
                gradient.write(rows, part.start, part.stop - part.start, grad_input[part])

            parallel.run_tiles(input_work, len(images), gradient.tile)
        return grad_input, grad_weight, grad_bias


class Columns:
    """The im2col matrix of a batch, built one tile of samples (or one chunk of a tile's, see
    :meth:`chunks`) at a time into this thread's scratch buffer
    (:func:`graphnet.parallel.scratch`), never for the whole batch.

    At stride 1 in channels-last memory (``rows``), the convolution is instead one product per
    kernel row (:func:`row_products`), whose matrices gather a third as much. Measured at
    stride 2 and not taken: kernel-row matrices of the padded rows grouped by stride phase,
    runs of kernel width × channels, for the CIFAR ResNet's 3×3 stride-2 convs at batch 64
    (one thread, tiles of 16, gather and products): 16 → 32 over 32×32 3.5-3.6 ms against
    im2col's 2.9, 32 → 64 over 16×16 2.7-2.9 against 2.4, whether the products were per
    sample with the kernel rows summed by numpy or one per kernel row over the tile (BLAS
    summing, the output transposed back): the gather, 2.1 padded rows per output row in runs
    of 48-96 values, was no faster than im2col's runs of 16-32, and K = 3·channels products
    ran slower than one of 9·channels. Otherwise the
    columns are (kernel row, kernel column, channel), in one of two memory layouts: a row per
    output position, each tap a copy of contiguous channel vectors (channels-last memory, as a
    conv's output is); or, for images of at most ``plane_channels`` channels (grey or colour
    images fed to the graph), the transposed matrix, each tap a copy of contiguous image rows:
    measured 2x faster for 1 and 3 channels, whose channel vectors are too short to copy well.
    Measured for RGB images and not taken: rows of 27 gathered from a padded channels-last
    copy in runs of kernel width × channels (9 values), per output position or over a padded
    grid of positions, 169-189 µs for 8 32×32 samples plus 46 for the channels-last copy,
    against 62 µs for the planes' matrix; the product's other orientation, weights × the
    planes' matrix as it lies, whose channels-first output transposed back within the ReLU's
    pass made a 3×3 conv at batch 256 2.3x slower into 32 filters and 1.4x into 16.
    The layout follows the channel count alone, never the input's memory layout, so any memory
    layout gives bit-identical results. Either way the product has a row per output position:
    the output is channels-last.

    With few filters the products are too narrow for BLAS (:attr:`TiledKernel.
    group_max_filters`): at stride 1 and no dilation a *grouped* matrix then has a row per
    ``group`` neighbouring output positions of one image row, its columns (kernel row, input
    column kw + group − 1 wide, channel) the pixels they read together, so the matrix is
    ``group`` · kw / (kw + group − 1) times smaller, and the product (:meth:`with_bias`'s
    weights, each output position's kernel shifted into place among zeros) has ``group`` ·
    filters columns: the output's rows, channels-last, as they lie in memory.
    """

    def __init__(self, images: np.ndarray, window: SlidingWindow, kernel: TiledKernel,
                 filters: int):
        batch, channels, height, width = images.shape
        self.window = window
        self.planes = channels <= kernel.plane_channels
        # stride 1, channels-last, rows wide enough for BLAS, and samples with at least as
        # many positions as filters: one product per kernel row (see row_min_columns)
        self.rows = (window.stride == (1, 1) and not self.planes
                     and window.kernel[1] * channels >= kernel.row_min_columns
                     and math.prod(window.output_hw) >= filters)
        self.group = 1
        # colour planes gather their channel vectors of 3 slowly: grouped, an RGB image's
        # 3×3 conv into 6 or 16 filters measured 1.2-1.6x slower (gathering 0.9 against 0.5
        # ms per 32 samples); re-measured at batch 256 (forward with a fused ReLU, one
        # thread), 2 or 4 columns a row, 1.3-1.4x slower into 16 filters and 1.3x into 32
        # than planes a tile at a time, which chunks made faster still; one channel, or
        # channels-last memory, paid (see the kernel)
        if (not self.rows and filters <= kernel.group_max_filters
                and (channels == 1 or not self.planes)
                and window.stride == (1, 1) and window.dilation == (1, 1)):
            self.group = next((group for group in kernel.column_groups
                               if window.output_hw[1] % group == 0), 1)
        # a last column of ones carries the bias through the product (channel planes, grouped)
        self.ones = self.planes or self.group > 1
        self.source = images if self.planes else images.transpose(0, 2, 3, 1)
        self.positions = window.output_hw[0] * window.output_hw[1]
        self.width = channels * window.kernel[0] * window.kernel[1]
        self.matrix_width = (channels * window.kernel[0] * (window.kernel[1] + self.group - 1)
                             + 1 if self.group > 1 else self.width)
        self.tile = kernel.tile or parallel.tile_items(
            self.positions // self.group * self.matrix_width * images.itemsize,
            kernel.tile_bytes, total=batch)
        # samples per chunk (see TiledKernel.plane_chunk_rows): channel planes only
        self.chunk = (min(self.tile, max(1, kernel.plane_chunk_rows // self.positions))
                      if self.planes and self.group == 1 else self.tile)

    def with_bias(self, weight_matrix: np.ndarray, bias) -> np.ndarray:
        """The weight matrix (:func:`.im2col.weight_matrix`, the same rows in both layouts, so
        every layout sums in the same order) for :meth:`fill`'s matrices: for channel planes,
        the bias (or zeros) as a last row, matching their column of ones. Grouped, the weights
        of each of the ``group`` output positions of a row, shifted to the input columns it
        reads, zeros elsewhere, and the bias once per position."""
        if not self.ones:
            return weight_matrix
        filters = weight_matrix.shape[1]
        if self.group == 1:  # filled in place: vstack and tile cost 5 of 2 µs at batch 1
            weights = np.empty((len(weight_matrix) + 1, filters), weight_matrix.dtype)
            weights[:-1] = weight_matrix
            weights[-1] = 0 if bias is None else bias
            return weights
        last = np.zeros(filters, weight_matrix.dtype) if bias is None else bias
        last = np.tile(last.astype(weight_matrix.dtype, copy=False), self.group)
        kernel_h, kernel_w = self.window.kernel
        group = self.group
        taps = weight_matrix.reshape(kernel_h, kernel_w, -1, filters)
        grouped = np.zeros((kernel_h, kernel_w + group - 1, taps.shape[2], group, filters),
                           weight_matrix.dtype)
        for position in range(group):
            grouped[:, position:position + kernel_w, :, position] = taps
        return np.vstack([grouped.reshape(-1, group * filters), last[None]])

    def ungroup(self, products: np.ndarray) -> np.ndarray:
        """A product of :meth:`fill`'s matrix (transposed) with output gradient rows →
        (columns, filters) in :func:`.im2col.weight_matrix`'s order (and the bias's row after
        them, where there is a column of ones): grouped, each position's shifted kernel summed
        back in position order."""
        if self.group == 1:
            return products
        kernel_h, kernel_w = self.window.kernel
        group = self.group
        filters = products.shape[1] // group
        shifted = products[:-1].reshape(kernel_h, kernel_w + group - 1, -1, group, filters)
        taps = shifted[:, :kernel_w, :, 0].copy()
        for position in range(1, group):
            taps += shifted[:, position:position + kernel_w, :, position]
        bias = products[-1].reshape(group, filters).sum(axis=0)
        return np.vstack([taps.reshape(-1, filters), bias[None]])

    def padded(self, first: int, count: int) -> np.ndarray:
        """Samples first … first + count − 1, zero-padded (channels-last; see padded_tile)."""
        return padded_tile(self.source, first, count, self.tile, self.window, self.planes)

    def chunks(self, first: int, count: int):
        """The matrix of samples first … first + count − 1 (a tile), chunk by chunk: pairs
        (samples, matrix), ``samples`` a slice of the batch and ``matrix`` their (positions,
        columns) matrix, a view of scratch memory valid until the next pair (or this thread's
        next tile). Channel planes come in chunks of ``chunk`` samples and end with a column of
        ones (see :meth:`with_bias`); the other layouts come as one chunk, the tile."""
        padded = padded_tile(self.source, first, count, self.tile, self.window, self.planes)
        if self.group > 1:
            yield slice(first, first + count), self.grouped(padded[:count], count)
        elif self.planes:
            yield from self.plane_chunks(padded[:count], first)
        else:
            out_h, out_w = self.window.output_hw
            buffer = parallel.scratch(
                "conv_columns", (self.tile, out_h, out_w, *self.window.kernel,
                                 self.source.shape[3]), padded.dtype)
            yield slice(first, first + count), im2col(padded[:count], self.window, 1,
                                                      out=buffer)[0]

    def plane_chunks(self, padded: np.ndarray, first: int):
        """:meth:`chunks` for channel planes: the transposed matrix of ``padded`` samples (the
        batch's from ``first``), ``chunk`` samples at a time, each a copy of a window view
        whose inner runs are image rows."""
        window, chunk, positions = self.window, self.chunk, self.positions
        # one row more than the columns: ones, so that the bias rides in the product (a
        # separate bias pass over the output cost a third of the product's time)
        buffer = parallel.scratch("conv_columns_planes",
                                  (self.width + 1, chunk * positions + PLANE_ROW_PAD),
                                  padded.dtype)
        buffer[self.width] = 1
        # (samples, channels, out_h, out_w, kh, kw) → (kh, kw, channels, samples, out_h, out_w)
        views = window_view(padded, window, (2, 3)).transpose(4, 5, 1, 0, 2, 3)
        # chunks as even as their count allows: a short last one multiplies slowly
        count = len(padded)
        pieces = -(-count // chunk)
        for piece in range(pieces):
            start, stop = count * piece // pieces, count * (piece + 1) // pieces
            part = views[:, :, :, start:stop]
            rows = (stop - start) * positions
            taps = buffer[:self.width, :rows].view()
            taps.shape = part.shape  # raises rather than copy
            np.copyto(taps, part)
            yield slice(first + start, first + stop), buffer[:, :rows].T

    def grouped(self, padded: np.ndarray, count: int) -> np.ndarray:
        """The grouped matrix (see the class) of ``padded`` samples, ending with a column of
        ones, in this thread's scratch memory: one copy of a window view, channels last."""
        group, (kernel_h, kernel_w) = self.group, self.window.kernel
        out_h, out_w = self.window.output_hw
        rows = out_h * (out_w // group)
        buffer = parallel.scratch("conv_columns_grouped", (self.tile * rows, self.matrix_width),
                                  padded.dtype)[:count * rows]
        spatial = (2, 3) if self.planes else (1, 2)
        # (count, out_h, out_w / group, kh, (kw + group − 1) · channels): a view of the buffer
        columns = buffer.reshape(count, out_h, out_w // group, -1)[..., :-1].reshape(
            count, out_h, out_w // group, kernel_h, -1)
        if padded.flags.c_contiguous:
            # a matrix row reads, per kernel row, one contiguous run of (kw + group − 1) ·
            # channels values (one channel if planes): copied as one void value each, one
            # copy loop over the runs rather than a loop of their few floats per run, 1.7x
            # faster (LeNet's first layer: runs of 8 floats)
            run = np.dtype((np.void, columns.shape[-1] * padded.itemsize))
            row_stride, column_stride = (padded.strides[axis] for axis in spatial)
            runs = np.ndarray(columns.shape[:-1], run, padded, 0,
                              (padded.strides[0], row_stride, group * column_stride,
                               row_stride))
            runs.flags.writeable = False
            np.copyto(columns.view(run)[..., 0], runs)
        else:
            views = strided_windows(padded, spatial, (kernel_h, kernel_w + group - 1),
                                    (1, group), (1, 1))
            if self.planes:  # (count, channels, out_h, out_w / group, kh, kw + group − 1)
                views = views.transpose(0, 2, 3, 4, 5, 1)
            else:            # (count, out_h, out_w / group, channels, kh, kw + group − 1)
                views = views.transpose(0, 1, 2, 4, 5, 3)
            taps = columns.view()
            taps.shape = views.shape  # raises rather than copy
            np.copyto(taps, views)
        buffer[:, -1] = 1
        return buffer


def padded_tile(source: np.ndarray, first: int, count: int, tile: int, window: SlidingWindow,
                planes: bool):
    """Samples first … first + count − 1 of ``source`` (NCHW if ``planes``, else NHWC) with the
    window's zero padding around height and width: a view without padding, else this thread's
    scratch buffer, whose border is zeroed once and never written."""
    samples = source[first:first + count]
    pads = window.pads
    if not any(pads):
        return samples
    top, _, left, _ = pads
    height, width = window.input_hw
    if planes:
        shape = (tile, source.shape[1], *window.padded_hw)
        interior = (slice(None, count), slice(None), slice(top, top + height),
                    slice(left, left + width))
    else:
        shape = (tile, *window.padded_hw, source.shape[3])
        interior = (slice(None, count), slice(top, top + height), slice(left, left + width))
    # keyed by the pads and image size too: another layer's interior may cover this one's
    # border, and layers taking turns with one buffer would each make it anew
    buffer = parallel.scratch(f"conv_padded{pads}{planes}{shape[1:]}", shape, source.dtype,
                              zeroed=True)
    buffer[interior] = samples
    return buffer


class InputGradient:
    """d loss / d input of a one-group conv, a tile at a time, NHWC, by the transposed
    convolution or col2im, whichever :func:`.im2col.transposed_gradient` picks; at stride 1
    with few channels (:attr:`TiledKernel.samples_last_max_channels`), col2im with the
    samples innermost.

    Samples innermost: the output gradient copied to (out_h, out_w, samples, filters), one
    product, (taps·channels, filters) × its transpose, gives a row per (tap, channel) over
    (position, sample). Each kernel column's taps are summed into a (channels, padded_h,
    out_w, samples) array, where a tap's rows are a block, one contiguous run per channel;
    the kernel columns' sums are then added, each shifted by its column, into the
    channels-first sum (channels, padded_h, padded_w, samples), in runs of out_w · samples
    values (320-640 for LeNet's second layer at batch 64). Channels-last col2im
    adds runs of out_w · channels, and its products of so few columns run at a third of
    BLAS's speed.
    """

    def __init__(self, weight, input_shape, window: SlidingWindow, kernel: TiledKernel):
        filters, channels = weight.shape[:2]
        self.window, self.input_hw = window, tuple(input_shape[2:])
        self.transposed = transposed_gradient(window, filters, channels)
        self.samples_last = (not self.transposed and window.stride == (1, 1)
                             and channels <= kernel.samples_last_max_channels)
        if self.samples_last:
            # (taps·channels, filters): rows (kernel row, kernel column, channel)
            self.matrix = np.ascontiguousarray(weight.transpose(2, 3, 1, 0)).reshape(
                -1, filters)
            positions = window.output_hw[0] * window.output_hw[1]
            padded_h, padded_w = window.padded_hw
            # a tile's scratch per sample: products, gradient copy, a kernel column's sum, sum
            width = (len(self.matrix) + filters
                     + channels * padded_h * (window.output_hw[1] + padded_w) // positions)
        elif self.transposed:
            # the padded output gradient read with the kernel flipped, by kernel rows
            self.matrix = flipped_weight_matrix(weight, 1)[0]
            self.unit = transposed_window(window)
            width = filters * window.kernel[0] * window.kernel[1]
            positions = self.input_hw[0] * self.input_hw[1]
        else:
            # (taps, filters, channels): the im2col matrix's gradient, one tap at a time
            self.matrix = np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).reshape(
                -1, filters, channels)
            width = channels * window.kernel[0] * window.kernel[1]
            positions = window.output_hw[0] * window.output_hw[1]
        self.filters, self.channels = filters, channels
        sample_bytes, batch = positions * width * weight.itemsize, input_shape[0]
        if self.samples_last:
            # as few tiles as samples_last_tile_bytes allows, as many per thread, even: its
            # adds run over out_w · samples values, and LeNet's second layer at batch 64 (one
            # thread) took 0.65 ms in tiles of 29, 29 and 6 samples, 0.58 in two of 32, 0.52
            # in one
            threads = parallel.num_threads()
            most = max(1, kernel.samples_last_tile_bytes // sample_bytes)
            tiles = max(1, threads * -(-batch // (threads * most)))
            self.tile = max(1, -(-batch // tiles))
        else:
            self.tile = parallel.tile_items(sample_bytes, kernel.tile_bytes, total=batch)

    def write(self, grad_rows, first: int, count: int, destination) -> None:
        """Write the input gradient of samples first … first + count − 1 (their output
        gradient as (count·positions, filters) rows) into ``destination`` (NHWC)."""
        window = self.window
        out_h, out_w = window.output_hw
        grad_tile = grad_rows.reshape(count, out_h, out_w, self.filters)
        if self.samples_last:
            self.write_samples_last(grad_tile, count, destination)
            return
        if self.transposed:
            padded = padded_tile(grad_tile, 0, count, self.tile, self.unit, planes=False)
            row_products(padded, count, self.unit,
                         self.matrix.reshape(window.kernel[0], -1, self.channels),
                         destination.reshape(count, -1, self.channels))
            return
        taps = len(self.matrix)
        # tap-major: each tap's (positions, channels) block is contiguous, so the scatter-adds
        # copy whole rows of channels rather than one short channel vector at a time
        grad_columns = parallel.scratch(
            "conv_grad_columns_col2im", (taps, self.tile * out_h * out_w, self.channels),
            grad_rows.dtype)[:, :len(grad_rows)]
        np.matmul(grad_rows, self.matrix, out=grad_columns)
        scatter_taps(grad_columns.reshape(taps, count, out_h, out_w, self.channels), window,
                     destination, capacity=self.tile)

    def write_samples_last(self, grad_tile, count: int, destination) -> None:
        """:meth:`write` by col2im with the samples innermost (see the class)."""
        window, (height, width) = self.window, self.input_hw
        (out_h, out_w), (padded_h, padded_w) = window.output_hw, window.padded_hw
        (dilation_h, dilation_w), (kernel_h, kernel_w) = window.dilation, window.kernel
        top, _, left, _ = window.pads
        channels, filters, dtype = self.channels, self.filters, grad_tile.dtype
        positions, taps = out_h * out_w, len(self.matrix)
        grad_last = parallel.scratch(
            "conv_grad_samples_last", (positions * self.tile * filters,),
            dtype)[:positions * count * filters].reshape(out_h, out_w, count, filters)
        # each position's filter vector as one item (the rows are contiguous): numpy's
        # transposing copy of those ran 2-3x faster than of their floats (16 filters)
        np.copyto(pixel_items(grad_last), pixel_items(grad_tile).transpose(1, 2, 0))
        products = parallel.scratch("conv_grad_samples_last_products",
                                    (taps * positions * self.tile,),
                                    dtype)[:taps * positions * count].reshape(taps, -1)
        np.matmul(self.matrix, grad_last.reshape(-1, filters).T, out=products)
        tap_grads = products.reshape(kernel_h, kernel_w, channels, out_h, out_w, count)
        total = parallel.scratch("conv_grad_samples_last_sum",
                                 (channels * padded_h * padded_w * self.tile,),
                                 dtype)[:channels * padded_h * padded_w * count]
        total = total.reshape(channels, padded_h, padded_w, count)
        # a kernel column's sum, as wide as the output: a tap's rows are a block of it, one
        # contiguous run per channel (numpy adds a block 3x faster than the same values in
        # runs of out_w · samples); each column's sum is then added shifted into the total
        column_sum = parallel.scratch(
            "conv_grad_samples_last_column", (channels * padded_h * out_w * self.tile,),
            dtype)[:channels * padded_h * out_w * count].reshape(
                channels, padded_h, out_w, count)
        for col in range(kernel_w):
            # the first tap copied rather than added to zeros: a pass fewer
            np.copyto(column_sum[:, :out_h], tap_grads[0, col])
            column_sum[:, out_h:] = 0
            for row in range(1, kernel_h):
                down = row * dilation_h
                column_sum[:, down:down + out_h] += tap_grads[row, col]
            if col == 0:
                np.copyto(total[:, :, :out_w], column_sum)
                total[:, :, out_w:] = 0
            else:
                across = col * dilation_w
                total[:, :, across:across + out_w] += column_sum
        destination[...] = total[:, top:top + height, left:left + width].transpose(3, 1, 2, 0)


def kernel_row_columns(padded: np.ndarray, count: int, window) -> np.ndarray:
    """The im2col matrix of one kernel row, for every padded input row: (count, padded rows,
    out_w, kw·channels), columns (kernel column, channel), in this thread's scratch buffer. At
    stride 1, kernel row r's matrix is rows r·dilation … + out_h − 1 of it, a view: a third of
    the gathering of a 3×3 kernel's full im2col matrix."""
    _, padded_h, _, channels = padded.shape
    out_w, kernel_w = window.output_hw[1], window.kernel[1]
    buffer = parallel.scratch("conv_row_columns",
                              (len(padded), padded_h, out_w, kernel_w, channels), padded.dtype)
    views = sliding_window_view(padded[:count], window.extent[1], axis=2)
    # (count, padded_h, out_w, channels, kw) → (count, padded_h, out_w, kw, channels)
    np.copyto(buffer[:count], views[..., ::window.dilation[1]].transpose(0, 1, 2, 4, 3))
    return buffer[:count].reshape(count, padded_h, out_w, kernel_w * channels)


def row_products(padded: np.ndarray, count: int, window, weight_rows: np.ndarray,
                 out: np.ndarray) -> None:
    """A stride-1 convolution of ``count`` padded channels-last samples as one product per
    kernel row, summed: ``out`` (count, out_h·out_w, filters) = Σ_r rows_r @ weight_rows[r],
    ``weight_rows`` being (kh, kw·channels, filters). Measured 1.13x faster than one product
    with the full im2col matrix, whose gathering cost a third of the product's time."""
    out_h, out_w = window.output_hw
    row_columns = kernel_row_columns(padded, count, window)
    partial = parallel.scratch("conv_row_partial", (len(padded), *out.shape[1:]), out.dtype)
    for row in range(window.kernel[0]):
        top = row * window.dilation[0]
        rows = row_columns[:, top:top + out_h].reshape(count, out_h * out_w, -1)
        if row == 0:
            np.matmul(rows, weight_rows[0], out=out)
        else:
            np.matmul(rows, weight_rows[row], out=partial[:count])
            out += partial[:count]


def row_weight_gradient(padded: np.ndarray, count: int, window,
                        grad_rows: np.ndarray) -> np.ndarray:
    """The weight gradient of :func:`row_products`' convolution, (kh, kw·channels, filters),
    from ``grad_rows`` (count, out_h·out_w, filters), summed over the samples."""
    out_h, out_w = window.output_hw
    row_columns = kernel_row_columns(padded, count, window)
    grads = []
    for row in range(window.kernel[0]):
        top = row * window.dilation[0]
        rows = row_columns[:, top:top + out_h].reshape(count, out_h * out_w, -1)
        grads.append(np.matmul(rows.transpose(0, 2, 1), grad_rows).sum(axis=0))
    return np.stack(grads)

