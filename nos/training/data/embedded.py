"""Small data sets that need no download, for quick runs and tests.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images), split with a
  fixed seed into train / validation / test.
* ``mnist1d``: MNIST-1D (Greydanus 2020) produced by the ``mnist1d`` package's generator with
  a fixed seed, never downloaded. Generating takes a few seconds, so the arrays are cached
  under the user cache directory.
"""

from __future__ import annotations

import logging
import os
import random
from importlib import metadata
from pathlib import Path

import numpy as np

from nos.training.data.base import DataError, Dataset, Split, atomic_write, default_cache_dir

__all__ = ["load_digits", "load_mnist1d"]

log = logging.getLogger(__name__)


def load_digits(
    *,
    include_test: bool = False,
    seed: int = 0,
    validation_size: int = 300,
    test_size: int = 297,
) -> Dataset:
    """scikit-learn's 8x8 digits as float32 NHWC images in [0, 1] (shape (N, 8, 8, 1)).

    The 1,797 images are permuted with ``seed`` and cut into train (1,200 by default),
    validation and test; the same seed always gives the same split.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., None]  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    if validation_size < 1 or test_size < 0 or validation_size + test_size >= len(y):
        raise ValueError(f"validation_size + test_size must leave training images ({len(y)})")
    order = np.random.default_rng(seed).permutation(len(y))
    n_train = len(y) - validation_size - test_size
    train, val, test = np.split(order, [n_train, n_train + validation_size])
    return Dataset(
        name="digits",
        train=Split(x[train], y[train]),
        validation=Split(x[val], y[val]),
        num_classes=10,
        test=Split(x[test], y[test]) if include_test else None,
    )


_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def _mnist1d_version() -> str:
    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        raise DataError(
            "the mnist1d data set needs the 'mnist1d' package: pip install mnist1d"
        ) from None


def _generate_mnist1d(seed: int, num_samples: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed, args.num_samples = seed, num_samples
    # The generator reseeds and draws from the global numpy and random states; put them
    # back so that loading data never changes the caller's random streams.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {
        "x": np.asarray(data["x"], dtype=np.float32),
        "y": np.asarray(data["y"], dtype=np.int64),
        "x_test": np.asarray(data["x_test"], dtype=np.float32),
        "y_test": np.asarray(data["y_test"], dtype=np.int64),
    }


def _read_mnist1d_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in _MNIST1D_KEYS}
    except Exception as exc:  # any unreadable cache is simply regenerated
        log.warning("regenerating unreadable MNIST-1D cache %s (%s)", path, exc)
        return None
    if len(arrays["x"]) != len(arrays["y"]) or len(arrays["x_test"]) != len(arrays["y_test"]):
        log.warning("regenerating inconsistent MNIST-1D cache %s", path)
        return None
    return arrays


def load_mnist1d(
    *,
    include_test: bool = False,
    seed: int = 42,
    num_samples: int = 5000,
    validation_size: int = 400,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """MNIST-1D as float32 signals of shape (N, 40) and int64 labels.

    The generator's own train/test cut (80/20) is kept; the last ``validation_size`` of its
    training signals form the validation split. ``seed=42`` and ``num_samples=5000`` are the
    generator's defaults. The arrays are cached in ``cache_dir`` (default
    ``$XDG_CACHE_HOME/nos`` or ``~/.cache/nos``).
    """
    version = _mnist1d_version()
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"mnist1d-{version}-seed{seed}-n{num_samples}.npz"
    arrays = _read_mnist1d_cache(path)
    if arrays is None:
        arrays = _generate_mnist1d(seed, num_samples)
        try:
            atomic_write(path, lambda handle: np.savez(handle, allow_pickle=False, **arrays))
        except OSError as exc:  # no writable cache only costs time
            log.warning("could not write MNIST-1D cache %s (%s)", path, exc)
    x, y = arrays["x"], arrays["y"]
    if not 0 < validation_size < len(y):
        raise ValueError(f"validation_size must be between 1 and {len(y) - 1}")
    cut = len(y) - validation_size
    return Dataset(
        name="mnist1d",
        train=Split(x[:cut], y[:cut]),
        validation=Split(x[cut:], y[cut:]),
        num_classes=10,
        test=Split(arrays["x_test"], arrays["y_test"]) if include_test else None,
    )
