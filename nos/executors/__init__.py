"""Executors: where evaluation jobs run (one registry, :data:`EXECUTORS`).

* :mod:`nos.executors.base` - the :class:`Executor` interface and plain-data :class:`Outcome`;
* :mod:`nos.executors.serial` - jobs in the calling process;
* :mod:`nos.executors.local` - spawned worker processes with crash isolation;
* :mod:`nos.executors.ray` - Ray tasks on a cluster (the optional extra ``nos[ray]``);
* :mod:`nos.executors.slurm` - the batch script that starts a Ray cluster under Slurm.

May import: :mod:`nos.errors`, :mod:`nos.status`. Executors know nothing of candidates or
training: a job is a ``"module:function"`` path and a plain-data payload.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nos.executors.base import Executor, Outcome, resolve_function
from nos.executors.local import LocalExecutor
from nos.executors.serial import SerialExecutor

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "Outcome",
    "SerialExecutor",
    "make_executor",
    "resolve_function",
]


def _serial(
    function: str, *, workers: int | None = None, timeout_s: float | None = None
) -> Executor:
    return SerialExecutor(function)


def _local(
    function: str,
    *,
    workers: int | None = None,
    timeout_s: float | None = None,
    worker_env: Any = None,
) -> Executor:
    return LocalExecutor(function, workers=workers, timeout_s=timeout_s, worker_env=worker_env)


def _ray(
    function: str, *, workers: int | None = None, timeout_s: float | None = None, **options: Any
) -> Executor:
    from nos.executors.ray import RayExecutor  # an optional extra: imported when asked for

    return RayExecutor(function, workers=workers, timeout_s=timeout_s, **options)


#: Executor constructors by name (``--executor``).
EXECUTORS: dict[str, Callable[..., Executor]] = {"serial": _serial, "local": _local, "ray": _ray}


def make_executor(
    kind: str,
    function: str,
    *,
    workers: int | None = None,
    timeout_s: float | None = None,
    **options: Any,
) -> Executor:
    """An executor by name (a key of :data:`EXECUTORS`)."""
    try:
        make = EXECUTORS[kind]
    except KeyError:
        raise ValueError(
            f"unknown executor {kind!r} (choose from {', '.join(EXECUTORS)})"
        ) from None
    return make(function, workers=workers, timeout_s=timeout_s, **options)
