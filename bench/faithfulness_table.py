"""The table of docs/faithfulness.md from finished run folders (bench/faithfulness_study.sh).

Arguments: localisation run folders (``metrics.json`` with the faithfulness metrics; the row
is the folder's name) and a ``task=sanity`` folder (``sanity_summary.csv``; its methods are
matched to the rows by name), or one folder holding them all. Prints:

1. per method: GT-known localisation error and the pointing game (95 % Wilson intervals),
   MaxBoxAccV2 (%), deletion AUC, insertion AUC and ROAD combined (95 % Student-t intervals
   of the mean), and the randomisation test's similarity at the last cascading stage (every
   stage randomised): Spearman (abs) and SSIM, mean +- standard deviation over its images;
2. each method minus the random map, paired over the same images (mean difference and its
   95 % Student-t interval; ``*`` where the interval excludes 0);
3. with ``--costs``: median seconds per image of each stage (the runs' ``per_image.csv``).

    python bench/faithfulness_table.py outputs/faithfulness [--random random] [--costs]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsol_bench.metrics.intervals import wilson_interval

ORDER = ("gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "guided_backprop", "gradcam", "cam",
         "random")
PAIRED = (("deletion_auc", "deletion AUC (lower better)"), ("insertion_auc", "insertion AUC"),
          ("road_combined", "ROAD combined"), ("pointing_game_hit", "pointing game"),
          ("gt_known_correct", "GT-known correct"))


def folders(paths: list[str]) -> tuple[dict[str, Path], Path | None]:
    """Localisation runs by name and the sanity run, from the arguments (or their sub-folders)."""
    runs: dict[str, Path] = {}
    sanity = None
    candidates = []
    for p in map(Path, paths):
        candidates += [p] if (p / "metrics.json").is_file() or (p / "sanity_summary.csv").is_file() else \
            sorted(q for q in p.iterdir() if q.is_dir())
    for p in candidates:
        if (p / "sanity_summary.csv").is_file():
            sanity = p
        elif (p / "metrics.json").is_file():
            runs[p.name] = p
    order = {name: k for k, name in enumerate(ORDER)}
    return dict(sorted(runs.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))), sanity


def rate(m: dict, key: str, n_key: str) -> str:
    value = m.get(key)
    if value is None:
        return "-"
    n = m[n_key]
    lo, hi = wilson_interval(value * n, n)
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def mean_ci(m: dict, key: str) -> str:
    value, interval = m.get(key), m.get(f"{key}_ci95")
    if value is None:
        return "-"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]" if interval else f"{value:.4f}"


def paired(a: pd.Series, b: pd.Series) -> str:
    """Mean of ``a - b`` over images with both, with its 95 % t interval; ``*`` when it excludes 0."""
    d = (a - b).dropna().to_numpy(dtype=np.float64)
    if d.size < 2:
        return "-"
    mean = d.mean()
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    mark = "*" if mean - half > 0 or mean + half < 0 else ""
    return f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]{mark}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--random", default="random", help="the run of the random map (the paired baseline)")
    parser.add_argument("--costs", action="store_true", help="also the median seconds per image of each stage")
    args = parser.parse_args()
    runs, sanity_dir = folders(args.paths)
    metrics = {name: json.loads((p / "metrics.json").read_text()) for name, p in runs.items()}
    per_image = {name: pd.read_csv(p / "per_image.csv").set_index("image_id") for name, p in runs.items()}
    sanity = None
    if sanity_dir is not None:
        summary = pd.read_csv(sanity_dir / "sanity_summary.csv")
        summary = summary[summary["mode"] == "cascading"]
        sanity = summary[summary["stage_index"] == summary["stage_index"].max()].set_index("method")
        n_sanity = int(sanity["n_images"].max()) if len(sanity) else 0

    sanity_head = f"randomised: Spearman ({n_sanity} images)" if sanity is not None else "randomised: Spearman"
    columns = ["method", "images", "GT-known loc. error", "MaxBoxAccV2 (%)", "pointing game",
               "deletion AUC (lower better)", "insertion AUC", "ROAD combined", sanity_head, "randomised: SSIM"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for name, m in metrics.items():
        cells = [name, str(m.get("n_images", "-")), rate(m, "gt_known_loc_error", "n_images"),
                 f"{m['maxboxacc_v2']:.1f}" if m.get("maxboxacc_v2") is not None else "-",
                 rate(m, "pointing_game", "pointing_game_n_images"),
                 mean_ci(m, "deletion_auc"), mean_ci(m, "insertion_auc"), mean_ci(m, "road_combined")]
        if sanity is not None and name in sanity.index:
            r = sanity.loc[name]
            cells += [f"{r.spearman_mean:.3f} +- {r.spearman_std:.3f}", f"{r.ssim_mean:.3f} +- {r.ssim_std:.3f}"]
        else:
            cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")

    if args.random in per_image:
        base = per_image[args.random]
        print(f"\nPaired over the same images: method minus `{args.random}` (mean difference [95% t interval]; "
              "* the interval excludes 0)\n")
        print("| method | " + " | ".join(label for _, label in PAIRED) + " |")
        print("|---|" + "---|" * len(PAIRED))
        for name, table in per_image.items():
            if name == args.random:
                continue
            cells = [paired(table[c], base[c]) if c in table and c in base else "-" for c, _ in PAIRED]
            print(f"| {name} | " + " | ".join(cells) + " |")

    if args.costs:
        stages = ["saliency", "segmentation", "metric_deletion", "metric_insertion", "metric_road"]
        print("\nMedian seconds per image (wall, per rank; the runs' per_image.csv)\n")
        print("| method | " + " | ".join(stages) + " | faithfulness / (saliency + segmentation) |")
        print("|---|" + "---|" * (len(stages) + 1))
        for name, table in per_image.items():
            med = {s: float(table[f"seconds_{s}"].median()) if f"seconds_{s}" in table else math.nan for s in stages}
            ratio = sum(med[s] for s in stages[2:]) / (med["saliency"] + med["segmentation"])
            print(f"| {name} | " + " | ".join(f"{med[s]:.2f}" for s in stages) + f" | {ratio:.1f} |")


if __name__ == "__main__":
    main()
