"""`nos zoo`: list the optimizer zoo (formula, source, state buffers per parameter)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the zoo's optimizers, schedules and baselines")
    p.add_argument(
        "--kind",
        choices=["optimizer", "adamclip", "schedule", "baseline"],
        help="only entries of this kind",
    )
    p.set_defaults(run=_run_zoo)


def _run_zoo(args: argparse.Namespace) -> int:
    from nos.zoo import catalogue as zoo

    for name, e in zoo.ZOO.items():
        if args.kind and e.kind != args.kind:
            continue
        c = zoo.get(name)
        ph = c.phenotype
        formula = f"{ph.momentum} ~ U = {ph.update}"
        if ph.lr != 1:
            formula += f" ; lr x {ph.lr}"
        print(f"{name}")
        print(f"  formula: {formula}")
        print(f"  source:  {e.source}")
        print(f"  state:   {zoo.state_buffers(c)} buffer(s) per parameter")
        if e.note:
            print(f"  note:    {e.note}")
    return 0
