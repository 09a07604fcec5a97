"""CIFAR-10 from the official archives, in either the binary or the Python version.

The user downloads and extracts the archive once; nothing is fetched at run time. The 50,000
official training images are split by index as in the paper: train = 0-44,999, validation =
45,000-49,999. The official test set is read only with ``include_test=True``.

The Python version is a set of pickles. They are read with a restricted unpickler that can
only rebuild plain containers, strings, numbers and numpy arrays, so a tampered file cannot
run code.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nos.training.data.base import DataError, Dataset, Split, resolve_root

__all__ = ["CIFAR10_URL", "check_cifar10", "load_cifar10"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"

_BIN_DIR = "cifar-10-batches-bin"
_PY_DIR = "cifar-10-batches-py"
_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
_TEST_FILE = "test_batch"
_SIDE, _CHANNELS, _CLASSES = 32, 3, 10
_PIXELS = _SIDE * _SIDE * _CHANNELS
_RECORD = 1 + _PIXELS  # binary record: one label byte, then the red, green and blue planes

Format = Literal["auto", "bin", "py"]


def _hint(fmt: str) -> str:
    version = {"bin": "CIFAR-10 binary version", "py": "CIFAR-10 python version"}.get(
        fmt, "CIFAR-10 binary version or python version"
    )
    return f"download the '{version}' from {CIFAR10_URL} and extract it there"


def _reconstruct_function() -> Any:
    # numpy 2 moved the array internals to numpy._core; the old name is a deprecated shim,
    # so the function is looked up directly instead of through the name a file carries.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


# The only globals a CIFAR-10 pickle needs: numpy's array reconstruction (under its numpy 1
# and numpy 2 module names), the array type and the dtype type.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct_function(),
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct_function(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy's array reconstruction."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays, "
                "lists, bytes and numbers"
            ) from None


def _load_pickle(path: Path) -> dict[Any, Any]:
    try:
        with path.open("rb") as handle:
            # The official files were written by Python 2: byte strings stay bytes.
            obj = _RestrictedUnpickler(handle, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(
            f"{path}: unsafe or malformed pickle ({exc}); {_hint('py')}", path=path
        ) from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise DataError(
            f"{path}: not a CIFAR-10 batch pickle ({type(exc).__name__}: {exc}); {_hint('py')}",
            path=path,
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR-10 batch (no dict inside); {_hint('py')}", path=path)
    return obj


def _read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 file {path}; {_hint('py')}", path=path)
    batch = _load_pickle(path)
    # Files re-saved by Python 3 may carry str keys instead of bytes.
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path}: batch lacks 'data' or 'labels'; {_hint('py')}", path=path)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(
            f"{path}: 'data' is {data.dtype}{data.shape}, expected uint8 (N, {_PIXELS}); "
            f"{_hint('py')}",
            path=path,
        )
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: 'labels' are not integers; {_hint('py')}", path=path) from None
    if y.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {y.size} labels; {_hint('py')}", path=path)
    return data, y


def _read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 file {path}; {_hint('bin')}", path=path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % _RECORD:
        raise DataError(
            f"{path}: {raw.size} bytes is not a whole number of {_RECORD}-byte records "
            f"(truncated or not a CIFAR-10 binary batch); {_hint('bin')}",
            path=path,
        )
    records = raw.reshape(-1, _RECORD)
    return records[:, 1:], records[:, 0].astype(np.int64)


def _to_split(path: Path, data: np.ndarray, y: np.ndarray, fmt: str) -> Split:
    if y.size and (y.min() < 0 or y.max() >= _CLASSES):
        raise DataError(f"{path}: labels outside 0-9; {_hint(fmt)}", path=path)
    # Each row is three 32x32 planes (R, G, B); the models and augmentation expect NHWC.
    images = data.reshape(-1, _CHANNELS, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return Split(np.ascontiguousarray(images), y)


def _find_layout(root: Path, fmt: Format) -> tuple[Path, str]:
    """The batch directory and its format; ``root`` may be the batch directory itself."""
    candidates: list[tuple[Path, str]] = []
    if fmt in ("auto", "bin"):
        candidates += [(root / _BIN_DIR, "bin"), (root, "bin")]
    if fmt in ("auto", "py"):
        candidates += [(root / _PY_DIR, "py"), (root, "py")]
    for folder, kind in candidates:
        suffix = ".bin" if kind == "bin" else ""
        if (folder / f"{_TRAIN_FILES[0]}{suffix}").is_file():
            return folder, kind
    if fmt == "py":
        expected = root / _PY_DIR / _TRAIN_FILES[0]
    else:
        expected = root / _BIN_DIR / f"{_TRAIN_FILES[0]}.bin"
    raise DataError(f"CIFAR-10 not found: expected {expected}; {_hint(fmt)}", path=expected)


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    *,
    include_test: bool = False,
    validation_size: int = 5000,
    fmt: Format = "auto",
) -> Dataset:
    """Load CIFAR-10 as uint8 NHWC images and int64 labels.

    ``root`` (default ``$NOS_DATA``) holds ``cifar-10-batches-bin/`` or ``cifar-10-batches-py/``
    (the binary version is preferred when both are there), or is such a directory itself.
    The last ``validation_size`` of the training images form the validation split.
    """
    if fmt not in ("auto", "bin", "py"):
        raise ValueError(f"fmt must be 'auto', 'bin' or 'py', not {fmt!r}")
    folder, kind = _find_layout(resolve_root(root, "CIFAR-10", _hint(fmt)), fmt)
    suffix = ".bin" if kind == "bin" else ""
    read = _read_bin_batch if kind == "bin" else _read_py_batch

    def split_of(name: str) -> Split:
        path = folder / f"{name}{suffix}"
        return _to_split(path, *read(path), kind)

    parts = [split_of(name) for name in _TRAIN_FILES]
    x = np.concatenate([p.x for p in parts])
    y = np.concatenate([p.y for p in parts])
    if not 0 < validation_size < len(y):
        raise DataError(
            f"{folder}: {len(y)} training images cannot leave {validation_size} for validation; "
            f"{_hint(kind)}",
            path=folder,
        )
    cut = len(y) - validation_size
    return Dataset(
        name="cifar10",
        train=Split(x[:cut], y[:cut]),
        validation=Split(x[cut:], y[cut:]),
        num_classes=_CLASSES,
        test=split_of(_TEST_FILE) if include_test else None,
    )


def check_cifar10(root: str | os.PathLike[str] | None = None, *, fmt: Format = "auto") -> Path:
    """The batch directory, once every training batch is there (and, for the binary
    version, a whole number of records): a cheap check before a run, without reading
    the images. Raises the loader's one-line :class:`DataError`."""
    folder, kind = _find_layout(resolve_root(root, "CIFAR-10", _hint(fmt)), fmt)
    for name in _TRAIN_FILES:
        path = folder / (f"{name}.bin" if kind == "bin" else name)
        if not path.is_file():
            raise DataError(f"missing CIFAR-10 file {path}; {_hint(kind)}", path=path)
        size = path.stat().st_size
        if kind == "bin" and (size == 0 or size % _RECORD):
            raise DataError(
                f"{path}: {size} bytes is not a whole number of {_RECORD}-byte records "
                f"(truncated or not a CIFAR-10 binary batch); {_hint(kind)}",
                path=path,
            )
    return folder
