"""Image decoding oddities and dataset layout resolution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_ground_truth import write_xml
from wsol_bench.data.images import ImageReadError, read_rgb
from wsol_bench.data.sources import DatasetSpec, list_images, load_evaluation_set, resolve_paths


def make_odd_images(folder: Path) -> dict[str, Path]:
    """One file of each kind real ILSVRC data contains (and a truncated one)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    paths = {k: folder / f"{k}.JPEG" for k in ("rgb", "cmyk", "grey", "png_named_jpeg", "truncated")}
    rgb.save(paths["rgb"], format="JPEG")
    rgb.convert("CMYK").save(paths["cmyk"], format="JPEG")
    rgb.convert("L").save(paths["grey"], format="JPEG")
    rgb.save(paths["png_named_jpeg"], format="PNG")
    data = paths["rgb"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    return paths


def test_odd_images_decode_to_rgb(tmp_path):
    paths = make_odd_images(tmp_path)
    for kind in ("rgb", "cmyk", "grey", "png_named_jpeg"):
        image = read_rgb(paths[kind])
        assert image.shape == (40, 60, 3) and image.dtype == np.uint8, kind
    with pytest.raises(ImageReadError, match="truncated.JPEG: cannot decode"):
        read_rgb(paths["truncated"])
    with pytest.raises(ImageReadError, match="missing.JPEG: file not found"):
        read_rgb(tmp_path / "missing.JPEG")


def test_sixteen_bit_png_is_scaled_not_saturated(tmp_path):
    values = np.array([[0, 257 * 100], [65535, 257 * 50]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")  # really 16-bit on disk
    image = read_rgb(tmp_path / "deep.png")
    assert image[..., 0].tolist() == [[0, 100], [255, 50]] and (image[..., 0] == image[..., 2]).all()


def test_oversized_image_is_a_read_error_with_the_limit(tmp_path):
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"big.png: 300x200 = 60000 pixels exceeds the limit of 50000 "
                                             r"\(dataset.max_pixels\)"):
        read_rgb(tmp_path / "big.png", max_pixels=50_000)
    assert read_rgb(tmp_path / "big.png", max_pixels=None).shape == (200, 300, 3)


def test_pillow_bomb_error_is_a_read_error(tmp_path, monkeypatch):
    Image.new("RGB", (300, 200)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow raises above twice this
    with pytest.raises(ImageReadError, match="bomb.png: cannot decode image \\(DecompressionBombError"):
        read_rgb(tmp_path / "bomb.png", max_pixels=None)


def test_two_files_with_one_stem_are_an_error(tmp_path):
    Image.new("RGB", (10, 10)).save(tmp_path / "x.JPEG")
    Image.new("RGB", (10, 10)).save(tmp_path / "x.jpg", format="JPEG")
    with pytest.raises(ValueError, match="x.JPEG and x.jpg have the same image id 'x'"):
        list_images(tmp_path)


def kaggle_tree(root: Path) -> None:
    (root / "ILSVRC/Data/CLS-LOC/val").mkdir(parents=True)
    (root / "ILSVRC/Annotations/CLS-LOC/val").mkdir(parents=True)
    for n in (2, 1, 3):
        Image.new("RGB", (100, 80)).save(root / f"ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_{n:08d}.JPEG")
    (root / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n" + "".join(f"ILSVRC2012_val_{n:08d},n01440764 1 1 9 9 \n" for n in (3, 1, 2))
    )


def test_kaggle_layout(tmp_path):
    kaggle_tree(tmp_path)
    cfg = resolve_paths(DatasetSpec(root=str(tmp_path)))
    assert cfg.images.endswith("ILSVRC/Data/CLS-LOC/val") and cfg.solution_csv.endswith("LOC_val_solution.csv")
    data = load_evaluation_set(DatasetSpec(root=str(tmp_path), limit=2))
    assert data.image_ids == ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000002"]
    data = load_evaluation_set(DatasetSpec(root=str(tmp_path), image_ids=("ILSVRC2012_val_00000003",)))
    assert data.image_ids == ["ILSVRC2012_val_00000003"]


def test_devkit_layout_with_xml_and_blacklist(tmp_path):
    (tmp_path / "ILSVRC2012_img_val").mkdir()
    (tmp_path / "val").mkdir()
    for n in (1, 2, 3):
        Image.new("RGB", (100, 80)).save(tmp_path / f"ILSVRC2012_img_val/ILSVRC2012_val_{n:08d}.JPEG")
        write_xml(tmp_path / "val", f"ILSVRC2012_val_{n:08d}", [("n01440764", 1, 1, 9, 9)])
    blacklist = tmp_path / "blacklist.txt"
    blacklist.write_text("2\n")
    data = load_evaluation_set(DatasetSpec(root=str(tmp_path), blacklist=str(blacklist)))
    assert data.image_ids == ["ILSVRC2012_val_00000001", "ILSVRC2012_val_00000003"]
    assert data.ground_truth["ILSVRC2012_val_00000003"].width == 100


def test_root_and_an_explicit_path_for_the_same_thing_is_an_error(tmp_path):
    kaggle_tree(tmp_path)
    with pytest.raises(ValueError, match=r"dataset.images=/elsewhere and dataset.root=.* both set the images"):
        resolve_paths(DatasetSpec(root=str(tmp_path), images="/elsewhere"))
    assert resolve_paths(DatasetSpec(root=str(tmp_path), devkit_meta="/meta.mat")).devkit_meta == "/meta.mat"


def test_image_without_ground_truth_is_an_error(tmp_path):
    kaggle_tree(tmp_path)
    Image.new("RGB", (10, 10)).save(tmp_path / "ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000009.JPEG")
    with pytest.raises(KeyError, match="LOC_val_solution.csv: no ground truth for 1 image"):
        load_evaluation_set(DatasetSpec(root=str(tmp_path)))


def test_shared_sample_selection(shared_sample):
    data = load_evaluation_set(
        DatasetSpec(images=str(shared_sample / "images"), solution_csv=str(shared_sample / "LOC_val_solution.csv"),
                      devkit_meta=str(shared_sample / "devkit/meta.mat"),
                      devkit_labels=str(shared_sample / "devkit/ILSVRC2012_validation_ground_truth.txt"), limit=10)
    )
    assert data.image_ids[0] == "ILSVRC2012_val_00000001" and len(data.image_ids) == 10
    assert data.devkit_meta is not None
