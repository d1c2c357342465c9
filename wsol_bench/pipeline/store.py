"""Incremental, atomic result storage for resumable and sharded runs, and the run's manifest.

Each processed batch of images is one part file ``records/part-<batch>.jsonl``: one JSON
line per image record, then a footer line with the number of records and the SHA-256 of
the lines before it. Parts are written atomically (:func:`wsol_bench.files.atomic_write`),
so a killed run leaves whole parts only; a part that fails its footer check (truncated,
edited, corrupt) is ignored and its batch is redone. Part names depend only on the global
batch number, so any number of ranks can share the folder and a run can be resumed with a
different number of processes.

``records/manifest.json`` holds everything a record depends on (the run's identity: data
and the images' sizes and times, model and weights, saliency method and parameters, crops,
box extractor and parameters, evaluator settings, batching, score-map export). A resumed
run whose identity differs in any key is refused with the list of differing keys, so a
run never mixes settings. :func:`run_lock` keeps a second run out of the folder while one
is running.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from wsol_bench.files import atomic_write
from wsol_bench.pipeline.records import ImageRecord

log = logging.getLogger(__name__)
FOOTER_KEY = "_footer"
MANIFEST = "manifest.json"


def part_path(directory: Path, batch: int) -> Path:
    return directory / f"part-{batch:07d}.jsonl"


def write_part(directory: Path, batch: int, records: Iterable[ImageRecord]) -> Path:
    """Atomically write the records of one batch."""
    lines = [json.dumps(r.to_json(), sort_keys=True) for r in records]
    body = "".join(line + "\n" for line in lines)
    footer = json.dumps({FOOTER_KEY: {"records": len(lines), "sha256": hashlib.sha256(body.encode()).hexdigest()}})
    return atomic_write(part_path(directory, batch), body + footer + "\n")


def read_part(path: Path) -> list[ImageRecord] | None:
    """The records of a part file, or None if it is incomplete or corrupt."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
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


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def prepare_records_dir(records_dir: Path, identity: Mapping[str, Any], resume: bool) -> None:
    """Check that ``records_dir`` may receive this run's parts, and record what they mean.

    A fresh run refuses a folder that already holds results; a resumed run refuses one
    whose manifest differs from ``identity`` in any key (the message lists them). Call on
    rank 0 before any rank starts.
    """
    manifest = records_dir / MANIFEST
    identity = json.loads(json.dumps(identity))  # as it will read back
    if any(records_dir.glob("part-*.jsonl")):
        if not resume:
            raise FileExistsError(f"{records_dir} already holds results: pass run.resume=true to continue that run")
        if not manifest.is_file():
            raise ValueError(f"{manifest}: missing, so the stored results cannot be checked against this run's "
                             "settings; start a new run (another hydra.run.dir)")
        try:
            found = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{manifest}: unreadable or corrupt ({err}); start a new run") from None
        old, new = flatten(found), flatten(identity)
        differing = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
        renamed = {k.removesuffix(".name") for k in differing if k.endswith(".name")}  # another part: not its params
        differing = [k for k in differing if not any(k.startswith(f"{part}.params.") for part in renamed)]
        if differing:
            shown = "; ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in differing[:12])
            more = f" (and {len(differing) - 12} more)" if len(differing) > 12 else ""
            raise ValueError(f"{manifest}: run.resume=true refused: the stored results were made with other "
                             f"settings: {shown}{more}. Resume with the original settings, or start a new run")
        return
    atomic_write(manifest, json.dumps(identity, indent=1, sort_keys=True) + "\n")


LOCK = ".lock"


class RunLocked(RuntimeError):
    """Another run holds the run folder."""


@contextlib.contextmanager
def run_lock(directory: Path, what: str) -> Iterator[None]:
    """Hold ``directory/.lock`` exclusively (``fcntl.flock``) while the body runs: a second run
    writing into the same folder at once is refused, naming the holder (its process, host,
    start time and ``what``). The lock is released when the holder exits, however it ends."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise RunLocked(f"{directory} is in use by another run ({holder}); wait for it to end or choose another "
                            "hydra.run.dir") from None
        info = f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {what}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
