"""Kernel-tap products over pairs of neighbouring pixels, for :mod:`.taps` at 16-ish channels.

The tap kernel's products are (positions × channels) @ (channels × filters): at 16 channels
and filters OpenBLAS runs them at ~50 GFLOP/s per core, against ~65 at 32 (a product 16
deep and 16 wide spends much of its time packing and writing back). On a grid whose pitch is
even, two horizontally neighbouring pixels are one row of 2·channels values (a free view of
the same buffer), and the output pair (2s, 2s+1) of kernel row r reads the input pixels
2s−1 … 2s+2 around that row. The two middle ones are a pair: all four of their
(channels × filters) blocks are taps, one (pairs × 2·channels) @ (2·channels × 2·filters)
product. The outer two reach one output each: half a pair (a column range of the pair view,
every other pixel) times one tap, written into half of the output pairs. The same work, no
zeros multiplied, and two thirds of it in products twice as deep and wide.

In general each tap t at offset o and output parity a reads the pair d = (a + o) // 2, its
half b = (a + o) % 2. Pairs d that hold all four (b, a) blocks make one 32-wide product,
the rest one product per block. The input gradient is the same with the offsets negated and
the taps transposed; the weight gradient takes the same products as (input)ᵀ × (output
gradient), and each tap's gradient is the sum of its two blocks (one per output parity).
"""
from __future__ import annotations

import functools

import numpy as np


class PairPlan:
    """Which products over pixel pairs compute the taps at ``offsets`` (grid rows, on a grid of
    even pitch), and where each tap's weights sit in the packed matrices of those products."""

    def __init__(self, offsets):
        self.offsets = tuple(offsets)
        blocks: dict[int, dict[tuple[int, int], int]] = {}
        # taps at one offset (images narrower than the kernel's reach) share blocks: then
        # the plan is only made, never used (see pays)
        self.distinct = len(set(self.offsets)) == len(self.offsets)
        for tap, offset in enumerate(self.offsets):
            for parity in (0, 1):
                pair, half = divmod(parity + offset, 2)
                blocks.setdefault(pair, {})[half, parity] = tap
        self.full = [pair for pair, group in sorted(blocks.items()) if len(group) == 4]
        self.blocks = {pair: blocks[pair] for pair in self.full}
        self.single = [(pair, half, parity, tap) for pair, group in sorted(blocks.items())
                       if len(group) < 4 for (half, parity), tap in sorted(group.items())]

    @property
    def pays(self) -> bool:
        """Whether at least two thirds of the work is in pair products, as for 3×3 kernels
        (one kernel row: one pair product and two single blocks), the case measured: at 16
        channels, one thread, pair products ran at ~62 GFLOP/s, single blocks (strided, half
        as tall) at ~39 and plain taps at ~45, so much less than that would gain little."""
        return self.distinct and 3 * 4 * len(self.full) >= 2 * 2 * len(self.offsets)

    @functools.lru_cache(maxsize=64)
    def positions(self, channels: int, filters: int) -> np.ndarray:
        """(2, taps·channels·filters): where each element of each tap's matrix sits in the
        packed matrices, for outputs of parity 0 and 1."""
        block = channels * filters
        places = np.empty((2, len(self.offsets), channels, filters), dtype=np.intp)
        rows, columns = np.indices((channels, filters))
        for index, pair in enumerate(self.full):
            for (half, parity), tap in self.blocks[pair].items():
                places[parity, tap] = (4 * block * index + (half * channels + rows) * 2 * filters
                                       + parity * filters + columns)
        for index, (_, _, parity, tap) in enumerate(self.single):
            places[parity, tap] = (4 * block * len(self.full) + block * index
                                   + rows * filters + columns)
        return places.reshape(2, -1)

    def pack(self, taps: np.ndarray) -> np.ndarray:
        """The products' matrices, flat, from the taps' (taps, channels, filters) matrices."""
        places = self.positions(*taps.shape[1:])
        packed = np.empty(2 * taps.size, dtype=taps.dtype)
        packed[places[0]] = taps.reshape(-1)
        packed[places[1]] = taps.reshape(-1)
        return packed

    def unpack_sum(self, packed: np.ndarray, channels: int, filters: int) -> np.ndarray:
        """(taps, channels, filters): each tap's two blocks of ``packed`` summed (the weight
        gradient's products give one block per output parity)."""
        places = self.positions(channels, filters)
        return (packed[places[0]] + packed[places[1]]).reshape(-1, channels, filters)

    @functools.lru_cache(maxsize=64)
    def product_terms(self, channels: int, filters: int, positions: int, start: int) -> tuple:
        """:func:`graphnet.blas.strided_products` terms adding the taps' products into
        ``positions`` (even) output rows of ``filters`` columns, reading the rows from
        ``start`` on of a source of ``channels`` columns, with :meth:`pack`'s matrices."""
        pairs, block = positions // 2, channels * filters
        terms = [(False, pairs, 2 * filters, 2 * channels, (start + 2 * pair) * channels,
                  2 * channels, 4 * block * index, 2 * filters, 0, 2 * filters, float(index > 0))
                 for index, pair in enumerate(self.full)]
        terms += [(False, pairs, filters, channels, (start + 2 * pair + half) * channels,
                   2 * channels, 4 * block * len(self.full) + block * index, filters,
                   parity * filters, 2 * filters, 1.0)
                  for index, (pair, half, parity, _) in enumerate(self.single)]
        return tuple(terms)

    @functools.lru_cache(maxsize=64)
    def gradient_terms(self, channels: int, filters: int, positions: int, start: int,
                       grad_start: int) -> tuple:
        """Terms writing the weight gradient's blocks, packed as :meth:`pack`'s matrices: the
        source's rows from ``start`` on (``channels`` columns), transposed, times the output
        gradient's ``positions`` rows from ``grad_start`` on (``filters`` columns)."""
        pairs, block = positions // 2, channels * filters
        terms = [(True, 2 * channels, 2 * filters, pairs, (start + 2 * pair) * channels,
                  2 * channels, grad_start * filters, 2 * filters, 4 * block * index,
                  2 * filters, 0.0)
                 for index, pair in enumerate(self.full)]
        terms += [(True, channels, filters, pairs, (start + 2 * pair + half) * channels,
                   2 * channels, (grad_start + parity) * filters, 2 * filters,
                   4 * block * len(self.full) + block * index, filters, 0.0)
                  for index, (pair, half, parity, _) in enumerate(self.single)]
        return tuple(terms)


@functools.lru_cache(maxsize=256)
def pair_plan(offsets: tuple) -> PairPlan:
    """The PairPlan of a layer's tap offsets, made once."""
    return PairPlan(offsets)
