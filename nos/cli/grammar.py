"""`nos grammar validate FILE`: check a grammar file and print a summary."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grammar", help="grammar files")
    gsub = p.add_subparsers(dest="grammar_cmd", required=True, metavar="ACTION")
    v = gsub.add_parser("validate", help="check a grammar file and print a summary")
    v.add_argument("file", help="path to a grammar TOML file, or a grammar name")
    v.set_defaults(run=_run_grammar_validate)


def _run_grammar_validate(args: argparse.Namespace) -> int:
    from nos.symbolic.grammar import load_grammar

    grammar = load_grammar(args.file)
    print(grammar.summary())
    print("ok")
    return 0
