"""`nos inspect CANDIDATE`: every form of a candidate."""

from __future__ import annotations

import argparse

from nos.cli._args import candidate_of
from nos.errors import NosError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show a candidate in every form")
    p.add_argument("candidate", help='candidate text, e.g. "nest ~ i1e(decay(a13, g))"')
    p.add_argument("--grammar", default="morgan2024", help="grammar name or file")
    p.set_defaults(run=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from nos.symbolic.display import latex, pretty, tree_view
    from nos.symbolic.keys import canonical_key, fingerprint

    cand = candidate_of(args)
    print(f"canonical:   {cand}")
    try:
        from nos.reference.format import format_reference

        print(f"reference:   {format_reference(cand)}")
    except NosError:
        pass  # the grammar has no reference spellings for some node
    print(f"grammar:     {cand.grammar.name}")
    print(f"key:         {canonical_key(cand)}")
    print(f"fingerprint: {fingerprint(cand)}")
    print(f"size:        {cand.size} nodes, depth {cand.depth}")
    print(f"latex:       {latex(cand)}")
    print("pretty:")
    print(pretty(cand))
    print("tree:")
    print(tree_view(cand))
    return 0
