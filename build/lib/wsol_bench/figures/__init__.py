"""Figures (matplotlib's object API on the Agg canvas: no pyplot, no global backend switch).

:mod:`~wsol_bench.figures.localisation` (image, boxes, map, mask), :mod:`~wsol_bench.figures.saliency`
(an image's class maps), :mod:`~wsol_bench.figures.grid` (class model grids); the sweep plot
lives with the sweep report.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure of ``width x height`` inches on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int | None = None) -> Path:
    """Write ``fig`` as a PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path
