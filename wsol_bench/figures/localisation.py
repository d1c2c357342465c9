"""The per-image figure of a localisation run: the image with its boxes, the top-1 saliency
map and object mask, a colour legend and a table of the ground truth and every guess.

No label is written over the picture: a box carries at most its rank in a small marker,
markers are placed so that none overlaps another (or they are left out), and names,
scores and IoUs are in the table under the panels, one line each. Ground truth and guesses
are named alike, through one ``names`` lookup (:data:`~wsol_bench.figures.layout.NameLookup`).

Frames: ``image`` is the frame of ``ground_truth`` and of the guesses' boxes (normally the
original image); ``saliency`` and ``mask`` may be in another frame of the image (the
resized one): each is drawn in its own panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from wsol_bench.boxes import Box
from wsol_bench.figures import new_figure, save_figure
from wsol_bench.figures.layout import (
    GAP,
    MARGIN,
    BoxMark,
    NameLookup,
    Panel,
    check_image,
    class_name,
    draw_box,
    grey_map,
    panel_grid,
    text_size,
    truncate,
)
from wsol_bench.figures.palette import BOX_STYLES, text_colour_on

COLOURS = {kind: style.colour for kind, style in BOX_STYLES.items()}  # the palette's, by legend entry
MIN_WIDTH = 6.5  # inches: room for the legend and the table under a single panel
MARKER_FONTSIZE = 7.0
MARKER_PAD = 1.5  # points of coloured margin around a rank marker's digits


@dataclass(frozen=True)
class Guess:
    """One guess, best first in a list (its rank is its position + 1).

    ``box``: in the image's frame, ``box.synset`` the guessed class (WNID). ``score``: the
    class's score (logit), or ``None``. ``iou``: its best IoU with a ground-truth box of its class (0: none)
    (``None``: not computed). ``correct``: the devkit's verdict (right class and IoU >= the
    threshold with a box of that class), ``None`` when not scored. ``note``: why it is
    wrong (shown in the table).
    """

    box: Box
    score: float | None = None
    iou: float | None = None
    correct: bool | None = None
    note: str = ""

    @property
    def kind(self) -> str:
        """Its legend entry: ``'correct guess'``, ``'wrong guess'`` or ``'guess (not scored)'``."""
        return {True: "correct guess", False: "wrong guess", None: "guess (not scored)"}[self.correct]


def score_guesses(
    boxes: Sequence[Box], ground_truth: Sequence[Box], scores: Sequence[float] | None = None,
    iou_threshold: float = 0.5,
) -> list[Guess]:
    """Guesses (``boxes`` best first, each with its ``synset``) judged as the ILSVRC devkit does:
    correct when some ground-truth box of the same class has IoU >= ``iou_threshold``
    (inclusive pixels). ``iou`` is the devkit's, the same as ``per_image.csv``'s ``iou_same_class_k``:
    the best IoU with a ground-truth box of the guess's class, 0 when the image has none
    (the verdict then says "wrong class"). Without ground truth: not scored."""
    if scores is not None and len(scores) != len(boxes):
        raise ValueError(f"{len(scores)} scores for {len(boxes)} boxes")
    guesses = []
    for k, box in enumerate(boxes):
        score = None if scores is None else float(scores[k])
        if not ground_truth:
            guesses.append(Guess(box, score))
            continue
        same = [box.iou(g) for g in ground_truth if g.synset == box.synset]
        iou = max(same, default=0.0)
        if not same:
            guesses.append(Guess(box, score, iou, False, "wrong class"))
        elif max(same) >= iou_threshold:
            guesses.append(Guess(box, score, iou, True))
        else:
            guesses.append(Guess(box, score, iou, False, f"IoU < {iou_threshold:g}"))
    return guesses


def _rect_overlaps(a: Bbox, b: Bbox, gap: float = 1.0) -> bool:
    return a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.y0 < b.y1 + gap and b.y0 < a.y1 + gap


def place_rank_markers(ax: Axes, guesses: Sequence[Guess], fontsize: float = MARKER_FONTSIZE) -> list[Text]:
    """Draw each guess's rank in a small marker of its colour at a corner of its box, or the
    nearest free place along the box's edges, then anywhere on the image; a marker that
    finds no place is left out (the table still lists the guess). Markers never overlap
    each other (checked on their outer rectangles in display pixels) and stay on the image.
    Call once the axes have their final position."""
    fig = ax.get_figure()
    assert isinstance(fig, Figure)
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # an Agg canvas
    area = ax.get_window_extent(renderer)
    pad = MARKER_PAD * fig.dpi / 72.0
    placed: list[Bbox] = []
    markers: list[Text] = []
    for rank, guess in enumerate(guesses, start=1):
        tw, th = text_size(fig, str(rank), fontsize, "bold")
        mw, mh = tw + 2 * pad, th + 2 * pad
        if mw > area.width or mh > area.height:
            continue
        b = guess.box
        (bx0, by0), (bx1, by1) = ax.transData.transform([(b.xmin - 0.5, b.ymax + 0.5), (b.xmax + 0.5, b.ymin - 0.5)])
        bx0, bx1 = sorted((bx0, bx1))
        by0, by1 = sorted((by0, by1))  # display y grows upwards
        step_x, step_y = mw + 2, mh + 2
        candidates = [(bx0 + 1, by1 - mh - 1), (bx1 - mw - 1, by1 - mh - 1),
                      (bx0 + 1, by0 + 1), (bx1 - mw - 1, by0 + 1)]
        candidates += [(bx0 + 1 + k * step_x, by1 - mh - 1) for k in range(1, int((bx1 - bx0) // step_x) + 1)]
        candidates += [(bx0 + 1, by1 - mh - 1 - k * step_y) for k in range(1, int((by1 - by0) // step_y) + 1)]
        candidates += [(bx0 + k * step_x, by1 + 1) for k in range(0, int((bx1 - bx0) // step_x) + 1)]  # above the box
        candidates += [(area.x0 + i * step_x, area.y1 - mh - j * step_y)
                       for j in range(int(area.height // step_y)) for i in range(int(area.width // step_x))]
        for cx, cy in candidates:
            cx = min(max(cx, area.x0), area.x1 - mw)
            cy = min(max(cy, area.y0), area.y1 - mh)
            rect = Bbox.from_bounds(cx, cy, mw, mh)
            if not any(_rect_overlaps(rect, p) for p in placed):
                break
        else:
            continue
        placed.append(rect)
        x, y = ax.transData.inverted().transform((cx + mw / 2, cy + mh / 2))
        markers.append(ax.text(
            x, y, str(rank), fontsize=fontsize, fontweight="bold", color=text_colour_on(COLOURS[guess.kind]),
            ha="center", va="center",
            bbox=dict(boxstyle=f"square,pad={MARKER_PAD / fontsize:.3f}", fc=COLOURS[guess.kind], ec="none"),
        ))
    return markers


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None or not np.isfinite(value) else format(value, spec)


def _table_rows(ground_truth: Sequence[Box], guesses: Sequence[Guess],
                names: NameLookup) -> list[tuple[str, list[str]]]:
    """``(legend entry, [rank, class, score, IoU, verdict])`` per line: ground-truth classes, then guesses."""
    rows = []
    counts: dict[str | None, int] = {}
    for b in ground_truth:
        counts[b.synset] = counts.get(b.synset, 0) + 1
    for synset, n in counts.items():
        label = class_name(names, synset) + (f" ({n} boxes)" if n > 1 else "")
        rows.append(("ground truth", ["GT", label, "", "", ""]))
    for rank, g in enumerate(guesses, start=1):
        verdict = {True: "\u2713 correct", False: "\u2717 " + (g.note or "wrong"), None: ""}[g.correct]
        cells = [str(rank), class_name(names, g.box.synset), _fmt(g.score, ".2f"), _fmt(g.iou, ".2f"), verdict]
        rows.append((g.kind, cells))
    return rows


HEADER = ["#", "class", "logit", "IoU (same class)", "verdict"]


def _draw_swatch(fig: Figure, x: float, y: float, kind: str, length: float = 0.28) -> None:
    style = BOX_STYLES[kind]
    fig.add_artist(Line2D([x, x + length], [y, y], transform=fig.dpi_scale_trans, color=style.colour,
                          lw=2.5, ls=style.linestyle))


SWATCH = 0.28  # inches of line in a legend or table swatch


def _legend_lines(fig: Figure, kinds: Sequence[str], width: float, fontsize: float) -> list[list[tuple[str, float]]]:
    """Legend entries as lines of ``(kind, x offset in inches)`` that fit ``width`` inches."""
    lines: list[list[tuple[str, float]]] = [[]]
    x = 0.0
    for kind in kinds:
        w = SWATCH + 0.05 + text_size(fig, kind, fontsize)[0] / fig.dpi
        if lines[-1] and x + w > width:
            lines.append([])
            x = 0.0
        lines[-1].append((kind, x))
        x += w + 0.3
    return lines


def _draw_footer(fig: Figure, footer: tuple[float, float, float, float], rows: list[tuple[str, list[str]]],
                 legend: list[list[tuple[str, float]]], fontsize: float, pitch: float) -> None:
    """The legend lines, then the table (header and rows), left-aligned in ``footer`` (inches)."""
    left, bottom, width, height = footer
    dpi = fig.dpi
    swatch, gap = SWATCH, 0.12
    line_y = [bottom + height - (i + 0.5) * pitch for i in range(len(legend) + 1 + len(rows))]
    for i, entries in enumerate(legend):
        for kind, x in entries:
            _draw_swatch(fig, left + x, line_y[i], kind, swatch)
            fig.text(left + x + swatch + 0.05, line_y[i], kind, fontsize=fontsize, va="center", ha="left",
                     transform=fig.dpi_scale_trans)
    line_y = line_y[len(legend):]
    # table: measured columns; the class column takes what is left and names are cut to it
    cells = [HEADER] + [cells for _, cells in rows]
    widths = [max(text_size(fig, row[c], fontsize, "bold" if r == 0 else "normal")[0]
                  for r, row in enumerate(cells)) / dpi for c in range(len(HEADER))]
    fixed = swatch + gap + sum(w for c, w in enumerate(widths) if c != 1) + gap * (len(HEADER) - 1)
    widths[1] = max(0.3, min(widths[1], width - fixed))
    xs = [left + swatch + gap]
    for w in widths[:-1]:
        xs.append(xs[-1] + w + gap)
    for r, row in enumerate(cells):
        y = line_y[r]
        if r > 0:
            _draw_swatch(fig, left, y, rows[r - 1][0], swatch)
        for c, value in enumerate(row):
            weight = "bold" if r == 0 else "normal"
            value = truncate(fig, value, widths[c] * dpi, fontsize, weight) if c == 1 else value
            if value:
                numeric = c in (2, 3)
                fig.text(xs[c] + (widths[c] if numeric else 0), y, value, fontsize=fontsize, fontweight=weight,
                         va="center", ha="right" if numeric else "left", transform=fig.dpi_scale_trans)


def localisation_figure(
    image: np.ndarray,
    ground_truth: Sequence[Box],
    guesses: Sequence[Guess],
    names: NameLookup = None,
    saliency: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    title: str = "",
    percentile: float = 99.0,
    panel_inches: float = 3.0,
    fontsize: float = 8.0,
    dpi: int = 100,
) -> Figure:
    """The per-image figure.

    ``image``: ``H x W x 3`` uint8 RGB, the frame of ``ground_truth`` (boxes with their
    ``synset``) and of the ``guesses`` (best first; see :func:`score_guesses`).
    ``saliency``: the top-1 guess's map (any frame; grey, black 0, white its
    ``percentile``-th percentile). ``mask``: its object mask (bool, any frame). Ground
    truth is drawn dashed green, guesses blue when correct, red when wrong (orange when
    not scored), the top-1 thicker. ``title`` is wrapped (then shrunk) to the figure's width.
    """
    image = check_image(image)
    panels: list[Panel | None] = [Panel(image)]
    top1 = class_name(names, guesses[0].box.synset) if guesses else None
    column_titles = ["image: ground truth and guesses"]
    if saliency is not None:
        panels.append(Panel(grey_map(saliency, percentile)))
        column_titles.append(f"saliency map of guess 1 ({top1})" if top1 else "saliency map")
    if mask is not None:
        panels.append(Panel(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8)))
        column_titles.append(f"object mask of guess 1 ({top1})" if top1 else "object mask")
    rows = _table_rows(ground_truth, guesses, names)
    kinds = [k for k in COLOURS if k != "guess (not scored)" or any(g.correct is None for g in guesses)]
    n = len(panels)
    width = max(MIN_WIDTH, n * panel_inches + (n - 1) * GAP + 2 * MARGIN)  # panel_grid's width
    legend = _legend_lines(new_figure(1, 1, dpi), kinds, width - 2 * MARGIN, fontsize)
    pitch = fontsize * 1.6 / 72.0
    footer_inches = pitch * (len(legend) + 1 + len(rows)) + 0.05
    grid = panel_grid([panels], column_titles=column_titles, title=title or None, cell_inches=panel_inches,
                      dpi=dpi, fontsize=fontsize, footer_inches=footer_inches, min_width_inches=MIN_WIDTH)
    fig, ax = grid.figure, grid.axes[0][0]
    assert ax is not None
    for b in ground_truth:
        draw_box(ax, BoxMark(b, COLOURS["ground truth"], 2.0, BOX_STYLES["ground truth"].linestyle))
    for rank in range(len(guesses), 0, -1):  # the top-1 drawn last, on top
        g = guesses[rank - 1]
        draw_box(ax, BoxMark(g.box, COLOURS[g.kind], 2.5 if rank == 1 else 1.5, BOX_STYLES[g.kind].linestyle))
    place_rank_markers(ax, guesses)
    assert grid.footer is not None
    _draw_footer(fig, grid.footer, rows, legend, fontsize, pitch)
    return fig


def save_localisation_figure(path: str | Path, image: np.ndarray, ground_truth: Sequence[Box],
                             guesses: Sequence[Guess], **kwargs) -> Path:
    """:func:`localisation_figure` written as a PNG at ``path`` (``figure size x dpi`` pixels)."""
    return save_figure(localisation_figure(image, ground_truth, guesses, **kwargs), path)


__all__ = ["COLOURS", "Guess", "localisation_figure", "place_rank_markers", "save_localisation_figure",
           "score_guesses"]
