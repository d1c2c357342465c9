"""``run.processes``: one localisation run on every core (or GPU) without torchrun.

``run.processes``:

* ``auto`` (default): on a CPU-only machine one single-threaded rank per usable core
  (``sched_getaffinity`` and the cgroup CPU quota), capped by the run's number of batches
  and by the available memory (:data:`RANK_MEMORY` each); on a GPU machine one rank per
  visible GPU (untested: no GPU was available); 1 when this process already is a rank
  (under torchrun, or started here);
* ``N``: ``N`` ranks (still 1 when already a rank).

Why processes and not threads: on the CPU, torch's intra-op threads share each small
operation of a 10-crop graph between cores and wait at every operation's barrier; two
single-threaded ranks reach about 1.8x one process with two threads (docs/benchmarks.md).

The ranks are exactly those torchrun would start, so sharding, part files and results are
the same: the calling process becomes rank 0 and starts ranks ``1..N-1`` as ``python -m
wsol_bench <the same overrides>`` with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and a free ``MASTER_PORT`` set; every rank joins the group in
:func:`wsol_bench.distributed.init_distributed` (gloo on the CPU). The children's output
is forwarded to this process's stderr.

Failure handling: a child asks Linux to kill it when its parent dies
(``PR_SET_PDEATHSIG``) and exits at once if the parent is already gone. Rank 0 waits (in
Python, so it can notice a child that dies while starting) until every child is about to
join; when a child exits with an error later, rank 0 is interrupted (or its collective
fails), the other children are terminated and the run fails with the child's last output
lines in the error. A child writes no Hydra folder of its own (see :func:`child_command`).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import _thread
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

RANK_MEMORY = int(2.5 * 2**30)  # bytes of RAM planned per CPU rank (the default run's peak is below this)
START_TIMEOUT = 600.0  # seconds for the children to start (imports, Hydra) before the run fails
INTERRUPT_DELAY = 2.0  # seconds between a child's failure and interrupting rank 0
GRACE = 30.0  # seconds rank 0 then gets to unwind before it is ended
_READY_FD = "WSOL_BENCH_READY_FD"
_PARENT_PID = "WSOL_BENCH_PARENT_PID"
_RANK_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def parse_processes(value: object) -> int | None:
    """``run.processes`` -> ``None`` for ``auto``, else a positive integer (``ValueError`` otherwise)."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1 or str(number) != text:
        raise ValueError(f"run.processes={value!r}: must be auto or an integer >= 1")
    return number


def already_a_rank() -> bool:
    """Whether this process is a rank of a job (torchrun, or started by :func:`launch_ranks`)."""
    return "WORLD_SIZE" in os.environ or "RANK" in os.environ


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, lowered by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def available_memory() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def world_size_for(processes: int | None, device: torch.device, batches: int) -> int:
    """How many ranks ``run.processes`` (``None``: auto) starts for ``batches`` global batches."""
    if already_a_rank():
        return 1
    if processes is not None:
        return processes
    if device.type == "cuda":
        return max(1, torch.cuda.device_count())
    memory = available_memory()
    by_memory = max(1, memory // RANK_MEMORY) if memory is not None else usable_cores()
    return max(1, min(usable_cores(), max(1, batches), by_memory))


def segmentation_workers_for(device_spec: str, processes: int | None) -> int:
    """``segmentation.workers=auto``: 0 on the CPU (saliency already keeps every core busy);
    on a GPU the cores a GPU rank leaves free (GraphCut is then the slower stage; untested)."""
    on_gpu = str(device_spec).startswith("cuda") or (str(device_spec) == "auto" and torch.cuda.is_available())
    if not on_gpu:
        return 0
    ranks = int(os.environ.get("WORLD_SIZE", 0)) or processes or max(1, torch.cuda.device_count())
    return max(0, usable_cores() // ranks - 1)


def loader_workers_for(device_spec: str) -> int:
    """``dataset.num_workers=null``: 0 on the CPU, where decoding is about 1% of a rank's time
    and each worker process would take a core while it starts and about 0.5 GB; 2 on a GPU."""
    on_gpu = str(device_spec).startswith("cuda") or (str(device_spec) == "auto" and torch.cuda.is_available())
    return 2 if on_gpu else 0


def child_command() -> list[str] | None:
    """``python -m wsol_bench`` with this Hydra job's task overrides (and config name or
    folder when given); None outside a Hydra app. The child's Hydra run folder is this
    job's (it exists already) and it writes neither ``.hydra`` files nor a log file there:
    its log lines go to its output, which rank 0 forwards. So a rank leaves no folder of
    its own behind, even when it is killed."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    cmd = [sys.executable, "-m", "wsol_bench", *hc.overrides.task,
           f"hydra.run.dir={_quoted(hc.runtime.output_dir)}", "hydra.output_subdir=null", "hydra/job_logging=stdout"]
    if hc.job.config_name and hc.job.config_name != "config":
        cmd.append(f"--config-name={hc.job.config_name}")
    for source in hc.runtime.config_sources:
        if source.provider == "command-line" and source.schema == "file":
            cmd.append(f"--config-dir={source.path}")
    return cmd


def _quoted(value: str) -> str:
    """A Hydra override value: as is when plain, else single-quoted with escapes."""
    if all(c.isalnum() or c in "_-./:+~" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_start() -> None:
    """In a rank started here: die with the parent, then tell it this rank is about to join."""
    parent = int(os.environ.get(_PARENT_PID, "0"))
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    fd = int(os.environ.pop(_READY_FD, "-1"))
    if fd >= 0:
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)


def _exit_now() -> None:
    """Flush the output and the log, then end the process at once with status 0."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


class ChildRankFailed(RuntimeError):
    """A rank started by :func:`launch_ranks` exited with an error."""


class _Ranks:
    """The children of rank 0: start, forward output, watch, stop."""

    def __init__(self, command: Sequence[str], world: int, threads: int) -> None:
        self.world = world
        self.port = _free_port()
        self.children: list[subprocess.Popen] = []
        self.tails: dict[int, collections.deque[str]] = {}
        self.forwarders: dict[int, threading.Thread] = {}
        self.failure: tuple[int, int] | None = None  # (rank, exit code)
        self.lock = threading.Lock()
        self.in_body = False
        self.done = threading.Event()
        ready_reads = []
        for rank in range(1, world):
            read_end, write_end = os.pipe()
            env = {**os.environ, **self.rank_env(rank), _PARENT_PID: str(os.getpid()), _READY_FD: str(write_end),
                   "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
            try:
                child = subprocess.Popen(list(command), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, pass_fds=(write_end,))
            finally:
                os.close(write_end)
            self.children.append(child)
            ready_reads.append(read_end)
            self.tails[rank] = collections.deque(maxlen=40)
            self.forwarders[rank] = threading.Thread(target=self._forward, args=(rank, child), daemon=True)
            self.forwarders[rank].start()
        threading.Thread(target=self._watch, daemon=True).start()
        start = time.monotonic()
        self._wait_ready(ready_reads)
        log.info("run.processes: ranks 1..%d started in %.1f s", world - 1, time.monotonic() - start)

    def rank_env(self, rank: int) -> dict[str, str]:
        return {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(self.world),
                "LOCAL_WORLD_SIZE": str(self.world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(self.port)}

    def _forward(self, rank: int, child: subprocess.Popen) -> None:
        """Copy a child's output to our stderr as it comes, keeping its last lines."""
        assert child.stdout is not None
        partial = ""
        err = getattr(sys.stderr, "buffer", None)
        for chunk in iter(lambda: child.stdout.read1(65536), b""):  # type: ignore[union-attr]
            try:
                if err is not None:
                    err.write(chunk)
                    err.flush()
                else:
                    sys.stderr.write(chunk.decode(errors="replace"))
            except (OSError, ValueError):
                pass
            lines = (partial + chunk.decode(errors="replace")).replace("\r", "\n").split("\n")
            partial = lines.pop()
            self.tails[rank].extend(line for line in lines if line.strip())
        if partial.strip():
            self.tails[rank].append(partial)

    def _watch(self) -> None:
        """Notice the first child that exits with an error; interrupt rank 0, end it if stuck."""
        while not self.done.is_set():
            for rank, child in enumerate(self.children, start=1):
                code = child.poll()
                if code not in (None, 0) and self.failure is None:
                    self.failure = (rank, code)
                    log.error("rank %d exited with code %s; stopping the run", rank, code)
                    # a child that fails *because* rank 0 failed and left the group exits a moment
                    # after rank 0 has left the body: wait that moment before interrupting it
                    if self.done.wait(INTERRUPT_DELAY):
                        return
                    with self.lock:
                        if self.in_body:
                            _thread.interrupt_main()
                    if not self.done.wait(GRACE):  # rank 0 stuck in a call that cannot be interrupted
                        self.stop()
                        sys.stderr.write(f"\n{self.message()}\n")
                        sys.stderr.flush()
                        os._exit(1)
                    return
            self.done.wait(0.2)

    def _wait_ready(self, reads: list[int]) -> None:
        """Wait until every child is about to join the group (or one fails, or time runs out)."""
        pending, deadline = dict(zip(reads, range(1, self.world))), time.monotonic() + START_TIMEOUT
        try:
            while pending:
                if self.failure is not None:
                    raise ChildRankFailed(self.message())
                if time.monotonic() > deadline:
                    raise ChildRankFailed(f"ranks {sorted(pending.values())} did not start within {START_TIMEOUT:.0f} s")
                readable, _, _ = select.select(list(pending), [], [], 0.2)
                for fd in readable:
                    if not os.read(fd, 1):  # EOF: the child died before it was ready
                        rank = pending[fd]
                        code = self.children[rank - 1].wait()
                        self.failure = self.failure or (rank, code)
                        raise ChildRankFailed(self.message())
                    os.close(fd)
                    del pending[fd]
        except BaseException:
            for fd in pending:
                os.close(fd)
            raise

    def culprit(self) -> tuple[int, int] | None:
        """The failed child to blame: the first whose error is not a lost connection to
        another rank (those are victims of the failure), else the first that failed."""
        failed = [(rank, child.returncode) for rank, child in enumerate(self.children, start=1)
                  if child.returncode not in (None, 0)]
        for rank, code in failed:
            self.forwarders[rank].join(timeout=2)  # let it take the child's last words
            if not any(is_collective_error(line) for line in self.tails[rank]):
                return rank, code
        return self.failure or (failed[0] if failed else None)

    def message(self) -> str:
        found = self.culprit()
        if found is None:
            return "a rank failed"
        rank, code = found
        self.forwarders[rank].join(timeout=2)
        tail = "\n".join(f"  [rank {rank}] {line}" for line in self.tails.get(rank, ()))
        return f"rank {rank} of {self.world} (started by run.processes) exited with code {code}; its last output:\n{tail}"

    def stop(self) -> None:
        """Terminate the children still running (SIGTERM, then SIGKILL)."""
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 10
        for child in self.children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def finish(self, timeout: float = 300.0) -> None:
        """Wait for the children after a successful rank 0; a child's error fails the run."""
        deadline = time.monotonic() + timeout
        for rank, child in enumerate(self.children, start=1):
            try:
                code = child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise ChildRankFailed(f"rank {rank} did not exit within {timeout:.0f} s of the end of the run") from None
            if code != 0:
                self.failure = self.failure or (rank, code)
                raise ChildRankFailed(self.message())


@contextlib.contextmanager
def _rank_zero_env(env: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in _RANK_ENV}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def launch_ranks(processes: int | None, device: torch.device, batches: int,
                 command: Sequence[str] | None = None) -> Iterator[int]:
    """Run the body as rank 0 of ``world_size_for(processes, device, batches)`` ranks
    (yields the world size; the body calls ``init_distributed``). With one rank, or in a
    rank already, the body just runs. ``command``: how to start a rank (default: this Hydra
    job's command line, :func:`child_command`)."""
    launched = _PARENT_PID in os.environ and _READY_FD in os.environ
    if launched:
        _child_start()
    world = world_size_for(processes, device, batches)
    command = command or (child_command() if world > 1 else None)
    if world <= 1 or command is None:
        if world > 1:
            log.warning("run.processes: cannot start ranks outside `python -m wsol_bench`; running one process")
        yield 1
        if launched:  # a started rank has written everything: skip the interpreter's teardown
            _exit_now()  # (1.5 s with torch and Hydra loaded, which rank 0 would wait for)
        return
    threads = max(1, usable_cores() // world) if device.type == "cpu" else 1
    log.info("run.processes: starting %d ranks (%d torch thread(s) each)", world, threads)
    previous_threads = torch.get_num_threads()
    if device.type == "cpu":  # rank 0 computes like the others (and like torchrun's ranks) from the start
        torch.set_num_threads(threads)
    ranks = _Ranks(command, world, threads)
    try:
        with _rank_zero_env(ranks.rank_env(0)):
            try:
                with ranks.lock:
                    ranks.in_body = True
                yield world
                with ranks.lock:
                    ranks.in_body = False
                ranks.finish()
            except BaseException as err:
                with ranks.lock:
                    ranks.in_body = False
                try:
                    time.sleep(0)  # an interrupt the watcher had already sent fires here
                except KeyboardInterrupt:
                    pass
                if isinstance(err, ChildRankFailed):
                    raise
                if isinstance(err, KeyboardInterrupt) and ranks.failure is not None:
                    raise ChildRankFailed(ranks.message()) from None
                if is_collective_error(str(err)):  # rank 0 lost a child: wait for its exit, blame it
                    deadline = time.monotonic() + 10
                    while ranks.culprit() is None and time.monotonic() < deadline:
                        time.sleep(0.1)
                    if ranks.culprit() is not None:
                        raise ChildRankFailed(ranks.message()) from err
                raise  # rank 0's own error (the children are stopped below)
    finally:
        ranks.done.set()
        ranks.stop()
        torch.set_num_threads(previous_threads)


def is_collective_error(text: str) -> bool:
    """Whether an error message is a rank's lost connection to another rank (gloo / NCCL)."""
    return any(marker in text for marker in ("Connection closed by peer", "Connection reset by peer",
                                              "DistBackendError", "NCCL communicator was aborted"))


__all__ = ["ChildRankFailed", "RANK_MEMORY", "already_a_rank", "available_memory", "child_command",
           "is_collective_error", "launch_ranks", "loader_workers_for",
           "parse_processes", "segmentation_workers_for", "usable_cores", "world_size_for"]
