"""Shared drawing parts: pictures made from arrays, text fitted to a width, and a grid of
panels laid out in inches.

Every figure of :mod:`wsol_bench.figures` is laid out here by measurement rather than by
``tight_layout``: text is measured with the figure's own renderer, wrapped (or shrunk, then
cut with an ellipsis) to the width it is given, and the figure's height follows from what
it holds. So titles never leave the figure and no two texts overlap, whatever the names.

Conventions:

* pictures are ``H x W x 3`` uint8 RGB or ``H x W`` uint8 grey arrays; boxes are
  :class:`wsol_bench.boxes.Box` in the pixel frame of the picture they are drawn on
  (0-based inclusive: a box covers ``[xmin - 0.5, xmax + 0.5]`` in image coordinates);
* saliency maps are shown on their own scale: grey, black 0 and white the map's
  ``percentile``-th percentile (:func:`grey_map`), or in a colour map stretched alike
  (:func:`colour_map`);
* colours and line styles come from :mod:`wsol_bench.figures.palette` (colour-blind safe);
* lengths are inches; the PNG is ``figure size x dpi`` pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from wsol_bench.boxes import Box
from wsol_bench.figures import new_figure
from wsol_bench.figures.palette import OKABE_ITO, SALIENCY_CMAP, rgb255
from wsol_bench.figures.palette import SEED_COLOURS as PALETTE_SEED_COLOURS

NameLookup = Mapping[str, str] | Callable[[str], str] | None
"""Class names by WNID: a mapping (unknown WNIDs show as themselves), a callable such as
:meth:`wsol_bench.data.synsets.SynsetTable.name`, or ``None`` (show WNIDs)."""

ELLIPSIS = "\u2026"
MARGIN = 0.1  # inches around the figure's content
GAP = 0.1  # inches between panels
PAD = 0.04  # inches between a panel and its text


def class_name(names: NameLookup, wnid: str | None) -> str:
    """The name of ``wnid`` through ``names`` (see :data:`NameLookup`); ``'?'`` for no class."""
    if wnid is None:
        return "?"
    if names is None:
        return wnid
    if callable(names):
        try:
            return str(names(wnid))
        except (KeyError, ValueError):
            return wnid
    return str(names.get(wnid, wnid))


# --- pictures ------------------------------------------------------------------------------


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """``image`` as an array, or ``ValueError`` naming ``what`` unless it is ``H x W x 3`` uint8."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{what} must be an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
    return image


def grey_map(saliency: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """An ``(H, W)`` map as uint8 grey: black is 0, white is the ``percentile``-th percentile
    of its finite values (100: its maximum); values above it are white, below 0 and
    non-finite ones black. A map with no positive value is all black."""
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile={percentile} must be in (0, 100]")
    m = np.asarray(saliency, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a saliency map must be 2-D, got shape {m.shape}")
    finite = m[np.isfinite(m)]
    white = float(np.percentile(finite, percentile)) if finite.size else 0.0
    if white <= 0.0:
        white = float(finite.max()) if finite.size else 0.0
    if white <= 0.0:
        return np.zeros(m.shape, np.uint8)
    scaled = np.clip(np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0) / white, 0.0, 1.0)
    return (scaled * 255.0 + 0.5).astype(np.uint8)


def colour_map(saliency: np.ndarray, percentile: float = 99.0, cmap: str = SALIENCY_CMAP) -> np.ndarray:
    """An ``(H, W)`` map as ``H x W x 3`` uint8 RGB in the colour map ``cmap`` (default the
    palette's perceptually uniform one), stretched as :func:`grey_map` stretches it: the
    colour map's first colour is 0, its last the ``percentile``-th percentile, brighter
    values clipped to it."""
    from matplotlib import colormaps

    lut = (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    return lut[grey_map(saliency, percentile)]


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 2-D bool mask resized to ``size = (height, width)`` by nearest neighbour."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(size):
        return mask
    out = cv2.resize(mask.astype(np.uint8), (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool)


SEED_COLOURS = {role: rgb255(OKABE_ITO[name]) for role, name in PALETTE_SEED_COLOURS.items()}


def seed_overlay(image: np.ndarray, foreground: np.ndarray, background: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """The image dimmed to 60 %, foreground seeds painted vermillion and background seeds sky
    blue (:mod:`~wsol_bench.figures.palette`; ``alpha`` of the colour; a pixel in both is
    foreground). Seeds may be in a smaller frame of the image (the extractor's working
    frame): they are resized nearest to the image."""
    image = check_image(image)
    size = image.shape[:2]
    fg, bg = resize_nearest(foreground, size), resize_nearest(background, size)
    out = image.astype(np.float32) * 0.6
    for seeds, colour in ((bg & ~fg, SEED_COLOURS["background"]), (fg, SEED_COLOURS["foreground"])):
        out[seeds] = (1 - alpha) * out[seeds] + alpha * np.asarray(colour, np.float32)
    return (out + 0.5).astype(np.uint8)


def masked_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image inside ``mask`` (bool, the image's frame or resized nearest to it), black outside."""
    image = check_image(image)
    keep = resize_nearest(mask, image.shape[:2])
    return np.where(keep[..., None], image, 0).astype(np.uint8)


# --- text ------------------------------------------------------------------------------------


def text_size(fig: Figure, text: str, fontsize: float, weight: str = "normal") -> tuple[float, float]:
    """``(width, height)`` in pixels of one line of ``text`` drawn on ``fig``."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # an Agg canvas
    w, h, _ = renderer.get_text_width_height_descent(text, FontProperties(size=fontsize, weight=weight), ismath=False)
    return float(w), float(h)


def truncate(fig: Figure, text: str, width_px: float, fontsize: float, weight: str = "normal") -> str:
    """``text`` cut (with an ellipsis) to fit ``width_px`` on one line."""
    if text_size(fig, text, fontsize, weight)[0] <= width_px:
        return text
    lo, hi = 0, len(text)  # longest prefix that fits with the ellipsis
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_size(fig, text[:mid].rstrip() + ELLIPSIS, fontsize, weight)[0] <= width_px:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + ELLIPSIS if lo else ""


def wrap(fig: Figure, text: str, width_px: float, fontsize: float, weight: str = "normal") -> list[str]:
    """Greedy word wrap of ``text`` (its own newlines kept) to lines of at most ``width_px``;
    a word wider than a line is cut with an ellipsis."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if text_size(fig, candidate, fontsize, weight)[0] <= width_px:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = truncate(fig, word, width_px, fontsize, weight)
        lines.append(line)
    return lines


def fit_text(
    fig: Figure, text: str, width_px: float, fontsize: float, max_lines: int = 2,
    min_fontsize: float = 6.0, weight: str = "normal",
) -> tuple[str, float]:
    """``text`` wrapped to ``width_px``: at ``fontsize`` if it then takes at most ``max_lines``
    lines, else at a smaller size down to ``min_fontsize``; at that size the lines past
    ``max_lines`` are dropped and the last kept one ends with an ellipsis. Returns the
    wrapped text and its font size."""
    size = fontsize
    while True:
        lines = wrap(fig, text, width_px, size, weight)
        if len(lines) <= max_lines:
            return "\n".join(lines), size
        if size <= min_fontsize:
            break
        size = max(min_fontsize, size - 0.5)
    kept = lines[:max_lines]
    kept[-1] = truncate(fig, kept[-1] + " " + ELLIPSIS, width_px, size, weight)
    return "\n".join(kept), size


def text_extent_inches(fig: Figure, artist: Text) -> tuple[float, float]:
    """``(width, height)`` in inches of a text artist as it would be drawn."""
    ext = artist.get_window_extent(fig.canvas.get_renderer())  # type: ignore[attr-defined]  # an Agg canvas
    return ext.width / fig.dpi, ext.height / fig.dpi


# --- panels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxMark:
    """A box drawn on a panel, in the panel picture's pixel frame (inclusive pixels)."""

    box: Box
    colour: str
    linewidth: float = 2.0
    linestyle: str = "-"


@dataclass(frozen=True)
class Panel:
    """One picture of a grid: ``picture`` (``H x W x 3`` or ``H x W`` uint8), the caption
    under it (wrapped to the panel's width) and boxes drawn on it."""

    picture: np.ndarray
    caption: str = ""
    boxes: tuple[BoxMark, ...] = ()

    def __post_init__(self) -> None:
        p = np.asarray(self.picture)
        if p.dtype != np.uint8 or not (p.ndim == 2 or (p.ndim == 3 and p.shape[2] == 3)) or 0 in p.shape:
            raise ValueError(f"a panel picture must be an HxW or HxWx3 uint8 array, got {p.dtype} {p.shape}")


@dataclass
class GridFigure:
    """A laid-out grid: the figure, its axes (``axes[row][column]``, ``None`` for empty
    cells), the footer's ``(left, bottom, width, height)`` in inches from the figure's
    bottom left (the figure's width less the margins; ``None`` if no footer was asked
    for) and the texts drawn, by role."""

    figure: Figure
    axes: list[list[Axes | None]]
    footer: tuple[float, float, float, float] | None = None
    texts: dict[str, list[Text]] = field(default_factory=dict)


def draw_box(ax: Axes, mark: BoxMark) -> Rectangle:
    """Outline an inclusive-pixel box on an image axes."""
    b = mark.box
    patch = Rectangle((b.xmin - 0.5, b.ymin - 0.5), b.width, b.height, fill=False,
                      ec=mark.colour, lw=mark.linewidth, ls=mark.linestyle)
    ax.add_patch(patch)
    return patch


def _place_text(fig: Figure, text: Text, x: float, y_top: float, ha: str) -> None:
    """Put ``text`` (``va='top'``) at ``x`` inches from the left and ``y_top`` inches from the top."""
    w, h = fig.get_size_inches()
    text.set_position((x / w, 1.0 - y_top / h))
    text.set_transform(fig.transFigure)
    text.set_horizontalalignment(ha)  # type: ignore[arg-type]  # left, center or right
    text.set_verticalalignment("top")


def panel_grid(
    rows: Sequence[Sequence[Panel | None]],
    column_titles: Sequence[str] | None = None,
    row_titles: Sequence[str] | None = None,
    title: str | None = None,
    cell_inches: float = 2.4,
    dpi: int = 100,
    fontsize: float = 8.0,
    footer_inches: float = 0.0,
    min_width_inches: float = 0.0,
    max_aspect: float = 1.6,
    row_align: Sequence[str] | None = None,
) -> GridFigure:
    """Lay out ``rows`` of panels on a new figure and draw them.

    Every column is ``cell_inches`` wide; a row is as tall as its tallest panel (a panel's
    height is its picture's aspect times the width, at most ``max_aspect`` widths: taller
    pictures are shrunk to fit). Each picture keeps its aspect ratio, centred across its
    cell and placed at the ``row_align[row]`` (``'top'``, ``'center'``, ``'bottom'``;
    default centre) of its row.
    Above the grid: ``title`` (up to 3 lines, shrunk to fit), then ``column_titles``; above
    each row its ``row_titles`` entry (one line; newlines become dashes); right under each
    picture its caption (up to 3 lines). ``footer_inches`` of empty space is left under the grid for the caller
    (:attr:`GridFigure.footer`). Empty cells (``None``) draw nothing.
    """
    if not rows or not any(rows):
        raise ValueError("a panel grid needs at least one panel")
    ncols = max(len(r) for r in rows)
    if column_titles is not None and len(column_titles) > ncols:
        raise ValueError(f"{len(column_titles)} column titles for {ncols} columns")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"{len(row_titles)} row titles for {len(rows)} rows")
    if row_align is not None and (len(row_align) != len(rows) or set(row_align) - {"top", "center", "bottom"}):
        raise ValueError(f"row_align={list(row_align)!r}: one of 'top', 'center', 'bottom' per row")
    cw = float(cell_inches)
    grid_w = ncols * cw + (ncols - 1) * GAP
    width = math.ceil(max(float(min_width_inches), grid_w + 2 * MARGIN) * dpi) / dpi  # whole pixels
    x0 = (width - grid_w) / 2
    fig = new_figure(width, 1.0, dpi)
    px = float(dpi)

    def make(text: str, size: float, weight: str = "normal") -> Text:
        return fig.text(0, 0, text, fontsize=size, fontweight=weight)

    texts: dict[str, list[Text]] = {"title": [], "column_titles": [], "row_titles": [], "captions": []}
    y = MARGIN
    if title:
        s, size = fit_text(fig, title, (width - 2 * MARGIN) * px, fontsize + 2, max_lines=3, weight="bold")
        t = make(s, size, "bold")
        _place_text(fig, t, width / 2, y, "center")  # positions are set again once the height is known
        texts["title"].append(t)
        y += text_extent_inches(fig, t)[1] + GAP
    col_y = y
    if column_titles:
        heights = []
        for name in column_titles:
            s, size = fit_text(fig, name, cw * px, fontsize, max_lines=3)
            t = make(s, size, "bold")
            texts["column_titles"].append(t)
            heights.append(text_extent_inches(fig, t)[1])
        y += max(heights) + PAD
    axes: list[list[Axes | None]] = []
    layout: list[tuple[Axes, float, float, float, float]] = []  # axes and its rectangle from the top
    row_title_pos: list[float] = []
    caption_pos: list[tuple[Text, float, float]] = []
    for r, row in enumerate(rows):
        if row_titles is not None and row_titles[r]:
            s, size = fit_text(fig, row_titles[r].replace("\n", " \u2014 "), grid_w * px, fontsize, max_lines=1)
            t = make(s, size)
            texts["row_titles"].append(t)
            row_title_pos.append(y)
            y += text_extent_inches(fig, t)[1] + PAD
        heights = [min(max_aspect, p.picture.shape[0] / p.picture.shape[1]) * cw for p in row if p is not None]
        row_h = max(heights) if heights else 0.0
        align = "center" if row_align is None else row_align[r]
        row_axes: list[Axes | None] = []
        below = 0.0  # how far the lowest caption reaches under the row's pictures
        for c, panel in enumerate(row):
            if panel is None:
                row_axes.append(None)
                continue
            h, w = panel.picture.shape[:2]
            scale = min(cw / w, row_h / h)
            aw, ah = w * scale, h * scale
            left = x0 + c * (cw + GAP) + (cw - aw) / 2
            top = y + {"top": 0.0, "center": (row_h - ah) / 2, "bottom": row_h - ah}[align]
            ax = fig.add_axes((0, 0, 1, 1))
            layout.append((ax, left, top, aw, ah))
            ax.imshow(panel.picture, cmap="gray" if panel.picture.ndim == 2 else None, vmin=0, vmax=255,
                      aspect="auto", interpolation="antialiased")
            ax.set_axis_off()
            for mark in panel.boxes:
                draw_box(ax, mark)
            row_axes.append(ax)
            if panel.caption:  # right under its picture
                s, size = fit_text(fig, panel.caption, cw * px, fontsize, max_lines=3)
                t = make(s, size)
                texts["captions"].append(t)
                caption_pos.append((t, x0 + c * (cw + GAP) + cw / 2, top + ah + PAD))
                below = max(below, top + ah + PAD + text_extent_inches(fig, t)[1] - (y + row_h))
        y += row_h + below
        axes.append(row_axes)
        y += GAP
    footer_top = y
    y += footer_inches + MARGIN - (GAP if footer_inches == 0 else 0)
    height = math.ceil(y * dpi - 1e-6) / dpi  # whole pixels: the PNG is exactly size x dpi
    fig.set_size_inches(width, height)
    for ax, left, top, aw, ah in layout:
        ax.set_position((left / width, 1 - (top + ah) / height, aw / width, ah / height))
    if title:
        _place_text(fig, texts["title"][0], width / 2, MARGIN, "center")
    for c, t in enumerate(texts["column_titles"]):
        _place_text(fig, t, x0 + c * (cw + GAP) + cw / 2, col_y, "center")
    for t, top in zip(texts["row_titles"], row_title_pos):
        _place_text(fig, t, x0, top, "left")
    for t, x, top in caption_pos:
        _place_text(fig, t, x, top, "center")
    footer = ((MARGIN, height - footer_top - footer_inches, width - 2 * MARGIN, footer_inches)
              if footer_inches > 0 else None)
    return GridFigure(fig, axes, footer, texts)


def all_texts(fig: Figure) -> list[Text]:
    """Every visible, non-empty text drawn by these figures: the figure's texts, each axes'
    texts and titles, and legend texts (axis tick labels are not drawn: axes are off)."""
    found: list[Text] = list(fig.texts)
    for ax in fig.axes:
        found += list(ax.texts) + [ax.title, ax._left_title, ax._right_title]  # type: ignore[attr-defined]
        legend = ax.get_legend()
        if legend is not None:
            found += list(legend.get_texts())
    for legend in fig.legends:
        found += list(legend.get_texts())
    return [t for t in found if t.get_visible() and t.get_text().strip()]
