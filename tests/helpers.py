"""Helpers shared by tests: paths, configs, small data sets, running the CLI, child processes.
(Fixtures are in ``conftest.py``; no test module imports another.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"


def run_cli(*overrides: str, cwd: Path = REPO, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m wsol_bench OVERRIDES``; the result's output is stdout+stderr."""
    return subprocess.run(
        [sys.executable, "-m", "wsol_bench", *overrides],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})},
    )


def child_pids(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def living(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still exist and are not zombies."""
    alive = []
    for p in pids:
        try:
            if Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(p)
        except OSError:
            continue
    return alive


def compose_cfg(*overrides: str):
    """The composed Hydra config of ``python -m wsol_bench OVERRIDES`` (no task run)."""
    from hydra import compose, initialize_config_dir

    from wsol_bench.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


XML = """<annotation>
\t<folder>val</folder>
\t<filename>{name}</filename>
{size}
{objects}
</annotation>"""
SIZE = "\t<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
OBJECT = """\t<object><name>{syn}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"""


def write_xml(folder: Path, name: str, boxes, w=100, h=80, size=True) -> Path:
    """An ILSVRC XML file ``folder/name.xml`` with ``boxes`` ``(synset, x0, y0, x1, y1)``."""
    objects = "\n".join(OBJECT.format(syn=s, x0=a, y0=b, x1=c, y1=d) for s, a, b, c, d in boxes)
    text = XML.format(name=name, size=SIZE.format(w=w, h=h) if size else "", objects=objects)
    path = folder / f"{name}.xml"
    path.write_text(text)
    return path


def make_odd_images(folder: Path) -> dict[str, Path]:
    """One file of each kind real ILSVRC data contains (and a truncated one)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    paths = {k: folder / f"{k}.JPEG" for k in ("rgb", "cmyk", "grey", "png_named_jpeg", "truncated")}
    rgb.save(paths["rgb"], format="JPEG")
    rgb.convert("CMYK").save(paths["cmyk"], format="JPEG")
    rgb.convert("L").save(paths["grey"], format="JPEG")
    rgb.save(paths["png_named_jpeg"], format="PNG")
    data = paths["rgb"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    return paths


def kaggle_tree(root: Path) -> None:
    """A tiny copy of the Kaggle layout: three images and LOC_val_solution.csv."""
    (root / "ILSVRC/Data/CLS-LOC/val").mkdir(parents=True)
    (root / "ILSVRC/Annotations/CLS-LOC/val").mkdir(parents=True)
    for n in (2, 1, 3):
        Image.new("RGB", (100, 80)).save(root / f"ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_{n:08d}.JPEG")
    (root / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"ILSVRC2012_val_{n:08d},n01440764 1 1 9 9 \n" for n in (3, 1, 2))
    )


SMALL_SET_IMAGES = 6  # one batch each


def make_small_set(root: Path) -> tuple[Path, Path]:
    """Six small images (five readable, one truncated) with XML ground truth."""
    images = root / "images"
    make_odd_images(images)
    (images / "copy.JPEG").write_bytes((images / "rgb.JPEG").read_bytes())
    ann = root / "ann"
    ann.mkdir()
    for p in images.iterdir():
        write_xml(ann, p.stem, [("n01440764", 5, 5, 40, 30)], w=60, h=40)
    return images, ann


def small_run_overrides(images: Path, ann: Path, out: Path, *extra: str) -> list[str]:
    """A fast single-process run of a small set (64-pixel frames, no cache, no figures) into ``out``."""
    return [f"dataset.images={images}", f"dataset.annotations={ann}",
            "engine.loader_workers=0", "tta.resize=64", "tta.crop=56", "engine.batch_images=1",
            "engine.cache=false", "run.progress=false", "run.figures=0", "run.processes=1", f"hydra.run.dir={out}",
            *extra]


def results_table(out: Path) -> pd.DataFrame:
    """A run's per-image results and predictions, timings left out."""
    per_image = pd.read_csv(out / "per_image.csv")
    predictions = pd.read_csv(out / "predictions.csv")
    drop = [c for c in per_image.columns if c.startswith("seconds_")]
    return per_image.drop(columns=drop).merge(predictions, on="image_id", how="left")


ESPRESSO_OR_CUP = {967: "n07920052 espresso", 968: "n07930864 cup"}
CATS = {281: "n02123045 tabby", 282: "n02123159 tiger cat", 283: "n02123394 Persian cat",
        284: "n02123597 Siamese cat", 285: "n02124075 Egyptian cat"}


def centre_crop(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """The centre ``size`` crop of the image resized to shorter side 256, ``(1, 3, s, s)`` in [0, 1]."""
    from wsol_bench.frames import resize_shorter_side

    im = resize_shorter_side(image, 256)
    y, x = (im.shape[0] - size) // 2, (im.shape[1] - size) // 2
    return torch.from_numpy(im[y : y + size, x : x + size].copy()).permute(2, 0, 1).float()[None] / 255
