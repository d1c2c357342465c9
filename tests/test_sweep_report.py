"""Sweep reports compare runs by the settings that change results, and plot them legibly."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import yaml
from PIL import Image

from wsol_bench.reports.sweep import (
    BOOKKEEPING_KEYS,
    collect_sweep,
    default_x,
    is_bookkeeping,
    plot_sweep,
    swept_keys,
)


def _run(folder: Path, config: dict, overrides: list[str], top5: float | None = 0.4) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if top5 is not None:
        table = {"top5_loc_error": top5, "gt_known_loc_error": top5 - 0.05,
                 "top5_loc_ci95": [top5 - 0.06, top5 + 0.07], "gt_known_loc_ci95": [top5 - 0.11, top5 + 0.02]}
        (folder / "metrics.json").write_text(json.dumps({"table": table, "n_images": 50, "n_failed": 0}))
    return folder


def _config(n: int, limit: int, fg: float, method: str = "graphcut") -> dict:
    """A run's config in which every bookkeeping key differs from run to run."""
    return {
        "task": {"name": "localise"},
        "dataset": {"limit": limit, "num_workers": n, "demo_dir": f"d{n}"},
        "saliency": {"method": "gradient", "cache": n % 2 == 0, "cache_dir": f"c{n}", "batch_images": n + 1},
        "segmentation": {"method": method, "fg_quantile": fg, "workers": n},
        "run": {"figures": n, "save_maps": n % 2 == 0, "progress": n % 2 == 1, "resume": n % 2 == 0,
                "processes": str(n)},
        "engine": {"prefetch": n},
    }


def test_bookkeeping_keys_are_one_documented_list():
    for key in ("run.figures", "run.save_maps", "run.progress", "run.resume", "run.processes", "engine.cache",
                "engine.cache_dir", "engine.batch_images", "engine.segmentation_workers", "engine.loader_workers",
                "hydra.run.dir", "hydra/launcher", "engine.anything.at_all"):
        assert is_bookkeeping(key), key
    for key in ("dataset.limit", "segmentation.fg_quantile", "saliency.method", "segmentation", "model.name",
                "saliency.cache_size_of_something_else", "runner.figures"):
        assert not is_bookkeeping(key), key
    assert "engine.*" in BOOKKEEPING_KEYS and "hydra.*" in BOOKKEEPING_KEYS


def test_runs_are_compared_by_the_settings_that_change_results(tmp_path):
    runs = tmp_path / "localise"
    for n, (limit, fg) in enumerate([(10, 0.9), (20, 0.9), (10, 0.95)]):
        _run(runs / f"2024-01-0{n + 1}_10-00-00", _config(n, limit, fg), [])
    table = collect_sweep(runs)
    assert swept_keys(table) == ["dataset.limit", "segmentation.fg_quantile"]
    assert not any(is_bookkeeping(c) for c in table.columns)
    assert default_x(table) == "segmentation.fg_quantile"  # a method's numeric setting before the data's size

    multirun = tmp_path / "multirun"
    multirun.mkdir()
    (multirun / "multirun.yaml").write_text("{}")
    for n, (limit, fg) in enumerate([(10, 0.9), (20, 0.95)]):
        _run(multirun / str(n), _config(n, limit, fg),
             [f"dataset.limit={limit}", f"run.figures={n}", f"hydra.run.dir=x{n}", f"engine.segmentation_workers={n}",
              f"segmentation.fg_quantile={fg}", "hydra/launcher=slurm"])
    table = collect_sweep(multirun)
    assert swept_keys(table) == ["dataset.limit", "segmentation.fg_quantile"]
    assert default_x(table) == "segmentation.fg_quantile"


def test_default_x_prefers_numeric_method_settings_then_any_method_setting_then_the_data(tmp_path):
    def table_of(configs):
        folder = tmp_path / f"set{len(list(tmp_path.iterdir()))}"
        for n, config in enumerate(configs):
            _run(folder / f"2024-01-0{n + 1}_10-00-00", config, [])
        return collect_sweep(folder)

    methods = [_config(0, 10, 0.9, "graphcut"), _config(1, 20, 0.9, "grabcut"), _config(2, 10, 0.95, "grabcut")]
    assert default_x(table_of(methods)) == "segmentation.fg_quantile"
    only_method = [_config(0, 10, 0.9, "graphcut"), _config(1, 20, 0.9, "grabcut")]
    assert default_x(table_of(only_method)) == "segmentation.method"
    only_limit = [_config(0, 10, 0.9), _config(1, 20, 0.9)]
    assert default_x(table_of(only_limit)) == "dataset.limit"
    assert default_x(table_of([_config(0, 10, 0.9), _config(1, 10, 0.9)])) is None  # bookkeeping only


def test_sweep_plot_legend_is_outside_the_axes_never_clipped_and_no_warning_is_printed(tmp_path):
    multirun = tmp_path / "multirun"
    multirun.mkdir()
    (multirun / "multirun.yaml").write_text("{}")
    jobs = [(fg, method, sigma) for fg in (0.8, 0.9, 0.95) for method in ("graphcut", "grabcut_with_a_long_name")
            for sigma in (0, 4, 8)]
    for n, (fg, method, sigma) in enumerate(jobs):
        _run(multirun / str(n), {}, [f"segmentation.fg_quantile={fg}", f"segmentation={method}",
                                     f"segmentation.smooth_sigma_of_the_saliency_map={sigma}"], 0.3 + 0.01 * n)
    table = collect_sweep(multirun)
    path = tmp_path / "sweep.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = plot_sweep(table, default_x(table), path)
    [legend] = fig.legends
    renderer = fig.canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    assert len(legend.get_texts()) == 6
    assert all("segmentation=grabcut_with_a_long_name" in t.get_text() or "segmentation=graphcut" in t.get_text()
               for t in legend.get_texts())
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent(renderer)), "the legend covers a panel"
    with Image.open(path) as png:
        width, height = png.size
    union = box.union([box, *(ax.get_tightbbox(renderer) for ax in fig.axes)])
    assert width >= union.width and height >= union.height  # the saved picture holds legend and panels
