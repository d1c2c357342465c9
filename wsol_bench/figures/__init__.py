"""Figures (matplotlib's object API on the Agg canvas: no pyplot, no global backend switch).

:mod:`~wsol_bench.figures.localisation` (per image: boxes, map, mask, legend and a table of the
guesses), :mod:`~wsol_bench.figures.paper` (the paper's Figures 2 and 3),
:mod:`~wsol_bench.figures.compare` (saliency methods side by side),
:mod:`~wsol_bench.figures.saliency` (an image's class maps), :mod:`~wsol_bench.figures.grid`
(class model grids); :mod:`~wsol_bench.figures.layout` lays them out by measuring their text
(see there for the conventions); :mod:`~wsol_bench.figures.palette` holds the one
colour-blind-safe palette (Okabe-Ito) and the line style of each kind of box. The sweep
plot lives with the sweep report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(width: float, height: float, dpi: int = 100,
               layout: Literal["constrained", "compressed", "tight"] | None = None) -> Figure:
    """A figure of ``width x height`` inches on its own Agg canvas; ``layout``: matplotlib's (``"constrained"``)."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int | None = None, tight: bool = False) -> Path:
    """Write ``fig`` as a PNG, creating the folder. ``tight``: crop (or grow) the picture to
    every artist, e.g. a legend placed outside the figure (``bbox_inches="tight"``); the PNG
    is then not ``figsize x dpi`` pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi, bbox_inches="tight" if tight else None, pad_inches=0.1)
    return path
