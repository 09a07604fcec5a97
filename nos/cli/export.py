"""`nos export CANDIDATE|RUN --rank K -o FILE`: write a standalone torch optimizer.

The file comes from :func:`nos.optim.export.render_module`, the same emitter the search trains
with. With ``--rank`` the first argument names a run and the K-th of its hall of fame is
exported, with the sign (flip) its integrity check chose; candidate text and ``zoo:NAME``
get the sign the integrity check chooses for them now, so an exported optimizer always
descends (``none ~ neg(g)`` exports as gradient descent, not ascent).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nos.cli._args import positive_int
from nos.errors import NosError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a candidate as a standalone torch optimizer file")
    p.add_argument(
        "candidate", help='candidate text, zoo:NAME (e.g. "zoo:opt10"), or a run name with --rank'
    )
    p.add_argument(
        "--rank",
        type=positive_int,
        help="export the K-th best candidate of the run named by CANDIDATE",
    )
    p.add_argument("--root", default="search_runs", help="folder of the runs (with --rank)")
    p.add_argument("-o", "--output", required=True, help="the .py file to write")
    p.add_argument("--name", help="class name (default: the zoo name, or EvolvedOptimizer)")
    p.add_argument("--grammar", default="morgan2024", help="grammar of candidate text")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from nos.cli._args import candidate_of
    from nos.optim.export import render_module

    out = Path(args.output)
    if out.exists() and not args.force:
        raise NosError(f"{out} exists; pass --force to overwrite it")
    if args.rank is not None:
        from nos.search.report import ranked_entry

        candidate, row = ranked_entry(args.candidate, args.rank, args.root)
        source = render_module(candidate, args.name, options={"flip": row["flip"]})
    else:
        from nos.symbolic.check import check_candidate

        candidate = candidate_of(args)
        check = check_candidate(candidate)
        if not check.passed:
            print(
                f"nos: warning: the integrity check rejects this candidate ({check.reason.value}"
                f"{': ' + check.detail if check.detail else ''}); exported without a sign flip",
                file=sys.stderr,
            )
        source = render_module(candidate, args.name, options={"flip": check.flip})
    try:
        out.write_text(source, encoding="utf-8")
    except OSError as exc:
        raise NosError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0
