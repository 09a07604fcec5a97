"""Seeds of the initial population: ``zoo:NAME``, an imported log or an earlier run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nos.errors import CandidateError, NosError
from nos.search.report import hall_of_fame
from nos.search.store import DEFAULT_ROOT, load_run
from nos.status import Status
from nos.zoo.resolve import ZOO_PREFIX, parse, resolve

__all__ = ["NEAREST", "resolve_seeds"]

log = logging.getLogger(__name__)

#: Zoo entries that a shipped grammar cannot spell, by grammar: the nearest update it can
#: (with that grammar's moment rates: morgan2024's s-hat averages g^2 with beta 0.99, not
#: Adam's 0.999, and its division adds 1e-7 to the denominator instead of Adam's epsilon).
NEAREST: dict[str, dict[str, str]] = {
    "morgan2024": {
        "adam": "none ~ div(v_hat, sqrt_abs(s_hat))",
        "rmsprop": "none ~ div(g, sqrt_abs(s_hat))",
    },
}


def _log_texts(path: Path) -> list[str]:
    """Candidate texts of a JSONL file, best first: an imported reference log
    (``nos import-log``) or a run's ``evaluations.jsonl``."""
    scored: list[tuple[float, int, str]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise NosError(f"{path}: cannot read seeds: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if number == len(lines):
                log.warning("%s:%d: corrupt last line skipped", path, number)
                continue
            raise NosError(f"{path}:{number}: not a JSON record") from None
        if not isinstance(rec, dict):
            continue
        if rec.get("type") == "eval":
            text, fit = rec.get("candidate"), rec.get("fitness")
            ok = rec.get("status") == Status.OK
        else:
            text, fit = rec.get("canonical"), rec.get("val_acc")
            ok = not rec.get("failed", False)
        if ok and isinstance(text, str) and isinstance(fit, int | float):
            scored.append((-float(fit), number, text))
    scored.sort()
    out, seen = [], set()
    for _f, _n, text in scored:
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def resolve_seeds(
    sources: tuple[str, ...] | list[str], grammar: Any, root: str | Path = DEFAULT_ROOT
) -> list[Any]:
    """Candidates for the initial population from ``zoo:NAME``, JSONL files or runs."""
    out = []
    for source in sources:
        if source.startswith(ZOO_PREFIX):
            texts = [resolve(source).text]
        elif source.endswith(".jsonl") and Path(source).is_file():
            texts = _log_texts(Path(source))
        else:
            try:
                data = load_run(source, root)
            except NosError:
                raise NosError(
                    f"seed source {source!r} is neither zoo:NAME, a .jsonl file nor a run"
                ) from None
            texts = [row["candidate"] for row in hall_of_fame(data.records, k=10**6)]
        for text in texts:
            try:
                out.append(parse(text, grammar))
            except CandidateError as exc:
                if source.startswith(ZOO_PREFIX):
                    near = NEAREST.get(grammar.name, {}).get(source.removeprefix(ZOO_PREFIX))
                    if near is None:
                        raise NosError(
                            f"{source} is not in grammar {grammar.name}: {exc}"
                        ) from None
                    log.info("%s is not in grammar %s; seeding %s", source, grammar.name, near)
                    out.append(parse(near, grammar))
                    continue
                log.warning("seed %r from %s skipped: %s", text, source, exc)
    return out
