"""Starting the ranks of one run on this machine with torch's own launcher.

Under torchrun (or SLURM starting torchrun) the process already is a rank and nothing is
started. Otherwise :func:`run_ranks` starts ``world`` ranks with torch's elastic launcher
(``torch.distributed.launcher.api.elastic_launch``, what ``torchrun --standalone`` runs), each
a fresh ``python -m wsol_bench.pipeline.launch JOB`` with torchrun's environment (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): a rank runs the same code
either way, and a user's script or notebook is never re-imported by a rank. ``JOB`` is a
private temporary file holding the function and its arguments (pickled by this process,
removed when the run ends). The first rank to fail ends the others and the run fails with
that rank's error and traceback; every rank asks Linux to kill it when the launching
process dies (``PR_SET_PDEATHSIG``), so no rank outlives a killed run.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import tempfile
import uuid
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LOG_FORMAT = "[%(asctime)s][rank {rank}][%(name)s][%(levelname)s] - %(message)s"


class RankFailed(RuntimeError):
    """A rank started by :func:`run_ranks` failed; the message holds its error."""


def already_a_rank() -> bool:
    """Whether this process is a rank of a job started elsewhere (torchrun)."""
    return "WORLD_SIZE" in os.environ or "RANK" in os.environ


def run_ranks(fn: Callable[..., Any], args: tuple, world: int, threads: int, log_file: str | None = None) -> None:
    """Run ``fn(*args)`` in ``world`` ranks, ``threads`` torch threads each; raises
    :class:`RankFailed` with the first failing rank's error."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    fd, job = tempfile.mkstemp(prefix="wsol_bench_job_", suffix=".pkl")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((fn, args, threads, log_file, os.getpid()), fh)
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=world, run_id=uuid.uuid4().hex,
                              rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2,
                              start_method="spawn")
        # the launcher's start-up and shut-down reports are noise in a run's log (each of its loggers
        # has its own level, so each is quietened)
        quiet = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                 if name.startswith("torch.distributed.elastic")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.ERROR)
        try:
            elastic_launch(config, sys.executable)("-m", "wsol_bench.pipeline.launch", job)
        except ChildFailedError as err:
            raise RankFailed(_failure_message(err, world)) from None
        except SignalException as err:  # the launcher stopped the ranks on a signal to this process
            if err.sigval == signal.SIGINT:
                raise KeyboardInterrupt from None
            raise RankFailed(f"the run was stopped by {signal.Signals(err.sigval).name}") from None
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
    finally:
        os.unlink(job)


def _failure_message(err: Any, world: int) -> str:
    """The first failure of a :class:`ChildFailedError`: its rank, exit and error text."""
    rank, failure = err.get_first_failure()
    message = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
    trace = "" if isinstance(failure.message, str) else failure.message.get("extraInfo", {}).get("py_callstack", "")
    how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
    return f"rank {rank} of {world} failed ({how}): {message}\n{trace}".rstrip()


def _rank_main(job: str) -> None:
    """In a started rank: die with the launching process, log with the rank's name and a
    timestamp (stderr and the run's log file), run the job's function."""
    from torch.distributed.elastic.multiprocessing.errors import record

    from wsol_bench.data.images import die_with_parent

    with open(job, "rb") as fh:
        fn, args, threads, log_file, parent = pickle.load(fh)  # written by the launching process for this run
    die_with_parent()
    if os.getppid() != parent:  # the launching process died before PR_SET_PDEATHSIG took effect
        os._exit(1)
    import torch

    torch.set_num_threads(threads)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT.format(rank=os.environ.get("RANK", "?")),
                        handlers=handlers, force=True)
    try:
        record(fn)(*args)  # an error is written where the launcher reads it (its message and traceback)
    except KeyboardInterrupt:  # the run was interrupted: the launching process says how to resume
        os._exit(130)


if __name__ == "__main__":
    _rank_main(sys.argv[1])


__all__ = ["RANK_ENV", "RankFailed", "already_a_rank", "run_ranks"]
