"""Wall time of one plane-search iteration against one fixed-LR momentum step.

On the same full-batch problems, side by side in one run: a plane-search iteration
(:class:`nos.optim.plane_search.PlaneSearch`: closure with forward and backward, the one new product
with the data, the inner Newton search, the update), the same without a closure (the
optimizer computes loss and gradients from the pre-activations it keeps, one product with
the data instead of the closure's two), and a step of ``torch.optim.SGD`` with momentum 0.9
at a fixed LR (closure with forward and backward, the update). Also the closure alone and
the one product with the data that plane search adds (X D^T), to read the costs off. The
methods are timed in interleaved rounds and the best round of each is kept, so load from
other processes hits all alike.

Problems (``--n`` samples, ``--d`` inputs): logistic regression, and a 2-layer tanh network
with ``--hidden`` units and ``--classes`` outputs under cross-entropy, with one shared
(alpha, beta) pair and with one pair per layer; an L2 penalty ``--l2`` on the weights keeps
the optimum away from zero loss (the network could interpolate the 5000 samples).

    python tools/bench_plane_search.py [--n 5000] [--d 500] [--hidden 100] [--classes 10]
                                       [--l2 1e-3] [--rounds 7] [--steps 10]
                                       [--dtype float32]
                                       [--device cpu] [--threads 1]

The paper's claim (Shea & Schmidt 2024) is that on such "SO-friendly" problems the search
costs about as much as the step: without a closure an iteration takes two products with the
data (X D^T and the gradient's G^T X) like the step's forward and backward passes, and the
inner search works on n x outputs or n x hidden arrays only.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nos.optim.plane_search import plane_search_for


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _problem(kind: str, args: argparse.Namespace, dtype: torch.dtype, device: torch.device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, args.d)) * np.geomspace(0.3, 3.0, args.d)
    gen = torch.Generator().manual_seed(0)
    if kind == "logistic":
        score = x @ rng.standard_normal(args.d) / args.d**0.5
        y = torch.tensor((score + 0.5 * rng.standard_normal(args.n) > 0).astype(float))[:, None]
        loss, fn = "logistic", F.binary_cross_entropy_with_logits

        def build() -> nn.Module:
            model = nn.Linear(args.d, 1)
            with torch.no_grad():
                model.weight.copy_(torch.randn(1, args.d, generator=gen) / args.d**0.5)
            return model
    else:
        logits = x @ rng.standard_normal((args.d, args.classes)) / args.d**0.5
        y = torch.tensor(np.argmax(logits + rng.standard_normal(logits.shape), axis=1))
        loss, fn = "cross_entropy", F.cross_entropy

        def build() -> nn.Module:
            model = nn.Sequential(
                nn.Linear(args.d, args.hidden), nn.Tanh(), nn.Linear(args.hidden, args.classes)
            )
            with torch.no_grad():
                for p in model.parameters():
                    fan_in = p.shape[1] if p.ndim == 2 else p.shape[0]
                    p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            return model

    xt = torch.tensor(x, dtype=dtype, device=device)
    yt = y.to(device=device, dtype=dtype if loss == "logistic" else torch.long)
    return xt, yt, loss, fn, lambda: build().to(device=device, dtype=dtype)


def _closure(model: nn.Module, opt: torch.optim.Optimizer, x, y, fn, l2: float) -> Callable:
    weights = [p for name, p in model.named_parameters() if name.endswith("weight")]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = fn(model(x), y)
        if l2:
            value = value + 0.5 * l2 * sum((w * w).sum() for w in weights)
        value.backward()
        return value

    return closure


def _time(run: Callable[[], None], steps: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        run()
    _sync(device)
    return (time.perf_counter() - start) / steps


def bench(kind: str, per_layer: bool, args, dtype, device) -> None:
    x, y, loss, fn, build = _problem(kind, args, dtype, device)
    plane_model, own_model, gd_model = build(), build(), build()
    plane = plane_search_for(plane_model, x, y, loss=loss, per_layer=per_layer, l2=args.l2)
    plane_closure = _closure(plane_model, plane, x, y, fn, args.l2)
    own = plane_search_for(own_model, x, y, loss=loss, per_layer=per_layer, l2=args.l2)
    gd = torch.optim.SGD(gd_model.parameters(), lr=0.1, momentum=0.9)
    gd_closure = _closure(gd_model, gd, x, y, fn, args.l2)
    inner: list[int] = []

    def plane_step() -> None:
        plane.step(plane_closure)
        inner.append(plane.last_inner_iterations)

    first = next(gd_model.parameters()).detach()
    methods = {
        "plane search": plane_step,
        "plane, own gradients": own.step,
        "GD+momentum": lambda: gd.step(gd_closure),
        "closure only": gd_closure,
        "X D^T": lambda: x @ first.T,  # the product a plane-search iteration adds
    }
    for run in methods.values():  # warm up: first steps, allocations, the line search
        for _ in range(3):
            run()
    inner.clear()
    # enough steps per round for a round of GD to last about 0.2 s: short rounds are noisy
    steps = max(args.steps, math.ceil(0.2 / _time(methods["GD+momentum"], 3, device)))
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(args.rounds):
        for name, run in methods.items():
            best[name] = min(best[name], _time(run, steps, device))
    ratio = best["plane search"] / best["GD+momentum"]
    own_ratio = best["plane, own gradients"] / best["GD+momentum"]
    label = f"{kind}{' per-layer' if per_layer else ''}"
    shape = f"n={args.n} d={args.d}" + (
        f" h={args.hidden} k={args.classes}" if kind == "two_layer" else " k=1"
    )
    ms = {name: f"{t * 1e3:7.2f}" for name, t in best.items()}
    print(
        f"{label:<20} {shape:<27} GD+mom {ms['GD+momentum']} ms | plane {ms['plane search']}"
        f" ms {ratio:4.2f}x | own grads {ms['plane, own gradients']} ms {own_ratio:4.2f}x |"
        f" closure {ms['closure only']} ms  X D^T {ms['X D^T']} ms  derivs/step"
        f" {np.mean(inner):3.1f}  loss {plane.last_loss:.4g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--d", type=int, default=500)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--l2", type=float, default=1e-3, help="L2 penalty on the weights")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype, device = getattr(torch, args.dtype), torch.device(args.device)
    print(
        f"torch {torch.__version__}, {args.device}, {args.dtype}, {args.threads} thread(s), "
        f"best of {args.rounds} rounds of at least {args.steps} steps"
    )
    bench("logistic", False, args, dtype, device)
    bench("two_layer", False, args, dtype, device)
    bench("two_layer", True, args, dtype, device)


if __name__ == "__main__":
    main()
