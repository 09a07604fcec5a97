"""Helpers shared by the subcommands: argument types and loading of grammars/candidates.

Light at import (argparse only): the symbolic layers load when a command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nos.symbolic.genome import Candidate
    from nos.symbolic.grammar import Grammar


def grammar_of(args: argparse.Namespace) -> Grammar:
    from nos.symbolic.grammar import load_grammar

    return load_grammar(args.grammar)


def candidate_of(args: argparse.Namespace) -> Candidate:
    from nos.zoo.resolve import parse

    return parse(args.candidate, grammar_of(args))


def task_help() -> str:
    """The registered tasks, ``name: summary`` each, for help texts."""
    from nos.training.registry import get_task, task_names

    return "; ".join(f"{n}: {get_task(n).summary}" for n in task_names())


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
