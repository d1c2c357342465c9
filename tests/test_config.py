"""Config composition: groups, experiments, and schema errors that name the key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from tests.helpers import CONF_DIR
from wsol_bench.config import register_configs

register_configs()


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_default_config_composes():
    cfg = compose_cfg()
    assert cfg.task.name == "localise"
    assert cfg.model.name == "efficientnet_lite0"
    assert cfg.segmentation.method == "graphcut"


def test_evaluate_task_uses_no_image_dataset():
    cfg = compose_cfg("task=evaluate", "evaluate.format=devkit")
    assert cfg.task.name == "evaluate" and cfg.dataset.images is None


@pytest.mark.parametrize("override", ["dataset.limt=3", "segmentation.fg_quantil=0.9", "saliency.n_sample=3"])
def test_misspelt_key_fails_with_its_name(override):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(override)
    assert override.split("=")[0] in str(err.value) or override.split("=")[0].split(".")[1] in str(err.value.__cause__)


@pytest.mark.parametrize("override, message", [
    ("saliency.top_k=0", "saliency.top_k=0: must be between 1 and 1000"),
    ("saliency.crops=3", "saliency.crops=3: must be 1, 2 or 10"),
    ("saliency.batch_images=0", "saliency.batch_images=0: must be >= 1"),
    ("saliency.crop=300", "saliency.resize=256: must be >= crop (300)"),
    ("dataset.limit=-1", "dataset.limit=-1: must be null or >= 1"),
    ("evaluation.ilsvrc.iou_threshold=-1", "evaluation.ilsvrc.iou_threshold=-1.0: must be in (0, 1]"),
    ("segmentation.workers=-1", "segmentation.workers=-1: must be >= 0"),
    ("segmentation.fg_quantile=0.2", "segmentation.fg_quantile=0.2: must be in (bg_quantile=0.3, 1]"),
    ("segmentation.max_side=abc", "segmentation.max_side='abc': must be an integer or null"),
    ("+segmentation.fg_quantil=0.9", "segmentation.fg_quantil: not a parameter of GraphCut"),
    ("saliency.method=smoothgradient", "saliency.method='smoothgradient' is not one of"),
    ("model.num_classes=0", "model.num_classes=0: must be >= 1"),
    ("run.figures=-2", "run.figures=-2: must be >= 0"),
])
def test_every_setting_is_range_checked_before_anything_loads(override, message):
    from wsol_bench.tasks.factory import localisation_plan

    cfg = compose_cfg(override, "dataset.images=/does/not/exist")  # nothing is read: the check comes first
    with pytest.raises(ValueError) as err:
        localisation_plan(cfg)
    assert message in str(err.value)


def test_wrong_type_fails_with_its_name():
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg("dataset.limit=abc")
    assert isinstance(err.value.__cause__, ValidationError)
    assert "dataset.limit" in str(err.value.__cause__)


def test_slurm_launcher_config_composes():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.gpus_per_node == 1


def test_paper_experiment_sets_the_published_protocol():
    cfg = compose_cfg("+experiment=ilsvrc2013", "dataset.root=/data/imagenet")
    assert (cfg.saliency.crops, cfg.saliency.top_k) == (10, 5)
    assert (cfg.segmentation.method, cfg.segmentation.fg_quantile, cfg.segmentation.bg_quantile) == ("graphcut", 0.95, 0.3)
    plan = __import__("wsol_bench.tasks.factory", fromlist=["x"]).localisation_plan(cfg)
    assert (plan.extractor.smooth_sigma, plan.extractor.max_side, plan.extractor.keep_components) == (0.0, None, "largest")
    assert cfg.dataset.name == "ilsvrc_val" and cfg.dataset.root == "/data/imagenet"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_passes_the_range_checks(experiment):
    from wsol_bench.tasks.factory import localisation_plan

    cfg = compose_cfg(f"+experiment={experiment}")
    if cfg.task.name == "localise":
        plan = localisation_plan(cfg)  # every method's parameters checked, nothing loaded
        assert plan.extractor.name == cfg.segmentation.method


def test_best_experiment_is_cam_with_unblurred_graphcut():
    cfg = compose_cfg("+experiment=best")
    plan = __import__("wsol_bench.tasks.factory", fromlist=["x"]).localisation_plan(cfg)
    assert cfg.saliency.method == "cam" and cfg.saliency.crops == 10
    assert (plan.extractor.name, plan.extractor.smooth_sigma, plan.extractor.max_side) == ("graphcut", 0.0, 160)


def test_tuned_experiment_spells_out_the_defaults():
    assert compose_cfg("+experiment=tuned").segmentation == compose_cfg().segmentation
