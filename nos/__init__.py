"""nos: symbolic neural optimizer search.

Evolves deep-learning optimizers (update equation, decay functions of training progress and
LR schedule) as typed expression trees, following Morgan & Hougen 2024.
"""

from nos.candidate import Candidate, Momentum, parse
from nos.errors import CandidateError, GrammarError, NosError
from nos.grammar import Grammar, load_grammar

__all__ = [
    "Candidate",
    "CandidateError",
    "Grammar",
    "GrammarError",
    "Momentum",
    "NosError",
    "load_grammar",
    "parse",
]
__version__ = "0.1.0"
