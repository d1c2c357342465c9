"""Score-map files and wsolevaluation metadata: ids that would corrupt them, files that are not score maps."""

from __future__ import annotations

import re

import numpy as np
import pytest

from wsol_bench.boxes import Box, ImageAnnotation
from wsol_bench.data.scoremaps import (
    read_metadata,
    read_scoremap,
    scoremap_path,
    write_metadata,
    write_scoremap,
)

CLS = "n01440764"


@pytest.mark.parametrize("image_id, what", [("a,b", "a comma"), ("a\nb", "a line break"), ("a\rb", "a line break")])
def test_ids_that_would_corrupt_the_metadata_are_refused(tmp_path, image_id, what):
    named = re.escape(repr(image_id))
    with pytest.raises(ValueError, match=f"image id {named}: contains {what}.*comma-separated metadata"):
        scoremap_path(tmp_path, image_id)
    with pytest.raises(ValueError, match=f"image id {named}: contains {what}"):
        write_scoremap(tmp_path, image_id, np.ones((5, 5)))
    ann = ImageAnnotation(image_id, 50, 50, (Box(0, 0, 9, 9, CLS),))
    good = ImageAnnotation("fine", 50, 50, (Box(0, 0, 9, 9, CLS),))
    with pytest.raises(ValueError, match=f"image id {named}: contains {what}"):
        write_metadata(tmp_path, {"fine": good, image_id: ann})
    assert not (tmp_path / "metadata").exists()  # nothing half-written
    write_metadata(tmp_path, {"fine": good})
    assert read_metadata(tmp_path / "metadata").image_ids == ["fine"]


def test_read_scoremap_names_the_file_and_what_is_wrong(tmp_path):
    path = tmp_path / "x.npy"
    path.write_text("not numpy at all\n")
    with pytest.raises(ValueError, match=r"x.npy: not a \.npy file \(no NumPy header\)"):
        read_scoremap(tmp_path, "x")
    np.savez(tmp_path / "z", a=np.zeros(3))
    (tmp_path / "z.npz").rename(path)
    with pytest.raises(ValueError, match=r"x.npy: not a \.npy file \(a \.npz zip archive\)"):
        read_scoremap(tmp_path, "x")
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"x.npy: an object array \(dtype object\), refused for safety"):
        read_scoremap(tmp_path, "x")
    np.save(path, np.zeros((224, 224)))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"x.npy: cannot read the \.npy data \(.*\)"):
        read_scoremap(tmp_path, "x")
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"x.npy: not a \.npy file \(empty\)"):
        read_scoremap(tmp_path, "x")
    np.save(path, np.zeros((100, 100)))
    with pytest.raises(ValueError, match=r"x.npy: a score map must be 224 x 224, not \(100, 100\)"):
        read_scoremap(tmp_path, "x")
    bad = np.zeros((224, 224))
    bad[3, 4] = np.nan
    np.save(path, bad)
    with pytest.raises(ValueError, match=r"x.npy: the score map contains NaN"):
        read_scoremap(tmp_path, "x")
    bad[3, 4] = 1.5
    np.save(path, bad)
    with pytest.raises(ValueError, match=r"x.npy: score map values must be in \[0, 1\]"):
        read_scoremap(tmp_path, "x")
    np.save(path, np.zeros((224, 224), dtype=np.int64))
    with pytest.raises(TypeError, match=r"x.npy: a score map must be a float array"):
        read_scoremap(tmp_path, "x")
    np.save(path, np.full((224, 224), 0.25, dtype=np.float32))
    assert read_scoremap(tmp_path, "x").dtype == np.float64
