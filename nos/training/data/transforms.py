"""Input pipelines of the proxy task (paper-spec §5.1).

* Initial population: images scaled to [0, 1], nothing else (:func:`as_float32`).
* Particle phase: per-channel mean/std normalisation with statistics over all 50,000 CIFAR-10
  training images (:func:`channel_stats`, :func:`normalize`), then on every training batch
  reflect-pad 4, random 32x32 crop, random horizontal flip and a random 8x8 cutout
  (:func:`augment_batch`). Validation images are only normalised.

The augmentation works on whole torch batches (NCHW) on any device and draws every random
number from an explicit ``torch.Generator``, so a seeded run is repeatable. torch is imported
only when a torch function is called: loading data stays light in processes without models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["as_float32", "augment_batch", "channel_stats", "normalize", "to_tensor"]


def as_float32(x: np.ndarray) -> np.ndarray:
    """``uint8`` images scaled to [0, 1]; float data converted to float32 unchanged."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32, copy=False)


def channel_stats(*arrays: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation over all images of ``arrays``.

    The arrays are NHWC, scaled as by :func:`as_float32`; passing several (e.g. the train and
    validation splits) treats them as one set without concatenating them. Sums are
    accumulated in float64 chunk by chunk to keep memory small and the result exact enough.
    """
    if not arrays:
        raise ValueError("channel_stats needs at least one array")
    channels = arrays[0].shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for array in arrays:
        if array.shape[-1] != channels:
            raise ValueError("all arrays must have the same number of channels")
        for start in range(0, len(array), chunk):
            block = as_float32(array[start : start + chunk]).astype(np.float64)
            flat = block.reshape(-1, channels)
            total += flat.sum(axis=0)
            squares += np.square(flat).sum(axis=0)
            count += flat.shape[0]
    if count == 0:
        raise ValueError("channel_stats got no images")
    mean = total / count
    var = np.maximum(squares / count - np.square(mean), 0.0)
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def normalize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(as_float32(x) - mean) / std`` per channel (last axis), as float32."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if np.any(std <= 0):
        raise ValueError("standard deviations must be positive")
    return (as_float32(x) - mean) / std


def to_tensor(x: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """A float32 torch tensor for the models: NHWC images become NCHW, other data keep shape.

    ``uint8`` input is scaled to [0, 1] first. The result owns its memory.
    """
    import torch

    data = as_float32(x)
    if data is x or not data.flags.writeable or not data.flags.c_contiguous:
        data = np.array(data, copy=True)  # never share memory with the caller's array
    tensor = torch.from_numpy(data)
    if tensor.ndim == 4:
        tensor = tensor.permute(0, 3, 1, 2).contiguous()
    return tensor.to(device) if device is not None else tensor


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    pad: int = 4,
    flip: bool = True,
    cutout: int = 8,
) -> torch.Tensor:
    """Random pad-crop, horizontal flip and cutout of an NCHW batch, per image.

    Each image is reflect-padded by ``pad`` and cropped back to its size at a uniform random
    offset, mirrored left-right with probability 1/2, and gets a ``cutout`` x ``cutout``
    square of zeros whose centre is uniform over the image (so it may be clipped at the
    border, as in TensorFlow Addons' ``random_cutout``); zero is the mean once the input is
    normalised. ``generator`` must live on ``x``'s device. Returns a new tensor.
    """
    import torch
    import torch.nn.functional as F

    if x.ndim != 4:
        raise ValueError(f"expected an NCHW batch, got shape {tuple(x.shape)}")
    if cutout % 2:
        raise ValueError("cutout size must be even")
    n, _, h, w = x.shape
    device = x.device

    def randint(high: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=generator, device=device)

    # Crop and flip together as one gather: output pixel (i, j) of image k reads padded
    # pixel (top_k + i, left_k + j), or (top_k + i, left_k + w - 1 - j) when flipped.
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect") if pad else x
    top = randint(2 * pad + 1)
    left = randint(2 * pad + 1)
    rows = top[:, None] + torch.arange(h, device=device)
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:
        mirrored = randint(2).bool()
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    cols = cols + left[:, None]
    batch = torch.arange(n, device=device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=device)[None, :, None, None]
    out = padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]

    if cutout:
        half = cutout // 2
        cy = randint(h)[:, None]
        cx = randint(w)[:, None]
        ys = torch.arange(h, device=device)[None, :]
        xs = torch.arange(w, device=device)[None, :]
        in_rows = (ys >= cy - half) & (ys < cy + half)  # (n, h)
        in_cols = (xs >= cx - half) & (xs < cx + half)  # (n, w)
        hole = in_rows[:, :, None] & in_cols[:, None, :]
        out = out.masked_fill(hole[:, None], 0.0)
    return out
