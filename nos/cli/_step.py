"""Flags of the training step shared by ``nos eval`` and ``nos search`` (and the bench).

Light at import: the choices come from the torch-free :mod:`nos.training.spec`.
"""

from __future__ import annotations

import argparse
from typing import Any

from nos.cli._args import positive_int
from nos.training.spec import COMPILE_MODES, PRECISIONS

__all__ = ["CHANNELS_LAST", "STEP_FIELDS", "add_step_flags", "check_data", "step_fields"]

#: The flags' destinations, which are also the names of the fields they fill
#: (:class:`nos.training.spec.EvalSpec`, the search's ``Execution``).
STEP_FIELDS = ("precision", "compile", "cuda_graph", "channels_last", "batch_sweep")
#: ``--channels-last``, and the StepOptions value of each choice.
CHANNELS_LAST = {"auto": None, "on": True, "off": False}


def add_step_flags(parser: argparse.ArgumentParser, *, workers_per_gpu: bool = False) -> None:
    """Add ``--precision``, ``--compile``, ``--cuda-graph``, ``--channels-last``,
    ``--batch-sweep`` (and ``--workers-per-gpu``). Their defaults are ``None``, so that a
    resumed run can tell a flag given from one left out."""
    a = parser.add_argument
    a(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default), or bf16: autocast of the forward pass (it changes fitness "
        "values slightly; see the README)",
    )
    a(
        "--compile",
        choices=COMPILE_MODES,
        help="torch.compile the network (once per worker, reused by every candidate), the "
        "candidate's update, or all (default off; eager after one warning if it fails)",
    )
    a(
        "--cuda-graph",
        action="store_true",
        default=None,
        help="capture forward, backward and the candidate's update in one CUDA graph "
        "(CUDA only; compiles the update)",
    )
    a(
        "--channels-last",
        choices=tuple(CHANNELS_LAST),
        help="image batches and convolution weights channels-last: auto (default: on CUDA "
        "only), on (also on the CPU: somewhat faster for the paper's ConvNet there, but "
        "results differ in their last bits), off",
    )
    a(
        "--batch-sweep",
        action="store_true",
        default=None,
        help="train each LR-sweep stage as one batched model (torch.func.vmap); off by "
        "default: slower on the CPU, unmeasured on GPUs",
    )
    if workers_per_gpu:
        a(
            "--workers-per-gpu",
            type=positive_int,
            help="evaluations packed onto each GPU (default 1); workers are pinned "
            "round-robin to the visible GPUs; ignored on the CPU",
        )


def step_fields(args: argparse.Namespace, previous: Any = None) -> dict[str, Any]:
    """The step fields the flags give; a flag left out keeps ``previous``'s value (a
    resumed run's) or the default."""
    defaults: dict[str, Any] = {
        "precision": "fp32",
        "compile": "off",
        "cuda_graph": False,
        "channels_last": "auto",
        "batch_sweep": False,
    }
    if hasattr(args, "workers_per_gpu"):
        defaults["workers_per_gpu"] = 1
    out = {}
    for name, default in defaults.items():
        value = getattr(args, name, None)
        if value is None:
            value = getattr(previous, name, default) if previous is not None else default
        out[name] = value
    return out


def check_data(task: str, data_dir: str | None) -> None:
    """A one-line error now if ``task``'s files are missing or incomplete, rather than an
    error in every evaluation of a run."""
    from nos.training.data import check_dataset

    check_dataset(task, data_dir or None)
