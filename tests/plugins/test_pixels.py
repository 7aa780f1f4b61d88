"""The channels-last helpers: pixels as single items, and per-channel vectors over long rows."""
import numpy as np
import pytest

from graphnet_plugins._pixels import CHANNEL_ROW_VALUES, channel_rows, pixel_items


@pytest.mark.parametrize("shape", [(5, 7, 9, 16), (1, 1, 1, 3), (6, 32), (2, 11, 13, 64)])
def test_channel_rows_add_the_vector_to_every_pixel_in_place(shape):
    values = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    vector = np.arange(shape[-1], dtype=np.float32)
    expected = values + vector
    rows, row = channel_rows(values, vector)
    assert np.shares_memory(rows, values) and rows.shape[1] == len(row)
    assert len(row) <= max(CHANNEL_ROW_VALUES, shape[-1]) and len(row) % shape[-1] == 0
    rows += row
    assert np.array_equal(values, expected)


def test_channel_rows_leave_a_strided_array_as_it_is():
    values = np.zeros((4, 6, 8))[:, ::2]
    vector = np.ones(8)
    rows, row = channel_rows(values, vector)
    assert rows is values and row is vector


def test_pixel_items_are_whole_pixels_of_a_contiguous_last_axis():
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    items = pixel_items(image)
    assert items.shape == (2, 3)
    items[1, 2] = pixel_items(np.zeros((1, 4), np.float32))[0]
    assert not image[1, 2].any() and image[1, 1].all()
    assert pixel_items(image[:, :, ::2]) is None
