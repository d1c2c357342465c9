"""Image decoding oddities and dataset layout resolution."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.helpers import kaggle_tree, make_odd_images, write_xml
from wsol_bench.data.images import ImageReadError, read_rgb
from wsol_bench.data.sources import (
    DatasetSpec,
    list_images,
    load_evaluation_set,
    resolve_paths,
)


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


# --- every file of dataset.images read or reported; one conversion rule for files, PIL images, arrays, tensors ---


def test_list_images_reads_every_pillow_suffix_and_names_the_skipped_files(tmp_path, caplog):
    rgb = Image.new("RGB", (8, 6), (10, 20, 30))
    for name in ("a.JPEG", "b.jpg", "c.PNG", "d.tif", "e.TIFF", "f.gif", "g.webp", "h.BMP"):
        rgb.save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "a_box.xml").write_text("<annotation/>")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "photo.heic").write_bytes(b"\0")
    (tmp_path / "README").write_text("x")
    (tmp_path / "sub").mkdir()
    with caplog.at_level("WARNING", logger="wsol_bench.data.sources"):
        found = list_images(tmp_path)
    assert sorted(found) == list("abcdefgh")
    for path in found.values():
        assert read_rgb(path).shape == (6, 8, 3), path
    [record] = [r for r in caplog.records if r.levelname == "WARNING"]
    message = record.getMessage()
    assert "6 entries skipped" in message
    assert "photo.heic (not a suffix Pillow reads here" in message  # the unexpected ones first
    assert "README (no suffix)" in message and ".DS_Store (hidden)" in message
    assert "a_box.xml (not an image: .xml)" in message and "sub (a folder)" in message
    assert message.endswith("; ...") and "notes.txt" not in message  # the first five names


def test_list_images_of_a_folder_without_images_lists_what_it_skipped(tmp_path):
    (tmp_path / "x.heic").write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"no image files \(.*\.tiff.*\); skipped: x.heic"):
        list_images(tmp_path)


def test_thirty_two_bit_integer_tiff_is_scaled_by_its_range_convention(tmp_path):
    sixteen_bit_data = np.array([[0, 257 * 100], [65535, 257 * 50]], dtype=np.int32)
    Image.fromarray(sixteen_bit_data).save(tmp_path / "i16.tif")
    wide = np.array([[-1000, 0], [99000, 49000]], dtype=np.int32)  # outside 0..65535: min..max
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    with Image.open(tmp_path / "i16.tif") as im, Image.open(tmp_path / "wide.tif") as im2:
        assert im.mode == "I" and im2.mode == "I"  # really 32-bit on disk
    assert read_rgb(tmp_path / "i16.tif")[..., 1].tolist() == [[0, 100], [255, 50]]
    assert read_rgb(tmp_path / "wide.tif")[..., 2].tolist() == [[0, 3], [255, 128]]


def test_float_tiff_is_scaled_from_unit_range_or_min_max_and_nan_is_refused(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.2]], dtype=np.float32)).save(tmp_path / "unit.tif")
    Image.fromarray(np.array([[-1.0, 0.0], [3.0, 1.0]], dtype=np.float32)).save(tmp_path / "wide.tif")
    Image.fromarray(np.array([[0.0, np.nan], [1.0, 0.2]], dtype=np.float32)).save(tmp_path / "nan.tif")
    with Image.open(tmp_path / "unit.tif") as im:
        assert im.mode == "F"
    assert read_rgb(tmp_path / "unit.tif")[..., 0].tolist() == [[0, 128], [255, 51]]
    assert read_rgb(tmp_path / "wide.tif")[..., 0].tolist() == [[0, 64], [255, 128]]
    with pytest.raises(ImageReadError, match=r"nan.tif: .*NaN or infinite"):
        read_rgb(tmp_path / "nan.tif")


def test_alpha_is_composited_on_white_alike_for_files_pil_images_arrays_and_tensors(tmp_path):
    import torch

    from wsol_bench.data.images import to_rgb

    rgba = np.array([[[200, 0, 0, 255], [200, 0, 0, 0]], [[0, 100, 50, 128], [10, 20, 30, 77]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    from_file = read_rgb(tmp_path / "rgba.png")
    assert from_file[0, 0].tolist() == [200, 0, 0] and from_file[0, 1].tolist() == [255, 255, 255]
    assert from_file[1, 0].tolist() == [127, 177, 152]  # c * a/255 + 255 * (1 - a/255), rounded
    for other in (Image.fromarray(rgba, "RGBA"), rgba, torch.from_numpy(rgba).permute(2, 0, 1),
                  rgba.astype(np.float32) / 255, tmp_path / "rgba.png", str(tmp_path / "rgba.png")):
        assert np.array_equal(to_rgb(other), from_file), type(other)
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    la.save(tmp_path / "la.png")
    assert np.array_equal(to_rgb(la), read_rgb(tmp_path / "la.png"))
    assert read_rgb(tmp_path / "la.png")[0, 1].tolist() == [255, 255, 255]


def test_to_rgb_of_pil_images_follows_the_file_rules(tmp_path):
    from wsol_bench.data.images import to_rgb

    deep = Image.fromarray(np.array([[0, 257 * 100], [65535, 257 * 50]], dtype=np.uint16))
    assert deep.mode == "I;16"
    deep.save(tmp_path / "deep.png")
    assert np.array_equal(to_rgb(deep), read_rgb(tmp_path / "deep.png"))
    assert to_rgb(deep)[..., 0].tolist() == [[0, 100], [255, 50]]  # scaled, not clipped to 255
    cmyk = Image.new("CMYK", (3, 2), (0, 255, 255, 0))
    assert to_rgb(cmyk)[0, 0].tolist() == [255, 0, 0]
    palette = Image.new("P", (2, 2), 1)
    palette.putpalette([0, 0, 0, 9, 99, 199] + [0] * 762)
    assert to_rgb(palette)[1, 1].tolist() == [9, 99, 199]


def test_to_rgb_arrays_and_tensors_of_uint8_floats_and_greys():
    import torch

    from wsol_bench.data.images import to_rgb

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(to_rgb(image), image)
    assert np.array_equal(to_rgb(torch.from_numpy(image).permute(2, 0, 1)), image)
    assert np.array_equal(to_rgb(image.astype(np.float64) / 255), image)  # rounded, not truncated
    assert np.array_equal(to_rgb(torch.from_numpy(image).permute(2, 0, 1).float() / 255), image)
    assert to_rgb(np.array([[0.5, 0.999]], dtype=np.float32)).tolist() == [[[128] * 3, [255] * 3]]
    grey = image[..., 0]
    for g in (grey, grey[..., None], torch.from_numpy(grey), torch.from_numpy(grey)[None]):
        out = to_rgb(g)
        assert out.shape == (5, 7, 3) and out.dtype == np.uint8 and (out == grey[..., None]).all()
    assert to_rgb(torch.ones(3, 2, 2, dtype=torch.bfloat16)).tolist() == [[[255] * 3] * 2] * 2


def test_to_rgb_integer_types():
    import torch

    from wsol_bench.data.images import to_rgb

    assert to_rgb(np.array([[0, 257 * 100, 65535]], dtype=np.uint16))[..., 0].tolist() == [[0, 100, 255]]
    assert to_rgb(torch.tensor([[[0, 100], [255, 7]]] * 3, dtype=torch.int64))[..., 0].tolist() == [[0, 100], [255, 7]]
    assert to_rgb(np.full((2, 2, 3), 9, dtype=np.int32)).tolist() == np.full((2, 2, 3), 9).tolist()
    with pytest.raises(ValueError, match=r"int64 values -1\.\.300 outside 0\.\.255"):
        to_rgb(torch.tensor([[[-1, 300]]] * 3))
    with pytest.raises(ValueError, match="bool"):
        to_rgb(np.ones((2, 2), dtype=bool))


def test_to_rgb_refuses_normalised_and_0_255_floats_and_nan_with_a_hint():
    import torch

    from wsol_bench.data.images import to_rgb

    normalised = torch.linspace(-2.1, 2.6, 48).reshape(3, 4, 4)
    with pytest.raises(ValueError, match=r"values -2\.1\.\.2\.6.*RGB in \[0, 1\].*normalised"):
        to_rgb(normalised)
    with pytest.raises(ValueError, match=r"values 0\.\.255.*\[0, 255\].*divide by 255"):
        to_rgb(torch.linspace(0, 255, 48).reshape(3, 4, 4))
    for bad in (np.nan, np.inf):
        array = np.zeros((4, 4, 3), dtype=np.float32)
        array[1, 2, 0] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            to_rgb(array)
        with pytest.raises(ValueError, match="NaN or infinite"):
            to_rgb(torch.from_numpy(array).permute(2, 0, 1))


def test_to_rgb_refuses_unclear_shapes_with_the_convention():
    import torch

    from wsol_bench.data.images import to_rgb

    with pytest.raises(ValueError, match=r"tensor of shape \(1, 3, 4, 4\).*one image"):
        to_rgb(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(5, 6, 3\).*\(C, H, W\).*permute\(2, 0, 1\)"):
        to_rgb(torch.zeros(5, 6, 3))
    with pytest.raises(ValueError, match=r"\(3, 4, 5\).*H x W x C.*transpose\(1, 2, 0\)"):
        to_rgb(np.zeros((3, 4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="empty"):
        to_rgb(np.zeros((0, 4, 3), dtype=np.uint8))
    with pytest.raises(TypeError, match="list"):
        to_rgb([[1, 2], [3, 4]])
