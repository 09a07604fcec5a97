"""Fitness presets: the budgets and thresholds of the protocol, as plain data (no torch).

A :class:`Preset` is one protocol configuration (spec §5.3, §5.4); each task registers its
presets per fitness stage in :mod:`nos.training.registry`, and :func:`get_preset` finds any
of them by name. See :mod:`nos.training.protocol` for what the fields mean.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from nos.errors import NosError

__all__ = ["PAPER_STAGES", "STAGES", "Budget", "Preset", "reduced_grid"]

#: The fitness stages a task gives a preset for: the initial population (spec §5.3) and the
#: particle phase (spec §5.4).
STAGES = ("init", "particle")

#: The paper's two sweep stages, in its tie-breaking order (spec §5.3).
PAPER_STAGES: tuple[tuple[float, ...], ...] = ((10.0, 1e-2, 1e-5), (1.0, 1e-1, 1e-3, 1e-4))


@dataclass(frozen=True)
class Preset:
    """Budgets and thresholds of one protocol; see :mod:`nos.training.protocol`."""

    name: str
    task: str
    width: int | None = None
    augment: bool = False
    batch_size: int = 128
    stages: tuple[tuple[float, ...], ...] = PAPER_STAGES
    sweep_epochs: int = 4
    sweep_steps: int = 200
    final_epochs: int = 40
    final_steps: int = 200
    warmup: int = 800
    total_steps: int = 8000
    sweep_stop_below: float = 0.25
    sweep_stop_from: int = 2
    stage1_threshold: float = 0.25
    overall_threshold: float = 0.40
    final_stop_below: float = 0.40
    final_stop_from: int = 4
    shuffle: bool = False
    divergence_factor: float | None = 20.0
    #: validation accuracy whose first epoch ``nos eval`` reports as "steps to target"
    target: float = 0.5

    @property
    def max_steps(self) -> int:
        """Optimizer steps of a full evaluation of one seed (no early stop)."""
        sweep = sum(len(s) for s in self.stages) * self.sweep_epochs * self.sweep_steps
        return sweep + self.final_epochs * self.final_steps

    def replace(self, **changes: Any) -> Preset:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["stages"] = [list(s) for s in self.stages]
        return out


@dataclass(frozen=True)
class Budget:
    """A task's budget for plain training to a loss: what the bench, the suite fitness and
    their reference runs train for (:mod:`nos.training.curves`).

    ``steps`` optimizer steps at ``batch_size`` (0: the whole training set, full batch), the
    first ``warmup`` of them warming up the learning rate, validation every
    ``eval_every`` steps; ``target`` is the validation metric whose first step counts as
    "steps to target".
    """

    steps: int
    batch_size: int = 128
    warmup: int = 0
    eval_every: int = 50
    target: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 0 or self.eval_every < 1:
            raise ValueError(f"bad budget {self}")
        if not 0 <= self.warmup < self.steps:
            raise ValueError(f"warmup must be in [0, steps), got {self.warmup}")

    def replace(self, **changes: Any) -> Budget:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def reduced_grid(hint: float, factor: float = 10.0) -> tuple[tuple[float, ...], ...]:
    """One sweep stage around the integrity check's passing LR: hint, hint*f, hint/f."""
    if not (hint > 0 and math.isfinite(hint)):
        raise NosError(f"the LR hint must be a positive number, got {hint!r}")
    return ((hint, hint * factor, hint / factor),)
