"""Step time of exported optimizer files against ``torch.optim.Adam(fused=True)``.

Renders the standalone files of ``nos export`` for Adam as a candidate (``zoo:adam``), Opt10
(``zoo:opt10``), the winner of the default search on digits (``winner``, exported with the
sign its integrity check gives) and that of the default suite-fitness search
(``suite-winner``, a Nesterov-momentum RMSProp), imports them, and times ``step()`` on a
model-like list of weight matrices and biases (as ``tools/bench_step.py``), eager (the
default multi-tensor path) and with ``compile=True``, at each size. One torch thread. The
optimizers of a size run in interleaved rounds; each round times every optimizer over the
same number of steps, and the ratio printed is the median over rounds of (candidate / fused
Adam in the same round), so load from other processes hits all alike; a round runs each
optimizer for at least ``--steps`` steps and about ``--round-ms`` of fused Adam's time.

    python tools/bench_export.py [--sizes 100000 5000000] [--modes eager compiled]
                                 [--rounds 7] [--steps 5] [--round-ms 50]
                                 [--candidates adam opt10 winner suite-winner]

Goals: <= 1.5x fused Adam for Adam-shaped candidates, <= 2x for the winner, at 5M.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from nos.optim.export import render_module
from nos.symbolic.check import check_candidate
from nos.zoo.resolve import resolve

CANDIDATES = {
    "adam": "zoo:adam",
    "opt10": "zoo:opt10",
    "winner": "none ~ add(v_hat, tanh(sub(sign_v_hat, aggmo_s)))",
    "suite-winner": "nest ~ div(g, sqrt_abs(qhm_s))",
}


def load_class(text: str, folder: Path, key: str) -> type:
    """Export ``text`` with its check's sign into ``folder`` and import the class."""
    cand = resolve(text, "morgan2024")
    path = folder / f"bench_{key}.py"
    path.write_text(render_module(cand, "Exported", options={"flip": check_candidate(cand).flip}))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    cls: type = module.Exported
    return cls


def make_params(total: int, gen: torch.Generator) -> list[torch.Tensor]:
    """About ``total`` parameters as 10 weight matrices and their 10 bias vectors."""
    width = max(8, int((total / 10) ** 0.5))
    params = []
    for _ in range(10):
        for shape in ((width, width), (width,)):
            p = torch.randn(shape, generator=gen).requires_grad_()
            p.grad = torch.randn(shape, generator=gen) * 1e-2
            params.append(p)
    return params


def timed(opt: torch.optim.Optimizer, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t0) / steps


def bench_size(args: argparse.Namespace, classes: dict[str, type], size: int) -> None:
    gen = torch.Generator().manual_seed(0)
    params = make_params(size, gen)
    n = sum(p.numel() for p in params)
    opts: dict[str, torch.optim.Optimizer] = {
        "fused": torch.optim.Adam(params, lr=1e-6, fused=True),
        "torch foreach": torch.optim.Adam(params, lr=1e-6, foreach=True),  # for reference
    }
    setup: dict[str, float] = {}
    for name, cls in classes.items():
        for mode in args.modes:
            key = f"{name} {mode}"
            opt = cls(params, lr=1e-6, total_steps=10**6, warmup=10, compile=mode == "compiled")
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                for _ in range(3):  # first steps: buffers, schedule blocks, compilation
                    opt.step()
            setup[key] = time.perf_counter() - t0
            if mode == "compiled" and not opt.compile:
                print(f"{key}: compilation failed, eager fallback", flush=True)
            opts[key] = opt
    # each optimizer runs about --round-ms per round, so that short steps are timed over
    # more of them (on a loaded machine a few ms are one time slice)
    per_step = timed(opts["fused"], 3)
    steps = max(args.steps, min(500, int(args.round_ms / 1e3 / per_step)))
    times: dict[str, list[float]] = {k: [] for k in opts}
    ratios: dict[str, list[float]] = {k: [] for k in opts}
    for _ in range(args.rounds):
        rnd = {k: timed(opt, steps) for k, opt in opts.items()}
        for k, v in rnd.items():
            times[k].append(v)
            ratios[k].append(v / rnd["fused"])
    for k in opts:
        ms = 1e3 * statistics.median(times[k])
        first = f"{setup[k]:8.1f}" if k in setup else f"{'-':>8}"
        print(f"{n:>8} {k:16} {ms:9.3f} {statistics.median(ratios[k]):7.2f} {first}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 5_000_000])
    p.add_argument(
        "--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"]
    )
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=5, help="least steps per round")
    p.add_argument("--round-ms", type=float, default=50.0, help="time of fused Adam per round")
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    args = p.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; ratio = step time / Adam(fused=True)")
    print(f"{'params':>8} {'optimizer':16} {'ms/step':>9} {'/fused':>7} {'first 3 s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        classes = {k: load_class(CANDIDATES[k], Path(tmp), k) for k in args.candidates}
        for size in args.sizes:
            bench_size(args, classes, size)


if __name__ == "__main__":
    main()
