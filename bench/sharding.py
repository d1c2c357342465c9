"""Images per second of the localisation run with 1 process and with N torchrun processes.

    python bench/sharding.py --images 24 --processes 2 [extra Hydra overrides]

Runs the same fixed set (the first --images images of ../shared/ilsvrc_val_sample, or
the demo set with --demo) with the saliency cache off, once as one process (segmentation
in the main process) and once under torchrun, checks that the per-image results are
identical, and prints wall-clock images per second and the speed-up. The wall time
includes start-up (imports, model load), as a user sees it; the per-stage seconds are
in each run's metrics.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--demo", action="store_true", help="use the embedded demo set")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    data = ["dataset=demo"] if args.demo else ["dataset=shared_sample"]
    common = [*data, f"dataset.limit={args.images}", "engine.cache=false", "run.progress=false", "run.figures=0",
              *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        t1 = run([sys.executable, "-m", "wsol_bench", *common, f"hydra.run.dir={one}"])
        tn = run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.processes}",
                  "-m", "wsol_bench", *common, f"hydra.run.dir={many}"])
        same = pd.read_csv(one / "predictions.csv").equals(pd.read_csv(many / "predictions.csv"))
    print(f"images: {args.images} ({'demo' if args.demo else 'shared sample'}), overrides: {args.overrides}")
    print(f"1 process : {t1:7.1f} s  {args.images / t1:.3f} images/s")
    print(f"{args.processes} processes: {tn:7.1f} s  {args.images / tn:.3f} images/s")
    print(f"speed-up  : {t1 / tn:.2f}x; identical predictions: {same}")


if __name__ == "__main__":
    main()
