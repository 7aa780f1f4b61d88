"""The ``shapes`` dataset: generated images of the features a CNN learns first.

Ten classes — edges at four orientations, an arc, a corner, and outlines of a circle, a
rectangle, a triangle and a cross — drawn as anti-aliased strokes at a random place, size,
thickness, small rotation and colour, over a tinted background with a brightness gradient and
pixel noise. No class can be told by any one pixel: the same stroke appears anywhere in the
image, so a classifier needs local, translation-invariant detectors (learned filters).

Each class is rendered for a whole batch at once: a distance field over the pixel grid, one
array operation per stroke segment, no loop over pixels or samples.
"""
from __future__ import annotations

import numpy as np

CLASS_NAMES = ("horizontal edge", "vertical edge", "diagonal /", "diagonal \\", "arc", "corner",
               "circle", "rectangle", "triangle", "cross")

JITTER = np.deg2rad(8.0)
"""Largest random rotation of an oriented class: well below the 45° between edge classes."""


def generate(count: int, rng: np.random.Generator, *, size: int = 32, channels: int = 3,
             noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (float32 count×channels×size×size in [0, 1]) and labels (int64).

    Classes are balanced (counts differ by at most one) and in random order. Everything is
    drawn from ``rng``, so equal generators give equal images.
    """
    labels = rng.permutation(np.arange(count) % len(CLASS_NAMES)).astype(np.int64)
    ink = np.empty((count, size, size), np.float32)
    grid = _pixel_grid(size)
    for label, draw in enumerate(_DRAWERS):
        members = np.flatnonzero(labels == label)
        if len(members):
            geometry = _geometry(len(members), size, rng)
            distance = draw(grid, geometry, rng)
            ink[members] = np.clip(geometry["half_width"] + 0.5 - distance, 0.0, 1.0)
    return _colour(ink, channels, noise, rng), labels


# --- geometry shared by every class ---------------------------------------------------------
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y), shaped 1×size×size to broadcast over a batch."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xs[None], ys[None]


def _geometry(count: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-sample centre, half-extent, stroke half-width and rotation, shaped count×1×1.

    The half-extent ranges over 21–38% of the image, and the centre keeps the whole shape (and
    its stroke) inside the frame, so position and size both vary widely.
    """
    def column(values):
        return values.astype(np.float32)[:, None, None]

    half = rng.uniform(0.21, 0.38, count) * size
    half_width = rng.uniform(0.45, 0.85, count) * max(size / 32.0, 0.5)
    margin = half + half_width + 1.0
    centre_x = rng.uniform(margin, size - margin)
    centre_y = rng.uniform(margin, size - margin)
    return {"x": column(centre_x), "y": column(centre_y), "half": column(half),
            "half_width": column(half_width),
            "angle": column(rng.uniform(-JITTER, JITTER, count))}


def _rotated(geometry, along: float, across: float, extra_angle=0.0):
    """The point ``along``/``across`` (in half-extents) from the centre, in the shape's frame
    turned by its jitter plus ``extra_angle``; y points down, as in an image."""
    angle = geometry["angle"] + extra_angle
    cos, sin = np.cos(angle), np.sin(angle)
    half = geometry["half"]
    return (geometry["x"] + half * (along * cos - across * sin),
            geometry["y"] + half * (along * sin + across * cos))


def _segment_distance(grid, start, end) -> np.ndarray:
    """Distance from every pixel to the segment start→end (per sample: count×size×size)."""
    xs, ys = grid
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    length_squared = np.maximum(dx * dx + dy * dy, 1e-6)
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length_squared, 0.0, 1.0)
    return np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))


def _polyline_distance(grid, points) -> np.ndarray:
    distance = _segment_distance(grid, points[0], points[1])
    for start, end in zip(points[1:], points[2:]):
        np.minimum(distance, _segment_distance(grid, start, end), out=distance)
    return distance


# --- one distance field per class (same order as CLASS_NAMES) -------------------------------
def _edge(turn: float):
    def draw(grid, geometry, rng):
        return _segment_distance(grid, _rotated(geometry, -1, 0, turn), _rotated(geometry, 1, 0, turn))
    return draw


def _arc(grid, geometry, rng):
    """A third to a half of a circle, opening in any direction: curved, but not closed."""
    count = len(geometry["x"])
    start = rng.uniform(0, 2 * np.pi, count).astype(np.float32)[:, None, None]
    span = rng.uniform(0.65, 1.0, count).astype(np.float32)[:, None, None] * np.pi
    xs, ys = grid
    offset_x, offset_y = xs - geometry["x"], ys - geometry["y"]
    inside = np.mod(np.arctan2(offset_y, offset_x) - start, 2 * np.pi) <= span
    ring = np.abs(np.hypot(offset_x, offset_y) - geometry["half"])
    # Outside the arc's angles the nearest stroke point is one of its two ends.
    end_distance = np.minimum(*[np.hypot(offset_x - geometry["half"] * np.cos(angle),
                                         offset_y - geometry["half"] * np.sin(angle))
                                for angle in (start, start + span)])
    return np.where(inside, ring, end_distance)


def _corner(grid, geometry, rng):
    """Two perpendicular strokes from a shared vertex, the L turned by a random quarter."""
    quarter = rng.integers(0, 4, len(geometry["x"])).astype(np.float32)[:, None, None] * (np.pi / 2)
    points = [_rotated(geometry, along, across, quarter)
              for along, across in ((1, -1), (-1, -1), (-1, 1))]
    return _polyline_distance(grid, points)


def _circle(grid, geometry, rng):
    xs, ys = grid
    return np.abs(np.hypot(xs - geometry["x"], ys - geometry["y"]) - geometry["half"])


def _rectangle(grid, geometry, rng):
    aspect = rng.uniform(0.6, 1.0, len(geometry["x"])).astype(np.float32)[:, None, None]
    corners = [(1, aspect), (-1, aspect), (-1, -aspect), (1, -aspect), (1, aspect)]
    return _polyline_distance(grid, [_rotated(geometry, a, b) for a, b in corners])


def _triangle(grid, geometry, rng):
    """Any rotation: its three sides are what identify it, not their direction."""
    turn = rng.uniform(0, 2 * np.pi, len(geometry["x"])).astype(np.float32)[:, None, None]
    angles = [turn + k * (2 * np.pi / 3) for k in (0, 1, 2, 0)]
    return _polyline_distance(grid, [_rotated(geometry, np.cos(a), np.sin(a)) for a in angles])


def _cross(grid, geometry, rng):
    return np.minimum(_segment_distance(grid, _rotated(geometry, -1, 0), _rotated(geometry, 1, 0)),
                      _segment_distance(grid, _rotated(geometry, 0, -1), _rotated(geometry, 0, 1)))


# Image y points down, so "/" runs from lower left to upper right: a turn of -45°.
_DRAWERS = (_edge(0.0), _edge(np.pi / 2), _edge(-np.pi / 4), _edge(np.pi / 4), _arc, _corner,
            _circle, _rectangle, _triangle, _cross)
assert len(_DRAWERS) == len(CLASS_NAMES)


# --- colour, background and noise -------------------------------------------------------------
def _colour(ink: np.ndarray, channels: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Blend a background and a foreground colour by the ink, add a gradient and noise.

    The foreground is brighter than the background in at least one channel by a clear margin,
    but colours (and so absolute pixel values) vary from image to image.
    """
    count, size, _ = ink.shape
    background = rng.uniform(0.0, 0.45, (count, channels, 1, 1)).astype(np.float32)
    contrast = (rng.uniform(0.35, 0.65, (count, channels, 1, 1))
                * rng.choice([1.0, 1.0, -0.5], (count, channels, 1, 1)))
    strongest = rng.integers(0, channels, count)  # one channel always has strong contrast
    contrast[np.arange(count), strongest] = rng.uniform(0.4, 0.55, (count, 1, 1))
    contrast = (np.clip(background + contrast, 0.0, 1.0) - background).astype(np.float32)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    tilt = rng.uniform(-0.15, 0.15, (count, 2, 1, 1)).astype(np.float32)
    shading = tilt[:, :1] * ramp[None, None, :, None] + tilt[:, 1:] * ramp[None, None, None, :]
    images = ink[:, None] * contrast
    images += background + shading
    if noise > 0:
        images += np.float32(noise) * rng.standard_normal(images.shape, dtype=np.float32)
    return np.clip(images, 0.0, 1.0, out=images)
