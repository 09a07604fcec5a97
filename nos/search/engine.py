"""The particle GA (spec §4.2–§4.4) as coroutines that never touch processes or files.

Each phase is a generator that *yields* a :class:`Batch` of evaluation requests and is sent
back the list of :class:`Result` for that batch, in request order; its return value is the
phase's outcome. The driver (:mod:`nos.search.driver`) runs many of them at once and
decides how and where requests are evaluated. This split is what makes the search
deterministic whatever the parallelism:

* **Every decision is a function of the seed and of fitness values only.** Each particle
  owns a ``random.Random`` derived from the run seed and its index; the initial population
  has its own. A coroutine resumes only when *all* results of its batch are in, and reads
  them in request order, never in arrival order.
* **Rounds within a step.** A step's M children are drawn in slot order, then evaluated
  together; the failed slots get their retries (spec §4.3: up to ``tries`` evaluations per
  slot) in the next round, again drawn in slot order. The reference draws a retry right
  after its failure, before the next slot; drawing it after the round keeps the order of
  draws independent of which result arrives first (a documented deviation: the draws, not
  the distribution, differ).
* **Seen sets are per particle** (per lineage, as in the reference), so what one particle
  draws never depends on how far another has got. Global dedup (``dedup``) acts on
  *training* instead: the driver trains one candidate per (stage, fingerprint) and gives
  every requester the same result. Since a fingerprint class computes the same function,
  its fitness does not depend on which member, or which particle, came first. With dedup,
  a particle also rejects children that compute what it has already seen (same
  fingerprint), not only the same text.

All of the driver's randomness is in these ``random.Random`` objects (their states are in
the checkpoints, :meth:`ParticleGA.state`); it draws nothing from numpy or torch, whose
generators live in the workers and are seeded from each job's seeds.

The cheap and the full fitness are stages ``init`` and ``full``; ``rescore`` re-evaluates
the final top-k with more seeds. A failed evaluation scores :data:`FAILED` (spec §4.3:
-1) for selection; in the initial population it scores 0, as in the reference (§4.2).
The suite fitness's scores are log ratios that may be negative, so there a failed
evaluation scores :data:`SUITE_FAILED` (below every score) in both phases.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nos.search.config import SearchConfig
from nos.search.screening import Screened, ScreenRequest
from nos.status import Status
from nos.symbolic.check import CheckResult
from nos.symbolic.genome import Candidate
from nos.symbolic.grammar import Grammar
from nos.symbolic.mutate import MutationError, mutate_candidate
from nos.symbolic.sample import sample_candidate

__all__ = [
    "FAILED",
    "SUITE_FAILED",
    "Batch",
    "Entry",
    "ParticleGA",
    "Request",
    "Result",
    "rng_state",
]

log = logging.getLogger(__name__)

#: Selection score of a failed evaluation (spec §4.3).
FAILED = -1.0
#: Score of a failed evaluation in the initial population (spec §4.2).
FAILED_INIT = 0.0
#: Score of a failed evaluation under the suite fitness, whose scores are >= -1.
SUITE_FAILED = -2.0


@dataclass(frozen=True)
class Entry:
    """A candidate that passed the integrity check, with its identities."""

    candidate: Candidate
    key: str
    fingerprint: str
    check: CheckResult
    mutation: str | None = None
    detail: str = ""
    parent: str | None = None  # the parent's key


@dataclass(frozen=True)
class Request:
    """One evaluation the search needs: ``origin`` names the slot, e.g. ``p3/s2/c4/t1``."""

    origin: str
    stage: str  # "init", "full" or "rescore"
    entry: Entry
    seeds: tuple[int, ...]

    @property
    def text(self) -> str:
        return self.entry.candidate.text


@dataclass(frozen=True)
class Result:
    """The normalised result of one evaluation (plain values only)."""

    status: Status
    fitness: float | None = None
    fitness_per_seed: tuple[float, ...] = ()
    reason: str = ""
    lr: float | None = None
    steps: int | None = None
    details: dict[str, Any] | None = None  # the suite fitness's rungs and tasks

    @property
    def ok(self) -> bool:
        return self.status is Status.OK and self.fitness is not None

    def score(self, failed: float = FAILED) -> float:
        return float(self.fitness) if self.ok and self.fitness is not None else failed

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> Result:
        """Read an evaluator's result dict; anything malformed becomes ``error``."""
        raw_status = raw.get("status", Status.ERROR)
        reason = str(raw.get("reason") or "")
        fitness: Any = raw.get("fitness")  # anything; float() below accepts only numbers
        status = Status.parse(raw_status)
        if status is None:
            return cls(Status.ERROR, reason=f"unknown status {str(raw_status)!r} {reason}".strip())
        if status is Status.OK:
            try:
                fitness = float(fitness)
            except (TypeError, ValueError):
                return cls(Status.ERROR, reason="evaluator returned ok without a fitness")
            if fitness != fitness or fitness in (float("inf"), float("-inf")):
                return cls(Status.ERROR, reason="evaluator returned a non-finite fitness")
        else:
            fitness = None
        per_seed = tuple(
            float(x) for x in raw.get("fitness_per_seed") or () if isinstance(x, int | float)
        )
        lr = raw.get("lr")
        steps = raw.get("steps")
        details = raw.get("suite")
        return cls(
            status,
            fitness,
            per_seed,
            reason,
            float(lr) if isinstance(lr, int | float) else None,
            int(steps) if isinstance(steps, int | float) else None,
            details if isinstance(details, dict) else None,
        )


@dataclass
class Batch:
    """What a phase yields: requests to evaluate, and records to write once (by origin)."""

    requests: list[Request]
    records: list[dict[str, Any]] = field(default_factory=list)


#: A phase yields evaluation batches (sent their results) and screen requests (sent the
#: screens, :mod:`nos.search.screening`).
Phase = Generator[Batch | ScreenRequest, Any, Any]
#: Mutants (or samples) drawn ahead and screened together: this only groups the screening
#: work, the random stream and therefore every decision are those of one draw at a time.
LOOKAHEAD = 8


def rng_state(rnd: random.Random) -> list[Any]:
    """JSON-ready state of a ``random.Random`` (``random.Random.setstate`` reads it back
    after ``tuple`` conversion of the inner list)."""
    version, internal, gauss = rnd.getstate()
    return [version, list(internal), gauss]


@dataclass
class _Particle:
    index: int
    rnd: random.Random
    position: Entry
    fitness: float | None = None  # full-stage score of the position; None before re-evaluation
    step: int = 0
    seen_keys: set[str] = field(default_factory=set)
    seen_fps: set[str] = field(default_factory=set)
    stopped: str = ""


class ParticleGA:
    """The paper's particle GA with the options of :class:`SearchConfig`.

    Args:
      config: the search parameters.
      grammar: the search space.
      seeds: candidates that open the initial population (``--seed-from``), in order.
    """

    def __init__(self, config: SearchConfig, grammar: Grammar, seeds: Sequence[Candidate] = ()):
        self.config = config
        self.grammar = grammar
        self.seeds = list(seeds)
        self.rejections: collections.Counter[str] = collections.Counter()
        self.particles: dict[int, _Particle] = {}
        self.init_rnd = random.Random(f"nos/{config.seed}/init")
        self.eval_seeds = tuple(config.seed + i for i in range(config.eval_seeds))
        suite = config.fitness == "suite"
        self.failed = SUITE_FAILED if suite else FAILED
        self.failed_init = SUITE_FAILED if suite else FAILED_INIT

    # candidates ------------------------------------------------------------------------

    def _admit(
        self,
        cand: Candidate,
        screened: Screened,
        counts: collections.Counter[str],
        seen_keys: set[str],
        seen_fps: set[str] | None,
        **info: Any,
    ) -> Entry | None:
        """The candidate as an :class:`Entry` if it passes the check and is unseen."""
        if screened.key in seen_keys:
            counts["duplicate"] += 1
            return None
        result = screened.check
        if not result.passed:
            counts[result.reason.value] += 1
            return None
        fp = screened.fingerprint  # under the check's sign: U and -U train alike
        assert fp is not None
        if seen_fps is not None and fp in seen_fps:
            counts["duplicate"] += 1
            return None
        seen_keys.add(screened.key)
        if seen_fps is not None:
            seen_fps.add(fp)
        return Entry(cand, screened.key, fp, result, **info)

    def _child(
        self, particle: _Particle, counts: collections.Counter[str]
    ) -> Generator[ScreenRequest, list[Screened], Entry | None]:
        """One mutant of the particle's position, rejection-sampled (spec §4.3).

        Mutants are drawn :data:`LOOKAHEAD` at a time from a copy of the particle's random
        stream and screened together; the particle's own stream then advances past the
        draws actually used, so the outcome is that of drawing one mutant at a time.
        """
        fps = particle.seen_fps if self.config.dedup else None
        parent = particle.position
        left = self.config.max_rejections
        while left > 0:
            probe = random.Random()
            probe.setstate(particle.rnd.getstate())
            drafts: list[tuple[Candidate | None, str, str, Any]] = []
            for _ in range(min(LOOKAHEAD, left)):
                try:
                    m = mutate_candidate(parent.candidate, probe)
                except MutationError:
                    drafts.append((None, "", "", probe.getstate()))
                    break
                drafts.append((m.child, m.kind, m.detail, probe.getstate()))
            screens = iter((yield ScreenRequest([d[0] for d in drafts if d[0] is not None])))
            for child, kind, detail, state in drafts:
                particle.rnd.setstate(state)
                left -= 1
                if child is None:
                    counts["no_mutation"] += 1
                    return None
                entry = self._admit(
                    child,
                    next(screens),
                    counts,
                    particle.seen_keys,
                    fps,
                    mutation=kind,
                    detail=detail,
                    parent=parent.key,
                )
                if entry is not None:
                    return entry
        counts["exhausted"] += 1
        return None

    def _record_rejections(
        self, origin: str, counts: collections.Counter[str]
    ) -> list[dict[str, Any]]:
        self.rejections.update(counts)
        if not counts:
            return []
        return [{"type": "rejections", "origin": origin, "counts": dict(sorted(counts.items()))}]

    # phases ----------------------------------------------------------------------------

    def initial_phase(self) -> Generator[Batch | ScreenRequest, Any, list[tuple[Entry, float]]]:
        """Sample ``init_size`` valid candidates, score them cheaply, keep the top n (§4.2)."""
        cfg, counts = self.config, collections.Counter[str]()
        seen_keys: set[str] = set()
        seen_fps: set[str] | None = set() if cfg.dedup else None
        entries: list[Entry] = []
        seeds = self.seeds[: cfg.init_size]
        seed_screens: list[Screened] = yield ScreenRequest(list(seeds))
        for cand, screened in zip(seeds, seed_screens, strict=True):
            entry = self._admit(cand, screened, counts, seen_keys, seen_fps, mutation="seed")
            if entry is None:
                log.warning("seed %s was rejected (integrity check or duplicate)", cand.text)
                counts["seed_rejected"] += 1
            else:
                entries.append(entry)
        while len(entries) < cfg.init_size:
            # drawn ahead as in _child; the stream advances past the samples used only
            probe = random.Random()
            probe.setstate(self.init_rnd.getstate())
            drafts = []
            for _ in range(LOOKAHEAD):
                drafts.append((sample_candidate(self.grammar, probe), probe.getstate()))
            screens: list[Screened] = yield ScreenRequest([c for c, _ in drafts])
            for (cand, state), screened in zip(drafts, screens, strict=True):
                self.init_rnd.setstate(state)
                # the reference does not de-duplicate its initial population: fresh sets
                entry = self._admit(
                    cand, screened, counts, seen_keys if cfg.dedup else set(), seen_fps
                )
                if entry is not None:
                    entries.append(entry)
                    if len(entries) == cfg.init_size:
                        break
        requests = [Request(f"init/{i}", "init", e, self.eval_seeds) for i, e in enumerate(entries)]
        results = yield Batch(requests, self._record_rejections("init", counts))
        fail = self.failed_init
        scored = sorted(range(len(entries)), key=lambda i: (-results[i].score(fail), i))
        top = [(entries[i], results[i].score(fail)) for i in scored[: cfg.particles]]
        record = {
            "type": "selection",
            "origin": "init/selection",
            "particles": [
                {"particle": p, "candidate": e.candidate.text, "key": e.key, "init_fitness": f}
                for p, (e, f) in enumerate(top)
            ],
        }
        yield Batch([], [record])
        return top

    def particle_phase(self, index: int, start: Entry) -> Phase:
        """K steps of one particle (spec §4.3); returns its trajectory as a list of dicts."""
        cfg = self.config
        particle = _Particle(index, random.Random(f"nos/{cfg.seed}/particle/{index}"), start)
        particle.seen_keys.add(start.key)
        particle.seen_fps.add(start.fingerprint)
        self.particles[index] = particle
        trajectory: list[dict[str, Any]] = []
        if cfg.reeval:
            [res] = yield Batch([Request(f"p{index}/reeval", "full", start, self.eval_seeds)])
            particle.fitness = res.score(self.failed)
        for step in range(cfg.steps):
            particle.step = step
            move = yield from self._step(particle, step)
            if move is None:
                particle.stopped = "no child could be drawn"
                log.warning("particle %d stopped at step %d: no valid child", index, step)
                break
            trajectory.append(move)
        particle.step = cfg.steps if not particle.stopped else particle.step
        return trajectory

    def _step(
        self, particle: _Particle, step: int
    ) -> Generator[Batch | ScreenRequest, Any, dict[str, Any] | None]:
        cfg, p = self.config, particle.index
        slots: list[Entry | None] = []
        results: list[Result | None] = [None] * cfg.children
        tries = [0] * cfg.children
        counts = collections.Counter[str]()
        for _ in range(cfg.children):
            slots.append((yield from self._child(particle, counts)))
        # slot -> the child it evaluates next
        pending = {j: e for j, e in enumerate(slots) if e is not None}
        round_ = 0
        while pending:
            batch = [
                Request(f"p{p}/s{step}/c{j}/t{tries[j]}", "full", e, self.eval_seeds)
                for j, e in pending.items()
            ]
            got = yield Batch(batch, self._record_rejections(f"p{p}/s{step}/r{round_}", counts))
            counts = collections.Counter()
            retry = []
            for j, res in zip(pending, got, strict=True):
                results[j] = res
                tries[j] += 1
                if not res.ok and tries[j] < cfg.tries:
                    retry.append(j)
            pending = {}
            for j in retry:  # slot order: independent of arrival order
                entry = yield from self._child(particle, counts)
                if entry is not None:
                    slots[j] = entry
                    pending[j] = entry
            round_ += 1
        if counts:
            yield Batch([], self._record_rejections(f"p{p}/s{step}/r{round_}", counts))
        # slot -> (its last evaluated child, that child's result), for the evaluated slots
        done = {
            j: (e, r)
            for j, (e, r) in enumerate(zip(slots, results, strict=True))
            if e is not None and r is not None
        }
        if not done:
            return None
        best = max(done, key=lambda j: (done[j][1].score(self.failed), -j))  # ties: first slot
        best_child, best_result = done[best]
        best_score = best_result.score(self.failed)
        moved = not (cfg.elitist and particle.fitness is not None and best_score < particle.fitness)
        before = particle.position
        if moved:
            particle.position, particle.fitness = best_child, best_score
        move = {
            "type": "move",
            "origin": f"p{p}/s{step}/move",
            "particle": p,
            "step": step,
            "from": before.key,
            "to": particle.position.key,
            "candidate": particle.position.candidate.text,
            "fitness": particle.fitness,
            "moved": moved,
            "best_child": best_child.key,
            "best_child_fitness": best_score,
            "children": [
                {
                    "slot": j,
                    "key": e.key,
                    "fingerprint": e.fingerprint,
                    "status": r.status,
                    "fitness": r.fitness,
                    "tries": tries[j],
                }
                for j, (e, r) in done.items()
            ],
        }
        yield Batch([], [move])
        return move

    def rescore_phase(self, finalists: Iterable[Entry]) -> Phase:
        """Re-evaluate the finalists with ``rescore_seeds`` fresh seeds each."""
        cfg = self.config
        seeds = tuple(cfg.seed + 1000 + i for i in range(cfg.rescore_seeds))
        entries = list(finalists)
        if not entries:
            return []
        results = yield Batch(
            [Request(f"rescore/{i}", "rescore", e, seeds) for i, e in enumerate(entries)]
        )
        return list(zip(entries, results, strict=True))

    # checkpoints -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The search state as plain data: particle positions, seen sets and RNG states."""
        return {
            "init_rng": rng_state(self.init_rnd),
            "rejections": dict(sorted(self.rejections.items())),
            "particles": [
                {
                    "particle": q.index,
                    "step": q.step,
                    "position": q.position.candidate.text,
                    "key": q.position.key,
                    "fitness": q.fitness,
                    "stopped": q.stopped,
                    "seen_keys": sorted(q.seen_keys),
                    "seen_fingerprints": sorted(q.seen_fps),
                    "rng": rng_state(q.rnd),
                }
                for q in sorted(self.particles.values(), key=lambda q: q.index)
            ],
        }
