"""The suite fitness: a continuous score relative to LR-tuned Adam over a suite of tasks.

This module is plain data and arithmetic (no torch); the training happens in the workers
(:mod:`nos.search.suite_eval`).

**Reference.** For every task of the suite, Adam (``torch.optim.Adam`` under the same base
warmup-cosine schedule as every candidate) is tuned once on :data:`REFERENCE_GRID` by its
final validation loss on the search's first seed, then trained at that LR on every seed the
search scores with. The same cheap first rung (below) is run for it. The driver computes
these before the search and keeps them in the run directory (``reference.json``); every
job carries the values it needs as plain data.

**Score.** Seeds are paired: the candidate and the reference train the same initial
weights on the same batches. Per task and seed the score is
``clip(log(L_ref / L_cand), -clip, clip)`` of the final validation losses (a diverged run
scores ``-clip``): 0 is as good as tuned Adam, +0.1 about a 10% lower loss. The fitness is
the mean over tasks (each task weighs the same, and the clip keeps any one from
dominating) and seeds.

**Rungs.** One evaluation job runs

* rung 0: the LR scheme on one cheap task (the suite's first, on a third of its budget),
  one seed. The candidate must reach a loss within ``exp(hurdle)`` of the reference's on
  the same rung, or it stops there (``failed_threshold``) after only this rung's steps;
* rung 1: every task of the suite at its full budget, at the reference's tuned LR of each
  task times the candidate's LR multiple found on rung 0.

The initial population is scored on rung 0 only: its score is the rung-0 log ratio
(clipped), with no hurdle since there is no later rung to stop before; it fails only when
every LR trial diverged. The particles' children, the particles' re-evaluation and the
final re-scoring run both rungs.

**LR schemes** (how rung 0 finds the candidate's LR, as a multiple of Adam's):

* ``matched`` (default): the candidate's first steps on the rung-0 task are measured
  against Adam's at the same LR (the norm of the weight change), which gives the
  multiple that makes its steps as long as Adam's; it is rounded to a half decade, and
  the multiples x{1/sqrt(10), 1, sqrt(10)} around it are trained, then (up to ``extend``
  more trials) the best trial's untried half-decade neighbours, or a decade lower while
  every trial diverged;
* ``decades``: multiples 1e-2 ... 1e2 of Adam's LR, one per decade;
* ``paper``: the paper's seven absolute LRs 10 ... 1e-5.

The reference runs the same scheme (for Adam the matched multiple is 1), and the
candidate's multiple is the ratio of its chosen LR to the reference's chosen LR on rung 0.
An optimizer that computes what Adam computes therefore gets Adam's LR on every task and
scores 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nos.errors import NosError
from nos.training.presets import Budget
from nos.training.registry import get_task, suite

__all__ = [
    "LR_SCHEMES",
    "REFERENCE_GRID",
    "REFERENCE_OPTIMIZER",
    "SUITE_BUDGETS",
    "FitnessSpec",
    "Reference",
    "TaskBudget",
    "aggregate",
    "fitness_for",
    "log_ratio",
]

LR_SCHEMES = ("matched", "decades", "paper")
#: The reference optimizer: torch's Adam under the base warmup-cosine schedule.
REFERENCE_OPTIMIZER = "torch:adam"
#: Adam's LRs tried per task (half decades); the best final validation loss wins.
REFERENCE_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)

#: Budgets of the suite fitness where they differ from the task's own (the bench's): the
#: search trains every candidate, so these are shorter.
SUITE_BUDGETS: dict[str, Budget] = {
    "digits": Budget(150, batch_size=64, warmup=8, eval_every=75),
}


@dataclass(frozen=True)
class TaskBudget:
    """One task of the suite fitness and the budget it trains for."""

    task: str
    budget: Budget

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "budget": self.budget.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskBudget:
        return cls(str(data["task"]), Budget(**data["budget"]))


@dataclass(frozen=True)
class FitnessSpec:
    """Everything that defines the suite fitness, as plain data (stored in the run's config).

    ``rung0`` is the cheap first rung (a task and a short budget); ``tasks`` the full rung.
    """

    tasks: tuple[TaskBudget, ...]
    rung0: TaskBudget
    lr_scheme: str = "matched"
    hurdle: float = 1.2  # rung 0 passes when log(L_ref / L_cand) >= -hurdle
    clip: float = 1.0
    extend: int = 2  # matched scheme: extra trials around the best
    probe_steps: int = 10
    probe_lr: float = 1e-4
    reference_grid: tuple[float, ...] = REFERENCE_GRID

    def __post_init__(self) -> None:
        if self.lr_scheme not in LR_SCHEMES:
            raise NosError(
                f"unknown LR scheme {self.lr_scheme!r}; choose one of {', '.join(LR_SCHEMES)}"
            )
        if not self.tasks:
            raise NosError("the suite fitness needs at least one task")
        if not (self.clip > 0 and self.hurdle >= 0):
            raise NosError("the score's clip must be positive and the hurdle non-negative")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.task for t in self.tasks)

    def budget(self, task: str) -> Budget:
        for t in self.tasks:
            if t.task == task:
                return t.budget
        raise KeyError(task)

    @property
    def full_steps(self) -> int:
        """Training steps of rung 1 per seed."""
        return sum(t.budget.steps for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": [t.to_dict() for t in self.tasks],
            "rung0": self.rung0.to_dict(),
            "lr_scheme": self.lr_scheme,
            "hurdle": self.hurdle,
            "clip": self.clip,
            "extend": self.extend,
            "probe_steps": self.probe_steps,
            "probe_lr": self.probe_lr,
            "reference_grid": list(self.reference_grid),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitnessSpec:
        values = dict(data)
        values["tasks"] = tuple(TaskBudget.from_dict(t) for t in values["tasks"])
        values["rung0"] = TaskBudget.from_dict(values["rung0"])
        values["reference_grid"] = tuple(float(x) for x in values.get("reference_grid", ()))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise NosError(f"unknown fitness setting(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> FitnessSpec:
        return dataclasses.replace(self, **changes)


def _budget_of(task: str) -> Budget:
    return SUITE_BUDGETS.get(task) or get_task(task).budget


def rung0_budget(budget: Budget, fraction: float = 1 / 3) -> Budget:
    """The cheap rung: a ``fraction`` of the task's steps, validated once at the end."""
    steps = max(2, round(budget.steps * fraction))
    return budget.replace(steps=steps, warmup=min(budget.warmup, steps - 1), eval_every=steps)


def fitness_for(
    suite_name: str = "search",
    tasks: Sequence[str] = (),
    *,
    lr_scheme: str = "matched",
    rung0_fraction: float = 1 / 3,
    **options: Any,
) -> FitnessSpec:
    """The suite fitness of a registered suite, or of explicit ``tasks`` (e.g. one task)."""
    names = tuple(tasks) or suite(suite_name)
    for name in names:
        get_task(name)  # a one-line error for an unknown task
    entries = tuple(TaskBudget(n, _budget_of(n)) for n in names)
    first = entries[0]
    rung0 = TaskBudget(first.task, rung0_budget(first.budget, rung0_fraction))
    return FitnessSpec(entries, rung0, lr_scheme=lr_scheme, **options)


def log_ratio(reference: float | None, candidate: float | None, clip: float) -> float:
    """``clip(log(reference / candidate))``; a missing (diverged) candidate scores -clip."""
    if candidate is None or not math.isfinite(candidate):
        return -clip if math.isfinite(clip) else -math.inf
    if reference is None or not math.isfinite(reference) or reference <= 0:
        raise ValueError(f"bad reference loss {reference!r}")
    if candidate <= 0:
        return clip
    return max(-clip, min(clip, math.log(reference / candidate)))


def aggregate(per_task: Mapping[str, Sequence[float]]) -> tuple[float, list[float]]:
    """The fitness (mean over tasks of the mean over seeds) and the per-seed fitnesses
    (mean over tasks for each seed)."""
    if not per_task:
        raise ValueError("no task scores")
    rows = list(per_task.values())
    n_seeds = len(rows[0])
    if n_seeds == 0 or any(len(r) != n_seeds for r in rows):
        raise ValueError("every task needs a score for every seed")
    per_seed = [sum(r[i] for r in rows) / len(rows) for i in range(n_seeds)]
    return sum(per_seed) / n_seeds, per_seed


@dataclass
class Reference:
    """The reference's results (``reference.json``), as plain data.

    ``tasks[name]``: ``lr`` (tuned), ``grid`` (LR -> final loss on the tuning seed) and
    ``loss`` (seed -> final validation loss at ``lr``). ``rung0[seed]``: the rung-0 scheme's
    result for Adam (``lr``, ``loss``, ``probe``: Adam's step length per unit LR).
    """

    fitness: dict[str, Any]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    rung0: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"fitness": self.fitness, "tasks": self.tasks, "rung0": self.rung0}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(dict(data["fitness"]), dict(data["tasks"]), dict(data["rung0"]))

    def for_seeds(self, seeds: Sequence[int], rung0_seed: int) -> dict[str, Any]:
        """What one job needs: per task the LR and the losses of ``seeds``; rung 0's."""
        out: dict[str, Any] = {"tasks": {}, "rung0": self.rung0[str(rung0_seed)]}
        for name, info in self.tasks.items():
            out["tasks"][name] = {
                "lr": info["lr"],
                "loss": {str(s): info["loss"][str(s)] for s in seeds},
            }
        return out
