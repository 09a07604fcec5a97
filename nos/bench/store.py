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

__all__ = ["RUNS", "SESSIONS", "SETTINGS", "BenchStore", "read_jsonl"]

SETTINGS = "settings.json"
RUNS = "runs.jsonl"
SESSIONS = "sessions.jsonl"
LOCK = ".lock"


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int, str | None]:
    """Records of a JSONL file, the byte length of its good part, and a warning when the
    last line is truncated or corrupt (skipped). A bad line before the last raises."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, None
    except OSError as exc:
        raise NosError(f"{path}: cannot read: {exc.strerror}") from None
    records: list[dict[str, Any]] = []
    pos = good = 0
    number = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        line = data[pos:] if end == -1 else data[pos:end]
        number += 1
        try:
            if end == -1:
                raise ValueError("no newline at the end")
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            if end == -1 or end == len(data) - 1:
                return records, good, f"{path.name}:{number}: truncated last line skipped ({exc})"
            raise NosError(f"{path}:{number}: corrupt record ({exc})"[:300]) from None
        records.append(record)
        pos = good = end + 1
    return records, good, None


def _fsync_append(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write per record: a kill cuts at most this line
        os.fsync(fd)
    finally:
        os.close(fd)


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
        records, good, warning = read_jsonl(path / RUNS)
        if warning:
            store.warnings.append(warning)
            _cut_tail(path / RUNS, good)
        store.records = {r["key"]: r for r in records if "key" in r}
        return store

    # ---- writing ------------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Record one finished run (fsynced before returning)."""
        try:
            _fsync_append(self.path / RUNS, record)
        except OSError as exc:
            raise NosError(f"cannot write {self.path / RUNS}: {exc.strerror or exc}") from None
        self.records[record["key"]] = record

    def add_session(self, started: float, wall_s: float, runs: int) -> None:
        with contextlib.suppress(OSError):
            _fsync_append(
                self.path / SESSIONS,
                {"started": round(started, 3), "wall_s": round(wall_s, 3), "runs": runs},
            )

    def sessions(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / SESSIONS)[0]

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


def _cut_tail(path: Path, good: int) -> None:
    """Move the bytes after the last good record to ``<file>.corrupt``."""
    with open(path, "rb+") as fh:
        fh.seek(good)
        tail = fh.read()
        with open(path.with_name(path.name + ".corrupt"), "ab") as out:
            out.write(tail + b"\n")
        fh.truncate(good)
        fh.flush()
        os.fsync(fh.fileno())
