"""`nos show NAME`: a run's hall of fame, Pareto front, counts, waste and throughput.

Also writes ``progress.png`` (best and median fitness vs evaluations and wall time) and
``pareto.png`` (tree size vs fitness) into the run directory.
"""

from __future__ import annotations

import argparse
import json
import sys

from nos.cli._args import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="summarise a search run")
    p.add_argument("name", help="run name (under --root) or run directory")
    p.add_argument("--root", default="search_runs", help="folder of the runs (search_runs)")
    p.add_argument("--top", type=positive_int, default=10, help="hall-of-fame rows (10)")
    p.add_argument("--no-plots", action="store_true", help="do not write the PNG files")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=_run_show)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _run_show(args: argparse.Namespace) -> int:
    from nos.search.report import hall_of_fame, pareto_front, run_stats, write_plots
    from nos.search.store import load_run

    run = load_run(args.name, args.root)
    for warning in run.warnings:
        print(f"nos: warning: {warning}", file=sys.stderr)
    workers = run.config.get("execution", {}).get("workers") or None
    stats = run_stats(run.records, workers)
    hof = hall_of_fame(run.records, args.top)
    front = pareto_front(run.records)
    plots = (
        []
        if args.no_plots or not stats["evaluations"]
        else write_plots(run.records, run.path, run.name)
    )
    if args.json:
        print(
            json.dumps(
                {
                    "name": run.name,
                    "status": run.status,
                    "stats": stats,
                    "hall_of_fame": hof,
                    "pareto": front,
                    "plots": [str(p) for p in plots],
                }
            )
        )
        return 0
    search = run.config["search"]
    print(
        f"run {run.name} ({run.status}): grammar {search.get('grammar')}, task "
        f"{search.get('task')}, preset {search.get('preset')}, seed {search.get('seed')}"
    )
    print(f"hall of fame (top {len(hof)}, unique by fingerprint):")
    for row in hof:
        again = f"  rescore {row['rescore']:.4f}" if row["rescore"] is not None else ""
        print(
            f"  {row['rank']:>3}. {row['fitness']:.4f}{again}  size {row['size']:>3}  "
            f"{row['candidate']}"
        )
    print("Pareto front (size -> fitness):")
    for row in front:
        print(f"  {row['size']:>4}  {row['fitness']:.4f}  {row['candidate']}")
    status = ", ".join(f"{k} {v}" for k, v in stats["by_status"].items()) or "none"
    print(f"evaluations: {stats['evaluations']} ({status})")
    reasons = ", ".join(f"{k} {v}" for k, v in stats["rejections"].items()) or "none"
    print(f"integrity-check rejections: {stats['rejected']} ({reasons})")
    print(
        f"wasted evaluations: {stats['wasted']} of {stats['evaluations']} = "
        f"{_pct(stats['wasted_rate'])} (duplicates {stats['duplicates']}, diverged "
        f"{stats['by_status'].get('diverged', 0)}, failed a threshold "
        f"{stats['by_status'].get('failed_threshold', 0)})"
    )
    if stats["per_hour"] is not None:
        util = (
            f", worker utilisation {_pct(stats['utilisation'])}" if "utilisation" in stats else ""
        )
        print(
            f"throughput: {stats['per_hour']:.0f} evaluations/hour over "
            f"{stats['elapsed_s']:.1f}s{util}"
        )
    for path in plots:
        print(f"wrote {path}")
    return 0
