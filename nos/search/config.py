"""The resolved configuration of a search, and budget parsing (spec §4.1 for the defaults).

:class:`SearchConfig` holds everything that changes the search's *decisions*; it is written
to the run's ``config.toml`` and must be the same when a run is resumed. How the work is
executed (executor kind, number of workers) is not part of it: a run may be resumed with a
different number of workers and makes the same decisions.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from nos.errors import NosError

__all__ = ["FITNESSES", "STRATEGIES", "SearchConfig", "parse_budget"]

STRATEGIES = ("paper",)
#: ``fitness``: the suite fitness (:mod:`nos.search.fitness`) or the paper's protocol on one
#: task with its presets. Runs created before the suite fitness existed are ``paper``.
FITNESSES = ("suite", "paper")


@dataclass(frozen=True)
class SearchConfig:
    """Parameters of one search. Defaults are the paper's where it has one (spec §4)."""

    grammar: str = "morgan2024"
    fitness: str = "paper"  # "suite" (the CLI's default) or "paper"
    task: str = "digits"  # the paper fitness's task; the suite fitness's only task, or ""
    suite: str = "search"  # the suite fitness's suite when ``task`` is ""
    lr_scheme: str = "matched"  # the suite fitness's LR scheme (nos.search.fitness)
    hurdle: float = 1.2  # the suite fitness's rung-0 hurdle (log loss ratio to the reference)
    preset: str = "quick"  # fitness preset of the particle phase (spec §5.4)
    init_preset: str = ""  # cheap fitness of the initial population (spec §5.3); "" = preset
    strategy: str = "paper"
    particles: int = 50  # the code's n
    steps: int = 5  # K, "Depth" in the log (spec §4.1, as executed)
    children: int = 7  # M, mutated children per step (spec §4.1, as executed)
    init_factor: int = 10  # initial population = init_factor * particles (spec §4.2)
    tries: int = 4  # evaluations per child slot when they fail (spec §4.3: tries_left = 4)
    reeval: bool = True  # re-evaluate each particle with the full fitness first (spec §4.3)
    # Improvements over the reference, each an option:
    dedup: bool = True  # global dedup by canonical key and fingerprint (reference: per lineage)
    elitist: bool = False  # move only to a child at least as fit (reference: best-of-M, always)
    seed_from: tuple[str, ...] = ()  # zoo:NAME, an imported log (.jsonl) or a run's name
    rescore_top: int = 0  # re-score the final top-k with more seeds (0: off)
    rescore_seeds: int = 5
    eval_seeds: int = 1  # seeds per evaluation during the search (fitness = their mean)
    seed: int = 0
    budget_evals: int = 0  # hard cap on trained evaluations (0: none)
    budget_s: float = 0.0  # hard cap on wall time in seconds (0: none)
    timeout_s: float = 0.0  # wall-clock limit of one evaluation (0: none; presets bound steps)
    max_rejections: int = 2000  # rejected draws per child before its slot is given up
    hof_size: int = 10
    fake: dict[str, Any] = field(default_factory=dict)  # options of the test-only fake task

    def __post_init__(self) -> None:
        if self.fitness not in FITNESSES:
            raise NosError(f"unknown fitness {self.fitness!r} (choose from {', '.join(FITNESSES)})")
        if self.strategy not in STRATEGIES:
            raise NosError(
                f"unknown strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})"
            )
        for name in (
            "particles",
            "steps",
            "children",
            "init_factor",
            "tries",
            "eval_seeds",
            "rescore_seeds",
            "max_rejections",
            "hof_size",
        ):
            if getattr(self, name) < 1:
                raise NosError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.rescore_top < 0 or self.budget_evals < 0 or self.budget_s < 0:
            raise NosError("rescore_top and the budgets cannot be negative")
        if self.timeout_s < 0:
            raise NosError(f"timeout_s cannot be negative, got {self.timeout_s}")

    @property
    def target(self) -> str:
        """What the search optimises: the task, or the suite of the suite fitness."""
        if self.fitness == "suite" and not self.task:
            return self.suite
        return self.task

    @property
    def init_size(self) -> int:
        return self.init_factor * self.particles

    @property
    def soft_timeout_s(self) -> float | None:
        """The evaluator's own wall-clock limit, checked between steps (None: none)."""
        return self.timeout_s or None

    @property
    def kill_after_s(self) -> float | None:
        """The executor's hard limit: the soft one plus a margin (None: none)."""
        return None if not self.timeout_s else self.timeout_s * 1.25 + 30.0

    @property
    def cheap_preset(self) -> str:
        return self.init_preset or self.preset

    @property
    def nominal_evaluations(self) -> int:
        """Evaluations of a run without failures or duplicates (spec §4.3's count)."""
        n = self.particles
        return self.init_size + n * self.reeval + n * self.steps * self.children + self.rescore_top

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seed_from"] = list(self.seed_from)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise NosError(f"unknown search setting(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        if "seed_from" in values:
            values["seed_from"] = tuple(values["seed_from"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise NosError(f"bad search settings: {exc}") from None


_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")


def parse_budget(text: str) -> tuple[int, float]:
    """``"200"`` -> (200 evaluations, 0 s); ``"10m"``/``"90s"``/``"2h"`` -> (0, seconds)."""
    match = _BUDGET.match(text)
    if not match:
        raise NosError(f"bad budget {text!r}: give evaluations (200) or a time (90s, 10m, 2h)")
    number, unit = float(match.group(1)), match.group(2)
    if unit is None:
        if number != int(number) or number < 1:
            raise NosError(f"bad budget {text!r}: evaluations must be a positive integer")
        return int(number), 0.0
    seconds = number * {"s": 1, "m": 60, "min": 60, "h": 3600}[unit]
    if seconds <= 0:
        raise NosError(f"bad budget {text!r}: the time must be positive")
    return 0, seconds
