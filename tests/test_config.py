"""Config composition: groups, experiments, one home per setting, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from tests.helpers import CONF_DIR, compose_cfg
from wsol_bench.data.sources import DatasetSpec
from wsol_bench.metrics import METRICS
from wsol_bench.models import ModelSpec
from wsol_bench.pipeline.settings import EngineSettings, RunSettings
from wsol_bench.registry import params_dict
from wsol_bench.saliency import SALIENCY_METHODS, CropSettings, NoiseTunnel
from wsol_bench.sanity import SanitySettings
from wsol_bench.segmentation import BOX_EXTRACTORS
from wsol_bench.tasks.factory import localisation_plan


def test_default_config_composes():
    cfg = compose_cfg()
    assert cfg.task.name == "localise"
    assert cfg.model.name == "efficientnet_lite0"
    assert cfg.segmentation.method == "graphcut"


def test_evaluate_task_uses_no_image_dataset():
    cfg = compose_cfg("task=evaluate", "evaluate.format=devkit")
    assert cfg.task.name == "evaluate" and cfg.dataset.images is None


@pytest.mark.parametrize(("section", "cls"), [("dataset", DatasetSpec), ("model", ModelSpec), ("tta", CropSettings),
                                              ("engine", EngineSettings), ("run", RunSettings),
                                              ("sanity", SanitySettings)])
def test_typed_sections_are_the_parts_dataclasses(section, cls):
    """One home per setting: the schema's keys and defaults are the dataclass's own (the
    presets may override values, never add or drop keys)."""
    node = OmegaConf.to_container(compose_cfg()[section])
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in params_dict(cls()).items()}
    assert set(node) == set(defaults)
    if section in ("tta", "engine", "run", "sanity"):  # no preset touches these in the default config
        assert node == defaults


def _presets(group: str) -> list[Path]:
    return sorted(p for p in (CONF_DIR / group).glob("*.yaml") if p.stem != "custom")


@pytest.mark.parametrize("path", _presets("saliency") + _presets("segmentation"),
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_method_preset_lists_exactly_its_parameters_with_their_defaults(path):
    own = yaml.safe_load(path.read_text())
    registry = SALIENCY_METHODS if path.parent.name == "saliency" else BOX_EXTRACTORS
    listed = {k: v for k, v in own.items() if k not in ("method", "noise_tunnel")}
    assert listed == params_dict(registry.get(own["method"])())
    if "noise_tunnel" in own:
        tunnel = NoiseTunnel(registry.get(own["method"])())
        assert own["noise_tunnel"] == {k: v for k, v in params_dict(tunnel).items() if k != "method"}


def test_the_evaluation_preset_lists_every_metric_with_its_defaults():
    own = yaml.safe_load((CONF_DIR / "evaluation" / "default.yaml").read_text())
    for name in own["metrics"]:
        assert own.get(name, {}) == {k: list(v) if isinstance(v, tuple) else v
                                     for k, v in params_dict(METRICS.get(name)()).items()}, name


def test_no_private_option_files():
    """Hydra lists every file of a group as an option: none may be a fragment (``_crops``)."""
    assert not [p for p in CONF_DIR.rglob("*.yaml") if p.name.startswith("_")]


@pytest.mark.parametrize("override", ["dataset.limt=3", "model.nam=x", "tta.crop_size=3", "engine.workers=2"])
def test_misspelt_typed_key_fails_with_its_name(override):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(override)
    key = override.split("=")[0]
    assert key in str(err.value) or key.split(".")[1] in str(err.value.__cause__)


@pytest.mark.parametrize(("override", "message"), [
    ("segmentation.fg_quantil=0.9", "segmentation.fg_quantil: not a parameter of GraphCut (its parameters: "),
    ("saliency.n_samples=3", "saliency.n_samples: not a parameter of Gradient (its parameters: none)"),
    ("saliency.noise_tunnel.samples=3", "saliency.noise_tunnel.samples: not a parameter of NoiseTunnel"),
])
def test_a_method_parameter_needs_no_plus_and_a_wrong_one_is_named_with_the_allowed_ones(override, message):
    with pytest.raises(ValueError) as err:
        localisation_plan(compose_cfg(override))
    assert message in str(err.value)


@pytest.mark.parametrize("override, message", [
    ("tta.top_k=0", "tta.top_k=0: must be between 1 and 1000"),
    ("tta.crops=3", "tta.crops=3: must be 1, 2 or 10"),
    ("engine.batch_images=0", "engine.batch_images=0: must be >= 1"),
    ("tta.crop=300", "tta.resize=256: must be >= crop (300)"),
    ("dataset.limit=-1", "dataset.limit=-1: must be null or >= 1"),
    ("evaluation.ilsvrc.iou_threshold=-1", "evaluation.ilsvrc.iou_threshold=-1.0: must be in (0, 1]"),
    ("engine.segmentation_workers=-1", "engine.segmentation_workers=-1: must be auto or an integer >= 0"),
    ("engine.loader_workers=many", "engine.loader_workers='many': must be an integer or 'auto'"),
    ("run.processes=0", "run.processes=0: must be auto or an integer >= 1"),
    ("segmentation.fg_quantile=0.2", "segmentation.fg_quantile=0.2: must be in (bg_quantile=0.3, 1]"),
    ("segmentation.max_side=abc", "segmentation.max_side='abc': must be an integer or null"),
    ("saliency.method=smoothgradient", "saliency.method='smoothgradient' is not one of"),
    ("model.num_classes=0", "model.num_classes=0: must be >= 1"),
    ("run.figures=-2", "run.figures=-2: must be >= 0"),
    ("tta.top_k=1", "tta.top_k=1 gives 1 guesses per image but evaluation.ilsvrc.max_guesses=5 scores 5"),
])
def test_every_setting_is_range_checked_before_anything_loads(override, message):
    cfg = compose_cfg(override, "dataset.images=/does/not/exist")  # nothing is read: the check comes first
    with pytest.raises(ValueError) as err:
        localisation_plan(cfg)
    assert message in str(err.value)


def test_wrong_type_fails_with_its_name():
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg("dataset.limit=abc")
    assert isinstance(err.value.__cause__, ValidationError)
    assert "dataset.limit" in str(err.value.__cause__)


def test_dataset_paths_are_made_absolute_and_shared_sample_does_not_depend_on_the_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = localisation_plan(compose_cfg("dataset.images=imgs", "dataset.annotations=../ann"))
    assert plan.dataset.images == str(tmp_path / "imgs") and plan.dataset.annotations == str(tmp_path.parent / "ann")
    shared = localisation_plan(compose_cfg("dataset=shared_sample")).dataset
    assert Path(shared.images).is_absolute() and shared.images.endswith("shared/ilsvrc_val_sample/images")
    monkeypatch.setenv("WSOL_BENCH_SHARED", "/elsewhere")
    moved = localisation_plan(compose_cfg("dataset=shared_sample")).dataset
    assert moved.images == "/elsewhere/ilsvrc_val_sample/images"


def test_slurm_launcher_config_composes():
    cfg = compose_cfg("hydra/launcher=slurm", return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1


def test_paper_experiment_sets_the_published_protocol():
    cfg = compose_cfg("+experiment=ilsvrc2013", "dataset.root=/data/imagenet")
    assert (cfg.tta.crops, cfg.tta.top_k) == (10, 5)
    seg = cfg.segmentation
    assert (seg.method, seg.fg_quantile, seg.bg_quantile) == ("graphcut", 0.95, 0.3)
    plan = localisation_plan(cfg)
    extractor = plan.extractor
    assert (extractor.smooth_sigma, extractor.max_side, extractor.keep_components) == (0.0, None, "largest")
    assert cfg.dataset.name == "ilsvrc_val" and cfg.dataset.root == "/data/imagenet"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_passes_the_range_checks(experiment):
    cfg = compose_cfg(f"+experiment={experiment}")
    if cfg.task.name == "localise":
        plan = localisation_plan(cfg)  # every method's parameters checked, nothing loaded
        assert plan.extractor.name == cfg.segmentation.method


def test_best_experiment_is_the_lite2_lite0_cam_ensemble_with_a_threshold_box():
    plan = localisation_plan(compose_cfg("+experiment=best"))
    assert plan.model.name == "efficientnet_lite2" and plan.method.name == "cam"
    assert (plan.crops.resize, plan.crops.crop, plan.crops.crops) == (292, 260, 10)
    [lite0] = plan.localisers
    assert lite0.model.name == "efficientnet_lite0" and (lite0.crops.resize, lite0.crops.crop) == (384, 336)
    assert lite0.method is None and plan.own_maps  # the run's CAM, and Lite2's own maps join the average
    assert (plan.extractor.name, plan.extractor.threshold, plan.extractor.smooth_sigma) == ("threshold", 0.25, 0.0)


@pytest.mark.parametrize(("override", "message"), [
    ("ensemble.localisers=[{model:{name:nope}}]", "model.name"),
    ("ensemble.localisers=[{tta:{crops:3}}]", "ensemble.localisers[0].tta.crops=3: must be 1, 2 or 10"),
    ("ensemble.localisers=[{modle:{}}]", "ensemble.localisers[0].modle: not a key of a localiser"),
    ("ensemble.own_maps=false", "ensemble.own_maps=False: must be true when there is no localiser"),
])
def test_ensemble_settings_are_checked_before_anything_loads(override, message):
    with pytest.raises(ValueError) as err:
        localisation_plan(compose_cfg(override))
    assert message in str(err.value)


def test_tuned_experiment_spells_out_the_defaults():
    assert compose_cfg("+experiment=tuned").segmentation == compose_cfg().segmentation


def test_smoothgrad_of_any_method_is_a_config_not_code():
    plan = localisation_plan(compose_cfg("saliency=smoothgrad", "saliency.method=gradcam"))
    assert isinstance(plan.method, NoiseTunnel) and plan.method.method.name == "gradcam"
    assert plan.method.n_samples == 25
    plan = localisation_plan(compose_cfg("saliency=guided_backprop", "saliency.noise_tunnel.n_samples=4"))
    assert isinstance(plan.method, NoiseTunnel) and plan.method.n_samples == 4 and plan.method.noise == 0.15


def test_schema_fields_keep_their_dataclass_order():
    assert list(compose_cfg().tta) == [f.name for f in dataclasses.fields(CropSettings)]
