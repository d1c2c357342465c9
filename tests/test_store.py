"""Atomic part files: round trip, corruption detection."""

from __future__ import annotations

import pytest

from wsol_bench.boxes import Box
from wsol_bench.data.predictions import predictions_table
from wsol_bench.pipeline.records import ImageRecord, failed_record
from wsol_bench.pipeline.store import (
    part_path,
    prepare_records_dir,
    read_part,
    read_parts,
    write_part,
)


def record(i: int) -> ImageRecord:
    return ImageRecord(i, f"img{i}", "ok", height=10, width=20, synsets=["n01440764"], scores=[1.5],
                       boxes=[Box(1, 2, 3, 4)], fallbacks=[None], gt_known_box=Box(1, 2, 3, 4), timings={"saliency": 0.1},
                       states={"metric": {"hits": "0f"}})


def test_round_trip(tmp_path):
    recs = [record(0), failed_record(1, "img1", "bad file")]
    write_part(tmp_path, 3, recs)
    assert read_part(part_path(tmp_path, 3)) == recs
    assert list(read_parts(tmp_path)) == [3]
    table = predictions_table(recs)
    assert table.columns[:7].tolist() == ["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"]
    assert len(table) == 1


def test_truncated_or_edited_part_is_rejected(tmp_path):
    path = write_part(tmp_path, 0, [record(0), record(1)])
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    assert read_part(path) is None
    path.write_text(text.replace('"img1"', '"imgX"'))
    assert read_part(path) is None
    assert read_parts(tmp_path) == {}
    path.write_text(text)
    assert len(read_parts(tmp_path)[0]) == 2


IDENTITY = {"data": {"image_ids_sha256": "abc", "n_images": 3}, "batch_images": 1,
            "segmentation": {"method": "graphcut", "params": {"fg_quantile": 0.9}}}


def test_records_dir_refuses_mixing_runs(tmp_path):
    prepare_records_dir(tmp_path, IDENTITY, resume=False)
    write_part(tmp_path, 0, [record(0)])
    with pytest.raises(FileExistsError, match="run.resume=true"):
        prepare_records_dir(tmp_path, IDENTITY, resume=False)
    prepare_records_dir(tmp_path, IDENTITY, resume=True)  # same run: fine
    other = {**IDENTITY, "batch_images": 2, "segmentation": {"method": "graphcut", "params": {"fg_quantile": 0.95}}}
    with pytest.raises(ValueError, match=r"batch_images: 1 -> 2; segmentation.params.fg_quantile: 0.9 -> 0.95"):
        prepare_records_dir(tmp_path, other, resume=True)


def test_corrupt_or_missing_manifest_is_a_clear_error(tmp_path):
    write_part(tmp_path, 0, [record(0)])
    with pytest.raises(ValueError, match="manifest.json: missing"):
        prepare_records_dir(tmp_path, IDENTITY, resume=True)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json: unreadable or corrupt"):
        prepare_records_dir(tmp_path, IDENTITY, resume=True)


def test_part_files_get_the_umask_permissions(tmp_path):
    import os

    from wsol_bench.files import atomic_write

    old = os.umask(0o002)
    try:
        path = write_part(tmp_path, 0, [record(0)])
        other = atomic_write(tmp_path / "x.txt", "hello")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o664 and other.stat().st_mode & 0o777 == 0o664
