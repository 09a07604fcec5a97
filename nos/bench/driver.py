"""Planning and running a bench: the settings, the runs they imply, and the loop over them.

:func:`make_settings` turns the choices of ``nos bench`` into plain data (``settings.json``);
:func:`plan` lists the (optimizer, task) cells and the settings of their trials;
:func:`run_bench` runs what the record does not hold yet and writes the report.

The order of events is deterministic in everything that matters: a cell's seeds start once
all of its trials are recorded, and the choice among the trials reads them by index, so
the results do not depend on the number of workers or the order runs finish in.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from nos.bench.plan import TUNE_SEED, Cell, chosen_trial, plan, run_key, test_seeds
from nos.bench.specs import OptSpec
from nos.bench.store import BenchStore
from nos.errors import NosError

__all__ = [
    "JOB_FUNCTION",
    "TUNE_SEED",
    "Cell",
    "compare_settings",
    "make_settings",
    "plan",
    "run_bench",
    "run_key",
    "scaled_budget",
    "test_seeds",
]

#: The job every run is (:func:`nos.bench.jobs.run_job`).
JOB_FUNCTION = "nos.bench.jobs:run_job"
SETTINGS_VERSION = 1
#: Settings that may change between a bench and its resumption.
_FREE = ("workers",)


def scaled_budget(budget: dict[str, Any], steps: int | None) -> dict[str, Any]:
    """``budget`` (a Budget dict) trained for ``steps`` instead; warmup and evaluation
    interval keep their proportions (for quick checks)."""
    if steps is None:
        return dict(budget)
    scale = steps / budget["steps"]
    warmup = min(round(budget["warmup"] * scale), steps - 1)
    every = max(1, min(steps, round(budget["eval_every"] * scale)))
    return {**budget, "steps": steps, "warmup": max(0, warmup), "eval_every": every}


def make_settings(
    specs: list[OptSpec],
    tasks: list[str],
    *,
    suite: str | None,
    trials: int,
    seeds: int,
    tune: str,
    steps: int | None = None,
    lr_range: tuple[float, float] | None = None,
    device: str = "cpu",
    data_dir: str | None = None,
    task_options: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The plain-data settings of a bench (what ``settings.json`` holds)."""
    from nos.training.registry import get_task

    if trials < 1 or seeds < 1:
        raise NosError("--trials and --seeds must be at least 1")
    if not tasks:
        raise NosError("no task to bench")
    budgets = {t: scaled_budget(get_task(t).budget.to_dict(), steps) for t in tasks}
    return {
        "version": SETTINGS_VERSION,
        "suite": suite,
        "tasks": list(tasks),
        "optimizers": [s.to_dict() for s in specs],
        "trials": trials,
        "seeds": seeds,
        "tune": tune,
        "tune_seed": TUNE_SEED,
        "steps": steps,
        "lr_range": list(lr_range) if lr_range else None,
        "budgets": budgets,
        "device": device,
        "data_dir": data_dir,
        "task_options": {t: dict(o) for t, o in (task_options or {}).items()},
    }


def compare_settings(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """The names of the settings in which ``new`` differs from ``old``."""
    keys = sorted((set(new) | set(old)) - set(_FREE))
    return [k for k in keys if _normal(new.get(k)) != _normal(old.get(k))]


def _normal(value: Any) -> Any:
    # settings.json turns tuples into lists; compare as JSON would
    import json

    return json.loads(json.dumps(value, sort_keys=True))


def _payload(
    settings: dict[str, Any], cell: Cell, point: dict[str, Any], seed: int, test: bool
) -> dict[str, Any]:
    return {
        "opt": cell.spec.payload,
        "task": cell.task,
        "task_options": settings["task_options"].get(cell.task, {}),
        "data_dir": settings.get("data_dir"),
        "device": settings.get("device", "cpu"),
        "budget": settings["budgets"][cell.task],
        "lr": point.get("lr"),
        "wd": point.get("wd"),
        "seed": seed,
        "test": test,
    }


def _tuned(cell: Cell, records: dict[str, dict[str, Any]]) -> bool:
    return all(
        run_key(cell.spec.label, cell.task, "tune", i) in records for i in range(len(cell.points))
    )


def _executor(workers: int) -> Any:
    from nos.executors import LocalExecutor, SerialExecutor

    if workers <= 1:
        from nos.bench import jobs

        return SerialExecutor(lambda payload: jobs.run_job(payload))
    return LocalExecutor(JOB_FUNCTION, workers=workers)


def run_bench(
    settings: dict[str, Any],
    out: str | Path,
    *,
    resume: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the bench ``settings`` into ``out`` (continuing its record with ``resume``) and
    write its report; returns the report (what ``bench.json`` holds)."""
    from tqdm import tqdm

    from nos.bench.report import write_report

    out = Path(out)
    store = BenchStore.resume(out) if resume else BenchStore.create(out, settings)
    started, t0 = time.time(), time.monotonic()
    ran = 0
    try:
        for warning in store.warnings:
            print(f"nos: warning: {warning}", file=sys.stderr)
        cells = [c for c in plan(settings) if c.applies]
        seeds = test_seeds(settings)
        planned = {
            run_key(c.spec.label, c.task, "tune", i) for c in cells for i in range(len(c.points))
        } | {run_key(c.spec.label, c.task, "test", s) for c in cells for s in seeds}
        done = len(planned & set(store.records))
        executor = _executor(workers)
        inflight: dict[str, tuple[Cell, str, int, dict[str, Any]]] = {}
        tests_submitted: set[tuple[str, str]] = set()
        with tqdm(
            total=len(planned),
            initial=done,
            desc="nos bench",
            unit="run",
            file=sys.stderr,
            disable=None if progress else True,
        ) as bar:

            def submit(cell: Cell, phase: str, index: int, point: dict[str, Any]) -> None:
                key = run_key(cell.spec.label, cell.task, phase, index)
                if key in store.records or key in inflight:
                    return
                seed = settings["tune_seed"] if phase == "tune" else index
                executor.submit(key, _payload(settings, cell, point, seed, phase == "test"))
                inflight[key] = (cell, phase, index, point)

            def submit_tests(cell: Cell) -> None:
                ident = (cell.spec.label, cell.task)
                if ident in tests_submitted or not _tuned(cell, store.records):
                    return
                tests_submitted.add(ident)
                best = chosen_trial(settings, cell, store.records)
                if best is None:  # no trial finished: nothing to test
                    bar.total -= len(seeds)
                    bar.refresh()
                    return
                for seed in seeds:
                    submit(cell, "test", seed, cell.points[best])

            try:
                for cell in cells:
                    for i, point in enumerate(cell.points):
                        submit(cell, "tune", i, point)
                for cell in cells:
                    submit_tests(cell)
                while inflight:
                    for outcome in executor.wait(timeout=1.0):
                        cell, phase, index, point = inflight.pop(outcome.job_id)
                        result = outcome.result
                        if result.get("status") == "error":
                            detail = result.get("detail") or result.get("reason") or "unknown"
                            raise NosError(f"{cell.spec.label} on {cell.task}: {detail}")
                        store.append(
                            {
                                "key": outcome.job_id,
                                "opt": cell.spec.label,
                                "task": cell.task,
                                "phase": phase,
                                "index": index,
                                "lr": point.get("lr"),
                                "wd": point.get("wd"),
                                "seed": settings["tune_seed"] if phase == "tune" else index,
                                "status": result.get("status"),
                                "detail": result.get("detail", ""),
                                "notes": result.get("notes", []),
                                "n_test": result.get("n_test"),
                                "curve": result.get("curve"),
                                "wall_s": round(outcome.wall_s, 3),
                                "worker": outcome.worker,
                            }
                        )
                        ran += 1
                        bar.update()
                        bar.set_postfix_str(f"{cell.spec.label[:20]} on {cell.task}")
                        if phase == "tune":
                            submit_tests(cell)
            finally:
                executor.close()
    finally:
        store.add_session(started, time.monotonic() - t0, ran)
        store.close()
    return write_report(settings, store.records, out, sessions=store.sessions())
