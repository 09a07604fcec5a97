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
* a wall-clock timeout per evaluation (checked between steps) -> ``timeout``;
* a device out of memory -> ``error`` with a reason that starts "out of GPU memory" (or
  "out of memory" on the CPU); what the evaluation held on the GPU is released after
  every evaluation, so the worker goes on with the next one.

How the steps run (precision, compilation, CUDA graphs, channels-last) is a
:class:`~nos.training.spec.StepOptions` (:mod:`nos.training.fast`).

Inputs and outputs are plain data (:class:`~nos.training.spec.EvalSpec`,
:class:`~nos.training.spec.EvalResult`, JSON-ready) so that :func:`evaluate` runs in worker
processes; it never raises for a candidate's faults. Presets live in
:mod:`nos.training.presets`, the tasks' own in :mod:`nos.training.registry`.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nos.errors import NosError
from nos.optim.factories import OptimizerFactory, factory_for
from nos.status import Status
from nos.training.device import make_deterministic, resolve_device
from nos.training.fast import out_of_memory, release_memory
from nos.training.presets import Preset, reduced_grid
from nos.training.registry import get_preset
from nos.training.spec import EvalResult, EvalSpec, StepOptions, round_floats
from nos.training.tasks import Task, load_task
from nos.training.trainer import Deadline, RunLog, Trainer

__all__ = ["SeedOutcome", "evaluate", "evaluate_factory", "run_protocol"]

log = logging.getLogger(__name__)


@dataclass
class SeedOutcome:
    """The protocol's result for one seed."""

    status: Status
    fitness: float | None = None
    lr: float | None = None
    reason: str = ""
    sweep: list[RunLog] = field(default_factory=list)
    final: RunLog | None = None


def run_protocol(
    trainer: Any, preset: Preset, stages: Sequence[Sequence[float]] | None = None
) -> SeedOutcome:
    """The sweep, thresholds and final run for one seed (see the module docstring).

    ``trainer`` needs only ``train(lrs, *, epochs, steps_per_epoch, validate, stop_below,
    stop_from) -> list[RunLog]`` (a :class:`Trainer`, or a fake in tests).
    """
    stages = preset.stages if stages is None else stages
    sweep: list[RunLog] = []
    for i, stage in enumerate(stages):
        logs = trainer.train(
            list(stage),
            epochs=preset.sweep_epochs,
            steps_per_epoch=preset.sweep_steps,
            validate=False,
            stop_below=preset.sweep_stop_below,
            stop_from=preset.sweep_stop_from,
        )
        sweep += logs
        if i == 0 and all(r.best_train < preset.stage1_threshold for r in logs):
            return _sweep_failure(
                sweep,
                f"stage 1 best train accuracy "
                f"{max(r.best_train for r in logs):.3f} < "
                f"{preset.stage1_threshold:g}",
            )
    best = max(sweep, key=lambda r: r.best_train)  # max() keeps the first of equals
    if best.best_train < preset.overall_threshold:
        return _sweep_failure(
            sweep, f"sweep best train accuracy {best.best_train:.3f} < {preset.overall_threshold:g}"
        )
    (final,) = trainer.train(
        [best.lr],
        epochs=preset.final_epochs,
        steps_per_epoch=preset.final_steps,
        validate=True,
        stop_below=preset.final_stop_below,
        stop_from=preset.final_stop_from,
    )
    if final.outcome == "diverged":
        best_val = max(final.val_acc, default=float("nan"))
        return SeedOutcome(
            Status.DIVERGED,
            None,
            best.lr,
            f"final run: {final.detail} (best validation before: {best_val:.3f})",
            sweep,
            final,
        )
    fitness = max(final.val_acc, default=0.0)
    return SeedOutcome(Status.OK, fitness, best.lr, final.detail, sweep, final)


def _sweep_failure(sweep: list[RunLog], reason: str) -> SeedOutcome:
    if all(r.outcome == "diverged" for r in sweep):
        return SeedOutcome(
            Status.DIVERGED, None, None, "every sweep run diverged: " + sweep[0].detail, sweep
        )
    return SeedOutcome(Status.FAILED_THRESHOLD, None, None, reason, sweep)


def _error(reason: str, started: float, config: Mapping[str, Any] | None = None) -> EvalResult:
    return EvalResult(
        Status.ERROR, reason=reason, wall_s=time.monotonic() - started, config=dict(config or {})
    )


def _resolve_preset(
    preset: str | Preset, task: str | Task | None, overrides: Mapping[str, Any] | None
) -> Preset:
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
    options: StepOptions | None = None,
) -> EvalResult:
    """Run the protocol for an optimizer factory over one or more seeds.

    Configuration mistakes (unknown preset, missing data) raise :class:`NosError`; whatever
    the optimizer does (non-finite values, exceptions, slowness) becomes the result's status.
    """
    options = options or StepOptions()
    started = time.monotonic()
    dev = task.device if isinstance(task, Task) else resolve_device(device)
    make_deterministic(dev)
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
    config = {
        "preset": p.to_dict(),
        "lr_grid": lr_grid,
        "stages": [list(s) for s in stages],
        "seeds": seed_list,
        "timeout_s": timeout_s,
        "batch_sweep": batch_sweep,
        "device": str(dev),
        "step": dataclasses.asdict(options),
    }
    the_task = (
        task
        if isinstance(task, Task)
        else load_task(p.task, data_dir=data_dir, augment=p.augment, width=p.width, device=dev)
    )
    deadline = None if timeout_s is None else started + timeout_s

    outcomes: list[SeedOutcome] = []
    steps = 0
    for seed in seed_list:
        trainer = Trainer(
            factory,
            the_task,
            p,
            seed,
            deadline=deadline,
            batch_sweep=batch_sweep,
            options=options,
        )
        try:
            outcome = run_protocol(trainer, p, stages)
        except Deadline:
            outcome = SeedOutcome(
                Status.TIMEOUT,
                reason=f"exceeded {timeout_s:g} s after {steps + trainer.steps} steps",
            )
        except Exception as exc:  # the candidate's numerics or code failed
            log.debug("evaluation error", exc_info=True)
            outcome = SeedOutcome(Status.ERROR, reason=_reason(exc, dev))
        steps += trainer.steps
        outcomes.append(outcome)
        if outcome.status in (Status.TIMEOUT, Status.ERROR):
            break  # the remaining seeds would fail the same way
    del trainer
    release_memory(dev)
    return _combine(outcomes, seed_list, steps, time.monotonic() - started, p, config)


def _reason(exc: BaseException, device: Any) -> str:
    """An error's reason; out-of-memory errors say so first, in words."""
    text = f"{type(exc).__name__}: {exc}"
    if out_of_memory(exc):
        where = "GPU memory" if str(device).startswith("cuda") else "memory"
        return f"out of {where}: {' '.join(text.split())}"[:300]
    return text


def _combine(
    outcomes: list[SeedOutcome],
    seeds: list[int],
    steps: int,
    wall: float,
    preset: Preset,
    config: dict[str, Any],
) -> EvalResult:
    worst = max(outcomes, key=lambda o: o.status.rank)
    fits = [o.fitness for o in outcomes]
    fitness = std = None
    if worst.status is Status.OK:
        values = [f for f in fits if f is not None]
        fitness = statistics.fmean(values)
        std = statistics.pstdev(values) if len(values) > 1 else 0.0
    lrs = [o.lr for o in outcomes]
    chosen = next((lr for lr in lrs if lr is not None), None)
    if worst.status is Status.OK and len(set(lrs)) > 1:
        chosen = statistics.mode(lrs)  # the most common tuned LR over the seeds
    return EvalResult(
        status=worst.status,
        fitness=fitness,
        std=std,
        reason=worst.reason,
        lr=chosen,
        steps=steps,
        wall_s=wall,
        seeds=tuple(seeds[: len(outcomes)]),
        fitness_per_seed=tuple(fits),
        status_per_seed=tuple(o.status for o in outcomes),
        lr_per_seed=tuple(lrs),
        curves=tuple(round_floats(o.final.val_acc) if o.final else () for o in outcomes),
        sweep=tuple(tuple((r.lr, round(r.best_train, 6)) for r in o.sweep) for o in outcomes),
        steps_per_epoch=preset.final_steps,
        config=config,
    )


def evaluate(spec: EvalSpec) -> EvalResult:
    """Evaluate ``spec`` (in this process); candidate problems become the result's status."""
    started = time.monotonic()
    options = spec.step_options
    try:
        factory = factory_for(
            spec.candidate, spec.grammar, flip=spec.flip, compile=options.compile_update
        )
    except (NosError, ImportError) as exc:
        return _error(f"{type(exc).__name__}: {exc}", started, {"spec": spec.to_dict()})
    oom = None
    try:
        result = evaluate_factory(
            factory,
            spec.task,
            spec.preset,
            spec.seeds,
            lr_grid=spec.lr_grid,
            lr_hint=spec.lr_hint,
            timeout_s=spec.timeout_s,
            data_dir=spec.data_dir,
            device=spec.device,
            batch_sweep=spec.batch_sweep,
            overrides=spec.overrides,
            options=options,
        )
    except Exception as exc:
        if not out_of_memory(exc):
            raise
        oom = _reason(exc, spec.device)  # e.g. the data set did not fit on the device
    if oom is not None:  # released once the exception (and the frames it holds) is gone
        release_memory(spec.device)
        return _error(oom, started, {"spec": spec.to_dict()})
    config = {**result.config, "spec": spec.to_dict()}
    return dataclasses.replace(result, config=config, wall_s=time.monotonic() - started)
