"""Ground-truth readers: real files agree with each other; every bad input names its file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import OBJECT, SIZE, XML, write_xml
from wsol_bench.boxes import Box
from wsol_bench.data.ground_truth import (
    read_annotation_dir,
    read_annotation_xml,
    read_solution_csv,
    select,
)
from wsol_bench.data.synsets import (
    default_synsets,
    read_devkit_labels,
    read_devkit_meta,
    read_synset_mapping,
)


def test_one_and_many_objects(tmp_path):
    one = read_annotation_xml(write_xml(tmp_path, "a", [("n01440764", 1, 2, 30, 40)]))
    assert one.boxes == (Box(1, 2, 30, 40, "n01440764"),)
    assert (one.width, one.height, one.label) == (100, 80, "n01440764")
    many = read_annotation_xml(write_xml(tmp_path, "b", [("n01440764", 0, 0, 99, 79), ("n01440764", 5, 5, 6, 6)]))
    assert len(many.boxes) == 2 and many.boxes[1].coords == (5, 5, 6, 6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(boxes=[("n01440764", 30, 2, 10, 40)]), "xmin > xmax"),
        (dict(boxes=[("n01440764", 1, 2, 100, 40)]), "outside the 100x80 image"),
        (dict(boxes=[("n01440764", 1, 2, 30, 80)]), "outside the 100x80 image"),
        (dict(boxes=[("n99999999", 1, 2, 30, 40)]), "unknown synset 'n99999999'"),
        (dict(boxes=[("n01440764", 1, 2, 30, 40)], size=False), "missing <size>"),
        (dict(boxes=[]), "no ground truth"),
    ],
)
def test_bad_xml_names_the_file(tmp_path, kwargs, message):
    path = write_xml(tmp_path, "bad", **kwargs)
    with pytest.raises(ValueError) as err:
        read_annotation_xml(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_malformed_xml_and_entities(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<annotation><size><width>1</width></annotation")
    with pytest.raises(ValueError, match=f"{path}: malformed XML"):
        read_annotation_xml(path)
    bomb = tmp_path / "entity.xml"
    bomb.write_text('<!DOCTYPE a [<!ENTITY x "n01440764">]><annotation><size><width>9</width>'
                    "<height>9</height></size><object><name>&x;</name></object></annotation>")
    with pytest.raises(ValueError, match=str(bomb)):
        read_annotation_xml(bomb)


def test_xml_declared_latin1_is_read_and_bad_bytes_name_the_file(tmp_path):
    text = XML.format(name="caf\u00e9", size=SIZE.format(w=100, h=80),
                      objects=OBJECT.format(syn="n01440764", x0=1, y0=2, x1=30, y1=40))
    path = tmp_path / "latin.xml"
    path.write_bytes(('<?xml version="1.0" encoding="ISO-8859-1"?>\n' + text).encode("latin-1"))
    assert read_annotation_xml(path).image_id == "caf\u00e9"
    bad = tmp_path / "bad_utf8.xml"
    bad.write_bytes(text.replace("caf\u00e9", "caf\u00e9").encode("latin-1"))  # no declaration: UTF-8 expected
    with pytest.raises(ValueError, match=f"{bad}: malformed XML"):
        read_annotation_xml(bad)


def test_missing_xml_is_an_error(tmp_path):
    write_xml(tmp_path, "a", [("n01440764", 1, 2, 30, 40)])
    with pytest.raises(FileNotFoundError, match="no ground truth for image b"):
        read_annotation_dir(tmp_path, ["a", "b"])


def write_csv(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "solution.csv"
    path.write_text("ImageId,PredictionString\n" + body)
    return path


def test_csv_repeated_boxes_trailing_space_unsorted(tmp_path):
    path = write_csv(tmp_path, "b,n01440764 1 2 3 4 n01440764 5 6 7 8 \na,n01443537 0 0 9 9 \n")
    gt = read_solution_csv(path)
    assert list(gt) == ["b", "a"]
    assert gt["b"].boxes[1] == Box(5, 6, 7, 8, "n01440764")
    assert gt["a"].width is None


@pytest.mark.parametrize(
    "body, message",
    [
        ("a,n01440764 1 2 3 4 \na,n01440764 1 2 3 4 \n", ":3: duplicate image id a"),
        ("a,n01440764 1 2 3 \n", ":2: PredictionString has 4 fields"),
        ("a,n01440764 9 2 3 4 \n", ":2: box"),
        ("a,n00000001 1 2 3 4 \n", ":2: unknown synset"),
        ("a, \n", ":2: image a has no boxes"),
        ("a,n01440764 1 2 x 4 \n", ":2: <coordinate> is 'x'"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, body, message):
    path = write_csv(tmp_path, body)
    with pytest.raises(ValueError) as err:
        read_solution_csv(path)
    assert f"{path}{message}" in str(err.value) if message.startswith(":") else message in str(err.value)


def test_image_without_ground_truth(tmp_path):
    gt = read_solution_csv(write_csv(tmp_path, "a,n01440764 1 2 3 4 \n"))
    with pytest.raises(KeyError, match="solution.csv: no ground truth for 1 image"):
        select(gt, ["a", "zz"], str(tmp_path / "solution.csv"))


def test_devkit_label_outside_range_names_line(tmp_path, shared_sample):
    meta = read_devkit_meta(shared_sample / "devkit" / "meta.mat")
    path = tmp_path / "labels.txt"
    path.write_text("1\n1000\n1001\n")
    with pytest.raises(ValueError, match=f"{path}:3: label 1001 is outside 1..1000"):
        read_devkit_labels(path, meta)
    path.write_text("0\n")
    with pytest.raises(ValueError, match=f"{path}:1: label 0"):
        read_devkit_labels(path, meta)


def test_class_orders_differ(shared_sample):
    meta = read_devkit_meta(shared_sample / "devkit" / "meta.mat")
    mapping = read_synset_mapping(shared_sample / "LOC_synset_mapping.txt")
    assert meta.wnid(1) == "n02119789" and mapping.wnid(0) == "n01440764"
    assert sorted(meta.wnids) == list(mapping.wnids)
    assert mapping.wnids == default_synsets().wnids  # the offline table shipped with timm
    labels = read_devkit_labels(shared_sample / "devkit" / "ILSVRC2012_validation_ground_truth.txt", meta)
    assert len(labels) == 50000


def test_real_xml_agree_with_solution_csv(shared_sample):
    xml = read_annotation_dir(shared_sample / "xml")
    csv_gt = read_solution_csv(shared_sample / "LOC_val_solution.csv")
    assert len(xml) == 15 and len(csv_gt) == 50000
    assert len(xml["ILSVRC2012_val_00000002"].boxes) == 2
    assert len(xml["ILSVRC2012_val_00000008"].boxes) == 4
    for image_id, ann in xml.items():
        assert ann.boxes == csv_gt[image_id].boxes, image_id
    meta = read_devkit_meta(shared_sample / "devkit" / "meta.mat")
    labels = read_devkit_labels(shared_sample / "devkit" / "ILSVRC2012_validation_ground_truth.txt", meta)
    for n in range(1, 16):
        assert xml[f"ILSVRC2012_val_{n:08d}"].label == labels[n - 1]
