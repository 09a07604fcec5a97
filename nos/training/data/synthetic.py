"""Generated data sets of the bench's ``small`` suite: no files, no downloads, deterministic.

Every loader draws from one ``numpy.random.Generator`` seeded with its ``seed`` (scikit-learn's
generators take an integer drawn from it), so the same arguments always give the same arrays.
Each returns train / validation / test splits of one draw; the test split only with
``include_test=True``.

* :func:`load_logreg` - multi-class classification (``make_classification``) with feature
  scales spread over two decades, for a linear softmax model (logistic regression).
* :func:`load_wide` - classification with many more inputs (100) than classes (10), for a
  2-layer network.
* :func:`load_lstsq` - linear regression (``make_regression``) with a low effective rank, so
  least squares is ill-conditioned.
* :func:`load_friedman` - Friedman's #1 regression problem (``make_friedman1``).
* :func:`load_shapes` - 16x16 grey images of six kinds of shape at random positions and
  sizes, with noise.
* :func:`load_markov_text` - character sequences of generated text: words of a generated
  lexicon following a sparse word-level Markov chain.

None of these is one of the data sets kept for independent evaluation (scikit-learn's
breast-cancer, wine and diabetes sets, Python's documentation text).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from nos.training.data.base import Dataset, Split

__all__ = [
    "TEXT_ALPHABET",
    "load_friedman",
    "load_logreg",
    "load_lstsq",
    "load_markov_text",
    "load_shapes",
    "load_wide",
    "split_arrays",
]


_F = TypeVar("_F", bound=Callable[..., Any])


def _one_thread(fn: _F) -> _F:
    """Run a loader with one BLAS thread: the arrays are small, and threads fighting over
    busy cores make numpy's products many times slower."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:  # installed with scikit-learn
            from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
        except ImportError:
            return fn(*args, **kwargs)
        with threadpool_limits(1):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _sklearn_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def split_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    sizes: tuple[int, int, int],
    num_classes: int,
    include_test: bool,
) -> Dataset:
    """Cut the first ``sum(sizes)`` samples (already in random order) into train,
    validation and test, in order."""
    n_train, n_val, n_test = sizes
    if min(sizes) < 1:
        raise ValueError(f"every split needs at least one sample, got sizes {sizes}")
    if len(y) < sum(sizes):
        raise ValueError(f"{name}: {len(y)} samples for splits {sizes}")
    a, b = n_train, n_train + n_val
    return Dataset(
        name=name,
        train=Split(x[:a], y[:a]),
        validation=Split(x[a:b], y[a:b]),
        num_classes=num_classes,
        test=Split(x[b : b + n_test], y[b : b + n_test]) if include_test else None,
    )


def _standardize(x: np.ndarray, n_train: int) -> np.ndarray:
    """Centre and scale every feature with the training split's statistics."""
    mean = x[:n_train].mean(axis=0)
    std = x[:n_train].std(axis=0) + 1e-8
    return (x - mean) / std


@_one_thread
def load_logreg(
    *,
    include_test: bool = False,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 1000,
    n_test: int = 1000,
    features: int = 40,
    classes: int = 4,
) -> Dataset:
    """``make_classification`` with 10 informative features among ``features``, 5% label
    noise, standardised, then feature ``j`` multiplied by ``10**(-1 + 2 j / (features - 1))``
    (scales from 0.1 to 10): a linear model's loss is then ill-conditioned, as on raw data."""
    from sklearn.datasets import make_classification

    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    x, y = make_classification(
        n_samples=n,
        n_features=features,
        n_informative=10,
        n_redundant=10,
        n_classes=classes,
        n_clusters_per_class=2,
        flip_y=0.05,
        class_sep=1.0,
        random_state=_sklearn_seed(rng),
    )
    x = _standardize(x, n_train) * np.logspace(-1.0, 1.0, features)
    perm = rng.permutation(features)  # the scales are not sorted by informativeness
    return split_arrays(
        "logreg",
        x[:, perm].astype(np.float32),
        y.astype(np.int64),
        (n_train, n_val, n_test),
        classes,
        include_test,
    )


@_one_thread
def load_wide(
    *,
    include_test: bool = False,
    seed: int = 1,
    n_train: int = 3000,
    n_val: int = 1000,
    n_test: int = 1000,
    features: int = 100,
    classes: int = 10,
) -> Dataset:
    """``make_classification`` with 20 informative and 20 redundant features of 100, 10
    classes of 2 clusters each and 5% label noise, standardised."""
    from sklearn.datasets import make_classification

    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    x, y = make_classification(
        n_samples=n,
        n_features=features,
        n_informative=20,
        n_redundant=20,
        n_classes=classes,
        n_clusters_per_class=2,
        flip_y=0.05,
        class_sep=2.0,
        random_state=_sklearn_seed(rng),
    )
    return split_arrays(
        "wide",
        _standardize(x, n_train).astype(np.float32),
        y.astype(np.int64),
        (n_train, n_val, n_test),
        classes,
        include_test,
    )


@_one_thread
def load_lstsq(
    *,
    include_test: bool = False,
    seed: int = 2,
    n_train: int = 1000,
    n_val: int = 1000,
    n_test: int = 1000,
    features: int = 100,
) -> Dataset:
    """``make_regression`` with 100 features of effective rank 10 (a singular-value profile
    with a long tail: an ill-conditioned least-squares problem) and noise; targets scaled to
    unit variance on the training split, shape (n, 1)."""
    from sklearn.datasets import make_regression

    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    x, y = make_regression(
        n_samples=n,
        n_features=features,
        n_informative=features,
        effective_rank=10,
        tail_strength=0.6,
        noise=1.0,
        random_state=_sklearn_seed(rng),
    )
    x = x * np.sqrt(n)  # rows of unit scale; the conditioning is kept
    y = (y - y[:n_train].mean()) / y[:n_train].std()
    return split_arrays(
        "lstsq",
        x.astype(np.float32),
        y.astype(np.float32)[:, None],
        (n_train, n_val, n_test),
        1,
        include_test,
    )


@_one_thread
def load_friedman(
    *,
    include_test: bool = False,
    seed: int = 3,
    n_train: int = 2000,
    n_val: int = 1000,
    n_test: int = 1000,
) -> Dataset:
    """Friedman #1 (``make_friedman1``: 10 uniform inputs, 5 of them used, noise 1),
    inputs centred to [-1, 1], targets scaled to unit variance, shape (n, 1)."""
    from sklearn.datasets import make_friedman1

    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    x, y = make_friedman1(n_samples=n, n_features=10, noise=1.0, random_state=_sklearn_seed(rng))
    y = (y - y[:n_train].mean()) / y[:n_train].std()
    return split_arrays(
        "friedman",
        (2.0 * x - 1.0).astype(np.float32),
        y.astype(np.float32)[:, None],
        (n_train, n_val, n_test),
        1,
        include_test,
    )


#: The kinds of shape of :func:`load_shapes`, in label order.
SHAPES = ("disc", "square", "ring", "cross", "triangle", "bar")


def _shape_masks(kind: int, cy: np.ndarray, cx: np.ndarray, r: np.ndarray, size: int) -> np.ndarray:
    """Boolean masks (n, size, size) of shape ``kind`` centred at (cy, cx) with radius r."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy = yy[None] - cy[:, None, None]
    dx = xx[None] - cx[:, None, None]
    rr = r[:, None, None]
    dist = np.sqrt(dy * dy + dx * dx)
    name = SHAPES[kind]
    if name == "disc":
        return dist <= rr
    if name == "square":
        return (np.abs(dy) <= 0.8 * rr) & (np.abs(dx) <= 0.8 * rr)
    if name == "ring":
        return (dist <= rr) & (dist >= 0.55 * rr)
    if name == "cross":
        arm = 0.3 * rr
        return ((np.abs(dy) <= arm) & (np.abs(dx) <= rr)) | (
            (np.abs(dx) <= arm) & (np.abs(dy) <= rr)
        )
    if name == "triangle":  # apex up: inside when below the apex and within the widening sides
        top = -rr
        return (dy >= top) & (dy <= 0.8 * rr) & (np.abs(dx) <= 0.6 * (dy - top))
    return (np.abs(dy) <= 0.3 * rr) & (np.abs(dx) <= 1.2 * rr)  # bar


@_one_thread
def load_shapes(
    *,
    include_test: bool = False,
    seed: int = 4,
    n_train: int = 3000,
    n_val: int = 600,
    n_test: int = 600,
    size: int = 16,
    noise: float = 0.35,
) -> Dataset:
    """Grey ``size`` x ``size`` images (NHWC, one channel, float32) of the six
    :data:`SHAPES`, each at a random centre, radius (2.5 to 5 pixels) and brightness (0.5 to
    1) on Gaussian noise of std ``noise``; labels balanced and shuffled."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val + n_test
    labels = rng.permutation(np.arange(n) % len(SHAPES))
    r = rng.uniform(2.5, 5.0, n)
    margin = r + 0.5
    cy = rng.uniform(margin, size - 1 - margin)
    cx = rng.uniform(margin, size - 1 - margin)
    bright = rng.uniform(0.5, 1.0, n)
    images = rng.normal(0.0, noise, (n, size, size))
    for kind in range(len(SHAPES)):
        idx = np.flatnonzero(labels == kind)
        masks = _shape_masks(kind, cy[idx], cx[idx], r[idx], size)
        images[idx] += masks * bright[idx, None, None]
    return split_arrays(
        "shapes",
        images.astype(np.float32)[..., None],
        labels.astype(np.int64),
        (n_train, n_val, n_test),
        len(SHAPES),
        include_test,
    )


#: The characters of :func:`load_markov_text`: the token of a character is its index here.
TEXT_ALPHABET = string.ascii_lowercase + " ."


def _lexicon(rng: np.random.Generator, words: int) -> list[str]:
    """``words`` distinct made-up words of one to three consonant-vowel(-consonant) syllables."""
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    out: dict[str, None] = {}
    while len(out) < words:
        syllables = int(rng.choice([1, 2, 2, 3]))
        word = ""
        for _ in range(syllables):
            word += consonants[rng.integers(len(consonants))] + vowels[rng.integers(len(vowels))]
            if rng.random() < 0.3:
                word += consonants[rng.integers(len(consonants))]
        out[word] = None
    return list(out)


@_one_thread
def load_markov_text(
    *,
    include_test: bool = False,
    seed: int = 5,
    n_train: int = 4000,
    n_val: int = 400,
    n_test: int = 400,
    length: int = 24,
    words: int = 200,
    branching: int = 6,
    end_prob: float = 0.12,
) -> Dataset:
    """Character-level language modelling on generated text.

    A lexicon of ``words`` made-up words; each word is followed by one of ``branching``
    successors (drawn once, with Dirichlet(0.5) probabilities), a sentence ends after a word
    with probability ``end_prob`` (written ``". "``) and the next starts from a word drawn
    from a Zipf-like distribution. The text is tokenised by :data:`TEXT_ALPHABET` and cut
    into non-overlapping windows of ``length + 1`` characters: ``x`` the first ``length``
    (int64 tokens), ``y`` the next character at every position. Train, validation and test
    come from successive stretches of one stream.
    """
    rng = np.random.default_rng(seed)
    lexicon = _lexicon(rng, words)
    successors = np.stack([rng.choice(words, branching, replace=False) for _ in range(words)])
    probs = rng.dirichlet(np.full(branching, 0.5), size=words)
    start = 1.0 / np.arange(1, words + 1)
    start /= start.sum()
    n = n_train + n_val + n_test
    need = n * (length + 1)
    parts: list[str] = []
    total = 0
    word = int(rng.choice(words, p=start))
    while total < need:
        parts.append(lexicon[word])
        total += len(lexicon[word])
        if rng.random() < end_prob:
            parts.append(". ")
            total += 2
            word = int(rng.choice(words, p=start))
        else:
            parts.append(" ")
            total += 1
            word = int(successors[word, rng.choice(branching, p=probs[word])])
    text = "".join(parts)[:need]
    table = {c: i for i, c in enumerate(TEXT_ALPHABET)}
    tokens = np.fromiter((table[c] for c in text), dtype=np.int64, count=need)
    windows = tokens.reshape(n, length + 1)
    return split_arrays(
        "markov_text",
        windows[:, :-1].copy(),
        windows[:, 1:].copy(),
        (n_train, n_val, n_test),
        len(TEXT_ALPHABET),
        include_test,
    )
