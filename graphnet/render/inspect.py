"""Rendering for ``graphnet inspect`` and ``graphnet ops``: the node table with its lane drawing,
the receptive-field picture, and the op catalogue. Takes plain data from
:mod:`graphnet.inspection`; every renderer fits its output to the console's width.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from ..inspection import INPUT_MARK, NODE_MARK
from . import stdout

LANE_STYLE = "blue"
OP_STYLE = "cyan"
BLOCK_STYLE = "bold magenta"
DIM = "bright_black"


# --- numbers ---------------------------------------------------------------------------------


def compact_number(value: int) -> str:
    """61706 → ``61.7k``, 1234567 → ``1.2M``; below 1000 as is."""
    for limit, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return str(value)


def full_number(value: int) -> str:
    return f"{value:,}"


def byte_size(value: int) -> str:
    """Bytes in binary units: ``241.0 KiB``."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _pair(values) -> str:
    """``[5, 5]`` → ``5``; ``[5, 3]`` → ``5×3``."""
    return str(values[0]) if values[0] == values[1] else f"{values[0]}×{values[1]}"


def _start(values) -> str:
    return str(values[0]) if values[0] == values[1] else f"{values[0]},{values[1]}"


# --- the inspect table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Which columns the table shows and how densely; tried from widest to narrowest."""

    full_numbers: bool = True
    field: str = "split"  # "split" (size, jump, start columns), "spaced" (5 / 1 / -2), "tight"
    inputs: str = "all"
    """"all": an inputs column; "branches": a "from" column listing inputs only where they are
    not simply the row above; "inline": those same inputs under the node's name."""
    clip: int | None = None  # the most characters a name or op may take


def _layouts():
    yield Layout()
    yield Layout(full_numbers=False)
    yield Layout(full_numbers=False, field="spaced")
    yield Layout(full_numbers=False, field="spaced", inputs="branches")
    for clip in (None, 14, 12):
        yield Layout(full_numbers=False, field="tight", inputs="branches", clip=clip)
    for clip in (14, 12, 8):
        yield Layout(full_numbers=False, field="tight", inputs="inline", clip=clip)


LAYOUTS = tuple(_layouts())


def render_inspect(figures: dict, lanes, console: Console | None = None) -> None:
    """The title, the node table (widest layout that fits the console), totals and a legend."""
    console = console or stdout()
    graph = figures["graph"]
    title = Text(graph["name"], style="bold")
    if graph.get("description"):
        title.append(f" — {graph['description']}")
    console.print(title)
    table = fitting_table(figures, lanes, console)
    console.print(table)
    console.print(totals_grid(figures["totals"]))
    outputs = ", ".join(f"{key} = {value}" for key, value in figures["outputs"].items())
    notes = Text(style=DIM)
    notes.append(f"outputs: {outputs}\n")
    notes.append("RF: receptive field size / jump / start in input pixels (height×width where "
                 "they differ); whole: each unit sees the whole input\n")
    if any(row.get("block") for row in figures.get("rows", ())):
        notes.append("a block's row sums its nodes (×N: N chained instances) and shows its "
                     "output; --depth N unfolds N levels, --depth all every node\n")
    notes.append(f"{INPUT_MARK} input  {NODE_MARK} node  ├─╮ branch  ├─╯ merge")
    console.print(notes)


def fitting_table(figures: dict, lanes, console: Console) -> Table:
    """The first layout of :data:`LAYOUTS` whose natural width fits the console."""
    unbounded = console.options.update_width(10_000)
    table = None
    for layout in LAYOUTS:
        table = node_table(figures, lanes, layout)
        if Measurement.get(console, unbounded, _widest_cells(table)).maximum <= console.width:
            return table
    return table  # the narrowest; rich clips its cells with an ellipsis


def _widest_cells(table: Table) -> Table:
    """A stand-in for ``table`` with its columns and one row: each column's widest cell. Its
    natural width is the table's (every column is no-wrap), and measuring it costs the same for
    10,000 rows as for 10, where rich would measure every cell once per layout tried."""
    stand_in = copy.copy(table)
    stand_in.columns, stand_in.rows = [], []
    widest = []
    for column in table.columns:
        cells = list(column.cells)
        stand_in.columns.append(copy.copy(column))
        stand_in.columns[-1]._cells = []
        widest.append(max(cells, key=_plain_width) if cells else "")
    stand_in.add_row(*widest)
    return stand_in


def _plain_width(cell) -> int:
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return max(map(cell_len, text.split("\n")))


def node_table(figures: dict, lanes, layout: Layout) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1), pad_edge=False,
                  collapse_padding=True, header_style="bold")
    clip = dict(max_width=layout.clip, overflow="ellipsis") if layout.clip else {}
    table.add_column("", no_wrap=True, style=LANE_STYLE, overflow="crop")
    table.add_column("node", no_wrap=True, **clip)
    table.add_column("op", no_wrap=True, style=OP_STYLE, **clip)
    if layout.inputs != "inline":
        table.add_column("inputs" if layout.inputs == "all" else "from", no_wrap=True,
                         overflow="ellipsis")
    table.add_column("output", no_wrap=True, justify="right")
    table.add_column("params", no_wrap=True, justify="right")
    table.add_column("MACs", no_wrap=True, justify="right")
    if layout.field == "split":
        table.add_column("RF size", no_wrap=True, justify="right")
        table.add_column("jump", no_wrap=True, justify="right")
        table.add_column("start", no_wrap=True, justify="right")
    else:
        table.add_column("RF", no_wrap=True, justify="right")
    number = full_number if layout.full_numbers else compact_number
    width = len(table.columns)
    above: set[str] = set()  # the row above; the block of graph inputs counts as one row
    outputs = set(figures["outputs"].values())
    for row, lane in zip(figures.get("rows", figures["nodes"]), lanes):
        if lane.connector:
            table.add_row(lane.connector, *[""] * (width - 1))
        inputs = _inputs_cell(row, above, layout.inputs)
        name_style = "bold" if row["name"] in outputs else ("italic" if row["op"] == "input"
                                                             else "")
        name = Text(row["name"], style=name_style)
        if layout.inputs == "inline" and inputs:
            name.append("".join(f"\n← {source}" for source in inputs.split("\n")), style=DIM)
        height = max(1, (name.plain if layout.inputs == "inline" else inputs).count("\n") + 1)
        cells = [lane.line + ("\n" + lane.below) * (height - 1), name]
        cells.append(Text(row["op"], style=DIM if row["op"] == "input" else (
            BLOCK_STYLE if row.get("block") else "")))
        if layout.inputs != "inline":
            cells.append(Text(inputs, style=DIM if layout.inputs == "all" else ""))
        shape = row["output_shape"]
        cells.append("×".join(map(str, shape)) if shape else "scalar")
        cells.append(number(row["params"]) if row["params"] else Text("·", style=DIM))
        cells.append(number(row["macs"]) if row["macs"] else Text("·", style=DIM))
        cells.extend(_field_cells(row, layout.field))
        table.add_row(*cells)
        above = (above | {row["name"]}) if row["op"] == "input" else {row["name"]}
    return table


def _inputs_cell(row, above: set, mode) -> str:
    if not row["inputs"]:
        return ""
    if mode == "all":
        return ", ".join(row["inputs"])
    if len(row["inputs"]) == 1 and row["inputs"][0] in above:
        return ""  # a plain chain: the lane drawing says it
    return "\n".join(row["inputs"])


def _field_cells(row, form: str) -> list:
    field = row["receptive_field"]
    if field is None:
        text = Text("whole" if row["sees_image"] else "—", style=DIM)
        return [text, Text(""), Text("")] if form == "split" else [text]
    size, jump, start = _pair(field["size"]), _pair(field["jump"]), _start(field["start"])
    if form == "split":
        return [size, jump, start]
    return [(" / " if form == "spaced" else "/").join((size, jump, start))]


def totals_grid(totals: dict) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(style=DIM)
    grid.add_row("parameters", full_number(totals["trainable_params"]), "trainable")
    if totals["non_trainable"]:
        grid.add_row("", full_number(totals["non_trainable"]), "non-trainable (frozen nodes)")
    if totals["state"]:
        grid.add_row("state", full_number(totals["state"]),
                     "batch norm's running mean and variance: kept, not learned, not parameters")
    grid.add_row("all arrays", full_number(totals["params"]),
                 f"{byte_size(totals['parameter_bytes'])} as float32")
    grid.add_row("MACs per sample", full_number(totals["macs"]), compact_number(totals["macs"]))
    grid.add_row("activations", byte_size(totals["activation_bytes"]),
                 f"batch size {totals['batch_size']}, every node's output")
    grid.add_row("memory", byte_size(totals["inference_bytes"]),
                 f"inference; training ≈ {byte_size(totals['training_bytes'])}")
    return grid


# --- the receptive field on the image --------------------------------------------------------

FIELD_STYLE = "dodger_blue2"
PADDING_STYLE = "grey50"
IMAGE_STYLE = "grey37"
CENTRE_STYLE = "bold bright_white on dodger_blue2"
NEIGHBOUR_STYLE = "bold yellow"


def render_field(view: dict, console: Console | None = None) -> None:
    """The input image as a grid with one unit's field, its padding and its neighbours'
    centres; then how the field grows along the way. A global node says it sees everything."""
    console = console or stdout()
    height, width = view["image"]
    header = Text()
    header.append(f"receptive field of {view['node']}", style="bold")
    header.append(f" ({view['op']}) in input {view['input']} ({height}×{width})")
    console.print(header)
    if view["whole"]:
        console.print(Text(f"{view['node']} sees the whole input: each of its units depends on "
                           f"every pixel of the {height}×{width} image."))
    else:
        console.print(field_grid(view, console.width))
        console.print(_field_legend(view))
    if view["path"]:  # an input's own field has no growth to chart
        console.print(growth_bars(view, console.width))


def field_grid(view: dict, width: int) -> Text:
    """One character cell per pixel (two where they fit, for square pixels), or one per block
    of pixels when the image is wider than the console."""
    box_ = view["box"]
    height, image_width = view["image"]
    row_first, row_last = min(0, box_["top"]), max(height - 1, box_["bottom"])
    col_first, col_last = min(0, box_["left"]), max(image_width - 1, box_["right"])
    columns = col_last - col_first + 1
    cell = 2 if 2 * columns <= width else 1
    block = max(1, math.ceil(columns / width)) if cell == 1 else 1
    centre = tuple(int(math.floor(v)) for v in view["centre"])
    neighbours = {tuple(int(math.floor(v)) for v in point) for point in view["neighbours"]}

    def covers(start, point):
        return start <= point[0] < start + block

    text = Text(no_wrap=True, overflow="crop")
    for top in range(row_first, row_last + 1, block):
        for left in range(col_first, col_last + 1, block):
            rows = range(top, min(top + block, row_last + 1))
            cols = range(left, min(left + block, col_last + 1))
            in_field = (rows.start <= box_["bottom"] and rows.stop - 1 >= box_["top"]
                        and cols.start <= box_["right"] and cols.stop - 1 >= box_["left"])
            in_image = rows.start < height and rows.stop > 0 and cols.start < image_width \
                and cols.stop > 0
            image_only = rows.start >= 0 and rows.stop <= height and cols.start >= 0 \
                and cols.stop <= image_width
            here = lambda point: point[0] in rows and point[1] in cols  # noqa: E731
            if here(centre):
                glyph, style = "◉", CENTRE_STYLE
            elif any(here(point) for point in neighbours):
                glyph = "+"
                style = NEIGHBOUR_STYLE + (f" on {FIELD_STYLE}" if in_field else "")
            elif in_field and image_only:
                glyph, style = "█", FIELD_STYLE
            elif in_field:
                glyph, style = "░", PADDING_STYLE
            elif in_image:
                glyph, style = "·", IMAGE_STYLE
            else:
                glyph, style = " ", ""
            fill = "█" if glyph == "█" else ("░" if glyph == "░" else " ")
            text.append(glyph + (fill if cell == 2 else ""), style=style)
        text.append("\n")
    text.rstrip()
    return text


def _field_legend(view: dict) -> Text:
    size, jump, box_ = view["size"], view["jump"], view["box"]
    legend = Text()
    legend.append("██", style=FIELD_STYLE)
    legend.append(f" what unit ({view['unit'][0]}, {view['unit'][1]}) of the "
                  f"{view['output'][0]}×{view['output'][1]} output sees: {size[0]}×{size[1]} "
                  f"pixels, rows {box_['top']}..{box_['bottom']}, columns "
                  f"{box_['left']}..{box_['right']} ({_share(view['coverage'])} of the image)\n")
    if view["padded"]:
        legend.append("░░", style=PADDING_STYLE)
        legend.append(" padding: the field reaches past the image's edge (start "
                      f"{_start(view['start'])})\n")
    legend.append("◉ ", style=CENTRE_STYLE)
    legend.append(" the field's centre\n")
    legend.append("+ ", style=NEIGHBOUR_STYLE)
    pixels = "pixel" if max(jump) == 1 else "pixels"
    legend.append(f" the centres of the neighbouring units' fields, {_pair(jump)} {pixels} apart "
                  "(the jump)\n")
    legend.append("· ", style=IMAGE_STYLE)
    legend.append(" the rest of the image")
    return legend


def _share(fraction: float) -> str:
    """A share of the image: a 1×1 field of a 28×28 image is "<1%", not "0%"."""
    return "<1%" if 0 < fraction < 0.005 else f"{fraction:.0%}"


def growth_bars(view: dict, width: int) -> Table:
    """A bar per node on the way from the image: its field size against the image's."""
    path = view["path"]
    image_size = max(view["image"])
    largest = max([image_size] + [max(step["size"]) for step in path if step["size"]])
    name_width = min(max([len(step["name"]) for step in path] + [4]), 16)
    bar_room = max(4, min(64, width - name_width - 12))
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, max_width=name_width, overflow="ellipsis")
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True, overflow="crop")
    for step in path:
        if step["size"] is None:
            table.add_row(Text(step["name"]), Text("whole", style=DIM),
                          Text("━" * bar_room, style=DIM))
            continue
        size = max(step["size"])
        length = max(1, round(size / largest * bar_room))
        style = "bold " + FIELD_STYLE if step["name"] == view["node"] else FIELD_STYLE
        table.add_row(Text(step["name"]), _pair(step["size"]), Text("━" * length, style=style))
    marker = max(1, round(image_size / largest * bar_room))
    table.add_row(Text("image", style=DIM), Text(str(image_size), style=DIM),
                  Text("┄" * marker + "┤", style=DIM))
    title = Text("the field grows with depth (size in pixels):", style="bold")
    return Group(title, table) if path else Group(title)


# --- the op catalogue ------------------------------------------------------------------------


def render_catalogue(catalogue: list[dict], console: Console | None = None) -> None:
    """Every op grouped by the plugin that registered it: name, one-line doc and, below it,
    the attributes with their defaults (required ones with their kind)."""
    console = console or stdout()
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold",
                  title=f"{len(catalogue)} registered ops", title_justify="left",
                  title_style="bold")
    table.add_column("op", no_wrap=True, style=OP_STYLE, max_width=24, overflow="ellipsis")
    table.add_column("doc · attributes (defaults)", overflow="fold")
    by_plugin: dict[str, list[dict]] = {}
    for op in catalogue:
        by_plugin.setdefault(op["plugin"], []).append(op)
    for plugin, ops in by_plugin.items():
        table.add_row(Text("plugin", style=DIM), Text(plugin, style="bold magenta"))
        for position, op in enumerate(ops):
            table.add_row(Text(op["name"]), Text.assemble(op["doc"], "\n", _attribute_summary(op)),
                          end_section=position == len(ops) - 1)
    console.print(table)
    console.print(Text("graphnet ops NAME shows one op in full", style=DIM))


def _attribute_summary(op: dict) -> Text:
    text = Text()
    for position, attr in enumerate(op["attributes"]):
        if position:
            text.append(", ")
        text.append(attr["name"])
        if attr["required"]:
            text.append(f" ({attr['kind']})", style="bold")
        else:
            text.append(f" {attr['default_text']}", style=DIM)
    if not op["attributes"]:
        text.append("no attributes", style=DIM)
    return text


def render_op(op: dict, console: Console | None = None) -> None:
    """One op in full: header, facts, attribute table and docstring."""
    console = console or stdout()
    header = Text()
    header.append(op["name"], style="bold " + OP_STYLE)
    header.append(f"  from plugin {op['plugin']}", style=DIM)
    console.print(header)
    console.print(Text(op["doc"]))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column()
    facts.add_row("inputs", Text(op["arity_text"] + (
        f" (integer labels at position {', '.join(str(i + 1) for i in op['integer_inputs'])})"
        if op["integer_inputs"] else "")))
    facts.add_row("parameters", _parameters_text(op))
    facts.add_row("output", "a scalar loss for the batch" if op["is_loss"] else "per sample")
    console.print(facts)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold",
                  title="attributes", title_justify="left", title_style="bold")
    table.add_column("name", no_wrap=True, style=OP_STYLE)
    table.add_column("kind", no_wrap=True)
    table.add_column("default", overflow="fold")
    table.add_column("accepts", ratio=1)
    table.add_column("doc", ratio=2)
    for attr in op["attributes"]:
        default = Text("required", style="bold") if attr["required"] else \
            Text(attr["default_text"])
        table.add_row(Text(attr["name"]), attr["kind"], default, Text(attr["accepts"]),
                      Text(attr["doc"]))
    if op["attributes"]:
        console.print(table)
    else:
        console.print(Text("attributes: none", style=DIM))
    body = reflow(op["docstring"])
    if body.startswith(op["doc"]):
        body = body[len(op["doc"]):].lstrip()
    if body:
        console.print(Text("\n" + body))


def reflow(docstring: str) -> str:
    """Join the hard-wrapped lines of each plain paragraph so the console can wrap them to its
    width; indented blocks and lists keep their lines."""
    paragraphs = []
    for paragraph in docstring.split("\n\n"):
        lines = paragraph.splitlines()
        structured = any(line.startswith((" ", "\t", "- ", "* ")) for line in lines)
        paragraphs.append(paragraph if structured else " ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def _parameters_text(op: dict) -> str:
    """What the op catalogue says of an op's parameters: their names where the op told."""
    if not op["has_params"]:
        return "none"
    if op["learned"] is None:
        return "yes, created by the engine (which ones depends on the attributes)"
    parts = [f"learned: {', '.join(op['learned'])}"] if op["learned"] else []
    if op["state"]:
        parts.append(f"state, not learned: {', '.join(op['state'])}")
    return "; ".join(parts)
