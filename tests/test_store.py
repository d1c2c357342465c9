"""Atomic part files: round trip, corruption detection."""

from __future__ import annotations

from wsol_bench.localisation.records import ImageRecord, failed_record, predictions_table
from wsol_bench.localisation.store import part_path, read_part, read_parts, write_part


def record(i: int) -> ImageRecord:
    return ImageRecord(i, f"img{i}", "ok", height=10, width=20, synsets=["n01440764"], scores=[1.5],
                       boxes=[(1, 2, 3, 4)], fallbacks=[None], gt_known_box=(1, 2, 3, 4), timings={"saliency": 0.1})


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


def test_records_dir_refuses_mixing_runs(tmp_path):
    import pytest

    from wsol_bench.localisation.run import prepare_records_dir

    ids = ["a", "b", "c"]
    prepare_records_dir(tmp_path, ids, batch_images=1, resume=False)
    write_part(tmp_path, 0, [record(0)])
    with pytest.raises(FileExistsError, match="run.resume=true"):
        prepare_records_dir(tmp_path, ids, batch_images=1, resume=False)
    prepare_records_dir(tmp_path, ids, batch_images=1, resume=True)  # same run: fine
    with pytest.raises(ValueError, match="other images or another"):
        prepare_records_dir(tmp_path, ids, batch_images=2, resume=True)
    with pytest.raises(ValueError, match="other images or another"):
        prepare_records_dir(tmp_path, ids[:2], batch_images=1, resume=True)
