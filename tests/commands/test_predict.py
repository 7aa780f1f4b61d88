"""``graphnet predict``: class probabilities per image, most likely first, no labels needed."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from graphnet.cli import main
from graphnet.registry import load_plugin_file

TOY = Path(__file__).resolve().parents[1] / "toy_plugin.py"
toy = load_plugin_file(TOY)
LINE = re.compile(r"^(?:(?P<label>\S+): )?(?P<pairs>(?:1\.00|\.\d\d) class\d(?:, (?:1\.00|\.\d\d) "
                  r"class\d)*)$")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    spec = folder / "toy.json"
    spec.write_text(json.dumps(toy.toy_spec(dataset={"name": "toy", "noise": 0.2})))
    assert main(["train", str(spec), "--plugin", str(TOY), "--run-dir", str(folder / "run"),
                 "--epochs", "3"]) == 0
    return spec, folder / "run" / "checkpoint.npz"


def patterns():
    """The toy dataset's noiseless class patterns: class k is pattern k."""
    return np.random.default_rng(1234).random((4, 1, 6, 6), dtype=np.float32)


def parse(out):
    rows = []
    for line in out.strip().splitlines():
        match = LINE.match(line)
        assert match, line
        pairs = [pair.split(" ") for pair in match["pairs"].split(", ")]
        rows.append([(float(p), name) for p, name in pairs])
    return rows


def test_predicts_each_image_most_likely_first(run_cli, trained, tmp_path):
    spec, checkpoint = trained
    images = tmp_path / "images.npz"
    np.savez(images, images=patterns(), other=np.zeros(3))
    status, out, err = run_cli("predict", spec, "--plugin", TOY, "--checkpoint", checkpoint,
                               images)
    assert status == 0, err
    rows = parse(out)
    assert len(rows) == 4
    for index, row in enumerate(rows):
        assert [name for _, name in row][0] == f"class{index}"
        probabilities = [p for p, _ in row]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) == pytest.approx(1, abs=0.03)
    assert out.splitlines()[0].startswith(f"{images}[0]: ")


def test_one_image_one_line_without_label(run_cli, trained, tmp_path):
    spec, checkpoint = trained
    single = tmp_path / "one.npz"
    np.savez(single, picture=patterns()[2])  # one C×H×W array under any name
    status, out, err = run_cli("predict", spec, "--plugin", TOY, "--checkpoint", checkpoint,
                               single, "--top", 2)
    assert status == 0, err
    (row,) = parse(out)
    assert len(row) == 2 and row[0][1] == "class2" and not out.startswith(str(single))


@pytest.mark.parametrize("arrays, words", [
    ({"a": np.zeros((2, 1, 6, 6)), "b": np.zeros(2)}, "cannot tell which array"),
    ({"images": np.zeros((2, 3, 6, 6))}, "1×6×6"),
    # no images at all: predict printed nothing and exited 0
    ({"images": np.zeros((0, 1, 6, 6))},
     "bad.npz: the file holds no images: expected N×1×6×6 with N >= 1, found 0×1×6×6"),
])
def test_unusable_inputs(run_cli, trained, tmp_path, arrays, words):
    spec, checkpoint = trained
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    status, out, err = run_cli("predict", spec, "--plugin", TOY, "--checkpoint", checkpoint, path)
    assert status == 2 and words in err


def test_image_files_need_pillow(run_cli, trained, tmp_path, monkeypatch):
    spec, checkpoint = trained
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"not really a png")
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    status, out, err = run_cli("predict", spec, "--plugin", TOY, "--checkpoint", checkpoint,
                               picture)
    assert status == 2 and "pip install 'graphnet-cnn[image]'" in err


@pytest.mark.parametrize("mode, size", [("L", 6), ("RGB", 12)], ids=["grey", "colour-resized"])
def test_image_files_are_read_with_pillow(run_cli, trained, tmp_path, mode, size):
    pytest.importorskip("PIL", reason="Pillow is not installed (the image extra, part of the test extra)")
    from PIL import Image
    spec, checkpoint = trained
    pixels = (patterns()[1, 0] * 255).astype(np.uint8)
    picture = Image.fromarray(pixels, mode="L").resize((size, size), Image.NEAREST)
    path = tmp_path / f"pattern_{mode}.png"
    picture.convert(mode).save(path)
    status, out, err = run_cli("predict", spec, "--plugin", TOY, "--checkpoint", checkpoint,
                               path)
    assert status == 0, err
    assert parse(out)[0][0][1] == "class1"
    # the spec's input is 1×6×6: say what was changed to fit it, one line per kind
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    if mode == "L":
        assert notes == []
    else:
        assert notes == [f"note: colour turned grey: the spec's input has 1 channel: {path}",
                         f"note: resized to 6×6, the spec's input size: {path} (was 12×12)"]


def test_a_grey_picture_for_a_colour_input_says_it_was_copied_into_three_channels(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image
    from graphnet.inference import read_images
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((8, 8), 200, np.uint8), mode="L").save(path)
    conversions = {}
    images = read_images(path, (3, 8, 8), conversions)
    assert images.shape == (1, 3, 8, 8) and np.all(images[0, 0] == images[0, 2])
    assert conversions == {"grey copied into the 3 colour channels the spec's input has":
                           [str(path)]}


def test_a_backslash_in_a_class_name_is_printed_once(run_cli, trained, tmp_path):
    from graphnet.checkpoint import load_checkpoint, save_checkpoint
    spec, checkpoint = trained
    renamed = load_checkpoint(checkpoint)
    renamed.meta["class_names"] = ["diagonal \\", "a [bold]b[/]", "class2", "class3"]
    save_checkpoint(tmp_path / "renamed.npz", renamed)
    images = tmp_path / "images.npz"
    np.savez(images, images=patterns()[:2])
    status, out, err = run_cli("predict", spec, "--plugin", TOY, "--checkpoint",
                               tmp_path / "renamed.npz", images, "--top", "1")
    assert status == 0, err
    assert out.splitlines()[0].endswith(" diagonal \\")
    assert out.splitlines()[1].endswith(" a [bold]b[/]")


@pytest.mark.parametrize("name, content, words", [
    ("broken.png", b"\x89PNG\r\n\x1a\n not the rest of a png", "cannot read image"),
    # Pillow's own words were "cannot identify image file <_io.BufferedReader name=3>"
    ("photo.jpg", b"not a jpeg", "photo.jpg: cannot read image: not a picture in a format "
                                 "Pillow knows: expected a JPG file, found a file starting "
                                 "b'not a jpeg'"),
])
def test_an_unreadable_image_file_is_a_data_error(run_cli, trained, tmp_path, name, content,
                                                  words):
    pytest.importorskip("PIL", reason="Pillow is not installed (the image extra, part of the test extra)")
    spec, checkpoint = trained
    path = tmp_path / name
    path.write_bytes(content)
    status, out, err = run_cli("predict", spec, "--plugin", TOY, "--checkpoint", checkpoint,
                               path)
    assert status == 2 and words in err and "Traceback" not in err
    assert "BufferedReader" not in err


def test_bad_top(run_cli, trained, tmp_path):
    spec, checkpoint = trained
    status, out, err = run_cli("predict", spec, "--plugin", TOY, "--checkpoint", checkpoint,
                               tmp_path / "x.npz", "--top", "0")
    assert status == 2 and "'--top'" in err


def test_a_text_file_as_images_is_not_called_pickled(tmp_path):
    from graphnet.errors import DataError
    from graphnet.inference import read_images
    images = tmp_path / "images.npz"
    images.write_text("not images\n")
    with pytest.raises(DataError) as caught:
        read_images(images, (1, 28, 28))
    assert "not a numpy" in str(caught.value) and "pickle" not in str(caught.value)
