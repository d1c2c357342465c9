"""Starting the ranks of one run on this machine with torch's own launcher.

Under torchrun (or SLURM starting torchrun) the process already is a rank and nothing is
started. Otherwise :func:`run_ranks` starts ``world`` ranks with
``torch.multiprocessing.start_processes`` (spawn), each with torchrun's environment
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so a rank runs the
same code either way (:func:`wsol_bench.distributed.init_distributed` joins the group). The
parent waits; the first rank to fail ends the others and the run fails with that rank's
error and traceback. Every rank asks Linux to kill it when the parent dies
(``PR_SET_PDEATHSIG``), so no rank outlives a killed run.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp

from wsol_bench.data.images import die_with_parent

log = logging.getLogger(__name__)

RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class RankFailed(RuntimeError):
    """A rank started by :func:`run_ranks` failed; the message holds its error."""


def already_a_rank() -> bool:
    """Whether this process is a rank of a job started elsewhere (torchrun)."""
    return "WORLD_SIZE" in os.environ or "RANK" in os.environ


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_entry(index: int, fn: Callable[..., Any], args: tuple, world: int, port: int, threads: int,
                parent: int, log_format: str, log_file: str | None) -> None:
    """In a started rank: die with the parent, take torchrun's environment, log with the rank's
    name and a timestamp (to stderr and the run's log file), run ``fn(*args)``."""
    die_with_parent()
    if os.getppid() != parent:  # the parent died before PR_SET_PDEATHSIG took effect
        os._exit(1)
    os.environ.update(RANK=str(index), LOCAL_RANK=str(index), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS=str(threads))
    torch.set_num_threads(threads)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=logging.INFO, format=log_format.replace("%(rank)s", str(index)), handlers=handlers,
                        force=True)
    try:
        fn(*args)
    except KeyboardInterrupt:  # the run was interrupted: the parent says how to resume
        os._exit(130)


def run_ranks(fn: Callable[..., Any], args: tuple, world: int, threads: int,
              on_wait: Callable[[], None] | None = None, log_file: str | None = None) -> None:
    """Run ``fn(*args)`` in ``world`` ranks (torch's spawn launcher); ``threads`` torch threads
    each; ``on_wait()`` is called about twice a second while they run. Raises
    :class:`RankFailed` with the first failing rank's error."""
    log_format = "[%(asctime)s][rank %(rank)s][%(name)s][%(levelname)s] - %(message)s"
    context = mp.start_processes(
        _rank_entry, args=(fn, args, world, _free_port(), threads, os.getpid(), log_format, log_file),
        nprocs=world, join=False, start_method="spawn")
    try:
        while not context.join(timeout=0.5):
            if on_wait is not None:
                on_wait()
    except mp.ProcessRaisedException as err:
        raise RankFailed(f"rank {err.error_index} of {world} failed:\n{err.msg}") from None
    except mp.ProcessExitedException as err:
        how = f"signal {err.signal_name}" if err.signal_name else f"exit code {err.exit_code}"
        raise RankFailed(f"rank {err.error_index} of {world} ended with {how} (killed? out of memory?)") from None
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
                process.join(5)


__all__ = ["RANK_ENV", "RankFailed", "already_a_rank", "run_ranks"]
