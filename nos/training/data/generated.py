"""Generated data sets of the search suite and the validation tasks (no files, no download).

Every loader draws from its own ``numpy.random.Generator`` seeded by ``seed``, so the same
seed always gives the same arrays; generation takes milliseconds, so nothing is cached.
The sets are small on purpose: a network trains on one of them in a few seconds on one
CPU thread. Targets carry noise, so the best reachable loss stays above zero and a ratio
of two optimizers' losses stays meaningful.

Search suite (``search``):

* :func:`load_recall` - sequences of tokens; at each position the target is the sum modulo
  the vocabulary of the tokens one and three positions back (a short memory task for an
  LSTM), with a share of the targets replaced by random tokens.
* :func:`load_teacher` - regression on the outputs of a fixed random two-layer tanh
  "teacher" network of Gaussian inputs, plus noise (a student MLP learns it).
* :func:`load_spirals` - three interleaved noisy 2-D spirals, for a deep, narrow tanh MLP.

Validation tasks (``holdout``: never part of a search fitness):

* :func:`load_gratings` - 12x12 images of noisy sinusoidal gratings, classed by
  orientation and frequency (a small 2-D CNN).
* :func:`load_forecast` - windows of a noisy sum of sines; predict the next values (GRU
  regression).
* :func:`load_checkerboard` - 2-D points labelled by a 4x4 checkerboard (a ReLU MLP).
* :func:`load_quadratic` - an ill-conditioned noisy linear regression (a linear model).
"""

from __future__ import annotations

import numpy as np

from nos.training.data.base import Dataset
from nos.training.data.synthetic import split_arrays

__all__ = [
    "load_checkerboard",
    "load_forecast",
    "load_gratings",
    "load_quadratic",
    "load_recall",
    "load_spirals",
    "load_teacher",
]


def _sizes(train: int, validation: int, test: int) -> tuple[int, int, int]:
    if train < 1 or validation < 1 or test < 1:
        raise ValueError("every split needs at least one sample")
    return train, validation, test


# ------------------------------------------------------------------------ search suite


def load_recall(
    *,
    include_test: bool = False,
    seed: int = 0,
    vocab: int = 6,
    length: int = 10,
    lags: tuple[int, ...] = (1, 3),
    noise: float = 0.1,
    train: int = 2048,
    validation: int = 512,
    test: int = 512,
) -> Dataset:
    """Token sequences (int64, shape (N, length)); targets (N, length): at position t the
    sum modulo ``vocab`` of the tokens ``lags`` positions back (0 before the sequence), a
    share ``noise`` of them replaced by a uniform random token."""
    sizes = _sizes(train, validation, test)
    rng = np.random.default_rng([seed, 101])
    n = sum(sizes)
    x = rng.integers(0, vocab, size=(n, length))
    pad = max(lags)
    padded = np.concatenate([np.zeros((n, pad), dtype=x.dtype), x], axis=1)
    y = sum(padded[:, pad - lag : pad - lag + length] for lag in lags) % vocab
    flip = rng.random((n, length)) < noise
    y = np.where(flip, rng.integers(0, vocab, size=(n, length)), y)
    return split_arrays(
        "recall", x.astype(np.int64), y.astype(np.int64), sizes, vocab, include_test
    )


def load_teacher(
    *,
    include_test: bool = False,
    seed: int = 0,
    inputs: int = 16,
    hidden: int = 32,
    outputs: int = 4,
    noise: float = 0.1,
    train: int = 4096,
    validation: int = 1024,
    test: int = 1024,
) -> Dataset:
    """Gaussian inputs (float32, (N, inputs)) and the standardised outputs of a random tanh
    teacher network plus Gaussian noise of std ``noise`` (float32, (N, outputs))."""
    sizes = _sizes(train, validation, test)
    rng = np.random.default_rng([seed, 102])
    n = sum(sizes)
    x = rng.standard_normal((n, inputs))
    w1 = rng.standard_normal((inputs, hidden)) * (2.0 / np.sqrt(inputs))
    w2 = rng.standard_normal((hidden, outputs)) / np.sqrt(hidden)
    clean = np.tanh(x @ w1) @ w2
    clean = (clean - clean.mean(0)) / clean.std(0)
    y = clean + noise * rng.standard_normal((n, outputs))
    return split_arrays(
        "teacher", x.astype(np.float32), y.astype(np.float32), sizes, outputs, include_test
    )


def load_spirals(
    *,
    include_test: bool = False,
    seed: int = 0,
    arms: int = 3,
    turns: float = 1.5,
    noise: float = 0.25,
    train: int = 3072,
    validation: int = 1024,
    test: int = 1024,
) -> Dataset:
    """Points (float32, (N, 2)) on ``arms`` interleaved spirals of ``turns`` turns with
    Gaussian noise (in units of the gap between arms); the label is the arm."""
    sizes = _sizes(train, validation, test)
    rng = np.random.default_rng([seed, 103])
    n = sum(sizes)
    label = rng.integers(0, arms, size=n)
    r = np.sqrt(rng.random(n))  # uniform over the disc's area
    angle = 2 * np.pi * (turns * r + label / arms)
    gap = 1.0 / (arms * turns)
    points = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
    points += noise * gap * rng.standard_normal((n, 2))
    return split_arrays(
        "spirals",
        (2.0 * points).astype(np.float32),
        label.astype(np.int64),
        sizes,
        arms,
        include_test,
    )


# -------------------------------------------------------------------- validation tasks


def load_gratings(
    *,
    include_test: bool = False,
    seed: int = 0,
    size: int = 12,
    noise: float = 0.8,
    train: int = 2048,
    validation: int = 512,
    test: int = 512,
) -> Dataset:
    """Grayscale images (float32 NHWC, (N, size, size, 1)) of sinusoidal gratings with a
    random phase and Gaussian pixel noise; 8 classes = 4 orientations x 2 frequencies, each
    orientation jittered by up to a quarter of the gap between classes."""
    sizes = _sizes(train, validation, test)
    rng = np.random.default_rng([seed, 201])
    n = sum(sizes)
    label = rng.integers(0, 8, size=n)
    theta = (label % 4) * np.pi / 4 + rng.uniform(-np.pi / 16, np.pi / 16, n)
    freq = np.where(label < 4, 1.5, 3.0) * 2 * np.pi / size
    phase = rng.uniform(0, 2 * np.pi, n)
    coords = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    proj = xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]
    img = np.sin(freq[:, None, None] * proj + phase[:, None, None])
    img = img + noise * rng.standard_normal(img.shape)
    return split_arrays(
        "gratings",
        img[..., None].astype(np.float32),
        label.astype(np.int64),
        sizes,
        8,
        include_test,
    )


def load_forecast(
    *,
    include_test: bool = False,
    seed: int = 0,
    window: int = 24,
    horizon: int = 4,
    noise: float = 0.1,
    train: int = 2048,
    validation: int = 512,
    test: int = 512,
) -> Dataset:
    """Windows (float32, (N, window, 1)) of a sum of three sines with random frequencies,
    amplitudes and phases plus noise; targets (float32, (N, horizon)) are the next
    ``horizon`` clean values."""
    sizes = _sizes(train, validation, test)
    rng = np.random.default_rng([seed, 202])
    n = sum(sizes)
    t = np.arange(window + horizon)
    freq = rng.uniform(0.05, 0.5, size=(n, 3, 1))
    amp = rng.uniform(0.2, 1.0, size=(n, 3, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 3, 1))
    clean = (amp * np.sin(freq * t[None, None] + phase)).sum(1)
    observed = clean[:, :window] + noise * rng.standard_normal((n, window))
    return split_arrays(
        "forecast",
        observed[..., None].astype(np.float32),
        clean[:, window:].astype(np.float32),
        sizes,
        horizon,
        include_test,
    )


def load_checkerboard(
    *,
    include_test: bool = False,
    seed: int = 0,
    cells: int = 4,
    flip: float = 0.05,
    train: int = 3072,
    validation: int = 1024,
    test: int = 1024,
) -> Dataset:
    """Uniform points in [-1, 1]^2 (float32, (N, 2)) labelled by the colour of their cell
    in a ``cells`` x ``cells`` checkerboard, a share ``flip`` of the labels flipped."""
    sizes = _sizes(train, validation, test)
    rng = np.random.default_rng([seed, 203])
    n = sum(sizes)
    points = rng.uniform(-1, 1, size=(n, 2))
    cell = np.floor((points + 1) / 2 * cells).clip(0, cells - 1).astype(np.int64)
    label = (cell[:, 0] + cell[:, 1]) % 2
    label = np.where(rng.random(n) < flip, 1 - label, label)
    return split_arrays(
        "checkerboard", points.astype(np.float32), label.astype(np.int64), sizes, 2, include_test
    )


def load_quadratic(
    *,
    include_test: bool = False,
    seed: int = 0,
    dim: int = 32,
    condition: float = 1e3,
    noise: float = 0.3,
    train: int = 2048,
    validation: int = 512,
    test: int = 512,
) -> Dataset:
    """Linear regression with an ill-conditioned design: inputs (float32, (N, dim)) of
    Gaussians scaled so the Hessian's eigenvalues span ``condition``, a random linear
    target plus noise (float32, (N, 1))."""
    sizes = _sizes(train, validation, test)
    rng = np.random.default_rng([seed, 204])
    n = sum(sizes)
    scale = np.sqrt(np.logspace(0, -np.log10(condition), dim))
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    x = (rng.standard_normal((n, dim)) * scale) @ q.T
    w = q @ (rng.standard_normal(dim) / scale)
    clean = x @ w
    y = clean / clean.std() + noise * rng.standard_normal(n)
    return split_arrays(
        "quadratic", x.astype(np.float32), y[:, None].astype(np.float32), sizes, 1, include_test
    )
