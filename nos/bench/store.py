"""The bench directory: its settings, the record of finished runs, and resuming.

* ``settings.json`` - everything that decides the bench's results (optimizers, tasks,
  budgets, trials, seeds, tuning mode, device, data); written once when the bench starts.
* ``runs.jsonl`` - one line per finished run, appended and fsynced as each run finishes,
  so an interrupted bench loses at most the runs in flight. A truncated last line (a kill
  during the write) is moved to ``runs.jsonl.corrupt`` on resume.
* ``sessions.jsonl`` - the wall time of every invocation, for the report.

A lock file keeps two benches from writing one directory at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from nos.errors import NosError
from nos.jsonl import append_record, cut_tail, read_records

__all__ = ["RUNS", "SESSIONS", "SETTINGS", "BenchStore"]

SETTINGS = "settings.json"
RUNS = "runs.jsonl"
SESSIONS = "sessions.jsonl"
LOCK = ".lock"


class BenchStore:
    """A bench directory opened for writing (see the module docstring)."""

    def __init__(self, path: Path, settings: dict[str, Any], records: list[dict[str, Any]]):
        self.path = path
        self.settings = settings
        self.records: dict[str, dict[str, Any]] = {r["key"]: r for r in records if "key" in r}
        self.warnings: list[str] = []
        self._lock_fd = -1

    # ---- opening ------------------------------------------------------------------------

    @staticmethod
    def _prepare(path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".probe.{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise NosError(
                f"cannot write to the bench directory {path}: {exc.strerror or exc}"
            ) from None

    def _lock(self) -> None:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise NosError(f"another bench is writing {self.path}") from None
        self._lock_fd = fd

    @classmethod
    def create(cls, path: str | Path, settings: dict[str, Any]) -> BenchStore:
        """A new bench in ``path`` (created); one already there is an error."""
        path = Path(path)
        if (path / SETTINGS).exists() or (path / RUNS).exists():
            raise NosError(f"{path} already holds a bench; continue it with --resume {path}")
        cls._prepare(path)
        store = cls(path, settings, [])
        store._lock()
        text = json.dumps(settings, indent=1, sort_keys=True) + "\n"
        tmp = path / f".{SETTINGS}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path / SETTINGS)
        return store

    @staticmethod
    def read_settings(path: str | Path) -> dict[str, Any]:
        path = Path(path)
        try:
            data = json.loads((path / SETTINGS).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NosError(f"{path} holds no bench to resume (no {SETTINGS})") from None
        except (OSError, ValueError) as exc:
            raise NosError(f"{path / SETTINGS}: unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise NosError(f"{path / SETTINGS}: not a settings object")
        return data

    @classmethod
    def resume(cls, path: str | Path) -> BenchStore:
        """The bench in ``path`` with its finished runs; a truncated last line is set aside."""
        path = Path(path)
        settings = cls.read_settings(path)
        cls._prepare(path)
        store = cls(path, settings, [])
        store._lock()
        records, good, warning = read_records(path / RUNS)
        if warning:
            store.warnings.append(warning)
            cut_tail(path / RUNS, good)
        store.records = {r["key"]: r for r in records if "key" in r}
        return store

    # ---- writing ------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Record one finished run (fsynced before returning)."""
        try:
            append_record(self.path / RUNS, record)
        except OSError as exc:
            raise NosError(f"cannot write {self.path / RUNS}: {exc.strerror or exc}") from None
        self.records[record["key"]] = record

    def add_session(self, started: float, wall_s: float, runs: int) -> None:
        with contextlib.suppress(OSError):
            append_record(
                self.path / SESSIONS,
                {"started": round(started, 3), "wall_s": round(wall_s, 3), "runs": runs},
            )

    def sessions(self) -> list[dict[str, Any]]:
        return read_records(self.path / SESSIONS)[0]

    def close(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> BenchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
