"""Depthwise convolution (one input channel per group: MobileNet's 3×3 filters) by multiply-adds
per kernel tap, over tiles of samples in cache, shared among the worker threads.

Each output channel sees one input channel, so a tap is an elementwise product of the padded
input's shifted window with a per-channel weight, channels-last: a pixel's C values times the
tap's C weights, added into the output. im2col would gather single elements a pixel apart and
multiply (C × kh·kw) blocks of zeros. numpy takes two passes per tap (a product, then the sum),
so each tile's passes must read cache, not memory: MobileNetV2's 96-channel 3×3 layer over
32×32 at batch 64 took 33 ms forward and 42 ms backward as whole-batch passes on one thread,
against PyTorch's 3 and 6 ms.

Backward, per tile: the weight gradient of tap t is the per-channel sum of (input window ×
output gradient), a product and a column sum (BLAS); the input gradient adds each tap's output
gradient × weight into a zeroed, padded tile at the window the tap read. Each tile's weight
and bias gradients are kept and summed in tile order, so a result does not depend on which
thread took which tile.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphnet import blas, parallel

from .._pixels import channel_rows
from .._window import SlidingWindow
from .tiled import padded_tile


@dataclass(frozen=True)
class DepthwiseKernel:
    """One input channel per group (filters = channels × a depth multiplier)."""

    tile_bytes: int = 1 << 19
    """Target bytes of a tile's padded input: it, the output tile and one tap's product stay
    in the L2 cache through the taps' passes."""
    tile: int | None = None
    """Samples per tile, if fixed; by default from ``tile_bytes`` and the thread count."""
    name = "depthwise"

    def fits(self, window: SlidingWindow, channels: int, filters: int, groups: int) -> bool:
        return groups == channels and groups > 1

    def takes_epilogue(self, window, channels, filters, groups) -> bool:
        """Always: each tile's output is in cache, so a ReLU or ReLU6 right after the conv
        costs no pass over memory of its own."""
        return True

    def samples_per_tile(self, images: np.ndarray, window: SlidingWindow) -> int:
        """Samples per tile: about ``tile_bytes`` of padded input, every thread a few tiles."""
        padded_h, padded_w = window.padded_hw
        per_sample = padded_h * padded_w * images.shape[1] * images.itemsize
        return self.tile or parallel.tile_items(per_sample, self.tile_bytes, total=len(images))

    def forward(self, images, weight, bias, window: SlidingWindow, groups: int, *,
                epilogue=None):
        """(output NHWC, saved): filter c·multiplier + m sees input channel c only. Saved:
        the input itself (backward pads its tiles again)."""
        batch, filters = len(images), len(weight)
        taps = tap_weights(weight)
        source = images.transpose(0, 2, 3, 1)
        output = np.empty((batch, *window.output_hw, filters), dtype=images.dtype)
        tile = self.samples_per_tile(images, window)

        def work(index, part):
            count = part.stop - part.start
            padded = padded_tile(source, part.start, count, tile, window, planes=False)
            out = output[part]
            product = parallel.scratch("depthwise_product", (tile, *out.shape[1:]),
                                       out.dtype)[:count]
            for tap, (_, _, rows, cols) in enumerate(window.taps()):
                reads = by_filter(padded[:count, rows, cols], filters)
                np.multiply(reads, taps[tap], out=out if tap == 0 else product)
                if tap:
                    np.add(out, product, out=out)
            if bias is not None:
                biased, row = channel_rows(out, bias)
                biased += row
            if epilogue is not None:
                epilogue.forward(out)

        parallel.run_tiles(work, batch, tile)
        return output, images

    def backward(self, grad_output, images, weight, window: SlidingWindow, groups: int, *,
                 input_grad: bool, param_grads: bool, bias: bool, epilogue=None, output=None):
        batch, channels = images.shape[:2]
        filters = len(weight)
        taps = tap_weights(weight)
        source = images.transpose(0, 2, 3, 1)
        grad_nhwc = grad_output.transpose(0, 2, 3, 1)
        output_nhwc = None if epilogue is None else output.transpose(0, 2, 3, 1)
        tile = self.samples_per_tile(images, window)
        tiles = -(-batch // tile)
        weight_parts, bias_parts = [None] * tiles, [None] * tiles
        grad_input = (np.empty((batch, *window.input_hw, channels), dtype=images.dtype)
                      if input_grad else None)
        top, _, left, _ = window.pads
        height, width = window.input_hw
        tap_count = window.kernel[0] * window.kernel[1]

        def work(index, part):
            count = part.stop - part.start
            grads = parallel.scratch("depthwise_grad", (tile, *grad_nhwc.shape[1:]),
                                     grad_nhwc.dtype)[:count]
            if epilogue is None:
                np.copyto(grads, grad_nhwc[part])  # contiguous: the passes below run whole
            else:
                epilogue.backward(grad_nhwc[part], output_nhwc[part], grads)
            product = parallel.scratch("depthwise_product", (tile, *grads.shape[1:]),
                                       grads.dtype)[:count]
            if param_grads:
                padded = padded_tile(source, part.start, count, tile, window, planes=False)
                part_sums = np.empty((tap_count, filters), grads.dtype)
                for tap, (_, _, rows, cols) in enumerate(window.taps()):
                    np.multiply(by_filter(padded[:count, rows, cols], filters), grads,
                                out=product)
                    part_sums[tap] = blas.column_sums(product.reshape(-1, filters))
                weight_parts[index] = part_sums
                if bias:
                    bias_parts[index] = blas.column_sums(grads.reshape(-1, filters))
            if input_grad:
                accumulated = parallel.scratch(
                    "depthwise_grad_padded", (tile, *window.padded_hw, channels),
                    grads.dtype)[:count]
                accumulated[...] = 0
                shares = product.reshape(*grads.shape[:3], channels, filters // channels)
                for tap, (_, _, rows, cols) in enumerate(window.taps()):
                    np.multiply(grads, taps[tap], out=product)
                    target = accumulated[:, rows, cols]
                    if shares.shape[-1] == 1:
                        np.add(target, shares[..., 0], out=target)
                    else:
                        np.add(target, shares.sum(axis=-1), out=target)
                grad_input[part] = accumulated[:, top:top + height, left:left + width]

        parallel.run_tiles(work, batch, tile)
        grad_weight = grad_bias = None
        if param_grads:
            total = parallel.ordered_sum(weight_parts, (tap_count, filters), images.dtype)
            grad_weight = np.ascontiguousarray(total.T).reshape(filters, 1, *window.kernel)
            if bias:
                grad_bias = parallel.ordered_sum(bias_parts, (filters,), images.dtype)
        return grad_input, grad_weight, grad_bias


def tap_weights(weight: np.ndarray) -> np.ndarray:
    """(filters, 1, kh, kw) → (taps, filters): each tap's weight for every output channel,
    which is channel c·multiplier + m of input channel c."""
    return np.ascontiguousarray(weight.reshape(len(weight), -1).T)


def by_filter(reads: np.ndarray, filters: int) -> np.ndarray:
    """A window's (…, channels) input values as (…, filters): each channel repeated for its
    depth multiplier's filters (a copy; the window itself for a multiplier of 1, the case
    MobileNets use)."""
    channels = reads.shape[-1]
    if filters == channels:
        return reads
    return np.repeat(reads, filters // channels, axis=-1)
