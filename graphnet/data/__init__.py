"""Datasets: the contract every dataset plugin fulfils, and the containers it returns.

A dataset is a class registered through the ``graphnet_register_datasets`` hook::

    class Shapes(DatasetSource):
        '''Generated edges, curves, corners and shapes; no files.'''
        name = "shapes"
        options = {"size": Attr("int", default=32, minimum=8)}

        def load(self, options, *, seed, cache_dir):
            ...
            return Dataset(name="shapes", train=Split(x, y), test=Split(x2, y2),
                           class_names=[...])

Images are float32 arrays N×C×H×W (scaled to about unit range), labels int64 arrays of N.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np

from ..op import Attr


@dataclass
class Split:
    """Images (N×C×H×W float32) and their labels (N int64)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    """A training split and a held-out test split that is never trained on."""

    name: str
    train: Split
    test: Split
    class_names: list[str] = field(default_factory=list)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class DatasetSource:
    """Base class of dataset plugins: ``name``, ``options`` (an :class:`Attr` schema, as ops
    have) and ``load``. The first line of the docstring is the one-line doc."""

    name: ClassVar[str] = ""
    options: ClassVar[dict[str, Attr]] = {}
    remote: ClassVar[object | None] = None
    """Files to download (a :class:`graphnet.data.fetch.Remote`), for ``graphnet data fetch``;
    None for a dataset that is generated or read from a path the user gives."""

    @classmethod
    def cache_status(cls, cache_dir: Path | None) -> str:
        """One line for ``graphnet data list``: what is (or need not be) in the cache."""
        return ""

    def load(self, options: SimpleNamespace, *, seed: int, cache_dir: Path) -> Dataset:
        """Return the dataset; raise graphnet.DataError naming the file and what is wrong."""
        raise NotImplementedError
