"""The built-in augmentation transforms: what each does to a batch, drawn from the step's seed."""
import numpy as np
import pytest

from graphnet.data.augment import AUGMENT_STREAM, Augmentation, parse_augment
from graphnet.errors import SpecError
from graphnet.registry import build_registry


@pytest.fixture(scope="module")
def registry():
    return build_registry([], entry_points=False, environment=False)


def batch(count=6, channels=2, size=5):
    return np.random.default_rng(7).random((count, channels, size, size)).astype(np.float32)


def run(registry, augment, images, epoch=0, step=0, seed=0):
    return Augmentation(parse_augment(augment, registry), registry, seed)(images, epoch, step)


def test_crop_is_a_window_of_the_zero_padded_image_per_sample(registry):
    images = batch()
    out = run(registry, ["crop:2"], images)
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    offsets = set()
    for sample in range(len(images)):  # checked one sample at a time: the transform is not
        windows = [(top, left) for top in range(5) for left in range(5)
                   if np.array_equal(out[sample], padded[sample, :, top:top + 5, left:left + 5])]
        assert windows, f"sample {sample} is no crop of its padded image"
        offsets.add(windows[0])
    assert len(offsets) > 1, "every sample got the same crop"


def test_shift_repeats_the_edge_and_flip_mirrors_some(registry):
    images = batch(count=40)
    shifted = run(registry, ["shift:1"], images)
    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    assert all(any(np.array_equal(shifted[n], padded[n, :, t:t + 5, l:l + 5])
                   for t in range(3) for l in range(3)) for n in range(40))
    flipped = run(registry, [{"name": "flip", "p": 0.5}], images)
    mirrored = [np.array_equal(flipped[n], images[n, :, :, ::-1]) for n in range(40)]
    kept = [np.array_equal(flipped[n], images[n]) for n in range(40)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 5 < sum(mirrored) < 35
    assert np.array_equal(run(registry, ["flip:0"], images), images)


def test_each_step_draws_from_its_own_seed(registry):
    images = batch()
    first = run(registry, ["crop:2", "flip"], images, epoch=1, step=3)
    assert np.array_equal(first, run(registry, ["crop:2", "flip"], images, epoch=1, step=3))
    assert not np.array_equal(first, run(registry, ["crop:2", "flip"], images, epoch=1, step=4))
    assert not np.array_equal(first, run(registry, ["crop:2", "flip"], images, epoch=1, step=3,
                                         seed=1))
    assert AUGMENT_STREAM not in (1, 2)  # the network's and the shuffle's streams
    assert first.dtype == np.float32 and first.shape == images.shape


@pytest.mark.parametrize("augment, field, message", [
    (["nope"], "[0]", "unknown transform 'nope'"),
    (["flip", "crop:x"], "[1].padding", "bad value"),
    ([{"name": "flip", "q": 1}], "[0].q", "unknown option of transform 'flip'"),
    ([3], "[0]", "wrong type"),
])
def test_bad_augment_settings_name_the_place(registry, augment, field, message):
    with pytest.raises(SpecError, match=message) as caught:
        parse_augment(augment, registry)
    assert caught.value.field == field


def test_a_plugin_transform_is_used_by_name(tmp_path):
    plugin = tmp_path / "invert.py"
    plugin.write_text(
        "from graphnet.data.augment import Transform\nfrom graphnet.hookspecs import hookimpl\n"
        "from graphnet.op import Attr\n\n"
        "class Invert(Transform):\n    '''1 - x.'''\n    name = 'invert'\n"
        "    options = {'scale': Attr('float', default=1.0)}\n"
        "    def apply(self, batch, rng):\n        return self.settings.scale - batch\n\n"
        "class Wrong(Transform):\n    '''Drops a sample.'''\n    name = 'wrong'\n"
        "    def apply(self, batch, rng):\n        return batch[1:]\n\n"
        "@hookimpl\ndef graphnet_register_datasets(registry):\n"
        "    registry.add_transform(Invert)\n    registry.add_transform(Wrong)\n")
    registry = build_registry([plugin], entry_points=False, environment=False)
    images = batch()
    np.testing.assert_allclose(run(registry, ["invert:2"], images), 2 - images)
    with pytest.raises(Exception, match=r"transform 'wrong' \(plugin .*\) returned shape"):
        run(registry, ["wrong"], images)
