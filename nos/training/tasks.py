"""Proxy tasks: a data set held as tensors, its model and its batch order (spec §5.1, §5.2).

A :class:`Task` bundles what one fitness evaluation trains on:

The tasks themselves are registered in :mod:`nos.training.registry`:

* ``cifar10`` - the paper's proxy. Plain variant (initial population, spec §5.3): images
  scaled to [0, 1], no augmentation, ConvNet b = 32. Augmented variant (particle phase,
  spec §5.4): per-channel normalisation with statistics over all 50,000 training images
  (validation included, as the reference did), then pad-crop, flip and cutout on every
  training batch; ConvNet b = 48. Data come from ``data_dir`` or ``$NOS_DATA``.
* ``flowers102`` - the same pipelines on Flowers102 resized to 32x32 (102 classes).
* ``digits`` and ``mnist1d`` - the embedded sets with :class:`~nos.training.models.DigitsMLP` and
  :class:`~nos.training.models.Mnist1dCNN`; they need no files.

The splits live on the training device as tensors, so a step only gathers indices. Image
sets stay there as ``uint8`` (:mod:`nos.training.images`): :meth:`Task.inputs` and
:meth:`Task.train_batch` turn a batch into model inputs on the device, and the two
pipelines of a task share one copy of the images. The order
of the training samples is a :class:`BatchOrder`: the paper never shuffles (the same cyclic
order every pass), which stays the default; shuffling draws a fresh permutation per pass from
an explicit ``torch.Generator``.

Worker processes should call :func:`worker_init` (one intra-op thread): these networks are
too small for two threads to help, and two single-threaded workers on two cores do about
twice the work of one two-threaded process.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nos.training.data import channel_stats, load_dataset, to_tensor
from nos.training.images import Augmenter, Pixels, to_uint8_nchw
from nos.training.models import build_model
from nos.training.registry import KINDS, get_task, task_names

__all__ = ["TASKS", "BatchOrder", "Task", "load_task", "worker_init"]

#: The built-in task names (the registry's, when this module was imported).
TASKS = task_names()


def worker_init(threads: int = 1) -> None:
    """Set up a worker process for evaluations: ``threads`` intra-op threads (default 1)."""
    torch.set_num_threads(threads)


class BatchOrder:
    """Indices of consecutive training batches, as an endless stream.

    Without shuffling, batch k holds samples ``k*b ... k*b+b-1`` modulo the set size: the
    same order every pass and always full batches (the reference also never shuffled; a
    pass boundary simply runs on into the next pass). With ``shuffle=True`` each pass is a
    fresh permutation drawn from ``generator``.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ):
        if size < 1 or batch_size < 1:
            raise ValueError("need at least one sample and a positive batch size")
        if shuffle and generator is None:
            raise ValueError("shuffling needs an explicit torch.Generator")
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self._generator, self._device = generator, torch.device(device)
        self._order = self._new_pass()
        self._pos = 0

    def _new_pass(self) -> torch.Tensor:
        if self.shuffle:
            return torch.randperm(self.size, generator=self._generator).to(self._device)
        return torch.arange(self.size, device=self._device)

    def next(self) -> torch.Tensor:
        """The indices of the next batch."""
        parts = []
        need = self.batch_size
        while need:
            if self._pos == self.size:
                self._order, self._pos = self._new_pass(), 0
            take = min(need, self.size - self._pos)
            parts.append(self._order[self._pos : self._pos + take])
            self._pos += take
            need -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@dataclass(frozen=True, eq=False)
class Task:
    """A data set resident as tensors, with its model and training-batch pipeline.

    ``kind`` (a key of :data:`nos.training.registry.KINDS`) decides the loss and the
    metric; the test split is there only when it was asked for (``include_test=True``).
    Image sets hold ``uint8`` NCHW images and their :class:`~nos.training.images.Pixels`;
    :meth:`inputs` (or :meth:`train_batch`) makes model inputs of them.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    augment: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)
    kind: str = "classification"
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None
    pixels: Pixels | None = None

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Model inputs of stored samples (``uint8`` images become float32)."""
        return x if self.pixels is None else self.pixels(x)

    def train_batch(
        self,
        index: torch.Tensor,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of the training samples ``index``, through ``augment`` (from
        :meth:`augmenter`) when given."""
        x = self.train_x[index]
        return (self.inputs(x) if augment is None else augment(x)), self.train_y[index]

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch: cross-entropy (per sample or per token) or MSE."""
        if KINDS[self.kind].loss == "mse":
            return F.mse_loss(out, y)
        if out.ndim == 3:  # (batch, positions, classes): a sequence of predictions
            return F.cross_entropy(out.flatten(0, 1), y.flatten())
        return F.cross_entropy(out, y)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "validation":
            return self.val_x, self.val_y
        if name == "test":
            if self.test_x is None or self.test_y is None:
                raise ValueError(f"task {self.name!r} was loaded without its test split")
            return self.test_x, self.test_y
        if name == "train":
            return self.train_x, self.train_y
        raise ValueError(f"unknown split {name!r}")

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        split: str = "validation",
        *,
        chunk: int = 2048,
        forward: Forward | None = None,
    ) -> tuple[float, float]:
        """(mean loss, metric) of ``model`` on a split, in evaluation mode (restores its
        mode). The metric is the kind's: accuracy, MSE, or the loss itself. ``forward(model,
        inputs)`` replaces ``model(inputs)`` (e.g. under autocast)."""
        x, y = self.split(split)
        run = forward or _call
        was_training = model.training
        model.eval()
        total, correct, count = 0.0, 0, 0
        for start in range(0, len(y), chunk):
            out = run(model, self.inputs(x[start : start + chunk]))
            target = y[start : start + chunk]
            n = len(target)
            total += float(self.loss(out, target)) * n
            if KINDS[self.kind].metric == "accuracy":
                correct += int((out.argmax(-1) == target).sum())
            count += n
        model.train(was_training)
        loss = total / count
        metric = {"accuracy": correct / count, "mse": loss, "loss": loss}[KINDS[self.kind].metric]
        return loss, metric

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def build_model(self, seed: int) -> nn.Module:
        """A fresh network with its deterministic initialisation from ``seed``."""
        return build_model(self.name, seed=seed, device=self.device, **self.model_options)

    def batch_order(self, batch_size: int, seed: int, *, shuffle: bool = False) -> BatchOrder:
        generator = torch.Generator().manual_seed(seed) if shuffle else None
        return BatchOrder(
            len(self.train_y), batch_size, shuffle=shuffle, generator=generator, device=self.device
        )

    def augmenter(self, seed: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Per-batch augmentation drawing from its own generator, or ``None`` without it."""
        if not self.augment:
            return None
        if self.pixels is None:
            raise ValueError(f"task {self.name!r} holds no images to augment")
        generator = torch.Generator(device=self.device).manual_seed(seed)
        return Augmenter(self.pixels, generator)

    @torch.no_grad()
    def accuracy(
        self, model: nn.Module, *, chunk: int = 2048, forward: Forward | None = None
    ) -> float:
        """Validation accuracy of ``model`` in evaluation mode (restores its mode)."""
        run = forward or _call
        was_training = model.training
        model.eval()
        correct = 0
        for start in range(0, len(self.val_y), chunk):
            out = run(model, self.inputs(self.val_x[start : start + chunk]))
            correct += int((out.argmax(1) == self.val_y[start : start + chunk]).sum())
        model.train(was_training)
        return correct / len(self.val_y)


Forward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _is_images(x: np.ndarray) -> bool:
    return x.dtype == np.uint8 and x.ndim == 4


def _inputs(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return to_uint8_nchw(x, device) if _is_images(x) else to_tensor(x, device)


def _labels(y: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(y)).to(device)


@dataclass(frozen=True, eq=False)
class _Resident:
    """A data set's splits on one device, shared by the task's pipelines."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    num_classes: int
    stats: tuple[np.ndarray, np.ndarray] | None  # per-channel mean and std of uint8 images


@functools.lru_cache(maxsize=4)
def _load_resident(
    name: str, data_dir: str | None, device: str, options: tuple[tuple[str, Any], ...]
) -> _Resident:
    dev = torch.device(device)
    data = load_dataset(name, data_dir, **dict(options))
    splits = {k: (_inputs(s.x, dev), _labels(s.y, dev)) for k, s in data.splits().items()}
    stats = None
    if _is_images(data.train.x) and get_task(name).augmentable:
        # Statistics over train + validation: the reference normalised with all 50k images.
        stats = channel_stats(data.train.x, data.validation.x)
    return _Resident(splits, data.num_classes, stats)


@functools.lru_cache(maxsize=4)
def _load_cached(
    name: str,
    data_dir: str | None,
    augment: bool,
    width: int | None,
    device: str,
    options: tuple[tuple[str, Any], ...],
) -> Task:
    if name not in task_names():
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(task_names())}")
    if augment and not get_task(name).augmentable:
        raise ValueError(f"task {name!r} has no augmentation pipeline")
    info = get_task(name)
    data = _load_resident(name, data_dir, device, options)
    (tx, ty), (vx, vy) = data.splits["train"], data.splits["validation"]
    ex, ey = data.splits.get("test", (None, None))
    pixels = None
    if tx.dtype == torch.uint8:
        channels = tx.shape[1]
        if augment:
            assert data.stats is not None  # augmentable image sets carry their statistics
            pixels = Pixels.normalized(*data.stats, device=tx.device)
        else:
            pixels = Pixels.scaled(channels, device=tx.device)
    model_options: dict[str, Any] = {}
    if width is not None:
        model_options["width"] = width
    return Task(
        name,
        tx,
        ty,
        vx,
        vy,
        data.num_classes,
        augment,
        model_options,
        info.kind,
        ex,
        ey,
        pixels,
    )


def load_task(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    augment: bool = False,
    width: int | None = None,
    device: str | torch.device = "cpu",
    **options: Any,
) -> Task:
    """The registered task ``name``, cached per process.

    ``augment`` selects the particle-phase pipeline of the image tasks; ``width`` is the
    ConvNet's b; ``options`` go to the data set's loader (e.g. ``validation_size``). A
    missing data directory raises :class:`~nos.training.data.DataError`.
    """
    root = None if data_dir is None else str(data_dir)
    return _load_cached(
        name, root, augment, width, str(torch.device(device)), tuple(sorted(options.items()))
    )
