"""`nos check CANDIDATE`: the integrity check verdict."""

from __future__ import annotations

import argparse
import json

from nos.cli._args import candidate_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run the integrity check on a candidate")
    p.add_argument("candidate", help="candidate text")
    p.add_argument("--grammar", default="morgan2024", help="grammar name or file")
    p.add_argument(
        "--no-probes",
        action="store_true",
        help="skip the cheap numeric probes; run only the paper's sphere check",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    from nos.symbolic.check import check_candidate

    cand = candidate_of(args)
    result = check_candidate(cand, probes=not args.no_probes)
    if args.json:
        print(json.dumps({"candidate": str(cand), **result.to_dict()}))
        return 0
    print(f"candidate: {cand}")
    print(f"verdict:   {'pass' if result.passed else 'reject'} ({result.reason.value})")
    if result.passed:
        print(f"flip:      {str(result.flip).lower()}")
        print(f"lr:        {result.lr:g}")
    if result.loss is not None:
        print(f"loss:      {result.loss:.6g}")
    if result.detail:
        print(f"detail:    {result.detail}")
    return 0
