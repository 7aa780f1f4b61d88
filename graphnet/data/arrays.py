"""Images and labels held in memory as a :class:`graphnet.data.Dataset`, taken as the ``npz``
dataset takes its file's arrays: the same layouts (N×H×W, N×H×W×C, N×C×H×W), the same scaling
to [0, 1] and the same checks; without test arrays, a stratified test split drawn by the seed.

    graphnet.train.train(graph, x=images, y=labels, epochs=5)            # 20 % held out
    graphnet.train.train(graph, x=images, y=labels, x_test=xt, y_test=yt)
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, UsageError
from . import Dataset, Split
from .readers import check_labels, npz_images, npz_labels
from .split import stratified_split

NAME = "arrays"
DEFAULT_TEST_FRACTION = 0.2


def dataset_from_arrays(x, y, x_test=None, y_test=None, *, num_classes: int,
                        test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0,
                        layout: str = "auto", class_names=None) -> Dataset:
    """A Dataset of arrays ``x`` (images) and ``y`` (class indices below ``num_classes``);
    ``x_test``/``y_test`` are the test split, or ``test_fraction`` of each class is held out."""
    if x is None:
        raise UsageError("training on arrays needs the images", field="x",
                         expected="an array of images, N×C×H×W or N×H×W(×C)")
    if y is None:
        raise UsageError("training on arrays needs their labels", field="y",
                         expected="an integer array with one class index per image in x")
    if (x_test is None) != (y_test is None):
        raise UsageError("x_test and y_test go together", field="y_test" if y_test is None
                         else "x_test", expected="both or neither")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not (
            0 < test_fraction < 1):
        raise UsageError("bad test fraction", field="test_fraction",
                         expected="a number between 0 and 1 (exclusive)", found=repr(test_fraction))
    train = _split(x, y, "x", "y", layout, num_classes)
    if x_test is None:
        train, test = stratified_split(train.images, train.labels, test_fraction=test_fraction,
                                       rng=np.random.default_rng(seed))
    else:
        test = _split(x_test, y_test, "x_test", "y_test", layout, num_classes)
        if test.images.shape[1:] != train.images.shape[1:]:
            raise DataError("train and test images differ in shape", field="x_test",
                            expected=str(train.images.shape[1:]), found=str(test.images.shape[1:]))
    names = [str(k) for k in range(num_classes)] if class_names is None else list(class_names)
    return Dataset(NAME, train, test, class_names=names)


def _split(images, labels, images_field: str, labels_field: str, layout: str,
           num_classes: int) -> Split:
    images, labels = _array(images, images_field), _array(labels, labels_field)
    if images.dtype.kind not in "biuf":
        raise DataError("images must be real numbers", field=images_field,
                        found=f"a {images.dtype} array")
    if labels.dtype.kind not in "biuf":
        raise DataError("labels must be integers", field=labels_field,
                        found=f"a {labels.dtype} array")
    images = npz_images(images, layout=layout, file=None, field=images_field)
    labels = npz_labels(labels, file=None, field=labels_field)
    return Split(images, check_labels(labels, images=len(images), num_classes=num_classes,
                                      file=None, field=labels_field))


def _array(value, field: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged nested lists and the like
        raise DataError("not an array", field=field, found=str(error)) from None
