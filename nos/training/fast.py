"""The fast training step: what :class:`~nos.training.spec.StepOptions` switch on.

A :class:`StepPlan` is made per :class:`~nos.training.trainer.Trainer` from the options and
the task's device; the trainer asks it for networks, input layout, autocast and the step:

* **channels_last** - image batches and convolution weights in NHWC order, the layout
  cuDNN's fastest convolution kernels (and tensor cores) use. By default on CUDA only:
  on the CPU it changes the convolution kernels, hence the last bits of every result.
* **bf16 autocast** (``precision="bf16"``) - the forward pass and the loss run in
  bfloat16 where autocast allows (matrix products, convolutions), the weights, gradients
  and the candidate's update stay float32. It changes fitness values (see the README).
* **A network compiled once per worker** (``compile="model"`` or ``"all"``) - the first
  evaluation of a process compiles the task's network with ``torch.compile``; every later
  run of every candidate reuses that module and its compiled code, with its weights reset
  in place to the run's initialisation (parameters keep their identity, so nothing
  recompiles). A compiler failure (tried once, on a throwaway forward and backward pass
  that leaves weights, statistics, gradients and random state as they were) falls back to
  eager for the rest of the process, after one warning.
* **The candidate's update compiled** (``compile="update"`` or ``"all"``) -
  ``SymbolicOptimizer(compile=True)``, one compiled step per canonical key, cached by
  :mod:`nos.optim.runtime`.
* **A CUDA graph of the whole step** (``cuda_graph=True``, CUDA only) -
  :mod:`nos.training.graphs`.

:func:`release_memory` drops what a finished evaluation left on a GPU, and
:func:`out_of_memory` tells a device out-of-memory error from other faults.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nos.training.spec import StepOptions
from nos.training.tasks import Task

__all__ = [
    "CompiledNet",
    "StepPlan",
    "out_of_memory",
    "release_memory",
    "reset_networks",
    "warn_once",
]

log = logging.getLogger(__name__)
_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A RuntimeWarning the first time ``message`` comes up in this process."""
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch's out-of-memory error (a device allocation that failed)."""
    return isinstance(exc, torch.OutOfMemoryError)


def release_memory(device: torch.device | str) -> None:
    """Hand a GPU's cached blocks back after an evaluation (unreferenced tensors first),
    so that packed workers share the device's memory; nothing to do on the CPU."""
    if torch.device(device).type != "cuda":
        return
    gc.collect()
    torch.cuda.empty_cache()


class CompiledNet:
    """``torch.compile`` of a network, used in place of it; eager after a compiler failure.

    The first call in each mode (training, evaluation) is a trial: in training mode a
    forward and backward pass of the compiled network, inside a forked random state,
    after which gradients, BatchNorm statistics and the step counter are restored. If the
    compiled network fails and the eager one does not, the failure is the compiler's:
    one warning, and the eager network from then on.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self._compiled: Any = torch.compile(module, dynamic=False)
        self._tried: set[bool] = set()
        self.failed = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.module(x)
        mode = self.module.training
        if mode not in self._tried:
            self._tried.add(mode)
            if not self._trial(x):
                return self.module(x)
        try:
            return self._compiled(x)
        except Exception as exc:  # e.g. a new input shape that does not compile
            if out_of_memory(exc):
                raise
            out = self.module(x)  # the network's own error, if it is not the compiler's
            self._fail(exc)
            return out

    def _fail(self, exc: BaseException) -> None:
        self.failed = True
        warn_once(f"torch.compile of the network failed ({type(exc).__name__}); eager")
        log.debug("compiling the network failed", exc_info=exc)

    def _trial(self, x: torch.Tensor) -> bool:
        devices = [x.device] if x.device.type == "cuda" else []
        buffers = {k: v.clone() for k, v in self.module.named_buffers()}
        grads = {p: p.grad for p in self.module.parameters()}
        try:
            with torch.random.fork_rng(devices=devices):
                out = self._compiled(x)
                if self.module.training and torch.is_grad_enabled():
                    out.float().sum().backward()
            return True
        except Exception as exc:
            if out_of_memory(exc):
                raise
            self._fail(exc)
            return False
        finally:
            with torch.no_grad():
                for name, value in self.module.named_buffers():
                    value.copy_(buffers[name])
            for p, g in grads.items():
                p.grad = g


# Networks compiled in this process, by task, model options, device and layout.
_NETS: dict[tuple[Any, ...], CompiledNet] = {}


def reset_networks() -> None:
    """Forget the compiled networks of this process."""
    _NETS.clear()


class StepPlan:
    """How a trainer runs its steps for ``options`` on ``task``'s device."""

    def __init__(self, options: StepOptions, task: Task):
        self.options = options
        self.device = task.device
        cuda = self.device.type == "cuda"
        images = task.pixels is not None  # the uint8 image sets (ConvNets)
        wanted = options.channels_last if options.channels_last is not None else cuda
        self.channels_last = bool(images and wanted)
        self.dtype = torch.bfloat16 if options.precision == "bf16" else None
        self.graphs = options.cuda_graph and cuda
        if options.cuda_graph and not cuda:
            warn_once("CUDA graphs need a CUDA device; the steps run eagerly")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        # A CUDA graph cannot capture autocast's cast cache.
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=not self.graphs)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the plan's memory format."""
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def run(self, net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``net(x)`` under the plan's autocast and layout (validation passes)."""
        with self.autocast():
            return net(self.prepare(x))

    def network(
        self, task: Task, seed: int, *, shared: bool
    ) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
        """The run's network initialised from ``seed``, and what to call for a forward
        pass. ``shared`` lets a compiled network of this process serve (one network at a
        time: not for a batched sweep)."""
        fresh = task.build_model(seed)
        if self.channels_last:
            fresh = fresh.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if not (shared and self.options.compile_model):
            return fresh, fresh
        options = tuple(sorted(task.model_options.items()))
        key = (task.name, options, str(self.device), self.channels_last)
        net = _NETS.get(key)
        if net is None:
            net = _NETS[key] = CompiledNet(fresh)
        else:  # same parameter tensors, new values: the compiled code stays valid
            net.module.load_state_dict(fresh.state_dict())
            for p in net.module.parameters():
                p.grad = None
        return net.module, net
