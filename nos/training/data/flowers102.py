"""Oxford Flowers102 from its official files, shrunk to small square images.

Expected layout under the data directory (or its ``flowers-102/`` subdirectory)::

    jpg/image_00001.jpg ... jpg/image_08189.jpg   (102flowers.tgz)
    imagelabels.mat                               (key "labels", classes 1..102)
    setid.mat                                     (keys "trnid", "valid", "tstid", ids 1..N)

Decoding 8,189 JPEGs is slow, so the resized images are cached in a ``.npy`` file beside the
data, one per size, and rebuilt whenever it is missing or unreadable.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from nos.training.data.base import DataError, Dataset, Split, atomic_write, resolve_root

__all__ = ["FLOWERS102_URL", "check_flowers102", "load_flowers102"]

FLOWERS102_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
_HINT = (
    f"download 102flowers.tgz, imagelabels.mat and setid.mat from {FLOWERS102_URL} "
    "and extract the archive beside the .mat files"
)
_CLASSES = 102
_CACHE_VERSION = 1

log = logging.getLogger(__name__)


def _find_folder(root: Path) -> Path:
    for folder in (root, root / "flowers-102", root / "flowers102"):
        if (folder / "imagelabels.mat").is_file():
            return folder
    expected = root / "imagelabels.mat"
    raise DataError(f"Flowers102 not found: expected {expected}; {_HINT}", path=expected)


def _read_mat(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    import scipy.io  # deferred: only this loader needs scipy

    if not path.is_file():
        raise DataError(f"missing Flowers102 file {path}; {_HINT}", path=path)
    try:
        mat = scipy.io.loadmat(path)
    except (
        scipy.io.matlab.MatReadError,
        NotImplementedError,
        ValueError,
        TypeError,
        OSError,
    ) as exc:
        raise DataError(f"{path}: unreadable .mat file ({exc}); {_HINT}", path=path) from None
    out = {}
    for key in keys:
        if key not in mat:
            raise DataError(f"{path}: no '{key}' entry; {_HINT}", path=path)
        try:
            out[key] = np.asarray(mat[key], dtype=np.int64).ravel()
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: '{key}' is not an integer array; {_HINT}", path=path
            ) from None
    return out


def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise DataError(f"missing Flowers102 image {path}; {_HINT}", path=path)
    try:
        with Image.open(path) as img:
            # Let the JPEG decoder downscale by a power of two first (never below the target).
            img.draft("RGB", (size, size))
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({exc}); {_HINT}", path=path) from None


def _cache_path(folder: Path, size: int) -> Path:
    return folder / f"nos-flowers102-v{_CACHE_VERSION}-{size}x{size}.npy"


def _load_cache(path: Path, count: int, size: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        log.warning("rebuilding unreadable Flowers102 cache %s (%s)", path, exc)
        return None
    if images.dtype != np.uint8 or images.shape != (count, size, size, 3):
        log.warning("rebuilding Flowers102 cache %s with unexpected shape", path)
        return None
    return images


def _build_images(folder: Path, count: int, size: int, cache: bool) -> np.ndarray:
    path = _cache_path(folder, size)
    images = _load_cache(path, count, size) if cache else None
    if images is not None:
        return images
    images = np.stack(
        [_decode(folder / "jpg" / f"image_{i:05d}.jpg", size) for i in range(1, count + 1)]
    )
    if cache:
        try:
            atomic_write(path, lambda handle: np.save(handle, images, allow_pickle=False))
        except OSError as exc:  # a read-only data directory still works, just slower
            log.warning("could not write Flowers102 cache %s (%s)", path, exc)
    return images


def check_flowers102(root: str | os.PathLike[str] | None = None) -> Path:
    """The data folder, once its label and split files are there (a cheap check before a
    run; the images are checked when they are decoded)."""
    folder = _find_folder(resolve_root(root, "Flowers102", _HINT))
    path = folder / "setid.mat"
    if not path.is_file():
        raise DataError(f"missing Flowers102 file {path}; {_HINT}", path=path)
    return folder


def load_flowers102(
    root: str | os.PathLike[str] | None = None,
    *,
    size: int = 32,
    include_test: bool = False,
    cache: bool = True,
) -> Dataset:
    """Load Flowers102 as uint8 NHWC images of ``size`` x ``size`` and labels 0..101.

    Each photo is resized as a whole (aspect ratio not kept) with bilinear filtering. The
    official ``trnid``/``valid``/``tstid`` lists give the train, validation and test splits;
    ``root`` defaults to ``$NOS_DATA``.
    """
    if size < 1:
        raise ValueError(f"size must be positive, not {size}")
    folder = _find_folder(resolve_root(root, "Flowers102", _HINT))
    labels = _read_mat(folder / "imagelabels.mat", ("labels",))["labels"]
    ids = _read_mat(folder / "setid.mat", ("trnid", "valid", "tstid"))
    count = labels.size
    if count == 0 or labels.min() < 1 or labels.max() > _CLASSES:
        raise DataError(f"{folder / 'imagelabels.mat'}: labels outside 1..{_CLASSES}; {_HINT}")
    for key, values in ids.items():
        if values.size and (values.min() < 1 or values.max() > count):
            raise DataError(
                f"{folder / 'setid.mat'}: '{key}' has image ids outside 1..{count}; {_HINT}"
            )
    images = _build_images(folder, count, size, cache)
    y = labels - 1

    def split(key: str) -> Split:
        index = ids[key] - 1
        return Split(images[index], y[index])

    return Dataset(
        name="flowers102",
        train=split("trnid"),
        validation=split("valid"),
        num_classes=_CLASSES,
        test=split("tstid") if include_test else None,
    )
