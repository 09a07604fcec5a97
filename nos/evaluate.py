"""The fitness protocol: LR sweep, thresholds and final training (spec §5.3, §5.4).

One evaluation, for each seed:

1. **LR sweep.** For every LR of a stage, a fresh network (the same initialisation for every
   LR) trains ``sweep_epochs`` x ``sweep_steps`` steps, all inside the warmup of an optimizer
   built with ``total_steps`` T and ``warmup`` W. From epoch index ``sweep_stop_from`` a run
   stops once its epoch's training accuracy is below ``sweep_stop_below``. A run scores its
   best epoch training accuracy. If every run of stage 1 scores below ``stage1_threshold``,
   or the best of all runs below ``overall_threshold``, the candidate is
   ``failed_threshold``.
2. **Final run** at the best LR (ties go to the earlier LR in the sweep order) for
   ``final_epochs`` x ``final_steps`` steps with validation after each epoch; it stops once
   the training accuracy is below ``final_stop_below`` from epoch index ``final_stop_from``.
   The seed's fitness is the best validation accuracy.

The ``paper`` preset is spec §5.4 (particle phase: ConvNet b = 48, augmentation, T = 16,000,
W = 800, final 40 x 400 steps) and ``paper-init`` spec §5.3 (b = 32, plain images, T = 8,000,
final 40 x 200); both sweep {10, 1e-2, 1e-5} then {1, 1e-1, 1e-3, 1e-4} for 4 x 200 steps at
batch 128 with the 0.25 / 0.40 thresholds. ``quick`` (digits) and ``mnist1d`` keep that
shape with small budgets. The optimizer applies the base warmup-cosine schedule (spec §2.7)
itself, so the protocol only hands it (lr, T, W): see :data:`OptimizerFactory`.

Additions to the paper's protocol, all recorded in :meth:`Preset.to_dict`:

* several seeds: the fitness is the mean of the seeds' fitnesses (and their std);
* ``lr_grid="reduced"``: one stage of three LRs around the integrity check's passing LR;
* divergence abort: a sweep run stops as soon as its loss is non-finite or above
  ``divergence_factor`` x its first loss, and scores what it reached; the final run stops
  when its loss is non-finite (the weights cannot recover), which makes the evaluation
  ``diverged`` (the reason gives the best validation accuracy before);
* a wall-clock timeout per evaluation (checked between steps) -> ``timeout``.

Inputs and outputs are plain data (:class:`EvalSpec`, :class:`EvalResult`, JSON-ready) so
that :func:`evaluate` runs in worker processes; it never raises for a candidate's faults.

Speed (measured on the 2-core CPU, see ``tools/bench_eval.py``): training a stage's networks
together with ``torch.func.vmap`` over stacked parameters (``batch_sweep=True``) was 10-75%
*slower* than one network after the other for the digits MLP and the MNIST-1D CNN (the
optimizers still step one network at a time), so the sequential sweep is the default; the
batched path remains for devices where per-step overhead dominates. The throughput gain on
a CPU comes from single-threaded worker processes (:func:`nos.tasks.worker_init`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nos.errors import NosError
from nos.schedules import base_lr
from nos.tasks import Task, load_task

__all__ = [
    "PAPER_STAGES",
    "PRESETS",
    "STATUSES",
    "EvalResult",
    "EvalSpec",
    "OptimizerFactory",
    "Preset",
    "RunLog",
    "Trainer",
    "baseline_factory",
    "evaluate",
    "evaluate_factory",
    "factory_for",
    "get_preset",
    "reduced_grid",
    "run_protocol",
]

log = logging.getLogger(__name__)

#: Builds an optimizer for ``params`` with peak LR, total steps T and warmup steps W; the
#: optimizer applies its own LR schedule (the base warmup-cosine of spec §2.7).
OptimizerFactory = Callable[[list[nn.Parameter], float, int, int], torch.optim.Optimizer]

#: Outcomes of an evaluation, best first.
STATUSES = ("ok", "failed_threshold", "diverged", "timeout", "error")

#: The paper's two sweep stages, in its tie-breaking order (spec §5.3).
PAPER_STAGES: tuple[tuple[float, ...], ...] = ((10.0, 1e-2, 1e-5), (1.0, 1e-1, 1e-3, 1e-4))


@dataclass(frozen=True)
class Preset:
    """Budgets and thresholds of one protocol; see the module docstring."""

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


PRESETS: dict[str, Preset] = {
    # Spec §5.4: particle-phase fitness, 7 x 800 + 16,000 = 21,600 steps at most.
    "paper": Preset("paper", "cifar10", width=48, augment=True, final_steps=400,
                    total_steps=16000, divergence_factor=None, target=0.7),
    # Spec §5.3: initial-population fitness, 7 x 800 + 8,000 = 13,600 steps at most.
    "paper-init": Preset("paper-init", "cifar10", width=32, divergence_factor=None,
                         target=0.6),
    # Digits MLP, 7 x 40 + 400 = 680 steps: about 43 passes over 1,200 images, like the
    # paper's 45 over CIFAR-10.
    "quick": Preset("quick", "digits", sweep_steps=10, final_steps=10, warmup=40,
                    total_steps=400, target=0.9),
    # MNIST-1D CNN, 7 x 60 + 600 = 1,020 steps: about 21 passes over 3,600 signals.
    "mnist1d": Preset("mnist1d", "mnist1d", sweep_steps=15, final_steps=15, warmup=60,
                      total_steps=600, target=0.6),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise NosError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def reduced_grid(hint: float, factor: float = 10.0) -> tuple[tuple[float, ...], ...]:
    """One sweep stage around the integrity check's passing LR: hint, hint*f, hint/f."""
    if not (hint > 0 and math.isfinite(hint)):
        raise NosError(f"the LR hint must be a positive number, got {hint!r}")
    return ((hint, hint * factor, hint / factor),)


# --------------------------------------------------------------------------- optimizers


def _with_base_schedule(opt: torch.optim.Optimizer, lr: float, total: int, warmup: int
                        ) -> torch.optim.Optimizer:
    """Give a torch optimizer the base warmup-cosine LR of spec §2.7 (set before each step)."""
    step = [0]

    def before_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        t = min(step[0], total)
        rate = float(base_lr(t, lr, warmup, total))
        for group in optimizer.param_groups:
            group["lr"] = rate
        step[0] += 1

    opt.register_step_pre_hook(before_step)
    return opt


_BASELINES: dict[str, Callable[[list[nn.Parameter], float], torch.optim.Optimizer]] = {
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr),
    "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "nesterov": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr),
}


def baseline_factory(name: str) -> OptimizerFactory:
    """A ``torch.optim`` optimizer (``adam``, ``sgd``, ...) under the base LR schedule."""
    try:
        make = _BASELINES[name]
    except KeyError:
        raise NosError(f"unknown torch baseline {name!r}; choose one of "
                       f"{', '.join(_BASELINES)}") from None

    def factory(params: list[nn.Parameter], lr: float, total: int, warmup: int
                ) -> torch.optim.Optimizer:
        return _with_base_schedule(make(params, lr), lr, total, warmup)

    return factory


def factory_for(spec: str, grammar: str = "morgan2024", *, flip: bool = False
                ) -> OptimizerFactory:
    """The optimizer named by ``spec``: ``torch:NAME``, ``zoo:NAME`` or candidate text.

    Candidates and zoo entries become :class:`nos.optim.SymbolicOptimizer`. Unknown names
    and unreadable candidates raise :class:`~nos.errors.NosError`.
    """
    spec = spec.strip()
    if spec.startswith("torch:"):
        return baseline_factory(spec.removeprefix("torch:"))
    if spec.startswith("zoo:"):
        from nos import zoo

        candidate = zoo.get(spec.removeprefix("zoo:"))
    else:
        from nos.candidate import parse
        from nos.grammar import load_grammar

        candidate = parse(spec, load_grammar(grammar))
    from nos.optim import SymbolicOptimizer

    def factory(params: list[nn.Parameter], lr: float, total: int, warmup: int
                ) -> torch.optim.Optimizer:
        return SymbolicOptimizer(params, candidate, lr=lr, total_steps=total, warmup=warmup,
                                 flip=flip)

    return factory


# --------------------------------------------------------------------------- training


class _Deadline(Exception):
    """The evaluation's wall-clock budget ran out."""


@dataclass
class RunLog:
    """One training run: per-epoch accuracies and how it ended.

    ``outcome`` is ``complete``, ``stopped`` (an accuracy early stop) or ``diverged``; a
    run that diverged mid-epoch lists that partial epoch's training accuracy too.
    """

    lr: float
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    steps: int = 0
    outcome: str = "complete"
    detail: str = ""

    @property
    def best_train(self) -> float:
        return max(self.train_acc, default=0.0)


class _Member:
    """One network of a run with its optimizer, divergence monitor and epoch counters."""

    def __init__(self, model: nn.Module, opt: torch.optim.Optimizer, lr: float):
        self.model, self.opt, self.log = model, opt, RunLog(lr)
        self.first_loss: float | None = None
        self.correct = torch.zeros((), dtype=torch.long, device=_device_of(model))
        self.seen = 0
        self.worst = torch.full((), -math.inf, device=_device_of(model))

    def record(self, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        self.log.steps += 1
        self.correct += correct
        self.seen += n
        self.worst = torch.maximum(self.worst, loss.detach())  # NaN propagates

    def diverged(self, factor: float | None) -> bool:
        worst = float(self.worst)
        self.worst.fill_(-math.inf)
        if self.first_loss is None:
            self.first_loss = worst
        if not math.isfinite(worst):
            self.log.detail = f"non-finite loss at step {self.log.steps}"
            return True
        if factor is not None and self.first_loss > 0 and worst > factor * self.first_loss:
            self.log.detail = (f"loss {worst:.3g} above {factor:g} x initial "
                               f"{self.first_loss:.3g} at step {self.log.steps}")
            return True
        return False

    def end_epoch(self) -> float:
        acc = int(self.correct) / max(self.seen, 1)
        self.correct.zero_()
        self.seen = 0
        self.log.train_acc.append(acc)
        return acc


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Trainer:
    """Trains runs of the protocol for one optimizer factory, task, preset and seed.

    Every run starts from the same initial weights and sees the same batches (order and
    augmentation drawn from generators seeded with ``seed``); dropout draws from torch's
    global generator, reseeded with ``seed`` inside a forked RNG state per run, so the
    caller's random state is untouched and reruns are identical.
    """

    def __init__(
        self,
        factory: OptimizerFactory,
        task: Task,
        preset: Preset,
        seed: int,
        *,
        deadline: float | None = None,
        batch_sweep: bool = False,
    ):
        self.factory, self.task, self.preset, self.seed = factory, task, preset, seed
        self.deadline, self.batch_sweep = deadline, batch_sweep
        # Syncing the loss every step costs nothing on a CPU but stalls a GPU.
        self.check_every = 1 if task.device.type == "cpu" else 50
        self.steps = 0

    def train(
        self,
        lrs: Sequence[float],
        *,
        epochs: int,
        steps_per_epoch: int,
        validate: bool,
        stop_below: float,
        stop_from: int,
    ) -> list[RunLog]:
        """Train one run per LR; ``validate`` adds a validation accuracy per epoch."""
        together = self.batch_sweep and not validate and len(lrs) > 1
        groups = [list(lrs)] if together else [[lr] for lr in lrs]
        logs: list[RunLog] = []
        for group in groups:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                logs += self._train_group(group, epochs, steps_per_epoch, validate,
                                          stop_below, stop_from)
        return logs

    def _member(self, lr: float) -> _Member:
        model = self.task.build_model(self.seed)
        model.train()
        opt = self.factory(list(model.parameters()), float(lr), self.preset.total_steps,
                           self.preset.warmup)
        return _Member(model, opt, lr)

    def _train_group(self, lrs: list[float], epochs: int, steps_per_epoch: int,
                     validate: bool, stop_below: float, stop_from: int) -> list[RunLog]:
        members = [self._member(lr) for lr in lrs]
        step_fn = self._sequential_step if len(members) == 1 else _BatchedStep(members)
        order = self.task.batch_order(self.preset.batch_size, self.seed,
                                      shuffle=self.preset.shuffle)
        augment = self.task.augmenter(self.seed)
        active = list(members)
        # The loss-growth rule guards the sweep only: a final run may spike and recover, and
        # its fitness (the best validation so far) cannot drop by training on.
        factor = None if validate else self.preset.divergence_factor
        for epoch in range(epochs):
            for step in range(steps_per_epoch):
                index = order.next()
                x, y = self.task.train_x[index], self.task.train_y[index]
                if augment is not None:
                    x = augment(x)
                step_fn(active, x, y)
                self.steps += len(active)
                if step % self.check_every == 0 or step == steps_per_epoch - 1:
                    for m in [m for m in active if m.diverged(factor)]:
                        m.log.outcome = "diverged"
                        m.end_epoch()
                        active.remove(m)
                if not active:
                    return [m.log for m in members]
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise _Deadline
            for m in list(active):
                acc = m.end_epoch()
                if validate:
                    m.log.val_acc.append(self.task.accuracy(m.model))
                if epoch >= stop_from and acc < stop_below:
                    m.log.outcome = "stopped"
                    m.log.detail = (f"train accuracy {acc:.3f} < {stop_below:g} "
                                    f"at epoch {epoch}")
                    active.remove(m)
            if not active:
                break
        return [m.log for m in members]

    @staticmethod
    def _sequential_step(active: list[_Member], x: torch.Tensor, y: torch.Tensor) -> None:
        for m in active:
            m.opt.zero_grad(set_to_none=True)
            out = m.model(x)
            loss = F.cross_entropy(out, y)
            loss.backward()
            m.opt.step()
            m.record(loss, (out.argmax(1) == y).sum(), len(y))


class _BatchedStep:
    """One step of several networks at once: ``vmap`` over their stacked parameters.

    Each network keeps its own parameter tensors and optimizer; the stack is rebuilt every
    step (autograd routes each slice's gradient back to its network). BatchNorm runs on
    batch statistics without updating running ones, which the sweep never uses (it
    reports training accuracy only).
    """

    def __init__(self, members: list[_Member]):
        from torch.func import functional_call, vmap

        template = copy.deepcopy(members[0].model)
        for module in template.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.track_running_stats = False
                module.running_mean = module.running_var = module.num_batches_tracked = None
        self.names = [name for name, _ in template.named_parameters()]
        self.params = {id(m): dict(m.model.named_parameters()) for m in members}

        def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
            out = functional_call(template, p, (x,))
            return F.cross_entropy(out, y), (out.argmax(1) == y).sum()

        self.fn = vmap(loss, in_dims=(0, None, None), randomness="different")

    def __call__(self, active: list[_Member], x: torch.Tensor, y: torch.Tensor) -> None:
        for m in active:
            m.opt.zero_grad(set_to_none=True)
        stacked = {k: torch.stack([self.params[id(m)][k] for m in active]) for k in self.names}
        losses, correct = self.fn(stacked, x, y)
        losses.sum().backward()  # the networks' losses are independent
        for i, m in enumerate(active):
            m.opt.step()
            m.record(losses[i], correct[i], len(y))


# --------------------------------------------------------------------------- protocol


@dataclass
class SeedOutcome:
    """The protocol's result for one seed."""

    status: str
    fitness: float | None = None
    lr: float | None = None
    reason: str = ""
    sweep: list[RunLog] = field(default_factory=list)
    final: RunLog | None = None


def run_protocol(trainer: Any, preset: Preset,
                 stages: Sequence[Sequence[float]] | None = None) -> SeedOutcome:
    """The sweep, thresholds and final run for one seed (see the module docstring).

    ``trainer`` needs only ``train(lrs, *, epochs, steps_per_epoch, validate, stop_below,
    stop_from) -> list[RunLog]`` (a :class:`Trainer`, or a fake in tests).
    """
    stages = preset.stages if stages is None else stages
    sweep: list[RunLog] = []
    for i, stage in enumerate(stages):
        logs = trainer.train(list(stage), epochs=preset.sweep_epochs,
                             steps_per_epoch=preset.sweep_steps, validate=False,
                             stop_below=preset.sweep_stop_below,
                             stop_from=preset.sweep_stop_from)
        sweep += logs
        if i == 0 and all(r.best_train < preset.stage1_threshold for r in logs):
            return _sweep_failure(sweep, f"stage 1 best train accuracy "
                                  f"{max(r.best_train for r in logs):.3f} < "
                                  f"{preset.stage1_threshold:g}")
    best = max(sweep, key=lambda r: r.best_train)  # max() keeps the first of equals
    if best.best_train < preset.overall_threshold:
        return _sweep_failure(sweep, f"sweep best train accuracy {best.best_train:.3f} < "
                              f"{preset.overall_threshold:g}")
    (final,) = trainer.train([best.lr], epochs=preset.final_epochs,
                             steps_per_epoch=preset.final_steps, validate=True,
                             stop_below=preset.final_stop_below,
                             stop_from=preset.final_stop_from)
    if final.outcome == "diverged":
        best_val = max(final.val_acc, default=float("nan"))
        return SeedOutcome("diverged", None, best.lr,
                           f"final run: {final.detail} (best validation before: {best_val:.3f})",
                           sweep, final)
    fitness = max(final.val_acc, default=0.0)
    return SeedOutcome("ok", fitness, best.lr, final.detail, sweep, final)


def _sweep_failure(sweep: list[RunLog], reason: str) -> SeedOutcome:
    if all(r.outcome == "diverged" for r in sweep):
        return SeedOutcome("diverged", None, None, "every sweep run diverged: "
                           + sweep[0].detail, sweep)
    return SeedOutcome("failed_threshold", None, None, reason, sweep)


# --------------------------------------------------------------------------- plain data


def _floats(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in values)


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate, as plain data (picklable, JSON-ready).

    ``candidate`` is candidate text in ``grammar``, ``zoo:NAME`` or ``torch:NAME``. ``task``
    defaults to the preset's. ``lr_grid`` is ``paper`` (the preset's stages) or ``reduced``
    (around ``lr_hint``). ``overrides`` replaces :class:`Preset` fields (small budgets).
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

    status: str
    fitness: float | None = None
    std: float | None = None
    reason: str = ""
    lr: float | None = None
    steps: int = 0
    wall_s: float = 0.0
    seeds: tuple[int, ...] = ()
    fitness_per_seed: tuple[float | None, ...] = ()
    status_per_seed: tuple[str, ...] = ()
    lr_per_seed: tuple[float | None, ...] = ()
    curves: tuple[tuple[float, ...], ...] = ()
    sweep: tuple[tuple[tuple[float, float], ...], ...] = ()
    steps_per_epoch: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "fitness": self.fitness, "std": self.std,
            "reason": self.reason, "lr": self.lr, "steps": self.steps,
            "wall_s": self.wall_s, "seeds": list(self.seeds),
            "fitness_per_seed": list(self.fitness_per_seed),
            "status_per_seed": list(self.status_per_seed),
            "lr_per_seed": list(self.lr_per_seed),
            "curves": [list(c) for c in self.curves],
            "sweep": [[list(p) for p in s] for s in self.sweep],
            "steps_per_epoch": self.steps_per_epoch, "config": dict(self.config),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalResult:
        return cls(
            status=data["status"], fitness=data.get("fitness"), std=data.get("std"),
            reason=data.get("reason", ""), lr=data.get("lr"), steps=data.get("steps", 0),
            wall_s=data.get("wall_s", 0.0), seeds=tuple(data.get("seeds", ())),
            fitness_per_seed=tuple(data.get("fitness_per_seed", ())),
            status_per_seed=tuple(data.get("status_per_seed", ())),
            lr_per_seed=tuple(data.get("lr_per_seed", ())),
            curves=tuple(tuple(c) for c in data.get("curves", ())),
            sweep=tuple(tuple((float(a), float(b)) for a, b in s)
                        for s in data.get("sweep", ())),
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


def _error(reason: str, started: float, config: Mapping[str, Any] | None = None) -> EvalResult:
    return EvalResult("error", reason=reason, wall_s=time.monotonic() - started,
                      config=dict(config or {}))


def _resolve_preset(preset: str | Preset, task: str | Task | None,
                    overrides: Mapping[str, Any] | None) -> Preset:
    p = get_preset(preset) if isinstance(preset, str) else preset
    if task is not None:
        name = task if isinstance(task, str) else task.name
        if name != p.task:
            p = p.replace(task=name)
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(Preset)}
        if unknown:
            raise NosError(f"unknown preset field(s): {', '.join(sorted(unknown))}")
        p = p.replace(**overrides)
    return p


def evaluate_factory(
    factory: OptimizerFactory,
    task: str | Task | None = None,
    preset: str | Preset = "quick",
    seeds: int | Sequence[int] = 0,
    *,
    lr_grid: str = "paper",
    lr_hint: float | None = None,
    timeout_s: float | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    batch_sweep: bool = False,
    overrides: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Run the protocol for an optimizer factory over one or more seeds.

    Configuration mistakes (unknown preset, missing data) raise :class:`NosError`; whatever
    the optimizer does (non-finite values, exceptions, slowness) becomes the result's status.
    """
    started = time.monotonic()
    p = _resolve_preset(preset, task, overrides)
    seed_list = [seeds] if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise NosError("need at least one seed")
    if lr_grid == "paper":
        stages = p.stages
    elif lr_grid == "reduced":
        if lr_hint is None:
            raise NosError("the reduced LR grid needs an LR hint (the integrity check's LR)")
        stages = reduced_grid(lr_hint)
    else:
        raise NosError(f"unknown LR grid {lr_grid!r}; choose paper or reduced")
    config = {"preset": p.to_dict(), "lr_grid": lr_grid, "stages": [list(s) for s in stages],
              "seeds": seed_list, "timeout_s": timeout_s, "batch_sweep": batch_sweep,
              "device": device}
    the_task = task if isinstance(task, Task) else load_task(
        p.task, data_dir=data_dir, augment=p.augment, width=p.width, device=device)
    deadline = None if timeout_s is None else started + timeout_s

    outcomes: list[SeedOutcome] = []
    steps = 0
    for seed in seed_list:
        trainer = Trainer(factory, the_task, p, seed, deadline=deadline,
                          batch_sweep=batch_sweep)
        try:
            outcome = run_protocol(trainer, p, stages)
        except _Deadline:
            outcome = SeedOutcome("timeout", reason=f"exceeded {timeout_s:g} s after "
                                  f"{steps + trainer.steps} steps")
        except Exception as exc:  # the candidate's numerics or code failed
            log.debug("evaluation error", exc_info=True)
            outcome = SeedOutcome("error", reason=f"{type(exc).__name__}: {exc}")
        steps += trainer.steps
        outcomes.append(outcome)
        if outcome.status in ("timeout", "error"):
            break  # the remaining seeds would fail the same way
    return _combine(outcomes, seed_list, steps, time.monotonic() - started, p, config)


def _combine(outcomes: list[SeedOutcome], seeds: list[int], steps: int, wall: float,
             preset: Preset, config: dict[str, Any]) -> EvalResult:
    worst = max(outcomes, key=lambda o: STATUSES.index(o.status))
    fits = [o.fitness for o in outcomes]
    fitness = std = None
    if worst.status == "ok":
        values = [f for f in fits if f is not None]
        fitness = statistics.fmean(values)
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
    lrs = [o.lr for o in outcomes]
    chosen = next((lr for lr in lrs if lr is not None), None)
    if worst.status == "ok" and len(set(lrs)) > 1:
        chosen = statistics.mode(lrs)  # the most common tuned LR over the seeds
    return EvalResult(
        status=worst.status, fitness=fitness, std=std, reason=worst.reason, lr=chosen,
        steps=steps, wall_s=wall, seeds=tuple(seeds[: len(outcomes)]),
        fitness_per_seed=tuple(fits), status_per_seed=tuple(o.status for o in outcomes),
        lr_per_seed=tuple(lrs),
        curves=tuple(_floats(o.final.val_acc) if o.final else () for o in outcomes),
        sweep=tuple(tuple((r.lr, round(r.best_train, 6)) for r in o.sweep) for o in outcomes),
        steps_per_epoch=preset.final_steps, config=config,
    )


def evaluate(spec: EvalSpec) -> EvalResult:
    """Evaluate ``spec`` (in this process); candidate problems become the result's status."""
    started = time.monotonic()
    try:
        factory = factory_for(spec.candidate, spec.grammar, flip=spec.flip)
    except (NosError, ImportError) as exc:
        return _error(f"{type(exc).__name__}: {exc}", started, {"spec": spec.to_dict()})
    result = evaluate_factory(
        factory, spec.task, spec.preset, spec.seeds, lr_grid=spec.lr_grid,
        lr_hint=spec.lr_hint, timeout_s=spec.timeout_s, data_dir=spec.data_dir,
        device=spec.device, batch_sweep=spec.batch_sweep, overrides=spec.overrides)
    config = {**result.config, "spec": spec.to_dict()}
    return dataclasses.replace(result, config=config,
                               wall_s=time.monotonic() - started)
