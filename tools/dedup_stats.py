"""How much the canonical key and the numeric fingerprint deduplicate a real search log.

    python tools/dedup_stats.py ../shared/reference/nos_particle_run.log [--sample 200]

Reads every distinct candidate string of a reference log, then prints how many distinct
strings collapse to how many distinct canonical keys and fingerprints. For a sample of
pairs that share a fingerprint but not a key, it decides whether the merge is right:
``sympy.simplify(a - b) == 0`` proves the two updates equal; otherwise both are evaluated
at 30 random inputs they can really take (30-digit mpmath, independent of the emitter): a
relative gap above 1e-5 is a false merge, a smaller one a merge of near-equal updates.
"""

from __future__ import annotations

import argparse
import math
import random
import signal
import time
from collections import defaultdict
from itertools import combinations

import mpmath
import sympy

from nos.errors import CandidateError
from nos.reference.format import parse_reference
from nos.reference.logs import read_log
from nos.symbolic.grammar import load_grammar
from nos.symbolic.keys import canonical_key, fingerprint


class _Timeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise _Timeout


def _proved_equal(a: sympy.Expr, b: sympy.Expr, seconds: int) -> bool | None:
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        return sympy.simplify(a - b) == 0
    except _Timeout:
        return None
    finally:
        signal.alarm(0)


_NONNEGATIVE = {"s", "s_hat"}  # EMAs of g² cannot be negative
_UNIT = {"tau", *(f"a{i}" for i in range(1, 15))}  # progress and decay bases lie in [0, 1]
_MP = {
    "maximum": max,
    "minimum": min,
    "exp": mpmath.exp,
    "abs": abs,
    "sign": mpmath.sign,
    "tanh": mpmath.tanh,
    "atan": mpmath.atan,
    "asinh": mpmath.asinh,
    "erf": mpmath.erf,
    "erfc": mpmath.erfc,
    "plog": lambda x: mpmath.log(abs(x) + mpmath.mpf("1e-7")),
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": lambda x: mpmath.log(abs(1 + mpmath.exp(x)) + mpmath.mpf("1e-7")),
    "i1e": lambda x: mpmath.exp(-abs(x)) * mpmath.besseli(1, x),
    "clip": lambda x, y: min(max(x, -abs(y)), abs(y)),
}
_STATEFUL = ("ema", "delta", "running_max", "dropout", "clip_norm")


def _draw(name: str, rnd: random.Random) -> float:
    if name in _NONNEGATIVE:
        return rnd.uniform(0, 2)
    if name in _UNIT:
        return rnd.uniform(0, 1)
    if name == "inv_T":
        return rnd.uniform(1e-4, 1e-2)
    return rnd.uniform(-2, 2)


def _max_relative_gap(a: sympy.Expr, b: sympy.Expr, rnd: random.Random) -> float | None:
    """Largest relative difference of a and b over random inputs they can really see.

    Evaluated independently of the emitter (sympy -> mpmath at 30 digits). ``None`` when the
    expressions hold stateful or random ops, which have no value at a single point.
    """
    text = f"{a} {b}"
    if any(f"{op}(" in text for op in _STATEFUL):
        return None
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    fa = sympy.lambdify(symbols, a, modules=[_MP, "mpmath"])
    fb = sympy.lambdify(symbols, b, modules=[_MP, "mpmath"])
    gap = 0.0
    mpmath.mp.dps = 30
    for _ in range(30):
        point = [mpmath.mpf(_draw(s.name, rnd)) for s in symbols]
        try:
            va, vb = complex(fa(*point)), complex(fb(*point))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            continue
        if not all(map(math.isfinite, (va.real, vb.real))):
            continue
        gap = max(gap, abs(va - vb) / (1e-12 + max(abs(va), abs(vb))))
    return gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log")
    parser.add_argument("--grammar", default="morgan2024")
    parser.add_argument("--sample", type=int, default=200, help="merged pairs to verify")
    parser.add_argument("--timeout", type=int, default=5, help="seconds per simplify")
    args = parser.parse_args()
    grammar = load_grammar(args.grammar)
    strings = sorted({r.reference for r in read_log(args.log, grammar) if r.reference is not None})
    start = time.perf_counter()
    keys: dict[str, set[str]] = defaultdict(set)
    prints: dict[str, list] = defaultdict(list)
    failed = 0
    for text in strings:
        try:
            cand = parse_reference(text, grammar)
        except CandidateError:
            failed += 1
            continue
        key = canonical_key(cand)
        keys[key].add(text)
        prints[fingerprint(cand)].append((key, cand))
    wall = time.perf_counter() - start
    n = len(strings) - failed
    print(
        f"{len(strings)} distinct strings ({failed} unreadable) -> {len(keys)} canonical keys "
        f"-> {len(prints)} fingerprints  [{1e3 * wall / max(n, 1):.2f} ms per string]"
    )
    print(
        f"  duplicates found by the key: {n - len(keys)}; "
        f"further merged by the fingerprint: {len(keys) - len(prints)}"
    )

    pairs = []
    for members in prints.values():
        by_key = {}
        for key, cand in members:
            by_key.setdefault(key, cand)
        pairs += list(combinations(by_key.values(), 2))
    rnd = random.Random(0)
    rnd.shuffle(pairs)
    sample = pairs[: args.sample]
    proved = numeric = near = different = undecided = 0
    for a, b in sample:
        pa, pb = a.phenotype, b.phenotype
        if pa.momentum != pb.momentum or pa.lr != pb.lr:
            different += 1
            continue
        if _proved_equal(pa.update, pb.update, args.timeout):
            proved += 1
            continue
        gap = _max_relative_gap(pa.update, pb.update, rnd)
        if gap is None:
            undecided += 1
        elif gap < 1e-12:
            numeric += 1
        elif gap < 1e-5:
            near += 1  # e.g. x / (1 + 1e-7) against x: below the fingerprint's precision
        else:
            different += 1
            print(f"  false merge (relative gap {gap:.2g}): {a}  ==  {b}")
    if sample:
        print(
            f"verified {len(sample)} of {len(pairs)} merged pairs: {proved} proved equal by "
            f"sympy, {numeric} equal at 30 random points, {near} equal to < 1e-5 relative, "
            f"{different} false merges ({100 * different / len(sample):.1f} %), "
            f"{undecided} undecided (stateful or random ops)"
        )


if __name__ == "__main__":
    main()
