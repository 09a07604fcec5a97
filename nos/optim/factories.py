"""Optimizer factories: how the fitness protocol builds an optimizer for one training run.

An :data:`OptimizerFactory` takes the parameters, the peak LR, the total steps T and the
warmup W; the optimizer applies the base warmup-cosine schedule of spec §2.7 itself.
:func:`factory_for` reads ``torch:NAME`` (a ``torch.optim`` baseline), ``zoo:NAME`` or
candidate text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nos.errors import NosError
from nos.optim.symbolic_optimizer import SymbolicOptimizer
from nos.symbolic.schedules import base_lr
from nos.zoo.resolve import resolve

__all__ = [
    "TORCH_PREFIX",
    "OptimizerFactory",
    "baseline_factory",
    "factory_for",
    "with_base_schedule",
]

#: Builds an optimizer for ``params`` with peak LR, total steps T and warmup steps W; the
#: optimizer applies its own LR schedule (the base warmup-cosine of spec §2.7).
OptimizerFactory = Callable[[list[nn.Parameter], float, int, int], torch.optim.Optimizer]
TORCH_PREFIX = "torch:"


def with_base_schedule(
    opt: torch.optim.Optimizer, lr: float, total: int, warmup: int
) -> torch.optim.Optimizer:
    """Give a torch optimizer the base warmup-cosine LR of spec §2.7 (set before each step)."""
    step = [0]

    def before_step(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        t = min(step[0], total)
        rate = float(base_lr(t, lr, warmup, total))
        for group in optimizer.param_groups:
            group["lr"] = rate
        step[0] += 1

    opt.register_step_pre_hook(before_step)
    return opt


_BASELINES: dict[str, Callable[[list[nn.Parameter], float], torch.optim.Optimizer]] = {
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr),
    "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "nesterov": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr),
}


def baseline_factory(name: str) -> OptimizerFactory:
    """A ``torch.optim`` optimizer (``adam``, ``sgd``, ...) under the base LR schedule."""
    try:
        make = _BASELINES[name]
    except KeyError:
        raise NosError(
            f"unknown torch baseline {name!r}; choose one of {', '.join(_BASELINES)}"
        ) from None

    def factory(
        params: list[nn.Parameter], lr: float, total: int, warmup: int
    ) -> torch.optim.Optimizer:
        return with_base_schedule(make(params, lr), lr, total, warmup)

    return factory


def factory_for(
    spec: str, grammar: str = "morgan2024", *, flip: bool = False, compile: bool = False
) -> OptimizerFactory:
    """The optimizer named by ``spec``: ``torch:NAME``, ``zoo:NAME`` or candidate text.

    Candidates and zoo entries become :class:`nos.optim.SymbolicOptimizer` (with a
    compiled update when ``compile``; the torch baselines ignore it). Unknown names and
    unreadable candidates raise :class:`~nos.errors.NosError`.
    """
    spec = spec.strip()
    if spec.startswith(TORCH_PREFIX):
        return baseline_factory(spec.removeprefix(TORCH_PREFIX))
    candidate = resolve(spec, grammar)

    def factory(
        params: list[nn.Parameter], lr: float, total: int, warmup: int
    ) -> torch.optim.Optimizer:
        return SymbolicOptimizer(
            params, candidate, lr=lr, total_steps=total, warmup=warmup, flip=flip, compile=compile
        )

    return factory
