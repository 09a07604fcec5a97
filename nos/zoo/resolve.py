"""The one resolver of optimizer text: candidate text, ``zoo:NAME`` and reference strings.

Every command, the optimizer, the fitness and the search read optimizers through
:func:`parse` (text of a grammar) or :func:`resolve` (a Candidate, or text of a grammar
given by name). The order:

1. ``zoo:NAME`` is the zoo's entry, in the entry's own grammar (:mod:`nos.zoo.catalogue`);
2. the canonical form (:func:`nos.symbolic.text.parse_canonical`);
3. the reference implementation's strings (:func:`nos.reference.format.parse_reference`).

When both readers fail, the error of the one that read further is reported.
"""

from __future__ import annotations

from nos.errors import CandidateError, NosError
from nos.reference.format import parse_reference
from nos.symbolic.genome import Candidate
from nos.symbolic.grammar import Grammar, load_grammar
from nos.symbolic.text import check_size, parse_canonical
from nos.zoo.catalogue import get

__all__ = ["ZOO_PREFIX", "parse", "resolve"]

ZOO_PREFIX = "zoo:"


def parse(text: str, grammar: Grammar) -> Candidate:
    """Read ``zoo:NAME``, the canonical form or the reference's string format."""
    check_size(text)
    if text.strip().startswith(ZOO_PREFIX):
        return get(text.strip().removeprefix(ZOO_PREFIX))
    try:
        return parse_canonical(text, grammar)
    except CandidateError as first:
        try:
            return parse_reference(text, grammar)
        except CandidateError as second:
            if (second.position or 0) > (first.position or 0):
                raise second from None
            raise first from None


def resolve(candidate: Candidate | str, grammar: str | Grammar = "morgan2024") -> Candidate:
    """A Candidate from a Candidate or from text of ``grammar`` (a name, path or Grammar)."""
    if isinstance(candidate, Candidate):
        return candidate
    if not isinstance(candidate, str):
        raise NosError(f"expected a Candidate or candidate text, got {type(candidate).__name__}")
    if candidate.strip().startswith(ZOO_PREFIX):  # no grammar file needed
        return get(candidate.strip().removeprefix(ZOO_PREFIX))
    return parse(candidate, grammar if isinstance(grammar, Grammar) else load_grammar(grammar))
