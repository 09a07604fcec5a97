"""What to evaluate and what came of it, as plain data (no torch).

:class:`EvalSpec` and :class:`EvalResult` cross process boundaries (worker jobs, run files):
both convert to and from JSON-ready dicts. The search builds an :class:`EvalSpec` per
evaluation and reads the :class:`EvalResult` back; :func:`nos.training.protocol.evaluate`
turns one into the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nos.errors import NosError
from nos.status import Status

__all__ = ["COMPILE_MODES", "PRECISIONS", "EvalResult", "EvalSpec", "StepOptions", "round_floats"]

#: ``--precision``: float32 everywhere, or bfloat16 autocast of the forward pass.
PRECISIONS = ("fp32", "bf16")
#: ``--compile``: what goes through ``torch.compile``: nothing, the network (once per
#: worker, reused by every candidate), the candidate's update, or both.
COMPILE_MODES = ("off", "model", "update", "all")


def round_floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in values)


@dataclass(frozen=True)
class StepOptions:
    """How a training step runs (:mod:`nos.training.fast`); none of it changes the protocol.

    ``precision`` is ``fp32`` or ``bf16`` (autocast of the forward pass and the loss);
    ``compile`` one of :data:`COMPILE_MODES`; ``cuda_graph`` captures forward, backward and
    the candidate's update in one CUDA graph (CUDA only; the update is compiled only when
    ``compile`` says so);
    ``channels_last`` stores image batches and convolution weights channels-last (``None``:
    on a CUDA device only, so CPU results stay those of the plain layout).
    """

    precision: str = "fp32"
    compile: str = "off"
    cuda_graph: bool = False
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise NosError(
                f"unknown precision {self.precision!r}; choose {' or '.join(PRECISIONS)}"
            )
        if self.compile not in COMPILE_MODES:
            raise NosError(
                f"unknown compile mode {self.compile!r}; choose one of {', '.join(COMPILE_MODES)}"
            )

    @property
    def compile_model(self) -> bool:
        return self.compile in ("model", "all")

    @property
    def compile_update(self) -> bool:
        return self.compile in ("update", "all")


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate, as plain data (picklable, JSON-ready).

    ``candidate`` is candidate text in ``grammar``, ``zoo:NAME`` or ``torch:NAME``. ``task``
    defaults to the preset's. ``lr_grid`` is ``paper`` (the preset's stages) or ``reduced``
    (around ``lr_hint``). ``overrides`` replaces :class:`Preset` fields (small budgets).
    ``precision``, ``compile``, ``cuda_graph`` and ``channels_last`` are the
    :class:`StepOptions` of the training step.
    """

    candidate: str
    grammar: str = "morgan2024"
    task: str | None = None
    preset: str = "quick"
    seeds: tuple[int, ...] = (0,)
    flip: bool = False
    lr_hint: float | None = None
    lr_grid: str = "paper"
    timeout_s: float | None = None
    data_dir: str | None = None
    device: str = "cpu"
    batch_sweep: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    compile: str = "off"
    cuda_graph: bool = False
    channels_last: bool | None = None

    @property
    def step_options(self) -> StepOptions:
        return StepOptions(self.precision, self.compile, self.cuda_graph, self.channels_last)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["seeds"] = list(self.seeds)
        out["overrides"] = dict(self.overrides)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalSpec:
        data = dict(data)
        data["seeds"] = tuple(data.get("seeds", (0,)))
        return cls(**data)


@dataclass(frozen=True)
class EvalResult:
    """Outcome of an evaluation. Per-seed fields are tuples in the order of the seeds.

    ``fitness`` is the mean over seeds of the best validation accuracy, ``None`` unless
    every seed is ``ok``; ``status`` is then the worst seed's. ``curves`` holds each seed's
    validation accuracy per final-run epoch (``steps_per_epoch`` steps each); ``sweep`` each
    seed's best training accuracy per swept LR.
    """

    status: Status
    fitness: float | None = None
    std: float | None = None
    reason: str = ""
    lr: float | None = None
    steps: int = 0
    wall_s: float = 0.0
    seeds: tuple[int, ...] = ()
    fitness_per_seed: tuple[float | None, ...] = ()
    status_per_seed: tuple[Status, ...] = ()
    lr_per_seed: tuple[float | None, ...] = ()
    curves: tuple[tuple[float, ...], ...] = ()
    sweep: tuple[tuple[tuple[float, float], ...], ...] = ()
    steps_per_epoch: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "fitness": self.fitness,
            "std": self.std,
            "reason": self.reason,
            "lr": self.lr,
            "steps": self.steps,
            "wall_s": self.wall_s,
            "seeds": list(self.seeds),
            "fitness_per_seed": list(self.fitness_per_seed),
            "status_per_seed": list(self.status_per_seed),
            "lr_per_seed": list(self.lr_per_seed),
            "curves": [list(c) for c in self.curves],
            "sweep": [[list(p) for p in s] for s in self.sweep],
            "steps_per_epoch": self.steps_per_epoch,
            "config": dict(self.config),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        return cls(
            status=Status(data["status"]),
            fitness=data.get("fitness"),
            std=data.get("std"),
            reason=data.get("reason", ""),
            lr=data.get("lr"),
            steps=data.get("steps", 0),
            wall_s=data.get("wall_s", 0.0),
            seeds=tuple(data.get("seeds", ())),
            fitness_per_seed=tuple(data.get("fitness_per_seed", ())),
            status_per_seed=tuple(Status(s) for s in data.get("status_per_seed", ())),
            lr_per_seed=tuple(data.get("lr_per_seed", ())),
            curves=tuple(tuple(c) for c in data.get("curves", ())),
            sweep=tuple(tuple((float(a), float(b)) for a, b in s) for s in data.get("sweep", ())),
            steps_per_epoch=data.get("steps_per_epoch", 0),
            config=dict(data.get("config", {})),
        )

    def steps_to(self, target: float) -> tuple[int | None, ...]:
        """Per seed, the final-run steps until validation first reached ``target``."""
        out: list[int | None] = []
        for curve in self.curves:
            hit = next((i for i, acc in enumerate(curve) if acc >= target), None)
            out.append(None if hit is None else (hit + 1) * self.steps_per_epoch)
        return tuple(out)
