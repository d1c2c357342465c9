"""The model-parameter randomisation test as a function (wsol_bench.sanity) and as task=sanity."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.helpers import run_cli
from wsol_bench.models import Classifier
from wsol_bench.registry import make_params
from wsol_bench.saliency import saliency_method
from wsol_bench.sanity import (
    SanityImage,
    SanitySettings,
    centre_crop,
    randomisation_test,
    sanity_methods,
    write_sanity_outputs,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_classifier() -> Classifier:
    """conv-ReLU-conv-ReLU-conv-ReLU, global average pooling, linear: 4 stages, trained-like weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 5)).eval()
    with torch.no_grad():  # weights unlike a fresh initialisation, so that re-drawing them changes the maps
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return Classifier(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "tiny", "tiny:0", target_layer="5")


def images(n: int = 3, size: int = 24) -> list[SanityImage]:
    rng = np.random.default_rng(1)
    return [SanityImage(f"im{k}", rng.integers(0, 256, (size, size, 3), dtype=np.uint8), k % 5) for k in range(n)]


@pytest.fixture(scope="module")
def result():
    torch.set_num_threads(1)
    clf = tiny_classifier()
    before = {k: v.clone() for k, v in clf.module.state_dict().items()}
    methods = {"gradient": saliency_method("gradient"), "gradcam": saliency_method("gradcam"),
               "random": saliency_method("random")}
    out = randomisation_test(clf, methods, images(), modes=("cascading", "independent"), seed=0, keep_maps=2,
                             batch_images=2)
    after = clf.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the trained model is never changed
    return out


def test_rows_stages_and_the_trained_stage(result):
    table = result.table
    assert list(table.columns) == ["method", "mode", "stage_index", "stage", "image_id", "spearman", "ssim"]
    assert [s.name for s in result.stages] == ["8", "4", "2", "0"]  # the logits first
    assert result.stage_names == ["trained", "8", "4", "2", "0"]
    assert len(table) == 3 * 2 * 5 * 3  # methods x modes x (trained + 4 stages) x images
    trained = table[table.stage_index == 0]
    assert (trained.stage == "trained").all() and (trained.spearman == 1).all() and (trained.ssim == 1).all()


def test_gradient_drifts_away_and_the_random_map_does_not(result):
    summary = result.summary().set_index(["method", "mode", "stage_index"]).sort_index()
    cascading = summary.loc[("gradient", "cascading")]
    assert cascading.loc[4, "spearman_mean"] < 0.6 and cascading.loc[4, "ssim_mean"] < 0.6
    assert cascading.loc[4, "spearman_mean"] < cascading.loc[1, "spearman_mean"] < 1
    random = result.table[result.table.method == "random"]
    assert (random.spearman == 1).all() and (random.ssim == 1).all()  # independent of the model
    assert summary.loc[("gradient", "cascading", 4), "n_images"] == 3


def test_independent_first_stage_is_the_cascades_first(result):
    t = result.table.set_index(["method", "mode", "stage_index", "image_id"]).sort_index()
    for method in ("gradient", "gradcam"):
        pd.testing.assert_frame_equal(t.loc[(method, "cascading", 1)], t.loc[(method, "independent", 1)])
        assert not t.loc[(method, "cascading", 4)].equals(t.loc[(method, "independent", 4)])


def test_kept_maps_and_outputs(result, tmp_path):
    assert list(result.maps) == ["im0", "im1"] and list(result.images) == ["im0", "im1"]
    maps = result.maps["im0"]["cascading"]["gradient"]
    assert len(maps) == 5 and maps[0].shape == (24, 24)
    headline = write_sanity_outputs(result, tmp_path)
    for name in ("sanity.csv", "sanity_summary.csv", "sanity.png", "sanity_curves.png", "sanity_independent.png",
                 "sanity_curves_independent.png", "sanity_im1.png", "sanity_im1_independent.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "sanity.csv"), result.table, check_dtype=False)
    last = result.summary()
    last = last[(last.stage_index == 4) & (last["mode"] == "cascading")].set_index("method")
    assert headline["cascading"]["gradient"]["spearman"] == pytest.approx(last.loc["gradient", "spearman_mean"])
    assert headline["independent"]["random"] == {"spearman": 1.0, "ssim": 1.0}


def test_settings_and_methods_are_checked():
    with pytest.raises(ValueError, match=r"^sanity\.mode='sideways'"):
        make_params(SanitySettings, {"mode": "sideways"}, "sanity")
    with pytest.raises(ValueError, match=r"^sanity\.methods="):
        make_params(SanitySettings, {"methods": []}, "sanity")
    with pytest.raises(ValueError, match=r"^sanity\.params="):
        make_params(SanitySettings, {"methods": ["gradient"], "params": {"gradcam": {}}}, "sanity")
    with pytest.raises(ValueError, match=r"^sanity\.resize=100"):
        make_params(SanitySettings, {"resize": 100}, "sanity")
    with pytest.raises(ValueError, match=r"sanity\.params\.smoothgrad\.n_samples=0"):
        sanity_methods(SanitySettings(methods=("smoothgrad",), params={"smoothgrad": {"n_samples": 0}}))
    with pytest.raises(ValueError, match=r"sanity\.params\.integrated_gradients\.steps: not a parameter"):
        sanity_methods(SanitySettings(methods=("integrated_gradients",), params={"integrated_gradients": {"steps": 2}}))
    with pytest.raises(ValueError, match="sanity.methods: 'gradients' is not one of"):
        sanity_methods(SanitySettings(methods=("gradients",)))
    built = sanity_methods(SanitySettings(methods=("smoothgrad", "cam"), params={"smoothgrad": {"n_samples": 3}}))
    assert built["smoothgrad"].n_samples == 3 and built["smoothgrad"].method.name == "gradient"
    assert SanitySettings(mode="both").modes == ("cascading", "independent")
    with pytest.raises(ValueError, match="smaller than the 224x224 crop"):
        centre_crop(np.zeros((200, 300, 3), np.uint8), 224)
    assert centre_crop(np.arange(5 * 7 * 3).reshape(5, 7, 3), 2).shape == (2, 2, 3)


def test_sanity_task_end_to_end_on_two_demo_images(tmp_path):
    out = tmp_path / "run"
    res = run_cli("task=sanity", "model.weights=random", "dataset.limit=2", "sanity.methods=[gradient,random]",
                  "sanity.resize=64", "sanity.crop=56", f"hydra.run.dir={out}",
                  f"dataset.demo_dir={tmp_path / 'demo'}", timeout=600)
    assert res.returncode == 0, res.stdout[-3000:]
    table = pd.read_csv(out / "sanity.csv")
    assert len(table) == 2 * 11 * 2 and set(table["mode"]) == {"cascading"}  # Lite0: 10 stages and the trained
    assert table.groupby("image_id").size().to_dict() == {"demo_camera": 22, "demo_chelsea": 22}
    info = json.loads((out / "sanity.json").read_text())
    assert info["stages"][0]["name"] == "classifier" and info["stages"][-1]["name"] == "conv_stem+bn1"
    assert info["model"]["weights"] == "random:seed0" and info["model"]["transforms"] == []  # not BatchNorm-folded
    assert info["last_stage"]["cascading"]["random"] == {"spearman": 1.0, "ssim": 1.0}
    assert (out / "sanity.png").stat().st_size > 10_000 and (out / "sanity_curves.png").stat().st_size > 10_000
    assert "| gradient" in res.stdout


def test_bad_sanity_key_fails_before_loading():
    res = run_cli("task=sanity", "sanity.mode=sideways", "model.weights=random")
    assert res.returncode != 0 and "sanity.mode='sideways'" in res.stdout


def test_sanity_section_composes_with_method_parameters_without_plus():
    from tests.helpers import compose_cfg
    from wsol_bench.tasks.sanity import sanity_settings

    cfg = compose_cfg("task=sanity", "sanity.methods=[smoothgrad,gradcam]", "sanity.params.smoothgrad.n_samples=8",
                      "sanity.mode=both")
    settings = sanity_settings(cfg)
    assert settings == SanitySettings(methods=("smoothgrad", "gradcam"), mode="both",
                                      params={"smoothgrad": {"n_samples": 8}})
    assert sanity_methods(settings)["smoothgrad"].n_samples == 8
