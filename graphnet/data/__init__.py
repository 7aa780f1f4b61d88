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

from ..errors import PluginError, plugin_failure
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


def load_from(entry, options: SimpleNamespace, *, seed: int, cache_dir: Path) -> Dataset:
    """Load the dataset a registry ``entry`` holds with parsed ``options``: a failure inside the
    plugin, or a return value :func:`returned_problem` finds wrong, raises naming the dataset and
    its plugin. The one place data from a dataset plugin enters graphnet."""
    what = f"dataset {entry.name!r} (plugin {entry.plugin!r})"
    try:
        dataset = entry.value().load(options, seed=seed, cache_dir=cache_dir)
    except Exception as error:
        raise plugin_failure(error, f"{what} failed to load")
    problem = returned_problem(dataset)
    if problem:
        raise PluginError(f"{what}: {problem}")
    return dataset


def returned_problem(dataset) -> str | None:
    """What is wrong with what a dataset plugin's ``load`` returned, in words (None: nothing):
    checked where the data enters, so a plugin's mistake is reported naming the plugin rather
    than failing inside training, and NaN in the images is bad data, not a learning rate."""
    if not isinstance(dataset, Dataset):
        return f"returned {type(dataset).__name__}, not a graphnet.data.Dataset"
    for name in ("train", "test"):
        split = getattr(dataset, name)
        if not isinstance(split, Split):
            return f"its {name} split is {type(split).__name__}, not a graphnet.data.Split"
        images, labels = split.images, split.labels
        if not isinstance(images, np.ndarray) or images.dtype.kind not in "biuf":
            return (f"its {name} images are {_kind(images)}, not an array of real numbers")
        if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
            return f"its {name} labels are {_kind(labels)}, not an array of integers"
        if images.dtype.kind == "f" and not np.isfinite(images).all():
            return f"its {name} images hold NaN or infinite values"
    names = dataset.class_names
    if not isinstance(names, list) or not all(isinstance(item, str) for item in names):
        return "its class_names are not a list of strings"
    unprintable = next((item for item in names if not item.isprintable()), None)
    if unprintable is not None:  # printed by training and predict, kept in checkpoints
        return f"its class name {unprintable[:40]!r} holds control characters"
    return None


def _kind(value) -> str:
    return f"a {value.dtype} array" if isinstance(value, np.ndarray) else type(value).__name__

