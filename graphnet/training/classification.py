"""Classification, the application the training loop runs: a dataset's images and labels fed to
the graph's bound inputs (images standardised with the training split's statistics), correct
predictions counted per step, after each epoch the validation loss and accuracy, and at the end
the test loss, accuracy and confusion matrix. Also the evaluation of a trained checkpoint (``graphnet eval``).

The pieces shared with prediction — bindings, standardisation, batched evaluation, class
probabilities, a trained network from a checkpoint — are :mod:`graphnet.inference`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, Split
from ..data.augment import Augmentation
from ..engine import Network
from ..inference import (Bindings, Evaluation, Standardiser, Trained, class_names_for,
                         evaluate_split, json_ready, load_trained, stored_standardiser)
from ..train_config import SCALAR_KEYS, TrainConfig, check_dataset, load_dataset


@dataclass
class Classification:
    """The loop's task (:class:`graphnet.training.loop.Task`) for a classifier: ``train`` is
    trained on, ``validation`` (optional) is evaluated after every epoch, ``test`` once at the
    end.
    ``dataset`` (name and options) is recorded in checkpoints, so ``eval`` finds it again."""

    network: Network
    bindings: Bindings
    standardise: Standardiser
    train: Split
    validation: Split | None
    test: Split
    class_names: list[str]
    dataset: dict[str, Any]
    eval_batch_size: int
    augment: Augmentation | None = None
    """Transforms of the training batches (see :mod:`graphnet.data.augment`)."""
    last_test: Evaluation | None = None
    """The test split's evaluation at the end of this session."""

    @property
    def samples(self) -> int:
        return len(self.train)

    def batch(self, indices: np.ndarray, at: tuple[int, int] | None = None
              ) -> dict[str, np.ndarray]:
        """Training samples, augmented (for a step ``at`` = (epoch, step)) then standardised."""
        images = self.train.images[indices]
        if at is not None and self.augment:
            images = self.augment(images, *at)
        return {self.bindings.image: self.standardise(images),
                self.bindings.label: self.train.labels[indices]}

    def correct(self, outputs: dict[str, np.ndarray], feeds: dict[str, np.ndarray]) -> int:
        labels = feeds[self.bindings.label]
        return int((outputs[self.bindings.logits].argmax(axis=1) == labels).sum())

    def evaluate(self) -> dict[str, Any]:
        """After each epoch: validation loss and accuracy, when there is a validation split. The
        test split is not looked at while choosing (:meth:`evaluate_test`, once, at the end)."""
        if self.validation is None:
            return {}
        val = self._evaluate(self.validation)
        return {"val_loss": val.loss, "val_accuracy": val.accuracy}

    def evaluate_test(self) -> dict[str, Any]:
        """The test split's loss and accuracy (its confusion matrix is kept for
        :meth:`confusion`)."""
        self.last_test = test = self._evaluate(self.test)
        return {"test_loss": test.loss, "test_accuracy": test.accuracy}

    def confusion(self, *, evaluate: bool) -> np.ndarray:
        """The test confusion matrix of the final evaluation; without one, a fresh evaluation's
        (``evaluate``) or zeros (Ctrl-C should not wait for an evaluation)."""
        if self.last_test is not None:
            return self.last_test.confusion
        if evaluate:
            return self._evaluate(self.test).confusion
        classes = self.bindings.classes
        return np.zeros((classes, classes), np.int64)

    def meta(self) -> dict[str, Any]:
        bindings = self.bindings
        return {"dataset": json_ready(self.dataset),
                "bindings": {"image": bindings.image, "label": bindings.label,
                             "logits": bindings.logits},
                "class_names": self.class_names, "standardise": self.standardise.to_meta()}

    def restore(self, meta: dict[str, Any], path: Path) -> None:
        self.standardise = stored_standardiser(meta, self.network.graph.nodes[self.bindings.image]
                                               .shape, path)

    def _evaluate(self, split: Split) -> Evaluation:
        return evaluate_split(self.network, split.images, split.labels, self.bindings,
                              self.standardise, self.eval_batch_size)


def evaluate_checkpoint(graph, checkpoint: str | Path, dataset: Dataset | str | None = None, *,
                        labels: dict[str, str] | None = None,
                        **overrides) -> tuple[Evaluation, Trained]:
    """Test loss, accuracy and confusion matrix of a checkpoint, in eval mode.

    By default the dataset (name, options and seed) is the one the checkpoint was trained on;
    ``dataset`` or keyword settings (``eval_batch_size``, ``dataset_options``, …) change it.
    """
    trained = load_trained(graph, checkpoint)
    labels = dict(labels or {})
    if isinstance(dataset, Dataset):
        data = dataset
        batch_size = overrides.get("eval_batch_size") or SCALAR_KEYS["eval_batch_size"].default
    else:
        meta = trained.checkpoint.meta
        trained_on = meta.get("dataset") or {}
        settings: dict[str, Any] = {}
        if dataset is None and overrides.get("dataset") is None and trained_on.get("name"):
            settings["dataset"] = trained_on["name"]
            settings["dataset_options"] = dict(trained_on.get("options") or {})
            labels.setdefault("dataset", f"{checkpoint} (dataset)")
            labels.setdefault("dataset_options", f"{checkpoint} (dataset option)")
        if "seed" in (meta.get("config") or {}):
            settings["seed"] = meta["config"]["seed"]
            labels.setdefault("seed", f"{checkpoint} (seed)")
        settings.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(dataset, str):
            settings["dataset"] = dataset
        config = TrainConfig.from_graph(graph, settings, labels)
        data, _ = load_dataset(graph, config, trained.bindings)
        batch_size = config.eval_batch_size
    check_dataset(graph, data, trained.bindings)
    trained.class_names = class_names_for(data.class_names or trained.class_names,
                                          trained.bindings.classes)
    evaluation = evaluate_split(trained.network, data.test.images, data.test.labels,
                                trained.bindings, trained.standardise, batch_size)
    return evaluation, trained
