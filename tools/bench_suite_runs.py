"""Time of one bench run per task of a suite, on one thread (what ``nos bench`` budgets for).

For every task of ``--suite`` (default small): load it, then train one run at the task's
budget with each ``--opt`` (a built-in baseline name or ``plane-search``, default adamw and
plane-search) at ``--lr``, and print the wall and CPU seconds of the run, the steps, and the
final validation metric. Runs are repeated ``--repeats`` times and the fastest is kept, so
load from other processes hits all alike.

    python tools/bench_suite_runs.py [--suite small] [--opt adamw --opt plane-search]
                                     [--lr 1e-2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from nos.bench.optimizers import factory_for_payload
from nos.training.curves import train_curve
from nos.training.registry import get_task, suite
from nos.training.tasks import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="small")
    parser.add_argument("--opt", action="append", default=None)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    opts = args.opt or ["adamw", "plane-search"]
    print(f"{'task':<14} {'optimizer':<14} {'steps':>5} {'wall s':>7} {'cpu s':>6}  val metric")
    for name in suite(args.suite):
        info = get_task(name)
        task = load_task(name, include_test=True, augment=info.augmentable)
        for opt in opts:
            if opt == "plane-search" and not info.so_friendly:
                continue
            payload = {"kind": "plane-search"} if opt == "plane-search" else {"kind": "baseline"}
            payload |= {} if opt == "plane-search" else {"name": opt}
            budget = info.budget.replace(batch_size=0) if opt == "plane-search" else info.budget
            best = None
            for _ in range(args.repeats):
                factory = factory_for_payload(payload, task, None)
                cpu = time.process_time()
                curve = train_curve(factory, task, budget, args.lr, seed=0)
                cpu = time.process_time() - cpu
                if best is None or curve.wall_s < best[0].wall_s:
                    best = (curve, cpu)
            assert best is not None
            curve, cpu = best
            print(
                f"{name:<14} {opt:<14} {curve.trained:>5} {curve.wall_s:>7.2f} {cpu:>6.2f}  "
                f"{curve.final_metric}"
            )


if __name__ == "__main__":
    main()
