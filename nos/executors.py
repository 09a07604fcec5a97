"""Executors: run plain-data evaluation jobs and hand back results as they complete.

The search (spec §4.5: particles and a step's children are independent) submits jobs and
collects outcomes through a small interface, :class:`Executor`:

* ``submit(job_id, payload, timeout_s)`` queues one job; ``payload`` is plain data (a dict of
  str/number/list), so it can cross a process boundary (and later a Ray cluster) unchanged;
* ``wait(timeout)`` blocks until at least one job has finished (or ``timeout`` passes) and
  returns every :class:`Outcome` ready by then, in completion order;
* ``pending`` counts jobs submitted and not yet returned; ``workers`` is the parallelism.

The job function is named by a ``"module:function"`` path (plain data too): it takes the
payload and returns a plain-data result dict with at least ``status``.

Two implementations:

``SerialExecutor``
  Runs each job in the calling process at ``wait``. An exception becomes an ``error``
  outcome; a crash of the process is not isolated, and timeouts are not enforced.
``LocalExecutor``
  A set of worker processes started with the *spawn* method (CUDA cannot be re-initialised
  in a forked child, and a fresh interpreter holds no state of the driver), each limited to
  one torch/BLAS thread so that N workers use N cores. Crash isolation: a worker that raises
  reports ``error`` with the exception; a worker that dies (segfault, SIGKILL, the kernel's
  OOM killer, ``os._exit``) is noticed through its process sentinel, its job becomes
  ``error`` with the exit signal or code as reason, and a fresh worker takes its place; a job
  that runs past its wall-clock limit gets its worker killed (SIGKILL) and becomes
  ``timeout``. The search goes on in every case.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "Outcome",
    "SerialExecutor",
    "make_executor",
    "resolve_function",
]

log = logging.getLogger(__name__)

JobFunction = Callable[[dict[str, Any]], dict[str, Any]]
#: Environment that keeps a worker to one thread in torch, OpenMP and the BLAS libraries.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
#: Seconds a worker is given to exit after the stop message before it is killed.
STOP_GRACE_S = 2.0


@dataclass(frozen=True)
class Outcome:
    """A finished job: its id, the job function's result dict, and where and how long it ran.

    For a job that crashed or timed out, ``result`` is ``{"status": "error"|"timeout",
    "reason": ...}`` made by the executor.
    """

    job_id: str
    result: dict[str, Any]
    worker: str
    wall_s: float
    started: float  # time.time() when the job started on its worker


class Executor(Protocol):
    workers: int

    def submit(self, job_id: str, payload: dict[str, Any],
               timeout_s: float | None = None) -> None: ...

    def wait(self, timeout: float | None = None) -> list[Outcome]: ...

    @property
    def pending(self) -> int: ...

    def close(self) -> None: ...


def resolve_function(path: str) -> JobFunction:
    """The function named ``"package.module:function"``."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"job function must be 'module:function', got {path!r}")
    return getattr(importlib.import_module(module), name)


def _failure(status: str, reason: str) -> dict[str, Any]:
    return {"status": status, "reason": reason}


def _exception_result(exc: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    reason = f"{type(exc).__name__}: {exc}".strip()[:300]
    return {**_failure("error", reason), "traceback": "".join(tb[-3:])[-2000:]}


def _limit_threads() -> None:
    """One compute thread: N workers on N cores must not each start N BLAS threads."""
    os.environ.update(ONE_THREAD_ENV)
    torch = sys.modules.get("torch")  # never imported here: only limited once loaded
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# ------------------------------------------------------------------------------- serial


class SerialExecutor:
    """Runs jobs one at a time in the calling process (tests, debugging, 1-core machines).

    Like a worker, a job runs on ``threads`` torch threads (default 1; ``None`` leaves the
    process's setting alone); the process's own setting is restored after each job (a job
    that imports torch leaves it at ``threads``).
    """

    workers = 1

    def __init__(self, function: str | JobFunction, threads: int | None = 1):
        self._fn = resolve_function(function) if isinstance(function, str) else function
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._threads = threads

    def submit(self, job_id: str, payload: dict[str, Any],
               timeout_s: float | None = None) -> None:
        self._queue.append((job_id, payload))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        if not self._queue:
            return []
        job_id, payload = self._queue.popleft()
        started, t0 = time.time(), time.monotonic()
        torch = sys.modules.get("torch") if self._threads else None
        before = torch.get_num_threads() if torch is not None else None
        if torch is not None:
            torch.set_num_threads(self._threads)
        try:
            result = self._fn(payload)
        except Exception as exc:  # the candidate's failure, recorded; the search goes on
            result = _exception_result(exc)
        finally:
            if before is not None:
                torch.set_num_threads(before)
            elif self._threads and "torch" in sys.modules:  # the job imported torch
                sys.modules["torch"].set_num_threads(self._threads)
        return [Outcome(job_id, result, "serial", time.monotonic() - t0, started)]

    def close(self) -> None:
        self._queue.clear()


# ------------------------------------------------------------------------- worker side


def _worker_main(conn: Any, function: str) -> None:
    """Loop of one worker process: receive (job_id, payload), send (job_id, result, times)."""
    _limit_threads()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    fn = resolve_function(function)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        job_id, payload = message
        _limit_threads()
        started, t0 = time.time(), time.monotonic()
        try:
            result = fn(payload)
        except Exception as exc:  # MemoryError included: an OOM inside Python is an error
            result = _exception_result(exc)
        try:
            conn.send((job_id, result, time.monotonic() - t0, started))
        except (BrokenPipeError, OSError):
            return


# ------------------------------------------------------------------------- driver side


@dataclass
class _Worker:
    name: str
    process: Any
    conn: Any
    job: tuple[str, dict[str, Any], float | None] | None = None
    started: float = 0.0  # time.time() at dispatch
    t0: float = 0.0  # time.monotonic() at dispatch


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (killed: out of memory or by hand)" if -exitcode == signal.SIGKILL else ""
        return f"worker died with {name}{hint}"
    return f"worker exited with code {exitcode}"


class LocalExecutor:
    """Worker processes on this machine (spawn start method, one thread each).

    Args:
      function: ``"module:function"`` run on each payload in a worker.
      workers: number of processes (default: the number of cores).
      timeout_s: default wall-clock limit per job (None: no limit); ``submit`` may override.
    """

    def __init__(self, function: str, workers: int | None = None,
                 timeout_s: float | None = None):
        import multiprocess
        import multiprocess.connection

        self._ctx = multiprocess.get_context("spawn")
        self._wait_any = multiprocess.connection.wait
        self._function = function
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._timeout_s = timeout_s
        self._jobs: collections.deque[tuple[str, dict[str, Any], float | None]] = (
            collections.deque())
        self._pool: list[_Worker] = []
        self._spawned = 0
        self._ready: list[Outcome] = []
        self._closed = False
        for _ in range(self.workers):
            self._pool.append(self._spawn())

    # workers -------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        self._spawned += 1
        name = f"w{self._spawned}"
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child, self._function),
                                 name=f"nos-{name}", daemon=True)
        proc.start()
        child.close()
        log.debug("started worker %s (pid %s)", name, proc.pid)
        return _Worker(f"{name}/{proc.pid}", proc, parent)

    def _replace(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        index = self._pool.index(worker)
        self._pool[index] = self._spawn()

    def _dispatch(self) -> None:
        for worker in self._pool:
            if not self._jobs:
                return
            if worker.job is not None:
                continue
            job = self._jobs.popleft()
            try:
                worker.conn.send((job[0], job[1]))
            except (BrokenPipeError, OSError):  # died while idle: retry the job elsewhere
                self._jobs.appendleft(job)
                self._replace(worker)
                continue
            worker.job, worker.started, worker.t0 = job, time.time(), time.monotonic()

    def _finish(self, worker: _Worker, result: dict[str, Any], wall_s: float,
                started: float | None = None) -> None:
        assert worker.job is not None
        self._ready.append(Outcome(worker.job[0], result, worker.name, wall_s,
                                   worker.started if started is None else started))
        worker.job = None

    # interface -----------------------------------------------------------------------

    def submit(self, job_id: str, payload: dict[str, Any],
               timeout_s: float | None = None) -> None:
        if self._closed:
            raise RuntimeError("executor is closed")
        limit = self._timeout_s if timeout_s is None else timeout_s
        self._jobs.append((job_id, payload, limit))
        self._dispatch()

    @property
    def pending(self) -> int:
        busy = sum(w.job is not None for w in self._pool)
        return len(self._jobs) + busy + len(self._ready)

    def _deadline(self, worker: _Worker) -> float | None:
        if worker.job is None or worker.job[2] is None:
            return None
        return worker.t0 + worker.job[2]

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        end = None if timeout is None else time.monotonic() + timeout
        while not self._ready:
            busy = [w for w in self._pool if w.job is not None]
            if not busy:
                break
            now = time.monotonic()
            deadlines = [d for d in map(self._deadline, busy) if d is not None]
            if end is not None:
                deadlines.append(end)
            limit = max(0.0, min(deadlines) - now) if deadlines else None
            waitables = [w.conn for w in busy] + [w.process.sentinel for w in busy]
            self._wait_any(waitables, timeout=limit)
            self._collect(busy)
            if end is not None and time.monotonic() >= end:
                break
        self._dispatch()
        out, self._ready = self._ready, []
        return out

    def _collect(self, busy: list[_Worker]) -> None:
        now = time.monotonic()
        for worker in busy:
            message = None
            try:
                if worker.conn.poll():
                    message = worker.conn.recv()
            except (EOFError, OSError):
                message = None
            if message is not None:
                _job_id, result, wall_s, started = message
                self._finish(worker, result, wall_s, started)
                continue
            if not worker.process.is_alive():
                worker.process.join(timeout=1)
                reason = _death_reason(worker.process.exitcode)
                log.warning("%s running %s: %s; replacing it", worker.name, worker.job[0], reason)
                self._finish(worker, _failure("error", reason), now - worker.t0)
                self._replace(worker)
                continue
            deadline = self._deadline(worker)
            if deadline is not None and now >= deadline:
                limit = worker.job[2]
                log.warning("%s running %s: past its %gs limit; killing it", worker.name,
                            worker.job[0], limit)
                self._finish(worker, _failure("timeout", f"exceeded the {limit:g}s wall-clock "
                                              "limit"), now - worker.t0)
                self._replace(worker)

    def close(self) -> None:
        """Stop every worker (running jobs are abandoned)."""
        if self._closed:
            return
        self._closed = True
        self._jobs.clear()
        for worker in self._pool:
            try:
                if worker.job is None:
                    worker.conn.send(None)
                else:
                    worker.process.kill()
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in self._pool:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=5)
            with contextlib.suppress(OSError):
                worker.conn.close()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EXECUTORS = ("serial", "local")


def make_executor(kind: str, function: str, *, workers: int | None = None,
                  timeout_s: float | None = None) -> Executor:
    """An executor by name (``serial`` or ``local``)."""
    if kind == "serial":
        return SerialExecutor(function)
    if kind == "local":
        return LocalExecutor(function, workers=workers, timeout_s=timeout_s)
    raise ValueError(f"unknown executor {kind!r} (choose from {', '.join(EXECUTORS)})")
