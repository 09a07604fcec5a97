"""Shared pieces of the data loaders: the error type, the split containers and file helpers.

Loaders return plain numpy arrays so that the proxy tasks (and worker processes) can use
them without knowing where they came from: images are ``uint8`` in NHWC layout or
``float32``, labels are ``int64`` class indices starting at 0.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from nos.errors import NosError

__all__ = [
    "DATA_ENV",
    "DataError",
    "Dataset",
    "Split",
    "atomic_write",
    "default_cache_dir",
    "resolve_root",
]

#: Environment variable naming the directory that holds the downloaded data sets.
DATA_ENV = "NOS_DATA"


class DataError(NosError):
    """A data set is missing or malformed; the message says which file and how to get it."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None):
        self.path = None if path is None else Path(path)
        # One line: the CLI prints the message as is.
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True, eq=False)
class Split:
    """Inputs ``x`` (one sample per leading index) and their targets ``y``: ``int64`` class
    indices (one per sample, or one per position of a sequence) or ``float32`` regression
    targets."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.y.dtype == np.int64:
            if self.y.ndim not in (1, 2):
                raise ValueError(f"class labels must be 1-D or 2-D, got shape {self.y.shape}")
        elif self.y.dtype != np.float32:
            raise ValueError(f"targets must be int64 labels or float32 values, got {self.y.dtype}")
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set split for the search: classes, or the number of regression outputs, in
    ``num_classes``.

    ``test`` is ``None`` unless the loader was asked for it explicitly (``include_test=True``):
    the search must never see the test images.
    """

    name: str
    train: Split
    validation: Split
    num_classes: int
    test: Split | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(32, 32, 3)`` for CIFAR-10 (NHWC without N)."""
        return tuple(self.train.x.shape[1:])

    def splits(self) -> dict[str, Split]:
        """The splits that were loaded, by name."""
        out = {"train": self.train, "validation": self.validation}
        if self.test is not None:
            out["test"] = self.test
        return out


def resolve_root(root: str | os.PathLike[str] | None, what: str, hint: str) -> Path:
    """The data directory: the argument, else ``$NOS_DATA``; a one-line error if neither."""
    if root is None:
        env = os.environ.get(DATA_ENV)
        if not env:
            raise DataError(f"no data directory for {what}: pass one or set {DATA_ENV}; {hint}")
        root = env
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"data directory {path} for {what} does not exist; {hint}", path=path)
    return path


def default_cache_dir() -> Path:
    """Per-user cache directory for generated data: ``$XDG_CACHE_HOME/nos`` or ``~/.cache/nos``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "nos"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file through ``write(handle)`` so that readers never see a partial file.

    The data go to a temporary file in the same directory, which then replaces ``path`` in
    one rename; concurrent writers (parallel workers filling the same cache) are harmless.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; caches are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
