"""``task=class_model``: class model visualisation (Section 2 of the paper).

Classes: ``class_model.classes``, WNIDs (or index strings) mapped to model outputs through
sorted-WNID order (``dataset.synset_mapping`` if set, else timm's offline ILSVRC table).

Outputs (run dir):

* ``class_model/<k>_<wnid>_<name>.png``: one image per class, contrast-stretched;
* ``class_model_grid.png``: all classes, contrast-stretched, titled with their names;
* ``class_model_grid_clip.png``: the same, plain ``I * std + mean`` clipped to [0, 1];
* ``class_model_history.csv``: per step and class: score (logit), objective, L2 norm of I,
  softmax probability;
* ``class_model_inputs.pt``: the optimised images I in normalised input space
  (``{'inputs': (K,3,H,W), 'class_index': (K,), 'mean', 'std'}``, weights-only loadable).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch
from omegaconf import DictConfig

from wsol_bench.data.synsets import default_synsets, read_synset_mapping
from wsol_bench.figures.grid import save_grid, save_images
from wsol_bench.tasks import run_dir
from wsol_bench.tasks.factory import model_spec
from wsol_bench.visualisation.class_model import (
    class_model_images,
    resolve_classes,
    to_rgb,
)

log = logging.getLogger(__name__)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "class"


def run(cfg: DictConfig) -> dict[str, Any]:
    """Optimise one image per class; return the mean final score and probability."""
    from wsol_bench.models import build_classifier, resolve_device

    c = cfg.class_model
    out = run_dir("class_model")
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.model.device)
    classifier = build_classifier(model_spec(cfg))
    module = classifier.module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    mapping = cfg.dataset.get("synset_mapping")
    table = read_synset_mapping(mapping) if mapping else default_synsets()
    specs = resolve_classes(list(c.classes), table)
    log.info("class models for %d classes with %s (%s): l2=%g lr=%g steps=%d blur_every=%d jitter=%d",
             len(specs), classifier.name, classifier.weights_id, c.l2, c.lr, c.steps, c.blur_every, c.jitter)
    result = class_model_images(
        module, [s.index for s in specs], classifier.mean, classifier.std,
        size=c.size, l2=c.l2, lr=c.lr, steps=c.steps, blur_every=c.blur_every,
        blur_sigma=c.blur_sigma, jitter=c.jitter, seed=c.seed, device=device,
    )
    history = result.history
    history.insert(2, "wnid", [specs[k].wnid for k in history["k"]])
    history.insert(3, "name", [specs[k].name for k in history["k"]])
    history.to_csv(out / "class_model_history.csv", index=False)
    torch.save({"inputs": result.inputs, "class_index": torch.tensor([s.index for s in specs]),
                "mean": list(classifier.mean), "std": list(classifier.std)}, out / "class_model_inputs.pt")

    stretched = to_rgb(result.inputs, classifier.mean, classifier.std, display="stretch")
    save_images(stretched, [out / "class_model" / f"{k:02d}_{s.wnid or s.index}_{_slug(s.name)}.png"
                            for k, s in enumerate(specs)])
    final = history[history["step"] == c.steps].set_index("k")
    titles = [f"{s.name}\n(logit {final.loc[k, 'score']:.1f}, p={final.loc[k, 'prob']:.2f})"
              for k, s in enumerate(specs)]
    regs = "".join([f", blur {c.blur_sigma:g}px/{c.blur_every} steps" if c.blur_every else "",
                    f", jitter {c.jitter}px" if c.jitter else ""])
    caption = (f"{classifier.name} ({classifier.weights_id})\nargmax S_c(I) - {c.l2:g}·||I||², "
               f"{c.steps} steps of lr {c.lr:g}{regs}")
    save_grid(stretched, titles, out / "class_model_grid.png", columns=c.grid_columns,
              suptitle=caption + "; contrast-stretched")
    save_grid(result.rgb, titles, out / "class_model_grid_clip.png", columns=c.grid_columns,
              suptitle=caption + "; I·std+mean clipped")
    summary = {
        "classes": len(specs),
        "mean_final_score": float(final["score"].mean()),
        "mean_final_prob": float(final["prob"].mean()),
        "mean_final_l2_norm": float(final["l2_norm"].mean()),
        "run_dir": str(out),
    }
    log.info("class_model: %s", summary)
    return summary
