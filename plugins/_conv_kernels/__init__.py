"""The kernels behind the ``conv2d`` op: each computes the same convolution its own way, and
the op takes the first in :data:`KERNELS` that fits (a helper package, not a plugin).

A kernel is one module with one class following :class:`ConvKernel`; adding one is that file
and a line in :data:`KERNELS`, placed before the kernels it should win over. Kernels take the
op's :class:`~graphnet_plugins._window.SlidingWindow` and arrays already in the input's dtype;
images arrive NCHW-shaped in any memory layout, outputs and input gradients leave as
channels-last (NHWC) arrays, which the op returns as NCHW-shaped views. Every kernel is tested
against :class:`DirectKernel` (tests/plugins/test_conv.py, test_conv_kernels.py).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .._window import SlidingWindow
from .depthwise import DepthwiseKernel
from .direct import DirectKernel
from .grouped import GroupedKernel
from .taps import TapKernel
from .tiled import TiledKernel
from .winograd import WinogradKernel


class ConvKernel(Protocol):
    """How a convolution is computed. ``weight`` has PyTorch's layout (filters,
    channels / groups, kh, kw); ``bias`` is an array or None."""

    name: str
    """What tests and error messages call it."""

    def fits(self, window: SlidingWindow, channels: int, filters: int, groups: int) -> bool:
        """Whether this kernel computes this convolution, and is meant to: some fit only where
        they were measured to pay. Depends on nothing else (not the batch, not the dtype), so
        the op's choice is known from shapes alone, before any data (see takes_epilogue)."""

    def takes_epilogue(self, window: SlidingWindow, channels: int, filters: int,
                       groups: int) -> bool:
        """Whether forward and backward apply an elementwise epilogue (a ReLU after the conv,
        as a ``graphnet.fusion.Epilogue``) to each tile in cache, where that pays."""

    def forward(self, images: np.ndarray, weight: np.ndarray, bias, window: SlidingWindow,
                groups: int, *, epilogue=None) -> tuple[np.ndarray, Any]:
        """(output NHWC, saved): ``saved`` is whatever :meth:`backward` needs. An ``epilogue``
        (only where :meth:`takes_epilogue`) is applied to the output."""

    def backward(self, grad_output: np.ndarray, saved: Any, weight: np.ndarray,
                 window: SlidingWindow, groups: int, *, input_grad: bool, param_grads: bool,
                 bias: bool, epilogue=None, output=None) -> tuple:
        """(input gradient NHWC or None, weight gradient or None, bias gradient or None), each
        computed only if asked for. With an ``epilogue``, ``grad_output`` is the gradient of
        its result, ``output``, and the kernel applies the epilogue's backward first."""


KERNELS: tuple[ConvKernel, ...] = (
    TapKernel(),        # one group, stride 1, 8+ channels: a BLAS product per kernel tap
    TiledKernel(),      # one group: im2col (or kernel rows) per tile, across the threads
    DepthwiseKernel(),  # one channel per group: multiply-adds per kernel tap
    GroupedKernel(),    # several groups: batched im2col products
    DirectKernel(),     # anything: the definition, the oracle of the tests
)
"""The kernels in the order the op tries them: the first that fits computes the conv."""

ALTERNATIVES: tuple[ConvKernel, ...] = (
    WinogradKernel(2),  # 3×3, stride 1: F(2×2, 3×3)
    WinogradKernel(4),  # 3×3, stride 1: F(4×4, 3×3), fewer products, larger rounding
)
"""Kernels that are never the default, taken where they fit and measured faster than it
(see :mod:`graphnet_plugins.conv`): whether they pay depends on the machine and the layer."""


def named(name: str) -> ConvKernel:
    """The kernel of :data:`KERNELS` or :data:`ALTERNATIVES` called ``name``."""
    for kernel in KERNELS + ALTERNATIVES:
        if kernel.name == name:
            return kernel
    raise ValueError(f"no conv kernel named {name!r}; there are "
                     f"{', '.join(kernel.name for kernel in KERNELS + ALTERNATIVES)}")


__all__ = ["ALTERNATIVES", "KERNELS", "ConvKernel", "DepthwiseKernel", "DirectKernel",
           "GroupedKernel", "TapKernel", "TiledKernel", "WinogradKernel", "named"]
