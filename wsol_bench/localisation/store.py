"""Incremental, atomic result storage for resumable and sharded runs.

Each processed batch of images is one part file ``records/part-<batch>.jsonl``: one
JSON line per image record, then a footer line with the number of records and the
SHA-256 of the lines before it. A part is written to a temporary file and renamed, so
a killed run leaves whole parts only; a part that fails its footer check (truncated,
edited, corrupt) is ignored and its batch is redone. Part names depend only on the
global batch number, so any number of ranks can share the folder and a run can be
resumed with a different number of processes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from wsol_bench.localisation.records import ImageRecord

log = logging.getLogger(__name__)
FOOTER_KEY = "_footer"


def part_path(directory: Path, batch: int) -> Path:
    return directory / f"part-{batch:07d}.jsonl"


def write_part(directory: Path, batch: int, records: Iterable[ImageRecord]) -> Path:
    """Atomically write the records of one batch."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r.to_json(), sort_keys=True) for r in records]
    body = "".join(line + "\n" for line in lines)
    footer = json.dumps({FOOTER_KEY: {"records": len(lines), "sha256": hashlib.sha256(body.encode()).hexdigest()}})
    path = part_path(directory, batch)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body + footer + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_part(path: Path) -> list[ImageRecord] | None:
    """The records of a part file, or None if it is incomplete or corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        footer = json.loads(lines[-1])[FOOTER_KEY]
        body = "".join(line + "\n" for line in lines[:-1])
        if footer["records"] != len(lines) - 1 or footer["sha256"] != hashlib.sha256(body.encode()).hexdigest():
            return None
        return [ImageRecord.from_json(json.loads(line)) for line in lines[:-1]]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


def read_parts(directory: Path) -> dict[int, list[ImageRecord]]:
    """All valid parts of ``directory`` by batch number; corrupt parts are logged and skipped."""
    parts: dict[int, list[ImageRecord]] = {}
    if not directory.is_dir():
        return parts
    for path in sorted(directory.glob("part-*.jsonl")):
        records = read_part(path)
        if records is None:
            log.warning("%s: corrupt or partial result file; its images will be redone", path)
            continue
        parts[int(path.stem.split("-")[1])] = records
    return parts
