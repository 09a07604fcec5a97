"""Summaries of a run's records: hall of fame, Pareto front, waste, throughput, progress.

Everything here reads the plain records of ``evaluations.jsonl`` (:mod:`nos.search.store`) and is
a pure function of them, so the same numbers come out of a live run, a resumed one and a
copy on another machine. Only :func:`write_plots` imports matplotlib (Agg backend).
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from nos.errors import NosError
from nos.search.store import DEFAULT_ROOT, load_run
from nos.status import Status

__all__ = [
    "candidate_at_rank",
    "hall_of_fame",
    "pareto_front",
    "progress_series",
    "ranked_entry",
    "run_stats",
    "task_summary",
    "write_plots",
]

Record = dict[str, Any]


def _evals(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.get("type") == "eval"]


def _ok(record: Record) -> bool:
    return record.get("status") == Status.OK and isinstance(record.get("fitness"), int | float)


def _ranked_stage(evals: list[Record]) -> str:
    """The stage that ranks candidates: the full fitness, or the cheap one before any."""
    return "full" if any(r.get("stage") == "full" and _ok(r) for r in evals) else "init"


def _by_fingerprint(evals: list[Record], stage: str) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = collections.defaultdict(list)
    for r in evals:
        if r.get("stage") == stage and _ok(r):
            groups[str(r.get("fingerprint") or r.get("key"))].append(r)
    return groups


def hall_of_fame(records: Iterable[Record], k: int = 10) -> list[Record]:
    """The top ``k`` candidates, one per fingerprint.

    A fingerprint's fitness is the mean over its evaluations (one each with global dedup);
    its representative is its smallest member (then by key). Candidates re-scored with
    more seeds rank first, by the re-scored mean; then the rest by search fitness. Ties
    go to the smaller tree, then by key, so the order is a function of the records'
    content, not their order.
    """
    evals = _evals(records)
    stage = _ranked_stage(evals)
    rescored: dict[str, Record] = {}
    for r in evals:
        if r.get("stage") == "rescore" and _ok(r):
            rescored[str(r.get("fingerprint") or r.get("key"))] = r
    rows = []
    for fp, group in _by_fingerprint(evals, stage).items():
        rep = min(group, key=lambda r: (int(r.get("size") or 0), str(r.get("key"))))
        fitness = statistics.fmean(float(r["fitness"]) for r in group)
        again = rescored.get(fp)
        per_seed = again.get("fitness_per_seed") if again else None
        rows.append(
            {
                "candidate": rep["candidate"],
                "key": rep.get("key"),
                "fingerprint": fp,
                "size": rep.get("size"),
                "fitness": round(fitness, 6),
                "stage": stage,
                "flip": bool(rep.get("flip")),
                "evaluations": len(group),
                "origin": rep.get("origin"),
                "rescore": again.get("fitness") if again else None,
                "rescore_per_seed": per_seed,
                "rescore_std": statistics.pstdev(per_seed) if per_seed else None,
                "rescore_tasks": task_summary(again) if again else None,
                "lr_multiple": (rep.get("suite") or {}).get("multiple"),
            }
        )
    rows.sort(
        key=lambda row: (
            row["rescore"] is None,
            -(row["rescore"] or row["fitness"]),
            -row["fitness"],
            int(row["size"] or 0),
            str(row["key"]),
        )
    )
    for rank, row in enumerate(rows[:k], 1):
        row["rank"] = rank
    return rows[:k]


def task_summary(record: Record) -> dict[str, dict[str, float | int]] | None:
    """Per task of a suite-fitness record: mean and std of the score over seeds, and the
    seeds won and lost against the reference (score above or below 0)."""
    tasks = (record.get("suite") or {}).get("tasks")
    if not isinstance(tasks, dict):
        return None
    out: dict[str, dict[str, float | int]] = {}
    for name, info in tasks.items():
        scores = [float(x) for x in info.get("score") or ()]
        if not scores:
            continue
        out[name] = {
            "mean": statistics.fmean(scores),
            "std": statistics.pstdev(scores),
            "wins": sum(x > 0 for x in scores),
            "losses": sum(x < 0 for x in scores),
        }
    return out


def pareto_front(records: Iterable[Record]) -> list[Record]:
    """Candidates not beaten on both tree size (smaller) and fitness (higher)."""
    rows = hall_of_fame(records, k=10**9)
    rows.sort(key=lambda r: (int(r["size"] or 0), -r["fitness"], str(r["key"])))
    front, best = [], float("-inf")
    for row in rows:
        if row["fitness"] > best:
            front.append(row)
            best = row["fitness"]
    return front


def run_stats(records: Sequence[Record], workers: int | None = None) -> dict[str, Any]:
    """Counts by status and rejection reason, the wasted-evaluation rate and throughput.

    Wasted = trained evaluations that repeat an identity already trained in the same stage
    (by canonical key or fingerprint), diverged, or failed a threshold, ÷ all trained.
    """
    evals = _evals(records)
    status = collections.Counter(str(r.get("status")) for r in evals)
    stages = collections.Counter(str(r.get("stage")) for r in evals)
    rejections: collections.Counter[str] = collections.Counter()
    for r in records:
        if r.get("type") == "rejections":
            rejections.update({str(k): int(v) for k, v in (r.get("counts") or {}).items()})
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    for r in evals:
        ids = {
            (str(r.get("stage")), "k" + str(r.get("key"))),
            (str(r.get("stage")), "f" + str(r.get("fingerprint"))),
        }
        if ids & seen:
            duplicates += 1
        seen |= ids
    failed = status["diverged"] + status["failed_threshold"]
    steps = _step_stats(evals)
    elapsed = max((float(r.get("elapsed_s") or 0.0) for r in evals), default=0.0)
    busy = sum(float(r.get("wall_s") or 0.0) for r in evals)
    out: dict[str, Any] = {
        "evaluations": len(evals),
        "by_status": dict(status.most_common()),
        "by_stage": dict(stages.most_common()),
        "rejections": dict(rejections.most_common()),
        "rejected": sum(rejections.values()),
        "duplicates": duplicates,
        "wasted": duplicates + failed,
        "wasted_rate": (duplicates + failed) / len(evals) if evals else 0.0,
        "elapsed_s": elapsed,
        "busy_s": busy,
        "per_hour": len(evals) / elapsed * 3600 if elapsed > 0 else None,
        "workers": sorted({str(r.get("worker")) for r in evals}),
        **steps,
    }
    if workers and elapsed > 0:
        out["utilisation"] = busy / (elapsed * workers)
    return out


_ENDS_FAILED = {"diverged", "failed_threshold", "error", "timeout"}


def _step_stats(evals: list[Record]) -> dict[str, Any]:
    """Training steps: in all, by status, on waste (evaluations that ended failed,
    diverged or as a duplicate of an identity already trained in the same stage), per
    rung of the suite fitness, and how many evaluations reached each rung."""
    total = 0
    wasted = 0
    by_status: collections.Counter[str] = collections.Counter()
    per_rung: list[int] = []
    reached: collections.Counter[int] = collections.Counter()
    stopped: collections.Counter[int] = collections.Counter()
    seen: set[tuple[str, str]] = set()
    for r in evals:
        n = int(r.get("steps") or 0)
        total += n
        by_status[str(r.get("status"))] += n
        ids = {
            (str(r.get("stage")), "k" + str(r.get("key"))),
            (str(r.get("stage")), "f" + str(r.get("fingerprint"))),
        }
        if ids & seen or r.get("status") in _ENDS_FAILED:
            wasted += n
        seen |= ids
        details = r.get("suite")
        if isinstance(details, dict):
            for rung, k in enumerate(details.get("steps_per_rung") or ()):
                per_rung += [0] * (rung + 1 - len(per_rung))
                per_rung[rung] += int(k)
            top = int(details.get("rung", 0))
            for rung in range(top + 1):
                reached[rung] += 1
            if r.get("status") != Status.OK:
                stopped[top] += 1
    return {
        "steps": total,
        "steps_by_status": dict(by_status.most_common()),
        "steps_wasted": wasted,
        "steps_wasted_rate": wasted / total if total else 0.0,
        "steps_per_rung": per_rung,
        "rung_reached": {str(k): v for k, v in sorted(reached.items())},
        "rung_failed": {str(k): v for k, v in sorted(stopped.items())},
    }


def progress_series(records: Iterable[Record]) -> dict[str, list[float]]:
    """Per trained evaluation in record order: count, elapsed time, best and median so far
    of the ranking stage's fitness (points where no fitness is known yet are skipped)."""
    evals = _evals(records)
    stage = _ranked_stage(evals)
    out: dict[str, list[float]] = {"n": [], "elapsed_s": [], "best": [], "median": []}
    scores: list[float] = []
    for n, r in enumerate(evals, 1):
        if r.get("stage") == stage and _ok(r):
            scores.append(float(r["fitness"]))
        if not scores:
            continue
        out["n"].append(n)
        out["elapsed_s"].append(float(r.get("elapsed_s") or 0.0))
        out["best"].append(max(scores))
        out["median"].append(statistics.median(scores))
    return out


def write_plots(records: Sequence[Record], out_dir: Path, title: str = "") -> list[Path]:
    """Write ``progress.png`` and ``pareto.png`` into ``out_dir``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = progress_series(records)
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label in (
        (axes[0], series["n"], "evaluations"),
        (axes[1], [t / 60 for t in series["elapsed_s"]], "wall time (min)"),
    ):
        ax.plot(x, series["best"], label="best so far")
        ax.plot(x, series["median"], label="median so far")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fitness")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"{title} progress".strip())
    fig.tight_layout()
    paths.append(out_dir / "progress.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    everyone = hall_of_fame(records, k=10**9)
    front = pareto_front(records)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(
        [r["size"] for r in everyone],
        [r["fitness"] for r in everyone],
        s=10,
        alpha=0.4,
        label="candidates",
    )
    ax.step(
        [r["size"] for r in front],
        [r["fitness"] for r in front],
        where="post",
        color="C3",
        marker="o",
        label="Pareto front",
    )
    ax.set_xlabel("tree size (nodes)")
    ax.set_ylabel("fitness")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(f"{title} size vs fitness".strip())
    fig.tight_layout()
    paths.append(out_dir / "pareto.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


# ------------------------------------------------------------------------------ ranks


def candidate_at_rank(run: str | Path, rank: int = 1, root: str | Path = DEFAULT_ROOT) -> Any:
    """The ``rank``-th best candidate of a run (1 = the winner), as a Candidate.

    This is the hook of ``nos export RUN --rank K``: rank as in ``nos show``'s hall of fame.
    """
    return ranked_entry(run, rank, root)[0]


def ranked_entry(
    run: str | Path, rank: int = 1, root: str | Path = DEFAULT_ROOT
) -> tuple[Any, dict[str, Any]]:
    """The ``rank``-th best candidate of a run and its hall-of-fame row (fitness, flip, ...)."""
    from nos.zoo.resolve import parse

    data = load_run(run, root)
    if rank < 1:
        raise NosError(f"rank must be at least 1, got {rank}")
    hof = hall_of_fame(data.records, rank)
    if len(hof) < rank:
        raise NosError(f"run {data.name} has {len(hof)} ranked candidate(s), no rank {rank}")
    row = hof[rank - 1]
    return parse(row["candidate"], data.grammar()), row
