"""`nos bench OPT...`: optimizers against tuned baselines on tasks the search never saw.

Every optimizer gets the same number of tuning trials per task (learning rate, or learning
rate and weight decay), chosen by validation at one seed, then ``--seeds`` paired seeds at
the chosen setting scored on the test split; the report (``bench.md``, ``bench.json``,
``profile.png``, ``curves.png``) goes to ``-o DIR``. See :mod:`nos.bench`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from nos.cli._args import positive_int
from nos.errors import NosError

DEFAULTS: dict[str, Any] = {
    "suite": "small",
    "tasks": None,
    "trials": 8,
    "seeds": 5,
    "tune": "lr",
    "steps": None,
    "lr_range": None,
    "device": "cpu",
    "data_dir": None,
}

OPT_HELP = (
    "a built-in baseline (adamw, nadamw, adam, rmsprop, sgd-nesterov, lion, cautious-adamw, "
    "schedulefree-adamw, muon), plane-search, 'baselines' (all of these), zoo:NAME, "
    "candidate text, 'RUN --rank K' (the K-th best of a search run), or file:PATH.py[:CLASS] "
    "(an optimizer class from a Python file, e.g. written by nos export; loading the file "
    "runs it, so name only files you trust as your own code)"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark optimizers against tuned baselines on unseen tasks",
        description="Tune every optimizer with the same budget on every task of a suite, "
        "score the chosen setting over paired seeds on held-out test data, and report "
        "tables, ranks, paired win/loss/tie counts and a performance profile.",
    )
    p.add_argument("optimizers", nargs="*", metavar="OPT", help=OPT_HELP)
    p.add_argument("--suite", default=None, help="task suite of the registry (default small)")
    p.add_argument(
        "--tasks", default=None, metavar="A,B", help="these tasks instead of the suite's"
    )
    p.add_argument(
        "--trials", type=positive_int, default=None, help="tuning trials per task (default 8)"
    )
    p.add_argument(
        "--seeds", type=positive_int, default=None, help="test seeds per task (default 5)"
    )
    p.add_argument(
        "--tune",
        choices=("lr", "lr+wd"),
        default=None,
        help="tune the learning rate (log grid), or it and the weight decay (Halton points)",
    )
    p.add_argument("-o", "--out", default=None, help="output directory (default nos-bench)")
    p.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the bench in DIR; flags given must match its settings",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes (default: the number of cores; 1 runs in this process)",
    )
    p.add_argument("--grammar", default="morgan2024", help="grammar of candidate text")
    p.add_argument("--root", default="search_runs", help="folder of the runs ('RUN --rank K')")
    p.add_argument(
        "--rank",
        type=positive_int,
        default=None,
        help="with the last OPT a run name: bench that run's K-th best candidate",
    )
    p.add_argument("--data-dir", default=None, help="data directory (default $NOS_DATA)")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="train every task N steps instead of its budget (quick checks)",
    )
    p.add_argument(
        "--lr-range",
        default=None,
        metavar="LO:HI",
        help="one learning-rate window for every optimizer (default: per optimizer)",
    )
    p.set_defaults(run=_run_bench)


def _lr_range(text: str | None) -> list[float] | None:
    if text is None:
        return None
    lo_text, sep, hi_text = text.partition(":")
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        lo = hi = -1.0
    if not sep or not (0 < lo <= hi < float("inf")):
        raise NosError(f"--lr-range expects LO:HI with 0 < LO <= HI, got {text!r}")
    return [lo, hi]


def _tasks(suite: str | None, tasks: str | None) -> list[str]:
    from nos.training.registry import get_task
    from nos.training.registry import suite as suite_tasks

    if tasks:
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        for name in names:
            get_task(name)
        return names
    return list(suite_tasks(suite or "small"))


def _requested(args: argparse.Namespace) -> dict[str, Any]:
    """The settings flags the user gave (None: not given)."""
    return {
        "suite": args.suite,
        "tasks": args.tasks,
        "trials": args.trials,
        "seeds": args.seeds,
        "tune": args.tune,
        "steps": args.steps,
        "lr_range": _lr_range(args.lr_range),
        "device": args.device,
        "data_dir": args.data_dir,
    }


def _settings(args: argparse.Namespace, values: dict[str, Any]) -> dict[str, Any]:
    from nos.bench.driver import make_settings
    from nos.bench.specs import parse_specs
    from nos.training.device import resolve_device

    texts = list(args.optimizers)
    if args.rank is not None:
        if not texts:
            raise NosError("--rank needs a run name as the last OPT")
        texts[-1] = f"{texts[-1]} --rank {args.rank}"
    notes: list[str] = []
    specs = parse_specs(texts, grammar=args.grammar, root=args.root, notes=notes)
    for note in notes:
        print(f"nos: warning: {note}", file=sys.stderr)
    return make_settings(
        specs,
        _tasks(values["suite"], values["tasks"]),
        suite=None if values["tasks"] else values["suite"] or "small",
        trials=values["trials"],
        seeds=values["seeds"],
        tune=values["tune"],
        steps=values["steps"],
        lr_range=tuple(values["lr_range"]) if values["lr_range"] else None,
        device=str(resolve_device(values["device"])),
        data_dir=values["data_dir"],
    )


def _run_bench(args: argparse.Namespace) -> int:
    from nos.bench.driver import compare_settings, run_bench
    from nos.bench.store import BenchStore
    from nos.training.tasks import worker_init

    worker_init(threads=1)  # the bench's networks are small: one thread per process
    requested = _requested(args)
    if args.resume is not None:
        if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
            raise NosError("give either -o DIR or --resume DIR, not two different directories")
        out = args.resume
        stored = BenchStore.read_settings(out)
        if args.optimizers:
            values = {k: v if v is not None else _stored(stored, k) for k, v in requested.items()}
            settings = _settings(args, values)
            differ = compare_settings(settings, stored)
        else:
            settings = stored
            differ = [
                k
                for k, v in requested.items()
                if v is not None and k != "tasks" and compare_settings({k: v}, {k: stored.get(k)})
            ]
            if requested["tasks"] is not None and _tasks(None, requested["tasks"]) != stored.get(
                "tasks"
            ):
                differ.append("tasks")
        if differ:
            raise NosError(
                f"the settings differ from those of the bench in {out} ({', '.join(differ)}); "
                "resume with the same settings or bench into a new directory"
            )
    else:
        if not args.optimizers:
            raise NosError("name at least one OPT to bench (e.g. zoo:opt10 baselines)")
        values = {k: v if v is not None else DEFAULTS[k] for k, v in requested.items()}
        settings = _settings(args, values)
        out = args.out or "nos-bench"
    workers = args.workers or os.cpu_count() or 1
    report = run_bench(settings, out, resume=args.resume is not None, workers=workers)
    print(_summary_text(report))
    print(f"wrote {out}/bench.md, bench.json, profile.png and curves.png")
    return 0


def _stored(stored: dict[str, Any], key: str) -> Any:
    if key == "tasks":
        return None if stored.get("suite") else ",".join(stored.get("tasks") or [])
    return stored.get(key)


def _summary_text(report: dict[str, Any]) -> str:
    ranks = report["mean_ranks"]
    order = sorted(
        (label for label in ranks if ranks[label]["mean_rank"] is not None),
        key=lambda label: ranks[label]["mean_rank"],
    )
    lines = [f"mean rank over {len(report['settings']['tasks'])} task(s):"]
    lines += [
        f"  {ranks[label]['mean_rank']:5.2f}  {label} ({ranks[label]['tasks']} tasks)"
        for label in order
    ]
    lines.append(f"wall time {report['wall_s'] / 60:.1f} min, {report['runs']} runs")
    return "\n".join(lines)
