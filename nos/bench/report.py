"""The bench's report: ``bench.json`` (everything) and ``bench.md`` (the tables), plus plots.

``bench.md`` holds, in order: the settings; a summary table (mean test metric per task and
optimizer, the mean rank last; Muon in a column of its own, as the matrix-class ceiling;
``n/a`` where plane search does not apply); a table per task (mean ± std of the test metric,
steps to the task's target, the tuned hyperparameters with their grid edges, the rank); the
win/loss/tie counts against each baseline; and the plots (``profile.png``, ``curves.png``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nos.bench import stats
from nos.bench.specs import OptSpec

__all__ = ["ALPHA", "build_report", "render_markdown", "write_report"]

#: Level of the paired t-test of the win/loss/tie table.
ALPHA = 0.05


def taus_for(ratios: dict[str, list[float]], points: int = 200) -> list[float]:
    """A log grid of tau from 1 past the largest finite performance ratio (at least 2)."""
    finite = [r for rs in ratios.values() for r in rs if math.isfinite(r)]
    top = max(2.0, 1.05 * max(finite, default=1.0))
    return [float(top ** (i / (points - 1))) for i in range(points)]


def _ordered(specs: list[OptSpec]) -> tuple[list[str], list[str]]:
    """(ranked labels, matrix-class labels), in the order given."""
    ranked = [s.label for s in specs if not s.matrix_class]
    matrix = [s.label for s in specs if s.matrix_class]
    return ranked, matrix


def build_report(
    settings: dict[str, Any],
    records: dict[str, dict[str, Any]],
    sessions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything ``bench.json`` holds, from the settings and the records alone."""
    specs = [OptSpec.from_dict(d) for d in settings["optimizers"]]
    summary = stats.summarize(settings, records)
    ranked, matrix = _ordered(specs)
    per_task = stats.ranks(summary, ranked)
    mean = stats.mean_ranks(per_task, ranked)
    baselines = [s.label for s in specs if s.baseline]
    others = [s.label for s in specs if not s.baseline] or [s.label for s in specs]
    table = stats.wins_losses_ties(summary, others, baselines, ALPHA)
    tasks = list(settings["tasks"])
    so_tasks = [t for t in tasks if summary["tasks"][t]["so_friendly"]]
    labels = [s.label for s in specs]
    ratios = stats.ratios(summary, labels, tasks)
    taus = taus_for(ratios)
    profiles = {"all": stats.profile(summary, labels, tasks, taus)}
    if so_tasks and any(s.kind == "plane-search" for s in specs):
        profiles["so_friendly"] = stats.profile(summary, labels, so_tasks, taus)
    walls = [float(s.get("wall_s") or 0.0) for s in sessions or []]
    busy = sum(float(r.get("wall_s") or 0.0) for r in records.values())
    return {
        "settings": settings,
        "optimizers": [s.to_dict() for s in specs],
        "ranked": ranked,
        "matrix_class": matrix,
        "summary": summary,
        "ranks": per_task,
        "mean_ranks": mean,
        "win_loss_tie": {"alpha": ALPHA, "test": "paired t-test, two-sided", "table": table},
        "profile": {
            "taus": taus,
            "curves": profiles,
            "tasks": tasks,
            "so_friendly_tasks": so_tasks,
            "ratios": ratios,
        },
        "runs": len(records),
        "wall_s": sum(walls),
        "sessions": len(walls),
        "busy_s": busy,
    }


# ------------------------------------------------------------------------ markdown


def _num(value: float | None, metric: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4f}" if metric == "accuracy" else f"{value:.4g}"


def _hyper(value: float | None, edge: str | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}"
    return f"{text} ({edge} edge)" if edge else text


def _arrow(entry: dict[str, Any]) -> str:
    return "↑" if entry["higher_is_better"] else "↓"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def _cell_value(row: dict[str, Any], metric: str) -> str:
    if not row["applies"]:
        return "n/a"
    if row.get("mean") is None:
        return "failed" if row.get("n_runs") else "-"
    text = f"{_num(row['mean'], metric)} ± {_num(row['std'], metric)}"
    failed = row["n_runs"] - row["n_ok"]
    return text + (f" ({failed} failed)" if failed else "")


def render_markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    summary = report["summary"]["tasks"]
    specs = [OptSpec.from_dict(d) for d in report["optimizers"]]
    ranked, matrix = report["ranked"], report["matrix_class"]
    columns = ranked + matrix
    lines = ["# nos bench", ""]
    wall = report["wall_s"]
    lines += [
        f"Suite `{settings.get('suite') or 'custom'}`: {len(settings['tasks'])} tasks; "
        f"{settings['trials']} tuning trials ({settings['tune']}) at seed "
        f"{settings['tune_seed']}, chosen by the validation metric at the end of the budget; "
        f"{settings['seeds']} test seeds (1-{settings['seeds']}) at the chosen setting, "
        f"scored on the held-out test split. {report['runs']} runs, wall time "
        f"{wall / 60:.1f} min over {report['sessions']} session(s), "
        f"{report['busy_s'] / 60:.1f} min of run time.",
        "",
    ]
    # ---- summary
    lines += ["## Summary: mean test metric", ""]
    header = ["task (metric)", *ranked]
    if matrix:
        header += [f"{m} (matrix-class ceiling)" for m in matrix]
    rows = []
    for task, entry in summary.items():
        name = f"{task} ({entry['metric']} {_arrow(entry)})"
        cells = [name]
        for label in columns:
            row = entry["optimizers"][label]
            cells.append("n/a" if not row["applies"] else _num(row.get("mean"), entry["metric"]))
        rows.append(cells)
    mean_row = ["mean rank (tasks)"]
    for label in ranked:
        m = report["mean_ranks"][label]
        mean_row.append("-" if m["mean_rank"] is None else f"{m['mean_rank']:.2f} ({m['tasks']})")
    mean_row += ["not ranked"] * len(matrix)
    rows.append(mean_row)
    lines += _table(header, rows)
    lines += [
        "",
        "Ranks are among the optimizers that apply on a task (plane search only on the "
        "SO-friendly ones), by the mean test metric; a failed seed counts as the task's "
        "worst test value. Muon is not ranked: it orthogonalises whole weight matrices, "
        "which the elementwise search grammar cannot express.",
        "",
    ]
    # ---- per task
    for task, entry in summary.items():
        budget = entry["budget"]
        batch = "full batch" if not budget["batch_size"] else f"batch {budget['batch_size']}"
        so = ", SO-friendly" if entry["so_friendly"] else ""
        lines += [
            f"## {task}",
            "",
            f"{entry['kind']}, test {entry['metric']} {_arrow(entry)}; {budget['steps']} steps, "
            f"{batch}, warmup {budget['warmup']}{so}.",
            "",
        ]
        target = entry["target"]
        header = [
            "optimizer",
            f"test {entry['metric']} (mean ± std)",
            f"steps to {target:g}" if target is not None else "steps to target",
            "lr",
            "weight decay",
            "rank",
        ]
        rows = []
        ranks = report["ranks"].get(task, {})
        for spec in sorted(specs, key=lambda s: s.matrix_class):
            row = entry["optimizers"][spec.label]
            name = spec.label + (" (matrix-class)" if spec.matrix_class else "")
            if not row["applies"]:
                rows.append([name, "n/a (not SO-friendly)", "-", "-", "-", "-"])
                continue
            chosen = row.get("chosen") or {}
            edge = row.get("edges") or {}
            wd = chosen.get("wd")
            wd_text = (
                _hyper(wd, edge.get("wd"))
                if wd is not None
                else (f"{spec.default_wd:g} (default)" if spec.kind == "baseline" else "-")
            )
            steps = (
                "-"
                if row.get("steps_to_target") is None
                else f"{row['steps_to_target']:g} ({row['reached_target']}/{row['n_runs']})"
            )
            rank = ranks.get(spec.label)
            rows.append(
                [
                    name,
                    _cell_value(row, entry["metric"]),
                    steps,
                    "none" if not spec.tunes_lr else _hyper(chosen.get("lr"), edge.get("lr")),
                    wd_text,
                    "-" if rank is None else f"{rank:g}",
                ]
            )
        lines += _table(header, rows)
        notes = sorted(
            {
                f"{label}: {note}"
                for label, row in entry["optimizers"].items()
                for note in (row.get("notes") or []) + (row.get("failures") or [])
            }
        )
        lines += [""] + [f"* {n}" for n in notes] + ([""] if notes else [])
    # ---- win/loss/tie
    wlt = report["win_loss_tie"]
    if wlt["table"] and any(wlt["table"].values()):
        baselines = sorted({b for row in wlt["table"].values() for b in row}, key=columns.index)
        lines += [
            "## Wins / losses / ties against each baseline",
            "",
            f"Per task, a {wlt['test']} over the paired seeds at alpha = {wlt['alpha']:g}: a "
            "win or loss needs p < alpha, anything else is a tie. Counted over the tasks "
            "where both apply.",
            "",
        ]
        rows = []
        for a, row in wlt["table"].items():
            cells = [a]
            for b in baselines:
                c = row.get(b)
                cells.append("-" if c is None else f"{c['win']}/{c['loss']}/{c['tie']}")
            rows.append(cells)
        lines += [*_table(["optimizer (W/L/T)", *(f"vs {b}" for b in baselines)], rows), ""]
    # ---- plots and legend
    lines += [
        "## Performance profile and learning curves",
        "",
        "![performance profile](profile.png)",
        "",
        "Dolan-Moré profile: the fraction of tasks on which an optimizer's cost is within a "
        "factor tau of the best optimizer's. Costs: 1 - accuracy + 1/n_test "
        "(classification), the MSE (regression), the perplexity exp(loss) (language "
        "models), of the mean test metric. Optimizers that do not apply on a task count "
        "as never within tau there.",
        "",
        "![learning curves](curves.png)",
        "",
        "Mean validation metric of the test seeds against steps.",
        "",
        "## Optimizers",
        "",
    ]
    lines += [f"* `{s.label}`: {s.description or s.source}" for s in specs]
    lines += [
        "",
        "VeLO and LHOPT are not included: neither can run offline (VeLO's weights and "
        "LHOPT's policy are not available).",
        "",
    ]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_report(
    settings: dict[str, Any],
    records: dict[str, dict[str, Any]],
    out: Path,
    *,
    sessions: list[dict[str, Any]] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Write ``bench.json``, ``bench.md`` and (with ``plots``) the PNGs into ``out``."""
    from nos.errors import NosError

    report = build_report(settings, records, sessions)
    try:
        (out / "bench.json").write_text(
            json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n", encoding="utf-8"
        )
        (out / "bench.md").write_text(render_markdown(report), encoding="utf-8")
        if plots:
            from nos.bench.plots import write_plots

            write_plots(report, out)
    except OSError as exc:
        raise NosError(f"cannot write the report into {out}: {exc.strerror or exc}") from None
    return report
