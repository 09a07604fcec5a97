"""Executors side by side: the Ray executor's overhead against the local executor.

Part 1 runs the same small search on the real ``digits`` task (``quick`` preset, same seed,
a shape that ends before its evaluation budget, so both executors train exactly the same
evaluations) with the local executor (2 worker processes) and with the Ray executor on a
local Ray instance of 2 CPUs (2 evaluations at once), alternating, and prints the wall time
of each search, the evaluations trained and the ratio Ray / local (goal: at most 1.10).

Both start cold in every repeat: the local executor spawns its workers inside the timed
region; for Ray a fresh instance is started before the timed region (its start-up is
printed apart: a cluster is started once per job, not once per search) and stopped after,
so no worker keeps a warm torch or data set from an earlier repeat.

    python tools/bench_executors.py [--repeats 2] [--workers 2] [--budget 200] [--ray-niceness 0]
        [--part 1|1b|2|all]

Ray starts its workers at niceness 15 (below its own daemons); on a machine shared with
other work that alone slows them down, so the comparison runs them at niceness 0, the
local executor's (``--ray-niceness 15`` measures Ray's default).

Part 1b measures the executors' cost per job directly: the time per no-op job (the fake
task, no sleep) through each executor with warm workers, i.e. the added latency that
divides into every real evaluation.

Part 2 simulates a cluster: ``--sim-workers`` (1,000) workers whose fake evaluation takes
``--sim-delay`` seconds, answered in this process, driving a search large enough to keep
them busy (``--sim-particles`` particles of 7 children), with the real run store (fsynced
JSONL in a temporary directory). It prints the completed evaluations per second the
driver sustains, the driver's CPU seconds per evaluation (goal: >= 300 evaluations per CPU
second, one core), and the CPU profile's shares: the symbolic pipeline (sampling,
mutation, integrity check, keys), the store, the executor and the rest of the scheduling.
``--screen-workers N`` moves the screening (integrity check, keys) to N driver-side
processes; the driver's own CPU is then what it counts.
"""

from __future__ import annotations

import argparse
import collections
import heapq
import logging
import os
import statistics
import time
from typing import Any

import torch

from nos.executors import make_executor
from nos.executors.base import Outcome
from nos.search.config import SearchConfig
from nos.search.driver import MemoryStore, run_search
from nos.search.report import hall_of_fame
from nos.search.session import Execution, _job_setup
from nos.symbolic.grammar import load_grammar

#: A search that ends by itself before the budget: the same evaluations for every executor.
SHAPE = {"particles": 3, "steps": 2, "children": 4, "init_factor": 4, "seed": 1}


def search_once(
    cfg: SearchConfig, kind: str, workers: int, **options: object
) -> tuple[float, MemoryStore, int]:
    """Wall time of one search (executor start to close), its store and trained count."""
    grammar = load_grammar(cfg.grammar)
    function, factory = _job_setup(cfg, Execution(), grammar.path)
    store = MemoryStore()
    t0 = time.monotonic()
    ex = make_executor(kind, function, workers=workers, timeout_s=cfg.kill_after_s, **options)
    try:
        outcome = run_search(cfg, grammar, job_factory=factory, executor=ex, store=store)
    finally:
        ex.close()
    return time.monotonic() - t0, store, outcome.trained


def part1(args: argparse.Namespace) -> None:
    import ray

    cfg = SearchConfig(
        grammar="morgan2024", task="digits", preset="quick", budget_evals=args.budget, **SHAPE
    )
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    starts, hofs, trained = [], set(), set()
    for rep in range(args.repeats):
        order = ("local", "ray") if rep % 2 == 0 else ("ray", "local")
        for kind in order:
            if kind == "ray":
                t0 = time.monotonic()
                ray.init(
                    num_cpus=args.workers,
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
                starts.append(time.monotonic() - t0)
            try:
                wall, store, n = search_once(cfg, kind, args.workers)
            finally:
                if kind == "ray":
                    ray.shutdown()
            walls[kind].append(wall)
            trained.add(n)
            hofs.add(repr(hall_of_fame(store.records, 10)))
            print(
                f"  repeat {rep + 1} {kind:>5}: {wall:7.2f} s, {n} evaluations trained", flush=True
            )
    local, ray_wall = statistics.median(walls["local"]), statistics.median(walls["ray"])
    print(
        f"part 1: digits/quick, {args.workers} workers, {sorted(trained)} evaluations, "
        f"{args.repeats} repeat(s), medians"
    )
    print(f"  local executor      {local:7.2f} s")
    print(
        f"  ray executor        {ray_wall:7.2f} s   (Ray instance start-up, not counted: "
        f"{statistics.median(starts):.1f} s)"
    )
    print(
        f"  ratio ray / local   {ray_wall / local:7.3f}   (overhead {ray_wall / local - 1:+.1%}"
        f"; goal <= +10%)"
    )
    pairs = ", ".join(f"{r / lo:.3f}" for r, lo in zip(walls["ray"], walls["local"], strict=True))
    print(f"  ratio of each repeat (alternating order): {pairs}")
    best = min(walls["ray"]) / min(walls["local"])
    print(f"  ratio of the fastest runs (least disturbed by other load): {best:.3f}")
    print(f"  same hall of fame:  {len(hofs) == 1}; same evaluations trained: {len(trained) == 1}")


def round_trip(kind: str, workers: int, jobs: int) -> float:
    """Seconds per job of a no-op job (fake task, no sleep) with ``workers`` in flight."""
    ex = make_executor(kind, "nos.search.fake:evaluate", workers=workers, timeout_s=60)
    try:
        for i in range(workers * 2):  # warm up: worker processes started, module imported
            ex.submit(f"w{i}", {"candidate": f"w{i}"})
        while ex.pending:
            ex.wait(timeout=1.0)
        t0 = time.monotonic()
        for i in range(jobs):
            ex.submit(f"j{i}", {"candidate": f"j{i}"})
        while ex.pending:
            ex.wait(timeout=1.0)
        return (time.monotonic() - t0) / jobs
    finally:
        ex.close()


def overhead_per_job(args: argparse.Namespace) -> None:
    import ray

    local = round_trip("local", args.workers, args.jobs)
    ray.init(
        num_cpus=args.workers,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    try:
        on_ray = round_trip("ray", args.workers, args.jobs)
    finally:
        ray.shutdown()
    print(
        f"part 1b: no-op jobs, {args.workers} workers, {args.jobs} jobs: local "
        f"{local * 1e3:.2f} ms/job, ray {on_ray * 1e3:.2f} ms/job "
        f"(+{(on_ray - local) * 1e3:.2f} ms per evaluation)"
    )


class SimulatedCluster:
    """An executor of ``workers`` simulated workers: each job takes ``delay`` seconds and is
    answered by the fake fitness in this process, so only the driver's own cost is real."""

    def __init__(self, workers: int, delay: float):
        self.workers, self.delay = workers, delay
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._running: list[tuple[float, int, str, dict[str, Any]]] = []
        self._count = 0

    def submit(self, job_id: str, payload: dict[str, Any], timeout_s: float | None = None) -> None:
        self._queue.append((job_id, payload))
        self._fill()

    def _fill(self) -> None:
        now = time.monotonic()
        while self._queue and len(self._running) < self.workers:
            job_id, payload = self._queue.popleft()
            self._count += 1
            heapq.heappush(self._running, (now + self.delay, self._count, job_id, payload))

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._running)

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        from nos.search.fake import evaluate

        if not self._running:
            return []
        now = time.monotonic()
        if self._running[0][0] > now:
            time.sleep(min(self._running[0][0] - now, timeout if timeout is not None else 1e9))
        now, out = time.monotonic(), []
        while self._running and self._running[0][0] <= now:
            due, _, job_id, payload = heapq.heappop(self._running)
            out.append(Outcome(job_id, evaluate(payload), "sim", self.delay, due - self.delay))
        self._fill()
        return out

    def close(self) -> None:
        self._queue.clear()


#: Profile rows (file fragments) and the share they are counted under.
_SHARES = (
    ("symbolic pipeline", ("nos/symbolic/", "sympy", "deap", "nos/zoo/")),
    ("store", ("nos/search/store.py",)),
    ("executor", ("bench_executors.py", "nos/search/fake.py")),
)


def part2(args: argparse.Namespace) -> None:
    """Driver throughput and CPU profile with a simulated cluster."""
    import cProfile
    import functools
    import pstats
    import tempfile

    from nos.search.fake import job_payload
    from nos.search.store import RunStore

    cfg = SearchConfig(
        grammar="morgan2024",
        task="fake",
        particles=args.sim_particles,
        steps=args.sim_steps,
        children=7,
        init_factor=2,
        seed=0,
    )
    grammar = load_grammar("morgan2024")
    executor = SimulatedCluster(args.sim_workers, args.sim_delay)
    with tempfile.TemporaryDirectory() as root:
        store = RunStore.create("sim", {"search": cfg.to_dict()}, grammar.text, root)
        profile = cProfile.Profile()
        cpu0, wall0 = time.process_time(), time.monotonic()
        profile.enable()
        outcome = run_search(
            cfg,
            grammar,
            executor=executor,
            store=store,
            job_factory=functools.partial(job_payload, options={}),
            screen_workers=args.screen_workers,
        )
        profile.disable()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        store.close()
    n = outcome.trained
    stats = pstats.Stats(profile)
    own: dict[str, float] = collections.Counter()
    total = 0.0
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        if "time.sleep" in _name or _name == "<built-in method time.sleep>":
            continue
        total += tottime
        share = next(
            (label for label, parts in _SHARES if any(p in filename for p in parts)),
            "scheduling and the rest",
        )
        own[share] += tottime
    print(
        f"part 2: simulated cluster of {args.sim_workers} workers, {args.sim_delay:g} s per "
        f"evaluation, {args.sim_particles} particles, {args.screen_workers} screening "
        f"process(es): {n} evaluations in {wall:.1f} s "
        f"({n / wall:.0f} completed/s), driver CPU {cpu:.1f} s "
        f"({n / cpu:.0f} evaluations per CPU second; goal 300)"
    )
    for label, seconds in sorted(own.items(), key=lambda kv: -kv[1]):
        print(f"  {label:26s} {100 * seconds / max(total, 1e-9):5.1f}% of the driver's CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=int, default=200, help="evaluation budget (a cap only)")
    ap.add_argument(
        "--ray-niceness",
        type=int,
        default=0,
        help="niceness of Ray's workers (Ray's default is 15; 0 is the local "
        "executor's, for a comparison at equal priority on a shared machine)",
    )
    ap.add_argument("--jobs", type=int, default=300, help="no-op jobs of part 1b")
    ap.add_argument("--part", choices=("1", "1b", "2", "all"), default="all")
    ap.add_argument("--sim-workers", type=int, default=1000)
    ap.add_argument("--sim-delay", type=float, default=2.0, help="seconds per simulated job")
    ap.add_argument("--sim-particles", type=int, default=150)
    ap.add_argument("--sim-steps", type=int, default=2)
    ap.add_argument(
        "--screen-workers",
        type=int,
        default=0,
        help="part 2: driver-side screening processes (0: the driver itself)",
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
    os.environ["RAY_worker_niceness"] = str(args.ray_niceness)  # noqa: SIM112 (Ray's name)
    if args.part in ("1", "all"):
        part1(args)
    if args.part in ("1b", "all"):
        overhead_per_job(args)
    if args.part in ("2", "all"):
        part2(args)


if __name__ == "__main__":
    main()
