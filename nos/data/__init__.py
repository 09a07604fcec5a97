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
from collections.abc import Callable
from typing import Any

from nos.data.base import DATA_ENV, DataError, Dataset, Split, default_cache_dir
from nos.data.cifar10 import load_cifar10
from nos.data.embedded import load_digits, load_mnist1d
from nos.data.flowers102 import load_flowers102
from nos.data.transforms import as_float32, augment_batch, channel_stats, normalize, to_tensor

__all__ = [
    "DATA_ENV",
    "LOADERS",
    "DataError",
    "Dataset",
    "Split",
    "as_float32",
    "augment_batch",
    "channel_stats",
    "default_cache_dir",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_flowers102",
    "load_mnist1d",
    "normalize",
    "to_tensor",
]

#: Loaders by data-set name; the file-based ones take the data directory as first argument.
LOADERS: dict[str, Callable[..., Dataset]] = {
    "cifar10": load_cifar10,
    "flowers102": load_flowers102,
    "digits": load_digits,
    "mnist1d": load_mnist1d,
}
_NEEDS_ROOT = frozenset({"cifar10", "flowers102"})


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Dataset:
    """Load a data set by name; ``root`` is used only by the file-based sets."""
    try:
        loader = LOADERS[name]
    except KeyError:
        raise DataError(
            f"unknown data set {name!r}; choose one of {', '.join(sorted(LOADERS))}"
        ) from None
    if name in _NEEDS_ROOT:
        return loader(root, **options)
    return loader(**options)
