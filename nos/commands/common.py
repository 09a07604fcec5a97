"""Helpers shared by the subcommands: argument types and loading of grammars/candidates."""

from __future__ import annotations

import argparse

from nos.candidate import Candidate, parse
from nos.grammar import Grammar, load_grammar


def grammar_of(args: argparse.Namespace) -> Grammar:
    return load_grammar(args.grammar)


def candidate_of(args: argparse.Namespace) -> Candidate:
    return parse(args.candidate, grammar_of(args))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
