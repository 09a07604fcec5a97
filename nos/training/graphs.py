"""One CUDA graph per training run: forward, backward and the candidate's update.

The proxy networks are small enough that a GPU step is bound by kernel launches, not by
arithmetic; replaying a captured graph launches the whole step at once. A
:class:`GraphedStep` trains one network of the protocol:

1. the first ``warmup`` steps run eagerly on a side stream (they allocate the optimizer's
   state, compile the update and let cuDNN pick its kernels); they are real steps;
2. the next step is captured - with gradients set to ``None`` first, so that backward
   allocates them in the graph's memory pool - and every step from then on copies its
   batch into the graph's static inputs and replays it.

The candidate's per-step numbers (step, tau, 1/T, signed learning rate, momentum) must not
be baked into the graph: :class:`ScalarFeeder` computes them on the host for a block of
steps with the optimizer's own schedule code, keeps them in a device table and hands the
update a row picked by a device counter that the graph itself advances, so a replay
needs no host-to-device copy except at block boundaries. The update is the optimizer's
tensor-scalar step (the one ``torch.compile`` traces); unless the options compile the
update, it runs uncompiled inside the graph, so a new candidate costs no compilation -
the graph already removes the launch overhead that compiling would save.

What can be captured (:func:`capture_problem` says why not otherwise): a
:class:`~nos.optim.SymbolicOptimizer` with one parameter group and no dropout masks
(those draw from the optimizer's own generator on the host side). Anything else - and any
failure while capturing - trains eagerly, after one warning. ``capture=False`` runs the
same sequence (static inputs, device-fed numbers, tensor-scalar update) without a graph:
that is how the CPU tests check it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from nos.training.fast import StepPlan, out_of_memory, warn_once

__all__ = ["GraphedStep", "ScalarFeeder", "capture_problem"]

log = logging.getLogger(__name__)

#: The per-step numbers of :class:`~nos.optim.SymbolicOptimizer`, in its order.
SCALARS = ("t", "tau", "inv_T", "eta", "mu")


def capture_problem(opt: torch.optim.Optimizer) -> str | None:
    """Why ``opt``'s steps cannot be captured in a CUDA graph, or ``None``."""
    from nos.optim.symbolic_optimizer import SymbolicOptimizer

    if not isinstance(opt, SymbolicOptimizer):
        return f"{type(opt).__name__} is not a candidate optimizer"
    needs = ("_scalars", "_as_tensors", "_step_fns", "_torch_fns", "nesterov", "compile")
    if not all(hasattr(opt, name) for name in needs):
        return "this SymbolicOptimizer has no tensor-scalar step to capture"
    if getattr(opt, "_random_slots", None):
        return "the candidate draws dropout masks"
    if len(opt.param_groups) != 1:
        return "the optimizer has several parameter groups"
    if opt.param_groups[0].get("weight_decay"):
        return "its weight decay is a per-step number outside the captured step"
    return None


@contextlib.contextmanager
def _uncompiled() -> Iterator[None]:
    """``torch.compile`` as the identity: the traced step, run as it is."""
    real = torch.compile
    torch.compile = lambda fn, **kwargs: fn  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.compile = real


def tensor_step(opt: Any, *, compiled: bool) -> None:
    """Make ``opt`` step with 0-d tensor numbers (its compiled-step form), inductor-compiled
    or, with ``compiled=False``, the traced step run uncompiled (cached apart from the
    compiled one under its own key)."""
    if compiled and opt.compile:
        return
    from nos.optim.runtime import group_step
    from nos.symbolic.keys import canonical_key

    key = canonical_key(opt.candidate)
    momentum = opt.candidate.momentum.value
    context = contextlib.nullcontext() if compiled else _uncompiled()
    with context:
        for layout in ("flat", "foreach"):
            opt._step_fns[layout] = group_step(
                opt._torch_fns,
                momentum,
                nesterov=opt.nesterov,
                layout=layout,
                compile=True,
                key=key if compiled else f"uncompiled:{key}",
            )
    opt.compile = True  # the step now takes its numbers as tensors


class ScalarFeeder:
    """A SymbolicOptimizer's per-step numbers from a device table (module docstring).

    It replaces the optimizer's ``_as_tensors`` on this instance: every step (eager,
    captured or replayed) reads row ``counter`` of the table and advances the counter.
    Call :meth:`before_step` before each step; it refills the table at block boundaries.
    """

    def __init__(self, opt: Any, device: torch.device, block: int = 1024):
        self.opt, self.group, self.block = opt, opt.param_groups[0], block
        self.table = torch.zeros(block, len(SCALARS), dtype=torch.float64, device=device)
        self.counter = torch.zeros(1, dtype=torch.int64, device=device)
        self.start: int | None = None
        opt._as_tensors = self._tensors  # an instance attribute shadows the method

    def before_step(self) -> None:
        t = self.group["step"]
        if self.start is None or not self.start <= t < self.start + self.block:
            self._refill(t)

    def _refill(self, t: int) -> None:
        saved, rows = self.group["step"], []
        try:
            for i in range(self.block):
                self.group["step"] = t + i
                sc, _lr_t = self.opt._scalars(0, self.group)
                rows.append([float(sc[k]) for k in SCALARS])
        finally:
            self.group["step"] = saved
        self.table.copy_(torch.tensor(rows, dtype=torch.float64))
        self.counter.zero_()
        self.start = t

    def _tensors(self, sc: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        row = self.table.index_select(0, self.counter).view(-1)
        self.counter.add_(1)
        return dict(zip(SCALARS, row.unbind(), strict=True))


class GraphedStep:
    """The steps of one network (a trainer member) through one CUDA graph."""

    def __init__(
        self,
        member: Any,
        plan: StepPlan,
        *,
        capture: bool = True,
        warmup: int = 3,
        block: int = 1024,
    ):
        self.member, self.plan = member, plan
        self.capture, self.warmup = capture, warmup
        tensor_step(member.opt, compiled=plan.options.compile_update)
        self.feeder = ScalarFeeder(member.opt, plan.device, block)
        self.graph: Any = None
        self.steps = 0
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None
        self._out: tuple[torch.Tensor, torch.Tensor] | None = None

    def _body(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.member
        with self.plan.autocast():
            out = m.runner(x)
            loss = F.cross_entropy(out, y)
        loss.backward()
        m.opt.step()
        return loss.detach(), (out.argmax(1) == y).sum()

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.member.opt.zero_grad(set_to_none=True)
        if not self.capture:
            return self._body(x, y)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self._body(x, y)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        group = self.member.opt.param_groups[0]
        step = group["step"]
        static = (x.clone(), y.clone())
        graph = torch.cuda.CUDAGraph()
        self.member.opt.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph):
                out = self._body(*static)
        except Exception as exc:
            if out_of_memory(exc):
                raise
            warn_once(f"capturing the step in a CUDA graph failed ({type(exc).__name__}); eager")
            log.debug("CUDA graph capture failed", exc_info=True)
            self.capture = False
            self.member.opt.zero_grad(set_to_none=True)
            return False
        finally:
            group["step"] = step  # capturing ran no step
        self.graph, self._static, self._out = graph, static, out
        return True

    def __call__(self, active: list[Any], x: torch.Tensor, y: torch.Tensor) -> None:
        (m,) = active
        self.feeder.before_step()
        if self.graph is None and self.capture and self.steps >= self.warmup:
            self._capture(x, y)
        if self.graph is not None:
            assert self._static is not None and self._out is not None
            self._static[0].copy_(x)
            self._static[1].copy_(y)
            self.graph.replay()
            m.opt.param_groups[0]["step"] += 1
            loss, correct = self._out
        else:
            loss, correct = self._eager(x, y)
        m.record(loss, correct, len(y))
        self.steps += 1
