"""The statistics of a bench, as pure functions of its settings and records.

* :func:`summarize` - per task and optimizer: the trials and the chosen setting (and
  whether it sits at an edge of the trials), the test metric per seed, mean ± std, steps to
  the task's target, mean validation curve.
* Ranks per task by the mean test metric, among the optimizers that apply there except
  the matrix-class ones (Muon, a ceiling rather than a rival); average ranks on ties. A
  seed that diverged or failed counts as the worst test value any run reached on that task.
* :func:`paired_outcome` - win, loss or tie of one optimizer against another on one task:
  a two-sided paired t-test over the paired seeds at level ``alpha`` (the Wilcoxon
  signed-rank test cannot reach p < 0.0625 with 5 pairs, so it could never decide).
* :func:`profile` - the Dolan-Moré performance profile: for each optimizer the fraction of
  tasks on which its performance ratio r = cost / best cost is at most tau. Costs per kind
  of metric: error rate plus one test sample's worth (1 - accuracy + 1/n_test, so a perfect
  score does not make every other ratio infinite); mean squared error itself; perplexity
  exp(loss) for a language model's loss in nats (so r = exp(loss - best loss)). An
  optimizer with no finished seed, or one that does not apply, has r = infinity.
"""

from __future__ import annotations

import math
import statistics
import warnings
from typing import Any

import numpy as np

__all__ = ["cost", "paired_outcome", "profile", "ranks", "summarize", "wins_losses_ties"]


def _steps_to(curve: dict[str, Any], target: float | None, higher: bool) -> int | None:
    if target is None:
        return None
    for step, value in zip(curve.get("steps") or [], curve.get("val_metric") or [], strict=False):
        if (value >= target) if higher else (value <= target):
            return int(step)
    return None


def _test_value(record: dict[str, Any] | None) -> float | None:
    if not record or record.get("status") != "ok" or not record.get("curve"):
        return None
    value = record["curve"].get("test_metric")
    return float(value) if value is not None and math.isfinite(value) else None


def _mean_curve(curves: list[dict[str, Any]]) -> dict[str, list[float]]:
    full = [c for c in curves if c and not c.get("diverged") and c.get("steps")]
    if not full:
        return {"steps": [], "mean": []}
    length = min(len(c["steps"]) for c in full)
    grid = np.array([c["val_metric"][:length] for c in full], dtype=float)
    return {"steps": list(full[0]["steps"][:length]), "mean": grid.mean(axis=0).tolist()}


def summarize(settings: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per task and optimizer, what the report shows (see the module docstring)."""
    from nos.bench.plan import chosen_trial, plan, run_key, test_seeds, tune_metric
    from nos.bench.space import edges
    from nos.training.registry import get_task

    seeds = test_seeds(settings)
    tasks: dict[str, Any] = {}
    for cell in plan(settings):
        info = get_task(cell.task)
        kind = info.spec
        entry = tasks.setdefault(
            cell.task,
            {
                "kind": info.kind,
                "metric": kind.metric,
                "higher_is_better": kind.higher_is_better,
                "so_friendly": info.so_friendly,
                "target": info.budget.target,
                "budget": settings["budgets"][cell.task],
                "n_test": None,
                "optimizers": {},
            },
        )
        label = cell.spec.label
        row: dict[str, Any] = {"applies": cell.applies}
        entry["optimizers"][label] = row
        if not cell.applies:
            continue
        trials = []
        for i, point in enumerate(cell.points):
            rec = records.get(run_key(label, cell.task, "tune", i))
            trials.append(
                {
                    **point,
                    "val": tune_metric(rec),
                    "status": rec.get("status") if rec else None,
                }
            )
        row["trials"] = trials
        best = chosen_trial(settings, cell, records)
        row["chosen"] = dict(cell.points[best]) if best is not None else None
        row["edges"] = edges(list(cell.points), cell.points[best]) if best is not None else {}
        test_records = [records.get(run_key(label, cell.task, "test", s)) for s in seeds]
        values = [_test_value(r) for r in test_records]
        row["test"] = values
        finished = [v for v in values if v is not None]
        row["n_ok"] = len(finished)
        row["n_runs"] = sum(r is not None for r in test_records)
        row["mean"] = statistics.fmean(finished) if finished else None
        row["std"] = statistics.stdev(finished) if len(finished) > 1 else 0.0 if finished else None
        higher = kind.higher_is_better
        reached = [
            s
            for r in test_records
            if r and r.get("curve")
            for s in [_steps_to(r["curve"], info.budget.target, higher)]
            if s is not None
        ]
        row["steps_to_target"] = statistics.median(reached) if reached else None
        row["reached_target"] = len(reached)
        row["curve"] = _mean_curve([r["curve"] for r in test_records if r and r.get("curve")])
        row["notes"] = sorted({n for r in test_records if r for n in r.get("notes") or []})
        row["failures"] = sorted(
            {str(r.get("detail")) for r in test_records if r and r.get("status") != "ok"}
        )
        for r in test_records:
            if r and r.get("n_test"):
                entry["n_test"] = r["n_test"]
    for entry in tasks.values():
        entry["penalty"] = _worst(entry)
    return {"tasks": tasks}


def _worst(entry: dict[str, Any]) -> float | None:
    values = [
        v
        for row in entry["optimizers"].values()
        if row["applies"]
        for v in row["test"]
        if v is not None
    ]
    if not values:
        return None
    return min(values) if entry["higher_is_better"] else max(values)


def penalised(entry: dict[str, Any], label: str) -> list[float] | None:
    """The test values per seed of ``label`` on a task, a failed seed counted as the
    task's worst value; ``None`` where it does not apply or nothing finished anywhere."""
    row = entry["optimizers"].get(label)
    if not row or not row["applies"] or entry["penalty"] is None or not row["test"]:
        return None
    return [entry["penalty"] if v is None else v for v in row["test"]]


def cost(entry: dict[str, Any], value: float | None) -> float:
    """The cost (lower is better) of a test value of a task, for performance ratios."""
    if value is None or not math.isfinite(value):
        return math.inf
    metric = entry["metric"]
    if metric == "accuracy":
        return 1.0 - value + 1.0 / max(1, entry.get("n_test") or 1)
    if metric == "loss":
        return math.exp(min(value, 700.0))
    return max(value, 1e-300)


def ranks(summary: dict[str, Any], ranked: list[str]) -> dict[str, dict[str, float]]:
    """Per task, the rank (1 = best) of each of ``ranked`` that applies there, by the mean
    of its penalised test values; ties share the average rank."""
    from scipy.stats import rankdata

    out: dict[str, dict[str, float]] = {}
    for task, entry in summary["tasks"].items():
        labels, scores = [], []
        for label in ranked:
            values = penalised(entry, label)
            if values is None:
                continue
            mean = statistics.fmean(values)
            labels.append(label)
            scores.append(-mean if entry["higher_is_better"] else mean)
        if labels:
            out[task] = dict(zip(labels, (float(r) for r in rankdata(scores)), strict=True))
    return out


def mean_ranks(per_task: dict[str, dict[str, float]], labels: list[str]) -> dict[str, Any]:
    """Mean rank of each label over the tasks where it was ranked, with that count."""
    out = {}
    for label in labels:
        values = [r[label] for r in per_task.values() if label in r]
        out[label] = {
            "mean_rank": statistics.fmean(values) if values else None,
            "tasks": len(values),
        }
    return out


def paired_outcome(
    entry: dict[str, Any], a: str, b: str, alpha: float = 0.05
) -> dict[str, Any] | None:
    """``a`` against ``b`` on one task: ``win``, ``loss`` or ``tie`` by a two-sided paired
    t-test over the seeds at level ``alpha`` (with the mean difference and p-value);
    ``None`` where either does not apply."""
    from scipy.stats import ttest_rel

    va, vb = penalised(entry, a), penalised(entry, b)
    if va is None or vb is None:
        return None
    sign = 1.0 if entry["higher_is_better"] else -1.0
    diff = [sign * (x - y) for x, y in zip(va, vb, strict=True)]  # > 0: a is better
    mean = statistics.fmean(diff)
    if len(diff) < 2 or all(d == 0 for d in diff):
        return {"outcome": "tie", "diff": mean, "p": None}
    spread = statistics.pstdev(diff)
    if spread <= 1e-12 * max(1.0, abs(mean)):
        p = 0.0  # the same difference on every seed
    else:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            p = float(ttest_rel(va, vb).pvalue)
    if not math.isfinite(p) or p >= alpha:
        return {"outcome": "tie", "diff": mean, "p": p if math.isfinite(p) else None}
    return {"outcome": "win" if mean > 0 else "loss", "diff": mean, "p": p}


def wins_losses_ties(
    summary: dict[str, Any], rows: list[str], columns: list[str], alpha: float = 0.05
) -> dict[str, dict[str, dict[str, int]]]:
    """For every ``rows`` x ``columns`` pair (not itself), the counts of tasks won, lost
    and tied by the row, over the tasks where both apply."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for a in rows:
        out[a] = {}
        for b in columns:
            if a == b:
                continue
            counts = {"win": 0, "loss": 0, "tie": 0}
            for entry in summary["tasks"].values():
                result = paired_outcome(entry, a, b, alpha)
                if result is not None:
                    counts[result["outcome"]] += 1
            out[a][b] = counts
    return out


def ratios(summary: dict[str, Any], labels: list[str], tasks: list[str]) -> dict[str, list[float]]:
    """Performance ratios r (cost / the best cost on the task) of each label on ``tasks``."""
    out: dict[str, list[float]] = {label: [] for label in labels}
    for task in tasks:
        entry = summary["tasks"][task]
        costs = {}
        for label in labels:
            values = penalised(entry, label)
            row = entry["optimizers"].get(label) or {}
            if values is None or not row.get("n_ok"):
                costs[label] = math.inf
            else:
                costs[label] = cost(entry, statistics.fmean(values))
        best = min(costs.values(), default=math.inf)
        for label in labels:
            c = costs[label]
            out[label].append(c / best if math.isfinite(best) and best > 0 else math.inf)
    return out


def profile(
    summary: dict[str, Any], labels: list[str], tasks: list[str], taus: list[float]
) -> dict[str, list[float]]:
    """rho_s(tau): the fraction of ``tasks`` whose ratio for label s is at most tau."""
    rs = ratios(summary, labels, tasks)
    n = max(1, len(tasks))
    return {
        label: [sum(r <= tau * (1 + 1e-12) for r in rs[label]) / n for tau in taus]
        for label in labels
    }
