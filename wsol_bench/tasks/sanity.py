"""``task=sanity``: the model-parameter randomisation test (Adebayo et al. 2018) for the
methods of ``sanity.methods`` on the images of the ``dataset`` section (``dataset.limit=N``
for the first N), with the ``model`` section's classifier as built (not BatchNorm-folded).
The computation is :func:`wsol_bench.sanity.randomisation_test`.

Outputs (run dir): ``sanity.csv`` (method, mode, stage_index, stage, image_id, spearman,
ssim), ``sanity_summary.csv`` (means and standard deviations per method, mode and stage),
``sanity.json`` (settings, model, data, stages, the last stage's means, skipped images),
``sanity.png`` (the maps of the first image: rows methods, columns stages) and
``sanity_curves.png`` (similarity against the stages); ``sanity_independent.png`` and
``sanity_curves_independent.png`` too with ``sanity.mode=both``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from omegaconf import DictConfig

from wsol_bench.data.images import ImageReadError, read_rgb
from wsol_bench.data.sources import load_evaluation_set
from wsol_bench.frames import resize_shorter_side
from wsol_bench.registry import make_params
from wsol_bench.sanity import (
    SanityImage,
    SanitySettings,
    centre_crop,
    randomisation_test,
    sanity_methods,
    write_sanity_outputs,
)
from wsol_bench.tasks import run_dir
from wsol_bench.tasks.factory import dataset_spec, model_spec, resolve_demo, section

log = logging.getLogger(__name__)


def sanity_settings(cfg: DictConfig) -> SanitySettings:
    """The ``sanity`` section, checked (messages name ``sanity.<key>``)."""
    return make_params(SanitySettings, section(cfg, "sanity"), "sanity")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the test; returns, per mode and method, the mean similarities at the last stage."""
    from wsol_bench.models import build_classifier

    settings = sanity_settings(cfg)
    methods = sanity_methods(settings)  # every setting checked before anything loads
    spec = resolve_demo(dataset_spec(cfg))
    model = model_spec(cfg)
    data = load_evaluation_set(spec, lenient=True)
    if model.num_classes != len(data.synsets):
        raise ValueError(f"model.num_classes={model.num_classes} but the data set has {len(data.synsets)} classes")
    classifier = build_classifier(model)
    images, skipped = [], {}
    for image_id in data.image_ids:
        try:
            resized = resize_shorter_side(read_rgb(data.image_paths[image_id], data.max_pixels), settings.resize)
        except ImageReadError as err:
            skipped[image_id] = str(err)
            log.warning("sanity: skipping %s: %s", image_id, err)
            continue
        target = data.synsets.index(data.ground_truth[image_id].label)
        images.append(SanityImage(image_id, centre_crop(resized, settings.crop), target))
    if not images:
        raise ValueError(f"sanity: no readable image among the {len(data.image_ids)} of the data set")
    log.info("sanity: %s on %d images, %s (%s), %s randomisation", ", ".join(methods), len(images),
             classifier.name, classifier.weights_id, settings.mode)
    result = randomisation_test(classifier, methods, images, settings.modes, settings.seed, settings.figures,
                                settings.batch_images)
    out = run_dir("sanity")
    headline = write_sanity_outputs(result, out, title=f"{classifier.name}, ")
    info = {
        "settings": {**section(cfg, "sanity")},
        "model": classifier.identity,
        "data": {"name": spec.name, "n_images": len(images), "image_ids": [im.image_id for im in images]},
        "stages": [{"index": k + 1, "name": s.name, "parameters": len(s.parameters)}
                   for k, s in enumerate(result.stages)],
        "last_stage": headline,
        "skipped": skipped,
    }
    (out / "sanity.json").write_text(json.dumps(info, indent=2) + "\n")
    summary = result.summary()
    last = summary[summary["stage_index"] == summary["stage_index"].max()]
    print(f"Randomisation test: {classifier.name} ({classifier.weights_id}), {len(images)} images; similarity to "
          f"the trained model's map at the last stage, {last['stage'].iloc[0]} (cascading: every stage "
          "randomised; independent: that stage alone):\n")
    print(last[["method", "mode", "n_images", "spearman_mean", "spearman_std", "ssim_mean", "ssim_std"]]
          .to_markdown(index=False, floatfmt=".4f"))
    log.info("sanity outputs written to %s", out)
    return headline
