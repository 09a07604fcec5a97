"""Job payloads of the suite fitness, and the reference computed through any executor.

Torch-free: the payloads are plain data for :func:`nos.search.suite_eval.run_job` (the
worker function ``nos.search.worker:suite_job``).

:func:`compute_reference` tunes Adam per task and runs its rung 0 (see
:mod:`nos.search.fitness`) in two rounds of independent jobs, handed to ``run_batch``
(serially in this process, or spread over an executor's workers by
:func:`executor_batches`). :func:`candidate_payload` is the job of one search request; it
carries the reference values it needs, so workers keep no cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nos.errors import NosError
from nos.search.fitness import FitnessSpec, Reference
from nos.status import Status

__all__ = [
    "candidate_payload",
    "compute_reference",
    "executor_batches",
    "reference_seeds",
    "serial_batches",
]

RunBatch = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def _common(execution: dict[str, Any]) -> dict[str, Any]:
    return {
        "device": execution.get("device") or "cpu",
        "data_dir": execution.get("data_dir") or None,
    }


def reference_seeds(eval_seeds: Sequence[int], rescore_seeds: Sequence[int]) -> list[int]:
    return sorted(set(eval_seeds) | set(rescore_seeds))


def compute_reference(
    spec: FitnessSpec,
    seeds: Sequence[int],
    rung0_seeds: Sequence[int],
    run_batch: RunBatch,
    execution: dict[str, Any] | None = None,
) -> Reference:
    """Adam tuned on ``spec.reference_grid`` per task (on ``seeds[0]``), its final losses at
    that LR on every seed of ``seeds``, and its rung 0 on each of ``rung0_seeds``."""
    common = _common(execution or {})
    fitness = spec.to_dict()
    tuning_seed = seeds[0]
    tune = [
        {
            "job": "reference",
            "run": "train",
            "task": t.task,
            "lr": lr,
            "seed": tuning_seed,
            "fitness": fitness,
            **common,
        }
        for t in spec.tasks
        for lr in spec.reference_grid
    ]
    results = run_batch(tune)
    ref = Reference(fitness)
    for payload, result in zip(tune, results, strict=True):
        if result.get("status") != Status.OK:
            raise NosError(
                f"the reference (Adam) failed on {payload['task']} at LR {payload['lr']:g}: "
                f"{result.get('reason') or result.get('status')}"
            )
        info = ref.tasks.setdefault(payload["task"], {"grid": {}, "loss": {}, "steps": 0})
        info["grid"][repr(payload["lr"])] = result.get("loss")
        info["steps"] += int(result.get("steps") or 0)
    for name, info in ref.tasks.items():
        finite = [(loss, float(lr)) for lr, loss in info["grid"].items() if loss is not None]
        if not finite:
            raise NosError(f"the reference (Adam) diverged at every LR of its grid on {name}")
        best_loss, best_lr = min(finite)
        info["lr"] = best_lr
        info["loss"][str(tuning_seed)] = best_loss
    second = [
        {
            "job": "reference",
            "run": "train",
            "task": name,
            "lr": info["lr"],
            "seed": s,
            "fitness": fitness,
            **common,
        }
        for name, info in ref.tasks.items()
        for s in seeds
        if s != tuning_seed
    ]
    base_lr = ref.tasks[spec.rung0.task]["lr"]
    second += [
        {
            "job": "reference",
            "run": "rung0",
            "seed": s,
            "base_lr": base_lr,
            "fitness": fitness,
            **common,
        }
        for s in rung0_seeds
    ]
    for payload, result in zip(second, run_batch(second), strict=True):
        if result.get("status") != Status.OK or (
            payload["run"] == "train" and result.get("loss") is None
        ):
            raise NosError(
                f"the reference (Adam) failed ({payload['run']}, seed {payload['seed']}): "
                f"{result.get('reason') or 'diverged'}"
            )
        if payload["run"] == "train":
            info = ref.tasks[payload["task"]]
            info["loss"][str(payload["seed"])] = result["loss"]
            info["steps"] += int(result.get("steps") or 0)
        else:
            ref.rung0[str(payload["seed"])] = {
                k: result.get(k) for k in ("multiple", "lr", "loss", "probe", "trials", "steps")
            }
    return ref


def serial_batches(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run reference jobs one after another in this process."""
    from nos.search.suite_eval import run_job

    return [run_job(p) for p in payloads]


def executor_batches(executor: Any, prefix: str = "reference") -> RunBatch:
    """Run each batch of jobs on an executor's workers; results in payload order."""
    counter = [0]

    def run(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ids = []
        for payload in payloads:
            counter[0] += 1
            ids.append(f"{prefix}/{counter[0]}")
            executor.submit(ids[-1], payload)
        got: dict[str, dict[str, Any]] = {}
        while len(got) < len(ids):
            for outcome in executor.wait(timeout=1.0):
                got[outcome.job_id] = outcome.result
        return [got[i] for i in ids]

    return run


def candidate_payload(
    *,
    candidate: str,
    grammar: str,
    flip: bool,
    seeds: Sequence[int],
    rung0_seed: int,
    spec: FitnessSpec,
    reference: Reference,
    full: bool,
    execution: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """The job of one candidate evaluation (rung 0, and rung 1 when ``full``)."""
    return {
        "job": "candidate",
        "candidate": candidate,
        "grammar": grammar,
        "flip": flip,
        "seeds": list(seeds),
        "rung0_seed": rung0_seed,
        "full": full,
        "fitness": spec.to_dict(),
        "reference": reference.for_seeds(seeds if full else (), rung0_seed),
        "timeout_s": timeout_s,
        **_common(execution or {}),
    }
