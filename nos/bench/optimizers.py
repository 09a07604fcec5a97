"""Optimizer factories of the bench, rebuilt from an :class:`~nos.bench.specs.OptSpec` payload.

A factory has the fitness protocol's signature ``(params, lr, total_steps, warmup) ->
Optimizer`` (:data:`nos.optim.factories.OptimizerFactory`), so
:func:`nos.training.curves.train_curve` runs every kind alike:

* built-in baselines: :func:`nos.optim.baselines.make_baseline` under the base warmup +
  cosine schedule, except Schedule-Free, which gets the warmup steps and schedules itself;
* candidates: :class:`nos.optim.SymbolicOptimizer`, which applies the base schedule (times
  its LR gene) and a tuned decoupled weight decay itself;
* files: the class is built with ``total_steps`` and ``warmup`` when its constructor takes
  them (files written by ``nos export`` do, and schedule themselves), else it runs under the
  base schedule; ``weight_decay`` is passed when the constructor takes it, else added by
  :func:`with_decoupled_decay`;
* plane search: :class:`nos.optim.plane_search.PlaneSearch` on the task's full training
  batch; it has no learning rate, and a weight decay is its L2 penalty.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nos.errors import NosError
from nos.optim.factories import OptimizerFactory, with_base_schedule
from nos.symbolic.schedules import base_lr

__all__ = ["factory_for_payload", "load_optimizer_class", "with_decoupled_decay"]


def with_decoupled_decay(
    opt: torch.optim.Optimizer, lr: float, weight_decay: float, total: int, warmup: int
) -> torch.optim.Optimizer:
    """Add AdamW-style decoupled weight decay to ``opt``: before every step each parameter
    is multiplied by ``1 - eta_t * weight_decay``, eta_t the base warmup + cosine LR at
    peak ``lr`` (for files whose optimizer has no weight-decay option of its own)."""
    if weight_decay == 0.0:
        return opt
    step = [0]

    @torch.no_grad()
    def decay(optimizer: torch.optim.Optimizer, *_: Any) -> None:
        rate = float(base_lr(min(step[0], total), lr, warmup, total)) * weight_decay
        step[0] += 1
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.mul_(1.0 - rate)

    opt.register_step_pre_hook(decay)
    return opt


def load_optimizer_class(path: str | Path, class_name: str | None = None) -> type:
    """The ``torch.optim.Optimizer`` subclass ``class_name`` of the Python file ``path``
    (the only one defined there when ``class_name`` is ``None``). This runs the file."""
    path = Path(path)
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    module_name = f"nos_bench_user_{digest}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise NosError(f"{path}: cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise NosError(f"{path}: loading it failed: {type(exc).__name__}: {exc}") from None
        sys.modules[module_name] = module
    classes = {
        name: obj
        for name, obj in vars(module).items()
        if inspect.isclass(obj)
        and issubclass(obj, torch.optim.Optimizer)
        and obj.__module__ == module_name
    }
    if class_name is None:
        if len(classes) != 1:
            found = ", ".join(sorted(classes)) or "none"
            raise NosError(
                f"{path}: name the optimizer class as file:{path}:CLASS "
                f"(torch.optim.Optimizer subclasses defined there: {found})"
            )
        return next(iter(classes.values()))
    if class_name not in classes:
        found = ", ".join(sorted(classes)) or "none"
        raise NosError(f"{path}: no torch.optim.Optimizer subclass {class_name!r} (found: {found})")
    return classes[class_name]


def _accepts(cls: type, name: str) -> bool:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _candidate_factory(payload: dict[str, Any], wd: float | None) -> OptimizerFactory:
    from nos.optim.symbolic_optimizer import SymbolicOptimizer
    from nos.zoo.resolve import resolve

    grammar = payload["grammar"]
    candidate = resolve(payload["text"], "morgan2024" if grammar == "zoo" else grammar)
    flip = bool(payload.get("flip"))

    def factory(params: list[nn.Parameter], lr: float, total: int, warmup: int) -> Any:
        return SymbolicOptimizer(
            params,
            candidate,
            lr=lr,
            total_steps=total,
            warmup=warmup,
            flip=flip,
            weight_decay=wd or 0.0,
        )

    return factory


def _baseline_factory(payload: dict[str, Any], wd: float | None) -> OptimizerFactory:
    from nos.optim.baselines import get_baseline

    entry = get_baseline(payload["name"])

    def factory(params: list[nn.Parameter], lr: float, total: int, warmup: int) -> Any:
        opt = entry.make(params, lr, wd, warmup_steps=warmup)
        return opt if entry.schedules_itself else with_base_schedule(opt, lr, total, warmup)

    return factory


def _file_factory(payload: dict[str, Any], wd: float | None) -> OptimizerFactory:
    cls = load_optimizer_class(payload["path"], payload["class"])
    own_schedule = _accepts(cls, "total_steps")
    own_decay = _accepts(cls, "weight_decay")

    def factory(params: list[nn.Parameter], lr: float, total: int, warmup: int) -> Any:
        kwargs: dict[str, Any] = {"lr": lr}
        if own_schedule:
            kwargs["total_steps"] = total
            if _accepts(cls, "warmup"):
                kwargs["warmup"] = warmup
        if wd and own_decay:
            kwargs["weight_decay"] = wd
        opt = cls(params, **kwargs)
        if not own_schedule:
            opt = with_base_schedule(opt, lr, total, warmup)
        if wd and not own_decay:
            opt = with_decoupled_decay(opt, lr, wd, total, warmup)
        return opt

    return factory


def plane_search_structure(model: nn.Module) -> tuple[str, str | None]:
    """(structure, activation) of a model plane search applies to: an ``nn.Linear``, or a
    :class:`~nos.training.bench_models.TwoLayerMLP`; NosError otherwise."""
    if isinstance(model, nn.Linear):
        return "linear", None
    parts = list(model.children()) if isinstance(model, nn.Sequential) else []
    activation = getattr(model, "activation", None)
    if len(parts) == 3 and isinstance(parts[0], nn.Linear) and isinstance(activation, str):
        return "two_layer", activation
    raise NosError(
        f"plane search applies to a linear model or a 2-layer network, not {type(model).__name__}"
    )


def _plane_factory(task: Any, wd: float | None) -> OptimizerFactory:
    from nos.optim.plane_search import PlaneSearch
    from nos.training.registry import KINDS

    structure, activation = plane_search_structure(task.build_model(0))
    loss = "mse" if KINDS[task.kind].loss == "mse" else "cross_entropy"
    x = task.train_x.flatten(1)

    def factory(params: list[nn.Parameter], lr: float, total: int, warmup: int) -> Any:
        return PlaneSearch(
            params,
            x,
            task.train_y,
            loss=loss,
            structure=structure,
            activation=activation,
            l2=wd or 0.0,
        )

    return factory


def factory_for_payload(
    payload: dict[str, Any], task: Any, weight_decay: float | None
) -> Callable[[list[nn.Parameter], float, int, int], torch.optim.Optimizer]:
    """The factory of an :class:`~nos.bench.specs.OptSpec` payload for ``task`` (a
    :class:`~nos.training.tasks.Task`), with ``weight_decay`` (``None``: the default)."""
    kind = payload.get("kind")
    if kind == "candidate":
        return _candidate_factory(payload, weight_decay)
    if kind == "baseline":
        return _baseline_factory(payload, weight_decay)
    if kind == "file":
        return _file_factory(payload, weight_decay)
    if kind == "plane-search":
        return _plane_factory(task, weight_decay)
    raise NosError(f"unknown optimizer kind {kind!r}")
