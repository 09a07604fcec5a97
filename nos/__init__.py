"""nos: symbolic neural optimizer search.

Evolves deep-learning optimizers (update equation, decay functions of training progress and
LR schedule) as typed expression trees, following Morgan & Hougen 2024.

The package is layered; each subpackage imports only the layers before it in this list
(``tests/test_layering.py`` checks it):

1. :mod:`nos.errors`, :mod:`nos.status` - user-facing errors and evaluation statuses;
2. :mod:`nos.symbolic` - grammar, genome, phenotype, emitter, integrity check (no torch);
3. :mod:`nos.reference` - the reference implementation's strings and logs;
4. :mod:`nos.zoo` - named optimizers and the resolver of optimizer text;
5. :mod:`nos.optim` - the torch runtime: SymbolicOptimizer, export, baselines;
6. :mod:`nos.training` - data, models, the task registry, presets and the fitness protocol;
7. :mod:`nos.executors` - serial and local worker pools;
8. :mod:`nos.search` - the particle GA, its driver, run store and reports;
9. :mod:`nos.cli` - the ``nos`` command.

This top level loads nothing heavy: the names below are imported on first use, so that
``import nos``, ``nos --help`` and a worker's start pay for neither sympy nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Candidate",
    "CandidateError",
    "Grammar",
    "GrammarError",
    "Momentum",
    "NosError",
    "SymbolicOptimizer",
    "load_grammar",
    "parse",
]
__version__ = "0.1.0"

_LAZY = {
    "Candidate": "nos.symbolic.genome",
    "Momentum": "nos.symbolic.genome",
    "Grammar": "nos.symbolic.grammar",
    "load_grammar": "nos.symbolic.grammar",
    "parse": "nos.zoo.resolve",
    "SymbolicOptimizer": "nos.optim.symbolic_optimizer",
    "CandidateError": "nos.errors",
    "GrammarError": "nos.errors",
    "NosError": "nos.errors",
}

if TYPE_CHECKING:
    from nos.errors import CandidateError, GrammarError, NosError
    from nos.optim.symbolic_optimizer import SymbolicOptimizer
    from nos.symbolic.genome import Candidate, Momentum
    from nos.symbolic.grammar import Grammar, load_grammar
    from nos.zoo.resolve import parse


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nos' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
