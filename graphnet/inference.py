"""What training, evaluation and prediction share: which inputs and outputs of a graph carry
images, labels, the loss and the class scores; the standardisation fitted on the training split;
evaluation in batches; class probabilities; and reading images for prediction.

    trained = load_trained(graph, "runs/classic/checkpoint.npz")
    probabilities = trained.predict(images)          # N×K, rows sum to 1
"""
from __future__ import annotations

import math
import os
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data.readers import npz_images
from .checkpoint import Checkpoint, restore_params, spec_hash
from .engine import Network
from .files import check_size, is_numpy_file, open_regular, read_npy, read_npz
from .limits import memory_limit
from .errors import CheckpointError, DataError, SpecError, UsageError
from .op import format_shape
from .text import install_hint

LOSS_OUTPUT = "loss"
PREFERRED_LOGITS = "logits"
PROBABILITY_TOLERANCE = 1e-3
FIT_CHUNK = 1024
"""Samples per chunk when fitting the standardisation."""


# --- which input gets what ---------------------------------------------------------------------
@dataclass(frozen=True)
class Bindings:
    """Names in the graph: the float input fed images, the int input fed labels (None when the
    graph has none: prediction needs no labels), the loss output and the class-score output."""

    image: str
    label: str | None
    loss: str | None
    logits: str
    classes: int

    def require_labels(self, file=None) -> None:
        """Training and evaluation need a label input and a loss output."""
        if self.label is None:
            raise SpecError("training needs an integer input for the class labels", file=file,
                            field="inputs", expected='an input such as label = { shape = [], '
                            'dtype = "int64" }')
        if self.loss is None:
            raise SpecError("training needs a loss output", file=file, field="outputs",
                            expected=f"{LOSS_OUTPUT} = \"<the loss node>\"")


def bind(graph, image_input: str | None = None, label_input: str | None = None,
         logits_output: str | None = None) -> Bindings:
    """Find the graph's image and label inputs by dtype and its class-score output (``logits``
    or the only non-loss output); the ``[train]`` keys of the same names choose when several fit."""
    file = graph.file

    def pick(chosen, candidates, key, what, required=True):
        if chosen is not None:
            if chosen not in candidates:
                raise SpecError(f"{key} names no {what}", file=file, field=f"train.{key}",
                                expected="one of: " + (", ".join(candidates) or "none"),
                                found=repr(chosen))
            return chosen
        if len(candidates) == 1:
            return candidates[0]
        if not candidates and not required:
            return None
        raise SpecError(f"cannot tell which {what} to use", file=file, field=f"train.{key}",
                        expected=f"exactly one {what}, or [train] {key} naming one",
                        found=", ".join(candidates) or "none")

    floats = [n for n in graph.inputs if graph.nodes[n].dtype_kind == "float"]
    integers = [n for n in graph.inputs if graph.nodes[n].dtype_kind == "int"]
    image = pick(image_input, floats, "image_input", "float input (the images)")
    label = pick(label_input, integers, "label_input", "integer input (the labels)",
                 required=False)
    loss = LOSS_OUTPUT if LOSS_OUTPUT in graph.outputs else None
    scores = [o for o in graph.outputs if o != LOSS_OUTPUT]
    if logits_output is None and PREFERRED_LOGITS in scores:
        logits_output = PREFERRED_LOGITS
    logits = pick(logits_output, scores, "logits_output", "non-loss output (the class scores)")
    shape = graph.nodes[graph.outputs[logits]].shape
    if len(shape) != 1:
        raise SpecError("the class-score output must hold one score per class", file=file,
                        field=f"outputs.{logits}", expected="a vector per sample (K classes)",
                        found=format_shape(shape))
    return Bindings(image=image, label=label, loss=loss, logits=logits, classes=shape[0])


# --- standardisation ---------------------------------------------------------------------------
@dataclass
class Standardiser:
    """``(x − mean) / std`` per channel, with statistics of the training split only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, images: np.ndarray) -> "Standardiser":
        """Per-channel statistics of N×C×… images (one for all of other layouts), summed in
        float64 a chunk of samples at a time, so no float64 copy of the whole set is made."""
        axes = (0,) + tuple(range(2, images.ndim)) if images.ndim >= 3 else None
        total = squares = 0.0
        for start in range(0, len(images), FIT_CHUNK):
            chunk = images[start:start + FIT_CHUNK].astype(np.float64)
            total = total + chunk.sum(axis=axes)
            squares = squares + np.square(chunk).sum(axis=axes)
        count = images.size / (np.size(total) or 1)
        mean = np.atleast_1d(total / count)
        std = np.sqrt(np.maximum(np.atleast_1d(squares / count) - mean * mean, 0.0))
        std = np.where(std > 1e-8, std, 1.0)  # a constant channel is centred, not blown up
        return cls(mean, std)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Standardised float32 copy of a batch."""
        shape = (1, -1) + (1,) * (images.ndim - 2) if len(self.mean) > 1 else (1,)
        mean = self.mean.astype(np.float32).reshape(shape)
        scale = (1.0 / self.std).astype(np.float32).reshape(shape)
        return (images.astype(np.float32, copy=False) - mean) * scale

    def to_meta(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_meta(cls, meta: dict) -> "Standardiser":
        return cls(np.asarray(meta["mean"], np.float64), np.asarray(meta["std"], np.float64))


# --- evaluation ---------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """Loss, accuracy and confusion matrix (rows: true class, columns: predicted) of one split."""

    loss: float
    accuracy: float
    confusion: np.ndarray
    samples: int


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(
        classes, classes)


def evaluate_split(network: Network, images: np.ndarray, labels: np.ndarray, bindings: Bindings,
                   standardise: Standardiser, batch_size: int) -> Evaluation:
    """Eval mode (``training=False``), in batches; never touches the network's step generator."""
    bindings.require_labels(network.graph.file)
    classes = bindings.classes
    confusion = np.zeros((classes, classes), np.int64)
    loss_sum = 0.0
    rng = np.random.default_rng(0)  # ops that draw in eval mode must not shift training's draws
    for start in range(0, len(labels), batch_size):
        batch_labels = labels[start:start + batch_size]
        feeds = {bindings.image: standardise(images[start:start + batch_size]),
                 bindings.label: batch_labels}
        outputs = network.forward(feeds, training=False, outputs=[bindings.loss, bindings.logits],
                                  rng=rng)
        loss_sum += float(outputs[bindings.loss]) * len(batch_labels)
        confusion += confusion_counts(batch_labels.astype(np.int64),
                                      outputs[bindings.logits].argmax(axis=1), classes)
    count = len(labels)
    correct = int(np.trace(confusion))
    return Evaluation(loss=loss_sum / count if count else math.nan,
                      accuracy=correct / count if count else math.nan,
                      confusion=confusion, samples=count)


def probabilities_of(scores: np.ndarray) -> np.ndarray:
    """Softmax of class scores, unless every row already is a probability distribution (the
    output node is a softmax)."""
    if scores.size and scores.min() >= 0 and scores.max() <= 1 and np.allclose(
            scores.sum(axis=1), 1.0, atol=PROBABILITY_TOLERANCE):
        return scores
    shifted = scores - scores.max(axis=1, keepdims=True)
    exponent = np.exp(shifted)
    return exponent / exponent.sum(axis=1, keepdims=True)


# --- a trained network from a checkpoint --------------------------------------------------------
@dataclass
class Trained:
    """A network with a checkpoint's parameters and what prediction needs besides."""

    network: Network
    bindings: Bindings
    standardise: Standardiser
    class_names: list[str]
    checkpoint: Checkpoint
    warnings: list[str] = field(default_factory=list)

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities (N×K) of N images shaped like the image input; no labels needed."""
        return predict_probabilities(self.network, images, self.bindings, self.standardise,
                                     batch_size)


def predict_probabilities(network: Network, images: np.ndarray, bindings: Bindings,
                          standardise: Standardiser, batch_size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(0)
    rows = []
    for start in range(0, len(images), batch_size):
        feeds = {bindings.image: standardise(images[start:start + batch_size])}
        scores = network.forward(feeds, training=False, outputs=[bindings.logits], rng=rng)
        rows.append(probabilities_of(scores[bindings.logits]))
    return np.concatenate(rows) if rows else np.zeros((0, bindings.classes), network.dtype)


def class_names_for(names, classes: int) -> list[str]:
    """The dataset's class names when they fit the output, else ``0``, ``1``, …"""
    names = list(names or [])
    return names if len(names) == classes else [str(i) for i in range(classes)]


def load_trained(graph, path: str | Path, *, image_input=None, label_input=None,
                 logits_output=None) -> Trained:
    """Network + standardisation + class names from a checkpoint written by training.

    A checkpoint of another spec is refused naming the first parameter that differs; one whose
    spec hash differs but whose parameters fit is accepted with a warning.
    """
    network = Network(graph, seed=0)
    checkpoint = restore_params(path, network)
    meta = checkpoint.meta
    warnings = []
    if meta.get("spec_hash") not in (None, spec_hash(graph)):
        warnings.append(f"{path}: written for a different version of this spec (its parameters "
                        "fit, so it is used)")
    bindings = _bind_as_trained(graph, meta.get("bindings", {}), path, image=image_input,
                                label=label_input, logits=logits_output)
    standardise = stored_standardiser(meta, graph.nodes[bindings.image].shape, path)
    names = meta.get("class_names")
    if names and len(names) != bindings.classes:  # training writes one per score, or none
        raise CheckpointError("the checkpoint's class names do not fit the class scores",
                              file=path, field="class_names",
                              expected=f"{bindings.classes} names, one per score of output "
                                       f"{bindings.logits!r}", found=f"{len(names)} names")
    return Trained(network, bindings, standardise,
                   class_names_for(names, bindings.classes), checkpoint, warnings)


def _bind_as_trained(graph, stored: dict, path, **given) -> Bindings:
    """The bindings a checkpoint's run used (``stored``), unless ``given`` chooses others. One
    that does not fit the graph is the checkpoint's: it was blamed on the spec's
    ``train.image_input``, a key the spec need not have."""
    chosen = {key: value if value is not None else stored.get(key) for key, value in given.items()}
    try:
        return bind(graph, chosen["image"], chosen["label"], chosen["logits"])
    except SpecError as error:
        key = (error.field or "").removeprefix("train.").rpartition("_")[0]
        if given.get(key) is None and stored.get(key) is not None:
            raise CheckpointError(f"the checkpoint's run used another graph: {error.message}",
                                  file=path, field=f"bindings.{key}", expected=error.expected,
                                  found=error.found) from None
        raise


def stored_standardiser(meta: dict, image_shape, path) -> Standardiser:
    """The training data's statistics a checkpoint holds, refused unless they fit an image
    input of ``image_shape`` (one mean and deviation, or one per channel)."""
    try:
        standardise = Standardiser.from_meta(meta["standardise"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError("checkpoint lacks the training data's statistics (not written by "
                              "graphnet train?)", file=path, field="standardise") from None
    channels = image_shape[0] if len(image_shape) >= 3 else 1
    if len(standardise.mean) not in (1, channels) or len(standardise.std) != len(standardise.mean):
        raise CheckpointError("checkpoint's statistics do not fit the image input", file=path,
                              field="standardise",
                              expected="1 channel" if channels == 1 else
                              f"1 or {channels} channels (one for all, or one each)",
                              found=f"{len(standardise.mean)}")
    return standardise


# --- images to predict --------------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_images(path: str | Path, shape: tuple[int, ...],
                conversions: dict[str, list[str]] | None = None) -> np.ndarray:
    """N×``shape`` float32 images from an ``.npz`` (key ``images`` or its single array), an
    ``.npy``, or an image file (Pillow; resized, grey or RGB by the channel count). Layouts and
    pixel scales are read as the ``npz`` dataset reads them (0–255 integers become 0–1).

    A picture that had to be resized or changed between grey and colour is recorded in
    ``conversions`` (if given): what was done → the files it was done to, so a caller can say
    so once per kind."""
    path = Path(path)
    with open_regular(path, DataError, what="input file"):
        pass  # a FIFO, a device or a folder is refused before anything reads it
    suffix = path.suffix.lower()
    if suffix in (".npz", ".npy"):
        array, layout = _read_array(path), "auto"
    elif suffix in IMAGE_SUFFIXES:
        array, layout = _read_picture(path, shape, conversions), "nchw"
    else:
        raise DataError("cannot read this kind of file", file=path,
                        expected=".npz, .npy or an image (" + ", ".join(IMAGE_SUFFIXES) + ")",
                        found=repr(suffix or "no suffix"))
    if array.shape == shape or (len(shape) == 3 and shape[0] == 1 and array.shape == shape[1:]):
        array = array[None]  # one image, not a batch
    if array.ndim == 4 or (array.ndim == 3 and len(shape) == 3 and shape[0] == 1):
        array = npz_images(array, layout=layout, file=path, field=None)
    elif not np.issubdtype(array.dtype, np.number):
        raise DataError("images must hold numbers", file=path, found=str(array.dtype))
    if array.shape[1:] != shape:
        raise DataError("images do not fit the spec's image input", file=path,
                        expected=f"N×{format_shape(shape)} or {format_shape(shape)}",
                        found=format_shape(array.shape))
    if not len(array):  # else predict printed nothing and exited 0
        raise DataError("the file holds no images", file=path,
                        expected=f"N×{format_shape(shape)} with N >= 1",
                        found=format_shape(array.shape))
    return array.astype(np.float32, copy=False)


def _read_array(path: Path) -> np.ndarray:
    if not is_numpy_file(path):
        raise DataError("not a numpy .npz or .npy file", file=path,
                        expected="images saved with numpy.savez or numpy.save")
    if path.suffix.lower() == ".npy":
        with open_regular(path, DataError) as stream:
            return read_npy(stream, DataError, file=path, budget=memory_limit(),
                            available=os.fstat(stream.fileno()).st_size)
    try:
        with zipfile.ZipFile(path) as archive:
            keys = [name.removesuffix(".npy") for name in archive.namelist()]
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise DataError(f"cannot read {path.suffix} file ({type(error).__name__}: {error})",
                        file=path) from None
    key = "images" if "images" in keys else keys[0] if len(keys) == 1 else None
    if key is None:
        raise DataError("cannot tell which array holds the images", file=path,
                        expected="an array named 'images' or a single array",
                        found="arrays " + (", ".join(repr(k) for k in keys) or "none"))
    # every member is checked, so a raw one is refused even when another holds the images
    return read_npz(path, DataError, budget=memory_limit(), keys=[key])[key]


GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
"""Pillow's modes of single-channel (grey) pictures."""


def _read_picture(path: Path, shape: tuple[int, ...],
                  conversions: dict[str, list[str]] | None) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise UsageError("reading image files needs Pillow", file=path,
                         hint=install_hint("image") + ", or pass an .npz of images") from None
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise DataError("an image file can only feed a 1- or 3-channel image input", file=path,
                        found=format_shape(shape))
    channels, height, width = shape
    try:
        # Pillow's own bomb check only warns between its limit and twice that: an error here.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_regular(path, DataError, what="image") as stream, \
                    Image.open(stream) as picture:
                columns, rows = picture.size
                check_size(columns * rows * 4, memory_limit(), DataError, file=path,
                           what=f"a {columns}×{rows} image")
                done = []
                grey = picture.mode in GREY_MODES
                if grey and channels == 3:
                    done.append(("grey copied into the 3 colour channels the spec's input has",
                                 ""))
                elif not grey and channels == 1:
                    done.append(("colour turned grey: the spec's input has 1 channel", ""))
                picture = picture.convert("L" if channels == 1 else "RGB")
                if picture.size != (width, height):
                    done.append((f"resized to {width}×{height}, the spec's input size",
                                 f" (was {picture.size[0]}×{picture.size[1]})"))
                    picture = picture.resize((width, height))
                pixels = np.asarray(picture, dtype=np.uint8)
                if conversions is not None:
                    for kind, detail in done:
                        conversions.setdefault(kind, []).append(f"{path}{detail}")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(f"image is too large to decode safely: {error}", file=path) from None
    except Image.UnidentifiedImageError:  # its words name Pillow's stream object, not the file
        raise DataError("cannot read image: not a picture in a format Pillow knows", file=path,
                        expected=f"a {path.suffix.lstrip('.').upper() or 'picture'} file",
                        found=_first_bytes(path)) from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error) as error:
        # ValueError: e.g. a PNG text chunk past Pillow's size limit; SyntaxError: bad headers
        raise DataError(f"cannot read image: {error}", file=path) from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def _first_bytes(path: Path) -> str:
    """How a file that should be a picture starts (``b'not a jpeg'``), for a message."""
    try:
        with open(path, "rb") as stream:
            start = stream.read(16)
    except OSError:
        return "a file that cannot be read again"
    return f"a file starting {start!r}" if start else "an empty file"


def describe_probabilities(row: np.ndarray, names: list[str], top: int | None = None) -> list[
        tuple[float, str]]:
    """``(probability, class name)`` pairs, most likely first (ties in class order)."""
    order = np.argsort(-row, kind="stable")
    if top:
        order = order[:top]
    return [(float(row[i]), names[i]) for i in order]


def json_ready(value: Any) -> Any:
    """numpy scalars and arrays inside dicts/lists → plain Python, for JSON metadata."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
