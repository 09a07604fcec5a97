"""What an OPT argument of ``nos bench`` names, as plain data a worker process can rebuild.

An OPT is one of:

* a built-in baseline name (:data:`nos.optim.baselines.BASELINES`: ``adamw``, ``muon``, ...);
* ``plane-search`` (:mod:`nos.optim.plane_search`; SO-friendly tasks only);
* ``baselines`` - all of the above;
* ``zoo:NAME``, or candidate text of ``--grammar``;
* ``RUN --rank K`` - the K-th of a search run's hall of fame, with the sign its integrity
  check chose (``nos.search.report.ranked_entry``);
* ``file:PATH.py[:CLASS]`` - an optimizer class from a Python file, e.g. one written by
  ``nos export``. Loading the file runs it: it is the user's own code, trusted as such.

Candidates (text, zoo entries, run entries) train as :class:`nos.optim.SymbolicOptimizer`,
with the sign the integrity check picks (as ``nos export`` does).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nos.errors import NosError

__all__ = ["BASELINES_KEYWORD", "PLANE_SEARCH", "OptSpec", "parse_specs"]

PLANE_SEARCH = "plane-search"
BASELINES_KEYWORD = "baselines"
FILE_PREFIX = "file:"
_RANKED = re.compile(r"^\s*(?P<run>\S+)\s+--rank(?:\s+|=)(?P<rank>\d+)\s*$")


@dataclass(frozen=True)
class OptSpec:
    """One optimizer of a bench.

    Attributes:
      label: its unique name in tables and records.
      kind: ``candidate``, ``baseline``, ``plane-search`` or ``file``.
      source: the OPT text as given.
      payload: plain data from which :func:`nos.bench.optimizers.factory_for_payload`
        rebuilds it in any process.
      baseline: a built-in baseline (a column of the win/loss/tie table).
      matrix_class: treats weight matrices as matrices (Muon): reported in a column of its
        own and left out of the ranks, since the search grammar is elementwise.
      schedules_itself: brings its own schedule (Schedule-Free, a candidate with an
        LR-schedule gene, plane search); the others get the bench's warmup + cosine.
      default_wd: the weight decay of ``--tune lr`` (the baseline's customary default).
      description: one line for the report.
    """

    label: str
    kind: str
    source: str
    payload: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False
    matrix_class: bool = False
    schedules_itself: bool = False
    default_wd: float = 0.0
    description: str = ""

    @property
    def tunes_lr(self) -> bool:
        return self.kind != PLANE_SEARCH

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptSpec:
        return cls(**data)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _grammar_ref(grammar: str) -> str:
    """A grammar by name stays a name; a file becomes an absolute path (for workers)."""
    path = Path(grammar).expanduser()
    return str(path.resolve()) if path.suffix == ".toml" or path.is_file() else grammar


def _baseline(name: str) -> OptSpec:
    from nos.optim.baselines import get_baseline

    entry = get_baseline(name)
    return OptSpec(
        label=name,
        kind="baseline",
        source=name,
        payload={"kind": "baseline", "name": name},
        baseline=True,
        matrix_class=entry.matrix_class,
        schedules_itself=entry.schedules_itself,
        default_wd=entry.default_weight_decay,
        description=entry.description,
    )


def _plane_search() -> OptSpec:
    return OptSpec(
        label=PLANE_SEARCH,
        kind=PLANE_SEARCH,
        source=PLANE_SEARCH,
        payload={"kind": PLANE_SEARCH},
        baseline=True,
        schedules_itself=True,
        description="plane search (Shea & Schmidt 2024): gradient and momentum step sizes "
        "found exactly every step; full batch, SO-friendly tasks only",
    )


def _candidate(
    candidate: Any, label: str, source: str, grammar: str, flip: bool, what: str
) -> OptSpec:
    return OptSpec(
        label=label,
        kind="candidate",
        source=source,
        payload={"kind": "candidate", "text": candidate.text, "grammar": grammar, "flip": flip},
        schedules_itself=candidate.lr is not None,
        description=f"{what}: {candidate.text}" + (" (sign flipped)" if flip else ""),
    )


def _from_text(text: str, grammar: str, notes: list[str]) -> OptSpec:
    from nos.symbolic.check import check_candidate
    from nos.zoo.resolve import ZOO_PREFIX, resolve

    candidate = resolve(text, grammar)
    check = check_candidate(candidate)
    if not check.passed:
        notes.append(
            f"{text}: the integrity check rejects it ({check.reason.value}); benched unflipped"
        )
    stripped = text.strip()
    if stripped.startswith(ZOO_PREFIX):
        # a zoo entry is rebuilt by name, in the entry's own grammar
        spec = _candidate(candidate, stripped, stripped, "zoo", check.flip, "zoo entry")
        return OptSpec(**{**spec.to_dict(), "payload": {**spec.payload, "text": stripped}})
    label = stripped if len(stripped) <= 24 else f"cand-{_digest(candidate.text)}"
    return _candidate(candidate, label, stripped, _grammar_ref(grammar), check.flip, "candidate")


def _from_run(run: str, rank: int, root: str) -> OptSpec:
    from nos.search.report import ranked_entry
    from nos.search.store import GRAMMAR, resolve_run

    candidate, row = ranked_entry(run, rank, root)
    run_dir = resolve_run(run, root)
    copy = run_dir / GRAMMAR
    grammar = str(copy.resolve()) if copy.exists() else candidate.grammar.name
    label = f"{run_dir.name}#{rank}"
    what = f"rank {rank} of run {run_dir.name} (fitness {row.get('fitness')})"
    return _candidate(
        candidate, label, f"{run} --rank {rank}", grammar, bool(row.get("flip")), what
    )


def _from_file(text: str) -> OptSpec:
    from nos.bench.optimizers import load_optimizer_class

    rest = text[len(FILE_PREFIX) :]
    path_text, class_name = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and head.endswith(".py") and tail:
        path_text, class_name = head, tail
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise NosError(f"{text}: no such file {path}")
    cls = load_optimizer_class(path, class_name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return OptSpec(
        label=f"file:{path.name}:{cls.__name__}",
        kind="file",
        source=text,
        payload={
            "kind": "file",
            "path": str(path.resolve()),
            "class": cls.__name__,
            "sha256": digest,
        },
        description=f"{cls.__name__} from {path}",
    )


def parse_specs(
    texts: list[str],
    *,
    grammar: str = "morgan2024",
    root: str = "search_runs",
    notes: list[str] | None = None,
) -> list[OptSpec]:
    """The optimizers named by ``texts`` (see the module docstring), in order.

    Unreadable text, unknown names, missing runs and files, and the same optimizer given
    twice raise :class:`~nos.errors.NosError`; integrity-check rejections go to ``notes``.
    """
    from nos.optim.baselines import BASELINES

    notes = notes if notes is not None else []
    out: list[OptSpec] = []
    for text in texts:
        stripped = text.strip()
        if not stripped:
            raise NosError("an empty OPT argument")
        if stripped == BASELINES_KEYWORD:
            out += [_baseline(name) for name in BASELINES] + [_plane_search()]
        elif stripped in BASELINES:
            out.append(_baseline(stripped))
        elif stripped == PLANE_SEARCH:
            out.append(_plane_search())
        elif stripped.startswith(FILE_PREFIX):
            out.append(_from_file(stripped))
        elif match := _RANKED.match(stripped):
            out.append(_from_run(match["run"], int(match["rank"]), root))
        else:
            try:
                out.append(_from_text(stripped, grammar, notes))
            except NosError as exc:
                raise NosError(f"OPT {stripped!r}: {exc}") from None
    seen: dict[str, str] = {}
    for spec in out:
        if spec.label in seen:
            raise NosError(f"optimizer {spec.label} is given twice ({seen[spec.label]!r})")
        seen[spec.label] = spec.source
    if not out:
        raise NosError("no optimizer to bench")
    return out
