"""``LocalExecutor``: worker processes on this machine, with crash isolation.

Workers are started with the *spawn* method (CUDA cannot be re-initialised in a forked
child, and a fresh interpreter holds no state of the driver), each limited to one
torch/BLAS thread so that N workers use N cores. A worker that raises reports ``error``
with the exception; a worker that dies (segfault, SIGKILL, the kernel's OOM killer,
``os._exit``) is noticed through its process sentinel, its job becomes ``error`` with the
exit signal or code as reason, and a fresh worker takes its place; a job that runs past its
wall-clock limit gets its worker killed (SIGKILL) and becomes ``timeout``. The search goes
on in every case. Workers exit within a second of the driver's death, even a SIGKILL
(:func:`~nos.executors.base.exit_with_parent`).

``worker_env`` gives each worker slot environment variables set before its process
starts (slot i gets entry i modulo their number, and a replacement worker its slot's):
``CUDA_VISIBLE_DEVICES`` pins a worker to one GPU.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nos.executors.base import (
    Outcome,
    exception_result,
    exit_with_parent,
    failure,
    limit_threads,
    resolve_function,
)
from nos.status import Status

__all__ = ["STOP_GRACE_S", "LocalExecutor"]

log = logging.getLogger(__name__)

#: Seconds a worker is given to exit after the stop message before it is killed.
STOP_GRACE_S = 2.0


# ------------------------------------------------------------------------- worker side


def _worker_main(
    conn: Any, function: str, parent_pid: int, env: Mapping[str, str] | None = None
) -> None:
    """Loop of one worker process: receive (job_id, payload), send (job_id, result, times)."""
    os.environ.update(env or {})  # set at start too; again before anything reads it
    exit_with_parent(parent_pid)
    limit_threads()
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
        limit_threads()
        started, t0 = time.time(), time.monotonic()
        try:
            result = fn(payload)
        except Exception as exc:  # MemoryError included: an OOM inside Python is an error
            result = exception_result(exc)
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
    slot: int = 0  # its place in the pool (and its worker_env entry)


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in this process's environment for the duration of the block."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
      worker_env: environment variables per worker slot (see the module docstring).
    """

    def __init__(
        self,
        function: str,
        workers: int | None = None,
        timeout_s: float | None = None,
        worker_env: Sequence[Mapping[str, str]] | None = None,
    ):
        import multiprocess
        import multiprocess.connection

        self._ctx = multiprocess.get_context("spawn")
        self._wait_any = multiprocess.connection.wait
        self._function = function
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._timeout_s = timeout_s
        self._jobs: collections.deque[tuple[str, dict[str, Any], float | None]] = (
            collections.deque()
        )
        self._pool: list[_Worker] = []
        self._spawned = 0
        self._ready: list[Outcome] = []
        self._closed = False
        self._envs = [dict(e) for e in worker_env or ()]
        for slot in range(self.workers):
            self._pool.append(self._spawn(slot))

    # workers -------------------------------------------------------------------------

    def _env(self, slot: int) -> dict[str, str]:
        return self._envs[slot % len(self._envs)] if self._envs else {}

    def _spawn(self, slot: int) -> _Worker:
        self._spawned += 1
        name = f"w{self._spawned}"
        env = self._env(slot)
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self._function, os.getpid(), env),
            name=f"nos-{name}",
            daemon=True,
        )
        with _environment(env):  # a spawned child inherits the environment at start
            proc.start()
        child.close()
        log.debug("started worker %s (pid %s) with %s", name, proc.pid, env)
        return _Worker(f"{name}/{proc.pid}", proc, parent, slot=slot)

    def _replace(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        index = self._pool.index(worker)
        self._pool[index] = self._spawn(worker.slot)

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

    def _finish(
        self, worker: _Worker, result: dict[str, Any], wall_s: float, started: float | None = None
    ) -> None:
        assert worker.job is not None
        self._ready.append(
            Outcome(
                worker.job[0],
                result,
                worker.name,
                wall_s,
                worker.started if started is None else started,
            )
        )
        worker.job = None

    # interface -----------------------------------------------------------------------

    def submit(self, job_id: str, payload: dict[str, Any], timeout_s: float | None = None) -> None:
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
            assert worker.job is not None  # ``busy`` holds the workers with a job
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
                self._finish(worker, failure(Status.ERROR, reason), now - worker.t0)
                self._replace(worker)
                continue
            deadline = self._deadline(worker)
            if deadline is not None and now >= deadline:
                limit = worker.job[2]
                log.warning(
                    "%s running %s: past its %gs limit; killing it",
                    worker.name,
                    worker.job[0],
                    limit,
                )
                self._finish(
                    worker,
                    failure(Status.TIMEOUT, f"exceeded the {limit:g}s wall-clock limit"),
                    now - worker.t0,
                )
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
