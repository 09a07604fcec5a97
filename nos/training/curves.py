"""Plain training to a budget: the runs of the bench, the suite fitness and their references.

:func:`train_curve` trains one network of a task with one optimizer at one learning rate
for the task's :class:`~nos.training.presets.Budget` and records the validation loss and
metric every ``eval_every`` steps (and the test split's at the end, when asked). Seeds are
*paired*: the seed fixes the initial weights, the batch order and dropout, so two
optimizers run with the same seed see exactly the same network and data, and their
difference is the optimizer's alone.

A run whose training loss becomes non-finite stops there: it is ``diverged`` and has no
final metric. Unlike the paper's protocol (:mod:`nos.training.protocol`) there are no
accuracy thresholds: the loss the optimizer reaches is the result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from nos.optim.baselines import eval_mode, train_mode
from nos.optim.factories import OptimizerFactory
from nos.training.presets import Budget
from nos.training.tasks import BatchOrder, Task

__all__ = ["Curve", "Deadline", "train_curve"]


class Deadline(Exception):
    """The run's wall-clock budget ran out."""


@dataclass
class Curve:
    """One run: validation loss and metric at ``steps``; the final ones; test at the end."""

    lr: float
    seed: int
    steps: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    trained: int = 0  # optimizer steps taken
    diverged: bool = False
    detail: str = ""
    test_loss: float | None = None
    test_metric: float | None = None
    wall_s: float = 0.0

    @property
    def final_loss(self) -> float | None:
        return None if self.diverged or not self.val_loss else self.val_loss[-1]

    @property
    def final_metric(self) -> float | None:
        return None if self.diverged or not self.val_metric else self.val_metric[-1]

    def steps_to(self, target: float, higher_is_better: bool) -> int | None:
        """The first evaluated step whose validation metric reached ``target``."""
        for step, value in zip(self.steps, self.val_metric, strict=True):
            if (value >= target) if higher_is_better else (value <= target):
                return step
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "seed": self.seed,
            "steps": self.steps,
            "val_loss": self.val_loss,
            "val_metric": self.val_metric,
            "trained": self.trained,
            "diverged": self.diverged,
            "detail": self.detail,
            "test_loss": self.test_loss,
            "test_metric": self.test_metric,
            "wall_s": round(self.wall_s, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Curve:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def train_curve(
    factory: OptimizerFactory,
    task: Task,
    budget: Budget,
    lr: float,
    seed: int,
    *,
    test: bool = False,
    deadline: float | None = None,
    stop_above: float | None = None,
) -> Curve:
    """Train ``task``'s network from ``seed`` with ``factory`` at ``lr`` for ``budget``.

    ``deadline`` (a ``time.monotonic()`` value) raises :class:`Deadline` between steps.
    ``stop_above`` ends the run as ``diverged`` once a training loss exceeds that multiple
    of the first one (cheap trials of an LR sweep need not run on). The optimizer's own
    faults (non-finite values, exceptions inside ``step``) are the caller's to catch; a
    non-finite loss ends the run as ``diverged``.
    """
    started = time.monotonic()
    curve = Curve(lr=float(lr), seed=seed)
    size = len(task.train_y)
    batch = budget.batch_size or size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout inside the network
        model = task.build_model(seed)
        model.train()
        opt = factory(list(model.parameters()), float(lr), budget.steps, budget.warmup)
        train_mode(opt)
        generator = torch.Generator().manual_seed(seed)
        order = BatchOrder(
            size, min(batch, size), shuffle=batch < size, generator=generator, device=task.device
        )
        augment = task.augmenter(seed)
        first_loss = math.inf
        for step in range(1, budget.steps + 1):
            index = order.next()
            x, y = task.train_batch(index, augment)
            opt.zero_grad(set_to_none=True)
            loss = task.loss(model(x), y)
            loss.backward()
            opt.step()
            curve.trained = step
            # a per-step check costs nothing on a CPU but would stall a GPU every step
            check = task.device.type == "cpu" or step % budget.eval_every == 0
            if check and not math.isfinite(float(loss.detach())):
                curve.diverged, curve.detail = True, f"non-finite loss at step {step}"
                break
            if stop_above is not None:
                value = float(loss.detach())
                first_loss = value if step == 1 else first_loss
                if value > stop_above * first_loss:
                    curve.diverged = True
                    curve.detail = f"loss {value:.3g} above {stop_above:g}x the first at {step}"
                    break
            if step % budget.eval_every == 0 or step == budget.steps:
                eval_mode(opt)
                val_loss, val_metric = task.evaluate(model, "validation")
                train_mode(opt)
                if not math.isfinite(val_loss):
                    curve.diverged, curve.detail = True, f"non-finite validation loss at {step}"
                    break
                curve.steps.append(step)
                curve.val_loss.append(val_loss)
                curve.val_metric.append(_finite(val_metric))
            if deadline is not None and time.monotonic() > deadline:
                raise Deadline
        if test and not curve.diverged:
            eval_mode(opt)
            curve.test_loss, curve.test_metric = task.evaluate(model, "test")
    curve.wall_s = time.monotonic() - started
    return curve
