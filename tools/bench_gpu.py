"""The paper's proxy on a GPU: the fast step against the plain eager one, side by side.

In one run, on CIFAR-10-format data generated at full size (50,000 training images in the
official binary layout; random pixels plus a colour that depends on the class, so that a
good optimizer passes the protocol's thresholds and the final run trains):

1. **Latency** of one full ``paper``-preset evaluation with the real protocol (7-LR sweep
   of 4 x 200 steps, thresholds, final run of 40 x 400 steps with validation; ConvNet
   b = 48, batch 128, augmentation on the device), per step path: *cold* (the first of
   the process, compilation included) and *warm* (the next candidate, as every later
   evaluation of a search worker runs).
2. **Packing**: evaluations per GPU-hour with K workers pinned to one GPU (the local
   executor, as ``nos search --workers-per-gpu K`` runs them), for several K, per path.
   Workers are warmed with one short evaluation each first. The packed evaluations may
   use a shorter final run (``--pack-final-epochs``); the per-hour rate is then also
   given at the full preset's step count, from the aggregate step rate.
3. **Determinism** (CUDA): the fast path again with CUDA's deterministic settings off, so
   their cost is measured, not guessed.
4. **Step rate**: steps per second of one training run (the protocol's trainer: batch
   gathering, augmentation, forward, backward, the candidate's update) per path, after an
   untimed run that pays for first-call costs.

Paths: ``eager`` (float32, no compilation, no graph, plain layout), ``fast`` (``--fast``;
default on CUDA: channels-last and the whole step in a CUDA graph, nothing compiled; on a
CPU: channels-last), ``fast-compiled`` (``fast`` with the network compiled once per
process), ``fast-bf16`` (``fast`` with bf16 autocast) and ``batched`` (``eager`` with each
sweep stage trained as one vmapped model). The figures are written to ``--json`` after
each measurement, so a run cut short keeps what it measured.

``--tiny`` (the default on a CPU; ``--full`` overrides it) runs the same code on a tiny
configuration: 200 images, ConvNet b = 8, a few steps per phase, no thresholds. A test
runs it. ``--device cpu --full --only rate`` measures the real network's step on a CPU.

    python tools/bench_gpu.py [--device auto] [--tiny | --full] [--only latency,packing,rate]
        [--ks 1,2,4,8] [--json FILE] [--rate-steps 200]
        [--candidates zoo:adam,zoo:opt10] [--paths eager,fast,fast-bf16,batched]
        [--pack-paths eager,fast] [--pack-evals 2] [--pack-final-epochs 40]
        [--fast compile=model,cuda_graph=1]

Goals on one H100/H200-class GPU (issue 16): <= 10 s per paper-preset evaluation and
>= 1,000 evaluations per GPU-hour with packing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TOOLS = Path(__file__).resolve().parent
JOB = "bench_gpu:job"  # the workers import this file by name (TOOLS is on sys.path)

#: The tiny configuration (CPU): preset fields and data size.
TINY = {
    "width": 8,
    "batch_size": 32,
    "sweep_epochs": 2,
    "sweep_steps": 1,
    "final_steps": 2,
    "final_epochs": 2,
    "warmup": 2,
    "total_steps": 8,
    # so few steps learn nothing: the thresholds are off, so that every phase still runs
    "stage1_threshold": 0.0,
    "overall_threshold": 0.0,
    "sweep_stop_below": 0.0,
    "final_stop_below": 0.0,
}
TINY_IMAGES, TINY_VALIDATION = 40, 40  # per batch file; validation images
FULL_IMAGES, FULL_VALIDATION = 10_000, 5_000


def write_cifar(root: Path, per_file: int, seed: int = 0) -> Path:
    """Five training batches in CIFAR-10's binary layout (label byte + 3 x 1,024 pixels)."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 128, (10, 3), dtype=np.uint8)  # a colour per class
    for i in range(1, 6):
        labels = rng.integers(0, 10, per_file, dtype=np.uint8)
        noise = rng.integers(0, 128, (per_file, 3, 1024), dtype=np.uint8)
        pixels = (noise + palette[labels][:, :, None]).reshape(per_file, 3072)
        records = np.concatenate([labels[:, None], pixels], axis=1)
        (folder / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    return root


def parse_options(text: str) -> dict[str, Any]:
    """``compile=model,cuda_graph=1,precision=bf16,channels_last=auto`` as StepOptions fields."""
    out: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        if key in ("cuda_graph", "channels_last"):
            flag = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}
            out[key] = None if value == "auto" else flag[value.lower()]
        else:
            out[key] = value
    return out


def job(payload: dict[str, Any]) -> dict[str, Any]:
    """One evaluation (in this process or a worker): the paper preset on the generated data."""
    import torch

    import nos.training.protocol as protocol
    from nos.optim.factories import factory_for
    from nos.training.registry import get_preset
    from nos.training.spec import StepOptions
    from nos.training.tasks import load_task

    fields = dict(payload["options"])
    batch_sweep = bool(fields.pop("batch_sweep", False))
    options = StepOptions(**fields)
    preset = get_preset("paper").replace(**payload["overrides"])
    task = load_task(
        "cifar10",
        data_dir=payload["data_dir"],
        augment=True,
        width=preset.width,
        device=payload["device"],
        validation_size=payload["validation_size"],
    )
    factory = factory_for(payload["candidate"], compile=options.compile_update)
    deterministic = protocol.make_deterministic

    def loose(device: Any) -> None:  # CUDA's deterministic settings off, the autotuner on
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True

    if not payload.get("deterministic", True):
        protocol.make_deterministic = loose
    started = time.perf_counter()
    try:
        result = protocol.evaluate_factory(
            factory,
            task,
            preset,
            payload["seed"],
            options=options,
            lr_grid="paper",
            batch_sweep=batch_sweep,
        )
    finally:
        protocol.make_deterministic = deterministic  # the next evaluation sets them again
    wall = time.perf_counter() - started
    return {
        "status": str(result.status),
        "reason": result.reason,
        "fitness": result.fitness,
        "steps": result.steps,
        "wall_s": wall,
    }


def _paths(device: str, fast: str) -> dict[str, dict[str, Any]]:
    cuda = device.startswith("cuda")
    default = "cuda_graph=1" if cuda else "channels_last=1"
    options = parse_options(fast if fast is not None else default)
    return {
        "eager": {"channels_last": False},
        "fast": options,
        "fast-compiled": {**options, "compile": "model"},
        "fast-bf16": {**options, "precision": "bf16"},
        "batched": {"channels_last": False, "batch_sweep": True},
    }


def _payload(
    args: argparse.Namespace,
    path: dict[str, Any],
    candidate: str,
    seed: int,
    overrides: dict[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    return {
        "candidate": candidate,
        "seed": seed,
        "options": path,
        "data_dir": str(args.data),
        "validation_size": args.validation_size,
        "device": device or args.device,
        "overrides": {**args.overrides, **(overrides or {})},
        "deterministic": True,
    }


def _line(name: str, r: dict[str, Any]) -> str:
    fit = "-" if r["fitness"] is None else f"{r['fitness']:.4f}"
    rate = r["steps"] / r["wall_s"] if r["wall_s"] > 0 else float("nan")
    return (
        f"  {name:30s} {r['wall_s']:8.2f} s  {r['steps']:6d} steps  {rate:8.1f} steps/s  "
        f"{r['status']:16s} fitness {fit}"
    )


def _save(args: argparse.Namespace) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps(args.report, indent=1) + "\n")


def latency(args: argparse.Namespace, paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Cold and warm evaluations per path, in this process."""
    out: dict[str, Any] = args.report.setdefault("latency", {})
    first, second = args.candidates[0], args.candidates[1 % len(args.candidates)]
    for name in args.paths:
        cold = job(_payload(args, paths[name], first, 0))
        warm = job(_payload(args, paths[name], second, 1))
        out[name] = {"cold": cold, "warm": warm}
        _save(args)
        print(_line(f"{name} (cold, {first})", cold))
        print(_line(f"{name} (warm, {second})", warm), flush=True)
    if args.device.startswith("cuda") and "fast" in paths:
        loose = {**_payload(args, paths["fast"], second, 1), "deterministic": False}
        out["fast-nondeterministic"] = {"warm": job(loose)}
        _save(args)
        print(_line("fast, not deterministic", out["fast-nondeterministic"]["warm"]))
    base = out.get("eager", {}).get("warm")
    for name, r in out.items():
        if base is not None and name != "eager":
            ratio = base["wall_s"] / r["warm"]["wall_s"]
            r["warm_speedup_vs_eager"] = ratio
            print(f"  {name}: {ratio:.2f}x the eager path (warm)")
    return out


def packing(args: argparse.Namespace, paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Evaluations per hour with K workers on one device, per path."""
    from nos.executors import LocalExecutor
    from nos.training.device import worker_pinning
    from nos.training.registry import get_preset

    out: dict[str, Any] = args.report.setdefault("packing", {})
    preset = get_preset("paper").replace(**args.overrides)
    short = {"final_epochs": args.pack_final_epochs} if args.pack_final_epochs else {}
    warmup = {"final_epochs": 1, "sweep_steps": max(2, args.overrides.get("sweep_steps", 200) // 8)}
    for name in args.pack_paths:
        for k in args.ks:
            pin = worker_pinning(args.device_one, workers_per_gpu=k)
            env = list(pin.envs) or None
            with LocalExecutor(JOB, workers=k, worker_env=env) as ex:
                for i in range(k):  # one warm-up evaluation per worker (compilation, cuDNN)
                    warm = _payload(args, paths[name], args.candidates[0], 99, warmup, pin.device)
                    ex.submit(f"warm{i}", warm)
                _drain(ex, k)
                n = k * args.pack_evals
                started = time.perf_counter()
                for i in range(n):
                    cand = args.candidates[i % len(args.candidates)]
                    ex.submit(f"e{i}", _payload(args, paths[name], cand, i, short, pin.device))
                results = _drain(ex, n)
                wall = time.perf_counter() - started
            steps = sum(r.get("steps", 0) for r in results)
            ok = sum(r.get("status") == "ok" for r in results)
            per_hour = n / wall * 3600
            entry = {
                "k": k,
                "evals": n,
                "ok": ok,
                "wall_s": wall,
                "steps": steps,
                "evals_per_hour": per_hour,
                "steps_per_s": steps / wall,
            }
            if short:  # the rest of the final run that the short evaluations left out
                rest = (preset.final_epochs - args.pack_final_epochs) * preset.final_steps
                full = args.full_steps or round(steps / n + rest)
                entry["full_steps"] = full
                entry["evals_per_hour_at_full_steps"] = steps / wall * 3600 / full
            out.setdefault(name, []).append(entry)
            _save(args)
            extra = (
                f", {entry['evals_per_hour_at_full_steps']:7.0f}/h at "
                f"{entry['full_steps']} steps per evaluation"
                if "evals_per_hour_at_full_steps" in entry
                else ""
            )
            print(
                f"  {name:10s} K={k}: {n} evals ({ok} ok) in {wall:7.2f} s -> "
                f"{per_hour:8.0f} evals/h, {steps / wall:8.1f} steps/s{extra}",
                flush=True,
            )
    return out


def rate(args: argparse.Namespace, paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Steps per second of one training run per path (the first run of each is untimed)."""
    import torch

    from nos.optim.factories import factory_for
    from nos.training.registry import get_preset
    from nos.training.spec import StepOptions
    from nos.training.tasks import load_task
    from nos.training.trainer import Trainer

    out: dict[str, Any] = args.report.setdefault("rate", {})
    preset = get_preset("paper").replace(**args.overrides)
    task = load_task(
        "cifar10",
        data_dir=args.data,
        augment=True,
        width=preset.width,
        device=args.device,
        validation_size=args.validation_size,
    )
    run: dict[str, Any] = {"validate": False, "stop_below": 0.0, "stop_from": 1 << 30, "epochs": 1}
    for name in args.paths:
        fields = dict(paths[name])
        if fields.pop("batch_sweep", False):
            continue  # one run has no sweep to batch
        options = StepOptions(**fields)
        factory = factory_for(args.candidates[0], compile=options.compile_update)
        Trainer(factory, task, preset, 0, options=options).train([1e-3], steps_per_epoch=8, **run)
        trainer = Trainer(factory, task, preset, 1, options=options)
        if task.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        (log,) = trainer.train([1e-3], steps_per_epoch=args.rate_steps, **run)
        wall = time.perf_counter() - started  # the run ends reading its accuracy: synced
        out[name] = {"steps": log.steps, "wall_s": wall, "steps_per_s": log.steps / wall}
        _save(args)
        print(f"  {name:14s} {log.steps / wall:9.1f} steps/s ({log.steps} steps)", flush=True)
    base = out.get("eager")
    for name, r in out.items():
        if base is not None and name != "eager":
            r["speedup_vs_eager"] = r["steps_per_s"] / base["steps_per_s"]
            print(f"  {name}: {r['speedup_vs_eager']:.2f}x the eager path")
    return out


def _drain(ex: Any, n: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < n:
        got += [o.result for o in ex.wait(timeout=5.0)]
    return got


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--tiny", action="store_true", help="the tiny configuration (CPU)")
    parser.add_argument("--ks", default=None, help="workers per device to pack (1,2,4,8)")
    parser.add_argument("--candidates", default="zoo:adam,zoo:opt10")
    parser.add_argument("--paths", default=None, help="latency paths (comma list; default all)")
    parser.add_argument("--pack-paths", default="eager,fast", help="packing paths")
    parser.add_argument("--pack-evals", type=int, default=2, help="timed evaluations per worker")
    parser.add_argument("--pack-final-epochs", type=int, default=0, help="shorter final runs")
    parser.add_argument("--fast", default=None, help="StepOptions of the fast path")
    parser.add_argument("--full", action="store_true", help="the full configuration on a CPU")
    parser.add_argument(
        "--only", default="latency,packing,rate", help="parts to run (latency, packing, rate)"
    )
    parser.add_argument("--rate-steps", type=int, default=None, help="timed steps per path")
    parser.add_argument("--data-dir", default=None, help="reuse generated data here")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)

    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))  # spawned workers inherit sys.path: JOB resolves
    import torch

    from nos.training.device import resolve_device

    torch.set_num_threads(1)
    device = resolve_device(args.device)
    args.device = str(device)
    args.device_one = "cuda:0" if device.type == "cuda" and device.index is None else args.device
    args.tiny = args.tiny or (device.type == "cpu" and not args.full)
    parts = set(args.only.split(","))
    args.rate_steps = args.rate_steps or (8 if args.tiny else 200)
    args.overrides = dict(TINY) if args.tiny else {}
    args.validation_size = TINY_VALIDATION if args.tiny else FULL_VALIDATION
    args.candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    default_paths = "eager,fast,fast-bf16,batched" + ("" if args.tiny else ",fast-compiled")
    args.paths = [p for p in (args.paths or default_paths).split(",") if p]
    args.pack_paths = [p for p in args.pack_paths.split(",") if p]
    ks = args.ks or ("1,2" if args.tiny else "1,2,4,8")
    args.ks = [int(k) for k in ks.split(",")]
    paths = _paths(args.device, args.fast)
    from nos.training.registry import get_preset

    args.full_steps = None
    with tempfile.TemporaryDirectory(prefix="nos-bench-gpu-") as tmp:
        args.data = Path(args.data_dir) if args.data_dir else Path(tmp)
        if not (args.data / "cifar-10-batches-bin" / "data_batch_5.bin").is_file():
            write_cifar(args.data, TINY_IMAGES if args.tiny else FULL_IMAGES)
        preset = get_preset("paper").replace(**args.overrides)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(
            f"device {args.device} ({name}), torch {torch.__version__}, "
            f"{'tiny configuration' if args.tiny else 'full paper preset'}: "
            f"{preset.max_steps} steps at most per evaluation; fast path {paths['fast']}"
        )
        report: dict[str, Any] = {
            "device": args.device,
            "device_name": name,
            "torch": torch.__version__,
            "tiny": args.tiny,
            "paths": paths,
            "max_steps": preset.max_steps,
            "load_average": os.getloadavg(),
        }
        args.report = report
        _save(args)
        if "rate" in parts:
            print("\n[rate] steps per second of one training run")
            rate(args, paths)
        if "latency" in parts:
            print("\n[latency] one evaluation, this process")
            latency(args, paths)
            fast = report["latency"].get("fast", {}).get("warm")
            if fast is not None:
                args.full_steps = fast["steps"]
        if "packing" in parts:
            print(f"\n[packing] K workers on {args.device_one}")
            packing(args, paths)
    _save(args)
    return report


if __name__ == "__main__":
    main()
