"""The driver: runs the GA's phases over an injected executor and store (spec §4.5).

:func:`run_search` wires :class:`~nos.search.engine.ParticleGA` to

* a **job factory** that turns a :class:`~nos.search.engine.Request` into the plain-data
  payload of the evaluator (the real one, or the fake one of the tests);
* an **executor** (:mod:`nos.executors`) that runs payloads and returns results as they
  complete;
* a **store** (:class:`Recorder`, e.g. :class:`nos.search.store.RunStore`) that records every
  trained evaluation and the GA's decisions, and answers evaluations it already holds.

Scheduling. All phases that are ready run at once: the initial population is submitted in
one go, then every particle independently. Requests are answered, in order of preference,
from the in-memory cache, by joining an identical evaluation in flight, from the store's
records, or by submitting a job. The cache key is ``stage:fingerprint`` with global dedup
(one training per function computed) and ``stage:origin`` without it (every slot trains, as
in the reference).

Which member of a fingerprint class is trained must not depend on timing: members can
differ slightly (``sign(g)`` and ``sign(g)/(1 + 1e-7)`` share a fingerprint), and float32
training amplifies the difference. With dedup, requests are therefore resolved at a
*logical* time: a phase's k-th batch is round k, and round k is resolved, in the phases'
fixed order, only once every live phase has yielded its round-k batch. The first request
of a class in that order is the one trained; every other member gets its result. Without
dedup nothing is shared, and a particle's next step starts as soon as its own children are
scored. The cost of the rounds is the tail of each: workers idle while the slowest
evaluation of a round finishes.

Timeouts. A wall-clock limit (``timeout_s``, off by default: the fitness presets bound every
evaluation in training steps) depends on the machine's load, so a ``timeout`` result is no
verdict on the candidate: it is recorded as ``retryable``, never shared with the rest of
its class, and trained again when the run is resumed.

Resume is replay: a resumed run executes the same deterministic driver from the start, and
every evaluation already in the store is answered from its record instead of being trained
again. Only evaluations that were in flight when the run was killed are trained again, and
since decisions depend only on the seed and the fitness values (see :mod:`.engine`), the
resumed run reaches the same state as an uninterrupted one.

Budgets (``budget_evals``, ``budget_s``) are hard stops: no new job is submitted once one is
spent, the jobs in flight finish, and the run ends where it is. Where a budget cuts the
search short, what was evaluated depends on timing.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nos.executors import Executor, Outcome
from nos.search.config import SearchConfig
from nos.search.engine import Entry, ParticleGA, Phase, Request, Result
from nos.search.screening import Screened, ScreenPool, ScreenRequest, screen
from nos.status import Status
from nos.symbolic.genome import Candidate
from nos.symbolic.grammar import Grammar

__all__ = ["MemoryStore", "Recorder", "SearchOutcome", "cache_id", "run_search"]

log = logging.getLogger(__name__)

JobFactory = Callable[[Request], dict[str, Any]]
Progress = Callable[[dict[str, Any]], None]


class Recorder(Protocol):
    """What the driver needs of a run store."""

    def recorded(self, cache_id: str) -> dict[str, Any] | None: ...
    def append(self, record: dict[str, Any]) -> None: ...
    def append_once(self, record: dict[str, Any]) -> None: ...
    def checkpoint(self, state: dict[str, Any]) -> None: ...
    def elapsed_before(self) -> float: ...


@dataclass
class MemoryStore:
    """A :class:`Recorder` in memory (tests; runs that keep nothing)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    _evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    _origins: set[str] = field(default_factory=set)

    def recorded(self, cache_id: str) -> dict[str, Any] | None:
        return self._evals.get(cache_id)

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if record.get("type") == "eval":
            self._evals[record["cache_id"]] = record

    def append_once(self, record: dict[str, Any]) -> None:
        if record["origin"] not in self._origins:
            self._origins.add(record["origin"])
            self.append(record)

    def checkpoint(self, state: dict[str, Any]) -> None:
        self.checkpoints.append(state)

    def elapsed_before(self) -> float:
        return float(self.checkpoints[-1]["elapsed_s"]) if self.checkpoints else 0.0


@dataclass
class SearchOutcome:
    """How a run ended, with its counters."""

    status: str  # "finished" or "stopped" (a budget ran out)
    stop_reason: str
    trained: int  # evaluations trained in this session
    replayed: int  # evaluations answered from the store's records
    cached: int  # requests answered by global dedup (no training)
    timeouts: int  # evaluations that ran out of wall-clock time (retryable)
    rejections: dict[str, int]
    wall_s: float
    elapsed_s: float  # over all sessions of the run


def cache_id(request: Request, dedup: bool) -> str:
    """The identity under which an evaluation is trained once and then reused."""
    if dedup:
        return f"{request.stage}:{request.entry.fingerprint}"
    return f"{request.stage}:{request.origin}"


@dataclass
class _Task:
    gen: Phase
    requests: list[Request] = field(default_factory=list)
    results: list[Result | None] = field(default_factory=list)
    missing: int = 0
    rounds: int = 0  # request batches yielded so far; the current one is round rounds - 1


class _Scheduler:
    """Runs phase coroutines, resolving their requests through cache, store or executor."""

    def __init__(
        self,
        config: SearchConfig,
        job_factory: JobFactory,
        executor: Executor,
        store: Recorder,
        progress: Progress | None,
        checkpoint: Callable[[], None],
        checkpoint_every_s: float,
        pool: ScreenPool | None = None,
    ):
        self.config = config
        self.job_factory = job_factory
        self.executor = executor
        self.store = store
        self.progress = progress
        self.checkpoint = checkpoint
        self.checkpoint_every_s = checkpoint_every_s
        self.tasks: dict[str, _Task] = {}
        self.done: dict[str, Any] = {}
        self.ready: collections.deque[str] = collections.deque()
        self.cache: dict[str, tuple[Request, Result]] = {}
        self.waiters: dict[str, list[tuple[str, int]]] = {}
        self.inflight: dict[str, Request] = {}
        self.unresolved: list[str] = []  # tasks whose current batch waits for its round
        self.pool = pool
        self.screens: dict[str, Screened] = {}  # candidate text -> its screen (pure: a memo)
        self.screening: list[tuple[str, ScreenRequest]] = []  # waiting for the pool
        self.trained = self.replayed = self.cached = self.timeouts = 0
        self.seq = 0
        self.best_by_stage: dict[str, float | None] = {"init": None, "full": None}
        self.stop_reason = ""
        self.t0 = time.monotonic()
        self.elapsed_before = store.elapsed_before()
        self.last_checkpoint = self.t0

    # bookkeeping -----------------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.t0

    def _budget_left(self) -> bool:
        cfg = self.config
        if self.stop_reason:
            return False
        if cfg.budget_evals and self.seq + len(self.inflight) >= cfg.budget_evals:
            self.stop_reason = f"evaluation budget of {cfg.budget_evals} spent"
        elif cfg.budget_s and self.elapsed() >= cfg.budget_s:
            self.stop_reason = f"time budget of {cfg.budget_s:g}s spent"
        if self.stop_reason:
            log.info("stopping: %s", self.stop_reason)
        return not self.stop_reason

    def _report(self, phase: str) -> None:
        if self.progress is not None:
            self.progress(
                {
                    "phase": phase,
                    "evaluations": self.seq,
                    "trained": self.trained,
                    "replayed": self.replayed,
                    "cached": self.cached,
                    "inflight": len(self.inflight),
                    "best": self.best,
                }
            )

    # coroutines ------------------------------------------------------------------------

    def add(self, name: str, gen: Phase) -> None:
        self.tasks[name] = _Task(gen)
        self._advance(name, None)

    def _screen(self, request: ScreenRequest) -> list[Screened]:
        """Screens from the memo, computing the missing ones in this process."""
        for cand in request.candidates:
            if cand.text not in self.screens:
                self.screens[cand.text] = screen(cand)
        return [self.screens[c.text] for c in request.candidates]

    def _flush_screens(self) -> None:
        """Screen what the phases asked for in the pool, all at once, and resume them."""
        while self.screening:
            asked, self.screening = self.screening, []
            texts = list(
                dict.fromkeys(
                    c.text for _, req in asked for c in req.candidates if c.text not in self.screens
                )
            )
            assert self.pool is not None
            self.screens.update(zip(texts, self.pool.map(texts), strict=True))
            for name, req in asked:  # each phase's screens are its own: any order will do
                self._advance(name, [self.screens[c.text] for c in req.candidates])

    def _advance(self, name: str, value: Any) -> None:
        task = self.tasks[name]
        try:
            out = next(task.gen) if value is None else task.gen.send(value)
            while isinstance(out, ScreenRequest):
                if self.pool is not None and any(
                    c.text not in self.screens for c in out.candidates
                ):
                    self.screening.append((name, out))  # screened with the others
                    return
                out = task.gen.send(self._screen(out))
        except StopIteration as stop:
            del self.tasks[name]
            self.done[name] = stop.value
            return
        batch = out
        for record in batch.records:
            self.store.append_once(record)
        task.requests = batch.requests
        task.results = [None] * len(batch.requests)
        task.missing = len(batch.requests)
        if not batch.requests:
            self.ready.append(name)
            return
        task.rounds += 1
        if self.config.dedup:
            self.unresolved.append(name)  # resolved with its round (see the module docstring)
            return
        for index, request in enumerate(batch.requests):
            self._resolve(name, index, request)

    def _resolve_round(self) -> None:
        """Resolve the requests of the earliest round once every live phase has yielded it."""
        if not self.unresolved:
            return
        current = min(task.rounds for task in self.tasks.values())
        due = [n for n in self.tasks if n in self.unresolved and self.tasks[n].rounds == current]
        for name in due:  # the phases' fixed order: independent of result arrival
            self.unresolved.remove(name)
            for index, request in enumerate(self.tasks[name].requests):
                self._resolve(name, index, request)

    def _fill(self, name: str, index: int, result: Result) -> None:
        task = self.tasks[name]
        task.results[index] = result
        task.missing -= 1
        if task.missing == 0:
            self.ready.append(name)

    def _resolve(self, name: str, index: int, request: Request) -> None:
        cid = cache_id(request, self.config.dedup)
        hit = self.cache.get(cid)
        if hit is not None:
            self.cached += 1
            self._fill(name, index, hit[1])
            return
        if cid in self.waiters:
            self.cached += 1
            self.waiters[cid].append((name, index))
            return
        record = self.store.recorded(cid)
        if record is not None and record.get("retryable"):
            record = None  # a timeout is no verdict: train it again
        if record is not None:
            result = Result.from_raw(record)
            self.cache[cid] = (request, result)
            self.replayed += 1
            self.seq += 1
            self._note_best(request, result)
            self._fill(name, index, result)
            return
        self.waiters[cid] = [(name, index)]
        if not self._budget_left():
            return  # the request stays unanswered: its phase stops here
        self.inflight[cid] = request
        self.executor.submit(cid, self.job_factory(request), timeout_s=self.config.kill_after_s)

    def _note_best(self, request: Request, result: Result) -> None:
        if result.ok and result.fitness is not None and request.stage in self.best_by_stage:
            old = self.best_by_stage[request.stage]
            self.best_by_stage[request.stage] = (
                result.fitness if old is None else max(old, result.fitness)
            )

    @property
    def best(self) -> float | None:
        """Best full-stage fitness so far (the cheap stage's before any full result)."""
        full = self.best_by_stage["full"]
        return full if full is not None else self.best_by_stage["init"]

    def _complete(self, outcome: Outcome) -> None:
        cid = outcome.job_id
        request = self.inflight.pop(cid)
        result = Result.from_raw(outcome.result)
        self.seq += 1
        self.trained += 1
        entry = request.entry
        record = {
            "type": "eval",
            "seq": self.seq,
            "cache_id": cid,
            "origin": request.origin,
            "stage": request.stage,
            "candidate": entry.candidate.text,
            "key": entry.key,
            "fingerprint": entry.fingerprint,
            "size": entry.candidate.size,
            "parent": entry.parent,
            "mutation": entry.mutation,
            "detail": entry.detail,
            "flip": entry.check.flip,
            "lr_hint": entry.check.lr,
            "seeds": list(request.seeds),
            "status": result.status,
            "fitness": result.fitness,
            "fitness_per_seed": list(result.fitness_per_seed),
            "reason": result.reason,
            "lr": result.lr,
            "steps": result.steps,
            "eval_wall_s": outcome.result.get("wall_s"),
            "wall_s": round(outcome.wall_s, 4),
            "worker": outcome.worker,
            "started": round(outcome.started, 3),
            "finished": round(outcome.started + outcome.wall_s, 3),
            "elapsed_s": round(self.elapsed(), 3),
        }
        if result.details is not None:
            record["suite"] = result.details
        if result.status is Status.TIMEOUT:
            record["retryable"] = True
            self.timeouts += 1
            log.warning(
                "%s timed out (%s); resume the run to train it again",
                entry.candidate.text,
                result.reason,
            )
        self.store.append(record)
        if result.status is not Status.TIMEOUT:  # a timeout is never shared with the class
            self.cache[cid] = (request, result)
        self._note_best(request, result)
        for name, index in self.waiters.pop(cid):
            self._fill(name, index, result)

    def run(self, phase: str) -> None:
        """Run the current coroutines until all are done or nothing more can happen."""
        while True:
            while self.ready:
                name = self.ready.popleft()
                task = self.tasks[name]
                self._advance(name, list(task.results))
            self._flush_screens()
            self._resolve_round()
            if self.ready:
                continue
            if not self.inflight:
                break
            self._budget_left()
            for outcome in self.executor.wait(timeout=1.0):
                self._complete(outcome)
            self._report(phase)
            if time.monotonic() - self.last_checkpoint >= self.checkpoint_every_s:
                self.checkpoint()
                self.last_checkpoint = time.monotonic()
        self._report(phase)


def run_search(
    config: SearchConfig,
    grammar: Grammar,
    *,
    job_factory: JobFactory,
    executor: Executor,
    store: Recorder | None = None,
    seeds: Sequence[Candidate] = (),
    progress: Progress | None = None,
    checkpoint_every_s: float = 30.0,
    screen_workers: int = 0,
) -> SearchOutcome:
    """Run (or, with a store that holds records, resume) one search to its end or budget.

    ``screen_workers`` > 0 screens candidates (:mod:`nos.search.screening`) in that many
    driver-side processes instead of in this one; the decisions are the same.
    """
    store = store if store is not None else MemoryStore()
    engine = ParticleGA(config, grammar, seeds)
    pool = ScreenPool(grammar, screen_workers) if screen_workers > 0 else None
    try:
        return _run(
            config, engine, job_factory, executor, store, progress, checkpoint_every_s, pool
        )
    finally:
        if pool is not None:
            pool.close()


def _run(
    config: SearchConfig,
    engine: ParticleGA,
    job_factory: JobFactory,
    executor: Executor,
    store: Recorder,
    progress: Progress | None,
    checkpoint_every_s: float,
    pool: ScreenPool | None,
) -> SearchOutcome:
    sched: _Scheduler

    def checkpoint() -> None:
        store.checkpoint(
            {
                "type": "checkpoint",
                "elapsed_s": round(sched.elapsed(), 3),
                "evaluations": sched.seq,
                "finished_phases": sorted(sched.done),
                **engine.state(),
            }
        )

    sched = _Scheduler(
        config, job_factory, executor, store, progress, checkpoint, checkpoint_every_s, pool
    )
    sched.add("init", engine.initial_phase())
    sched.run("init")
    if "init" in sched.done:
        for p, (entry, _score) in enumerate(sched.done["init"]):
            sched.add(f"p{p}", engine.particle_phase(p, entry))
        sched.run("particles")
    particles_done = "init" in sched.done and not sched.tasks
    if config.rescore_top and particles_done:
        sched.add(
            "rescore", engine.rescore_phase(finalists(sched.cache.values(), config.rescore_top))
        )
        sched.run("rescore")
    checkpoint()
    finished = not sched.tasks and not sched.stop_reason and "init" in sched.done
    stop_reason = sched.stop_reason or ("" if finished else "no request could be answered")
    return SearchOutcome(
        status="finished" if finished else "stopped",
        stop_reason=stop_reason,
        trained=sched.trained,
        replayed=sched.replayed,
        cached=sched.cached,
        timeouts=sched.timeouts,
        rejections=dict(sorted(engine.rejections.items())),
        wall_s=time.monotonic() - sched.t0,
        elapsed_s=sched.elapsed(),
    )


def finalists(evaluated: Iterable[tuple[Request, Result]], k: int) -> list[Entry]:
    """The top ``k`` full-stage candidates, one per fingerprint (ties: by key)."""
    best: dict[str, tuple[float, Entry]] = {}
    for request, result in evaluated:
        if request.stage != "full" or not result.ok or result.fitness is None:
            continue
        fp = request.entry.fingerprint
        if (
            fp not in best
            or result.fitness > best[fp][0]
            or (result.fitness == best[fp][0] and request.entry.key < best[fp][1].key)
        ):
            best[fp] = (result.fitness, request.entry)
    ranked = sorted(best.values(), key=lambda fe: (-fe[0], fe[1].key))
    return [e for _f, e in ranked[:k]]
