"""Run directories: ``search_runs/NAME/`` (ARCHITECTURE §4.1 principle 5, §4.7).

A run directory holds

``config.toml``
  The full resolved configuration: the search settings (``[search]``), how it was executed
  (``[execution]``), the package versions (``[versions]``) and the creation time. Written
  once, atomically; a resumed run must have the same ``[search]`` table.
``grammar.toml``
  A copy of the grammar, so that a run stays readable when the grammar file changes.
``evaluations.jsonl``
  The append-only record, one JSON object per line, written by the driver only (one writer,
  guarded by an exclusive lock on ``driver.lock``): every trained evaluation (``"type":
  "eval"``: candidate text, key, fingerprint, parent, mutation kind, fitness per seed,
  status and reason, timings, worker), the integrity-check rejections of each draw, counted
  by reason (``"rejections"``), the initial selection and every particle move, and a final
  ``"done"`` record. Each record is written with one ``write`` call and flushed, so a killed
  process loses at most the line it was writing; ``fsync`` follows at most once a second
  and at every checkpoint (for power loss).
``checkpoints.jsonl``
  Periodic snapshots of the search state: particle positions and fitness, the seen sets,
  the states of the particles' random generators, rejection counts and the elapsed time.
  Resume does not need them (it replays the record, see :mod:`nos.search.driver`); they
  document the state and carry the elapsed time for time budgets.

Reading is tolerant at the end only: a truncated or corrupt *last* line (a kill in the
middle of a write) is reported in :attr:`RunData.warnings` and skipped, and resuming moves
it to ``evaluations.jsonl.corrupt``; a corrupt line elsewhere is an error. Nothing is ever
unpickled or evaluated.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import math
import os
import re
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nos.errors import NosError
from nos.jsonl import cut_tail, read_records, record_line

__all__ = [
    "DEFAULT_ROOT",
    "RunData",
    "RunStore",
    "list_runs",
    "load_run",
    "resolve_run",
    "to_toml",
]

DEFAULT_ROOT = Path("search_runs")
EVALS = "evaluations.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
CONFIG = "config.toml"
GRAMMAR = "grammar.toml"
LOCK = "driver.lock"
FSYNC_EVERY_S = 1.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


# ------------------------------------------------------------------------------- TOML


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML cannot hold {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(data: dict[str, Any], _prefix: str = "") -> str:
    """TOML text of nested dicts of str/int/float/bool/lists (``None`` values are left out)."""
    lines = [
        f"{k} = {_toml_value(v)}"
        for k, v in data.items()
        if v is not None and not isinstance(v, dict)
    ]
    for key, value in data.items():
        if isinstance(value, dict):
            name = f"{_prefix}.{key}" if _prefix else key
            lines += ["", f"[{name}]", to_toml(value, name).rstrip("\n")]
    return "\n".join(lines).strip("\n") + "\n"


# ------------------------------------------------------------------------------ reading


def _read_jsonl(path: Path, warnings: list[str]) -> tuple[list[dict[str, Any]], int]:
    """Records of a JSONL file and the byte length of its well-formed part; a skipped bad
    last line is reported in ``warnings``."""
    records, good, warning = read_records(path)
    if warning:
        warnings.append(warning)
    return records, good


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CONFIG
    try:
        with open(path, "rb") as fh:
            config = tomllib.load(fh)
    except FileNotFoundError:
        raise NosError(f"{run_dir}: not a run directory (no {CONFIG})") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NosError(f"{path}: corrupt run configuration: {exc}") from None
    if not isinstance(config.get("search"), dict):
        raise NosError(f"{path}: corrupt run configuration: no [search] table")
    return config


def _lock_holder(run_dir: Path) -> int | None:
    """The pid of a live driver holding the run's lock, else None."""
    path = run_dir / LOCK
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            return int(path.read_text().strip() or 0) or -1
        except (OSError, ValueError):
            return -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@dataclass
class RunData:
    """A run read from disk (for ``nos runs``, ``nos show`` and export)."""

    name: str
    path: Path
    config: dict[str, Any]
    records: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def evals(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == "eval"]

    @property
    def done(self) -> dict[str, Any] | None:
        done = [r for r in self.records if r.get("type") == "done"]
        return done[-1] if done else None

    @property
    def status(self) -> str:
        if _lock_holder(self.path) is not None:
            return "running"
        done = self.done
        if done is None:
            return "interrupted"
        return str(done.get("status", "finished"))

    @property
    def created(self) -> float:
        try:
            return float(self.config.get("run", {}).get("created_unix", 0.0))
        except (TypeError, ValueError):
            return 0.0

    def grammar(self) -> Any:
        from nos.symbolic.grammar import load_grammar

        copy = self.path / GRAMMAR
        return load_grammar(copy if copy.exists() else self.config["search"]["grammar"])


def resolve_run(name_or_path: str | Path, root: str | Path = DEFAULT_ROOT) -> Path:
    """The directory of a run given by name (under ``root``) or by path."""
    p = Path(name_or_path)
    for candidate in (p, Path(root) / p):
        if (candidate / CONFIG).exists():
            return candidate
    if p.is_dir() or (Path(root) / p).is_dir():
        raise NosError(f"{name_or_path}: not a run directory (no {CONFIG})")
    raise NosError(f"no run named {str(name_or_path)!r} in {root}")


def load_run(name_or_path: str | Path, root: str | Path = DEFAULT_ROOT) -> RunData:
    """Read a run (config, records, checkpoints); corrupt last lines become warnings."""
    run_dir = resolve_run(name_or_path, root)
    config = _read_config(run_dir)
    warnings: list[str] = []
    records, _ = _read_jsonl(run_dir / EVALS, warnings)
    checkpoints, _ = _read_jsonl(run_dir / CHECKPOINTS, warnings)
    return RunData(run_dir.name, run_dir, config, records, checkpoints, warnings)


def list_runs(root: str | Path = DEFAULT_ROOT) -> Iterator[RunData]:
    """Every readable run under ``root``, oldest first; unreadable ones are skipped."""
    root = Path(root)
    if not root.is_dir():
        return
    runs = []
    for sub in sorted(root.iterdir()):
        if (sub / CONFIG).exists():
            try:
                runs.append(load_run(sub))
            except NosError:
                continue
    yield from sorted(runs, key=lambda r: (r.created, r.name))


# ------------------------------------------------------------------------------ writing


class RunStore:
    """The single writer of a run directory (see the module docstring).

    Use :meth:`create` for a new run and :meth:`resume` for an existing one; both take the
    run's exclusive lock, released by :meth:`close` (or by the process's death).
    """

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        records: list[dict[str, Any]],
        checkpoints: list[dict[str, Any]],
        warnings: list[str],
    ):
        self.path = run_dir
        self.config = config
        self.warnings = warnings
        self._evals: dict[str, dict[str, Any]] = {}
        self._origins: set[str] = set()
        self._elapsed = 0.0
        for record in records:
            self._index(record)
        for cp in checkpoints:
            self._elapsed = max(self._elapsed, float(cp.get("elapsed_s") or 0.0))
        self._lock_fd = self._lock()
        self._fd = os.open(run_dir / EVALS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._cp_fd = os.open(run_dir / CHECKPOINTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._last_sync = time.monotonic()
        self._dirty = False

    def _index(self, record: dict[str, Any]) -> None:
        if record.get("type") == "eval" and "cache_id" in record:
            self._evals[record["cache_id"]] = record
            self._elapsed = max(self._elapsed, float(record.get("elapsed_s") or 0.0))
        if "origin" in record:
            self._origins.add(record["origin"])

    def _lock(self) -> int:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _lock_holder(self.path)
            raise NosError(
                f"run {self.path.name} is being written by another process"
                + (f" (pid {holder})" if holder and holder > 0 else "")
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    @classmethod
    def create(
        cls, name: str, config: dict[str, Any], grammar_text: str, root: str | Path = DEFAULT_ROOT
    ) -> RunStore:
        """Make ``root/name`` with its ``config.toml`` and grammar copy."""
        if not _NAME.match(name):
            raise NosError(f"bad run name {name!r}: letters, digits, '.', '_' and '-' only")
        run_dir = Path(root) / name
        try:
            Path(root).mkdir(parents=True, exist_ok=True)
            run_dir.mkdir()
        except FileExistsError:
            raise NosError(
                f"run {name} already exists in {root} (use --resume {name}, or another --name)"
            ) from None
        except OSError as exc:
            raise NosError(f"cannot create {run_dir}: {exc.strerror}") from None
        full = {
            "run": {
                "name": name,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "created_unix": time.time(),
            },
            **config,
        }
        _atomic_write(run_dir / GRAMMAR, grammar_text)
        _atomic_write(run_dir / CONFIG, to_toml(full))
        return cls(run_dir, full, [], [], [])

    @classmethod
    def resume(cls, name_or_path: str | Path, root: str | Path = DEFAULT_ROOT) -> RunStore:
        """Open an existing run for appending; a corrupt last line is moved aside."""
        run_dir = resolve_run(name_or_path, root)
        config = _read_config(run_dir)
        warnings: list[str] = []
        records, good = _read_jsonl(run_dir / EVALS, warnings)
        cut_tail(run_dir / EVALS, good)
        checkpoints, good_cp = _read_jsonl(run_dir / CHECKPOINTS, warnings)
        cut_tail(run_dir / CHECKPOINTS, good_cp)
        return cls(run_dir, config, records, checkpoints, warnings)

    # the driver's Recorder interface ----------------------------------------------------

    def recorded(self, cache_id: str) -> dict[str, Any] | None:
        return self._evals.get(cache_id)

    def _write(self, fd: int, record: dict[str, Any]) -> None:
        os.write(fd, record_line(record))  # one write per record: a kill cuts at most this line
        self._dirty = True
        if time.monotonic() - self._last_sync >= FSYNC_EVERY_S:
            self.sync()

    def append(self, record: dict[str, Any]) -> None:
        self._write(self._fd, record)
        self._index(record)

    def append_once(self, record: dict[str, Any]) -> None:
        if record["origin"] not in self._origins:
            self.append(record)

    def checkpoint(self, state: dict[str, Any]) -> None:
        self._elapsed = max(self._elapsed, float(state.get("elapsed_s") or 0.0))
        self._write(self._cp_fd, {**state, "time": round(time.time(), 3)})
        self.sync()

    def elapsed_before(self) -> float:
        return self._elapsed

    @property
    def evaluations(self) -> int:
        return len(self._evals)

    @property
    def retryable(self) -> int:
        """Evaluations whose latest record is a retryable one (a timeout)."""
        return sum(1 for r in self._evals.values() if r.get("retryable"))

    def finished(self) -> bool:
        """Whether the run has ended with nothing left to train again."""
        return "done" in self._origins and not self.retryable

    def finish(self, summary: dict[str, Any]) -> None:
        """Append a ``done`` record; a run resumed to retry timeouts ends with another."""
        ends = sum(1 for origin in self._origins if origin.partition("/")[0] == "done")
        origin = "done" if ends == 0 else f"done/{ends + 1}"
        self.append_once({"type": "done", "origin": origin, **summary})

    def sync(self) -> None:
        if self._dirty:
            os.fsync(self._fd)
            os.fsync(self._cp_fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd < 0:
            return
        self.sync()
        os.close(self._fd)
        os.close(self._cp_fd)
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._fd = self._cp_fd = self._lock_fd = -1

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
