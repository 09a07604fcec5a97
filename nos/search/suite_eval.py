"""The suite fitness's training, run in the workers: candidate jobs and reference jobs.

:func:`run_job` reads a plain-data payload (built by :mod:`nos.search.suite_jobs`) and
returns a plain-data result; see :mod:`nos.search.fitness` for what is scored. It never
raises for a candidate's faults: non-finite values end a run as diverged, exceptions
inside the optimizer become ``error``, a wall-clock limit ``timeout``.

Steps are counted as optimizer steps, probes included, per rung.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nos.optim.factories import OptimizerFactory, factory_for
from nos.search.fitness import REFERENCE_OPTIMIZER, FitnessSpec, aggregate, log_ratio
from nos.status import Status
from nos.training.curves import Deadline, train_curve
from nos.training.device import make_deterministic, resolve_device
from nos.training.presets import Budget
from nos.training.tasks import BatchOrder, Task, load_task

__all__ = ["probe_step_length", "run_job", "rung0_multiples", "sweep_rung0"]

log = logging.getLogger(__name__)

#: A sweep trial stops once its training loss is this many times its first one.
STOP_ABOVE = 3.0
_HALF_DECADE = math.sqrt(10.0)
_PAPER_LRS = (10.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def _task(name: str, payload: Mapping[str, Any]) -> Task:
    device = resolve_device(str(payload.get("device") or "cpu"))
    make_deterministic(device)
    return load_task(name, data_dir=payload.get("data_dir") or None, device=device)


@torch.no_grad()
def _flat(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


def probe_step_length(
    factory: OptimizerFactory, task: Task, budget: Budget, seed: int, steps: int, lr: float
) -> float | None:
    """Mean length of the weight change per step and unit LR over the first ``steps`` steps
    (constant LR, the run's seeded network and batches); ``None`` if it is not finite."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = task.build_model(seed)
        model.train()
        params = list(model.parameters())
        opt = factory(params, lr, 10**6, 0)  # a long schedule: the LR stays ~constant
        size = len(task.train_y)
        batch = min(budget.batch_size or size, size)
        order = BatchOrder(
            size,
            batch,
            shuffle=batch < size,
            generator=torch.Generator().manual_seed(seed),
            device=task.device,
        )
        total = 0.0
        for _ in range(steps):
            index = order.next()
            before = _flat(params)
            opt.zero_grad(set_to_none=True)
            task.loss(model(task.train_x[index]), task.train_y[index]).backward()
            opt.step()
            total += float(torch.linalg.vector_norm(_flat(params) - before))
    value = total / (steps * lr)
    return value if math.isfinite(value) and value > 0 else None


def _half_decades(x: float) -> int:
    return round(2.0 * math.log10(x))


def _round_half_decade(x: float) -> float:
    return float(10.0 ** (round(2.0 * math.log10(x)) / 2.0))


def rung0_multiples(scheme: str, base_lr: float, matched: float | None) -> list[float]:
    """The first trials of a scheme, as multiples of the reference LR ``base_lr``."""
    if scheme == "matched":
        centre = 1.0 if matched is None else min(1e4, max(1e-4, matched))
        centre = _round_half_decade(centre)
        return [centre, centre / _HALF_DECADE, centre * _HALF_DECADE]
    if scheme == "decades":
        return [1.0, 1e-1, 1e1, 1e-2, 1e2]
    if scheme == "paper":
        return [lr / base_lr for lr in _PAPER_LRS]
    raise ValueError(f"unknown LR scheme {scheme!r}")


def _final(curve: Any) -> float | None:
    loss = curve.final_loss
    return loss if loss is not None and math.isfinite(loss) else None


def sweep_rung0(
    factory: OptimizerFactory,
    task: Task,
    spec: FitnessSpec,
    base_lr: float,
    seed: int,
    *,
    reference_probe: float | None,
    is_reference: bool = False,
    hopeless: float | None = None,
    deadline: float | None = None,
) -> dict[str, Any]:
    """Rung 0: the LR scheme on the rung-0 task. Returns the trials, the chosen multiple
    (of ``base_lr``), its loss (``None``: every trial diverged), the probe and the steps.

    The matched scheme centres its trials on ``reference_probe / probe`` (1 for the
    reference itself, ``is_reference``); it tries no neighbours when the best of its first
    trials has a loss above ``hopeless`` (no neighbour would clear the hurdle)."""
    budget = spec.rung0.budget
    steps = 0
    probe = matched = None
    if spec.lr_scheme == "matched":
        probe = probe_step_length(factory, task, budget, seed, spec.probe_steps, spec.probe_lr)
        steps += spec.probe_steps
        if is_reference:
            matched = 1.0
        elif probe is not None and reference_probe is not None:
            matched = reference_probe / probe
    multiples = rung0_multiples(spec.lr_scheme, base_lr, matched)
    trials: list[tuple[float, float | None]] = []

    def trial(m: float) -> None:
        nonlocal steps
        curve = train_curve(
            factory, task, budget, base_lr * m, seed, deadline=deadline, stop_above=STOP_ABOVE
        )
        steps += curve.trained
        trials.append((m, _final(curve)))

    for m in multiples:
        trial(m)
    if spec.lr_scheme == "matched":
        # Try the untried half-decade neighbours of the best trial (above first), and
        # while every trial diverged go down by decades: steps matched to Adam's can be
        # too long for an update that follows the raw gradient.
        for _ in range(spec.extend):
            best = _best(trials)
            tried = {_half_decades(m) for m, _ in trials}
            best_loss = None if best is None else dict(trials)[best]
            if best_loss is not None and hopeless is not None and best_loss > hopeless:
                break
            if best is None:
                trial(min(m for m, _ in trials) / 10.0)
                continue
            untried = [
                m
                for m in (best * _HALF_DECADE, best / _HALF_DECADE)
                if _half_decades(m) not in tried
            ]
            if not untried:
                break
            trial(untried[0])
    best = _best(trials)
    loss = None if best is None else dict(trials)[best]
    return {
        "trials": [[m, loss_] for m, loss_ in trials],
        "multiple": best,
        "lr": None if best is None else base_lr * best,
        "loss": loss,
        "probe": probe,
        "steps": steps,
    }


def _best(trials: list[tuple[float, float | None]]) -> float | None:
    """The multiple with the lowest loss; ties go to the earlier trial."""
    finite = [(loss, i, m) for i, (m, loss) in enumerate(trials) if loss is not None]
    return min(finite)[2] if finite else None


# ------------------------------------------------------------------------ candidates


def _candidate(payload: Mapping[str, Any], deadline: float | None) -> dict[str, Any]:
    spec = FitnessSpec.from_dict(payload["fitness"])
    ref = payload["reference"]
    factory = factory_for(
        str(payload["candidate"]),
        str(payload.get("grammar") or "morgan2024"),
        flip=bool(payload.get("flip")),
    )
    seeds = [int(s) for s in payload["seeds"]]
    rung0_seed = int(payload.get("rung0_seed", seeds[0]))
    first = spec.rung0.task
    base_lr = float(ref["tasks"][first]["lr"])
    ref0 = ref["rung0"]
    full = bool(payload.get("full", True))
    r0 = sweep_rung0(
        factory,
        _task(first, payload),
        spec,
        base_lr,
        rung0_seed,
        reference_probe=ref0.get("probe"),
        # a loss this far above the reference's would miss the hurdle by twice its width
        hopeless=float(ref0["loss"]) * math.exp(2 * spec.hurdle) if full else None,
        deadline=deadline,
    )
    details: dict[str, Any] = {
        "rung": 0,
        "steps_per_rung": [r0["steps"]],
        "rung0": {k: r0[k] for k in ("trials", "multiple", "lr", "loss", "probe")},
        "reference_rung0": {"multiple": ref0["multiple"], "loss": ref0["loss"]},
    }
    out: dict[str, Any] = {"lr": r0["lr"], "steps": r0["steps"], "suite": details}
    if r0["multiple"] is None:
        return {**out, "status": Status.DIVERGED, "reason": "rung 0: every LR trial diverged"}
    ratio0 = log_ratio(ref0["loss"], r0["loss"], math.inf)
    score0 = max(-spec.clip, min(spec.clip, ratio0))
    details["rung0_score"] = score0
    if not full:
        # the initial population: rung 0 is its whole evaluation, nothing to stop before
        return {**out, "status": Status.OK, "fitness": score0, "fitness_per_seed": [score0]}
    if ratio0 < -spec.hurdle:
        return {
            **out,
            "status": Status.FAILED_THRESHOLD,
            "reason": (
                f"rung 0 ({first}): loss {r0['loss']:.4g} vs the reference's "
                f"{ref0['loss']:.4g}, log ratio {ratio0:.3f} < -{spec.hurdle:g}"
            ),
        }
    # rung 1: every task at its full budget, the LR carried over as a multiple of Adam's
    multiple = r0["multiple"] / float(ref0["multiple"])
    details.update(rung=1, multiple=multiple, tasks={})
    per_task: dict[str, list[float]] = {}
    steps1 = 0
    for entry in spec.tasks:
        info = ref["tasks"][entry.task]
        task = _task(entry.task, payload)
        lr = float(info["lr"]) * multiple
        losses: list[float | None] = []
        started = time.monotonic()
        for seed in seeds:
            curve = train_curve(factory, task, entry.budget, lr, seed, deadline=deadline)
            steps1 += curve.trained
            losses.append(_final(curve))
        wall = round(time.monotonic() - started, 3)
        scores = [
            log_ratio(float(info["loss"][str(s)]), loss, spec.clip)
            for s, loss in zip(seeds, losses, strict=True)
        ]
        per_task[entry.task] = scores
        details["tasks"][entry.task] = {"lr": lr, "loss": losses, "score": scores, "wall_s": wall}
    details["steps_per_rung"].append(steps1)
    fitness, per_seed = aggregate(per_task)
    out["steps"] = r0["steps"] + steps1
    if all(loss is None for t in details["tasks"].values() for loss in t["loss"]):
        return {**out, "status": Status.DIVERGED, "reason": "rung 1: every run diverged"}
    return {**out, "status": Status.OK, "fitness": fitness, "fitness_per_seed": per_seed}


# ------------------------------------------------------------------------ references


def _reference(payload: Mapping[str, Any], deadline: float | None) -> dict[str, Any]:
    """One reference run: ``train`` (a task, an LR, a seed -> final loss) or ``rung0``."""
    factory = factory_for(REFERENCE_OPTIMIZER)
    spec = FitnessSpec.from_dict(payload["fitness"])
    seed = int(payload["seed"])
    if payload["run"] == "train":
        name = str(payload["task"])
        curve = train_curve(
            factory,
            _task(name, payload),
            spec.budget(name),
            float(payload["lr"]),
            seed,
            deadline=deadline,
        )
        return {
            "status": Status.OK,
            "loss": _final(curve),
            "steps": curve.trained,
            "curve": curve.val_loss,
        }
    task = _task(spec.rung0.task, payload)
    r0 = sweep_rung0(
        factory,
        task,
        spec,
        float(payload["base_lr"]),
        seed,
        reference_probe=None,
        is_reference=True,
        deadline=deadline,
    )
    if r0["loss"] is None:
        return {"status": Status.ERROR, "reason": "the reference diverged on rung 0", **r0}
    return {"status": Status.OK, **r0}


def run_job(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Run one suite-fitness job (``payload["job"]``: ``candidate`` or ``reference``)."""
    started = time.monotonic()
    timeout = payload.get("timeout_s")
    deadline = None if not timeout else started + float(timeout)
    try:
        if payload.get("job") == "reference":
            result = _reference(payload, deadline)
        else:
            result = _candidate(payload, deadline)
    except Deadline:
        result = {"status": Status.TIMEOUT, "reason": f"exceeded {timeout} s"}
    except Exception as exc:  # the candidate's numerics or code failed
        log.debug("suite evaluation error", exc_info=True)
        result = {"status": Status.ERROR, "reason": f"{type(exc).__name__}: {exc}"}
    result["wall_s"] = round(time.monotonic() - started, 3)
    return result
