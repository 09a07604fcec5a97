"""`nos show NAME`: a run's hall of fame, Pareto front, counts, waste and throughput.

With the suite fitness it also shows the reference (LR-tuned Adam per task), the re-scored
hall of fame with mean ± std and wins/losses against the reference per task, and the
training steps spent per rung and on waste. Also writes ``progress.png`` (best and median
fitness vs evaluations and wall time) and ``pareto.png`` (tree size vs fitness) into the
run directory.
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


def _reference_lines(reference: dict) -> list[str]:
    lines = ["reference (LR-tuned Adam, final validation loss per seed):"]
    order = [t["task"] for t in reference.get("fitness", {}).get("tasks", ())]
    tasks = reference.get("tasks", {})
    for name in sorted(tasks, key=lambda n: order.index(n) if n in order else len(order)):
        info = tasks[name]
        losses = ", ".join(f"{float(v):.4g}" for _, v in sorted(info["loss"].items()))
        lines.append(f"  {name:<14} lr {float(info['lr']):<7.3g} loss {losses}")
    for seed, r0 in sorted(reference.get("rung0", {}).items()):
        lines.append(
            f"  rung 0 (seed {seed}): lr {float(r0['lr']):.3g}, loss {float(r0['loss']):.4g}"
        )
    return lines


def _rescore_lines(row: dict) -> list[str]:
    tasks = row.get("rescore_tasks") or {}
    if not tasks:
        return []
    parts = [
        f"{name} {t['mean']:+.3f}±{t['std']:.3f} ({t['wins']}W/{t['losses']}L)"
        for name, t in tasks.items()
    ]
    return ["        " + "; ".join(parts[i : i + 3]) for i in range(0, len(parts), 3)]


def _run_show(args: argparse.Namespace) -> int:
    from nos.search.report import hall_of_fame, pareto_front, run_stats, write_plots
    from nos.search.session import read_reference
    from nos.search.store import load_run

    run = load_run(args.name, args.root)
    for warning in run.warnings:
        print(f"nos: warning: {warning}", file=sys.stderr)
    workers = run.config.get("execution", {}).get("workers") or None
    stats = run_stats(run.records, workers)
    hof = hall_of_fame(run.records, args.top)
    front = pareto_front(run.records)
    reference = read_reference(run.path)
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
                    "reference": reference.to_dict() if reference else None,
                    "plots": [str(p) for p in plots],
                }
            )
        )
        return 0
    search = run.config["search"]
    if search.get("fitness") == "suite":
        tasks = [t["task"] for t in reference.fitness["tasks"]] if reference else []
        print(
            f"run {run.name} ({run.status}): grammar {search.get('grammar')}, suite fitness "
            f"on {', '.join(tasks) or search.get('task') or search.get('suite')} (LR scheme "
            f"{search.get('lr_scheme')}, hurdle {search.get('hurdle')}), seed {search.get('seed')}"
        )
        if reference:
            print("\n".join(_reference_lines(reference.to_dict())))
    else:
        print(
            f"run {run.name} ({run.status}): grammar {search.get('grammar')}, task "
            f"{search.get('task')}, preset {search.get('preset')}, seed {search.get('seed')}"
        )
    print(f"hall of fame (top {len(hof)}, unique by fingerprint):")
    for row in hof:
        again = ""
        if row["rescore"] is not None:
            spread = f" ± {row['rescore_std']:.4f}" if row.get("rescore_std") is not None else ""
            seeds = len(row.get("rescore_per_seed") or ())
            again = f"  rescore {row['rescore']:.4f}{spread} ({seeds} seeds)"
        print(
            f"  {row['rank']:>3}. {row['fitness']:.4f}{again}  size {row['size']:>3}  "
            f"{row['candidate']}"
        )
        for line in _rescore_lines(row):
            print(line)
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
    if stats["steps"]:
        per_rung = ", ".join(f"rung {i} {n:,}" for i, n in enumerate(stats["steps_per_rung"]))
        reached = ", ".join(f"rung {k} {v}" for k, v in stats["rung_reached"].items())
        print(f"training steps: {stats['steps']:,}" + (f" ({per_rung})" if per_rung else ""))
        if reached:
            stopped = ", ".join(f"rung {k} {v}" for k, v in stats["rung_failed"].items())
            print(f"evaluations reaching each rung: {reached}; stopped at: {stopped or 'none'}")
        print(
            f"wasted steps (failed, diverged or duplicate): {stats['steps_wasted']:,} of "
            f"{stats['steps']:,} = {_pct(stats['steps_wasted_rate'])}"
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
