"""The Python API at the level researchers work: runs on data sets, ground truth, scoring,
other libraries' attribution objects and plain functions as methods, maps in every frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import wsol_bench
from tests.helpers import REPO, run_cli, tiny_net, write_xml
from wsol_bench.models import Classifier
from wsol_bench.saliency import attribution_maps, saliency_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def toy_set(tmp_path) -> tuple[Path, Path]:
    from PIL import Image

    images, ann = tmp_path / "images", tmp_path / "ann"
    images.mkdir()
    ann.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(images / f"img{k}.png")
        write_xml(ann, f"img{k}", [("n01440764", 30, 20, 49, 39)], w=80, h=60)
    return images, ann


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_three_guesses_against_fifteen_images(shared_sample):
    truth = wsol_bench.load_ground_truth(shared_sample / "xml")
    assert len(truth) == 15
    rows = [(i, 1, truth[i].label, *truth[i].boxes[0].coords) for i in sorted(truth)[:3]]
    guesses = pd.DataFrame(rows, columns=["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"])
    with pytest.raises(ValueError, match="12 of the 15 evaluated images have no guess .* missing=wrong"):
        wsol_bench.evaluate(guesses, truth)
    skipped = wsol_bench.evaluate(guesses, truth, missing="skip")
    assert skipped["n_scored"] == 3 and skipped["loc_error_at_k"][0] == 0.0 and skipped["n_missing"] == 12
    wrong = wsol_bench.evaluate(guesses, shared_sample / "xml", missing="wrong")
    assert wrong["loc_error_at_k"][0] == pytest.approx(12 / 15)


def test_evaluate_refuses_unknown_images_class_names_and_loose_values():
    truth = {"a": wsol_bench.ImageAnnotation("a", 100, 80, (wsol_bench.Box(1, 1, 50, 50, "n01440764"),))}
    columns = ["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"]
    with pytest.raises(ValueError, match="guesses for 1 images without ground truth .*b"):
        wsol_bench.evaluate(pd.DataFrame([("a", 1, "n01440764", 1, 1, 50, 50), ("b", 1, "n01440764", 1, 1, 5, 5)],
                                         columns=columns), truth)
    with pytest.raises(ValueError, match="tabby"):
        wsol_bench.evaluate(pd.DataFrame([("a", 1, "tabby", 1, 1, 50, 50)], columns=columns), truth)
    with pytest.raises(ValueError, match="rank"):
        wsol_bench.evaluate(pd.DataFrame([("a", 1.7, "n01440764", 1, 1, 50, 50)], columns=columns), truth)
    with pytest.raises(ValueError, match="xmin"):
        wsol_bench.evaluate(pd.DataFrame([("a", 1, "n01440764", "x", 1, 50, 50)], columns=columns), truth)


def test_score_maps_from_arrays_and_its_missing_rule():
    truth = {i: wsol_bench.ImageAnnotation(i, 224, 224, (wsol_bench.Box(50, 50, 150, 150, "n01440764"),))
             for i in ("a", "b")}
    inside = np.zeros((224, 224))
    inside[60:140, 60:140] = 1.0
    with pytest.raises(ValueError, match="1 of the 2 evaluated images have no score map"):
        wsol_bench.score_maps({"a": inside}, truth)
    figures = wsol_bench.score_maps({"a": inside}, truth, missing="skip")
    assert figures["maxboxacc"] == 100.0 and figures["pointing_game"] == 1.0 and figures["n_scored"] == 1
    assert wsol_bench.score_maps({"a": inside}, truth, missing="wrong")["maxboxacc"] == 50.0


# ----------------------------------------------------------------------------- methods from other libraries


def small_classifier() -> Classifier:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 7)).eval()
    return Classifier(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "small", "random:seed0", target_layer="3")


def test_captum_gradcam_and_functions_are_methods_equal_to_the_built_ins():
    import captum.attr as ca
    from pytorch_grad_cam import GradCAM

    clf = small_classifier()
    crops, targets = torch.rand(4, 3, 24, 24, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 3, 6, 2])
    gradient = attribution_maps(saliency_method("gradient"), clf, crops, targets)
    # captum objects are given the normalised crops: the gradient of the normalised input is std x ours
    got = attribution_maps(wsol_bench.as_method(ca.Saliency(clf.module)), clf, crops, targets)
    torch.testing.assert_close(got, 0.25 * gradient, rtol=1e-5, atol=1e-9)
    ig = attribution_maps(wsol_bench.as_method(ca.IntegratedGradients, {"n_steps": 8}), clf, crops, targets)
    ours = attribution_maps(saliency_method("integrated_gradients", n_steps=8), clf, crops, targets)
    # IG does not depend on the input space (but its baseline does: the normalised zero is the mean colour)
    assert ig.shape == ours.shape and float(ig.max()) > 0
    # a function gets the classifier on [0, 1] RGB and the crops: the paper's gradient exactly
    fn = wsol_bench.as_method(lambda model, x, t: ca.Saliency(model).attribute(x, target=t))
    torch.testing.assert_close(attribution_maps(fn, clf, crops, targets), gradient, rtol=1e-5, atol=1e-9)
    # pytorch-grad-cam's Grad-CAM is ours, min-max normalised per map (its convention)
    layer = clf.module[3]
    theirs = attribution_maps(wsol_bench.as_method(GradCAM(model=clf.module, target_layers=[layer])), clf, crops,
                              targets)
    gradcam = attribution_maps(saliency_method("gradcam"), clf, crops, targets)
    for a, b in zip(theirs, gradcam):
        if float(b.max()) > 0:
            assert float(np.corrcoef(a.flatten(), b.flatten())[0, 1]) > 0.99
    assert not fn.cacheable and wsol_bench.as_method(ca.IntegratedGradients).cacheable


def test_a_method_object_of_the_wrong_kind_or_output_is_named():
    with pytest.raises(TypeError, match="is not a saliency method"):
        wsol_bench.as_method(42)
    clf = small_classifier()
    bad = wsol_bench.as_method(lambda model, x, t: x[:, :2])
    with pytest.raises(ValueError, match="returned shape \\(2, 2, 24, 24\\)"):
        attribution_maps(bad, clf, torch.rand(2, 3, 24, 24), torch.tensor([0, 1]))


@pytest.mark.slow  # runs the CLI
def test_a_captum_class_as_saliency_custom_on_the_command_line_equals_the_gradient(tmp_path, toy_set):
    images, ann = toy_set
    # one std for every channel: the gradient of the normalised input captum takes is ours x 0.25 exactly
    common = [f"dataset.images={images}", f"dataset.annotations={ann}", "model=custom",
              "model.factory=tests.helpers:tiny_net", "model.weights=random", "model.mean=[0.5,0.5,0.5]",
              "model.std=[0.25,0.25,0.25]", "tta.resize=64", "tta.crop=56",
              "tta.crops=1", "engine.cache=false", "segmentation=threshold", "run.progress=false",
              "run.processes=1", "evaluation.metrics=[ilsvrc,maxboxacc]"]
    for name, extra in (("captum", ["saliency=custom", "saliency.method=captum.attr:Saliency"]),
                        ("gradient", [])):
        res = run_cli(*common, *extra, f"hydra.run.dir={tmp_path / name}")
        assert res.returncode == 0, res.stdout[-3000:]
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("captum", "gradient"))
    assert a["saliency"] == "captum" and a["maxboxacc_curve"] == b["maxboxacc_curve"]  # scale-free: equal
    predictions = [(tmp_path / n / "predictions.csv").read_text() for n in ("captum", "gradient")]
    assert predictions[0] == predictions[1]


# ----------------------------------------------------------------------------- runs and results


def test_run_on_a_folder_gives_tables_names_and_maps_in_every_frame(tmp_path, toy_set):
    images, ann = toy_set
    result = wsol_bench.run(images, ann, model=tiny_net(), method="gradcam", segmenter="threshold",
                            tta=wsol_bench.CropSettings(resize=64, crop=56, crops=1),
                            engine=wsol_bench.EngineSettings(cache_dir=str(tmp_path / "cache")),
                            out_dir=tmp_path / "run", processes=1, progress=False)
    assert result.metrics["n_images"] == 3 and result.run_dir == tmp_path / "run"
    assert list(result.per_image.image_id) == ["img0", "img1", "img2"]
    per_image = result.per_image
    assert per_image.columns.get_loc("synset_1_name") == per_image.columns.get_loc("synset_1") + 1
    assert list(per_image.label_name) == ["tench"] * 3  # every toy image is a tench
    assert "name" in result.predictions and (result.predictions.name != "").all()
    assert result.predictions.loc[result.predictions.synset == "n01440764", "name"].eq("tench").all()
    original, resized, wsol = (result.maps("img1", frame=f) for f in ("original", "resized", "wsol"))
    assert original.shape == (60, 80) and resized.shape == (64, 85) and wsol.shape == (224, 224)
    assert wsol.min() >= 0 and wsol.max() <= 1
    top1 = result.predictions.query("image_id == 'img1' and rank == 1").synset.item()
    assert result.maps("img1", top1).shape == (60, 80)
    assert result.show("img1").axes  # draws
    again = wsol_bench.run(images, ann, model=tiny_net(), method="gradcam", segmenter="threshold",
                           tta=wsol_bench.CropSettings(resize=64, crop=56, crops=1),
                           engine=wsol_bench.EngineSettings(cache_dir=str(tmp_path / "cache")),
                           out_dir=tmp_path / "run", processes=1, progress=False, resume=True)
    assert again.metrics["rank0_batches_done"] == 0
    assert again.metrics["loc_error_at_k"] == result.metrics["loc_error_at_k"]


def test_run_on_a_list_of_paths_with_ground_truth(tmp_path, toy_set):
    images, ann = toy_set
    truth = wsol_bench.load_ground_truth(ann)
    result = wsol_bench.run([images / "img2.png", images / "img0.png"], truth, model=tiny_net(), method="cam",
                            segmenter="center", tta=wsol_bench.CropSettings(resize=64, crop=56, crops=1),
                            metrics=["ilsvrc"], engine=wsol_bench.EngineSettings(cache=False),
                            out_dir=tmp_path / "run", processes=1, progress=False)
    assert list(result.per_image.image_id) == ["img2", "img0"] and result.metrics["n_images"] == 2
    with pytest.raises(ValueError, match="no saliency cache"):
        result.maps("img0")
    with pytest.raises(ValueError, match="1 images have no ground truth .*img1"):
        wsol_bench.run([images / "img1.png"], {}, model=tiny_net())


# ----------------------------------------------------------------------------- one image


def test_localise_names_classes_maps_any_class_and_refuses_normalised_tensors():
    from skimage import data

    cat = data.chelsea()
    net = tiny_net()
    result = wsol_bench.localise(net, cat, method="cam", segmenter="threshold", top_k=2,
                                 crops=1, classes=["n02123045"])
    assert result.classes[-1] == "n02123045" and result.names[-1] == "tabby" and len(result.classes) == 3
    assert result.map_of("n02123045").shape == cat.shape[:2]
    assert result.map_of("n02123045", frame="wsol").shape == (224, 224)
    assert result.scoremaps().shape == (3, 224, 224) and result.scoremaps().max() <= 1
    assert list(result.table().columns) == ["rank", "synset", "name", "score", "box"]
    assert result.show().axes
    tensor = torch.from_numpy(cat).permute(2, 0, 1).float() / 255
    normalised = (tensor - 0.45) / 0.22
    with pytest.raises(ValueError, match="normalised"):
        wsol_bench.localise(net, normalised, method="cam", crops=1)
    undone = wsol_bench.localise(net, normalised, method="cam", segmenter="center", crops=1,
                                 normalisation=([0.45] * 3, [0.22] * 3))
    direct = wsol_bench.localise(net, tensor, method="cam", segmenter="center", crops=1)
    assert undone.classes == direct.classes


def test_overlay_draws_a_map_and_labelled_boxes():
    image = np.zeros((50, 80, 3), np.uint8)
    saliency = np.zeros((50, 80), np.float32)
    saliency[10:20, 30:40] = 1.0
    fig = wsol_bench.overlay(image, saliency, [wsol_bench.Box(30, 10, 39, 19, "n01440764")], title="x")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == [" n01440764 "]
    from wsol_bench.figures.overlay import heatmap_overlay

    blended = heatmap_overlay(image, saliency)
    assert blended[15, 35].sum() > blended[40, 5].sum()  # the hot region is brighter


@pytest.mark.slow  # three methods on 20 real images
def test_the_python_api_document_runs_as_written(shared_sample, tmp_path, monkeypatch):
    text = (REPO / "docs" / "python_api.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert blocks and len(blocks[0].strip().splitlines()) <= 15
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WSOL_BENCH_SHARED", str(shared_sample.parent))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/python_api.md", "exec"), namespace)
    assert (tmp_path / "methods.png").stat().st_size > 1000
