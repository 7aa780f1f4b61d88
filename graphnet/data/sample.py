"""Sample images from any registered dataset into an ``.npz`` that ``graphnet predict`` (and
``show --input``) read: ``images`` (N×C×H×W float32, as the dataset gives them), ``labels``
(N int64) and ``class_names`` (N classes, text — read back without pickle)."""
from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..errors import DataError, SpecError, UsageError
from ..files import atomic_write_bytes
from ..options import parse_options
from . import Dataset, load_from


def sample_dataset(registry, name: str, *, count: int, split: str = "test", seed: int = 0,
                   options: dict | None = None, cache_dir: Path) -> tuple[Dataset, np.ndarray]:
    """(the loaded dataset, the indices of ``count`` distinct images of ``split``, drawn with
    ``seed``, in ascending order). Raises UsageError for a bad option, DataError when the split
    holds fewer images than asked for."""
    entry = registry.entry("dataset", name, field_name="NAME")
    source_class = entry.value
    try:
        parsed = parse_options(source_class.options, dict(options or {}),
                               what=f"dataset {name!r}")
    except SpecError as error:
        raise UsageError(error.message, field=f"--dataset-option {error.field}",
                         expected=error.expected, found=error.found, hint=error.hint) from None
    dataset = load_from(entry, SimpleNamespace(**parsed), seed=seed, cache_dir=cache_dir)
    available = len(getattr(dataset, split))
    if count > available:
        raise DataError(f"dataset {name!r} has too few {split} images", field="--count",
                        expected=f"at most {available}", found=str(count))
    chosen = np.random.default_rng(seed).choice(available, size=count, replace=False)
    return dataset, np.sort(chosen)

def write_sample(path: str | Path, dataset: Dataset, split: str, indices: np.ndarray) -> None:
    """Write the chosen images, their labels and the class names to ``path`` atomically."""
    chosen = getattr(dataset, split)
    buffer = io.BytesIO()
    np.savez(buffer, images=np.ascontiguousarray(chosen.images[indices], dtype=np.float32),
             labels=np.asarray(chosen.labels[indices], dtype=np.int64),
             class_names=np.asarray([str(name) for name in dataset.class_names], dtype=str))
    atomic_write_bytes(path, buffer.getvalue())
