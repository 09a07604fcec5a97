"""The trainer: runs of the fitness protocol for one optimizer, task, preset and seed.

A :class:`Trainer` trains one network per LR (the same initial weights and batch order for
every LR), with the divergence monitor and the accuracy early stops of the protocol, and
returns a :class:`RunLog` per run. :mod:`nos.training.protocol` decides what to train.

Speed (measured on the 2-core CPU, see ``tools/bench_eval.py``): training a stage's networks
together with ``torch.func.vmap`` over stacked parameters (``batch_sweep=True``) was 10-75%
*slower* than one network after the other for the digits MLP and the MNIST-1D CNN (the
optimizers still step one network at a time), so the sequential sweep is the default; the
batched path remains for devices where per-step overhead dominates (``--batch-sweep``; it
stays off by default on GPUs too until ``tools/bench_gpu.py`` shows it winning there: that
has not been measured). The throughput gain on a CPU comes from single-threaded worker
processes (:func:`nos.training.tasks.worker_init`). How each step runs (precision, layout,
compilation, CUDA graphs) is the :class:`~nos.training.fast.StepPlan` of the options.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nos.optim.factories import OptimizerFactory
from nos.training.fast import StepPlan
from nos.training.presets import Preset
from nos.training.spec import StepOptions
from nos.training.tasks import Task

__all__ = ["Deadline", "RunLog", "Trainer"]


class Deadline(Exception):
    """The evaluation's wall-clock budget ran out."""


@dataclass
class RunLog:
    """One training run: per-epoch accuracies and how it ended.

    ``outcome`` is ``complete``, ``stopped`` (an accuracy early stop) or ``diverged``; a
    run that diverged mid-epoch lists that partial epoch's training accuracy too.
    """

    lr: float
    train_acc: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    steps: int = 0
    outcome: str = "complete"
    detail: str = ""

    @property
    def best_train(self) -> float:
        return max(self.train_acc, default=0.0)


class _Member:
    """One network of a run with its optimizer, divergence monitor and epoch counters."""

    def __init__(
        self,
        model: nn.Module,
        opt: torch.optim.Optimizer,
        lr: float,
        runner: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.model, self.opt, self.log = model, opt, RunLog(lr)
        self.runner = runner or model  # what a forward pass calls (a compiled network)
        self.first_loss: float | None = None
        self.correct = torch.zeros((), dtype=torch.long, device=_device_of(model))
        self.seen = 0
        self.worst = torch.full((), -math.inf, device=_device_of(model))

    def record(self, loss: torch.Tensor, correct: torch.Tensor, n: int) -> None:
        self.log.steps += 1
        self.correct += correct
        self.seen += n
        self.worst = torch.maximum(self.worst, loss.detach())  # NaN propagates

    def diverged(self, factor: float | None) -> bool:
        worst = float(self.worst)
        self.worst.fill_(-math.inf)
        if self.first_loss is None:
            self.first_loss = worst
        if not math.isfinite(worst):
            self.log.detail = f"non-finite loss at step {self.log.steps}"
            return True
        if factor is not None and self.first_loss > 0 and worst > factor * self.first_loss:
            self.log.detail = (
                f"loss {worst:.3g} above {factor:g} x initial "
                f"{self.first_loss:.3g} at step {self.log.steps}"
            )
            return True
        return False

    def end_epoch(self) -> float:
        acc = int(self.correct) / max(self.seen, 1)
        self.correct.zero_()
        self.seen = 0
        self.log.train_acc.append(acc)
        return acc


def _forward(plan: StepPlan, runner: Any, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return plan.run(runner, x)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class Trainer:
    """Trains runs of the protocol for one optimizer factory, task, preset and seed.

    Every run starts from the same initial weights and sees the same batches (order and
    augmentation drawn from generators seeded with ``seed``); dropout draws from torch's
    global generator, reseeded with ``seed`` inside a forked RNG state per run, so the
    caller's random state is untouched and reruns are identical. ``options`` (a
    :class:`~nos.training.spec.StepOptions`) selects the fast step of
    :mod:`nos.training.fast`; the default is the plain eager float32 step.
    """

    def __init__(
        self,
        factory: OptimizerFactory,
        task: Task,
        preset: Preset,
        seed: int,
        *,
        deadline: float | None = None,
        batch_sweep: bool = False,
        options: StepOptions | None = None,
    ):
        self.factory, self.task, self.preset, self.seed = factory, task, preset, seed
        self.deadline, self.batch_sweep = deadline, batch_sweep
        self.plan = StepPlan(options or StepOptions(), task)
        # Syncing the loss every step costs nothing on a CPU but stalls a GPU.
        self.check_every = 1 if task.device.type == "cpu" else 50
        self.steps = 0

    def train(
        self,
        lrs: Sequence[float],
        *,
        epochs: int,
        steps_per_epoch: int,
        validate: bool,
        stop_below: float,
        stop_from: int,
    ) -> list[RunLog]:
        """Train one run per LR; ``validate`` adds a validation accuracy per epoch."""
        together = self.batch_sweep and not validate and len(lrs) > 1
        groups = [list(lrs)] if together else [[lr] for lr in lrs]
        logs: list[RunLog] = []
        for group in groups:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                logs += self._train_group(
                    group, epochs, steps_per_epoch, validate, stop_below, stop_from
                )
        return logs

    def _member(self, lr: float, shared: bool) -> _Member:
        model, runner = self.plan.network(self.task, self.seed, shared=shared)
        model.train()
        opt = self.factory(
            list(model.parameters()), float(lr), self.preset.total_steps, self.preset.warmup
        )
        return _Member(model, opt, lr, runner)

    def _single_step(self, member: _Member) -> Callable[..., None]:
        if self.plan.graphs:
            from nos.training.fast import warn_once
            from nos.training.graphs import GraphedStep, capture_problem

            problem = capture_problem(member.opt)
            if problem is None:
                return GraphedStep(member, self.plan)
            warn_once(f"no CUDA graph: {problem}; the steps run eagerly")
        return self._sequential_step

    def _train_group(
        self,
        lrs: list[float],
        epochs: int,
        steps_per_epoch: int,
        validate: bool,
        stop_below: float,
        stop_from: int,
    ) -> list[RunLog]:
        members = [self._member(lr, shared=len(lrs) == 1) for lr in lrs]
        step_fn = (
            self._single_step(members[0]) if len(members) == 1 else _BatchedStep(members, self.plan)
        )
        order = self.task.batch_order(
            self.preset.batch_size, self.seed, shuffle=self.preset.shuffle
        )
        augment = self.task.augmenter(self.seed)
        active = list(members)
        # The loss-growth rule guards the sweep only: a final run may spike and recover, and
        # its fitness (the best validation so far) cannot drop by training on.
        factor = None if validate else self.preset.divergence_factor
        for epoch in range(epochs):
            for step in range(steps_per_epoch):
                index = order.next()
                x, y = self.task.train_batch(index, augment)
                x = self.plan.prepare(x)
                step_fn(active, x, y)
                self.steps += len(active)
                if step % self.check_every == 0 or step == steps_per_epoch - 1:
                    for m in [m for m in active if m.diverged(factor)]:
                        m.log.outcome = "diverged"
                        m.end_epoch()
                        active.remove(m)
                if not active:
                    return [m.log for m in members]
                if self.deadline is not None and time.monotonic() > self.deadline:
                    raise Deadline
            for m in list(active):
                acc = m.end_epoch()
                if validate:
                    forward = functools.partial(_forward, self.plan, m.runner)
                    m.log.val_acc.append(self.task.accuracy(m.model, forward=forward))
                if epoch >= stop_from and acc < stop_below:
                    m.log.outcome = "stopped"
                    m.log.detail = f"train accuracy {acc:.3f} < {stop_below:g} at epoch {epoch}"
                    active.remove(m)
            if not active:
                break
        return [m.log for m in members]

    def _sequential_step(self, active: list[_Member], x: torch.Tensor, y: torch.Tensor) -> None:
        for m in active:
            m.opt.zero_grad(set_to_none=True)
            with self.plan.autocast():
                out = m.runner(x)
                loss = F.cross_entropy(out, y)
            loss.backward()
            m.opt.step()
            m.record(loss, (out.argmax(1) == y).sum(), len(y))


class _BatchedStep:
    """One step of several networks at once: ``vmap`` over their stacked parameters.

    Each network keeps its own parameter tensors and optimizer; the stack is rebuilt every
    step (autograd routes each slice's gradient back to its network). BatchNorm runs on
    batch statistics without updating running ones, which the sweep never uses (it
    reports training accuracy only).
    """

    def __init__(self, members: list[_Member], plan: StepPlan):
        from torch.func import functional_call, vmap

        self.plan = plan

        template = copy.deepcopy(members[0].model)
        for module in template.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.track_running_stats = False
                module.running_mean = module.running_var = module.num_batches_tracked = None
        self.names = [name for name, _ in template.named_parameters()]
        self.params = {id(m): dict(m.model.named_parameters()) for m in members}

        def loss(
            p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = functional_call(template, p, (x,))
            return F.cross_entropy(out, y), (out.argmax(1) == y).sum()

        self.fn = vmap(loss, in_dims=(0, None, None), randomness="different")

    def __call__(self, active: list[_Member], x: torch.Tensor, y: torch.Tensor) -> None:
        for m in active:
            m.opt.zero_grad(set_to_none=True)
        stacked = {k: torch.stack([self.params[id(m)][k] for m in active]) for k in self.names}
        with self.plan.autocast():
            losses, correct = self.fn(stacked, x, y)
        losses.sum().backward()  # the networks' losses are independent
        for i, m in enumerate(active):
            m.opt.step()
            m.record(losses[i], correct[i], len(y))
