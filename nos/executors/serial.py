"""``SerialExecutor``: jobs one at a time in the calling process.

An exception becomes an ``error`` outcome; a crash of the process is not isolated, and
timeouts are not enforced. For tests, debugging and one-core machines.
"""

from __future__ import annotations

import collections
import sys
import time
from typing import Any

from nos.executors.base import JobFunction, Outcome, exception_result, resolve_function

__all__ = ["SerialExecutor"]


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

    def submit(self, job_id: str, payload: dict[str, Any], timeout_s: float | None = None) -> None:
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
            result = exception_result(exc)
        finally:
            if torch is not None and before is not None:
                torch.set_num_threads(before)
            elif self._threads and "torch" in sys.modules:  # the job imported torch
                sys.modules["torch"].set_num_threads(self._threads)
        return [Outcome(job_id, result, "serial", time.monotonic() - t0, started)]

    def close(self) -> None:
        self._queue.clear()
