"""Benchmark: images per second of whole localisation runs on the CPU, side by side.

The same images (the first ``--images`` of ``../shared/ilsvrc_val_sample``, or the demo
set with ``--demo``), saliency cache off, default GraphCut, one after the other:

* ``before``: the previous single-process default, reproduced with overrides
  (``engine.batch_images=4 engine.fold_batchnorm=false run.processes=1
  engine.loader_workers=2 engine.segmentation_workers=0``; torch's own thread count, i.e. every
  core, in one process);
* ``default``: ``python -m wsol_bench`` as shipped (``run.processes=auto``: one
  single-threaded rank per core; BatchNorm folded; one image per saliency call);
* ``torchrun``: the shipped settings under ``torchrun --nproc_per_node=<cores>``;
* ``1 thread``: the shipped settings in one process with one torch thread
  (``OMP_NUM_THREADS=1 run.processes=1``): the reference for identical predictions;
* ``overlap``: the alternative to ranks: one process, ``cores - 1`` torch threads for
  saliency, GraphCut in ``engine.segmentation_workers=1`` worker process beside it;
* ``no matmul``: the shipped settings without ``engine.pointwise_matmul`` (the previous default);
* ``checkout``: with ``--checkout DIR``, ``python -m wsol_bench`` of another checkout of the
  project (e.g. ``git worktree add DIR <commit>``; run from ``DIR`` with ``PYTHONPATH=DIR``),
  with ``--checkout-overrides`` (its own keys): an earlier version measured side by side.

Wall-clock seconds include start-up (imports, model load, starting ranks), as a user sees
them; with ``--rounds N`` the runs alternate N times and the fastest of each counts.
Peak memory of every Python process of a run (ranks, torchrun's agent, DataLoader and
segmentation workers): ``VmHWM`` (the peak resident set of the process itself), read
from ``/proc`` while the run goes and written by each process at exit through a
``sitecustomize`` module put on ``PYTHONPATH`` for these runs only; in brackets its
``ru_maxrss`` at exit (the same figure, except that a process started by fork+exec
inherits its parent's resident size at the fork as a floor, so a small worker reports at
least its parent's size; ``-`` for a rank started by ``run.processes``, which ends with
``os._exit`` and so writes nothing at exit).

    python bench/throughput.py [--images 16] [--rounds 2] [--skip overlap ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SITECUSTOMIZE = '''
import atexit, json, os, resource, sys

def _wsol_bench_record_rss():
    try:
        cmdline = open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
        if "resource_tracker" in cmdline:
            role = "resource tracker"
        elif "--multiprocessing-fork" in cmdline or "spawn_main" in cmdline:
            role = "worker"
        elif "torch.distributed.run" in cmdline:
            role = "torchrun agent"
        else:
            role = "rank " + os.environ.get("RANK", "0")
        hwm = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")]
        with open(os.environ["WSOL_BENCH_RSS_LOG"], "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "role": role, "hwm_kib": hwm[0] if hwm else None,
                                "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}) + "\\n")
    except Exception:
        pass

if os.environ.get("WSOL_BENCH_RSS_LOG"):
    atexit.register(_wsol_bench_record_rss)
'''


def _descendants(root: int) -> list[int]:
    """Pids of every process under ``root`` (from ``/proc``)."""
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent_of[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, q in parent_of.items() if q == pid]
        found += children
        frontier += children
    return found


def _role_and_peak(pid: int) -> tuple[str, int] | None:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    env = {}
    try:
        env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode(
            errors="replace").split("\0") if "=" in item)
    except OSError:
        pass
    if "python" not in cmdline:
        return None
    if "resource_tracker" in cmdline:
        role = "resource tracker"
    elif "--multiprocessing-fork" in cmdline or "spawn_main" in cmdline:
        role = "worker"
    elif "torch.distributed.run" in cmdline:
        role = "torchrun agent"
    else:
        role = "rank " + env.get("RANK", "0")
    peak = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")]
    return (role, peak[0]) if peak else None


def run(name: str, cmd: list[str], env: dict[str, str], tmp: Path) -> dict:
    """Run ``cmd``; its wall time and the peak memory of each of its Python processes: read
    from ``/proc/PID/status`` every 0.25 s while it runs (VmHWM only grows, so the last
    reading is the peak unless it came in the last 0.25 s; a rank that ends with
    ``os._exit`` writes nothing at exit), and at exit by the ``sitecustomize`` hook."""
    log = tmp / f"{name}.rss.jsonl"
    env = dict(env)
    cwd = env.pop("_cwd", str(REPO))
    paths = [str(tmp / "site"), env.pop("PYTHONPATH", None), os.environ.get("PYTHONPATH")]
    full_env = {**os.environ, **env, "WSOL_BENCH_RSS_LOG": str(log), "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    peaks: dict[int, tuple[str, int, int]] = {}  # pid -> role, VmHWM KiB, ru_maxrss KiB (0: not recorded)
    start = time.perf_counter()
    with open(tmp / f"{name}.out", "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            for pid in [proc.pid, *_descendants(proc.pid)]:
                seen = _role_and_peak(pid)
                if seen is not None:
                    peaks[pid] = (seen[0], max(seen[1], peaks.get(pid, ("", 0, 0))[1]), 0)
            time.sleep(0.25)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{(tmp / f'{name}.out').read_text()[-4000:]}")
    for line in log.read_text().splitlines() if log.exists() else []:
        p = json.loads(line)
        role, hwm, _ = peaks.get(p["pid"], (p["role"], 0, 0))
        peaks[p["pid"]] = (p["role"], max(hwm, p["hwm_kib"] or 0), p["maxrss_kib"])
    rss = [{"pid": pid, "role": role, "hwm_kib": hwm, "maxrss_kib": maxrss}
           for pid, (role, hwm, maxrss) in peaks.items()]
    return {"seconds": seconds, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--demo", action="store_true", help="the embedded demo set instead of the shared sample")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("before", "torchrun", "1 thread", "overlap", "no matmul"))
    parser.add_argument("--checkout", type=Path, help="another checkout of the project, run side by side")
    parser.add_argument("--checkout-overrides", nargs="*", default=["saliency.cache=false"],
                        help="its overrides besides dataset, limit, progress and figures (its own key names)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    data = ["dataset=demo"] if args.demo else ["dataset=shared_sample"]
    common = [*data, f"dataset.limit={args.images}", "engine.cache=false", "run.progress=false", "run.figures=0",
              *args.overrides]
    wsol = [sys.executable, "-m", "wsol_bench"]
    runs = {
        "before": (wsol + common + ["engine.batch_images=4", "engine.fold_batchnorm=false", "run.processes=1",
                                    "engine.loader_workers=2", "engine.segmentation_workers=0"], {}),
        "default": (wsol + common, {}),
        "torchrun": ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cores}",
                      "-m", "wsol_bench", *common], {}),
        "1 thread": (wsol + common + ["run.processes=1"], {"OMP_NUM_THREADS": "1"}),
        "overlap": (wsol + common + ["run.processes=1", "engine.segmentation_workers=1"],
                    {"OMP_NUM_THREADS": str(max(1, cores - 1))}),
        "no matmul": (wsol + common + ["engine.pointwise_matmul=false"], {}),
    }
    if args.checkout is not None:
        old = [*data, f"dataset.limit={args.images}", "run.progress=false", "run.figures=0", *args.checkout_overrides]
        runs["checkout"] = (wsol + old, {"PYTHONPATH": str(args.checkout.resolve()), "_cwd": str(args.checkout)})
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "site").mkdir()
        (tmp / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        for round_no in range(args.rounds):  # alternate, so every run sees the same (shared machine) load
            for name, (cmd, env) in runs.items():
                if name in args.skip:
                    continue
                out = tmp / f"{name.replace(' ', '_')}_{round_no}"
                result = run(f"{name}_{round_no}", cmd + [f"hydra.run.dir={out}"], env, tmp)
                result["predictions"] = (out / "predictions.csv").read_bytes()
                metrics = json.loads((out / "metrics.json").read_text())
                result["stages"] = metrics.get("seconds_per_image", {})
                result["world_size"] = metrics.get("world_size")
                result["all_seconds"] = results.get(name, {}).get("all_seconds", []) + [result["seconds"]]
                if name not in results or result["seconds"] < results[name]["seconds"]:
                    results[name] = result
                else:
                    results[name]["all_seconds"] = result["all_seconds"]
                print(f"... round {round_no + 1} {name}: {result['seconds']:.1f} s", file=sys.stderr, flush=True)
    n = args.images
    print(f"{n} images ({'demo' if args.demo else 'shared sample'}), {cores} usable cores, saliency cache off, "
          f"extra overrides: {args.overrides}; wall clock including start-up, fastest of {args.rounds} round(s)")
    base = results.get("before", {}).get("seconds")
    for name, r in results.items():
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        ratio = f"{base / r['seconds']:5.2f}x before" if base else ""
        every = "/".join(f"{t:.1f}" for t in r["all_seconds"])
        print(f"{name:9s} {r['seconds']:7.1f} s  {n / r['seconds']:.3f} images/s  {ratio}  "
              f"(world size {r['world_size']}; s/image per rank: {stages}; every round: {every} s)")
    reference = results.get("1 thread", {}).get("predictions")
    for name in ("default", "torchrun", "overlap"):
        if reference is not None and name in results:
            same = results[name]["predictions"] == reference
            print(f"predictions of {name} identical to 1 thread, same settings: {same}")
    for name, r in results.items():
        procs = sorted(r["rss"], key=lambda p: (p["role"], p["pid"]))
        shown = ", ".join(f"{p['role']} {p['hwm_kib'] / 1024:.0f} ({p['maxrss_kib'] / 1024:.0f})"
                          if p["maxrss_kib"] else f"{p['role']} {p['hwm_kib'] / 1024:.0f} (-)" for p in procs)
        print(f"peak RSS MiB, VmHWM (ru_maxrss), {name}: {shown}")


if __name__ == "__main__":
    main()
