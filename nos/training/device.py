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
"""

from __future__ import annotations

import os
import re

import torch

from nos.errors import NosError

__all__ = ["DEVICE_HELP", "make_deterministic", "resolve_device"]

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
