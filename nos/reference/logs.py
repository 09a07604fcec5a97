"""Reader for the reference implementation's search log (``nos_particle_run.log``).

The log has two phases (paper-spec §4):

* the initial population, one line per model::

      INFO:root: MODEL i/500 -> Val Acc: X, Val Loss: Y, Time: Z, Fun: <string>
      INFO:root: INIT MODEL ARCHITECTURE FAILED...          (no string is logged)

* the particle phase: a re-evaluation of each particle, then per depth its children and
  the selected child::

      INFO:root:INIT PARTICLE p/50 : <string> : val: X - Time: Z      (or ": FAILED")
      INFO:root: Depth: d/5
      INFO:root:    <string> val: X - Time: Z                          (or " : FAILED")
      INFO:root:  Chosen <string> : X - ACCUMULATIVE TIME: T            (a selection)

TensorFlow warnings, blank lines and progress banners are noise. The particle phase was
restarted twice at particle 1; a re-evaluation whose particle index does not increase marks
a restart, counted in :attr:`LogRecord.attempt`.

Each candidate string is read with :func:`nos.reference.format.parse_reference`; strings that cannot
be read are kept with ``canonical = None`` and the reason in ``error``. Lines of unknown
shape are counted, never fatal.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nos.errors import CandidateError, NosError
from nos.reference.format import parse_reference
from nos.symbolic.grammar import Grammar

__all__ = ["ImportSummary", "LogReader", "LogRecord", "import_log", "read_log"]

#: Lines longer than this are not log records (the longest real line is under 1,000).
MAX_LINE = 20_000

_NUM = r"([-+0-9.eEinfINFa]+)"
_MODEL = re.compile(
    rf"INFO:root: MODEL (\d+)/(\d+) -> Val Acc: {_NUM}, Val Loss: {_NUM}, "
    rf"Time: {_NUM}, Fun: (.*)"
)
_MODEL_FAILED = re.compile(r"INFO:root: INIT MODEL ARCHITECTURE FAILED\.\.\.")
_PARTICLE = re.compile(
    rf"INFO:root:INIT PARTICLE (\d+)/(\d+) : (.*) : "
    rf"(?:val: {_NUM} - Time: {_NUM}|(FAILED))"
)
_DEPTH = re.compile(r"INFO:root: Depth: (\d+)/(\d+)")
_CHILD_FAILED = re.compile(r"INFO:root:    (\S.*) : FAILED")
_CHILD = re.compile(rf"INFO:root:    (\S.*) val: {_NUM} - Time: {_NUM}")
_CHOSEN = re.compile(rf"INFO:root:  Chosen (.*) : {_NUM} - ACCUMULATIVE TIME: {_NUM}")
_NOISE = re.compile(r"WARNING:|INFO:root:TRAINING INITIAL POPULATION|INFO:root: --- |\s*$")
_MOMENTUM = re.compile(r"\s*(None|Mom|Nest)\s*~")


@dataclass(frozen=True)
class LogRecord:
    """One evaluation (or, with ``selections=True``, one selection) from the log.

    ``kind`` is ``"init"`` (initial population), ``"reeval"`` (a particle re-evaluated at
    the start of its search), ``"child"`` (a child evaluated at some depth) or ``"chosen"``
    (the child kept at a depth; its ``val_acc`` repeats the child's, it is not a new run).
    """

    line: int  # 1-based line number in the log
    phase: str  # "initial" or "particle"
    kind: str
    reference: str | None  # the candidate string; None where the log gives none
    canonical: str | None  # canonical text, None if the string could not be read
    momentum: str | None  # "none", "mom" or "nest"
    failed: bool
    val_acc: float | None
    val_loss: float | None = None
    time_s: float | None = None
    model: int | None = None  # index in the initial population
    particle: int | None = None
    depth: int | None = None
    attempt: int = 0  # restarts of the particle phase before this record
    cumulative_s: float | None = None  # "ACCUMULATIVE TIME" of a selection
    error: str | None = None  # why the string could not be read

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), allow_nan=False)


def _num(text: str) -> float | None:
    """A logged number; non-finite or garbled values become None (JSON has no NaN)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class LogReader:
    """Streams :class:`LogRecord` s from a log and counts what it skipped."""

    path: Path
    grammar: Grammar
    selections: bool = False
    lines_read: int = 0
    noise: int = 0
    malformed: int = 0
    malformed_at: list[int] = field(default_factory=list)  # first few line numbers
    restarts: int = 0
    _parsed: dict[str, tuple[str | None, str | None, str | None]] = field(
        default_factory=dict, repr=False
    )

    def _read(self, reference: str) -> tuple[str | None, str | None, str | None]:
        """(canonical, momentum, error) of a candidate string, cached per distinct string."""
        got = self._parsed.get(reference)
        if got is None:
            try:
                cand = parse_reference(reference, self.grammar)
                got = (cand.text, cand.momentum.value, None)
            except CandidateError as exc:
                m = _MOMENTUM.match(reference)
                got = (None, m.group(1).lower() if m else None, str(exc))
            self._parsed[reference] = got
        return got

    def _bad(self, number: int) -> None:
        self.malformed += 1
        if len(self.malformed_at) < 20:
            self.malformed_at.append(number)

    def records(self) -> Iterator[LogRecord]:
        phase = "initial"
        next_model = 0
        particle: int | None = None
        depth: int | None = None
        attempt = 0
        with open(self.path, encoding="utf-8", errors="replace", newline=None) as fh:
            for number, raw in enumerate(fh, 1):
                self.lines_read += 1
                line = raw.rstrip("\r\n")
                if len(line) > MAX_LINE:
                    self._bad(number)
                    continue
                if m := _MODEL.fullmatch(line):
                    next_model = int(m.group(1)) + 1
                    ref = m.group(6).strip()
                    canonical, momentum, error = self._read(ref)
                    acc = _num(m.group(3))
                    yield LogRecord(
                        number,
                        "initial",
                        "init",
                        ref,
                        canonical,
                        momentum,
                        acc is None,
                        acc,
                        _num(m.group(4)),
                        _num(m.group(5)),
                        model=int(m.group(1)),
                        error=error,
                    )
                elif _MODEL_FAILED.fullmatch(line):
                    yield LogRecord(
                        number, "initial", "init", None, None, None, True, None, model=next_model
                    )
                    next_model += 1
                elif m := _PARTICLE.fullmatch(line):
                    index = int(m.group(1))
                    if particle is not None and index <= particle:
                        attempt += 1
                        self.restarts += 1
                    phase, particle, depth = "particle", index, 0
                    ref = m.group(3).strip()
                    canonical, momentum, error = self._read(ref)
                    failed = m.group(6) is not None
                    acc = None if failed else _num(m.group(4))
                    yield LogRecord(
                        number,
                        phase,
                        "reeval",
                        ref,
                        canonical,
                        momentum,
                        failed or acc is None,
                        acc,
                        time_s=None if failed else _num(m.group(5)),
                        particle=index,
                        depth=0,
                        attempt=attempt,
                        error=error,
                    )
                elif (m := _DEPTH.fullmatch(line)) and phase == "particle":
                    depth = int(m.group(1))
                elif phase == "particle" and (
                    (m := _CHILD_FAILED.fullmatch(line)) or (m := _CHILD.fullmatch(line))
                ):
                    failed = m.re is _CHILD_FAILED
                    ref = m.group(1).strip()
                    canonical, momentum, error = self._read(ref)
                    acc = None if failed else _num(m.group(2))
                    yield LogRecord(
                        number,
                        phase,
                        "child",
                        ref,
                        canonical,
                        momentum,
                        failed or acc is None,
                        acc,
                        time_s=None if failed else _num(m.group(3)),
                        particle=particle,
                        depth=depth,
                        attempt=attempt,
                        error=error,
                    )
                elif (m := _CHOSEN.fullmatch(line)) and phase == "particle":
                    if self.selections:
                        ref = m.group(1).strip()
                        canonical, momentum, error = self._read(ref)
                        yield LogRecord(
                            number,
                            phase,
                            "chosen",
                            ref,
                            canonical,
                            momentum,
                            False,
                            _num(m.group(2)),
                            particle=particle,
                            depth=depth,
                            attempt=attempt,
                            cumulative_s=_num(m.group(3)),
                            error=error,
                        )
                elif _NOISE.match(line):
                    self.noise += 1
                else:
                    self._bad(number)


def read_log(
    path: str | Path, grammar: Grammar, *, selections: bool = False
) -> Iterator[LogRecord]:
    """Yield one :class:`LogRecord` per evaluation in the log, in log order.

    With ``selections=True`` the ``Chosen`` lines are yielded too (kind ``"chosen"``).
    Lines of unknown shape are skipped; use :class:`LogReader` to count them.
    """
    return LogReader(Path(path), grammar, selections).records()


@dataclass(frozen=True)
class ImportSummary:
    """Counts from :func:`import_log`."""

    log: str
    out: str
    records: int
    initial_ok: int
    initial_failed: int
    particle_ok: int
    particle_failed: int
    distinct: int  # distinct candidate strings among the records
    unparsed: int  # distinct strings that could not be read
    restarts: int  # restarts of the particle phase
    lines_read: int
    noise: int  # warning, banner and blank lines
    malformed: int  # lines of unknown shape
    malformed_at: tuple[int, ...] = ()

    def lines(self) -> list[str]:
        """A short human summary, one string per line."""
        out = [
            f"imported {self.records} evaluations from {self.log} ({self.lines_read} lines) "
            f"into {self.out}",
            f"  initial population: {self.initial_ok} trained, {self.initial_failed} failed",
            f"  particle phase: {self.particle_ok} trained, {self.particle_failed} failed "
            f"({self.restarts} restart(s))",
            f"  distinct candidate strings: {self.distinct}, unreadable: {self.unparsed}",
        ]
        if self.malformed:
            first = ", ".join(str(n) for n in self.malformed_at[:5])
            out.append(
                f"  skipped {self.malformed} line(s) of unknown shape (first at line(s) {first})"
            )
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def import_log(log_path: str | Path, out_path: str | Path, grammar: Grammar) -> ImportSummary:
    """Convert the log into JSON Lines, one :class:`LogRecord` per evaluation.

    The file is written beside ``out_path`` under a temporary name, synced to disk and then
    renamed, so an interrupted import never leaves a truncated file.

    Raises:
      NosError: the log cannot be read or the output cannot be written.
    """
    log_path, out_path = Path(log_path), Path(out_path)
    if not log_path.is_file():
        raise NosError(f"{log_path}: no such log file")
    if out_path.exists() and out_path.resolve() == log_path.resolve():
        raise NosError(f"{out_path}: refusing to overwrite the log with its import")
    reader = LogReader(log_path, grammar)
    counts = {"initial": [0, 0], "particle": [0, 0]}
    distinct: set[str] = set()
    unparsed: set[str] = set()
    records = 0
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            for rec in reader.records():
                fh.write(rec.to_json() + "\n")
                records += 1
                counts[rec.phase][rec.failed] += 1
                if rec.reference is not None:
                    distinct.add(rec.reference)
                    if rec.canonical is None:
                        unparsed.add(rec.reference)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out_path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise NosError(f"cannot import {log_path} into {out_path}: {exc.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ImportSummary(
        log=str(log_path),
        out=str(out_path),
        records=records,
        initial_ok=counts["initial"][0],
        initial_failed=counts["initial"][1],
        particle_ok=counts["particle"][0],
        particle_failed=counts["particle"][1],
        distinct=len(distinct),
        unparsed=len(unparsed),
        restarts=reader.restarts,
        lines_read=reader.lines_read,
        noise=reader.noise,
        malformed=reader.malformed,
        malformed_at=tuple(reader.malformed_at),
    )
