"""How much the canonical key and the numeric fingerprint deduplicate a real search log.

    python tools/dedup_stats.py ../shared/reference/nos_particle_run.log [--sample 200]

Reads every distinct candidate string of a reference log, then prints how many distinct
strings collapse to how many distinct canonical keys and fingerprints. For a sample of
pairs that share a fingerprint but not a key, it decides whether the merge is right:
``sympy.simplify(a - b) == 0`` proves the two updates equal; a point where the two
expressions differ numerically (high precision, random positive and negative inputs) proves
a false merge; anything else counts as undecided.
"""

from __future__ import annotations

import argparse
import random
import signal
import time
from collections import defaultdict
from itertools import combinations

import sympy

from nos.errors import CandidateError
from nos.grammar import load_grammar
from nos.keys import canonical_key, fingerprint
from nos.logs import read_log
from nos.refparse import parse_reference


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


def _witness(a: sympy.Expr, b: sympy.Expr, rnd: random.Random) -> bool:
    """True when some random point makes the two expressions differ clearly."""
    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    for _ in range(20):
        point = {s: sympy.Float(rnd.uniform(-2, 2), 30) for s in symbols}
        try:
            va = complex(a.evalf(30, subs=point))
            vb = complex(b.evalf(30, subs=point))
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if abs(va - vb) > 1e-9 * (1 + abs(va) + abs(vb)):
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log")
    parser.add_argument("--grammar", default="morgan2024")
    parser.add_argument("--sample", type=int, default=200, help="merged pairs to verify")
    parser.add_argument("--timeout", type=int, default=5, help="seconds per simplify")
    args = parser.parse_args()
    grammar = load_grammar(args.grammar)
    strings = sorted({r.reference for r in read_log(args.log, grammar)
                      if r.reference is not None})
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
    print(f"{len(strings)} distinct strings ({failed} unreadable) -> {len(keys)} canonical keys "
          f"-> {len(prints)} fingerprints  [{1e3 * wall / max(n, 1):.2f} ms per string]")
    print(f"  duplicates found by the key: {n - len(keys)}; "
          f"further merged by the fingerprint: {len(keys) - len(prints)}")

    pairs = []
    for members in prints.values():
        by_key = {}
        for key, cand in members:
            by_key.setdefault(key, cand)
        pairs += list(combinations(by_key.values(), 2))
    rnd = random.Random(0)
    rnd.shuffle(pairs)
    sample = pairs[: args.sample]
    equal = different = undecided = 0
    for a, b in sample:
        pa, pb = a.phenotype, b.phenotype
        if pa.momentum != pb.momentum or pa.lr != pb.lr:
            different += 1
            continue
        verdict = _proved_equal(pa.update, pb.update, args.timeout)
        if verdict:
            equal += 1
        elif _witness(pa.update, pb.update, rnd):
            different += 1
            print(f"  false merge: {a}  ==  {b}")
        else:
            undecided += 1
    if sample:
        print(f"verified {len(sample)} of {len(pairs)} merged pairs: {equal} proved equal, "
              f"{different} false merges ({100 * different / len(sample):.1f} %), "
              f"{undecided} undecided")


if __name__ == "__main__":
    main()
