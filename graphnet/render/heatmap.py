"""Heatmaps in the terminal for ``graphnet show``: filters and activation maps as small tiles.

In colour, a character cell holds two pixels, one above the other: ``▀`` drawn with the top
pixel as foreground and the bottom one as background (truecolor styles; rich reduces them to
what the terminal offers). Without colour (piped output, ``NO_COLOR``) a tile is drawn with a
ramp of ASCII characters, two per pixel so that pixels stay roughly square.
"""
from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.columns import Columns
from rich.console import Console, Group
from rich.style import Style
from rich.text import Text

from ..inspection import shrink, shrink_for, zoom_for
from . import stdout

# ColorBrewer RdBu, reversed: blue for negative, white for zero, red for positive.
DIVERGING = ((33, 102, 172), (146, 197, 222), (247, 247, 247), (244, 165, 130), (178, 24, 43))
# A magma-like ramp: black for nothing, through purple and orange, to pale yellow for the most.
SEQUENTIAL = ((0, 0, 4), (81, 18, 124), (183, 55, 121), (252, 137, 97), (252, 253, 191))
ASCII_RAMP = " .:-=+*#%@"
ASCII_DIVERGING = "=-. +#"  # strongly negative … zero … strongly positive
TILE_GAP = 2


def colour_enabled(console: Console) -> bool:
    """Whether styles reach the terminal: not when piped, and not under NO_COLOR."""
    return console.color_system is not None and not console.no_color


def colormap(anchors, values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] → uint8 RGB by piecewise-linear interpolation between the anchors."""
    anchors = np.asarray(anchors, dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    values = np.clip(np.nan_to_num(values), 0.0, 1.0)
    channels = [np.interp(values, positions, anchors[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def half_blocks(rgb: np.ndarray) -> Text:
    """An H×W×3 uint8 image as ceil(H/2) lines of W ``▀`` cells."""
    height, width = rgb.shape[:2]
    text = Text(no_wrap=True, overflow="crop")
    styles: dict[tuple, Style] = {}
    for row in range(0, height, 2):
        for column in range(width):
            top = tuple(int(v) for v in rgb[row, column])
            bottom = tuple(int(v) for v in rgb[row + 1, column]) if row + 1 < height else None
            key = (top, bottom)
            if key not in styles:
                styles[key] = Style(color=Color.from_rgb(*top),
                                    bgcolor=Color.from_rgb(*bottom) if bottom else None)
            text.append("▀", style=styles[key])
        if row + 2 < height:
            text.append("\n")
    return text


def ascii_tile(levels: np.ndarray, ramp: str) -> Text:
    """An H×W array of values in [0, 1] as H lines of two ramp characters per pixel."""
    indices = np.clip((levels * (len(ramp) - 1)).round().astype(int), 0, len(ramp) - 1)
    lines = ["".join(ramp[i] * 2 for i in row) for row in indices]
    return Text("\n".join(lines), no_wrap=True, overflow="crop")


def tile(values: np.ndarray, kind: str, colour: bool, zoom: int = 1) -> Text:
    """One heatmap. ``kind``: ``"rgb"`` (H×W×3 in [0, 1]), ``"diverging"`` (H×W in [-1, 1])
    or ``"sequential"`` (H×W in [0, 1]); ``zoom`` repeats each pixel."""
    if zoom > 1:
        values = np.repeat(np.repeat(values, zoom, axis=0), zoom, axis=1)
    if kind == "rgb":
        if colour:
            return half_blocks((np.clip(values, 0, 1) * 255).round().astype(np.uint8))
        luminance = values @ np.array([0.299, 0.587, 0.114])
        return ascii_tile(luminance, ASCII_RAMP)
    if kind == "diverging":
        levels = (np.clip(values, -1, 1) + 1) / 2
        return half_blocks(colormap(DIVERGING, levels)) if colour else \
            ascii_tile(levels, ASCII_DIVERGING)
    return half_blocks(colormap(SEQUENTIAL, values)) if colour else ascii_tile(values, ASCII_RAMP)


def colour_bar(kind: str, colour: bool, low: str, high: str, width: int = 16) -> Text:
    """A one-line key: ``low ▀▀▀…▀ high``."""
    text = Text(f"{low} ")
    if colour:
        anchors = DIVERGING if kind == "diverging" else SEQUENTIAL
        for rgb in colormap(anchors, np.linspace(0, 1, width)):
            text.append("█", style=Style(color=Color.from_rgb(*map(int, rgb))))
    else:
        ramp = ASCII_DIVERGING if kind == "diverging" else ASCII_RAMP
        text.append("".join(ramp[round(i * (len(ramp) - 1) / (width - 1))] for i in range(width)))
    text.append(f" {high}")
    return text


def tile_grid(tiles: list[tuple[Text, Text]]) -> Columns:
    """Labelled tiles side by side, as many per line as the console's width allows."""
    return Columns([Group(label, picture) for label, picture in tiles],
                   padding=(0, TILE_GAP), align="left")


def _normalise_filter(weights: np.ndarray, kind: str) -> np.ndarray:
    """Each filter scaled on its own: RGB to [0, 1] by min and max; one channel to [-1, 1] by
    its largest magnitude (so zero stays white)."""
    if kind == "rgb":
        low, high = weights.min(), weights.max()
        return (weights - low) / (high - low) if high > low else np.full_like(weights, 0.5)
    largest = np.abs(weights).max()
    return weights / largest if largest > 0 else weights


def render_filters(view: dict, console: Console | None = None) -> None:
    """The filters of one node as a grid of tiles.

    ``view``: ``node``, ``op``, ``source`` (where the weights came from), ``untrained`` (bool),
    ``weights`` (filters × channels × height × width) and ``channel`` (the input channel drawn
    when there are not exactly three; None draws colour).
    """
    console = console or stdout()
    colour = colour_enabled(console)
    weights = view["weights"]
    filters, channels, height, width = weights.shape
    kind = "rgb" if view["channel"] is None else "diverging"
    header = Text()
    header.append(f"{view['node']}", style="bold")
    header.append(f" ({view['op']}): {filters} filters of {channels}×{height}×{width}")
    console.print(header)
    note = Text(view["source"], style="yellow" if view["untrained"] else "bright_black")
    console.print(note)
    zoom = zoom_for(width, 10) if colour else 1
    tiles = []
    for index in range(filters):
        if kind == "rgb":
            pixels = _normalise_filter(np.moveaxis(weights[index], 0, -1), "rgb")
        else:
            pixels = _normalise_filter(weights[index, view["channel"]], "diverging")
        tiles.append((Text(f"#{index}", style="bold"), tile(pixels, kind, colour, zoom)))
    console.print(tile_grid(tiles))
    if kind == "rgb":
        console.print(Text("each filter's three input channels drawn as red, green and blue, "
                           "scaled to its own smallest and largest weight", style="bright_black"))
    else:
        which = ("" if channels == 1 else
                 f"input channel {view['channel']} of {channels} (--channel picks another); ")
        key = colour_bar("diverging", colour, "negative", "positive")
        key.append(f"   {which}each filter scaled to its largest |weight|, 0 in the middle",
                   style="bright_black")
        console.print(key)


def render_activations(view: dict, console: Console | None = None) -> None:
    """The input image, then per node a grid of its activation maps.

    ``view``: ``input`` (name), ``image`` (C×H×W), ``source``, ``untrained``, ``file``,
    ``index``, and ``maps``: a list of ``{"node", "op", "values"}`` with values C×H×W.
    """
    console = console or stdout()
    colour = colour_enabled(console)
    image = view["image"]
    header = Text()
    header.append(f"image {view['index']}", style="bold")
    header.append(f" of {view['file']} (input {view['input']}, "
                  f"{'×'.join(map(str, image.shape))})")
    console.print(header)
    console.print(Text(view["source"], style="yellow" if view["untrained"] else "bright_black"))
    console.print(_image_tile(image, console.width, colour))
    for layer in view["maps"]:
        values = layer["values"]
        channels, height, width = values.shape
        positive = np.clip(values, 0, None)
        peak = positive.max()
        peaks = positive.reshape(channels, -1).max(axis=1)
        strongest = {int(i) for i in np.argsort(peaks)[::-1][:3] if peaks[i] > 0}
        per_line = min(channels, 4 if colour else 3)  # ASCII pixels are two characters wide
        room = max(8, (console.width - TILE_GAP * (per_line - 1)) // per_line)
        cells_per_pixel = 1 if colour else 2
        factor = shrink_for(width, room // cells_per_pixel)
        console.print()
        title = Text()
        title.append(layer["node"], style="bold")
        title.append(f" ({layer['op']}): {channels} maps of {height}×{width}"
                     + (f", shrunk {factor}×" if factor > 1 else ""))
        console.print(title)
        tiles = []
        for index in range(channels):
            levels = shrink(positive[index], factor) / peak if peak > 0 else \
                np.zeros((height, width))
            label = Text(f"#{index} {peaks[index]:.2g}",
                         style="bold yellow" if index in strongest else "bold")
            tiles.append((label, tile(levels, "sequential", colour)))
        console.print(tile_grid(tiles))
    if view["maps"]:
        key = colour_bar("sequential", colour, "0 or less", "the layer's strongest response")
        key.append("   label: filter index and its peak response (the 3 strongest highlighted)",
                   style="bright_black")
        console.print(key)


IMAGE_WIDTH = 40  # at most this many characters: the image is context, not the subject


def _image_tile(image: np.ndarray, width: int, colour: bool) -> Text:
    """The input image itself: colour for three channels, grey levels otherwise."""
    channels, height, image_width = image.shape
    room = min(width, IMAGE_WIDTH)
    factor = shrink_for(image_width, room if colour else room // 2)
    low, high = image.min(), image.max()
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    scaled = shrink(scaled, factor)
    if channels == 3:
        return tile(np.moveaxis(scaled, 0, -1), "rgb", colour)
    grey = scaled[0]
    if colour:
        return half_blocks(np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=-1))
    return ascii_tile(grey, ASCII_RAMP)
