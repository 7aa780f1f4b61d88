"""Batch norm's passes over memory: per-channel statistics in one pass, the normalisation in one,
and the backward's two reductions in one pass followed by one pass for the input gradient.

Each pass goes tile by tile (tiles of about :data:`TILE_BYTES`, small enough that the few
elementwise steps a tile needs read cache, not memory), the tiles shared among graphnet's worker
threads. Tile boundaries do not depend on the thread count, and per-tile partial sums are added
in tile order, so results are the same on any number of threads.

Images reach batch norm channels-last more often than not (a conv's NCHW output is a transposed
view of NHWC memory, often cut from a larger grid the conv computed): there the channel is the
fastest axis, and a per-channel vector broadcast along it would make numpy's inner loop as short
as the channel count. So a channels-last batch is viewed as rows of ``repeat`` whole pixels
(:class:`ChannelView`), and per-channel vectors are tiled ``repeat`` times to match: long inner
loops, no copy. A channels-first (NCHW contiguous) batch is viewed as (N, C, H·W); anything else
is copied to that layout first.
"""
from __future__ import annotations

import math

import numpy as np

from graphnet import blas, parallel

from ._pixels import pixels_per_row, repeated

TILE_BYTES = 2 << 20
"""Bytes of input per tile (as ReLU's, :mod:`.activations`). Each numpy call costs microseconds
and, with two threads, a hand-off of the GIL: at batch 64 a 16×32×32 batch norm took 2.5x
longer in 64 KiB tiles than in 512 KiB ones, and on a busy machine a 64×8×8 one (1 MiB) split
in two waited for the second thread up to 20x its own time. Tiles this size stay in L3."""

WIDE_ROW = 1024
"""Elements per row of a channels-last view at most: rows this long run numpy at memory
speed (16-channel rows ran a broadcast multiply 2.2x and a column sum 13x slower)."""


class ChannelView:
    """How the passes see a batch whose axis 1 is the channel: ``view(array)`` reshapes an
    array of the batch's layout without copying; ``per_channel(vector)`` broadcasts a (C,)
    vector against that view; ``reduce(tile)`` sums a tile of the view per channel.

    Three layouts, the first two channels-last: a whole batch contiguous in NHWC order is rows
    of ``repeat`` pixels (N·H·W/repeat, repeat·C); an image batch whose pixel rows only are
    contiguous — a conv's output cut from a larger grid, (N, H, W, C) taken from (N, H', W', C)
    — is (N, H, W·C), each image's rows at their own stride, so it is read where it lies; a
    channels-first batch is (N, C, H·W)."""

    def __init__(self, x: np.ndarray):
        self.channels = x.shape[1]
        self.count = x.size // self.channels  # values per channel
        self.source_shape = x.shape
        pixels_last = x.transpose(0, *range(2, x.ndim), 1)
        self.channels_last = True
        if pixels_last.flags.c_contiguous:
            self.repeat = pixels_per_row(self.count, self.channels, WIDE_ROW)
            self.view_shape = (self.count // self.repeat, self.repeat * self.channels)
        elif _rows_contiguous(pixels_last):
            self.repeat = x.shape[3]
            self.view_shape = (x.shape[0], x.shape[2], x.shape[3] * self.channels)
        else:
            self.repeat = 1
            self.view_shape = (x.shape[0], self.channels, self.count // x.shape[0])
            self.channels_last = False

    def fits(self, array: np.ndarray) -> bool:
        """Whether ``array`` has the layout this view was made for (then ``view`` is free)."""
        if not self.channels_last:
            return array.flags.c_contiguous
        pixels_last = array.transpose(0, *range(2, array.ndim), 1)
        return pixels_last.flags.c_contiguous or (len(self.view_shape) == 3
                                                  and _rows_contiguous(pixels_last))

    def view(self, array: np.ndarray) -> np.ndarray:
        if self.channels_last:
            array = array.transpose(0, *range(2, array.ndim), 1)
        return array.reshape(self.view_shape)  # free for arrays that fit

    def empty(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """A new batch of this layout and ``dtype`` (channels-last ones contiguous), and its
        view."""
        if self.channels_last:
            shape = self.source_shape
            array = np.empty((shape[0], *shape[2:], shape[1]), dtype)
            array = array.transpose(0, array.ndim - 1, *range(1, array.ndim - 1))
        else:
            array = np.empty(self.source_shape, dtype)
        return array, self.view(array)

    def per_channel(self, vector: np.ndarray) -> np.ndarray:
        if self.channels_last:
            return repeated(vector, self.repeat)
        return vector.reshape(-1, 1)

    def reduce(self, tile: np.ndarray) -> np.ndarray:
        if not self.channels_last:
            return tile.sum(axis=2).sum(axis=0)  # the contiguous axis first: pairwise, and fast
        # a column sum as a product with ones: on a cut grid's 2 MiB tile in cache (32 images
        # of 32 rows of 512), 0.05 ms against numpy's 0.08 ms for sum(axis=(0, 1)); on the rows
        # of a contiguous batch the two tie (0.07 ms). CPU time, one thread, BLAS limited to
        # one thread as inside a network.
        rows = blas.column_sums(tile)
        if rows.ndim == 2:  # one row per image of a cut grid
            rows = rows.sum(axis=0)
        return rows.reshape(self.repeat, self.channels).sum(axis=0)

    def tile_rows(self, itemsize: int) -> int:
        """Rows of the view (images, for a cut grid) per tile."""
        row_bytes = itemsize * math.prod(self.view_shape[1:])
        return max(1, TILE_BYTES // row_bytes)


def _rows_contiguous(pixels_last: np.ndarray) -> bool:
    """Whether an (N, H, W, C) batch's pixel rows (W·C values each) are contiguous."""
    if pixels_last.ndim != 4:
        return False
    channels, width = pixels_last.shape[3], pixels_last.shape[2]
    itemsize = pixels_last.itemsize
    return ((channels == 1 or pixels_last.strides[3] == itemsize)
            and (width == 1 or pixels_last.strides[2] == channels * itemsize))


def viewed(x: np.ndarray) -> tuple[ChannelView, np.ndarray, np.ndarray]:
    """``x``'s view, ``x`` itself (or a channels-first copy when its layout is neither)."""
    layout = ChannelView(x)
    if not layout.channels_last and not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    return layout, x, layout.view(x)


def _each_tile(work, layout: ChannelView, rows: int, itemsize: int) -> list:
    """``work(part)`` on every tile of ``rows`` view rows, shared among the threads; the results
    in tile order."""
    tile = layout.tile_rows(itemsize)
    results = [None] * (-(-rows // tile))

    def run(index, part):
        results[index] = work(part)

    parallel.run_tiles(run, rows, tile)
    return results


def _scratch(name: str, tile: np.ndarray, layout: ChannelView) -> np.ndarray:
    """A per-thread buffer of ``tile``'s shape, cut from one of TILE_BYTES (or a whole tile, if
    that is larger) that every batch norm layer of a network reuses."""
    whole_tile = layout.tile_rows(tile.itemsize) * math.prod(tile.shape[1:])
    flat = parallel.scratch(name, (max(TILE_BYTES // tile.itemsize, whole_tile),), tile.dtype)
    return flat[:tile.size].reshape(tile.shape)


def statistics(layout: ChannelView, xv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-channel mean and (biased) variance, in float64, from one pass over ``xv``.

    Each tile's mean and sum of squared deviations come from the tile in cache; tiles are then
    merged exactly (Chan et al.), so no large sum of squares ever cancels."""
    def work(part):
        tile = xv[part]
        count = tile.size // layout.channels
        tile_mean = layout.reduce(tile) / count  # in the batch's dtype: the shift used below
        centred = _scratch("batch_norm.centred", tile, layout)
        np.subtract(tile, layout.per_channel(tile_mean), out=centred)
        np.square(centred, out=centred)
        return count, tile_mean.astype(np.float64), layout.reduce(centred).astype(np.float64)

    parts = _each_tile(work, layout, len(xv), xv.itemsize)
    counts = np.array([part[0] for part in parts], np.float64).reshape(-1, 1)
    means = np.array([part[1] for part in parts])
    mean = (counts * means).sum(axis=0) / counts.sum()
    squares = sum(part[2] for part in parts) + (counts * (means - mean) ** 2).sum(axis=0)
    return mean, squares / counts.sum()


def normalise(layout: ChannelView, xv: np.ndarray, scale: np.ndarray, shift: np.ndarray,
              epilogue=None) -> np.ndarray:
    """x·scale + shift per channel (``epilogue`` applied in place after), in x's layout."""
    output, outv = layout.empty(xv.dtype)
    scale, shift = (layout.per_channel(v.astype(xv.dtype)) for v in (scale, shift))

    def work(part):
        out = outv[part]
        np.multiply(xv[part], scale, out=out)
        np.add(out, shift, out=out)
        if epilogue is not None:
            epilogue.forward(out)

    _each_tile(work, layout, len(xv), xv.itemsize)
    return output


def backward(layout: ChannelView, xv: np.ndarray, grad: np.ndarray, *, mean, inv_std, weight,
             used_batch_stats: bool, input_grad: bool, sums: bool, epilogue=None, output=None):
    """The input gradient (or None) and the per-channel sums Σg and Σg·x̂ (or None).

    ``grad`` is the gradient of the output — of the epilogue's result when there is one, and
    then ``output`` is that result (the forward's, which the op after it keeps anyway), from
    which the epilogue's derivative follows. Pass one: the two reductions, of g and of
    (x − mean)·g (with an epilogue, the gradient through it first, written where the input
    gradient will go); pass two: the input gradient, g·gain + slope·(x − centre), slope and
    centre per channel (g·gain alone without the batch's statistics)."""
    dtype = xv.dtype
    gv = _viewed_like(layout, grad)
    outv = _viewed_like(layout, output) if epilogue is not None else None
    grad_input, dxv = layout.empty(dtype) if input_grad else (None, None)
    mean_c = layout.per_channel(mean.astype(dtype))
    need_sums = sums or (input_grad and used_batch_stats)

    def through_epilogue(part):
        """The gradient before the epilogue, for this tile."""
        target = dxv[part] if input_grad else _scratch("batch_norm.grad", gv[part], layout)
        epilogue.backward(gv[part], outv[part], target)
        return target

    def reductions(part):
        g = through_epilogue(part) if epilogue is not None else gv[part]
        centred = _scratch("batch_norm.centred", g, layout)
        np.subtract(xv[part], mean_c, out=centred)
        np.multiply(centred, g, out=centred)
        return layout.reduce(g).astype(np.float64), layout.reduce(centred).astype(np.float64)

    grad_sum = grad_dot_normalised = None
    if need_sums:
        parts = _each_tile(reductions, layout, len(xv), xv.itemsize)
        grad_sum = sum(part[0] for part in parts)
        grad_dot_normalised = sum(part[1] for part in parts) * inv_std
    elif input_grad and epilogue is not None:
        _each_tile(through_epilogue, layout, len(xv), xv.itemsize)
    if not input_grad:
        return None, grad_sum, grad_dot_normalised

    # dx = w·inv_std·(g − mean(g) − x̂·mean(g·x̂)), x̂ = (x − mean)·inv_std: with the batch's
    # statistics, they depend on every input too, and their share removes those two terms.
    # That share, slope·(x − mean) + offset, is taken as slope·(x − centre), the offset folded
    # into the centre: three steps a tile for it where there were four. Not x·slope + a
    # constant: far from zero, those two are large and opposite, and their roundings doubled
    # the error against float64 at a mean 100 standard deviations out; these steps round only
    # values of the share's own size.
    gain = weight.astype(np.float64) * inv_std
    source = dxv if epilogue is not None else gv
    if used_batch_stats:
        count = layout.count
        offset = -gain * grad_sum / count
        slope = -gain * inv_std * grad_dot_normalised / count
        # a slope far below the offset (or none) would put the centre beyond float32's range:
        # 1e-20 of the offset instead, whose share is below the offset's rounding
        least_slope = np.abs(offset) * 1e-20
        slope = np.where(np.abs(slope) < least_slope, np.copysign(least_slope, slope), slope)
        with np.errstate(divide="ignore", invalid="ignore"):  # a zero slope has a zero offset
            centre = np.where(slope != 0, mean - offset / slope, mean)
        centre_c = layout.per_channel(centre.astype(dtype))
        slope_c = layout.per_channel(slope.astype(dtype))
    gain_c = layout.per_channel(gain.astype(dtype))

    def input_gradient(part):
        out = dxv[part]
        np.multiply(source[part], gain_c, out=out)
        if used_batch_stats:
            share = _scratch("batch_norm.centred", out, layout)
            np.subtract(xv[part], centre_c, out=share)
            np.multiply(share, slope_c, out=share)
            np.add(out, share, out=out)

    _each_tile(input_gradient, layout, len(xv), xv.itemsize)
    return grad_input, grad_sum, grad_dot_normalised


def _viewed_like(layout: ChannelView, array: np.ndarray) -> np.ndarray:
    """``array``'s view in ``layout``, through a copy in that layout if it has another."""
    if layout.fits(array):
        return layout.view(array)
    copy, view = layout.empty(array.dtype)
    np.copyto(copy, array)
    return view
