"""Helpers shared by the subcommands: argument types and loading of grammars/candidates."""

from __future__ import annotations

import argparse

from nos.candidate import Candidate, parse
from nos.grammar import Grammar, load_grammar


def grammar_of(args: argparse.Namespace) -> Grammar:
    return load_grammar(args.grammar)


def candidate_of(args: argparse.Namespace) -> Candidate:
    return parse(args.candidate, grammar_of(args))


def _int_at_least(text: str, lo: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = lo - 1
    if value < lo:
        kind = "a positive integer" if lo == 1 else f"an integer >= {lo}"
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)
