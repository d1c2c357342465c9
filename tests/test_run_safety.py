"""What a run refuses, confines or keeps: locked folders, full disks, bad model outputs, bad
methods and metrics, resumes over changed settings or images, ids that would corrupt files.

Runs here go through :func:`wsol_bench.pipeline.run.run_localisation` in-process (one rank,
a tiny model, 56-pixel crops), the engine of the CLI."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from tests.helpers import REPO, compose_cfg, run_cli, small_run_overrides, write_xml
from wsol_bench.data.sources import DatasetSpec, load_evaluation_set
from wsol_bench.files import OutputError
from wsol_bench.metrics import Evaluator, evaluator
from wsol_bench.models import ModelSpec
from wsol_bench.pipeline.run import LocalisationPlan, run_localisation
from wsol_bench.pipeline.settings import EngineSettings, RunSettings
from wsol_bench.pipeline.store import RunLocked, prepare_records_dir, run_lock
from wsol_bench.saliency import CropSettings, SaliencyMethod, TargetwiseMethod, saliency_method
from wsol_bench.saliency.base import SaliencyContractError
from wsol_bench.saliency.image_saliency import ModelOutputError
from wsol_bench.segmentation import Localisation, box_extractor
from wsol_bench.tasks import check_output_dir
from wsol_bench.tasks.factory import localisation_plan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def plan_for(images: Path, ann: Path, method: SaliencyMethod | None = None, **run: Any) -> LocalisationPlan:
    return LocalisationPlan(
        dataset=DatasetSpec(images=str(images), annotations=str(ann)),
        model=ModelSpec(name="custom", factory="tests.helpers:tiny_net", weights="random", device="cpu"),
        method=method or saliency_method("gradient"),
        crops=CropSettings(resize=64, crop=56, crops=1, top_k=5),
        extractor=box_extractor("center"),
        evaluators=(evaluator("ilsvrc"), evaluator("maxboxacc")),
        engine=EngineSettings(cache=False, loader_workers=0),
        run=RunSettings(**{"processes": 1, "figures": 0, "progress": False, **run}),
    )


def run(plan: LocalisationPlan, out: Path) -> dict:
    return run_localisation(plan, load_evaluation_set(plan.dataset, lenient=True), out)


@pytest.fixture
def readable_set(tmp_path) -> tuple[Path, Path]:
    """Three readable 60 x 40 images with XML ground truth."""
    from PIL import Image

    images, ann = tmp_path / "images", tmp_path / "ann"
    images.mkdir()
    ann.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(images / f"img{k}.png")
        write_xml(ann, f"img{k}", [("n01440764", 5, 5, 40, 30)], w=60, h=40)
    return images, ann


# ----------------------------------------------------------------------------- one writer per folder


def test_the_run_folder_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    with run_lock(tmp_path, "run A"):
        with pytest.raises(RunLocked, match=rf"in use by another run \(pid {os.getpid()} .*run A"):
            with run_lock(tmp_path, "run B"):
                pass
    with run_lock(tmp_path, "run C"):  # released when the holder ends
        pass


@pytest.mark.slow  # two real processes
def test_a_second_run_into_a_folder_in_use_is_refused_and_writes_nothing(tmp_path, small_set):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from wsol_bench.pipeline.store import run_lock\n"
        f"with run_lock(Path({str(out)!r}), 'the first run'):\n    print('held', flush=True); time.sleep(60)")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        res = run_cli(*small_run_overrides(*small_set, out))
        assert res.returncode == 2, res.stdout[-2000:]
        assert f"in use by another run (pid {holder.pid}" in res.stdout and "the first run" in res.stdout
        assert not (out / ".hydra").exists() and not (out / "records").exists()  # nothing of the second run
    finally:
        holder.kill()
        holder.wait()


def test_a_new_run_or_another_task_refuses_a_folder_holding_a_run(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("task: {name: localise}\n")
    (tmp_path / "records").mkdir()
    with pytest.raises(FileExistsError, match="already holds a run .* or pass run.resume=true"):
        check_output_dir(tmp_path)
    check_output_dir(tmp_path, resume=True)


@pytest.mark.slow  # runs the CLI
def test_task_evaluate_does_not_overwrite_a_localisation_run(tmp_path, small_set):
    out = tmp_path / "run"
    assert run_cli(*small_run_overrides(*small_set, out)).returncode == 0
    before = {p: p.read_bytes() for p in (out / "metrics.json", out / ".hydra" / "config.yaml")}
    res = run_cli("task=evaluate", f"evaluate.predictions={out / 'predictions.csv'}",
                  f"dataset.annotations={small_set[1]}", f"hydra.run.dir={out}")
    assert res.returncode == 2 and "already holds a run" in res.stdout
    assert {p: p.read_bytes() for p in before} == before


# ----------------------------------------------------------------------------- the harness's own files


def test_a_full_disk_stops_the_run_naming_the_file_and_a_resume_completes_it(tmp_path, readable_set, monkeypatch):
    import wsol_bench.files

    plan = plan_for(*readable_set, save_maps=True)
    real = wsol_bench.files.atomic_write

    def full(path, data, fsync=True):
        if str(path).endswith(".npy") and "img1" in str(path):
            raise OutputError(errno.ENOSPC, f"{path}: cannot write (No space left on device)")
        return real(path, data, fsync)

    monkeypatch.setattr("wsol_bench.data.scoremaps.atomic_write", full)
    with pytest.raises(OutputError, match=r"img1\.npy: cannot write \(No space left on device\)"):
        run(plan, tmp_path / "run")
    parts = [json.loads(line) for p in (tmp_path / "run" / "records").glob("part-*.jsonl")
             for line in p.read_text().splitlines()[:-1]]
    assert [r["image_id"] for r in parts] == ["img0"] and all(r["status"] == "ok" for r in parts)
    monkeypatch.setattr("wsol_bench.data.scoremaps.atomic_write", real)  # space freed
    metrics = run(replace(plan, run=replace(plan.run, resume=True)), tmp_path / "run")
    assert metrics["n_failed"] == 0 and metrics["rank0_batches_done"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "scoremaps").glob("*.npy")) == [f"img{k}.npy" for k in range(3)]


def test_image_ids_that_would_corrupt_the_score_map_metadata_are_refused_up_front(tmp_path, readable_set):
    images, ann = readable_set
    (images / "img0.png").rename(images / "a,b.png")
    write_xml(ann, "a,b", [("n01440764", 5, 5, 40, 30)], w=60, h=40)
    with pytest.raises(ValueError, match="'a,b': contains a comma"):
        run(plan_for(images, ann, save_maps=True), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- resumes


def test_a_resume_adding_save_maps_or_over_changed_images_is_refused(tmp_path, readable_set):
    images, ann = readable_set
    plan = plan_for(images, ann)
    run(plan, tmp_path / "run")
    records = tmp_path / "run" / "records"
    data = load_evaluation_set(plan.dataset)
    with pytest.raises(ValueError, match="save_maps: False -> True"):
        prepare_records_dir(records, replace(plan, run=replace(plan.run, save_maps=True)).identity(data), True)
    from PIL import Image

    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(images / "img2.png")  # same name, other content
    os.utime(images / "img2.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(ValueError, match="data.image_stats_sha256"):
        prepare_records_dir(records, plan.identity(load_evaluation_set(plan.dataset)), True)


# ----------------------------------------------------------------------------- the model's outputs


def ten_logits(num_classes: int = 1000) -> torch.nn.Module:
    """A model (model=custom) whose output width ignores num_classes."""
    return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 10))


class NanNet(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1000), float("nan")) + x.mean()


def nan_logits(num_classes: int = 1000) -> torch.nn.Module:
    return NanNet()


@pytest.mark.parametrize(("factory", "message"), [
    ("tests.test_run_safety:ten_logits", "outputs 10 class scores but 1000 classes are evaluated"),
    ("tests.test_run_safety:nan_logits", "NaN or infinite logits"),
])
def test_a_model_with_the_wrong_output_is_refused_at_the_first_batch_naming_it(tmp_path, readable_set, factory,
                                                                              message):
    plan = plan_for(*readable_set)
    plan = replace(plan, model=replace(plan.model, factory=factory))
    with pytest.raises(ModelOutputError, match=rf"custom:{factory}.*{message}"):
        run(plan, tmp_path / "run")
    parts = list((tmp_path / "run" / "records").glob("part-*.jsonl"))
    assert not parts  # nothing recorded as if the images had failed


# ----------------------------------------------------------------------------- the method's outputs


@dataclass(frozen=True)
class Signed(TargetwiseMethod):
    name: ClassVar[str] = "signed"

    def attribute(self, classifier, crops, targets):
        return crops[:, 0] - 0.5  # negative where the red channel is dark


@dataclass(frozen=True)
class PerChannel(TargetwiseMethod):
    name: ClassVar[str] = "per_channel"

    def attribute(self, classifier, crops, targets):
        return crops.abs()  # (N, 3, h, w)


@dataclass(frozen=True)
class Broken(TargetwiseMethod):
    name: ClassVar[str] = "broken"

    def attribute(self, classifier, crops, targets):
        raise RuntimeError("the plugin broke")


@dataclass(frozen=True)
class NumpyMaps(TargetwiseMethod):
    name: ClassVar[str] = "numpy_maps"

    def attribute(self, classifier, crops, targets):
        return np.ones((crops.shape[0], *crops.shape[2:]), np.float32)


@dataclass(frozen=True)
class Infinite(TargetwiseMethod):
    name: ClassVar[str] = "infinite"

    def attribute(self, classifier, crops, targets):
        maps = torch.ones((crops.shape[0], *crops.shape[2:]))
        maps[:, 3, 3] = float("inf")
        return maps


@pytest.mark.parametrize(("method", "message"), [
    (Signed(), "saliency method signed returned negative values"),
    (PerChannel(), r"saliency method per_channel returned maps of shape \(1, 3, 56, 56\); "
                   r"expected \(N, h, w\) = \(1, 56, 56\) \(per-channel"),
])
def test_a_method_breaking_the_contract_stops_the_run_naming_it(tmp_path, readable_set, method, message):
    with pytest.raises(SaliencyContractError, match=message):
        run(plan_for(*readable_set, method=method), tmp_path / "run")


def test_a_method_that_raises_or_gives_non_finite_maps_fails_those_images_only(tmp_path, readable_set):
    metrics = run(plan_for(*readable_set, method=Broken()), tmp_path / "broken")
    per_image = pd.read_csv(tmp_path / "broken" / "per_image.csv")
    assert metrics["n_failed"] == 3 and metrics["loc_error_at_k"][-1] == 1.0
    assert per_image.error.str.contains(r"saliency \(broken\): RuntimeError: the plugin broke").all()
    metrics = run(plan_for(*readable_set, method=Infinite()), tmp_path / "infinite")
    assert metrics["n_failed"] == 3 and metrics["maxboxacc_n_without_map"] == 3  # never a hit, never a box
    assert pd.read_csv(tmp_path / "infinite" / "per_image.csv").error.str.contains("NaN or infinite").all()
    assert run(plan_for(*readable_set, method=NumpyMaps()), tmp_path / "numpy")["n_failed"] == 0


def test_a_box_extractor_given_as_the_method_is_refused_before_anything_loads():
    with pytest.raises(TypeError, match="is not a saliency method"):
        localisation_plan(compose_cfg("saliency=custom", "saliency.method=wsol_bench.segmentation.baselines:Center"))


def test_an_inverted_box_from_an_extractor_is_an_error_naming_it():
    from wsol_bench.boxes import Box
    from wsol_bench.segmentation import BoxExtractor, localise_image

    @dataclass(frozen=True)
    class Inverted(BoxExtractor):
        name: ClassVar[str] = "inverted"

        def prepare(self, image):
            return None

        def localise(self, prepared, saliency):
            return Localisation(Box(10, 5, 2, 8), None, None)

    with pytest.raises(ValueError, match="box extractor inverted: box .* has xmin > xmax"):
        localise_image(Inverted(), np.zeros((20, 20, 3), np.uint8), np.ones((1, 20, 20)))


# ----------------------------------------------------------------------------- metrics


@dataclass
class Clashing(Evaluator):
    """Returns a key the ilsvrc metric writes, and a value JSON cannot hold."""

    name: ClassVar[str] = "clashing"

    def start(self, ground_truth) -> None:
        pass

    def accumulate(self, results) -> None:
        return None

    def compute(self) -> dict:
        return {"top5_loc_error": 0.0, "loc_error_at_k": [0.0], "odd": {1, 2}, "when": np.float32(0.5)}


@dataclass
class FailsOnImages(Evaluator):
    name: ClassVar[str] = "fails_on_images"
    needs_maps: ClassVar[bool] = True

    def start(self, ground_truth) -> None:
        self.n = 0

    def image_state(self, sample) -> int:
        raise ValueError(f"cannot read {sample.image_id}")

    def accumulate(self, results) -> None:
        self.n += sum(1 for r in results if "fails_on_images" in r.states)

    def compute(self) -> dict:
        return {"fails_on_images_with_state": self.n}


def test_a_metric_never_overwrites_another_and_fails_alone(tmp_path, readable_set):
    plan = plan_for(*readable_set)
    plan = replace(plan, evaluators=(*plan.evaluators, Clashing(), FailsOnImages()))
    metrics = run(plan, tmp_path / "run")
    assert metrics["loc_error_at_k"] != [0.0] and metrics["clashing.loc_error_at_k"] == [0.0]  # namespaced
    assert metrics["odd"] == [1, 2] and metrics["when"] == 0.5  # written, whatever the type
    assert metrics["n_failed"] == 0 and metrics["maxboxacc_n_without_map"] == 0  # the images and other metrics
    assert metrics["metric_failures"] == {"fails_on_images": 3} and metrics["fails_on_images_with_state"] == 0
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv")
    assert per_image.metric_failures.str.contains("fails_on_images: ValueError: cannot read img").all()
    assert "`fails_on_images` state failed" in (tmp_path / "run" / "report.md").read_text()


# ----------------------------------------------------------------------------- what the reports say


def test_reports_say_what_ran_and_one_iou_definition(tmp_path, readable_set):
    from wsol_bench.figures.localisation import score_guesses

    images, ann = readable_set
    metrics = run(plan_for(images, ann, method=saliency_method("gradcam")), tmp_path / "run")
    report = (tmp_path / "run" / "report.md").read_text()
    assert ("This run: model `custom:tests.helpers:tiny_net`, saliency `gradcam`, crops `1 x 56px of 64px, top-5`, "
            f"segmentation `center`, data `{images} (3 images)`.") in report
    assert metrics["saliency"] == "gradcam" and metrics["table"]["saliency"] == "gradcam"
    assert "demo" not in metrics["data"]  # a folder of the user's images is not called the demo
    per_image = pd.read_csv(tmp_path / "run" / "per_image.csv")
    truth = load_evaluation_set(DatasetSpec(images=str(images), annotations=str(ann))).ground_truth
    for row in per_image.itertuples():
        boxes = [wsol_box(getattr(row, f"box_{k}"), getattr(row, f"synset_{k}")) for k in range(1, 6)]
        figure = score_guesses(boxes, truth[row.image_id].boxes)
        assert [g.iou for g in figure] == pytest.approx([getattr(row, f"iou_same_class_{k}") for k in range(1, 6)])


def wsol_box(text: str, synset: str):
    from wsol_bench.boxes import Box

    return Box(*(int(v) for v in text.split()), synset)


@pytest.mark.slow  # a real run, interrupted
def test_ctrl_c_says_how_to_resume_in_one_line(tmp_path, small_set):
    import signal

    out = tmp_path / "run"
    args = [a for a in small_run_overrides(*small_set, out) if not a.startswith("run.processes")]
    proc = subprocess.Popen([sys.executable, "-m", "wsol_bench", *args, "run.processes=2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list((out / "records").glob("part-*")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130, output[-3000:]
    assert f"resume with the same command and hydra.run.dir={out} run.resume=true" in output
    assert "Traceback" not in output and "leaked semaphore" not in output
