"""What the reports show of each metric: its ``report.md`` section, its sweep-table columns and
its own files (plots, curves), from the figures its ``compute()`` returned.

The built-in metrics have their sections here (:data:`SECTIONS`, by metric name); any other
metric (a plugin) gets :func:`generic_section`: a table of its scalar figures, and every
scalar figure as a sweep-table column. Evaluators themselves never draw or write markdown.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsol_bench.frames import RESIZE_LENGTH
from wsol_bench.metrics.base import Evaluator
from wsol_bench.metrics.ilsvrc import PAPER_ROWS

Figures = Mapping[str, Any]


@dataclass(frozen=True)
class Section:
    """``lines(evaluator, figures)``: markdown for ``report.md``; ``columns``: the headline
    figures for the sweep table; ``artifacts(evaluator, figures, out_dir)``: its own files."""

    lines: Callable[[Evaluator, Figures], list[str]]
    columns: Callable[[Evaluator, Figures], dict[str, Any]]
    artifacts: Callable[[Evaluator, Figures, Path], None] | None = None


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def generic_section(name: str) -> Section:
    def lines(_ev: Evaluator, figures: Figures) -> list[str]:
        rows = [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                for k, v in figures.items() if _scalar(v)]
        return [f"Metric `{name}`:", "", "| figure | value |", "|---|---|", *rows]

    return Section(lines, lambda _ev, figures: {k: v for k, v in figures.items() if _scalar(v)})


def ilsvrc_lines(ev: Evaluator, f: Figures) -> list[str]:
    k = len(f["loc_error_at_k"])
    lo, hi = f["loc_error_ci95"][-1]
    lines = [
        f"Top-{k} localisation error (ILSVRC protocol: right class among {k} guesses with IoU >= "
        f"{getattr(ev, 'iou_threshold', 0.5):g}; 95% Wilson interval). The paper's rows are on a different "
        "split and model; they are context, not a like-for-like comparison.",
        "",
        f"| method | data | model | top-{k} loc. error |",
        "|---|---|---|---|",
        f"| this run (above) | ({f['n_images']} images) | | {f['loc_error_at_k'][-1]:.3f} [{lo:.3f}, {hi:.3f}] |",
        *(f"| {r['method']} | {r['data']} | {r['model']} | {r['top5_loc_error']:.3f} |" for r in PAPER_ROWS),
        "",
        "| k | " + " | ".join(str(i) for i in range(1, k + 1)) + " |",
        "|---|" + "---|" * k,
        "| localisation error | " + " | ".join(f"{e:.4f}" for e in f["loc_error_at_k"]) + " |",
        "| classification error | " + " | ".join(f"{e:.4f}" for e in f["cls_error_at_k"]) + " |",
        "",
    ]
    if f.get("gt_known_loc_error") is not None:
        glo, ghi = f["gt_known_loc_error_ci95"]
        lines.append(f"GT-known localisation error: {f['gt_known_loc_error']:.4f} [{glo:.4f}, {ghi:.4f}]  ")
    if f.get("n_missing"):
        lines.append(f"Images without predictions (counted as errors): {f['n_missing']}  ")
    return lines


def ilsvrc_columns(_ev: Evaluator, f: Figures) -> dict[str, Any]:
    k = len(f["loc_error_at_k"])
    return {
        "top1_loc_error": f["loc_error_at_k"][0],
        f"top{k}_loc_error": f["loc_error_at_k"][-1],
        "gt_known_loc_error": f.get("gt_known_loc_error"),
        f"top{k}_cls_error": f["cls_error_at_k"][-1],
        "top1_loc_ci95": f["loc_error_ci95"][0],
        f"top{k}_loc_ci95": f["loc_error_ci95"][-1],
        "gt_known_loc_ci95": f.get("gt_known_loc_error_ci95"),
        f"top{k}_cls_ci95": f["cls_error_ci95"][-1],
    }


def maxboxacc_lines(ev: Evaluator, f: Figures) -> list[str]:
    at, best = f["maxboxacc_v2_at_iou"], f["maxboxacc_v2_best_threshold"]
    lines = [
        "WSOL box accuracy of the ground-truth class's map, exactly as clovaai/wsolevaluation's BoxEvaluator "
        f"(map stretched to {RESIZE_LENGTH} x {RESIZE_LENGTH}, thresholds every {f['maxboxacc_cam_curve_interval']:g}, "
        "best threshold; percent; curve in maxboxacc_curve.csv / .png).",
        "",
        "| metric | accuracy (%) | best threshold |",
        "|---|---|---|",
        f"| MaxBoxAcc (largest box, IoU 0.5) | {f['maxboxacc']:.2f} | {f['maxboxacc_best_threshold']:g} |",
        *(f"| all boxes, IoU {int(k) / 100:g} | {v:.2f} | {best[k]:g} |" for k, v in at.items()),
        f"| MaxBoxAccV2 (mean of the above) | {f['maxboxacc_v2']:.2f} | - |",
        "",
    ]
    if f.get("maxboxacc_n_without_map"):
        lines.append(f"Images without a map (counted as misses): {f['maxboxacc_n_without_map']}  ")
    return lines


def maxboxacc_artifacts(ev: Evaluator, f: Figures, out_dir: Path) -> None:
    """``maxboxacc_curve.csv`` (accuracy in percent against the threshold) and its plot."""
    from wsol_bench.figures import new_figure, save_figure
    from wsol_bench.metrics.maxboxacc import _threshold, cam_thresholds

    thresholds = [_threshold(t) for t in cam_thresholds(f["maxboxacc_cam_curve_interval"])]
    curves = {"maxboxacc": f["maxboxacc_curve"],
              **{f"all_boxes_iou{k}": v for k, v in f["maxboxacc_v2_curves"].items()}}
    with open(out_dir / "maxboxacc_curve.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["threshold", *curves])
        writer.writerows([t, *(c[i] for c in curves.values())] for i, t in enumerate(thresholds))
    fig = new_figure(6, 4, 100)
    ax = fig.subplots()
    ax.plot(thresholds, f["maxboxacc_curve"], color="black", linewidth=2,
            label=f"largest box, IoU 0.5 (MaxBoxAcc {f['maxboxacc']:.1f})")
    for k, v in f["maxboxacc_v2_curves"].items():
        ax.plot(thresholds, v, linestyle="--", label=f"all boxes, IoU {int(k) / 100:g}")
    ax.set_xlabel("score-map threshold")
    ax.set_ylabel("box accuracy (%)")
    ax.set_title(f"MaxBoxAccV2 {f['maxboxacc_v2']:.1f} ({f['maxboxacc_n_images']} images)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, out_dir / "maxboxacc_curve.png")


def pointing_game_lines(_ev: Evaluator, f: Figures) -> list[str]:
    lo, hi = f["pointing_game_ci95"]
    lines = [
        "Pointing game (TorchRay: the map's maximum in original pixels within "
        f"{f['pointing_game_tolerance']} pixels of a box of the class; fraction of images, 95% Wilson interval):",
        "",
        "| map | hit rate |",
        "|---|---|",
        f"| ground-truth class | {f['pointing_game']:.4f} [{lo:.4f}, {hi:.4f}] |",
        f"| ground-truth class, mean over classes (TorchRay's accuracy) | {f['pointing_game_class_mean']:.4f} |",
    ]
    if f.get("pointing_game_top1") is not None:
        tlo, thi = f["pointing_game_top1_ci95"]
        lines.append(f"| top-1 class (a miss if it has no box) | {f['pointing_game_top1']:.4f} "
                     f"[{tlo:.4f}, {thi:.4f}] |")
    return lines


def _mean_cell(f: Figures, key: str) -> str:
    """``mean [lo, hi]`` of a faithfulness figure (the interval when known)."""
    if f.get(key) is None:
        return "-"
    interval = f.get(f"{key}_ci95")
    return f"{f[key]:.4f}" + (f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "")


def _without_state(f: Figures, key: str) -> list[str]:
    n = f.get(f"{key}_n_without_state")
    return [f"Images without a {key.split('_')[0]} figure (left out; reasons in per_image.csv): {n}  "] if n else []


def rise_lines(ev: Evaluator, f: Figures) -> list[str]:
    mode = ev.name
    key = f"{mode}_auc"
    what = ("replaced by the baseline, most salient first (lower is better: the map found what the class needs)"
            if mode == "deletion" else
            "revealed on the baseline, most salient first (higher is better)")
    return [
        f"{mode.capitalize()} (RISE, Petsiuk et al. 2018): the ground-truth class's softmax probability as the pixels "
        f"of the {f[f'{mode}_crop']} x {f[f'{mode}_crop']} centre crop are {what}, in {f[f'{mode}_n_steps']} steps, "
        f"baseline `{f[f'{mode}_baseline']}`; area under the curve, mean over images with a 95% Student-t interval.",
        "",
        "| figure | value | images |",
        "|---|---|---|",
        f"| {mode} AUC | {_mean_cell(f, key)} | {f[f'{key}_n_images']} |",
        "",
        *_without_state(f, key),
    ]


def rise_columns(ev: Evaluator, f: Figures) -> dict[str, Any]:
    key = f"{ev.name}_auc"
    return {key: f.get(key), f"{key}_ci95": f.get(f"{key}_ci95")}


def road_lines(_ev: Evaluator, f: Figures) -> list[str]:
    percentiles = ", ".join(f"{p:g}" for p in f["road_percentiles"])
    return [
        "ROAD (Rong et al. 2022, as pytorch-grad-cam): the change of the ground-truth class's softmax probability when "
        f"pixels of the {f['road_crop']} x {f['road_crop']} centre crop are imputed (noisy linear imputation, noise "
        f"{f['road_noise']:g}), averaged over the percentiles {percentiles}; mean over images with a 95% Student-t "
        "interval.",
        "",
        "| figure | value | images |",
        "|---|---|---|",
        f"| MoRF (most relevant imputed; lower is better) | {_mean_cell(f, 'road_morf')} | {f['road_n_images']} |",
        f"| LeRF (least relevant imputed; higher is better) | {_mean_cell(f, 'road_lerf')} | {f['road_n_images']} |",
        f"| combined, (LeRF - MoRF) / 2 (higher is better) | {_mean_cell(f, 'road_combined')} | "
        f"{f['road_n_images']} |",
        "",
        *_without_state(f, "road"),
    ]


def road_columns(_ev: Evaluator, f: Figures) -> dict[str, Any]:
    return {"road_combined": f.get("road_combined"), "road_combined_ci95": f.get("road_combined_ci95"),
            "road_morf": f.get("road_morf"), "road_lerf": f.get("road_lerf")}


SECTIONS: dict[str, Section] = {
    "ilsvrc": Section(ilsvrc_lines, ilsvrc_columns),
    "maxboxacc": Section(maxboxacc_lines,
                         lambda _ev, f: {"maxboxacc": f["maxboxacc"], "maxboxacc_v2": f["maxboxacc_v2"]},
                         maxboxacc_artifacts),
    "pointing_game": Section(pointing_game_lines,
                             lambda _ev, f: {"pointing_game": f["pointing_game"],
                                             "pointing_game_top1": f.get("pointing_game_top1")}),
    "deletion": Section(rise_lines, rise_columns),
    "insertion": Section(rise_lines, rise_columns),
    "road": Section(road_lines, road_columns),
}


def section_of(name: str) -> Section:
    """The section of the metric called ``name`` (a generic one for metrics not listed)."""
    return SECTIONS.get(name) or generic_section(name)
