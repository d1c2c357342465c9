"""Maps from localisers other than the classifier (wsol_bench.saliency.ensemble), against
independent computations: torch's bilinear resampling for the frames, and separate
image_saliency calls for the maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wsol_bench.frames import resize_shorter_side
from wsol_bench.models import Classifier
from wsol_bench.saliency import CropSettings, image_saliency, saliency_method
from wsol_bench.saliency.ensemble import Localiser, combine_maps, ensemble_saliency

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gap_net(seed: int, num_classes: int = 7) -> Classifier:
    """conv-ReLU-conv(stride 2)-ReLU, global average pooling, linear (a CAM head); eval mode."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes)).eval()
    return Classifier(module=net, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), name=f"gap{seed}",
                      weights_id=f"random:seed{seed}", target_layer="3")


def torch_bilinear(m: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.asarray(m, dtype=np.float64))[None, None]
    return torch.nn.functional.interpolate(t, size=frame, mode="bilinear", align_corners=False)[0, 0].numpy()


def test_combine_maps_resizes_normalises_and_averages_like_torch_bilinear():
    rng = np.random.default_rng(0)
    a, b, c = rng.random((20, 30)), rng.random((12, 18)) * 7, rng.random((40, 60)) * 0.01
    got = combine_maps([a, b, c], (20, 30))
    want = np.mean([a / a.max(), *(torch_bilinear(m, (20, 30)) / torch_bilinear(m, (20, 30)).max() for m in (b, c))],
                   axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32 and got.shape == (20, 30) and 0 <= got.min() and got.max() <= 1


def test_combine_maps_of_one_map_is_the_map_over_its_maximum_and_a_zero_map_adds_zeros():
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(combine_maps([m], (3, 4)), m / 11, rtol=1e-6)
    np.testing.assert_allclose(combine_maps([m, np.zeros((3, 4))], (3, 4)), m / 22, rtol=1e-6)
    with pytest.raises(ValueError, match="no maps"):
        combine_maps([], (3, 4))


def images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.random((40, 52, 3)) * 255).astype(np.uint8), (rng.random((50, 36, 3)) * 255).astype(np.uint8)]


def test_the_ranker_alone_gives_its_own_classes_and_its_maps_over_their_maxima():
    cam = saliency_method("cam")
    ranker = Localiser(cam, gap_net(0), CropSettings(resize=32, crop=28, crops=10, top_k=3))
    ims = images()
    got = ensemble_saliency(ranker, [ranker], ims, extra_classes=[[6], [0]])
    own = image_saliency(cam, ranker.classifier, [resize_shorter_side(im, 32) for im in ims], ranker.crops,
                         [[6], [0]])
    for g, o in zip(got, own):
        np.testing.assert_array_equal(g.classes, o.classes)
        np.testing.assert_array_equal(g.logits, o.logits)
        assert g.maps.shape == o.maps.shape
        np.testing.assert_allclose(g.maps, o.maps / o.maps.max(axis=(1, 2), keepdims=True), rtol=1e-5, atol=1e-7)


def test_a_second_network_at_another_input_size_localises_the_rankers_classes():
    cam = saliency_method("cam")
    ranker = Localiser(cam, gap_net(0), CropSettings(resize=32, crop=28, crops=10, top_k=3))
    other = Localiser(cam, gap_net(1), CropSettings(resize=48, crop=42, crops=2, top_k=5))
    ims = images(1)
    got = ensemble_saliency(ranker, [other, ranker], ims, extra_classes=[[1], [2]])
    mine = image_saliency(cam, ranker.classifier, [resize_shorter_side(im, 32) for im in ims], ranker.crops,
                          [[1], [2]])
    for i, (g, r) in enumerate(zip(got, mine)):
        np.testing.assert_array_equal(g.classes, r.classes)  # the ranker's classes, not the other network's
        [theirs] = image_saliency(cam, other.classifier, [resize_shorter_side(ims[i], 48)],
                                  CropSettings(resize=48, crop=42, crops=2, top_k=1), [list(r.classes)])
        frame = r.maps.shape[1:]
        for k, c in enumerate(r.classes):
            m2 = theirs.maps[list(theirs.classes).index(c)]
            m2 = torch_bilinear(m2, frame)
            want = (r.maps[k] / r.maps[k].max() + m2 / m2.max()) / 2
            np.testing.assert_allclose(g.maps[k], want, rtol=1e-4, atol=1e-5)


def test_a_localiser_scoring_other_classes_is_refused_naming_it():
    cam = saliency_method("cam")
    ranker = Localiser(cam, gap_net(0), CropSettings(resize=32, crop=28, crops=1, top_k=3))
    wrong = Localiser(cam, gap_net(1, num_classes=9), CropSettings(resize=32, crop=28, crops=1, top_k=3))
    with pytest.raises(ValueError, match="gap1 outputs 9 class scores but 7 classes"):
        ensemble_saliency(ranker, [ranker, wrong], images())


def test_a_run_with_a_localiser_gives_the_ensemble_maps_and_keys_cache_and_manifest(tmp_path):
    """``ensemble.localisers`` through the engine: the cached maps are ensemble_saliency's on
    the decoded images; the cache namespace and the manifest name the localiser."""
    import json
    from dataclasses import replace

    from PIL import Image

    from tests.helpers import write_xml
    from wsol_bench.data.sources import DatasetSpec, load_evaluation_set
    from wsol_bench.metrics import evaluator
    from wsol_bench.models import ModelSpec
    from wsol_bench.pipeline.run import LocalisationPlan, LocaliserSpec, run_localisation
    from wsol_bench.pipeline.settings import EngineSettings, RunSettings
    from wsol_bench.saliency.cache import SaliencyCache
    from wsol_bench.segmentation import box_extractor

    images, ann = tmp_path / "images", tmp_path / "ann"
    images.mkdir()
    ann.mkdir()
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(image).save(images / "one.png")
    write_xml(ann, "one", [("n01440764", 5, 5, 40, 30)], w=60, h=40)
    ranker_spec = ModelSpec(name="custom", factory="tests.helpers:tiny_net", weights="random", device="cpu")
    wide = CropSettings(resize=80, crop=72, crops=2, top_k=3)
    plan = LocalisationPlan(DatasetSpec(images=str(images), annotations=str(ann)), ranker_spec,
                            saliency_method("cam"), CropSettings(resize=64, crop=56, crops=1, top_k=3),
                            box_extractor("threshold"), (evaluator("ilsvrc", max_guesses=3),),
                            EngineSettings(cache_dir=str(tmp_path / "cache"), loader_workers=0, fold_batchnorm=False),
                            RunSettings(processes=1, figures=0, progress=False),
                            localisers=(LocaliserSpec(ranker_spec, wide),))
    data = load_evaluation_set(plan.dataset)
    run_localisation(plan, data, tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "records" / "manifest.json").read_text())
    assert manifest["ensemble"]["localisers"][0]["tta"]["resize"] == 80
    namespace = json.loads((tmp_path / "run" / "records" / "saliency_namespace.json").read_text())
    assert namespace["ensemble"]["own_maps"] is True
    pipeline = plan.pipeline()
    ranker = Localiser(plan.method, pipeline.classifier, plan.crops)
    [expected] = ensemble_saliency(ranker, (ranker, *pipeline.localisers), [image], [[0]], 1000)
    from wsol_bench.files import sha256_file

    stored = SaliencyCache(tmp_path / "cache", namespace).get("one", sha256_file(images / "one.png"), [0],
                                                             expected.maps.shape[1:], 3)
    assert stored is not None
    np.testing.assert_array_equal(stored.classes, expected.classes)
    np.testing.assert_allclose(stored.maps, expected.maps, rtol=1e-5, atol=1e-6)
    plain = replace(plan, localisers=())
    assert plain.pipeline().saliency_namespace() != namespace  # never the plain run's cache entries
