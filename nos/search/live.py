"""A live view of a search: TensorBoard event files in the run directory.

``tensorboard --logdir search_runs`` then shows, per run and per trained evaluation: the
best and median score so far (``score/best``, ``score/median``), evaluations per second
(``throughput/evals_per_s``), the waste in training steps (``waste/steps_rate``: steps
spent on evaluations that ended failed, diverged or as a duplicate, over all steps) and how
many evaluations reached each rung of the suite fitness (``rungs/reached_0``, ...).

The event file is written here, without TensorFlow or torch: a TFRecord stream (a length,
its masked CRC-32C, the serialised ``Event`` protobuf and its masked CRC-32C) of events
built with the protobuf classes that ship with the ``tensorboard`` package. A resumed run
appends a new event file; :class:`LiveView` starts from the run's records, so its curves
continue where they stopped.
"""

from __future__ import annotations

import os
import socket
import statistics
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["EventWriter", "LiveView", "masked_crc32c"]

_CRC_TABLE: list[int] = []


def _crc_table() -> list[int]:
    if not _CRC_TABLE:
        poly = 0x82F63B78  # CRC-32C (Castagnoli), reflected
        for byte in range(256):
            crc = byte
            for _ in range(8):
                crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
            _CRC_TABLE.append(crc)
    return _CRC_TABLE


def crc32c(data: bytes) -> int:
    table = _crc_table()
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord format's masked CRC: rotate right by 15 and add a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class EventWriter:
    """Appends scalar summaries to one TensorBoard event file in ``folder``."""

    def __init__(self, folder: str | os.PathLike[str]):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        self._event, self._summary = event_pb2.Event, summary_pb2.Summary
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self.path = path / name
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: Any) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(
            header
            + struct.pack("<I", masked_crc32c(header))
            + data
            + struct.pack("<I", masked_crc32c(data))
        )

    def scalars(self, step: int, values: dict[str, float], wall_time: float | None = None) -> None:
        summary = self._summary(
            value=[self._summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()]
        )
        self._write(
            self._event(
                wall_time=time.time() if wall_time is None else wall_time,
                step=step,
                summary=summary,
            )
        )

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


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
