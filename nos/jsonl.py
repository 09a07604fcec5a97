"""Append-only JSON Lines files, as the run store and the bench record write them.

A record is one line written with a single ``write``, so a kill cuts at most the line in
flight. Reading is tolerant at the end only: a truncated or corrupt *last* line is skipped
with a warning, and :func:`cut_tail` moves it aside to ``<file>.corrupt`` before the file is
appended to again; a bad line anywhere else is an error. May import ``nos.errors`` only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nos.errors import NosError

__all__ = ["append_record", "cut_tail", "read_records", "record_line"]


def read_records(path: Path) -> tuple[list[dict[str, Any]], int, str | None]:
    """The records of ``path``, the byte length of its well-formed part, and a warning when
    its last line was skipped (``None`` otherwise). A missing file has no records."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, None
    except OSError as exc:
        raise NosError(f"{path}: cannot read: {exc.strerror}") from None
    records: list[dict[str, Any]] = []
    good = pos = number = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        last = end == -1 or end == len(data) - 1
        line = data[pos:] if end == -1 else data[pos:end]
        number += 1
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
            if end == -1:
                raise ValueError("no newline at the end")
        except (ValueError, UnicodeDecodeError) as exc:
            if not line.strip() and not last:
                pos = end + 1
                continue
            if last:
                reason = type(exc).__name__ if not str(exc) else str(exc)
                warning = f"{path.name}:{number}: truncated or corrupt last line skipped ({reason})"
                return records, good, warning[:200]
            raise NosError(f"{path}:{number}: corrupt record ({exc})"[:300]) from None
        records.append(record)
        pos = good = end + 1
    return records, good, None


def cut_tail(path: Path, good: int) -> None:
    """Move the bytes after the first ``good`` ones to ``<file>.corrupt``, so that appends
    start on a clean line."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size <= good:
        return
    with open(path, "rb+") as fh:
        fh.seek(good)
        tail = fh.read()
        with open(path.with_name(path.name + ".corrupt"), "ab") as out:
            out.write(tail + b"\n")
        fh.truncate(good)
        fh.flush()
        os.fsync(fh.fileno())


def record_line(record: dict[str, Any]) -> bytes:
    """One record as its line: compact JSON, no NaN, a newline at the end."""
    return (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode()


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record in a single write and fsync it before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, record_line(record))
        os.fsync(fd)
    finally:
        os.close(fd)
