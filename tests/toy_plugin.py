"""A tiny generated dataset for the training tests: fixed random patterns plus noise.

Loaded as a plugin file (``--plugin tests/toy_plugin.py``), the way a user's dataset would be.
Each class is a fixed random C×S×S pattern in [0, 1]; a sample is its class's pattern plus
Gaussian noise, clipped to [0, 1], so a small dense network learns it in an epoch or two.
"""
from __future__ import annotations

import numpy as np

from graphnet.data import Dataset, DatasetSource, Split
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr


class Toy(DatasetSource):
    """Fixed random patterns per class plus noise (for tests)."""

    name = "toy"
    options = {
        "size": Attr("int", default=6, minimum=2),
        "channels": Attr("int", default=1, minimum=1),
        "classes": Attr("int", default=4, minimum=2),
        "train": Attr("int", default=512, minimum=1),
        "test": Attr("int", default=256, minimum=1),
        "noise": Attr("float", default=0.5, minimum=0),
    }

    def load(self, options, *, seed, cache_dir):
        shape = (options.classes, options.channels, options.size, options.size)
        patterns = np.random.default_rng(1234).random(shape, dtype=np.float32)
        rng = np.random.default_rng(seed)

        def split(count):
            labels = rng.integers(0, options.classes, count).astype(np.int64)
            noise = rng.standard_normal((count,) + shape[1:]).astype(np.float32)
            return Split(np.clip(patterns[labels] + options.noise * noise, 0, 1), labels)

        return Dataset("toy", split(options.train), split(options.test),
                       [f"class{i}" for i in range(options.classes)])


@hookimpl
def graphnet_register_datasets(registry):
    registry.add_dataset(Toy)


# --- helpers for the tests (not hooks: pluggy ignores them) ---------------------------------
def toy_spec(name="toy", *, units=16, size=6, channels=1, classes=4, dropout=False,
             fc1_weights=None, **train) -> dict:
    """A small dense classifier spec for the toy dataset; ``train`` keys go to [train]."""
    nodes = [{"name": "fc1", "op": "dense", "inputs": ["image"], "units": units}]
    if fc1_weights is not None:
        nodes[0]["weights"] = fc1_weights
    nodes.append({"name": "relu1", "op": "relu"})
    if dropout:
        nodes.append({"name": "drop", "op": "dropout", "rate": 0.3})
    nodes += [{"name": "fc2", "op": "dense", "units": classes},
              {"name": "loss", "op": "softmax_cross_entropy", "inputs": ["fc2", "label"]}]
    settings = {"dataset": "toy", "epochs": 2, "batch_size": 32,
                "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}}
    settings.update(train)
    return {"graph": {"name": name},
            "inputs": {"image": {"shape": [channels, size, size]},
                       "label": {"shape": [], "dtype": "int64"}},
            "nodes": nodes, "outputs": {"logits": "fc2", "loss": "loss"}, "train": settings}
