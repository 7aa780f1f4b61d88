"""3×3 stride-1 convolution by Winograd minimal filtering, F(m×m, 3×3) for m = 2 or 4.

Each output tile of m×m positions is computed from an α×α input tile (α = m + 2, tiles
overlapping by two rows and columns) as

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A

(Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Summed over
channels, the ⊙ becomes one (tiles × channels) @ (channels × filters) product per point ξν of
the α×α transform grid: α² products in place of the 9·m² of the direct method's kernel taps
over the same outputs, 2.25x fewer multiplications for F(2×2) and 4x for F(4×4), paid for by
the transforms of the input tiles (Bᵀ d B), of the weights (G g Gᵀ, once per call) and of the
products back to outputs (Aᵀ M A). Every transform here is a batched matrix product on the
leading axes of a tile batch; no Python loop touches pixels, samples or channels.

The transforms are numpy passes over channels-last arrays, and a pass whose contiguous runs are
one pixel's channels pays numpy's per-run overhead every 16-64 values: read or written in place,
the column of every tile (a pixel in every m) was such a run. So the zero-bordered input is
copied into a buffer whose columns are split by phase modulo m, and the inverse transform's
columns are written into a scratch of that layout before one copy puts them in place: each
column of every tile is then a slice with runs of tiles_w · channels values, and the copies
move each pixel's channels as one item (one copy loop over the pixels). The same coefficients
apply in the same order: the results are bitwise those of the passes over the tiles in place.
(The output gradient read that way by the weight gradient measured 2 % faster at 16 filters,
1-2 % slower at 64, and is read in place.)

Backward:

- the weight gradient, per grid point, (transformed input tiles)ᵀ × (output gradient
  transformed by A … Aᵀ), summed over tiles and taken back through G: Gᵀ dU G;
- the input gradient is the transposed convolution, itself a 3×3 stride-1 convolution of the
  output gradient with the kernel flipped (:func:`.im2col.transposed_window`), computed by the
  same forward. It exists for padding of at most 2 on each side, which is where this kernel fits.

Rounding: the transforms' coefficients (up to 5 and 8 for F(4×4), with 1/6 and 1/24 that
float32 does not hold exactly) round more than the direct sums. Against the float64 direct
kernel, on He-initialised weights and post-ReLU unit-normal activations, 3 to 512 channels,
the largest error of the output, input gradient and weight gradient relative to its largest
value was 1-4e-7 for the default kernels (taps, tiled), 2-7e-7 for F(2×2) and 3e-6 to 9e-6 for
F(4×4), growing slowly with the channels: both well inside what float32 training tolerates
(tests/plugins/test_conv_winograd.py holds them to 2e-6 and 3e-5). float64 networks keep the
other kernels (see :mod:`graphnet_plugins.conv`).

Tiles of samples are shared among graphnet's worker threads; each tile's weight-gradient
part is kept and the parts summed in tile order, so a result does not depend on the thread
count.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from graphnet import blas, parallel

from .._pixels import channel_rows, pixel_items
from .._window import SlidingWindow
from .im2col import transposed_fits, transposed_window

# (Bᵀ, G, Aᵀ) per output tile size m, exact rationals (Lavin & Gray's, interpolation points
# 0, ±1 for m = 2 and 0, ±1, ±2 for m = 4)
MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


@functools.lru_cache(maxsize=None)
def transforms(size: int, dtype_char: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Bᵀ, G, Aᵀ) of F(size×size, 3×3) in a dtype (rounded from float64 once)."""
    return tuple(np.array(matrix, dtype=np.float64).astype(dtype_char)
                 for matrix in MATRICES[size])


@dataclass(frozen=True)
class WinogradKernel:
    """One-group 3×3 convolutions at stride 1, no dilation, padding at most 2 on each side,
    by F(size×size, 3×3)."""

    size: int = 2
    """Output tile size m: 2 or 4."""
    min_channels: int = 8
    """Fewest input channels and filters (the input gradient swaps them): the transforms pass
    over rows of channels, and over 3 (an RGB image) the kernels measured 8-10x slower than
    the default; a layer they do not fit is not measured either."""
    tile_bytes: int = 3 << 20
    """Target bytes of one tile of samples' transformed inputs and products (the α² matrices
    of tiles × channels and tiles × filters): they are written once and read once, and at
    this size stay in the L2 cache or near it, as the other kernels' tiles do."""
    tile: int | None = None
    """Samples per tile, if fixed (the tests' small tiles); by default from tile_bytes."""

    @property
    def name(self) -> str:
        return f"winograd{self.size}"

    def fits(self, window: SlidingWindow, channels: int, filters: int, groups: int) -> bool:
        return (groups == 1 and window.kernel == (3, 3) and window.stride == (1, 1)
                and window.dilation == (1, 1) and transposed_fits(window)
                and min(channels, filters) >= self.min_channels)

    def takes_epilogue(self, window, channels, filters, groups) -> bool:
        """Always: each tile's outputs are still in cache when they are written."""
        return True

    def forward(self, images, weight, bias, window: SlidingWindow, groups: int = 1, *,
                epilogue=None):
        """(NHWC output, saved: the input itself, no copy)."""
        output = self.convolve(images.transpose(0, 2, 3, 1), weight, bias, window, epilogue)
        return output, images

    def backward(self, grad_output, images, weight, window: SlidingWindow, groups: int = 1, *,
                 input_grad: bool, param_grads: bool, bias: bool, epilogue=None, output=None):
        if epilogue is not None:
            grad_output = epilogue.gradient(grad_output, output)
        grad_nhwc = grad_output.transpose(0, 2, 3, 1)
        grad_input = grad_weight = grad_bias = None
        if input_grad:
            # the transposed convolution: the flipped kernel, channels and filters swapped
            flipped = weight.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
            grad_input = self.convolve(grad_nhwc, flipped, None, transposed_window(window),
                                       name="winograd_grad_input")
        if param_grads:
            grad_weight, grad_bias = self.weight_gradient(images.transpose(0, 2, 3, 1),
                                                          grad_nhwc, window, bias)
        return grad_input, grad_weight, grad_bias

    # --- the two passes over tiles of samples ----------------------------------------------
    def convolve(self, source, weight, bias, window: SlidingWindow, epilogue=None, *,
                 name: str = "winograd_input"):
        """The NHWC convolution of an NHWC ``source`` (any memory layout): per tile of samples,
        transformed input tiles, α² products with the transformed weight, and the inverse
        transform written into the output (a view of whole m×m tiles' grid, cropped)."""
        dtype, size = source.dtype, self.size
        inverse = transforms(size, dtype.char)[2]
        grid = TileGrid(window, size)
        filters = len(weight)
        weights = transformed_weight(weight, transforms(size, dtype.char)[1])
        output = np.empty((len(source), grid.tiles[0] * size, grid.tiles[1] * size, filters),
                          dtype)
        tile = self.samples_per_tile(grid, source.shape[3], filters, dtype.itemsize,
                                     len(source))

        def work(index, part):
            count = part.stop - part.start
            tiles = grid.input_tiles(source[part], tile, name)
            products = scratch_rows("winograd_products", grid.alpha ** 2,
                                    tile * grid.per_sample, count * grid.per_sample,
                                    filters, dtype)
            np.matmul(tiles, weights, out=products)
            block = output[part]
            grid.write_outputs(products, block, inverse, tile)
            if bias is not None:
                rows, row = channel_rows(block, bias)
                rows += row
            if epilogue is not None:
                epilogue.forward(block)  # the crop's values too: never read

        parallel.run_tiles(work, len(source), tile)
        return output[:, :window.output_hw[0], :window.output_hw[1]]

    def weight_gradient(self, source, grad_nhwc, window: SlidingWindow, bias: bool):
        """(weight gradient (filters, channels, 3, 3), bias gradient or None): per grid point,
        transformed input tilesᵀ × transformed output-gradient tiles, summed over the tiles in
        tile order, then Gᵀ dU G."""
        dtype, size = source.dtype, self.size
        _, spread, inverse = transforms(size, dtype.char)
        grid = TileGrid(window, size)
        channels, filters = source.shape[3], grad_nhwc.shape[3]
        tile = self.samples_per_tile(grid, channels, filters, dtype.itemsize, len(source))
        tiles_count = -(-len(source) // tile)
        weight_parts, bias_parts = [None] * tiles_count, [None] * tiles_count

        def work(index, part):
            count = part.stop - part.start
            tiles = grid.input_tiles(source[part], tile, "winograd_input")
            grads, padded = grid.output_gradient_tiles(grad_nhwc[part], tile, inverse)
            weight_parts[index] = np.matmul(tiles.transpose(0, 2, 1), grads)
            if bias:
                # over the padded gradient, zeros past the edge included
                bias_parts[index] = blas.column_sums(padded.reshape(-1, filters))

        parallel.run_tiles(work, len(source), tile)
        alpha = grid.alpha
        total = parallel.ordered_sum(weight_parts, (alpha * alpha, channels, filters), dtype)
        # Gᵀ dU G, per (channel, filter): (3, α) (α, α) (α, 3)
        grad_weight = np.einsum("xk,xycf,yl->fckl", spread,
                                total.reshape(alpha, alpha, channels, filters), spread,
                                optimize=True)
        grad_bias = (parallel.ordered_sum(bias_parts, (filters,), dtype) if bias else None)
        return np.ascontiguousarray(grad_weight, dtype=dtype), grad_bias

    def samples_per_tile(self, grid, channels: int, filters: int, itemsize: int,
                         batch: int) -> int:
        """About tile_bytes of transformed tiles and products per tile of samples, and every
        thread a few tiles."""
        if self.tile:
            return self.tile
        per_sample = grid.alpha ** 2 * grid.per_sample * (channels + filters) * itemsize
        balanced = -(-batch // (parallel.TILES_PER_THREAD * parallel.num_threads()))
        return max(1, min(self.tile_bytes // per_sample, balanced))


class TileGrid:
    """Where the α×α input tiles of a window's m×m output tiles sit in the zero-padded input."""

    def __init__(self, window: SlidingWindow, size: int):
        self.window, self.size, self.alpha = window, size, size + 2
        out_h, out_w = window.output_hw
        self.tiles = (math.ceil(out_h / size), math.ceil(out_w / size))
        self.per_sample = self.tiles[0] * self.tiles[1]
        # the padded input, grown below and right so that the last tiles are whole
        self.padded_hw = (self.tiles[0] * size + 2, self.tiles[1] * size + 2)

    def input_tiles(self, samples: np.ndarray, tile: int, name: str) -> np.ndarray:
        """Bᵀ d B of every α×α tile of ``samples`` (count, h, w, channels), as (α², count·tiles,
        channels): the samples copied into this thread's zero-bordered buffer, then Bᵀ applied
        down the tiles' rows, straight from the buffer's rows (no gathered copy of the
        overlapping tiles), and along their columns into the products' layout.

        The buffer holds the padded columns split by phase modulo m, (count, padded h, m,
        padded w / m, channels): column j of every tile in a row of tiles is then one
        contiguous run, phase j % m from offset j // m, and the column pass reads runs of
        tiles_w · channels values where the padded layout gave runs of channels (numpy's
        per-run overhead every 32 values made that pass cost about as much as the products)."""
        count, height, width, channels = samples.shape
        dtype, alpha, size = samples.dtype, self.alpha, self.size
        (tiles_h, tiles_w), (padded_h, padded_w) = self.tiles, self.padded_hw
        top, _, left, _ = self.window.pads
        phase_w = -(-padded_w // size)
        shape = (tile, padded_h, size, phase_w, channels)
        # keyed by the geometry: a layer whose pixels cover another's border must not share it
        padded = parallel.scratch(f"{name}_phases{self.window.pads}{shape}", shape, dtype,
                                  zeroed=True)
        copy_by_phase(samples, padded[:count, top:top + height], left)
        forward = transforms(size, dtype.char)[0]
        # rows: half[ξ] = Σ_i Bᵀ[ξ, i] · (row i of every tile), (count, th, m, padded w / m, c)
        half = scratch_rows(f"{name}_half", alpha, tile * tiles_h * size * phase_w,
                            count * tiles_h * size * phase_w, channels, dtype).reshape(
            alpha, count, tiles_h, size, phase_w, channels)
        combine(forward, lambda i: padded[:count, i:i + size * tiles_h:size], half.__getitem__,
                f"{name}_spare_rows")
        # columns: tiles[ξ, ν] = Σ_j Bᵀ[ν, j] · (column j of every tile of half[ξ])
        rows = count * self.per_sample
        tiles = scratch_rows(f"{name}_tiles", alpha * alpha, tile * self.per_sample, rows,
                             channels, dtype)
        grid = tiles.reshape(alpha, alpha, count, tiles_h, tiles_w, channels)
        combine(forward,
                lambda j: half[:, :, :, j % size, j // size:j // size + tiles_w],
                lambda nu: grid[:, nu], f"{name}_spare_columns")
        return tiles

    def output_gradient_tiles(self, grad: np.ndarray, tile: int, inverse) -> np.ndarray:
        """A dY Aᵀ of every m×m tile of the output gradient ``grad`` (count, out_h, out_w,
        filters), zero past its edge: the gradient of the α² products, (α², count·tiles,
        filters); and the gradient on the whole tiles' grid, (count, th·m, tw·m, filters)."""
        count, out_h, out_w, filters = grad.shape
        size, alpha, dtype = self.size, self.alpha, grad.dtype
        shape = (tile, self.tiles[0] * size, self.tiles[1] * size, filters)
        padded = parallel.scratch(f"winograd_grad_padded{shape}{(out_h, out_w)}", shape, dtype,
                                  zeroed=True)
        padded[:count, :out_h, :out_w] = grad
        spread = np.ascontiguousarray(inverse.T)                   # A: (α, m)
        tiled = self.tiled(padded[:count])                         # (m, m, count, th, tw, f)
        rows = count * self.per_sample
        half = scratch_rows("winograd_grad_half", alpha * size, tile * self.per_sample, rows,
                            filters, dtype).reshape(alpha, size, count, *self.tiles, filters)
        combine(spread, tiled.__getitem__, half.__getitem__, "winograd_grad_spare_rows")
        products = scratch_rows("winograd_grad_tiles", alpha * alpha, tile * self.per_sample,
                                rows, filters, dtype)
        grid = products.reshape(alpha, alpha, count, *self.tiles, filters)
        combine(spread, lambda b: half[:, b], lambda nu: grid[:, nu],
                "winograd_grad_spare_columns")
        return products, padded[:count]

    def write_outputs(self, products: np.ndarray, block: np.ndarray, inverse,
                      tile: int) -> None:
        """Aᵀ M A of every tile's α×α products (α², count·tiles, filters), written into
        ``block`` (count, th·m, tw·m, filters). The column pass writes each output column b
        of the tiles into a scratch of (count, th, m, m, tw, filters), runs of tw · filters
        values, and one copy of whole pixels puts them in place: written straight into the
        block, every pass ran over runs of filters values."""
        size, alpha = self.size, self.alpha
        count, filters = len(block), products.shape[2]
        grid = products.reshape(alpha, alpha, count, *self.tiles, filters)
        half = scratch_rows("winograd_output_half", size * alpha, tile * self.per_sample,
                            products.shape[1], filters, products.dtype).reshape(
            size, alpha, count, *self.tiles, filters)
        combine(inverse, grid.__getitem__, half.__getitem__, "winograd_output_spare_rows")
        tiles_h, tiles_w = self.tiles
        by_column = scratch_rows("winograd_output_columns", size * size,
                                 tile * self.per_sample, count * self.per_sample, filters,
                                 products.dtype).reshape(count, tiles_h, size, size, tiles_w,
                                                         filters)
        columns = by_column.transpose(3, 2, 0, 1, 4, 5)            # (m, m, count, th, tw, f)
        combine(inverse, lambda nu: half[:, nu], columns.__getitem__,
                "winograd_output_spare_columns")
        # both channels-last and contiguous in their filters
        np.copyto(pixel_items(block.reshape(count, tiles_h, size, tiles_w, size, filters)),
                  pixel_items(by_column.transpose(0, 1, 2, 4, 3, 5)))

    def tiled(self, block: np.ndarray) -> np.ndarray:
        """A (count, th·m, tw·m, columns) array seen as (m, m, count, th, tw, columns)."""
        count, columns, size = len(block), block.shape[3], self.size
        return block.reshape(count, self.tiles[0], size, self.tiles[1], size,
                             columns).transpose(2, 4, 0, 1, 3, 5)


def combine(matrix: np.ndarray, term, out, spare_name: str) -> None:
    """``out(r) = Σ_i matrix[r, i] · term(i)`` for each row r of a small transform matrix,
    ``term(i)`` and ``out(r)`` arrays (views) of one shape: the matrix's few nonzero
    coefficients as whole-array additions (a product with a 4- or 6-long inner dimension
    measured 1.7x slower than these passes, which run at the speed of a copy). A row that
    starts with two coefficients of ±1 (every row of F(2×2)'s Bᵀ) starts with their sum or
    difference, one pass where a copy and an addition took two, with the same roundings."""
    spare = None
    for row, coefficients in enumerate(matrix):
        target = out(row)
        terms = [(coefficient, index) for index, coefficient in enumerate(coefficients)
                 if coefficient != 0]
        (first, first_index), rest = terms[0], terms[1:]
        if rest and first in (1, -1) and rest[0][0] in (1, -1) and first + rest[0][0] != -2:
            (second, second_index), rest = rest[0], rest[1:]
            if second == -1:
                np.subtract(term(first_index), term(second_index), out=target)
            elif first == -1:  # -a + b is b - a, exactly
                np.subtract(term(second_index), term(first_index), out=target)
            else:
                np.add(term(first_index), term(second_index), out=target)
        elif first == 1:
            np.copyto(target, term(first_index))
        else:
            np.multiply(term(first_index), first, out=target)
        for coefficient, index in rest:
            source = term(index)
            if coefficient == 1:
                np.add(target, source, out=target)
            elif coefficient == -1:
                np.subtract(target, source, out=target)
            else:
                if spare is None:
                    spare = parallel.scratch(spare_name, target.shape, target.dtype)
                np.multiply(source, coefficient, out=spare)
                np.add(target, spare, out=target)


def copy_by_phase(samples: np.ndarray, phases: np.ndarray, left: int) -> None:
    """Copy ``samples`` (count, h, w, channels) into ``phases`` (count, h, m, w', channels),
    column x of the samples to phase (left + x) % m at offset (left + x) // m. Each pixel's
    channels, where contiguous, are copied as one item: numpy then runs one copy loop over
    the pixels, not one of C values per pixel."""
    size = phases.shape[2]
    width = samples.shape[2]
    source, target = pixel_items(samples), pixel_items(phases)
    if source is None:
        source, target = samples, phases
    for phase in range(size):
        first = (phase - left) % size  # the first sample column of this phase
        if first >= width:
            continue
        columns = len(range(first, width, size))
        offset = (left + first) // size
        np.copyto(target[:, :, phase, offset:offset + columns], source[:, :, first::size])


def transformed_weight(weight: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """G g Gᵀ of every (filter, channel) kernel: (α², channels, filters), contiguous."""
    alpha = len(spread)
    filters, channels = weight.shape[:2]
    result = np.einsum("xk,fckl,yl->xycf", spread, weight, spread, optimize=True)
    return np.ascontiguousarray(result, dtype=weight.dtype).reshape(alpha * alpha, channels,
                                                                    filters)


def scratch_rows(name: str, leading: int, most_rows: int, rows: int, columns: int,
                 dtype) -> np.ndarray:
    """A contiguous (leading, rows, columns) array in this thread's buffer sized for
    ``most_rows`` (a whole tile): a short last tile uses its start."""
    buffer = parallel.scratch(name, (leading * most_rows * columns,), dtype)
    return buffer[:leading * rows * columns].reshape(leading, rows, columns)
