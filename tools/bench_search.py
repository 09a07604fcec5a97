"""Throughput of the search machinery: evaluations per hour, serial vs local workers.

Runs the same small search (fake task, each evaluation keeping one core busy for
``--busy`` seconds, a stand-in for training) with the serial executor and with the local
executor, and prints evaluations/hour, wall time and whether both made the same decisions.
With ``--task quick`` it runs the real digits evaluator instead (needs nos.optim).

    python tools/bench_search.py [--busy 0.25] [--workers 2] [--task fake|quick]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time

from nos.executors import make_executor
from nos.search.config import SearchConfig
from nos.search.driver import MemoryStore, run_search
from nos.search.fake import job_payload
from nos.search.report import hall_of_fame, run_stats
from nos.search.session import Execution, _job_setup
from nos.symbolic.grammar import load_grammar


def one(cfg: SearchConfig, executor: str, workers: int) -> tuple[float, MemoryStore]:
    grammar = load_grammar(cfg.grammar)
    if cfg.task == "fake":
        function = "nos.search.fake:evaluate"
        factory = functools.partial(job_payload, options=cfg.fake)
    else:
        function, factory = _job_setup(cfg, Execution(), grammar.path)
    store = MemoryStore()
    ex = make_executor(executor, function, workers=workers, timeout_s=600)
    t0 = time.monotonic()
    try:
        run_search(cfg, grammar, job_factory=factory, executor=ex, store=store)
    finally:
        ex.close()
    return time.monotonic() - t0, store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", type=float, default=0.25)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--task", default="fake", choices=("fake", "quick"))
    ap.add_argument("--grammar", default="morgan2024")
    ap.add_argument("--no-dedup", action="store_true")
    ap.add_argument("--only", choices=("serial", "local"), help="run one executor only")
    args = ap.parse_args()
    shape = {"particles": 3, "steps": 2, "children": 4, "init_factor": 3, "seed": 1}
    if args.task == "fake":
        cfg = SearchConfig(
            grammar=args.grammar,
            task="fake",
            dedup=not args.no_dedup,
            fake={"busy_s": args.busy, "fail_rate": 0.3},
            **shape,
        )
    else:
        cfg = SearchConfig(
            grammar=args.grammar, task="digits", preset="quick", dedup=not args.no_dedup, **shape
        )
    results = {}
    with tempfile.TemporaryDirectory():
        for executor, workers in (("serial", 1), ("local", args.workers)):
            if args.only and executor != args.only:
                continue
            wall, store = one(cfg, executor, workers)
            stats = run_stats(store.records)
            results[executor] = hall_of_fame(store.records)
            print(
                f"{executor:>6} x{workers}: {stats['evaluations']} evaluations in "
                f"{wall:.1f}s = {stats['evaluations'] / wall * 3600:,.0f}/hour; wasted "
                f"{100 * stats['wasted_rate']:.1f}%"
            )
    if len(results) == 2:
        print("same hall of fame:", results["serial"] == results["local"])


if __name__ == "__main__":
    main()
