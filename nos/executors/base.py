"""The executor interface: run plain-data evaluation jobs, hand back results as they complete.

The search (spec §4.5: particles and a step's children are independent) submits jobs and
collects outcomes through a small interface, :class:`Executor`:

* ``submit(job_id, payload, timeout_s)`` queues one job; ``payload`` is plain data (a dict of
  str/number/list), so it can cross a process boundary (or a cluster) unchanged;
* ``wait(timeout)`` blocks until at least one job has finished (or ``timeout`` passes) and
  returns every :class:`Outcome` ready by then, in completion order;
* ``pending`` counts jobs submitted and not yet returned; ``workers`` is the parallelism.

The job function is named by a ``"module:function"`` path (plain data too): it takes the
payload and returns a plain-data result dict with at least ``status``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from nos.status import Status

__all__ = [
    "ONE_THREAD_ENV",
    "Executor",
    "JobFunction",
    "Outcome",
    "exception_result",
    "exit_with_parent",
    "failure",
    "limit_threads",
    "resolve_function",
]

JobFunction = Callable[[dict[str, Any]], dict[str, Any]]
#: Environment that keeps a worker to one thread in torch, OpenMP and the BLAS libraries.
ONE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


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
    @property
    def workers(self) -> int:
        """How many jobs run at once."""
        ...

    def submit(
        self, job_id: str, payload: dict[str, Any], timeout_s: float | None = None
    ) -> None: ...

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


def failure(status: Status, reason: str) -> dict[str, Any]:
    return {"status": status.value, "reason": reason}  # plain data across processes


def exception_result(exc: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    reason = f"{type(exc).__name__}: {exc}".strip()[:300]
    return {**failure(Status.ERROR, reason), "traceback": "".join(tb[-3:])[-2000:]}


#: How often a worker checks that its driver is still alive.
PARENT_POLL_S = 0.25


def exit_with_parent(parent_pid: int) -> None:
    """End this worker process soon after the driver that started it dies.

    A driver killed with SIGKILL cannot stop its workers, which would go on training and
    compete with a resumed run for the cores. On Linux the kernel sends the worker SIGKILL
    when its parent dies (``PR_SET_PDEATHSIG``); everywhere, a daemon thread also polls the
    parent pid and exits the process (``os._exit`` works while the main thread trains).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="nos-parent-watch", daemon=True).start()


def limit_threads() -> None:
    """One compute thread: N workers on N cores must not each start N BLAS threads."""
    os.environ.update(ONE_THREAD_ENV)
    torch = sys.modules.get("torch")  # never imported here: only limited once loaded
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
