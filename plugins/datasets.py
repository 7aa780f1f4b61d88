"""Built-in datasets: ``shapes`` (generated), ``mnist``, ``fashion-mnist``, ``cifar10`` (fetched
into the cache), ``npz`` (a file you name) and ``digits`` (shipped with scikit-learn).

A dataset that downloads declares ``remote`` (a :class:`graphnet.data.fetch.Remote`: URLs,
sizes, SHA-256 digests); ``graphnet data fetch NAME`` works for any registered dataset that
does, a plugin's too. ``cache_status(cache_dir)`` is the line ``graphnet data list`` shows.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from graphnet.data import Dataset, DatasetSource, Split
from graphnet.text import install_hint
from graphnet.data.cache import dataset_folder, find_file
from graphnet.data.fetch import Remote, RemoteFile
# The readers, the shapes generator and the splitter are imported where a dataset is loaded:
# registering the datasets (every command does) needs none of them.
from graphnet.errors import DataError
from graphnet.hookspecs import hookimpl
from graphnet.op import Attr

TEST_FRACTION = Attr("float", default=0.2, minimum=0.05, maximum=0.5,
                     doc="share of each class held out for testing")


def _check_generated_size(options) -> None:
    """Refuse, before drawing a pixel, images that would not fit the memory limit: the images
    of both splits, kept for the run, and the generator's working arrays for the larger one
    (its ink and colour planes). 1,000,000 training images of 3×256×256 asked numpy for 244
    GiB whatever GRAPHNET_MEMORY_LIMIT said."""
    from graphnet.limits import LIMIT_ENV, memory_limit
    from graphnet.text import format_bytes

    pixels = options.size ** 2 * np.dtype(np.float32).itemsize
    needed = pixels * ((options.train_size + options.test_size) * options.channels
                       + max(options.train_size, options.test_size) * (options.channels + 1))
    allowed = memory_limit()
    if allowed is not None and needed > allowed:
        shape = f"{options.channels}×{options.size}×{options.size}"
        raise DataError(
            f"{options.train_size:,} training and {options.test_size:,} test images of {shape} "
            f"would take about {format_bytes(needed)} to generate, more than the memory limit "
            f"of {format_bytes(allowed)}", field="train_size",
            hint=f"ask for fewer or smaller images, or raise the limit with --memory-limit "
                 f"or {LIMIT_ENV}")


class Shapes(DatasetSource):
    """Generated edges, arcs, corners and outlines in 10 classes; no files, fixed by the seed."""

    name = "shapes"
    options = {
        "size": Attr("int", default=32, minimum=16, maximum=256, doc="image height and width"),
        "channels": Attr("int", default=3, choices=(1, 3), doc="1 (grey) or 3 (colour)"),
        "train_size": Attr("int", default=8000, minimum=10, maximum=1_000_000,
                           doc="training images"),
        "test_size": Attr("int", default=2000, minimum=10, maximum=1_000_000, doc="test images"),
        "noise": Attr("float", default=0.1, minimum=0.0, maximum=1.0,
                      doc="standard deviation of the pixel noise"),
    }

    @classmethod
    def cache_status(cls, cache_dir) -> str:
        return "generated, no files"

    def load(self, options, *, seed, cache_dir=None):
        from graphnet.data.shapes import CLASS_NAMES, generate

        _check_generated_size(options)
        # Two independent streams from one seed: the test images are never trained on.
        train_stream, test_stream = np.random.SeedSequence(seed).spawn(2)
        splits = [Split(*generate(count, np.random.default_rng(stream), size=options.size,
                                  channels=options.channels, noise=options.noise))
                  for count, stream in ((options.train_size, train_stream),
                                        (options.test_size, test_stream))]
        return Dataset(self.name, *splits, class_names=list(CLASS_NAMES))


class Downloaded(DatasetSource):
    """Base of datasets read from files that ``graphnet data fetch`` puts in the cache."""

    remote: Remote
    class_names: tuple[str, ...] = ()

    @classmethod
    def cache_status(cls, cache_dir) -> str:
        status = cls.remote.status(dataset_folder(cache_dir, cls.name))
        return status if status == "cached" else f"{status}: graphnet data fetch {cls.name}"

    def folder(self, cache_dir) -> Path:
        """The cache folder, once every file is there; else how to fetch them."""
        return self.remote.require(dataset_folder(cache_dir, self.name), dataset=self.name,
                                   cache_dir=cache_dir)


def _idx_files(sizes_and_digests) -> tuple[RemoteFile, ...]:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return tuple(RemoteFile(name, size, digest) for name, (size, digest)
                 in zip(names, sizes_and_digests))


class IdxDataset(Downloaded):
    """Base of the MNIST-layout datasets: four IDX files, gzipped or not."""

    def load(self, options, *, seed, cache_dir=None):
        from graphnet.data.readers import read_idx_split

        folder = self.folder(cache_dir)
        train_images, train_labels, test_images, test_labels = (
            find_file(folder, f.name) for f in self.remote.files)
        return Dataset(self.name, read_idx_split(train_images, train_labels),
                       read_idx_split(test_images, test_labels),
                       class_names=list(self.class_names))


class Mnist(IdxDataset):
    """MNIST handwritten digits, 1×28×28 (60,000 train, 10,000 test)."""

    name = "mnist"
    class_names = tuple(str(digit) for digit in range(10))
    # Sizes and SHA-256 digests as published with the files (PyTorch's mirror of LeCun's set).
    remote = Remote("https://ossci-datasets.s3.amazonaws.com/mnist/", _idx_files((
        (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    )))


class FashionMnist(IdxDataset):
    """Fashion-MNIST clothing photos, 1×28×28 (60,000 train, 10,000 test)."""

    name = "fashion-mnist"
    class_names = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot")
    remote = Remote("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", _idx_files((
        (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    )))


CIFAR_FOLDER = "cifar-10-batches-bin"
CIFAR_TRAIN = tuple(f"{CIFAR_FOLDER}/data_batch_{k}.bin" for k in range(1, 6))
CIFAR_TEST = f"{CIFAR_FOLDER}/test_batch.bin"


class Cifar10(Downloaded):
    """CIFAR-10 photos in 10 classes, 3×32×32 (50,000 train, 10,000 test)."""

    name = "cifar10"
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
    remote = Remote(
        "https://www.cs.toronto.edu/~kriz/",
        (RemoteFile("cifar-10-binary.tar.gz", 170052171,
                    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),),
        unpack=("cifar-10-binary.tar.gz",), provides=CIFAR_TRAIN + (CIFAR_TEST,))

    def load(self, options, *, seed, cache_dir=None):
        from graphnet.data.readers import concatenate, read_cifar10_batch

        folder = self.folder(cache_dir)
        train = concatenate([read_cifar10_batch(folder / name) for name in CIFAR_TRAIN])
        return Dataset(self.name, train, read_cifar10_batch(folder / CIFAR_TEST),
                       class_names=list(self.class_names))


MAX_CLASSES = 100_000
"""The most classes an npz dataset may have: a label of 10¹² would otherwise name 10¹² classes."""


class Npz(DatasetSource):
    """Images and labels from an .npz file you name.

    The file holds x_train/y_train/x_test/y_test, or images/labels that are split by the seed
    (the array names are options).
    """

    name = "npz"
    options = {
        "path": Attr("str", doc="the .npz file (relative to the working directory)"),
        "train_images": Attr("str", default="x_train", doc="array of training images"),
        "train_labels": Attr("str", default="y_train", doc="array of training labels"),
        "test_images": Attr("str", default="x_test", doc="array of test images"),
        "test_labels": Attr("str", default="y_test", doc="array of test labels"),
        "images": Attr("str", default="images",
                       doc="array of all images, when the file has no train/test arrays"),
        "labels": Attr("str", default="labels", doc="array of all labels, likewise"),
        "test_fraction": TEST_FRACTION,
        "layout": Attr("str", default="auto", choices=("auto", "nchw", "nhwc"),
                       doc="where the channel axis is; auto: last when it has 1, 3 or 4 entries"),
        "num_classes": Attr("int", default=0, minimum=0, maximum=MAX_CLASSES,
                            doc="number of classes; 0: one more than the largest label"),
    }

    @classmethod
    def cache_status(cls, cache_dir) -> str:
        return "reads the file its 'path' option names"

    def load(self, options, *, seed, cache_dir=None):
        from graphnet.data.readers import check_labels, read_npz_arrays
        from graphnet.data.split import stratified_split

        path = Path(options.path).expanduser()
        split_keys = [options.train_images, options.train_labels, options.test_images,
                      options.test_labels]
        arrays = read_npz_arrays(path, [split_keys, [options.images, options.labels]])
        if options.images in arrays:
            whole = _npz_split(path, arrays, options.images, options.labels, options.layout)
            train, test = stratified_split(whole.images, whole.labels,
                                           test_fraction=options.test_fraction,
                                           rng=np.random.default_rng(seed))
            label_keys = (options.labels, options.labels)
        else:
            train = _npz_split(path, arrays, *split_keys[:2], options.layout)
            test = _npz_split(path, arrays, *split_keys[2:], options.layout)
            if train.images.shape[1:] != test.images.shape[1:]:
                raise DataError("train and test images differ in shape", file=path,
                                field=options.test_images, expected=str(train.images.shape[1:]),
                                found=str(test.images.shape[1:]))
            label_keys = (options.train_labels, options.test_labels)
        largest = max(int(train.labels.max(initial=0)), int(test.labels.max(initial=0)))
        if not options.num_classes and largest >= MAX_CLASSES:  # before naming every class
            raise DataError("label too large to count classes from", file=path,
                            field=label_keys[0], expected=f"labels below {MAX_CLASSES:,}, or "
                            "the num_classes option", found=f"{largest:,}")
        num_classes = options.num_classes or largest + 1
        for split, labels_key in zip((train, test), label_keys):
            check_labels(split.labels, images=len(split), num_classes=num_classes, file=path,
                         field=labels_key)
        return Dataset(self.name, train, test, class_names=[str(k) for k in range(num_classes)])


def _npz_split(path, arrays, images_key, labels_key, layout) -> Split:
    from graphnet.data.readers import check_labels, npz_images, npz_labels

    images = npz_images(arrays[images_key], layout=layout, file=path, field=images_key)
    labels = npz_labels(arrays[labels_key], file=path, field=labels_key)
    return Split(images, check_labels(labels, images=len(images), num_classes=None, file=path,
                                      field=labels_key))


class Digits(DatasetSource):
    """scikit-learn's handwritten digits, 1×8×8 (1,797 images, split by the seed)."""

    name = "digits"
    options = {"test_fraction": TEST_FRACTION}

    @classmethod
    def cache_status(cls, cache_dir) -> str:
        if importlib.util.find_spec("sklearn") is None:
            return "needs scikit-learn: " + install_hint("digits")
        return "ships with scikit-learn"

    def load(self, options, *, seed, cache_dir=None):
        from graphnet.data.readers import read_sklearn_digits
        from graphnet.data.split import stratified_split

        images, labels = read_sklearn_digits()
        train, test = stratified_split(images, labels, test_fraction=options.test_fraction,
                                       rng=np.random.default_rng(seed))
        return Dataset(self.name, train, test, class_names=[str(d) for d in range(10)])


@hookimpl
def graphnet_register_datasets(registry):
    for dataset_class in (Shapes, Mnist, FashionMnist, Cifar10, Npz, Digits):
        registry.add_dataset(dataset_class)
