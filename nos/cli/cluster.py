"""`nos cluster slurm ...`: write (or submit) the Slurm batch script of a Ray cluster search.

See ``docs/cluster.md``; the script is rendered by :mod:`nos.executors.slurm`.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cluster",
        help="write the batch script that runs a search on a Ray cluster (slurm)",
        description=__doc__.split("\n\n")[0],
        add_help=False,
    )
    p.add_argument("kind", choices=("slurm",), help="the scheduler (slurm)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="the scheduler's options (--help)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from nos.executors.slurm import main

    return main(args.rest)
