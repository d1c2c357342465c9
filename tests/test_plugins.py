"""A user's own saliency method, box extractor and metric run end to end, from the CLI and
from Python, without touching the engine; the stages import without Hydra."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import REPO, run_cli, write_xml
from tests.toy_plugins import CentreBlob, MapPeakBox


@pytest.fixture
def toy_set(tmp_path):
    from PIL import Image

    images, ann = tmp_path / "images", tmp_path / "ann"
    images.mkdir()
    ann.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(images / f"img{k}.png")
        write_xml(ann, f"img{k}", [("n01440764", 30, 20, 49, 39)], w=80, h=60)
    return images, ann


@pytest.mark.slow  # runs the CLI in a subprocess
def test_toy_parts_through_the_cli(tmp_path, toy_set):
    images, ann = toy_set
    out = tmp_path / "run"
    res = run_cli(f"dataset.images={images}", f"dataset.annotations={ann}", "engine.loader_workers=0",
                  "model.weights=random", "saliency=custom", "saliency.method=tests.toy_plugins:CentreBlob",
                  "saliency.sigma=0.1", "saliency.noise_tunnel.n_samples=2", "tta.resize=64", "tta.crop=56",
                  "tta.crops=1", "engine.cache=false", "segmentation=custom",
                  "segmentation.method=tests.toy_plugins:MapPeakBox", "segmentation.side=20",
                  "evaluation.metrics=[ilsvrc,tests.toy_plugins:PeakInBox]", "evaluation.peak_in_box.margin=3",
                  "run.progress=false", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stdout[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["peak_in_box"] == 1.0  # the blob peaks at the centre, where every object is
    assert metrics["gt_known_loc_error"] == 0.0  # a 21x21 box at the frame's centre: the object
    assert metrics["table"]["peak_in_box"] == 1.0
    assert metrics["saliency"] == "noise_tunnel(centre_blob)"
    manifest = json.loads((out / "records" / "manifest.json").read_text())
    assert manifest["saliency"]["name"] == "noise_tunnel"
    assert manifest["saliency"]["params"]["method"] == {"part": "centre_blob", "params": {"sigma": 0.1}}
    assert manifest["saliency"]["params"]["n_samples"] == 2
    assert manifest["segmentation"]["params"] == {"side": 20}
    assert manifest["evaluation"]["peak_in_box"] == {"margin": 3}
    res = run_cli(f"dataset.images={images}", f"dataset.annotations={ann}", "saliency=custom",
                  "saliency.method=tests.toy_plugins:CentreBlob", "saliency.sigma=-1", f"hydra.run.dir={out}2")
    assert res.returncode == 2 and res.stdout.startswith("error: saliency.sigma=-1") and "must be > 0" in res.stdout
    assert "Traceback" not in res.stdout


def test_toy_parts_through_python(toy_set):
    import wsol_bench
    from wsol_bench.models import ModelSpec

    images, _ = toy_set
    result = wsol_bench.localise(ModelSpec(weights="random", device="cpu"), images / "img0.png",
                                 method=CentreBlob(sigma=0.1), segmenter=MapPeakBox(side=40), top_k=3, crops=1)
    assert len(result.classes) == 3 and result.maps.shape == (3, 60, 80)
    assert all(b.coords == result.boxes[0].coords for b in result.boxes)  # the same blob for every class
    x0, y0, x1, y1 = result.boxes[0]
    assert x0 < 40 < x1 and y0 < 30 < y1 and result.boxes[0].synset == result.classes[0]


def test_a_plain_module_and_every_image_type():
    import wsol_bench

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 6)).eval()
    image = np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    from PIL import Image

    results = [wsol_bench.localise(net, im, segmenter="threshold", top_k=2, crops=1)
               for im in (image, Image.fromarray(image), torch.from_numpy(image).permute(2, 0, 1))]
    assert results[0].classes == results[1].classes == results[2].classes  # indices as strings: 6 classes
    assert all(c.isdigit() for c in results[0].classes)
    np.testing.assert_allclose(results[0].maps, results[2].maps)


@pytest.mark.slow  # runs the CLI in a subprocess
def test_stages_import_without_hydra():
    code = ("import wsol_bench.saliency, wsol_bench.segmentation, wsol_bench.metrics, wsol_bench.data, "
            "wsol_bench.models, wsol_bench.api, wsol_bench.pipeline.engine, sys; assert 'hydra' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def readme_python_blocks() -> list[str]:
    section = (REPO / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    return [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]


@pytest.mark.slow  # gradcam on 20 real images
def test_the_readme_run_example_prints_what_the_readme_says(shared_sample, tmp_path, monkeypatch, capsys):
    import ast

    block = readme_python_blocks()[0]
    assert '"../shared/ilsvrc_val_sample"' in block
    monkeypatch.chdir(tmp_path)  # its out_dir is relative: nothing lands in the repository
    monkeypatch.setenv("MPLBACKEND", "Agg")
    block = block.replace('"../shared/ilsvrc_val_sample"', repr(str(shared_sample)))
    exec(compile(block, "README.md (Python API, run)", "exec"), {})
    printed = ast.literal_eval(capsys.readouterr().out.strip().splitlines()[-1])
    section = (REPO / "README.md").read_text().split("## Python API", 1)[1]
    documented = ast.literal_eval(section.split("printed (of the 20 images", 1)[1].split("```\n", 2)[1].strip())
    assert printed == pytest.approx(documented)


@pytest.mark.slow
def test_the_readme_one_image_example_runs_as_written(capsys):
    exec(compile(readme_python_blocks()[1], "README.md (Python API, one image)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("n0212") and "Box(" in printed[0]  # a cat class for chelsea
    assert printed[-1] == "[0.0, 0.0, 0.0, 0.0, 0.0]"
