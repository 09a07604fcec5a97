"""Candidate identity: a canonical key and a behavioural fingerprint.

* :func:`canonical_key` hashes the phenotype's canonical printing (spec §2.9 uses the
  string form for de-duplication; ours is the sympy form, so trivially equal trees such as
  ``add(g, g)`` and ``mul(two, g)`` share a key). It never simplifies.
* :func:`fingerprint` hashes what the candidate *computes*: its update on the integrity
  check's fixed probe inputs over several steps and progress values, its LR multiplier on
  a grid of progress values, and its momentum mode. Values are rounded to about six
  significant digits first, so two trees that agree up to floating-point rounding share a
  fingerprint even when sympy could not prove them equal. NaN and inf hash to fixed codes.
  Given the integrity check's ``flip``, the update is hashed with the sign the optimizer
  will apply, so U and -U, which the check gives opposite flips, share a fingerprint: they
  train identically.

Both are short hex strings, deterministic across processes and platforms.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from nos.symbolic.emit import Compiled, NumpyRuntime, compile_phenotype
from nos.symbolic.probes import PROBE_INV_T, probe_outputs

__all__ = ["canonical_key", "fingerprint"]

_MANTISSA_BITS = 20  # about 6 significant decimal digits
_FLUSH = 1e-12  # |x| below this counts as 0: rounding noise of a cancelled update
_LR_TAUS = np.linspace(0.0, 1.0, 11)
_ONES = np.ones_like(_LR_TAUS)
_RT = NumpyRuntime()


def _digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def canonical_key(candidate: Any) -> str:
    """16 hex digits identifying the candidate's phenotype (sympy's canonical printing)."""
    return _digest(candidate.phenotype.canonical().encode())


def quantize(values: np.ndarray) -> bytes:
    """Bytes of ``values`` rounded to ``_MANTISSA_BITS`` binary digits; NaN-safe."""
    v = np.asarray(values, dtype=float).ravel()
    finite = np.isfinite(v)
    x = np.where(finite & (np.abs(v) >= _FLUSH), v, 0.0)
    mant, expo = np.frexp(x)
    q = np.rint(mant * (1 << _MANTISSA_BITS)).astype(np.int64)
    carry = np.abs(q) == (1 << _MANTISSA_BITS)  # rounding up to 1.0: renormalise
    q = np.where(carry, q // 2, q)
    expo = np.where(carry, expo + 1, expo).astype(np.int64)
    # non-finite entries: mantissa 0 and an exponent code that no finite value has
    code = np.where(np.isnan(v), 1 << 20, np.where(v > 0, 1 << 21, 1 << 22))
    expo = np.where(finite, expo, code)
    q = np.where(finite, q, 0)
    return np.stack([q, expo]).astype("<i8").tobytes()


def _behaviour(c: Compiled, flip: bool) -> str:
    """Hash of the signed update on the probe inputs and of the LR multiplier (cached)."""
    memo = f"fingerprint/{flip}"
    hit = c.memo.get(memo)
    if hit is None:
        try:
            ua, ub = probe_outputs(c)
            if flip:
                ua, ub = -ua, -ub
            with np.errstate(all="ignore"):
                lr = (
                    _ONES
                    if c.lr_is_one
                    else np.array([float(c.lr(tau, PROBE_INV_T, _RT)) for tau in _LR_TAUS])
                )
            hit = _digest(quantize(np.concatenate([ua.ravel(), ub.ravel(), lr])))
        except (ArithmeticError, ValueError) as exc:  # the candidate's numerics raised
            hit = _digest(b"error", type(exc).__name__.encode())
        c.memo[memo] = hit
    return hit


def fingerprint(candidate: Any, *, flip: bool = False) -> str:
    """16 hex digits identifying what the candidate computes, stepped with the sign that
    ``flip`` (the integrity check's) gives it (see the module docstring)."""
    ph = candidate.phenotype
    return _digest(ph.momentum.encode(), _behaviour(compile_phenotype(ph), flip).encode())
