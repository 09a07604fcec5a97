"""Devices: ``--device cpu|cuda|cuda:N|auto`` read once, and CUDA's deterministic settings.

:func:`resolve_device` turns the user's text into a ``torch.device`` or a one-line
:class:`~nos.errors.NosError` (an unknown name, CUDA asked for on a torch without it or a
machine without a GPU, a GPU index that does not exist). :func:`make_deterministic` is
called by every evaluation on a CUDA device before its first CUDA operation:

* ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` - cuBLAS picks reproducible reduction orders only
  with a fixed workspace; it must be set before cuBLAS starts, hence in the worker;
* ``torch.use_deterministic_algorithms(True)`` - ops without a deterministic kernel raise
  instead of silently differing between runs;
* ``torch.backends.cudnn.deterministic = True`` and ``benchmark = False`` - cuDNN's
  autotuner may pick other convolution algorithms on each run.

What they cost: deterministic cuDNN convolutions and the fixed cuBLAS workspace typically
slow small convolutional networks by some percent to tens of percent (scatter-add based
ops, e.g. in embedding backward, are the slowest); ``tools/bench_gpu.py`` measures it on
the machine at hand. On the CPU none of these settings apply: CPU kernels here are
deterministic for a fixed thread count, and workers run one thread each.

:func:`worker_pinning` spreads the local executor's workers over the GPUs: each worker
process sees exactly one (``CUDA_VISIBLE_DEVICES`` set before it starts), round-robin over
the GPUs visible to the driver, ``workers_per_gpu`` of them per GPU by default.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from nos.errors import NosError

__all__ = [
    "DEVICE_HELP",
    "Pinning",
    "gpu_ids",
    "make_deterministic",
    "resolve_device",
    "worker_pinning",
]

DEVICE_HELP = "cpu, cuda, cuda:N or auto (cuda when a GPU is present)"
_PATTERN = re.compile(r"^(cpu|cuda|auto)(?::(\d+))?$")


def resolve_device(text: str | torch.device) -> torch.device:
    """The device named by ``text`` (see the module docstring); raises NosError."""
    if isinstance(text, torch.device):
        text = str(text)
    spec = str(text).strip().lower()
    match = _PATTERN.match(spec)
    if match is None or (match.group(1) != "cuda" and match.group(2) is not None):
        raise NosError(f"unknown device {text!r}; use {DEVICE_HELP}")
    kind, index = match.group(1), match.group(2)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if torch.version.cuda is None:
        raise NosError(
            f"device {text!r}: this torch ({torch.__version__}) was built without "
            "CUDA; install a CUDA build of torch or use --device cpu"
        )
    count = torch.cuda.device_count()
    if count == 0:
        raise NosError(f"device {text!r}: no CUDA GPU is visible on this machine")
    if index is not None and int(index) >= count:
        raise NosError(f"device {text!r}: only {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda") if index is None else torch.device("cuda", int(index))


def make_deterministic(device: torch.device) -> None:
    """Turn on CUDA's deterministic settings for evaluations on ``device`` (no-op on CPU)."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def gpu_ids() -> list[str]:
    """The GPUs this process sees, as entries for a child's ``CUDA_VISIBLE_DEVICES``
    (the driver's own ``CUDA_VISIBLE_DEVICES`` is respected: its entries are passed on)."""
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip():
        return [v.strip() for v in visible.split(",") if v.strip()][:count]
    return [str(i) for i in range(count)]


@dataclass(frozen=True)
class Pinning:
    """Where the local executor's workers train: the device name a job uses inside its
    worker, the environment of each worker slot, and the number of workers."""

    device: str
    envs: tuple[dict[str, str], ...]
    workers: int


def worker_pinning(device: str, workers_per_gpu: int = 1, workers: int | None = None) -> Pinning:
    """One GPU per worker process for evaluations on ``device`` (``cuda``: all visible
    GPUs, ``cuda:N``: GPU N only), round-robin; ``workers`` defaults to
    ``workers_per_gpu`` x the GPUs. On the CPU nothing is pinned."""
    if isinstance(workers_per_gpu, bool) or not isinstance(workers_per_gpu, int):
        raise NosError(f"--workers-per-gpu must be a positive integer, got {workers_per_gpu!r}")
    if workers_per_gpu < 1:
        raise NosError(f"--workers-per-gpu must be at least 1, got {workers_per_gpu}")
    dev = resolve_device(device)
    if dev.type != "cuda":
        return Pinning(str(dev), (), workers or 0)
    ids = gpu_ids()
    if dev.index is not None:
        ids = [ids[dev.index]]
    count = workers or len(ids) * workers_per_gpu
    envs = tuple({"CUDA_VISIBLE_DEVICES": ids[i % len(ids)]} for i in range(count))
    return Pinning("cuda", envs, count)
