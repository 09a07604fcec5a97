"""The ``nos`` command line: argparse with one module per subcommand.

Every module of this package whose name does not start with ``_`` is a subcommand: it
defines ``register(subparsers)``. Command modules import only argparse and light helpers at
import time and the layers they drive inside their ``run`` functions, so ``nos --help``
loads neither sympy nor torch.

Bad input (a grammar, a candidate, a flag, a file) ends with a one-line ``nos: error: ...``
on stderr and exit status 1, never a traceback. May import every other layer.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, NoReturn

import nos.cli
from nos.errors import NosError

__all__ = ["build_parser", "main"]


class _Formatter(argparse.HelpFormatter):
    """Wraps help without splitting names at hyphens (``friedman-mlp``, ``--lr-scheme``)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit status 1 (argparse's default is usage + 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)  # subcommands' parsers too
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise NosError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nos", description="Symbolic neural optimizer search.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(nos.cli.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"nos.cli.{info.name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except NosError as exc:
        print(f"nos: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nos: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
