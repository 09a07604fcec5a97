"""`nos import-log LOG -o FILE`: convert a reference search log to JSON Lines."""

from __future__ import annotations

import argparse

from nos.cli._args import grammar_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-log", help="convert a reference search log to JSON Lines")
    p.add_argument("log", help="the reference implementation's log file")
    p.add_argument("-o", "--output", required=True, help="JSON Lines file to write")
    p.add_argument("--grammar", default="morgan2024", help="grammar name or file")
    p.set_defaults(run=_run_import_log)


def _run_import_log(args: argparse.Namespace) -> int:
    from nos.reference.logs import import_log

    summary = import_log(args.log, args.output, grammar_of(args))
    print(summary)
    return 0
