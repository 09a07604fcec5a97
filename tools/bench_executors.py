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

Part 2 (a simulated driver with 1,000 workers: scheduling cost of the driver per
evaluation) is not written yet; its place is :func:`part2` below.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import torch

from nos.executors import make_executor
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


def part2(args: argparse.Namespace) -> None:
    """The simulated 1,000-worker driver: to be written (driver cost per evaluation)."""
    print("part 2: not written yet")


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
