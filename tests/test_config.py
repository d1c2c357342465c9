"""Config composition: groups, experiments, and schema errors that name the key."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigAttributeError, ValidationError

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


@pytest.mark.parametrize("override", ["dataset.limt=3", "segmentation.fg_quantil=0.9"])
def test_misspelt_key_fails_with_its_name(override):
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(override)
    assert isinstance(err.value.__cause__, ConfigAttributeError)
    assert override.split("=")[0].split(".")[1] in str(err.value.__cause__)


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
    assert cfg.dataset.name == "ilsvrc_val" and cfg.dataset.root == "/data/imagenet"
