"""A fake, deterministic fitness for tests and benchmarks of the search machinery (task ``fake``).

:func:`evaluate` takes the same plain-data job payload as the real evaluator and answers in
microseconds (or after a configured sleep) without training anything. The fitness is a hash
of the candidate's identity (its fingerprint when the payload carries one, so candidates
that compute the same function score the same, as they would when trained), the stage and
the seed; nothing else. Options under ``payload["fake"]`` inject the failures the search
must survive, each decided by a hash of the identity so that a candidate always fails the
same way:

``fail_rate``     share of candidates that miss a threshold (``failed_threshold``)
``diverge_rate``  share that diverge (``diverged``)
``error_rate``    share whose evaluation raises (``error`` from the executor)
``crash_rate``    share that kill their own worker process with SIGKILL
``sleep_s``       seconds each evaluation sleeps; ``sleep_jitter`` in [0, 1] varies it by
                  candidate so that results arrive out of order
``busy_s``        seconds each evaluation keeps a core busy (a stand-in for training, for
                  throughput measurements)
``pid_dir``       write ``<pid_dir>/<pid>.pid`` while evaluating (tests kill workers by it)
``train``         ``true``: score by really training instead of by a hash. A small float32
                  tanh network is fitted for ``train_steps`` (30) steps by the
                  candidate's :class:`~nos.optim.SymbolicOptimizer`, with the check's sign;
                  the fitness is 1 / (1 + final loss). Candidates of one fingerprint class
                  then score slightly differently, as they do in real training.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

__all__ = ["evaluate", "fake_fitness", "job_payload", "unit_hash"]


def unit_hash(*parts: object) -> float:
    """A number in [0, 1) from a hash of ``parts`` (stable across processes and runs)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def fake_fitness(identity: str, stage: str, seed: int) -> float:
    """Fitness in [0.3, 0.9]: a function of the candidate's identity, the stage and the seed.

    The cheap ``init`` stage is a slightly lower, correlated copy of the full fitness, as the
    reference's cheap proxy is (spec §5.3 vs §5.4).
    """
    base = 0.3 + 0.6 * unit_hash(identity, "fitness")
    noise = 0.01 * (unit_hash(identity, stage, seed) - 0.5)
    return round((0.95 * base if stage == "init" else base) + noise, 6)


def evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    """Score one job payload; same result keys as the real evaluator."""
    opts: dict[str, Any] = payload.get("fake") or {}
    identity = str(payload.get("fingerprint") or payload.get("key") or payload["candidate"])
    stage = str(payload.get("stage", "full"))
    seeds = [int(s) for s in payload.get("seeds", [0])]
    pid_file = None
    if opts.get("pid_dir"):
        pid_file = Path(opts["pid_dir"]) / f"{os.getpid()}.pid"
        pid_file.write_text(identity)
    try:
        sleep = float(opts.get("sleep_s", 0.0))
        if sleep > 0:
            jitter = float(opts.get("sleep_jitter", 0.0))
            time.sleep(sleep * (1.0 - jitter * unit_hash(identity, "sleep")))
        busy = float(opts.get("busy_s", 0.0))
        end = time.perf_counter() + busy
        x = 0.0
        while time.perf_counter() < end:
            x = sum(i * 0.5 for i in range(1000)) + x * 1e-9
        if opts.get("train"):
            return _trained(payload, seeds, int(opts.get("train_steps", 30)))
        return _score(identity, stage, seeds, opts)
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)


def _score(identity: str, stage: str, seeds: list[int], opts: dict[str, Any]) -> dict[str, Any]:
    u = unit_hash(identity, "failure")
    cuts = [
        ("crash_rate", "crash"),
        ("error_rate", "error"),
        ("diverge_rate", "diverged"),
        ("fail_rate", "failed_threshold"),
    ]
    outcome, edge = "ok", 0.0
    for option, kind in cuts:
        edge += float(opts.get(option, 0.0))
        if u < edge:
            outcome = kind
            break
    if outcome == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if outcome == "error":
        raise ValueError(f"fake evaluation error for {identity}")
    per_seed = [fake_fitness(identity, stage, s) for s in seeds]
    base = {"lr": 0.01, "steps": 100, "wall_s": 0.0, "fitness_per_seed": per_seed}
    if outcome != "ok":
        reason = (
            "loss above the threshold"
            if outcome == "failed_threshold"
            else "loss became non-finite"
        )
        return {
            **base,
            "status": outcome,
            "fitness": None,
            "fitness_per_seed": [],
            "reason": reason,
        }
    return {
        **base,
        "status": "ok",
        "fitness": round(sum(per_seed) / len(per_seed), 6),
        "reason": "",
    }


def _trained(payload: dict[str, Any], seeds: list[int], steps: int) -> dict[str, Any]:
    """Fit a seeded two-layer tanh network to a regression (the ``train`` option)."""
    import torch

    from nos.optim import SymbolicOptimizer

    per_seed = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(64, 8, generator=gen)
        y = torch.sin(x @ torch.randn(8, 1, generator=gen))
        w1 = torch.nn.Parameter(0.5 * torch.randn(8, 16, generator=gen))
        w2 = torch.nn.Parameter(0.5 * torch.randn(16, 1, generator=gen))
        opt = SymbolicOptimizer(
            [w1, w2],
            payload["candidate"],
            lr=float(payload.get("lr_hint") or 1e-2),
            total_steps=steps,
            warmup=steps // 5,
            flip=bool(payload.get("flip")),
            grammar=str(payload["grammar"]),
        )
        for _ in range(steps):
            opt.zero_grad()
            loss = ((torch.tanh(x @ w1) @ w2 - y) ** 2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = float(((torch.tanh(x @ w1) @ w2 - y) ** 2).mean())
        if not math.isfinite(final):
            return {
                "status": "diverged",
                "fitness": None,
                "reason": "non-finite loss",
                "steps": steps,
                "wall_s": 0.0,
            }
        per_seed.append(1.0 / (1.0 + final))
    return {
        "status": "ok",
        "fitness": sum(per_seed) / len(per_seed),
        "fitness_per_seed": per_seed,
        "reason": "",
        "lr": payload.get("lr_hint"),
        "steps": steps * len(seeds),
        "wall_s": 0.0,
    }


def job_payload(request: Any, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The payload of :func:`evaluate` for a search request."""
    entry = request.entry
    return {
        "task": "fake",
        "candidate": entry.candidate.text,
        "grammar": entry.candidate.grammar.name,
        "key": entry.key,
        "fingerprint": entry.fingerprint,
        "stage": request.stage,
        "seeds": list(request.seeds),
        "flip": entry.check.flip,
        "lr_hint": entry.check.lr,
        "fake": dict(options or {}),
    }
