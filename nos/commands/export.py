"""`nos export CANDIDATE -o FILE`: write a standalone torch optimizer (see nos.export)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nos.errors import NosError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a candidate as a standalone torch optimizer file")
    p.add_argument("candidate", help='candidate text or zoo:NAME, e.g. "zoo:opt10"')
    p.add_argument("-o", "--output", required=True, help="the .py file to write")
    p.add_argument("--name", help="class name (default: the zoo name, or EvolvedOptimizer)")
    p.add_argument("--grammar", default="morgan2024", help="grammar of candidate text")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from nos.commands.common import candidate_of
    from nos.export import render_module

    out = Path(args.output)
    if out.exists() and not args.force:
        raise NosError(f"{out} exists; pass --force to overwrite it")
    source = render_module(candidate_of(args), args.name)
    try:
        out.write_text(source, encoding="utf-8")
    except OSError as exc:
        raise NosError(f"cannot write {out}: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0
