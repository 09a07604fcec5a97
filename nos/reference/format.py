"""Reader and printer for the reference implementation's candidate strings.

The reference writes a candidate as ``<None|Mom|Nest> ~ <expr>``, for example
``Nest ~ bessel_i1e(bessel_i1e([(a13)*(a2)][g]))`` (paper-spec §2.9). Its spelling is not a
conventional expression grammar: ``|x|`` is ``abs``, ``x/(1+|x|)`` repeats its argument,
``1/(1+exp(-x)`` is missing a parenthesis, and the decay wrapper is ``[d][x]``. So rather
than a hand-written grammar, both directions are driven by the ``ref`` templates of the
grammar file: a template is literal text with argument holes ``{0}``/``{1}``.

Reading is a memoised span parser: ``span(i, j, type)`` asks whether ``text[i:j]`` can be
produced by some template of that type; a template is tried when its first literal matches
at ``i`` and its last at ``j``, and the literals between holes are placed at each of their
occurrences inside the span. Every template with literal text consumes at least one
character, so each sub-span is strictly shorter and there is no left recursion loop even
for templates that begin with a hole (``{0}/(1+|{0}|)``). When several parses exist, the one
whose re-printing reproduces the span exactly is preferred.

The reference's identity op ``id(x)`` is read as its argument (it adds no node), so strings
containing ``id(`` do not re-print verbatim.

Work is bounded: the text length (:data:`nos.symbolic.genome.MAX_TEXT`), the bracket nesting and
the template nesting (:data:`nos.symbolic.genome.MAX_NESTING`) and the number of span attempts are
all capped, and nothing in the text is ever evaluated.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from deap import gp

from nos.errors import CandidateError
from nos.symbolic.genome import MAX_NESTING, MAX_TEXT, Candidate, Momentum
from nos.symbolic.grammar import Grammar, Schedule, Tensor

__all__ = ["IDENTITY_REF", "format_reference", "parse_reference"]

#: The reference's spelling of its identity op, for tensors and schedules alike.
IDENTITY_REF = "id({0})"

#: Span attempts allowed for one text: real candidates need a few thousand at most, so this
#: only stops pathological inputs that would otherwise take cubic time.
MAX_WORK = 200_000

_HOLE = re.compile(r"\{(\d)\}")
_PREFIX = re.compile(r"([A-Za-z]+)[ ]*~[ ]*")


@dataclass(frozen=True)
class _Template:
    """A ref split into literals and holes: ``lits[0] {holes[0]} lits[1] ... lits[-1]``."""

    node: gp.Primitive | gp.Terminal | None  # None: the identity op
    lits: tuple[str, ...]
    holes: tuple[int, ...]  # the argument index that each hole shows
    arg_types: tuple[type, ...]

    @property
    def first(self) -> str:
        return self.lits[0]


def _split(ref: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    parts = _HOLE.split(ref)
    return tuple(parts[0::2]), tuple(int(h) for h in parts[1::2])


@dataclass
class _Syntax:
    """The compiled templates of one grammar."""

    grammar: Grammar
    by_type: dict[type, list[_Template]] = field(default_factory=dict)
    printing: dict[str, _Template] = field(default_factory=dict)  # by internal node name
    chars: frozenset[str] = frozenset()
    _by_char: dict[tuple[type, str], list[_Template]] = field(default_factory=dict)

    def starting(self, typ: type, ch: str) -> list[_Template]:
        """Templates of ``typ`` that may start with ``ch``, in table order."""
        key = (typ, ch)
        got = self._by_char.get(key)
        if got is None:
            got = [t for t in self.by_type.get(typ, []) if not t.first or t.first[0] == ch]
            self._by_char[key] = got
        return got


def _node_ref(grammar: Grammar, node: gp.Primitive | gp.Terminal) -> str | None:
    entry = grammar.entry(node)
    ref = entry.ref if entry is not None else None
    if ref is None and node.ret is Schedule and isinstance(node, gp.Terminal):
        ref = node.name  # the reference spells decay bases by their names, a1..a14
    return ref


@functools.lru_cache(maxsize=16)
def _syntax(grammar: Grammar) -> _Syntax:
    syn = _Syntax(grammar)
    chars: set[str] = set(IDENTITY_REF) - set("{0}")
    pset = grammar.pset
    for typ in (Tensor, Schedule):
        templates: list[_Template] = []
        nodes = list(pset.terminals.get(typ, [])) + list(pset.primitives.get(typ, []))
        for node in nodes:
            ref = _node_ref(grammar, node)
            if ref is None:
                continue
            lits, holes = _split(ref)
            arg_types = tuple(node.args) if isinstance(node, gp.Primitive) else ()
            tpl = _Template(node, lits, holes, arg_types)
            syn.printing[node.name] = tpl
            chars.update("".join(lits))
            # A template without literal text could re-read its own span forever; such a
            # ref cannot be parsed, only printed.
            if "".join(lits):
                templates.append(tpl)
        if templates:
            lits, holes = _split(IDENTITY_REF)
            templates.append(_Template(None, lits, holes, (typ,)))
        syn.by_type[typ] = templates
    syn.chars = frozenset(chars)
    return syn


# ------------------------------------------------------------------------------ reading

_Result = tuple[
    tuple[gp.Primitive | gp.Terminal, ...], bool
]  # (prefix-order DEAP nodes, re-prints the span exactly)


class _SpanParser:
    def __init__(self, text: str, syntax: _Syntax):
        self.text = text
        self.syn = syntax
        self.memo: dict[tuple[int, int, type], _Result | None] = {}
        self.far = 0
        self.depth = 0
        self.work = 0

    def span(self, i: int, j: int, typ: type) -> _Result | None:
        key = (i, j, typ)
        if key in self.memo:
            return self.memo[key]
        self.work += 1
        if self.work > MAX_WORK:
            raise CandidateError(
                "candidate text too ambiguous to read within the work limit", position=i
            )
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise CandidateError(f"nesting deeper than {MAX_NESTING}", position=i)
        best: _Result | None = None
        for tpl in self.syn.starting(typ, self.text[i]):
            for res in self._match(tpl, i, j):
                if best is None or (res[1] and not best[1]):
                    best = res
                if best[1]:
                    break
            if best is not None and best[1]:
                break
        self.depth -= 1
        self.memo[key] = best
        if best is not None:
            self.far = max(self.far, j)
        return best

    def _match(self, tpl: _Template, i: int, j: int) -> Iterator[_Result]:
        text, lits = self.text, tpl.lits
        if not tpl.holes:
            if j - i == len(lits[0]) and text.startswith(lits[0], i):
                yield (tpl.node,), True
            return
        start, end = i + len(lits[0]), j - len(lits[-1])
        if end <= start or not text.startswith(lits[0], i) or not text.startswith(lits[-1], end):
            return
        self.far = max(self.far, start)
        yield from self._fill(tpl, 0, start, end, {})

    def _fill(
        self, tpl: _Template, h: int, start: int, end: int, got: dict[int, tuple[int, int, _Result]]
    ) -> Iterator[_Result]:
        """Place hole ``h`` at ``start`` and the literals after it, then the remaining holes."""
        text = self.text
        last = h == len(tpl.holes) - 1
        sep = tpl.lits[h + 1]
        if last:
            stops: Iterator[int] = iter((end,))
        elif sep:
            stops = self._find_all(sep, start + 1, end)
        else:
            stops = iter(range(start + 1, end))
        arg = tpl.holes[h]
        for stop in stops:
            if arg in got:  # a repeated hole must show the very same text
                a, b, res = got[arg]
                if text[a:b] != text[start:stop]:
                    continue
                sub: _Result | None = res
            else:
                sub = self.span(start, stop, tpl.arg_types[arg])
            if sub is None:
                continue
            if last:
                yield self._build(tpl, {**got, arg: (start, stop, sub)})
            else:
                self.far = max(self.far, stop + len(sep))
                yield from self._fill(
                    tpl, h + 1, stop + len(sep), end, {**got, arg: (start, stop, sub)}
                )

    def _find_all(self, sep: str, lo: int, hi: int) -> Iterator[int]:
        """Start positions of ``sep`` that leave a non-empty hole after it, before ``hi``."""
        k = self.text.find(sep, lo, hi)
        while k != -1 and k + len(sep) < hi:
            yield k
            k = self.text.find(sep, k + 1, hi)

    @staticmethod
    def _build(tpl: _Template, got: dict[int, tuple[int, int, _Result]]) -> _Result:
        args = [got[k][2] for k in sorted(got)]
        nodes = tuple(n for a in args for n in a[0])
        exact = all(a[1] for a in args)
        if tpl.node is None:
            return nodes, False
        return (tpl.node, *nodes), exact


def _check_text(text: str, allowed: frozenset[str]) -> None:
    for pos, ch in enumerate(text):
        if ch in allowed:
            continue
        if not ch.isascii():
            name = unicodedata.name(ch, "unnamed character")
            plain = unicodedata.normalize("NFKC", ch)
            hint = f", a look-alike of {plain!r}" if plain != ch and plain.isascii() else ""
            raise CandidateError(
                f"non-ASCII character {ch!r} (U+{ord(ch):04X} {name}{hint}) "
                "in reference candidate text",
                position=pos,
            )
        raise CandidateError(
            f"unexpected character {ch!r} in reference candidate text", position=pos
        )
    depth = 0
    for pos, ch in enumerate(text):
        if ch in "([":
            depth += 1
            if depth > MAX_NESTING:
                raise CandidateError(f"brackets nested deeper than {MAX_NESTING}", position=pos)
        elif ch in ")]":
            depth -= 1


def parse_reference(text: str, grammar: Grammar) -> Candidate:
    """Read a candidate in the reference's string format, e.g. ``None ~ tanh(g)``.

    The ``<None|Mom|Nest> ~`` prefix may be left out (momentum none).

    Raises:
      CandidateError: one line, with the position where reading stopped.
    """
    if not isinstance(text, str):
        raise CandidateError("candidate text must be a string")
    if len(text) > MAX_TEXT:
        raise CandidateError(f"candidate text longer than {MAX_TEXT} characters ({len(text)})")
    syn = _syntax(grammar)
    if not syn.by_type.get(Tensor):
        raise CandidateError(f"grammar {grammar.name} has no 'ref' spellings")
    lo = len(text) - len(text.lstrip())
    hi = len(text.rstrip())
    if lo >= hi:
        raise CandidateError("empty candidate text")

    momentum = Momentum.NONE
    start = lo
    m = _PREFIX.match(text, lo, hi)
    if m is not None:
        word = m.group(1).lower()
        if word not in {mo.value for mo in Momentum}:
            raise CandidateError(
                f"unknown momentum {m.group(1)!r} (expected None, Mom or Nest)", position=lo
            )
        if word not in grammar.momentum:
            raise CandidateError(f"momentum {word!r} is not in grammar {grammar.name}", position=lo)
        momentum = Momentum(word)
        start = m.end()
    if start >= hi:
        raise CandidateError("no expression after the momentum", position=start)
    body = text[start:hi]
    try:
        _check_text(body, syn.chars)
    except CandidateError as exc:
        raise CandidateError(exc.problem, position=start + (exc.position or 0)) from None

    parser = _SpanParser(body, syn)
    try:
        res = parser.span(0, len(body), Tensor)
    except CandidateError as exc:
        raise CandidateError(exc.problem, position=start + (exc.position or 0)) from None
    if res is None:
        far = min(parser.far, len(body))
        near = repr(body[far : far + 24]) if far < len(body) else "the end"
        raise CandidateError(
            f"no operand or op of grammar {grammar.name} matches the reference text near {near}",
            position=start + far,
        )
    return Candidate(gp.PrimitiveTree(list(res[0])), momentum, grammar)


# ----------------------------------------------------------------------------- printing


def format_reference(candidate: Candidate) -> str:
    """Print a candidate in the reference's string format (the inverse of the reader).

    Raises:
      CandidateError: the candidate has an LR-schedule gene (the reference format has
        none), or uses a node whose grammar entry has no ``ref``.
    """
    if candidate.lr is not None:
        raise CandidateError("the reference format has no LR-schedule gene")
    syn = _syntax(candidate.grammar)
    out: list[str] = []
    stack: list[tuple[_Template, list[str]]] = []
    for node in candidate.update:
        tpl = syn.printing.get(node.name)
        if tpl is None:
            raise CandidateError(
                f"'{node.name}' has no 'ref' spelling in grammar {candidate.grammar.name}"
            )
        stack.append((tpl, []))
        while stack and len(stack[-1][1]) == len(stack[-1][0].arg_types):
            done, args = stack.pop()
            parts = [done.lits[0]]
            for h, lit in zip(done.holes, done.lits[1:], strict=True):
                parts += [args[h], lit]
            text = "".join(parts)
            if stack:
                stack[-1][1].append(text)
            else:
                out.append(text)
    return f"{candidate.momentum.ref} ~ {''.join(out)}"
