"""Throughput of the symbolic pipeline on one core.

Each candidate goes through: sample (or mutate a valid parent) -> canonical text -> parse ->
integrity check (probes + sphere) -> canonical key + fingerprint. Prints candidates per
second, each stage's share of the time, and the integrity check's median milliseconds, for
random candidates and for mutated children, side by side.

    python tools/bench_symbolic.py [--grammar morgan2024] [-n 2000] [--seed 0]

Goals: >= 1,000 candidates/s/core through the whole pipeline and <= 5 ms per integrity
check. The reference implementation, measured on the same kind of 2-core machine
(paper-spec reference-speed notes), checks one candidate in 466 ms (median over valid random
candidates) and produces 0.26 valid random candidates/s and 0.52 valid mutated children/s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict

from nos.symbolic.check import check_candidate
from nos.symbolic.grammar import load_grammar
from nos.symbolic.keys import canonical_key, fingerprint
from nos.symbolic.mutate import mutate_candidate
from nos.symbolic.sample import sample_candidate
from nos.zoo.resolve import parse

REFERENCE_CHECK_MS = 466.0
REFERENCE_VALID_PER_S = {"sample": 0.26, "mutate": 0.52}


def run(mode: str, grammar, n: int, seed: int) -> None:
    rnd = random.Random(seed)
    stages: dict[str, float] = defaultdict(float)
    check_ms: list[float] = []
    parents = []
    valid = 0
    # a pool of valid parents for the mutation mode (not timed)
    while mode == "mutate" and len(parents) < 50:
        cand = sample_candidate(grammar, rnd)
        if check_candidate(cand).passed:
            parents.append(cand)
    start = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        if mode == "sample":
            cand = sample_candidate(grammar, rnd)
        else:
            cand = mutate_candidate(rnd.choice(parents), rnd).child
        t1 = time.perf_counter()
        text = str(cand)
        cand = parse(text, grammar)
        t2 = time.perf_counter()
        result = check_candidate(cand)
        t3 = time.perf_counter()
        canonical_key(cand)
        fingerprint(cand)
        t4 = time.perf_counter()
        stages[mode] += t1 - t0
        stages["print+parse"] += t2 - t1
        stages["check"] += t3 - t2
        stages["key+fingerprint"] += t4 - t3
        check_ms.append((t3 - t2) * 1e3)
        valid += result.passed
    wall = time.perf_counter() - start
    total = sum(stages.values())
    rate = n / wall
    valid_rate = valid / wall
    print(
        f"\n[{mode}] {n} candidates in {wall:.2f} s: {rate:,.0f} candidates/s/core, "
        f"{valid} valid ({valid_rate:,.1f} valid/s)"
    )
    for name, seconds in stages.items():
        print(
            f"  {name:<16} {100 * seconds / total:5.1f} %   {1e3 * seconds / n:7.3f} ms/candidate"
        )
    median = statistics.median(check_ms)
    p90 = statistics.quantiles(check_ms, n=10)[-1]
    print(
        f"  integrity check: median {median:.2f} ms, p90 {p90:.2f} ms "
        f"(reference median {REFERENCE_CHECK_MS:.0f} ms: {REFERENCE_CHECK_MS / median:,.0f}x)"
    )
    ref = REFERENCE_VALID_PER_S[mode]
    print(f"  valid candidates/s vs reference {ref}: {valid_rate / ref:,.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grammar", default="morgan2024")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    grammar = load_grammar(args.grammar)
    # warm caches (imports, lazily built tables) outside the timed loops
    check_candidate(parse("none ~ g", grammar))
    for mode in ("sample", "mutate"):
        run(mode, grammar, args.n, args.seed)


if __name__ == "__main__":
    main()
