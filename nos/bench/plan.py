"""The runs a bench's settings imply: its cells, their keys, and the choice among trials.

A *cell* is one optimizer on one task: whether the optimizer applies there (plane search
only on SO-friendly tasks) and the settings of its trials (:mod:`nos.bench.space`). Runs
are keyed ``LABEL|TASK|tune|TRIAL`` and ``LABEL|TASK|test|SEED``. Pure functions of the
settings and the records, shared by the driver and the statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nos.bench.space import choose, trial_points
from nos.bench.specs import PLANE_SEARCH, OptSpec

__all__ = ["TUNE_SEED", "Cell", "chosen_trial", "plan", "run_key", "test_seeds", "tune_metric"]

#: The seed of every tuning trial; the test seeds are 1 ... --seeds.
TUNE_SEED = 0


@dataclass(frozen=True)
class Cell:
    """One optimizer on one task: whether it applies, and its trials' settings."""

    spec: OptSpec
    task: str
    applies: bool
    points: tuple[dict[str, float | None], ...]


def plan(settings: dict[str, Any]) -> list[Cell]:
    """The cells of a bench, task by task, in the order of the optimizers."""
    from nos.training.registry import get_task

    specs = [OptSpec.from_dict(d) for d in settings["optimizers"]]
    lr_range = tuple(settings["lr_range"]) if settings.get("lr_range") else None
    cells = []
    for task in settings["tasks"]:
        info = get_task(task)
        for spec in specs:
            applies = spec.kind != PLANE_SEARCH or info.so_friendly
            points = trial_points(spec, settings["trials"], settings["tune"], lr_range)
            cells.append(Cell(spec, task, applies, tuple(points)))
    return cells


def run_key(label: str, task: str, phase: str, index: int) -> str:
    return f"{label}|{task}|{phase}|{index}"


def test_seeds(settings: dict[str, Any]) -> list[int]:
    return list(range(1, settings["seeds"] + 1))


def tune_metric(record: dict[str, Any] | None) -> float | None:
    """The validation metric at the end of a finished trial (``None``: diverged/failed)."""
    if not record or record.get("status") != "ok" or not record.get("curve"):
        return None
    values = record["curve"].get("val_metric") or []
    return float(values[-1]) if values and math.isfinite(values[-1]) else None


def chosen_trial(
    settings: dict[str, Any], cell: Cell, records: dict[str, dict[str, Any]]
) -> int | None:
    """The index of the cell's best trial, or ``None`` when none finished."""
    from nos.training.registry import get_task

    higher = get_task(cell.task).spec.higher_is_better
    scores = [
        tune_metric(records.get(run_key(cell.spec.label, cell.task, "tune", i)))
        for i in range(len(cell.points))
    ]
    return choose(scores, higher)
