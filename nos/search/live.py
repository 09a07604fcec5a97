"""A live view of a search: TensorBoard event files in the run directory.

``tensorboard --logdir search_runs`` then shows, per run and per trained evaluation: the
best and median score so far (``score/best``, ``score/median``), evaluations per second
(``throughput/evals_per_s``), the waste in training steps (``waste/steps_rate``: steps
spent on evaluations that ended failed, diverged or as a duplicate, over all steps) and how
many evaluations reached each rung of the suite fitness (``rungs/reached_0``, ...).

The events go through the ``tensorboard`` package's own event-file writer, which needs
neither TensorFlow nor torch. A resumed run appends a new event file; :class:`LiveView`
starts from the run's records, so its curves continue where they stopped.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["EventWriter", "LiveView"]


class EventWriter:
    """Appends scalar summaries to one TensorBoard event file in ``folder``."""

    def __init__(self, folder: str | os.PathLike[str]):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        # a resumed run appends a new file: the writer names each by time, host and pid
        self._writer = EventFileWriter(os.fspath(folder), flush_secs=3600)
        self._closed = False

    def scalars(self, step: int, values: dict[str, float], wall_time: float | None = None) -> None:
        summary = self._summary(
            value=[self._summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
        )
        event = self._event(
            wall_time=time.time() if wall_time is None else wall_time, step=step, summary=summary
        )
        self._writer.add_event(event)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        if not self._closed:
            self._writer.close()
            self._closed = True


_FAILED = {"failed_threshold", "diverged", "error", "timeout"}


class LiveView:
    """Running summaries of a run's evaluation records, written as TensorBoard scalars.

    ``observe`` takes every record the driver appends; a scalar point is written per
    trained evaluation, and the file is flushed at most every ``flush_s`` seconds.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        records: Iterable[dict[str, Any]] = (),
        *,
        flush_s: float = 5.0,
    ):
        self.writer = EventWriter(folder)
        self.flush_s = flush_s
        self._last_flush = time.monotonic()
        self.evaluations = 0
        self.steps = 0
        self.wasted_steps = 0
        self.scores: dict[str, list[float]] = {"init": [], "full": []}
        self.rungs: dict[int, int] = {}
        self.seen: set[tuple[str, str]] = set()
        self.elapsed = 0.0
        for record in records:
            self.observe(record, write=False)

    def observe(self, record: dict[str, Any], *, write: bool = True) -> None:
        if record.get("type") != "eval":
            return
        self.evaluations += 1
        steps = int(record.get("steps") or 0)
        self.steps += steps
        stage = str(record.get("stage"))
        ident = (stage, str(record.get("fingerprint")))
        duplicate = ident in self.seen
        self.seen.add(ident)
        if duplicate or record.get("status") in _FAILED:
            self.wasted_steps += steps
        fitness = record.get("fitness")
        if record.get("status") == "ok" and isinstance(fitness, int | float):
            self.scores.setdefault(stage, []).append(float(fitness))
        details = record.get("suite")
        if isinstance(details, dict):
            for rung in range(int(details.get("rung", 0)) + 1):
                self.rungs[rung] = self.rungs.get(rung, 0) + 1
        self.elapsed = max(self.elapsed, float(record.get("elapsed_s") or 0.0))
        if write:
            self.write()

    def values(self) -> dict[str, float]:
        scores = self.scores["full"] or self.scores["init"]
        out: dict[str, float] = {
            "evaluations": self.evaluations,
            "steps/total": self.steps,
            "waste/steps": self.wasted_steps,
            "waste/steps_rate": self.wasted_steps / self.steps if self.steps else 0.0,
        }
        if scores:
            out["score/best"] = max(scores)
            out["score/median"] = statistics.median(scores)
        if self.elapsed > 0:
            out["throughput/evals_per_s"] = self.evaluations / self.elapsed
        for rung, count in sorted(self.rungs.items()):
            out[f"rungs/reached_{rung}"] = count
        return out

    def write(self) -> None:
        self.writer.scalars(self.evaluations, self.values())
        if time.monotonic() - self._last_flush >= self.flush_s:
            self.writer.flush()
            self._last_flush = time.monotonic()

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
