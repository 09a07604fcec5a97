"""`nos sample`: random candidates that pass the integrity check."""

from __future__ import annotations

import argparse
import json
import random
import sys

from nos.cli._args import grammar_of, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="print random candidates that pass the integrity check")
    p.add_argument("--grammar", default="morgan2024", help="grammar name or file")
    p.add_argument("-n", type=positive_int, default=10, help="how many candidates")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", action="store_true", help="one JSON record per line")
    p.set_defaults(run=_run_sample)


def _run_sample(args: argparse.Namespace) -> int:
    from nos.symbolic.check import check_candidate
    from nos.symbolic.keys import canonical_key
    from nos.symbolic.sample import sample_candidate

    grammar = grammar_of(args)
    rnd = random.Random(args.seed)
    found = tries = 0
    while found < args.n:
        tries += 1
        cand = sample_candidate(grammar, rnd)
        result = check_candidate(cand)
        if not result.passed:
            continue
        found += 1
        if args.json:
            print(
                json.dumps({"candidate": str(cand), "key": canonical_key(cand), **result.to_dict()})
            )
        else:
            flip = " flip" if result.flip else ""
            print(f"{cand}    [lr {result.lr:g}{flip}, sphere loss {result.loss:.3g}]")
    print(f"{found} valid of {tries} sampled", file=sys.stderr)
    return 0
