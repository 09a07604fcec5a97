"""One bench run as a plain-data job: ``run_job(payload) -> result`` (``"nos.bench.jobs:run_job"``).

The payload names the optimizer (an :class:`~nos.bench.specs.OptSpec` payload), the task,
its budget, the learning rate and weight decay, the seed and whether to score the test
split; the result holds the :class:`~nos.training.curves.Curve` as a dict. The same payload
gives the same result in any process: the run depends on nothing else, so the number of
workers never changes a bench.

Statuses: ``ok``; ``diverged`` (a non-finite loss ended the run); ``failed`` (the optimizer
raised - a fault of the optimizer, recorded like a divergence); ``error`` (the task could
not be loaded, e.g. missing data files - not a result: the bench stops and says why).
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_job"]

_TASKS: dict[tuple[Any, ...], Any] = {}


def _load(payload: dict[str, Any]) -> Any:
    from nos.training.registry import get_task
    from nos.training.tasks import load_task

    name = payload["task"]
    options = dict(payload.get("task_options") or {})
    key = (
        name,
        payload.get("data_dir"),
        payload.get("device", "cpu"),
        tuple(sorted(options.items())),
    )
    if key not in _TASKS:
        info = get_task(name)
        _TASKS[key] = load_task(
            name,
            data_dir=payload.get("data_dir"),
            augment=info.augmentable,
            device=payload.get("device", "cpu"),
            include_test=True,
            **options,
        )
    return _TASKS[key]


def run_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Train one run of the bench (see the module docstring)."""
    from nos.bench.optimizers import factory_for_payload
    from nos.training.curves import train_curve
    from nos.training.presets import Budget

    try:
        task = _load(payload)
    except Exception as exc:  # missing or bad data: the bench cannot go on
        return {"status": "error", "detail": f"task {payload['task']}: {exc}"}
    budget = Budget(**payload["budget"])
    notes: list[str] = []
    opt_payload = payload["opt"]
    if opt_payload.get("kind") == "plane-search":
        budget = budget.replace(batch_size=0)  # plane search is a full-batch method
    try:
        factory = factory_for_payload(opt_payload, task, payload.get("wd"))

        def watched(params: Any, lr: float, total: int, warmup: int) -> Any:
            opt = factory(params, lr, total, warmup)
            if getattr(opt, "muon_params", None) == 0:
                notes.append("no hidden weight matrix: Muon runs as AdamW here")
            return opt

        lr = payload.get("lr")
        curve = train_curve(
            watched,
            task,
            budget,
            0.0 if lr is None else float(lr),  # plane search has no learning rate
            int(payload["seed"]),
            test=bool(payload.get("test")),
        )
    except Exception as exc:  # the optimizer's fault: recorded, the bench goes on
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
        return {"status": "failed", "detail": detail, "curve": None, "notes": notes}
    result: dict[str, Any] = {
        "status": "diverged" if curve.diverged else "ok",
        "detail": curve.detail,
        "curve": curve.to_dict(),
        "notes": notes,
    }
    if task.test_y is not None:
        result["n_test"] = len(task.test_y)
    return result
