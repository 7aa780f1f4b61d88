"""The generated shapes: deterministic, well-formed, balanced, and not solvable by templates."""
import numpy as np
import pytest

from graphnet.data.shapes import CLASS_NAMES, generate


def make(count=200, seed=0, **options):
    return generate(count, np.random.default_rng(seed), **options)


def test_same_seed_same_images_other_seed_other_images():
    images, labels = make(seed=3)
    again_images, again_labels = make(seed=3)
    np.testing.assert_array_equal(images, again_images)
    np.testing.assert_array_equal(labels, again_labels)
    other_images, _ = make(seed=4)
    assert not np.array_equal(images, other_images)


@pytest.mark.parametrize("size, channels", [(32, 3), (16, 1), (48, 3)])
def test_shapes_dtypes_and_ranges(size, channels):
    images, labels = make(95, size=size, channels=channels)
    assert images.shape == (95, channels, size, size) and images.dtype == np.float32
    assert labels.shape == (95,) and labels.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert 0 <= labels.min() and labels.max() < len(CLASS_NAMES)


def test_every_class_present_and_balanced_in_random_order():
    _, labels = make(1003)
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))
    assert len(CLASS_NAMES) == 10 and counts.min() >= 100 and counts.max() - counts.min() <= 1
    assert not np.array_equal(labels[:10], np.arange(10)), "labels are shuffled, not cycled"


def test_every_class_draws_a_visible_stroke():
    images, labels = make(100, noise=0.0)
    for label in range(len(CLASS_NAMES)):
        member = images[labels == label][0]
        spread = member.max(axis=(1, 2)) - member.min(axis=(1, 2))
        assert spread.max() > 0.3, CLASS_NAMES[label]


def test_noise_option_controls_the_noise():
    quiet, _ = make(20, seed=1, noise=0.0)
    noisy, _ = make(20, seed=1, noise=0.3)
    # With no noise the background is smooth: neighbouring pixels differ little.
    assert np.abs(np.diff(quiet, axis=3)).mean() < 0.5 * np.abs(np.diff(noisy, axis=3)).mean()


def test_a_pixel_template_cannot_tell_the_classes_apart():
    """Random place, size, colour and shading: the nearest class-mean image is near chance, so
    the task needs learned local features."""
    images, labels = make(1000, seed=0)
    test_images, test_labels = make(300, seed=1)
    flat, test_flat = images.reshape(len(images), -1), test_images.reshape(len(test_images), -1)
    means = np.stack([flat[labels == k].mean(axis=0) for k in range(len(CLASS_NAMES))])
    distances = ((test_flat[:, None, :] - means[None]) ** 2).sum(axis=2)
    accuracy = (distances.argmin(axis=1) == test_labels).mean()
    assert accuracy < 0.3
