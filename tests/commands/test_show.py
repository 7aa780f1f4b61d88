"""``graphnet show``: filters from a checkpoint (or the seeded initial ones) and activation maps,
drawn in colour with half blocks on a terminal and with ASCII when piped."""
from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from graphnet import render
from graphnet.checkpoint import Checkpoint, save_checkpoint
from graphnet.engine import Network
from graphnet.graph import load
from graphnet.render.heatmap import render_filters


def terminal(width=80) -> Console:
    return Console(width=width, record=True, file=io.StringIO(), force_terminal=True,
                   color_system="truecolor")


def piped(width=80) -> Console:
    return Console(width=width, record=True, file=io.StringIO(), color_system=None)


@pytest.fixture
def screen(monkeypatch):
    """Make ``graphnet show`` draw on a recorded console; returns a function that installs one
    and the console itself."""
    def install(console):
        monkeypatch.setitem(render._consoles, "out", console)
        return console
    return install


def save(tmp_path, spec_path, seed=7, edit=None, name="ckpt.npz", **meta):
    network = Network(load(spec_path), seed=seed)
    params = network.flat_params()
    if edit:
        edit(params)
    path = tmp_path / name
    save_checkpoint(path, Checkpoint(params=params, meta={"epoch": 3, **meta}))
    return path


def red_first_filter(params):
    """Filter 0 of the stem looks only at the red channel, with equal positive weights."""
    weight = params["stem/weight"]
    weight[0] = 0.0
    weight[0, 0] = 1.0


def test_colour_filters_from_a_checkpoint(run_cli, screen, specs_dir, tmp_path):
    checkpoint = save(tmp_path, specs_dir / "branching.json", edit=red_first_filter)
    console = screen(terminal())
    status, _, err = run_cli("show", specs_dir / "branching.json", "--checkpoint", checkpoint)
    assert status == 0, err
    text = console.export_text()
    words = " ".join(text.split())  # long temporary paths wrap lines at any width
    assert "stem" in text and "16 filters of 3×3×3" in text and "epoch 3" in words
    assert all(f"#{i}" in text for i in range(16)) and "▀" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    # the pure-red filter, scaled to its own range, is drawn in pure red (truecolor)
    assert "38;2;255;0;0" in console.file.getvalue()


def test_initial_filters_say_they_are_untrained(run_cli, screen, specs_dir):
    console = screen(terminal())
    status, _, _ = run_cli("show", specs_dir / "lenet5.toml", "--seed", "5")
    text = console.export_text()
    assert status == 0 and "initialised" in text and "untrained" in text and "seed 5" in text
    assert "6 filters of 1×5×5" in text and "negative" in text and "positive" in text


def test_filters_written_in_the_spec_are_not_called_random(run_cli, screen, specs_dir):
    console = screen(terminal(100))
    status, _, err = run_cli("show", specs_dir / "curve_detector.toml")
    words = " ".join(console.export_text().split())
    assert status == 0, err
    assert "weights written in the spec (node 'curve', its fixed `weights`; not trainable)" in words
    assert "random" not in words and "untrained" not in words


def test_piped_output_is_ascii_without_escape_codes(run_cli, screen, specs_dir, tmp_path):
    checkpoint = save(tmp_path, specs_dir / "lenet5.toml")
    console = screen(piped())
    status, _, _ = run_cli("show", specs_dir / "lenet5.toml", "--checkpoint", checkpoint,
                           "--node", "conv2", "--channel", "2")
    assert status == 0
    written = console.file.getvalue()  # what reached the "pipe"
    assert "\x1b" not in written and "▀" not in written
    assert "conv2" in written and "input channel 2 of 6" in written and "#15" in written


def test_a_run_directory_gives_its_newest_checkpoint(run_cli, screen, specs_dir, tmp_path):
    save(tmp_path, specs_dir / "lenet5.toml", name="epoch1.npz")
    newest = save(tmp_path, specs_dir / "lenet5.toml", name="epoch2.npz", seed=9)
    console = screen(piped())
    status, _, _ = run_cli("show", specs_dir / "lenet5.toml", "--checkpoint", tmp_path)
    assert status == 0 and newest.name in console.export_text()


def test_activation_maps_of_every_conv_layer(run_cli, screen, specs_dir, tmp_path):
    images = np.zeros((2, 3, 32, 32), dtype=np.float32)
    images[1, :, 8:24, 8:24] = 1.0  # a bright square
    data = tmp_path / "images.npz"
    np.savez(data, images=images, labels=np.zeros(2, dtype=np.int64))
    checkpoint = save(tmp_path, specs_dir / "branching.json",
                      standardise={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    console = screen(terminal(100))
    status, _, err = run_cli("show", specs_dir / "branching.json", "--checkpoint", checkpoint,
                             "--input", data, "--index", "1")
    assert status == 0, err
    text = console.export_text()
    for node in ("stem", "res_conv1", "res_conv2", "wide_1x1", "wide_5x5", "dilated"):
        assert f"{node} (conv2d)" in text
    assert "16 maps of 32×32" in text and "32 maps of 16×16" in text and "#31" in text
    words = " ".join(text.split())  # long temporary paths wrap lines at any width
    assert "image 1 of" in words and "standardised with the training data" in words
    assert max(len(line) for line in text.splitlines()) <= 100

    console = screen(piped())
    status, _, _ = run_cli("show", specs_dir / "branching.json", "--input", data,
                           "--node", "wide_1x1")
    text = console.export_text()
    assert status == 0 and "wide_1x1 (conv2d)" in text and "stem (conv2d)" not in text


def test_statistics_that_do_not_fit_the_input_are_refused_as_predict_refuses_them(
        run_cli, specs_dir, tmp_path):
    """show standardised with whatever the checkpoint held: a 3-channel mean for a 1-channel
    input was broadcast into a 3-channel image, refused as "field 'image': input has the
    wrong shape" without naming the checkpoint."""
    checkpoint = save(tmp_path, specs_dir / "lenet5.toml",
                      standardise={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    data = tmp_path / "images.npz"
    np.savez(data, images=np.zeros((1, 1, 28, 28), np.float32))
    status, _, err = run_cli("show", specs_dir / "lenet5.toml", "--checkpoint", checkpoint,
                             "--input", data)
    assert status == 2 and "Traceback" not in err
    assert (f"{checkpoint}: field 'standardise': checkpoint's statistics do not fit the image "
            "input: expected 1 channel, found 3") in err


def test_an_input_file_without_images_is_named(run_cli, specs_dir, tmp_path):
    """It was refused as "field '--index': expected 0..-1, found 0"."""
    data = tmp_path / "images.npz"
    np.savez(data, images=np.zeros((0, 3, 32, 32), np.float32))
    status, _, err = run_cli("show", specs_dir / "branching.json", "--input", data)
    assert status == 2 and "Traceback" not in err
    assert f"{data}: the file holds no images: expected N×3×32×32 with N >= 1" in err
    assert "--index" not in err


def test_one_channel_filters_use_a_diverging_map():
    console = terminal()
    weights = np.zeros((2, 1, 3, 3))
    weights[0, 0, 0, 0], weights[0, 0, 2, 2] = 1.0, -1.0
    render_filters({"node": "conv", "op": "conv2d", "source": "test", "untrained": False,
                    "weights": weights, "channel": 0}, console)
    styled = console.export_text(styles=True)
    assert "38;2;178;24;43" in styled and "38;2;33;102;172" in styled  # red +1, blue −1


@pytest.mark.parametrize("args, message", [
    (["--node", "pool1"], "has no filters"),
    (["--node", "nope"], "unknown node"),
    (["--channel", "3"], "--channel"),
    (["--checkpoint", "missing.npz"], "not found"),
])
def test_usage_errors_exit_2(run_cli, specs_dir, args, message):
    status, _, err = run_cli("show", specs_dir / "lenet5.toml", *args)
    assert status == 2 and message in err and "Traceback" not in err


def test_a_spec_without_convolutions_is_a_clear_error(run_cli, write_spec):
    spec = {"inputs": {"x": {"shape": [8]}},
            "nodes": [{"name": "fc", "op": "dense", "units": 2, "inputs": ["x"]}],
            "outputs": {"y": "fc"}}
    status, _, err = run_cli("show", write_spec(spec))
    assert status == 2 and "no convolution layer" in err


def test_a_checkpoint_of_another_spec_is_refused(run_cli, specs_dir, tmp_path):
    checkpoint = save(tmp_path, specs_dir / "classic.toml")
    status, _, err = run_cli("show", specs_dir / "lenet5.toml", "--checkpoint", checkpoint)
    assert status == 2 and "different spec" in err


def test_a_run_directory_prefers_the_checkpoint_training_writes(run_cli, screen, specs_dir,
                                                                 tmp_path):
    from graphnet.train import CHECKPOINT_NAME
    save(tmp_path, specs_dir / "lenet5.toml", name=CHECKPOINT_NAME)
    save(tmp_path, specs_dir / "lenet5.toml", name="later.npz")
    console = screen(piped())
    status, _, _ = run_cli("show", specs_dir / "lenet5.toml", "--checkpoint", tmp_path)
    assert status == 0 and CHECKPOINT_NAME in console.export_text()
