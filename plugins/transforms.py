"""Built-in data-augmentation transforms: random crop, flip and shift of training batches.

Registered through ``graphnet_register_datasets`` like a user's own; the contract is in
:mod:`graphnet.data.augment`. Each is vectorised over the batch: one index array or one mask
for all samples, no loop over samples or pixels.
"""
from __future__ import annotations

import numpy as np

from graphnet.data.augment import Transform
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr


def shifted(batch: np.ndarray, rng: np.random.Generator, pixels: int, mode: str) -> np.ndarray:
    """Each image moved by its own offsets in [-pixels, pixels] on both axes, the border
    filled by ``np.pad``'s ``mode`` (zeros or the edge): one gather for the whole batch."""
    if pixels == 0:
        return batch
    count, _, height, width = batch.shape
    padded = np.pad(batch, ((0, 0), (0, 0), (pixels, pixels), (pixels, pixels)), mode=mode)
    top = rng.integers(0, 2 * pixels + 1, count)
    left = rng.integers(0, 2 * pixels + 1, count)
    rows = (top[:, None] + np.arange(height))[:, None, :, None]
    cols = (left[:, None] + np.arange(width))[:, None, None, :]
    samples = np.arange(count)[:, None, None, None]
    channels = np.arange(batch.shape[1])[None, :, None, None]
    return padded[samples, channels, rows, cols]


class Crop(Transform):
    """Random crop of the image padded with zeros on every side (CIFAR's crop:4)."""

    name = "crop"
    options = {"padding": Attr("int", default=4, minimum=0, maximum=64,
                               doc="zeros added on each side before cropping back to size")}
    fill = "constant"
    """How ``np.pad`` fills the border that a move uncovers."""

    def apply(self, batch, rng):
        pixels = getattr(self.settings, next(iter(self.options)))  # the one option: how far
        return shifted(batch, rng, pixels, self.fill)


class Shift(Crop):
    """Move each image by up to ``pixels`` on both axes, repeating its edge into the gap."""

    name = "shift"
    options = {"pixels": Attr("int", default=2, minimum=0, maximum=64,
                              doc="largest move along each axis")}
    fill = "edge"


class Flip(Transform):
    """Mirror left–right, each image with probability p."""

    name = "flip"
    options = {"p": Attr("float", default=0.5, minimum=0, maximum=1,
                         doc="probability that an image is mirrored")}

    def apply(self, batch, rng):
        mirrored = rng.random(len(batch)) < self.settings.p
        return np.where(mirrored[:, None, None, None], batch[..., ::-1], batch)


@hookimpl
def graphnet_register_datasets(registry):
    for transform_class in (Crop, Flip, Shift):
        registry.add_transform(transform_class)
