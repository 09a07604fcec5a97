"""Data sets and input pipelines of the proxy tasks.

Loaders return a :class:`Dataset` of plain numpy arrays; nothing is ever downloaded:

* :func:`load_cifar10` - CIFAR-10 from the official archive (binary or Python version) in a
  directory the user names (argument or ``$NOS_DATA``), split 45,000 / 5,000 as in the paper;
* :func:`load_flowers102` - Oxford Flowers102 from its official files, resized and cached;
* :func:`load_digits`, :func:`load_mnist1d` - small built-in sets that need no files.

The test split is loaded only when asked for with ``include_test=True``.
"""

from __future__ import annotations

import os
from typing import Any

from nos.training.data.base import DATA_ENV, DataError, Dataset, Split, default_cache_dir
from nos.training.data.cifar10 import check_cifar10, load_cifar10
from nos.training.data.embedded import load_digits, load_mnist1d
from nos.training.data.flowers102 import check_flowers102, load_flowers102
from nos.training.data.transforms import (
    as_float32,
    augment_batch,
    channel_stats,
    normalize,
    to_tensor,
)
from nos.training.registry import get_task, task_names

__all__ = [
    "DATA_ENV",
    "DataError",
    "Dataset",
    "Split",
    "as_float32",
    "augment_batch",
    "channel_stats",
    "check_dataset",
    "default_cache_dir",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_flowers102",
    "load_mnist1d",
    "normalize",
    "to_tensor",
]


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Dataset:
    """Load the data set of the registered task ``name``; ``root`` is used only by the
    file-based sets (:mod:`nos.training.registry`)."""
    if name not in task_names():
        known = ", ".join(sorted(task_names()))
        raise DataError(f"unknown data set {name!r}; choose one of {known}")
    info = get_task(name)
    loader = info.loader()
    if info.needs_data_dir:
        return loader(root, **options)
    return loader(**options)


#: Cheap checks of the file-based data sets (files present, sizes plausible).
_CHECKS = {"cifar10": check_cifar10, "flowers102": check_flowers102}


def check_dataset(name: str, root: str | os.PathLike[str] | None = None) -> None:
    """A one-line :class:`DataError` now if the files of ``name`` are missing; data sets
    that need no files pass."""
    if name in task_names() and get_task(name).needs_data_dir and name in _CHECKS:
        _CHECKS[name](root)
