"""``graphnet data list`` and ``graphnet data fetch`` end to end, against a local server."""
import gzip
import hashlib

import numpy as np
import pytest

from graphnet.data.fetch import MIRROR_ENV, Remote, RemoteFile
from graphnet.data.testing import FileServer, idx_bytes
from graphnet_plugins.datasets import Mnist

NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture
def small_mnist(monkeypatch):
    """Small IDX files, and Mnist's remote pointed at their digests (the real digests are of
    the real files)."""
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 256, (8, 28, 28)), rng.integers(0, 10, 8),
              rng.integers(0, 256, (2, 28, 28)), rng.integers(0, 10, 2))
    files = {name: gzip.compress(idx_bytes(array)) for name, array in zip(NAMES, arrays)}
    remote = Remote("https://unused.invalid/", tuple(
        RemoteFile(name, len(data), hashlib.sha256(data).hexdigest()) for name, data in files.items()))
    monkeypatch.setattr(Mnist, "remote", remote)
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return {f"/mnist/{name}": data for name, data in files.items()}


def test_list_shows_every_dataset_and_its_cache_status(run_cli, tmp_path):
    status, out, err = run_cli("data", "list", "--cache-dir", tmp_path)
    assert status == 0, err
    for name in ("shapes", "mnist", "fashion-mnist", "cifar10", "npz", "digits"):
        assert name in out
    assert "not fetched" in out and "generated" in out


def test_fetch_then_list_says_cached_and_the_dataset_loads(run_cli, tmp_path, small_mnist):
    with FileServer(small_mnist) as server:
        status, out, err = run_cli("data", "fetch", "mnist", "--cache-dir", tmp_path,
                                   "--mirror", server.url)
        assert status == 0, err
        assert "downloaded" in out and str(tmp_path / "mnist") in out.replace("\n", "")
        status, out, err = run_cli("data", "fetch", "mnist", "--cache-dir", tmp_path,
                                   "--mirror", server.url)
        assert status == 0 and out.count("cached") == 4
    assert len(server.requests) == 4
    status, out, _ = run_cli("data", "list", "--cache-dir", tmp_path)
    assert "cached" in out
    dataset = Mnist().load(None, seed=0, cache_dir=tmp_path)
    assert dataset.train.images.shape == (8, 1, 28, 28)


def test_fetch_reads_the_mirror_and_cache_from_the_environment(run_cli, tmp_path, small_mnist,
                                                               monkeypatch):
    with FileServer(small_mnist) as server:
        monkeypatch.setenv(MIRROR_ENV, server.url)
        monkeypatch.setenv("GRAPHNET_CACHE", str(tmp_path))
        status, _, err = run_cli("data", "fetch", "mnist")
    assert status == 0, err
    assert (tmp_path / "mnist" / NAMES[0]).is_file()


def test_checksum_mismatch_exits_2_and_keeps_no_file(run_cli, tmp_path, small_mnist):
    path = f"/mnist/{NAMES[1]}"
    small_mnist[path] = small_mnist[path][:-8] + b"tampered"  # same size, other bytes
    with FileServer(small_mnist) as server:
        status, _, err = run_cli("data", "fetch", "mnist", "--cache-dir", tmp_path,
                                 "--mirror", server.url)
    assert status == 2
    assert "checksum mismatch" in err and "Traceback" not in err
    assert not (tmp_path / "mnist" / NAMES[1]).exists()
    assert not (tmp_path / "mnist" / f"{NAMES[1]}.part").exists()


def test_fetching_a_generated_or_unknown_dataset_is_refused(run_cli, tmp_path):
    status, _, err = run_cli("data", "fetch", "shapes", "--cache-dir", tmp_path)
    assert status == 2 and "nothing to download" in err
    status, _, err = run_cli("data", "fetch", "mnsit", "--cache-dir", tmp_path)
    assert status == 2 and "did you mean 'mnist'" in err


def test_a_cache_that_is_a_file_is_refused_naming_where_it_came_from(run_cli, tmp_path,
                                                                     monkeypatch, specs_dir):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file")
    for action in (("list",), ("fetch", "mnist")):
        status, _, err = run_cli("data", *action, "--cache-dir", not_a_folder)
        assert status == 2 and "--cache-dir" in err and "is a file" in err
        assert "Traceback" not in err
    monkeypatch.setenv("GRAPHNET_CACHE", str(not_a_folder))
    status, _, err = run_cli("data", "list")
    assert status == 2 and "GRAPHNET_CACHE" in err and "not a folder" in err
    status, _, err = run_cli("train", specs_dir / "lenet5.toml", "--dataset", "mnist",
                             "--epochs", 1, "--run-dir", tmp_path / "run")
    assert status == 2 and "GRAPHNET_CACHE" in err and "not a folder" in err
    assert not_a_folder.read_text() == "a file"


# --- data sample -------------------------------------------------------------------------------
def test_sample_writes_images_that_predict_reads(run_cli, tmp_path):
    from graphnet.inference import read_images
    images = tmp_path / "images.npz"
    status, out, err = run_cli("data", "sample", "shapes", "--count", "5", "-o", images,
                               "--dataset-option", "size=16", "--dataset-option", "channels=1",
                               "--dataset-option", "test_size=20", "--seed", "3")
    assert status == 0, err
    with np.load(images, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["class_names", "images", "labels"]
        labels, names = archive["labels"], list(archive["class_names"])
    assert read_images(images, (1, 16, 16)).shape == (5, 1, 16, 16)
    assert labels.dtype == np.int64 and len(labels) == 5 and "diagonal \\" in names
    assert "wrote 5 shapes test images (1×16×16)" in out
    assert ", ".join(names[label] for label in labels) in out
    assert [path.name for path in tmp_path.iterdir()] == ["images.npz"]  # no temp file left


def test_sample_is_seeded_and_draws_from_the_split_asked_for(run_cli, tmp_path):
    def sample(name, *flags):
        path = tmp_path / name
        options = ("--dataset-option", "size=16", "--dataset-option", "train_size=30",
                   "--dataset-option", "test_size=30")
        assert run_cli("data", "sample", "shapes", "-o", path, *options, *flags)[0] == 0
        with np.load(path, allow_pickle=False) as archive:
            return archive["images"]
    first, again = sample("a.npz", "--seed", "1"), sample("b.npz", "--seed", "1")
    assert np.array_equal(first, again) and len(first) == 8
    assert not np.array_equal(first, sample("c.npz", "--seed", "2"))
    assert not np.array_equal(first, sample("d.npz", "--seed", "1", "--split", "train"))


@pytest.mark.parametrize("args, words", [
    (("--count", "0"), ["'--count'", "integer >= 1"]),
    (("--count", "31"), ["'--count'", "at most 30"]),
    (("--dataset-option", "sise=3"), ["sise", "did you mean 'size'"]),
    (("-o", "images.txt"), ["'--output'", ".npz"]),
], ids=["zero", "more-than-the-split", "unknown-option", "not-npz"])
def test_sample_refuses_bad_arguments_naming_the_flag(run_cli, tmp_path, args, words):
    base = ["data", "sample", "shapes", "--dataset-option", "test_size=30", "-o",
            tmp_path / "images.npz"]
    status, out, err = run_cli(*base, *args)
    assert status == 2 and "Traceback" not in err
    assert all(word in err for word in words), err
    assert not (tmp_path / "images.npz").exists()


def test_sample_refuses_to_write_over_the_file_it_samples(run_cli, tmp_path):
    """`data sample npz --dataset-option path=data.npz -o data.npz` replaced the dataset by
    eight of its images."""
    data = tmp_path / "data.npz"
    np.savez(data, images=np.zeros((40, 1, 16, 16), np.float32), labels=np.arange(40) % 10)
    before = data.read_bytes()
    status, out, err = run_cli("data", "sample", "npz", "--dataset-option", f"path={data}",
                               "-o", data)
    assert status == 2 and "Traceback" not in err
    assert (f"{data}: field '--output': the output is a file this command reads: expected a "
            "file other than the dataset's file (--dataset-option path)") in err
    assert data.read_bytes() == before
