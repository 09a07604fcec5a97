"""Images resident on the training device as ``uint8``, and the paper's pipeline on top.

CIFAR-10 and Flowers102 stay in device memory as ``uint8`` NCHW tensors: a quarter of the
float32 footprint (154 MB instead of 614 MB for CIFAR-10's 50,000 images), and one copy
serves both pipelines of a task, so several packed workers fit on one GPU. Every batch
becomes model input on the device, with no host round trip and no DataLoader:

* :class:`Pixels` maps each ``uint8`` value to its model input through a per-channel table
  of 256 floats: ``v / 255`` (plain images), or ``(v / 255 - mean) / std`` (normalised).
  The table is computed with the numpy functions of :mod:`nos.training.data.transforms`,
  so the inputs are bit for bit those of normalising the whole set as float32 first.
* :class:`Augmenter` is the particle phase's per-batch augmentation (reflect-pad 4 and
  random crop, horizontal flip, 8x8 cutout) on ``uint8`` batches, drawing from the job's
  ``torch.Generator`` in the same order as
  :func:`~nos.training.data.transforms.augment_batch`. Crop and flip are one gather from
  the unpadded image with reflected indices (no padded copy), then the table, then the
  cutout's zeros (the mean, once normalised): the same numbers as ``augment_batch`` on
  the normalised float images.

The same code runs on CPU tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from nos.training.data.transforms import as_float32, normalize

__all__ = ["Augmenter", "Pixels", "to_uint8_nchw"]


def to_uint8_nchw(x: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """NHWC ``uint8`` images as an NCHW ``uint8`` tensor that owns its memory."""
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"expected uint8 NHWC images, got {x.dtype} of shape {x.shape}")
    tensor = torch.from_numpy(np.array(x, copy=True)).permute(0, 3, 1, 2).contiguous()
    return tensor.to(device) if device is not None else tensor


class Pixels:
    """``uint8`` images to float32 model inputs through a ``(channels, 256)`` table."""

    def __init__(self, table: np.ndarray, device: torch.device | str = "cpu"):
        if table.ndim != 2 or table.shape[1] != 256 or table.dtype != np.float32:
            raise ValueError(f"expected a float32 (channels, 256) table, got {table.shape}")
        self.channels = table.shape[0]
        self.device = torch.device(device)
        # One flat table: channel c's entry for value v sits at c * 256 + v.
        self.table = torch.from_numpy(np.ascontiguousarray(table).reshape(-1)).to(self.device)
        self._offsets = (torch.arange(self.channels, device=self.device) * 256).view(1, -1, 1, 1)

    @classmethod
    def scaled(cls, channels: int, device: torch.device | str = "cpu") -> Pixels:
        """Plain images: ``v / 255``."""
        values = as_float32(np.arange(256, dtype=np.uint8))
        return cls(np.tile(values, (channels, 1)), device)

    @classmethod
    def normalized(
        cls, mean: np.ndarray, std: np.ndarray, device: torch.device | str = "cpu"
    ) -> Pixels:
        """Normalised images: ``(v / 255 - mean) / std`` per channel."""
        channels = len(mean)
        values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], channels, axis=1)
        return cls(np.ascontiguousarray(normalize(values, mean, std).T), device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The float32 inputs of a ``uint8`` NCHW batch."""
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images, got {x.dtype}")
        return self.table[x.to(torch.int32) + self._offsets]


class Augmenter:
    """The particle phase's augmentation of ``uint8`` NCHW batches (module docstring).

    Each image is reflect-padded by ``pad`` and cropped back to its size at a uniform
    random offset, mirrored left-right with probability 1/2, turned into model inputs by
    ``pixels`` and gets a ``cutout`` x ``cutout`` square of zeros whose centre is uniform
    over the image (so it may be clipped at the border). ``generator`` must live on the
    images' device.
    """

    def __init__(
        self,
        pixels: Pixels,
        generator: torch.Generator,
        *,
        pad: int = 4,
        flip: bool = True,
        cutout: int = 8,
    ):
        if cutout % 2:
            raise ValueError("cutout size must be even")
        self.pixels, self.generator = pixels, generator
        self.pad, self.flip, self.cutout = pad, flip, cutout
        self._aranges: dict[int, torch.Tensor] = {}

    def _arange(self, n: int, device: torch.device) -> torch.Tensor:
        hit = self._aranges.get(n)
        if hit is None or hit.device != device:
            hit = self._aranges[n] = torch.arange(n, device=device)
        return hit

    def _randint(self, high: int, n: int, device: torch.device) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=self.generator, device=device)

    def _reflect(self, index: torch.Tensor, size: int) -> torch.Tensor:
        """Indices into the padded image -> indices into the image (reflection, no edge
        repeat, as ``F.pad(mode="reflect")``)."""
        index = (index - self.pad).abs()
        return torch.where(index > size - 1, 2 * (size - 1) - index, index)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected an NCHW batch, got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        if self.pad >= min(h, w):
            raise ValueError(f"reflect padding {self.pad} needs images larger than {h}x{w}")
        dev = x.device
        # The draws and their order are augment_batch's: top, left, flip, cutout centre.
        span = 2 * self.pad + 1
        top = self._randint(span, n, dev)
        left = self._randint(span, n, dev)
        rows = self._reflect(top[:, None] + self._arange(h, dev), h)
        cols = self._arange(w, dev).expand(n, w)
        if self.flip:
            mirrored = self._randint(2, n, dev).bool()
            cols = torch.where(mirrored[:, None], cols.flip(1), cols)
        cols = self._reflect(cols + left[:, None], w)
        batch = self._arange(n, dev)[:, None, None, None]
        chans = self._arange(c, dev)[None, :, None, None]
        out = self.pixels(x[batch, chans, rows[:, None, :, None], cols[:, None, None, :]])
        if self.cutout:
            half = self.cutout // 2
            cy = self._randint(h, n, dev)[:, None]
            cx = self._randint(w, n, dev)[:, None]
            ys = self._arange(h, dev)[None, :]
            xs = self._arange(w, dev)[None, :]
            in_rows = (ys >= cy - half) & (ys < cy + half)  # (n, h)
            in_cols = (xs >= cx - half) & (xs < cx + half)  # (n, w)
            out = out.masked_fill((in_rows[:, :, None] & in_cols[:, None, :])[:, None], 0.0)
        return out
