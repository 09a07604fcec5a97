"""The ``nos`` command line: argparse subcommands, one small function pair per command.

Bad input (a grammar, a candidate, a flag, a file) ends with a one-line ``nos: error: ...``
on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from nos.errors import NosError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 1 (argparse's default is usage + 2)."""

    def error(self, message: str) -> NoReturn:
        raise NosError(message)


def _grammar(args: argparse.Namespace):
    from nos.grammar import load_grammar

    return load_grammar(args.grammar)


def _candidate(args: argparse.Namespace):
    from nos.candidate import parse

    return parse(args.candidate, _grammar(args))


# ----------------------------------------------------------------------------- commands


def _add_grammar(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grammar", help="grammar files")
    gsub = p.add_subparsers(dest="grammar_cmd", required=True, parser_class=_Parser)
    v = gsub.add_parser("validate", help="check a grammar file and print a summary")
    v.add_argument("file", help="path to a grammar TOML file, or a grammar name")
    v.set_defaults(run=_run_grammar_validate)


def _run_grammar_validate(args: argparse.Namespace) -> int:
    from nos.grammar import load_grammar

    grammar = load_grammar(args.file)
    print(grammar.summary())
    print("ok")
    return 0


def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="print random candidates that pass the integrity check")
    p.add_argument("--grammar", default="morgan2024", help="grammar name or file")
    p.add_argument("-n", type=_positive_int, default=10, help="how many candidates")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", action="store_true", help="one JSON record per line")
    p.set_defaults(run=_run_sample)


def _run_sample(args: argparse.Namespace) -> int:
    from nos.check import check_candidate
    from nos.keys import canonical_key
    from nos.sample import sample_candidate

    grammar = _grammar(args)
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
            print(json.dumps({"candidate": str(cand), "key": canonical_key(cand),
                              **result.to_dict()}))
        else:
            flip = " flip" if result.flip else ""
            print(f"{cand}    [lr {result.lr:g}{flip}, sphere loss {result.loss:.3g}]")
    print(f"{found} valid of {tries} sampled", file=sys.stderr)
    return 0


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show a candidate in every form")
    p.add_argument("candidate", help='candidate text, e.g. "nest ~ i1e(decay(a13, g))"')
    p.add_argument("--grammar", default="morgan2024", help="grammar name or file")
    p.set_defaults(run=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from nos.display import latex, pretty, tree_view
    from nos.keys import canonical_key, fingerprint

    cand = _candidate(args)
    print(f"canonical:   {cand}")
    try:
        from nos.refparse import format_reference

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


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="run the integrity check on a candidate")
    p.add_argument("candidate", help="candidate text")
    p.add_argument("--grammar", default="morgan2024", help="grammar name or file")
    p.add_argument("--no-probes", action="store_true",
                   help="skip the cheap numeric probes; run only the paper's sphere check")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    from nos.check import check_candidate

    cand = _candidate(args)
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


def _add_import_log(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-log", help="convert a reference search log to JSON Lines")
    p.add_argument("log", help="the reference implementation's log file")
    p.add_argument("-o", "--output", required=True, help="JSON Lines file to write")
    p.add_argument("--grammar", default="morgan2024", help="grammar name or file")
    p.set_defaults(run=_run_import_log)


def _run_import_log(args: argparse.Namespace) -> int:
    from nos.logs import import_log

    summary = import_log(args.log, args.output, _grammar(args))
    print(summary)
    return 0


# ------------------------------------------------------------------------------ main


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_grammar, _add_sample, _add_inspect, _add_check, _add_import_log,
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nos", description="Symbolic neural optimizer search.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except NosError as exc:
        print(f"nos: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nos: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _one_line(text: str) -> str:
    return " ".join(text.split())
