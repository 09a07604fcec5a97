"""The tuning space of ``nos bench``: which settings each optimizer's trials try.

Every optimizer gets the same number of trials (``--trials``) over a window of learning
rates placed where that kind of optimizer works:

=====================================================  ======================
optimizer                                              learning-rate window
=====================================================  ======================
AdamW, Adam, NAdamW, RMSProp, cautious AdamW,          1e-4 ... 1
Schedule-Free AdamW, Muon
SGD with Nesterov momentum                             1e-3 ... 10
Lion (its sign update takes a 3-10x smaller step)      1e-5 ... 0.1
candidates, files                                      1e-4 ... 10
=====================================================  ======================

The scale of a discovered update is not known in advance: the grammar holds normalised,
Adam-like updates (steps near the LR) and raw-gradient ones (SGD-like, larger LRs), so a
candidate's window spans both, five decades instead of four; its grid is coarser (a factor
5.2 between 8 trials instead of 3.7). ``--lr-range LO:HI`` puts every optimizer on one
window instead.

* ``tune="lr"``: the trials are a log grid over the window (both ends included); the weight
  decay is each baseline's customary default (0.01 for the AdamW family, 0.1 for Lion, 0
  for the L2-style Adam, RMSProp and SGD; candidates have their own terms).
* ``tune="lr+wd"``: the trials are the first points of the 2-D Halton sequence (bases 2 and
  3, the origin skipped) over the log LR window and the log weight-decay window 1e-5 ... 0.1
  (1e-4 ... 1 for Lion, whose decay is multiplied by its smaller LR). A quasi-random design
  covers two dimensions far better than a grid of the same size (3x3 would need 9 trials
  and try only three values of each).

Plane search has no learning rate: it runs once under ``tune="lr"``; under ``"lr+wd"`` its
trials are a log grid over the weight-decay window, used as its L2 penalty.

A tuned value "sits at an edge" when it is the smallest or the largest value the trials
tried: the best setting may then lie outside the window.
"""

from __future__ import annotations

import math
from typing import Any

from nos.errors import NosError

__all__ = [
    "TUNE_MODES",
    "choose",
    "edges",
    "halton",
    "log_grid",
    "lr_window",
    "trial_points",
    "wd_window",
]

TUNE_MODES = ("lr", "lr+wd")
#: Windows of the built-in baselines by name; the rest get CANDIDATE_LR_WINDOW.
LR_WINDOWS: dict[str, tuple[float, float]] = {
    "adamw": (1e-4, 1.0),
    "adam": (1e-4, 1.0),
    "nadamw": (1e-4, 1.0),
    "rmsprop": (1e-4, 1.0),
    "cautious-adamw": (1e-4, 1.0),
    "schedulefree-adamw": (1e-4, 1.0),
    "muon": (1e-4, 1.0),
    "sgd-nesterov": (1e-3, 10.0),
    "lion": (1e-5, 1e-1),
}
CANDIDATE_LR_WINDOW = (1e-4, 10.0)
DEFAULT_WD_WINDOW = (1e-5, 1e-1)
WD_WINDOWS: dict[str, tuple[float, float]] = {"lion": (1e-4, 1.0)}

Point = dict[str, float | None]


def log_grid(lo: float, hi: float, n: int) -> list[float]:
    """``n`` log-spaced values from ``lo`` to ``hi`` (one value: their geometric mean)."""
    if not (0 < lo <= hi and math.isfinite(hi)):
        raise NosError(f"a log window needs 0 < low <= high, got {lo:g}:{hi:g}")
    if n < 1:
        raise NosError(f"need at least one trial, got {n}")
    if n == 1:
        return [math.sqrt(lo * hi)]
    a, b = math.log10(lo), math.log10(hi)
    return [float(10 ** (a + (b - a) * i / (n - 1))) for i in range(n)]


def _radical_inverse(i: int, base: int) -> float:
    out, scale = 0.0, 1.0 / base
    while i:
        i, digit = divmod(i, base)
        out += digit * scale
        scale /= base
    return out


def halton(n: int, bases: tuple[int, ...] = (2, 3)) -> list[tuple[float, ...]]:
    """The points 1..n of the Halton sequence in [0, 1)^d (the origin, point 0, skipped)."""
    return [tuple(_radical_inverse(i, b) for b in bases) for i in range(1, n + 1)]


def _on_log(lo: float, hi: float, u: float) -> float:
    a, b = math.log10(lo), math.log10(hi)
    return float(10 ** (a + (b - a) * u))


def lr_window(name: str, override: tuple[float, float] | None = None) -> tuple[float, float]:
    """The learning-rate window of the optimizer ``name`` (a baseline name or any label)."""
    return override or LR_WINDOWS.get(name, CANDIDATE_LR_WINDOW)


def wd_window(name: str) -> tuple[float, float]:
    return WD_WINDOWS.get(name, DEFAULT_WD_WINDOW)


def trial_points(
    spec: Any, trials: int, tune: str, lr_override: tuple[float, float] | None = None
) -> list[Point]:
    """The settings ``{"lr": ..., "wd": ...}`` of ``spec``'s trials (an :class:`OptSpec`).

    ``wd`` is ``None`` where the optimizer keeps its default (``tune="lr"``); ``lr`` is
    ``None`` for plane search.
    """
    if tune not in TUNE_MODES:
        raise NosError(f"unknown tuning mode {tune!r}; choose one of {', '.join(TUNE_MODES)}")
    name = spec.payload.get("name", spec.label)
    if not spec.tunes_lr:
        if tune == "lr":
            return [{"lr": None, "wd": None}]
        return [{"lr": None, "wd": wd} for wd in log_grid(*wd_window(name), trials)]
    lo, hi = lr_window(name, lr_override)
    if tune == "lr":
        return [{"lr": lr, "wd": None} for lr in log_grid(lo, hi, trials)]
    wlo, whi = wd_window(name)
    return [{"lr": _on_log(lo, hi, u), "wd": _on_log(wlo, whi, v)} for u, v in halton(trials)]


def edges(points: list[Point], chosen: Point) -> dict[str, str | None]:
    """For every tuned hyperparameter: ``"low"``/``"high"`` when the chosen value is the
    smallest/largest the trials tried, else ``None``. Untuned ones are left out."""
    out: dict[str, str | None] = {}
    for key in ("lr", "wd"):
        values = sorted({v for p in points if (v := p[key]) is not None})
        value = chosen.get(key)
        if len(values) < 2 or value is None:
            continue
        out[key] = "low" if value == values[0] else "high" if value == values[-1] else None
    return out


def choose(scores: list[float | None], higher_is_better: bool) -> int | None:
    """Index of the best trial by its validation score (``None``: diverged or failed); the
    earliest wins a tie. ``None`` when no trial finished."""
    best: int | None = None
    for i, score in enumerate(scores):
        if score is None or not math.isfinite(score):
            continue
        if best is None:
            best = i
            continue
        current = scores[best]
        assert current is not None
        if (score > current) if higher_is_better else (score < current):
            best = i
    return best
