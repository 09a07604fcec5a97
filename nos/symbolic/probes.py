"""Fixed probe inputs, shared by the integrity check and the fingerprint.

The probes run a candidate's emitted update for a few steps on fixed random inputs, twice
with the same weights and different gradients. The integrity check reads the outputs for
its cheap verdicts (:mod:`nos.symbolic.check`); the fingerprint hashes them
(:mod:`nos.symbolic.keys`). Gradients persist across steps (a base plus noise), as on a
real loss surface, so moment estimates stay correlated with the current gradient.
"""

from __future__ import annotations

import numpy as np

from nos.symbolic.emit import Compiled, NumpyRuntime

__all__ = [
    "PROBE_GA",
    "PROBE_GB",
    "PROBE_INV_T",
    "PROBE_N",
    "PROBE_ROWS",
    "PROBE_TAUS",
    "PROBE_W",
    "probe_outputs",
    "runtime_for",
]

PROBE_ROWS = 8
PROBE_N = 16
PROBE_TAUS = (0.2, 0.5, 0.8)
PROBE_INV_T = 1.0 / 100
#: Seed of the dropout masks of the probes and of the sphere check.
DROPOUT_SEED = 20240410


def _probe_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1234)
    shape = (PROBE_ROWS, PROBE_N)
    w = rng.normal(size=shape)
    ga = rng.normal(size=shape) + 0.5 * rng.normal(size=(len(PROBE_TAUS), *shape))
    gb = rng.normal(size=shape) + 0.5 * rng.normal(size=(len(PROBE_TAUS), *shape))
    return w, ga, gb


PROBE_W, PROBE_GA, PROBE_GB = _probe_inputs()
_SHARED_RT = NumpyRuntime()


def runtime_for(c: Compiled) -> NumpyRuntime:
    """The numpy runtime of a run: a fresh fixed-seed generator only when ``c`` draws
    dropout masks, so every run of the same candidate draws the same masks."""
    random = any(kind == "random" for _, kind in c.slots)
    return NumpyRuntime(np.random.default_rng(DROPOUT_SEED)) if random else _SHARED_RT


def _probe_run(c: Compiled, gs: np.ndarray) -> np.ndarray:
    rt = runtime_for(c)
    state = c.init_state(gs[0], rt)
    out = np.empty_like(gs)
    for t, tau in enumerate(PROBE_TAUS):
        out[t] = c.update(gs[t], PROBE_W, state, t, tau, PROBE_INV_T, rt)
    return out


def probe_outputs(c: Compiled) -> tuple[np.ndarray, np.ndarray]:
    """The update on the two fixed probe input sets, each shaped (steps, rows, n); cached.

    Both sets share the weights and the dropout seed and differ only in the gradients.
    May raise ArithmeticError or ValueError from the candidate's numerics.
    """
    hit = c.memo.get("probe")
    if hit is None:
        with np.errstate(all="ignore"):
            hit = (_probe_run(c, PROBE_GA), _probe_run(c, PROBE_GB))
        c.memo["probe"] = hit
    return hit
