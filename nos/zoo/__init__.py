"""The optimizer zoo and the resolver of optimizer text (torch-free).

* :mod:`nos.zoo.catalogue` - named optimizers as candidates: the paper's Opt1-Opt10,
  AdamClip variants, evolved LR schedules and classic baselines;
* :mod:`nos.zoo.resolve` - the one reader of candidate text, ``zoo:NAME`` and reference
  strings.

May import: :mod:`nos.errors`, :mod:`nos.symbolic`, :mod:`nos.reference`.
"""

from nos.zoo.catalogue import (
    DEVIATIONS,
    ZOO,
    ZooCandidate,
    ZooEntry,
    entry,
    get,
    names,
    schedule,
    state_buffers,
)

__all__ = [
    "DEVIATIONS",
    "ZOO",
    "ZooCandidate",
    "ZooEntry",
    "entry",
    "get",
    "names",
    "schedule",
    "state_buffers",
]
