"""Figures of the model-parameter randomisation test (Adebayo et al., "Sanity checks for
saliency maps", NeurIPS 2018, their Figures 2 and 4).

* :func:`sanity_figure`: one row per saliency method, one column per model: the trained
  model's map, then the map after each randomisation stage (from the logits down; for the
  cascading test, column ``k`` has stages ``0 .. k`` re-initialised); the input image on the
  far left of the first row. Each map is grey on its own scale, black 0 and white its 99th
  percentile (:func:`wsol_bench.figures.layout.grey_map`), as the paper shows each map
  normalised on its own; maps in another frame are resized to the image
  (:func:`wsol_bench.frames.resize_to`).
* :func:`similarity_figure`: one panel per similarity measure (e.g. Spearman rank
  correlation and SSIM, :mod:`wsol_bench.metrics.similarity`) against the stages, one line
  per method: the mean over images of the similarity between the trained model's map and
  the randomised one, shaded one standard deviation either side (NaN entries ignored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from wsol_bench.figures import new_figure
from wsol_bench.figures.layout import Panel, check_image, grey_map, panel_grid
from wsol_bench.frames import resize_to


def sanity_figure(
    image: np.ndarray,
    maps: Mapping[str, Sequence[np.ndarray]],
    stage_names: Sequence[str],
    trained_label: str = "trained",
    percentile: float = 99.0,
    cell_inches: float = 1.4,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Rows of maps per method: ``maps[method]`` holds ``1 + len(stage_names)`` ``(H', W')``
    maps, the trained model's then one per stage; columns are titled ``image``,
    ``trained_label`` and the stage names. The figure has ``1 + len(maps) * (1 +
    len(stage_names))`` panels."""
    image = check_image(image)
    if not maps:
        raise ValueError("sanity_figure needs the maps of at least one method")
    n = 1 + len(stage_names)
    rows: list[list[Panel | None]] = []
    for r, (method, method_maps) in enumerate(maps.items()):
        if len(method_maps) != n:
            raise ValueError(f"method {method!r}: {len(method_maps)} maps for the trained model and "
                             f"{len(stage_names)} stages (expected {n})")
        row: list[Panel | None] = [Panel(image) if r == 0 else None]
        for k, m in enumerate(method_maps):
            m = np.asarray(m, dtype=np.float32)
            if m.ndim != 2:
                raise ValueError(f"method {method!r}, map {k}: a map must be 2-D, got shape {m.shape}")
            row.append(Panel(grey_map(resize_to(m, image.shape[:2]), percentile)))
        rows.append(row)
    return panel_grid(rows, column_titles=["image", trained_label, *stage_names], row_titles=list(maps),
                      title=title, cell_inches=cell_inches, dpi=dpi).figure


def similarity_figure(
    stage_names: Sequence[str],
    similarities: Mapping[str, Mapping[str, np.ndarray]],
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """One panel per measure: ``similarities[measure][method]`` is an ``(images, stages)``
    array (a 1-D array is one image); x is the stage (from the logits down), y the measure.
    Lines: the mean over images (NaN ignored); shading: mean +- one standard deviation."""
    if not similarities:
        raise ValueError("similarity_figure needs at least one measure")
    s = len(stage_names)
    fig = new_figure(max(4.0, 0.35 * s + 2.0) * len(similarities), 3.8, dpi)
    axes = fig.subplots(1, len(similarities), squeeze=False)[0]
    x = np.arange(s)
    for ax, (measure, by_method) in zip(axes, similarities.items()):
        for method, values in by_method.items():
            v = np.atleast_2d(np.asarray(values, dtype=np.float64))
            if v.shape[1] != s:
                raise ValueError(f"{measure}, method {method!r}: {v.shape[1]} values per image for {s} stages")
            valid = np.isfinite(v).sum(axis=0)
            mean = np.divide(np.nansum(v, axis=0), valid, out=np.full(s, np.nan), where=valid > 0)
            spread = np.sqrt(np.divide(np.nansum((v - mean) ** 2, axis=0), valid, out=np.full(s, np.nan),
                                       where=valid > 0))
            (line,) = ax.plot(x, mean, marker="o", markersize=3, label=method)
            ax.fill_between(x, mean - spread, mean + spread, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xticks(x, list(stage_names), rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("randomised up to (logits first)")
        ax.set_ylabel(measure)
        ax.axhline(0.0, color="grey", linewidth=0.6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


__all__ = ["sanity_figure", "similarity_figure"]
