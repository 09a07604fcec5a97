"""Base learning-rate and momentum schedules of the search (spec §2.7).

Plain functions of the step ``t`` (an int, a float or a numpy array of them). They are the
schedules every candidate trains with; a candidate's own LR-schedule gene multiplies
:func:`base_lr` (see :mod:`nos.symbolic.emit`, ``lr``).

* :func:`base_lr`: linear warmup over ``W`` steps to ``eta``, a hold of ``H`` steps at
  ``eta`` (the final code's value; the search code returns 0 there, unused since H = 0),
  then half a cosine down to 0 at ``T``.
* :func:`cyclic_momentum`: one-cycle momentum, 0.95 -> 0.85 over the warmup, 0.85 during the
  hold, then linearly back to 0.95 at ``T``.

No torch here: the integrity check (:mod:`nos.symbolic.check`) evaluates these with numpy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MU_HIGH", "MU_LOW", "base_lr", "cyclic_momentum"]

MU_HIGH = 0.95
MU_LOW = 0.85


def _phase(t: ArrayLike, warmup: int, hold: int, total: int) -> tuple[np.ndarray, ...]:
    t = np.asarray(t, dtype=float)
    if warmup < 0 or hold < 0 or total <= warmup + hold:
        raise ValueError(
            f"need 0 <= warmup, 0 <= hold and warmup + hold < total; got "
            f"warmup={warmup}, hold={hold}, total={total}"
        )
    up = t / warmup if warmup else np.ones_like(t)
    down = (t - warmup - hold) / (total - warmup - hold)
    return t, up, down


def base_lr(t: ArrayLike, eta: float, warmup: int, total: int, hold: int = 0) -> np.ndarray:
    """eta_t of spec §2.7: ``eta*t/W`` for t < W, ``eta`` for W <= t <= W+H, else cosine."""
    t, up, down = _phase(t, warmup, hold, total)
    cosine = 0.5 * eta * (1.0 + np.cos(np.pi * down))
    return np.where(t < warmup, eta * up, np.where(t <= warmup + hold, eta, cosine))


def cyclic_momentum(t: ArrayLike, warmup: int, total: int, hold: int = 0) -> np.ndarray:
    """mu_t of spec §2.7: 0.95 -> 0.85 over the warmup, hold at 0.85, back up to 0.95."""
    t, up, down = _phase(t, warmup, hold, total)
    rising = MU_LOW + (MU_HIGH - MU_LOW) * down
    return np.where(
        t < warmup, MU_HIGH - (MU_HIGH - MU_LOW) * up, np.where(t <= warmup + hold, MU_LOW, rising)
    )
