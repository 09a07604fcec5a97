"""Throughput of fitness evaluations on this machine (spec §5; reference-speed.md).

For the ``quick`` and ``mnist1d`` presets, evaluations per hour of this machine along two
paths, at equal fidelity (the same seeds, so the same fitness values within float noise):

* naive: one process with torch's default threads, sequential LR sweep, eager optimizer;
* best: two single-threaded worker processes (long-lived, as in a search: start-up is
  excluded), each running the faster sweep path as measured here first (sequential, or
  batched with ``torch.func.vmap`` when that wins by 15% or more).

Then the step rate of the ``paper`` preset's ConvNet (b = 48, batch 128, CIFAR-10 shapes) on
this CPU with all threads, extrapolated to a full particle-phase evaluation (21,600 steps)
and an initial-population one (b = 32, 13,600 steps). The reference takes 51-64 min for the
former on this machine and 221 s on the authors' GPU.

Usage: python tools/bench_eval.py [--optimizer SPEC] [--evals N] [--presets quick mnist1d]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import multiprocessing as mp
import os
import statistics
import time
from typing import Any


def _default_optimizer() -> str:
    found = all(importlib.util.find_spec(m) is not None for m in ("nos.optim", "nos.zoo"))
    return "zoo:opt10" if found else "torch:adam"


def _one(spec_dict: dict[str, Any]) -> tuple[float | None, str, float]:
    """Evaluate in this process; returns (fitness, status, wall seconds)."""
    from nos.training.protocol import evaluate
    from nos.training.spec import EvalSpec

    result = evaluate(EvalSpec.from_dict(spec_dict))
    return result.fitness, result.status, result.wall_s


def _warm(preset: str, optimizer: str | None = None) -> None:
    """Load the data and, with ``optimizer``, run one small evaluation (first-call costs)."""
    from nos.training.protocol import evaluate
    from nos.training.registry import get_preset
    from nos.training.spec import EvalSpec
    from nos.training.tasks import load_task

    p = get_preset(preset)
    load_task(p.task, augment=p.augment, width=p.width)
    if optimizer is not None:
        evaluate(EvalSpec(optimizer, preset=preset, seeds=(99,), overrides={"final_epochs": 5}))


def _init_worker(preset: str, optimizer: str) -> None:
    from nos.training.tasks import worker_init

    worker_init(1)
    _warm(preset, optimizer)


def _specs(optimizer: str, preset: str, n: int, batch: bool) -> list[dict[str, Any]]:
    from nos.training.spec import EvalSpec

    return [
        EvalSpec(optimizer, preset=preset, seeds=(seed,), batch_sweep=batch).to_dict()
        for seed in range(n)
    ]


def _naive(optimizer: str, preset: str, n: int) -> tuple[float, list[float | None]]:
    import torch

    from nos.training.registry import PRESETS

    torch.set_num_threads(torch.get_num_threads())  # torch's default: all cores
    _warm(preset, optimizer)
    # The paper's protocol has no divergence abort; only non-finite losses stop a run.
    PRESETS[preset] = PRESETS[preset].replace(divergence_factor=None)
    started = time.perf_counter()
    fits = [_one(s)[0] for s in _specs(optimizer, preset, n, False)]
    return time.perf_counter() - started, fits


def _sweep_path(optimizer: str, preset: str) -> tuple[bool, float, float]:
    """Seconds per evaluation, single-threaded, sequential vs batched sweep."""
    import torch

    torch.set_num_threads(1)
    _warm(preset, optimizer)
    times = {}
    for batch in (False, True):
        started = time.perf_counter()
        for spec in _specs(optimizer, preset, 3, batch):
            _one(spec)
        times[batch] = (time.perf_counter() - started) / 3
    # vmap has lost in every CPU measurement so far; take it only on a clear win.
    return times[True] < 0.85 * times[False], times[False], times[True]


def _best(optimizer: str, preset: str, n: int, batch: bool) -> tuple[float, list[float | None]]:
    ctx = mp.get_context("spawn")
    # Workers start warm (imports, data, first calls), as they are in a running search.
    with cf.ProcessPoolExecutor(
        2, mp_context=ctx, initializer=_init_worker, initargs=(preset, optimizer)
    ) as pool:
        list(pool.map(time.sleep, [0.5, 0.5]))  # wait until both have started
        started = time.perf_counter()
        fits = [f for f, _, _ in pool.map(_one, _specs(optimizer, preset, n, batch))]
        return time.perf_counter() - started, fits


def _paper_rate(optimizer: str, width: int, steps: int = 12) -> float:
    import torch
    import torch.nn.functional as F

    from nos.optim.factories import factory_for
    from nos.training.models import ConvNet

    torch.set_num_threads(torch.get_num_threads())
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(128, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)
    model = ConvNet(width, generator=gen)
    opt = factory_for(optimizer)(list(model.parameters()), 1e-3, 16000, 800)
    for i in range(steps + 2):
        if i == 2:  # the first steps allocate
            started = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return steps / (time.perf_counter() - started)


def _fmt(fits: list[float | None]) -> str:
    ok = [f for f in fits if f is not None]
    if not ok:
        return "no ok evaluations"
    std = statistics.pstdev(ok) if len(ok) > 1 else 0.0
    return f"mean fitness {statistics.fmean(ok):.4f} ± {std:.4f} ({len(ok)}/{len(fits)} ok)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default=None, help="zoo:NAME, torch:NAME or candidate")
    parser.add_argument(
        "--evals", type=int, default=None, help="evaluations per path (default: 8 quick, 4 mnist1d)"
    )
    parser.add_argument("--presets", nargs="+", default=["quick", "mnist1d"])
    parser.add_argument("--no-paper", action="store_true", help="skip the paper step rate")
    args = parser.parse_args()
    optimizer = args.optimizer or _default_optimizer()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"optimizer {optimizer}; {os.cpu_count()} CPUs, load average {load} at start")
    for preset in args.presets:
        n = args.evals or (8 if preset == "quick" else 4)
        batch, seq_s, bat_s = _sweep_path(optimizer, preset)
        print(
            f"\n[{preset}] one evaluation, 1 thread: sequential sweep {seq_s:.2f} s, "
            f"batched (vmap) sweep {bat_s:.2f} s -> best path uses "
            f"{'batched' if batch else 'sequential'}"
        )
        naive_s, naive_fits = _naive(optimizer, preset, n)
        best_s, best_fits = _best(optimizer, preset, n, batch)
        naive_rate, best_rate = n / naive_s * 3600, n / best_s * 3600
        same = [
            abs(a - b)
            for a, b in zip(naive_fits, best_fits, strict=True)
            if a is not None and b is not None
        ]
        print(
            f"  naive (1 process, sequential, eager): {naive_s / n:6.2f} s/eval  "
            f"{naive_rate:8.0f} evals/h  {_fmt(naive_fits)}"
        )
        print(
            f"  best  (2 workers x 1 thread):        {best_s / n:6.2f} s/eval  "
            f"{best_rate:8.0f} evals/h  {_fmt(best_fits)}"
        )
        print(
            f"  ratio {best_rate / naive_rate:.2f}x; largest per-seed fitness difference "
            f"{max(same, default=float('nan')):.4f}"
        )
    if not args.no_paper:
        from nos.training.registry import PRESETS

        print("\n[paper] ConvNet step rate on this CPU (all threads), extrapolated:")
        for name, width in (("paper", 48), ("paper-init", 32)):
            rate = _paper_rate(optimizer, width)
            total = PRESETS[name].max_steps
            print(
                f"  {name:10s} b={width}: {rate:5.2f} steps/s -> {total} steps "
                f"= {total / rate / 60:5.1f} min per evaluation (no early stop)"
            )
        print("  reference: 51-64 min (paper, this machine), 221 s (authors' GPU)")


if __name__ == "__main__":
    main()
