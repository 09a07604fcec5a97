"""Step time of generated optimizers against torch.optim.Adam (fused and foreach).

For each candidate (Adam as a candidate, Opt10, and a worst case that reads all 20
morgan2024 operands), parameter count (100K and 5M by default, split into a model-like
list of weight matrices and biases) and mode (eager, compiled), prints the median
milliseconds per ``SymbolicOptimizer.step`` and its ratio to ``torch.optim.Adam`` with
``fused=True`` and with ``foreach=True`` on the same parameters, side by side. CPU always,
CUDA when available. ``--layouts foreach flat`` also compares the two whole-group layouts
of :mod:`nos.optim.runtime`.

``--small`` measures instead the regime of the search's evaluations: the digits MLP
(:class:`nos.training.models.DigitsMLP`, about 9K parameters in 6 tensors) on one thread, where
per-step overhead rather than memory traffic decides. The optimizers are timed in
interleaved rounds (best round of each), so load from other processes hits all alike.

    python tools/bench_step.py [--sizes 100000 5000000] [--devices cpu cuda]
                               [--modes eager compiled] [--layouts foreach] [--steps 20]
    python tools/bench_step.py --small [--rounds 15] [--steps 200]

Goals (issue 4): compiled Adam-as-candidate <= 1.1x fused Adam and the worst case <= 2x,
at 5M parameters.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from nos.optim import SymbolicOptimizer
from nos.symbolic.genome import Candidate
from nos.symbolic.grammar import load_grammar
from nos.symbolic.ops import OPERANDS
from nos.zoo import catalogue as zoo
from nos.zoo.resolve import parse

MORGAN_OPERANDS = (
    "g",
    "g2",
    "g3",
    "v_hat",
    "s_hat",
    "lam_hat",
    "one",
    "two",
    "wd6",
    "wd5",
    "wd4",
    "wd3",
    "sign_g",
    "sign_v_hat",
    "qhm_v",
    "qhm_s",
    "qhm_lam",
    "aggmo_v",
    "aggmo_s",
    "aggmo_lam",
)


def worst_case() -> Candidate:
    """Every morgan2024 operand, combined by a balanced tree of binary ops."""
    assert all(name in OPERANDS for name in MORGAN_OPERANDS)
    ops = ("add", "mul", "div_sqrt", "sub", "max")
    terms = [f"tanh({o})" if i % 4 == 0 else o for i, o in enumerate(MORGAN_OPERANDS)]
    k = 0
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms) - 1, 2):
            nxt.append(f"{ops[k % len(ops)]}({terms[i]}, {terms[i + 1]})")
            k += 1
        if len(terms) % 2:
            nxt.append(terms[-1])
        terms = nxt
    return parse(f"nest ~ {terms[0]}", load_grammar("morgan2024"))


def make_params(total: int, device: str, gen: torch.Generator) -> list[torch.Tensor]:
    """About ``total`` parameters as 10 weight matrices and their 10 bias vectors."""
    shapes = []
    width = max(8, int((total / 10) ** 0.5))
    for _ in range(10):
        shapes += [(width, width), (width,)]
    return [torch.randn(s, generator=gen).to(device).requires_grad_() for s in shapes]


def time_steps(opt: torch.optim.Optimizer, steps: int, sync: Callable[[], None]) -> float:
    """Median milliseconds per step over ``steps`` steps (after a warmup)."""
    for _ in range(3):
        opt.step()
    sync()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        sync()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def bench(args: argparse.Namespace) -> None:
    candidates = {"adam": zoo.get("adam"), "opt10": zoo.get("opt10"), "worst": worst_case()}
    candidates = {k: v for k, v in candidates.items() if k in args.candidates}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"{'device':6} {'params':>8} {'candidate':9} {'mode':8} {'layout':7} "
        f"{'ms/step':>8} {'/fused':>7} {'/foreach':>8}"
    )
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for size in args.sizes:
            gen = torch.Generator().manual_seed(0)
            params = make_params(size, device, gen)
            n = sum(p.numel() for p in params)
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen).to(device) * 1e-2
            ref = {}
            for flavour in ("fused", "foreach"):
                kw = {flavour: True}
                ref[flavour] = time_steps(torch.optim.Adam(params, lr=1e-6, **kw), args.steps, sync)
            print(f"{device:6} {n:>8} {'torch':9} {'fused':8} {'-':7} {ref['fused']:8.3f}")
            print(f"{device:6} {n:>8} {'torch':9} {'foreach':8} {'-':7} {ref['foreach']:8.3f}")
            for name, cand in candidates.items():
                for mode in args.modes:
                    for layout in args.layouts:
                        with warnings.catch_warnings():
                            warnings.simplefilter("default")
                            opt = SymbolicOptimizer(
                                params,
                                cand,
                                lr=1e-6,
                                total_steps=10**6,
                                warmup=10,
                                compile=mode == "compiled",
                                layout=layout,
                            )
                            ms = time_steps(opt, args.steps, sync)
                        print(
                            f"{device:6} {n:>8} {name:9} {mode:8} {layout:7} {ms:8.3f} "
                            f"{ms / ref['fused']:7.2f} {ms / ref['foreach']:8.2f}",
                            flush=True,
                        )


def sampled(n: int, seed: int = 0) -> dict[str, Candidate]:
    """``n`` random morgan2024 candidates (the search's own sampler)."""
    import random

    from nos.symbolic.sample import sample_candidate

    grammar, rnd = load_grammar("morgan2024"), random.Random(seed)
    return {f"sample{i}": sample_candidate(grammar, rnd) for i in range(n)}


def small(args: argparse.Namespace) -> None:
    from nos.training.models import DigitsMLP

    torch.set_num_threads(1)
    makers: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
        "torch adam foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "torch adam fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
    }
    cands = {
        "adam": zoo.get("adam"),
        "opt10": zoo.get("opt10"),
        "worst": worst_case(),
        **sampled(args.samples),
    }
    for name, cand in cands.items():
        makers[name] = (
            lambda c: lambda ps: SymbolicOptimizer(ps, c, lr=1e-3, total_steps=10**6, warmup=10)
        )(cand)
    opts = {}
    for name, make in makers.items():
        model = DigitsMLP(generator=torch.Generator().manual_seed(0))
        gen = torch.Generator().manual_seed(1)
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * 1e-2
        opts[name] = make(params)
        for _ in range(5):
            opts[name].step()
    best = dict.fromkeys(opts, float("inf"))
    for _ in range(args.rounds):
        for name, opt in opts.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            best[name] = min(best[name], (time.perf_counter() - t0) / args.steps)
    ref = best["torch adam foreach"]
    print(
        f"torch {torch.__version__}, 1 thread, DigitsMLP "
        f"({sum(p.numel() for p in params)} parameters in {len(params)} tensors)"
    )
    print(f"{'optimizer':20} {'us/step':>8} {'/foreach':>8}  candidate")
    for name, us in best.items():
        text = str(cands[name]) if name in cands else ""
        print(f"{name:20} {1e6 * us:8.1f} {us / ref:8.2f}  {text[:70]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 5_000_000])
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    p.add_argument(
        "--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"]
    )
    p.add_argument("--layouts", nargs="+", default=["foreach"], choices=["foreach", "flat"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument(
        "--candidates",
        nargs="+",
        default=["adam", "opt10", "worst"],
        choices=["adam", "opt10", "worst"],
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--small",
        action="store_true",
        help="per-step overhead on the digits MLP instead (one thread)",
    )
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds of --small")
    p.add_argument("--samples", type=int, default=4, help="sampled candidates in --small")
    args = p.parse_args()
    if args.small:
        small(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    bench(args)


if __name__ == "__main__":
    main()
