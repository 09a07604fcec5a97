"""Transfer of optimizers to tasks a search never trained on: LR-tuned, paired seeds, test split.

A bench-style comparison for the validation suite (``holdout``) or any registered suite::

    python tools/transfer.py RUN:1 zoo:adam zoo:rmsprop --suite holdout --trials 8 --seeds 5

Each optimizer is candidate text, ``zoo:NAME``, ``torch:NAME`` or ``RUN:K`` (the K-th of a
run's hall of fame, with the sign its integrity check chose; ``--root`` finds the run).
For every optimizer and task, ``--trials`` LRs of a half-decade grid (from 10^-3.5 up)
train on the first seed and the lowest final validation loss picks the LR; ``--seeds``
paired seeds (same initial weights and batches for every optimizer) then train at it and
are scored on the test split. The table shows per task the mean ± std of the test loss,
the tuned LR, and, against ``torch:adam`` (always included), the mean log ratio of the test
losses and the seeds won and lost; the last lines count the tasks where each optimizer's
mean test loss beats Adam's (and its mean test metric). Runs are spread over ``--workers``
processes of one torch thread each; ``-o FILE`` writes every run as JSON.

The bench's own suite (``nos bench --suite small``) is where transfer is finally checked;
this tool needs nothing but the task registry.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REFERENCE = "torch:adam"


def grid(trials: int) -> list[float]:
    return [10 ** (-3.5 + 0.5 * k) for k in range(trials)]


def job(payload: dict[str, Any]) -> dict[str, Any]:
    """One training run (the worker function); suite-fitness jobs are passed on."""
    if "job" in payload:
        from nos.search.suite_eval import run_job

        return run_job(payload)
    from nos.optim.factories import factory_for
    from nos.training.curves import train_curve
    from nos.training.registry import get_task
    from nos.training.tasks import load_task

    factory = factory_for(payload["candidate"], payload["grammar"], flip=payload["flip"])
    task = load_task(payload["task"], include_test=True)
    budget = get_task(payload["task"]).budget
    try:
        curve = train_curve(factory, task, budget, payload["lr"], payload["seed"], test=True)
    except Exception as exc:  # the optimizer's own failure
        return {"val": None, "test": None, "metric": None, "error": f"{type(exc).__name__}"}
    ok = not curve.diverged and curve.final_loss is not None and math.isfinite(curve.final_loss)
    test = curve.test_loss if ok and curve.test_loss is not None else None
    if test is not None and not math.isfinite(test):
        test = None
    return {
        "val": curve.final_loss if ok else None,
        "test": test,
        "metric": curve.test_metric if test is not None else None,
        "steps": curve.trained,
    }


def run_batches(payloads: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    from nos.executors import LocalExecutor

    with LocalExecutor("transfer:job", workers=workers) as ex:
        for i, p in enumerate(payloads):
            ex.submit(str(i), p)
        got: dict[str, dict[str, Any]] = {}
        while len(got) < len(payloads):
            for outcome in ex.wait(timeout=1.0):
                got[outcome.job_id] = outcome.result
    return [got[str(i)] for i in range(len(payloads))]


def resolve(spec: str, root: str) -> tuple[str, str, bool, str]:
    """(candidate text, grammar, flip, label) of one optimizer argument."""
    run, sep, rank = spec.rpartition(":")
    if sep and rank.isdigit() and run and not run.startswith(("zoo", "torch")):
        from nos.search.report import ranked_entry
        from nos.search.store import load_run

        candidate, row = ranked_entry(run, int(rank), root)
        grammar = str(load_run(run, root).path / "grammar.toml")
        return candidate.text, grammar, bool(row["flip"]), f"{run}:{rank}"
    if spec.startswith(("zoo:", "torch:")):
        return spec, "morgan2024", False, spec
    from nos.symbolic.check import check_candidate
    from nos.zoo.resolve import resolve as parse

    return spec, "morgan2024", check_candidate(parse(spec)).flip, spec


def transfer(
    optimizers: list[tuple[str, str, bool, str]],
    tasks: list[str],
    *,
    trials: int,
    seeds: int,
    workers: int,
) -> dict[str, Any]:
    """Tune each optimizer's LR per task, then train ``seeds`` seeds at it (see the module)."""
    lrs = grid(trials)
    base = [
        {"candidate": c, "grammar": g, "flip": f, "task": t, "lr": lr, "seed": 0, "label": label}
        for c, g, f, label in optimizers
        for t in tasks
        for lr in lrs
    ]
    tuned = run_batches(base, workers)
    best: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
    for p, r in zip(base, tuned, strict=True):
        key = (p["label"], p["task"])
        if r["val"] is not None and (key not in best or r["val"] < best[key][1]["val"]):
            best[key] = (p["lr"], r)
    second = [
        {**p, "lr": best[(p["label"], p["task"])][0], "seed": s}
        for p in base
        if p["lr"] == lrs[0] and (p["label"], p["task"]) in best
        for s in range(1, seeds)
    ]
    results = run_batches(second, workers)
    out: dict[str, Any] = {}
    for (label, task), (lr, first) in best.items():
        runs = [first] + [
            r
            for p, r in zip(second, results, strict=True)
            if p["label"] == label and p["task"] == task
        ]
        out.setdefault(label, {})[task] = {
            "lr": lr,
            "test": [r["test"] for r in runs],
            "metric": [r["metric"] for r in runs],
            "edge": lr in (lrs[0], lrs[-1]),
        }
    return out


def compare(results: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    """Per optimizer and task: log ratio of test losses to Adam's (paired), wins, losses."""
    ref = results[REFERENCE]
    table: dict[str, Any] = {}
    for label, per_task in results.items():
        rows = {}
        for task in tasks:
            mine, theirs = per_task.get(task), ref.get(task)
            if mine is None or theirs is None:
                rows[task] = None
                continue
            pairs = [
                (a, b) for a, b in zip(mine["test"], theirs["test"], strict=True) if b is not None
            ]
            ratios = [max(-1.0, min(1.0, math.log(b / a))) if a else -1.0 for a, b in pairs]
            metrics = [m for m in mine["metric"] if m is not None]
            rows[task] = {
                "lr": mine["lr"],
                "edge": mine["edge"],
                "test_mean": statistics.fmean(x for x in mine["test"] if x is not None)
                if any(x is not None for x in mine["test"])
                else None,
                "test_std": statistics.pstdev([x for x in mine["test"] if x is not None])
                if sum(x is not None for x in mine["test"]) > 1
                else 0.0,
                "metric_mean": statistics.fmean(metrics) if metrics else None,
                "log_ratio": statistics.fmean(ratios) if ratios else -1.0,
                "wins": sum(r > 0 for r in ratios),
                "losses": sum(r < 0 for r in ratios),
            }
        valid = [r for r in rows.values() if r is not None]
        table[label] = {
            "tasks": rows,
            "score": statistics.fmean(r["log_ratio"] for r in valid) if valid else -1.0,
            "tasks_beating_adam": sum(r["log_ratio"] > 0 for r in valid),
        }
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("optimizers", nargs="+")
    parser.add_argument("--suite", default="holdout")
    parser.add_argument("--tasks", help="comma list instead of a suite")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--root", default="search_runs")
    parser.add_argument("-o", "--output")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import this module
    from nos.training.registry import suite

    tasks = args.tasks.split(",") if args.tasks else list(suite(args.suite))
    optimizers = [resolve(o, args.root) for o in args.optimizers]
    if REFERENCE not in [o[3] for o in optimizers]:
        optimizers.append((REFERENCE, "morgan2024", False, REFERENCE))
    started = time.monotonic()
    results = transfer(
        optimizers, tasks, trials=args.trials, seeds=args.seeds, workers=args.workers
    )
    table = compare(results, tasks)
    print(
        f"{len(tasks)} tasks, {args.trials} LR trials, {args.seeds} paired seeds, "
        f"{time.monotonic() - started:.0f} s"
    )
    for label, row in table.items():
        print(
            f"{label}: mean log ratio to Adam {row['score']:+.3f}, better than Adam on "
            f"{row['tasks_beating_adam']} of {len(tasks)} tasks"
        )
        for task, r in row["tasks"].items():
            if r is None:
                print(f"    {task:<14} diverged at every LR")
                continue
            metric = f"  metric {r['metric_mean']:.4f}" if r["metric_mean"] is not None else ""
            print(
                f"    {task:<14} test loss {r['test_mean']:.4f} ± {r['test_std']:.4f}{metric}"
                f"  lr {r['lr']:.2g}{' (edge)' if r['edge'] else ''}  vs Adam "
                f"{r['log_ratio']:+.3f} ({r['wins']}W/{r['losses']}L)"
            )
    if args.output:
        Path(args.output).write_text(json.dumps({"results": results, "table": table}, indent=1))
    return 0


if __name__ == "__main__":
    from nos.errors import NosError

    try:
        sys.exit(main())
    except NosError as exc:  # bad input: one line, as the nos command prints it
        sys.exit(f"transfer.py: error: {exc}")
