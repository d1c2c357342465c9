"""File helpers: atomic writes (with the umask's permissions) and content digests."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read from ``/proc/self/status`` on Linux (setting and restoring it
    with ``os.umask`` elsewhere, which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class OutputError(OSError):
    """The harness could not write one of its own output files (full disk, permissions): the
    run stops with the file named; never an image's failure."""


def atomic_write(path: str | Path, data: bytes | str, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    A reader sees the old file or the whole new one, never a part; a crash leaves no
    partial file under ``path``. The file gets the permissions a plain ``open`` would give
    (``0o666`` less the umask), so caches and results can be shared with a group. An
    ``OSError`` is raised as :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise OutputError(err.errno, f"{path}: cannot write ({err.strerror or err})") from err
        raise
    return path


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
