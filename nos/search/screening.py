"""Screening: the pure, costly part of admitting a candidate, done apart from the decisions.

Before a candidate can be evaluated the GA needs three things about it: its canonical key,
the integrity check's verdict, and (when it passes) its fingerprint under the check's sign.
They are a pure function of the candidate's text and cost a few milliseconds, most of the
driver's time, so the GA asks for them with a :class:`ScreenRequest` instead of computing
them: the driver answers from its memo, in this process, or from a pool of driver-side
processes (``--screen-workers``). Since nothing but the text decides the answer, the search
makes the same decisions whoever screens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nos.symbolic.check import CheckResult, check_candidate
from nos.symbolic.genome import Candidate
from nos.symbolic.grammar import Grammar, parse_grammar
from nos.symbolic.keys import canonical_key, fingerprint
from nos.symbolic.text import parse_canonical

__all__ = ["ScreenPool", "ScreenRequest", "Screened", "screen"]


@dataclass(frozen=True)
class Screened:
    """A candidate's key, check verdict and (if it passed) fingerprint under its sign."""

    key: str
    check: CheckResult
    fingerprint: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "check": self.check.to_dict(), "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Screened:
        return cls(data["key"], CheckResult.from_dict(data["check"]), data["fingerprint"])


@dataclass(frozen=True)
class ScreenRequest:
    """What a phase yields when it needs candidates screened; it is sent the
    :class:`Screened` of each, in order."""

    candidates: list[Candidate]


def screen(candidate: Candidate) -> Screened:
    """Screen one candidate (see the module docstring)."""
    check = check_candidate(candidate)
    fp = fingerprint(candidate, flip=check.flip) if check.passed else None
    return Screened(canonical_key(candidate), check, fp)


# ------------------------------------------------------------------------ the process pool

_GRAMMAR: Grammar | None = None


def _init_worker(grammar_text: str, grammar_path: str) -> None:
    global _GRAMMAR
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"  # one core per screening process
    _GRAMMAR = parse_grammar(grammar_text, grammar_path)


def _screen_texts(texts: list[str]) -> list[dict[str, Any]]:
    assert _GRAMMAR is not None, "the screening pool was not initialised"
    return [screen(parse_canonical(text, _GRAMMAR)).to_dict() for text in texts]


class ScreenPool:
    """``workers`` spawned processes that screen candidate texts of one grammar."""

    def __init__(self, grammar: Grammar, workers: int):
        import multiprocess

        self.workers = workers
        self._pool = multiprocess.get_context("spawn").Pool(
            workers, initializer=_init_worker, initargs=(grammar.text, grammar.path)
        )

    def map(self, texts: Sequence[str]) -> list[Screened]:
        """The screens of ``texts``, in order."""
        if not texts:
            return []
        size = max(1, -(-len(texts) // (4 * self.workers)))  # about 4 chunks per process
        chunks = [list(texts[i : i + size]) for i in range(0, len(texts), size)]
        out: list[Screened] = []
        for part in self._pool.map(_screen_texts, chunks):
            out.extend(Screened.from_dict(d) for d in part)
        return out

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()
