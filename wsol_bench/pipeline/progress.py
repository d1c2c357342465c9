"""One progress bar for a whole run, however many ranks feed it.

Every rank writes one part file per finished batch into the run's ``records/`` folder
(:mod:`wsol_bench.pipeline.store`); :class:`RunProgress` counts the images of the parts
present, so the process that owns the run (the launching process, or rank 0 under
torchrun) shows one bar for all ranks. Parts found at the start (a resumed run) count as
done before the bar starts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm


class RunProgress:
    """A tqdm bar over ``sum(batch_sizes)`` images, advanced as part files appear; also a
    context manager that polls in a background thread."""

    def __init__(self, records_dir: Path, batch_sizes: Sequence[int], enabled: bool = True) -> None:
        self.records_dir = records_dir
        self.batch_sizes = list(batch_sizes)
        self.seen: set[int] = set()
        done = self._done()
        self.bar = tqdm(total=sum(self.batch_sizes), initial=done, unit="img", disable=not enabled,
                        desc="images", dynamic_ncols=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _done(self) -> int:
        added = 0
        try:
            names = [p.name for p in self.records_dir.glob("part-*.jsonl")]
        except OSError:
            return 0
        for name in names:
            try:
                batch = int(name[len("part-"):-len(".jsonl")])
            except ValueError:
                continue
            if batch not in self.seen and batch < len(self.batch_sizes):
                self.seen.add(batch)
                added += self.batch_sizes[batch]
        return added

    def poll(self) -> None:
        """Advance the bar by the images of the parts written since the last poll."""
        added = self._done()
        if added:
            self.bar.update(added)

    def __enter__(self) -> RunProgress:
        def loop() -> None:
            while not self._stop.wait(0.5):
                self.poll()

        self._thread = threading.Thread(target=loop, daemon=True, name="run-progress")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()
        self.bar.close()
