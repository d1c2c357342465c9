"""Figures: grid shapes, PNG sizes, labels that never overlap, titles inside the figure,
sweep plots with error bars. Pictures are scikit-image's demo photographs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
import yaml
from matplotlib.container import ErrorbarContainer
from PIL import Image

from wsol_bench.boxes import Box
from wsol_bench.figures import save_figure
from wsol_bench.figures.compare import compare_figure
from wsol_bench.figures.layout import (
    all_texts,
    fit_text,
    grey_map,
    masked_image,
    resize_nearest,
    seed_overlay,
)
from wsol_bench.figures.localisation import (
    COLOURS,
    Guess,
    localisation_figure,
    score_guesses,
)
from wsol_bench.figures.paper import (
    ImageMap,
    SegmentationRow,
    class_caption,
    paper_figure2,
    paper_figure3,
)

CAT = skimage.data.chelsea()  # 300 x 451
COFFEE = skimage.data.coffee()  # 400 x 600
ASTRONAUT = skimage.data.astronaut()[::2, ::2]  # 256 x 256


def _map(image: np.ndarray, seed: int = 0) -> np.ndarray:
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-(((xx - w / 2) / (w / 4)) ** 2 + ((yy - h / 2) / (h / 4)) ** 2))
    return (blob * np.random.default_rng(seed).random((h, w))).astype(np.float32)


def _saved(fig, path: Path) -> tuple[int, int]:
    """Save; check the PNG is figure size x dpi pixels; return its (width, height)."""
    save_figure(fig, path)
    with Image.open(path) as png:
        size = png.size
    expected = tuple(int(round(v * fig.dpi)) for v in fig.get_size_inches())
    assert size == expected
    return size


def _bands(intervals: list[tuple[float, float]]) -> int:
    """How many disjoint bands the union of ``intervals`` makes."""
    bands, end = 0, -np.inf
    for lo, hi in sorted(intervals):
        if lo >= end:
            bands += 1
        end = max(end, hi)
    return bands


def _grid_shape(fig) -> tuple[int, int]:
    """(rows, columns) of the figure's panels: bands of vertically / horizontally overlapping axes."""
    boxes = [ax.get_position() for ax in fig.axes]
    return _bands([(b.y0, b.y1) for b in boxes]), _bands([(b.x0, b.x1) for b in boxes])


def _assert_texts_disjoint_and_inside(fig) -> list:
    renderer = fig.canvas.get_renderer()
    texts = all_texts(fig)
    extents = [t.get_window_extent(renderer) for t in texts]
    for (ta, a), (tb, b) in itertools.combinations(zip(texts, extents), 2):
        assert not a.overlaps(b), f"{ta.get_text()!r} overlaps {tb.get_text()!r}"
    for t, e in zip(texts, extents):
        assert fig.bbox.x0 <= e.x0 and e.x1 <= fig.bbox.x1 and fig.bbox.y0 <= e.y0 and e.y1 <= fig.bbox.y1, \
            f"{t.get_text()!r} leaves the figure"
    return texts


# --- pictures ---------------------------------------------------------------------------------


def test_grey_map_scale_is_zero_to_percentile():
    m = np.linspace(0, 100, 101, dtype=np.float32).reshape(1, -1)
    grey = grey_map(m, percentile=50)
    assert grey[0, 0] == 0 and grey[0, 25] == 128 and (grey[0, 50:] == 255).all()
    assert grey_map(m, percentile=100)[0, -1] == 255 and grey_map(m, percentile=100)[0, 50] == 128
    odd = np.array([[np.nan, -1.0, 2.0, np.inf]])
    assert grey_map(odd, 100).tolist() == [[0, 0, 255, 0]]
    assert not grey_map(np.zeros((3, 3))).any()


def test_seeds_are_resized_nearest_and_painted():
    fg = np.zeros((2, 3), bool)
    fg[0, 0] = True
    bg = np.zeros((2, 3), bool)
    bg[1, 2] = True
    assert resize_nearest(fg, (4, 6))[:2, :2].all() and resize_nearest(fg, (4, 6)).sum() == 4
    image = np.full((4, 6, 3), 100, np.uint8)
    out = seed_overlay(image, fg, bg)
    assert out[0, 0, 0] > out[0, 0, 2] and out[3, 5, 2] > out[3, 5, 0]  # red object, blue background
    assert tuple(out[2, 0]) == (60, 60, 60)  # no seed: dimmed
    assert masked_image(image, fg)[0, 0, 0] == 100 and masked_image(image, fg)[3, 5].sum() == 0


def test_fit_text_wraps_then_shrinks_then_cuts():
    from wsol_bench.figures import new_figure
    from wsol_bench.figures.layout import text_size

    fig = new_figure(2, 2, 100)
    text, size = fit_text(fig, "a short title", 500, 10)
    assert (text, size) == ("a short title", 10)
    long = " ".join(["wordy"] * 200)
    text, size = fit_text(fig, long, 200, 10, max_lines=2, min_fontsize=6)
    lines = text.split("\n")
    assert size == 6 and len(lines) == 2 and lines[-1].endswith("\u2026")
    assert all(text_size(fig, line, size)[0] <= 200 for line in lines)


# --- the paper's figures --------------------------------------------------------------------------


def test_figure2_grid_of_images_over_maps(tmp_path):
    pictures = [CAT, COFFEE, ASTRONAUT, CAT[:, :200], COFFEE[:100]]
    items = [ImageMap(p, _map(p, i), class_caption(f"class {i}, with a rather long name", 10.0 + i))
             for i, p in enumerate(pictures)]
    fig = paper_figure2(items, columns=3, title="Figure 2")
    assert len(fig.axes) == 10  # an image and its map per item
    assert _grid_shape(fig) == (4, 3)  # two rows of images, two of maps; three columns
    _saved(fig, tmp_path / "figure2.png")
    texts = _assert_texts_disjoint_and_inside(fig)
    assert sum("logit" in t.get_text() for t in texts) == 5
    with pytest.raises(ValueError, match="maps' frame"):
        paper_figure2([ImageMap(CAT, np.zeros((10, 10)))])


def test_figure3_rows_of_five_panels(tmp_path):
    rows = []
    for i, image in enumerate((CAT, ASTRONAUT)):
        m = _map(image, i)
        h, w = m.shape
        small = m[::3, ::3]
        mask = m > np.quantile(m, 0.8)
        rows.append(SegmentationRow(image, m, (small >= np.quantile(small, 0.95), small <= np.quantile(small, 0.3)),
                                    mask, Box.from_mask(mask), class_caption("tabby cat", 12.0),
                                    (Box(10, 10, w // 2, h // 2),)))
    rows.append(SegmentationRow(COFFEE, _map(COFFEE), caption="no seeds, mask or box"))
    fig = paper_figure3(rows)
    assert len(fig.axes) == 5 + 5 + 2
    assert _grid_shape(fig) == (3, 5)
    _saved(fig, tmp_path / "figure3.png")
    _assert_texts_disjoint_and_inside(fig)
    assert len(fig.axes[4].patches) == 2  # ground truth and the box


# --- the per-image figure ---------------------------------------------------------------------------


def test_score_guesses_follows_the_devkit():
    gt = [Box(10, 10, 109, 109, "n1"), Box(200, 200, 219, 219, "n1")]
    guesses = score_guesses([Box(10, 10, 109, 109, "n1"), Box(10, 10, 109, 109, "n2"), Box(10, 10, 40, 40, "n1")],
                            gt, [3.0, 2.0, 1.0])
    assert [g.correct for g in guesses] == [True, False, False]
    assert [g.note for g in guesses] == ["", "wrong class", "IoU < 0.5"]
    # one IoU definition (per_image.csv's iou_same_class_k): a wrong class's box scores 0 wherever it is
    assert guesses[1].iou == 0.0 and guesses[2].iou == pytest.approx(0.0961, abs=1e-3)
    assert score_guesses([Box(0, 0, 1, 1, "n1")], [])[0].correct is None


def test_five_boxes_at_one_spot_have_disjoint_labels(tmp_path):
    names = {"n01": "tabby, tabby cat", "n02": "Egyptian cat", "n03": "tiger cat",
             "n04": "a very long class name, with many synonyms " * 3, "n05": "lynx"}
    gt = [Box(60, 20, 420, 290, "n01")]
    spot = Box(100, 40, 400, 280)
    guesses = score_guesses([spot.labelled(f"n0{k}") for k in range(1, 6)], gt, [14.0, 11.0, 9.5, 8.1, 7.7])
    title = "ILSVRC2012_val_00000001: ground truth tabby, tabby cat; " + "a title far too long for one line " * 6
    fig = localisation_figure(CAT, gt, guesses, names, _map(CAT), _map(CAT) > 0.3, title=title)
    assert len(fig.axes) == 3  # image, saliency map, mask
    _saved(fig, tmp_path / "loc.png")
    texts = _assert_texts_disjoint_and_inside(fig)
    shown = [t.get_text() for t in texts]
    markers = [t for t in fig.axes[0].texts]
    assert sorted(t.get_text() for t in markers) == ["1", "2", "3", "4", "5"]
    for name in ("tabby, tabby cat", "Egyptian cat", "tiger cat", "lynx"):
        assert shown.count(name) == (2 if name == "tabby, tabby cat" else 1)  # ground truth named like guesses
    assert not any("n01" in s for s in shown)
    assert {"ground truth", "correct guess", "wrong guess"} <= set(shown)
    # the title is wrapped within the figure
    title_text = next(t for t in texts if t.get_text().startswith("ILSVRC2012_val_00000001"))
    ext = title_text.get_window_extent(fig.canvas.get_renderer())
    assert fig.bbox.x0 <= ext.x0 and ext.x1 <= fig.bbox.x1 and ext.y1 <= fig.bbox.y1
    assert "\n" in title_text.get_text()
    # box colours follow the verdicts: one correct (blue), four wrong (red), ground truth green
    colours = [p.get_edgecolor() for p in fig.axes[0].patches]
    from matplotlib.colors import to_rgba

    assert colours.count(to_rgba(COLOURS["correct guess"])) == 1
    assert colours.count(to_rgba(COLOURS["wrong guess"])) == 4
    assert colours.count(to_rgba(COLOURS["ground truth"])) == 1


def test_many_boxes_keep_markers_apart_on_a_small_image(tmp_path):
    image = COFFEE[:40, :60]
    guesses = [Guess(Box(0, 0, 5, 5, f"n{k}"), float(k)) for k in range(12)]
    fig = localisation_figure(image, [], guesses, title="tiny")
    _saved(fig, tmp_path / "tiny.png")
    _assert_texts_disjoint_and_inside(fig)
    assert "guess (not scored)" in [t.get_text() for t in all_texts(fig)]


# --- comparison --------------------------------------------------------------------------------------


def test_compare_figure_grid(tmp_path):
    methods = ["gradient", "gradient x input", "Grad-CAM"]
    maps = [
        {"gradient": _map(CAT), "gradient x input": _map(CAT, 1), "Grad-CAM": np.random.rand(7, 7)},  # resized
        [_map(COFFEE), None, _map(COFFEE, 2)],  # a missing map
    ]
    fig = compare_figure([CAT, COFFEE], methods, maps, captions=["tabby cat", "espresso"])
    assert len(fig.axes) == 2 * 4 - 1
    assert _grid_shape(fig) == (2, 4)
    _saved(fig, tmp_path / "compare.png")
    texts = _assert_texts_disjoint_and_inside(fig)
    assert [t.get_text() for t in texts if t.get_text() in ("image", *methods)] == ["image", *methods]
    with pytest.raises(ValueError, match="maps for"):
        compare_figure([CAT], methods, [[_map(CAT)]])


# --- sweep plots and reports ----------------------------------------------------------------------------


def _fake_run(folder: Path, config: dict, overrides: list[str], top5: float | None, n: int = 200) -> Path:
    """A run folder as Hydra and the localisation report leave it (metrics.json's ``table``)."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if top5 is not None:
        table = {"top1_loc_error": top5 + 0.1, "top5_loc_error": top5, "gt_known_loc_error": top5 - 0.05,
                 "top1_loc_ci95": [top5 + 0.03, top5 + 0.17], "top5_loc_ci95": [top5 - 0.06, top5 + 0.07],
                 "gt_known_loc_ci95": [top5 - 0.11, top5 + 0.02]}
        (folder / "metrics.json").write_text(json.dumps({"table": table, "n_images": n, "n_failed": 0}))
    return folder


def _config(fg: float, method: str = "graphcut", sigma: float = 1.0) -> dict:
    return {"task": {"name": "localise"}, "segmentation": {"method": method, "fg_quantile": fg, "smooth_sigma": sigma},
            "dataset": {"limit": 50, "image_ids": None}, "model": {"mean": [0.5, 0.5, 0.5]}}


def test_interval_naming_rule_and_bounds():
    from wsol_bench.reports.sweep import (
        interval_bounds,
        interval_column,
        metric_columns,
    )

    assert interval_column("top5_loc_error") == "top5_loc_ci95"
    assert interval_column("gt_known_loc_error", ["gt_known_loc_ci95"]) == "gt_known_loc_ci95"
    assert interval_column("auc", ["auc_ci95"]) == "auc_ci95" and interval_column("auc", ["x"]) is None
    row = metric_columns({"table": {"top5_loc_error": 0.4, "top5_loc_ci95": [0.35, 0.46]}, "n_images": 3})
    assert row["top5_loc_ci95"] == "[0.350, 0.460]"
    assert (row["top5_loc_ci95_lo"], row["top5_loc_ci95_hi"]) == (0.35, 0.46)
    parsed = interval_bounds(pd.DataFrame({"top5_loc_error": [0.4, 0.5], "top5_loc_ci95": ["[0.35, 0.46]", None]}),
                             "top5_loc_error")
    assert parsed[0].tolist()[0] == 0.35 and parsed[1].tolist()[0] == 0.46 and np.isnan(parsed[0].tolist()[1])


def test_multirun_sweep_plot_has_error_bars(tmp_path):
    from wsol_bench.reports.sweep import collect_sweep, plot_sweep, swept_keys

    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    for j, (fg, method) in enumerate([(0.9, "graphcut"), (0.95, "graphcut"), (0.9, "grabcut"), (0.95, "grabcut")]):
        _fake_run(sweep / str(j), _config(fg, method),
                  [f"segmentation.fg_quantile={fg}", f"segmentation={method}"], 0.4 + 0.05 * j)
    _fake_run(sweep / "4", _config(0.99), ["segmentation.fg_quantile=0.99", "segmentation=graphcut"], None)
    table = collect_sweep(sweep)
    assert table.attrs["settings_from"] == "overrides"
    assert swept_keys(table) == ["segmentation.fg_quantile", "segmentation"]
    assert table["status"].tolist() == ["ok"] * 4 + ["no metrics.json"]
    fig = plot_sweep(table, "segmentation.fg_quantile", tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").is_file() and len(fig.axes) == 2
    for ax, metric in zip(fig.axes, ("top5_loc_error", "gt_known_loc_error")):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 2  # one line per method
        assert ax.get_ylabel() == metric
        caps = bars[0].lines[2][0].get_segments()  # the vertical bars of the first line: its two runs
        done = table[(table.status == "ok") & (table["segmentation"] == bars[0].get_label().split("=")[1])]
        lo = done[interval_of(metric) + "_lo"].tolist()
        assert sorted(round(s[0][1], 6) for s in caps) == sorted(round(v, 6) for v in lo)


def interval_of(metric: str) -> str:
    from wsol_bench.reports.sweep import interval_column

    return interval_column(metric)


def test_single_runs_show_their_differing_settings(tmp_path):
    from wsol_bench.reports.sweep import collect_sweep, swept_keys

    runs = tmp_path / "localise"
    _fake_run(runs / "2024-01-01_10-00-00", _config(0.9), [], 0.4)
    _fake_run(runs / "2024-01-01_11-00-00", _config(0.95, sigma=2.0), ["segmentation.fg_quantile=0.95"], 0.45)
    _fake_run(runs / "2024-01-01_12-00-00", _config(0.95, "grabcut", sigma=2.0), ["segmentation=grabcut"], 0.5)
    table = collect_sweep(runs)
    assert table.attrs["settings_from"] == "config"
    assert swept_keys(table) == ["segmentation.method", "segmentation.fg_quantile", "segmentation.smooth_sigma"]
    assert table["segmentation.fg_quantile"].tolist() == [0.9, 0.95, 0.95]
    assert "dataset.limit" not in table.columns  # the same in every run
    both = collect_sweep([runs / "2024-01-01_10-00-00", runs / "2024-01-01_12-00-00"])
    assert both["job"].tolist() == ["2024-01-01_10-00-00", "2024-01-01_12-00-00"]
    assert swept_keys(both) == ["segmentation.method", "segmentation.fg_quantile", "segmentation.smooth_sigma"]
    assert collect_sweep([runs / "2024-01-01_10-00-00"])["job"].tolist() == ["2024-01-01_10-00-00"]


def test_sweep_report_task_takes_a_list_of_runs(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from wsol_bench.tasks import sweep_report

    a = _fake_run(tmp_path / "a" / "2024-01-01_10-00-00", _config(0.9), [], 0.4)
    b = _fake_run(tmp_path / "b" / "2024-01-02_10-00-00", _config(0.95), [], 0.45)
    monkeypatch.chdir(tmp_path)
    assert sweep_report.run(OmegaConf.create({"sweep": {"dirs": [str(a), str(b)], "dir": None, "x": None}})) == 2
    out = tmp_path / "outputs" / "sweep_report"
    table = pd.read_csv(out / "sweep.csv")
    assert table["segmentation.fg_quantile"].tolist() == [0.9, 0.95]
    assert table["job"].tolist() == ["a/2024-01-01_10-00-00", "b/2024-01-02_10-00-00"]
    assert (out / "sweep.png").is_file()
    markdown = (out / "sweep.md").read_text()
    assert "top5_loc_ci95" in markdown and "_ci95_lo" not in markdown
    with pytest.raises(ValueError, match="not both"):
        sweep_report.run(OmegaConf.create({"sweep": {"dirs": [str(a)], "dir": str(a)}}))


def test_saliency_figure_of_an_image_has_one_panel_per_class(tmp_path):
    from wsol_bench.figures.saliency import save_saliency_figure
    from wsol_bench.saliency import SaliencyResult

    maps = np.random.rand(3, 150, 225).astype(np.float32)
    result = SaliencyResult(np.arange(5, dtype=np.float32), np.array([4, 3, 2]), maps)
    names = ["a", "b", "c, a long name with synonyms " * 3, "d", "tabby cat"]
    path = save_saliency_figure(tmp_path / "s.png", CAT, result, names)  # maps in a smaller frame: resized
    with Image.open(path) as png:
        width, height = png.size
    assert width == 4 * 260 + 3 * 10 + 2 * 10 and height > 150


# --- readable maps, colour-blind-safe boxes ---------------------------------------------------------


def test_saliency_strip_of_a_map_with_one_bright_pixel_still_shows_the_rest(tmp_path):
    from wsol_bench.figures.saliency import saliency_figure
    from wsol_bench.saliency import SaliencyResult

    rng = np.random.default_rng(0)
    maps = rng.random((2, 150, 225)).astype(np.float32) * 1e-3  # a gradient map's tiny values ...
    maps[:, 70, 100] = 1.0  # ... and one pixel a thousand times brighter
    result = SaliencyResult(np.arange(5, dtype=np.float32), np.array([4, 3]), maps)
    fig = saliency_figure(CAT[::2, ::2], result, ["a", "b", "c", "d", "e"])
    for ax in fig.axes[1:]:
        panel = np.asarray(ax.images[0].get_array(), dtype=float)
        assert panel.ndim == 3, "a colour map, not grey"
        luminance = panel[..., :3] @ [0.2126, 0.7152, 0.0722]
        assert np.median(luminance) > 50  # the median pixel is not black (0 before: the map scaled to its max)
        assert luminance.max() > 200 and luminance.min() < 20  # the full range of the colour map is used
    shown = " ".join(t.get_text() for t in all_texts(fig))
    assert "99th percentile" in shown
    _saved(fig, tmp_path / "strip.png")
    _assert_texts_disjoint_and_inside(fig)


def test_boxes_use_one_colour_blind_safe_palette_with_distinct_line_styles(tmp_path):
    from matplotlib.colors import to_rgba

    from wsol_bench.figures import paper
    from wsol_bench.figures.layout import SEED_COLOURS
    from wsol_bench.figures.palette import BOX_STYLES, OKABE_ITO, SERIES_COLOURS

    okabe_ito = {to_rgba(c) for c in OKABE_ITO.values()}
    assert len(OKABE_ITO) == 8 and to_rgba("#E69F00") in okabe_ito and to_rgba("#0072B2") in okabe_ito
    assert {to_rgba(s.colour) for s in BOX_STYLES.values()} <= okabe_ito
    assert len({s.colour for s in BOX_STYLES.values()}) == len(BOX_STYLES)
    assert len({str(s.linestyle) for s in BOX_STYLES.values()}) == len(BOX_STYLES)  # never by hue alone
    assert {to_rgba(c) for c in SERIES_COLOURS} <= okabe_ito
    assert COLOURS == {kind: style.colour for kind, style in BOX_STYLES.items()}
    assert {tuple(np.array(to_rgba(OKABE_ITO[n])[:3]) * 255) for n in ("vermillion", "sky blue")} == \
        {tuple(map(float, c)) for c in SEED_COLOURS.values()}

    # the localisation figure draws each kind of box in its colour and line style
    gt = [Box(60, 20, 420, 290, "n01")]
    guesses = score_guesses([Box(60, 20, 420, 290, "n01"), Box(0, 0, 50, 50, "n02")], gt, [2.0, 1.0])
    fig = localisation_figure(CAT, gt, guesses)
    drawn = {(to_rgba(p.get_edgecolor()), p.get_linestyle()) for p in fig.axes[0].patches}
    from matplotlib.patches import Rectangle

    def style_of(kind):
        probe = Rectangle((0, 0), 1, 1, ec=BOX_STYLES[kind].colour, ls=BOX_STYLES[kind].linestyle)
        return to_rgba(probe.get_edgecolor()), probe.get_linestyle()

    assert drawn == {style_of("ground truth"), style_of("correct guess"), style_of("wrong guess")}
    # the paper's Figure 3 box and ground truth alike
    row = SegmentationRow(CAT, _map(CAT), box=Box(10, 10, 200, 200), ground_truth=(gt[0],))
    fig3 = paper.paper_figure3([row])
    drawn3 = {(to_rgba(p.get_edgecolor()), p.get_linestyle()) for ax in fig3.axes for p in ax.patches}
    assert drawn3 == {style_of("ground truth"), style_of("guess (not scored)")}


def test_sweep_lines_use_the_palette(tmp_path):
    from matplotlib.colors import to_rgba

    from wsol_bench.figures.palette import SERIES_COLOURS
    from wsol_bench.reports.sweep import collect_sweep, plot_sweep

    sweep = tmp_path / "multirun"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("{}")
    for j, (fg, method) in enumerate([(0.9, "graphcut"), (0.95, "graphcut"), (0.9, "grabcut"), (0.95, "grabcut")]):
        _fake_run(sweep / str(j), _config(fg, method), [f"segmentation.fg_quantile={fg}", f"segmentation={method}"],
                  0.4 + 0.05 * j)
    fig = plot_sweep(collect_sweep(sweep), "segmentation.fg_quantile", tmp_path / "sweep.png")
    colours = [to_rgba(c.lines[0].get_color()) for c in fig.axes[0].containers]
    assert colours == [to_rgba(c) for c in SERIES_COLOURS[:2]]
