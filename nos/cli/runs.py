"""`nos runs`: list the search runs (name, status, evaluations, best fitness, age)."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="list the search runs")
    p.add_argument("--root", default="search_runs", help="folder of the runs (search_runs)")
    p.set_defaults(run=_run_runs)


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def _run_runs(args: argparse.Namespace) -> int:
    from nos.search.report import hall_of_fame
    from nos.search.store import list_runs

    rows = []
    now = time.time()
    for run in list_runs(args.root):
        hof = hall_of_fame(run.records, 1)
        best = f"{hof[0]['fitness']:.4f}" if hof else "-"
        age = _age(now - run.created) if run.created else "?"
        rows.append((run.name, run.status, str(len(run.evals)), best, age))
    if not rows:
        print(f"no runs in {args.root}")
        return 0
    head = ("name", "status", "evaluations", "best", "age")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        print(
            "  ".join(
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return 0
