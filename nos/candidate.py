"""Candidates: the genome (typed DEAP trees + genes), its canonical text and the safe parser.

A :class:`Candidate` is

* ``update``: a DEAP ``PrimitiveTree`` of type :class:`~nos.grammar.Tensor`, the update
  direction U (spec §2.1);
* ``momentum``: the momentum gene, ``none``/``mom``/``nest`` (spec §2.5);
* ``lr``: the LR-schedule gene, a ``Schedule`` tree multiplying the base warmup-cosine
  schedule, or ``None`` for the constant 1.

The canonical text is prefix notation, ``nest ~ i1e(i1e(decay(mul(a13, a2), g)))``, with
``; lr = <schedule>`` appended when the LR gene is not 1. :func:`parse` reads it back (and
accepts ``+ - * /`` infix and numbers for the grammar's constant operands); the reference
implementation's string format is read by :mod:`nos.refparse`.

The parser is our own recursive-descent reader over a fixed token set: it never calls
``eval``, ``sympify`` or DEAP's ``from_string`` (which evaluates unknown tokens).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import sympy
from deap import gp

from nos.errors import CandidateError
from nos.grammar import SCHED_PREFIX, Grammar, Schedule, Tensor
from nos.phenotype import Phenotype, tree_to_sympy

__all__ = [
    "MAX_TEXT",
    "Candidate",
    "Momentum",
    "format_tree",
    "parse",
    "parse_canonical",
    "tree_depth",
]

#: Longest candidate text accepted; real candidates are a few hundred characters.
MAX_TEXT = 4096
#: Deepest nesting accepted by the parsers.
MAX_NESTING = 64


class Momentum(enum.Enum):
    """The momentum gene (spec §2.5)."""

    NONE = "none"
    MOM = "mom"
    NEST = "nest"

    @property
    def ref(self) -> str:
        """Spelling in the reference's strings."""
        return {"none": "None", "mom": "Mom", "nest": "Nest"}[self.value]


@dataclass(frozen=True, eq=False)
class Candidate:
    """One optimizer of a grammar's space. Equality and hashing use the canonical text."""

    update: gp.PrimitiveTree
    momentum: Momentum
    grammar: Grammar
    lr: gp.PrimitiveTree | None = None

    @functools.cached_property
    def text(self) -> str:
        out = f"{self.momentum.value} ~ {format_tree(self.update)}"
        if self.lr is not None:
            out += f" ; lr = {format_tree(self.lr)}"
        return out

    def __str__(self) -> str:
        return self.text

    @functools.cached_property
    def phenotype(self) -> Phenotype:
        """The sympy form (built once per candidate)."""
        update = tree_to_sympy(self.update, self.grammar)
        lr = tree_to_sympy(self.lr, self.grammar) if self.lr is not None else sympy.Integer(1)
        return Phenotype.of(update, lr, self.momentum.value, self.grammar)

    def __repr__(self) -> str:
        return f"Candidate({self.text!r}, grammar={self.grammar.name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Candidate):
            return NotImplemented
        return self.text == other.text and self.grammar.name == other.grammar.name

    def __hash__(self) -> int:
        return hash(self.text)

    @property
    def size(self) -> int:
        """Node count of the update and LR trees."""
        return len(self.update) + (len(self.lr) if self.lr is not None else 0)

    @property
    def depth(self) -> int:
        return tree_depth(self.update)

    def within_limits(self) -> bool:
        g = self.grammar
        if len(self.update) > g.max_nodes or tree_depth(self.update) > g.max_depth:
            return False
        if any(schedule_depth(self.update, i) > g.decay_depth
               for i, node in enumerate(self.update) if node.name == "decay"):
            return False
        return self.lr is None or tree_depth(self.lr) <= g.lr_max_depth + 1

    def replace(self, **changes) -> Candidate:
        fields = {"update": self.update, "momentum": self.momentum, "grammar": self.grammar,
                  "lr": self.lr}
        fields.update(changes)
        return Candidate(**fields)


# ------------------------------------------------------------------------- tree helpers


def display_name(node: gp.Primitive | gp.Terminal) -> str:
    """A node's name in the canonical text (schedule ops lose their internal prefix)."""
    name = node.name
    if node.ret is Schedule and isinstance(node, gp.Primitive):
        return name[len(SCHED_PREFIX):]
    return name


def format_tree(tree: gp.PrimitiveTree) -> str:
    """Prefix text of a tree, e.g. ``i1e(decay(mul(a13, a2), g))``."""
    out: list[str] = []
    stack: list[list] = []
    for node in tree:
        stack.append([display_name(node), node.arity, []])
        while stack and len(stack[-1][2]) == stack[-1][1]:
            name, arity, args = stack.pop()
            text = f"{name}({', '.join(args)})" if arity else name
            if stack:
                stack[-1][2].append(text)
            else:
                out.append(text)
    return "".join(out)


def tree_depth(tree: gp.PrimitiveTree) -> int:
    """Depth counting nodes (a lone operand has depth 1)."""
    stack = [0]
    best = 0
    for node in tree:
        depth = stack.pop() + 1
        best = max(best, depth)
        stack.extend([depth] * node.arity)
    return best


def schedule_depth(tree: gp.PrimitiveTree, decay_index: int) -> int:
    """Number of schedule ops on the longest path of a decay's schedule argument."""
    sl = tree.searchSubtree(decay_index + 1)
    return tree_depth(gp.PrimitiveTree(tree[sl])) - 1


# ------------------------------------------------------------------------------ parsing

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_]*)|(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(.))")
_NUMERIC_OPERANDS = {"0": "zero", "1": "one", "2": "two"}


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing whitespace is left
            return
        start = m.start(m.lastindex or 0)
        if m.group(1):
            yield "name", m.group(1), start
        elif m.group(2):
            yield "num", m.group(2), start
        else:
            ch = m.group(3)
            if ch not in "(),~;=+-*/":
                raise CandidateError(f"unexpected character {ch!r}", position=start)
            yield "sym", ch, start
        pos = m.end()


class _Reader:
    """Recursive descent over the canonical grammar:

    candidate := [momentum '~'] expr [';' 'lr' '=' expr]
    expr      := term (('+'|'-') term)*        term := factor (('*'|'/') factor)*
    factor    := '-' factor | atom              atom := NAME ['(' expr (',' expr)* ')']
               | NUMBER | '(' expr ')'
    """

    def __init__(self, text: str, grammar: Grammar):
        self.toks = list(_tokens(text))
        self.i = 0
        self.g = grammar
        self.end = len(text)
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise CandidateError("unexpected end of text", position=self.end)
        if value is not None and tok[1] != value:
            raise CandidateError(f"expected {value!r}, found {tok[1]!r}", position=tok[2])
        self.i += 1
        return tok

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise CandidateError(f"nesting deeper than {MAX_NESTING}", position=pos)

    # Each parse_* returns a list of DEAP nodes in prefix order.
    def expr(self, typ: type) -> list:
        left = self.term(typ)
        while (tok := self.peek()) and tok[1] in "+-" and tok[0] == "sym":
            self.take()
            left = self._infix(tok, typ) + left + self.term(typ)
        return left

    def term(self, typ: type) -> list:
        left = self.factor(typ)
        while (tok := self.peek()) and tok[1] in "*/" and tok[0] == "sym":
            self.take()
            left = self._infix(tok, typ) + left + self.factor(typ)
        return left

    def factor(self, typ: type) -> list:
        tok = self.peek()
        if tok and tok[0] == "sym" and tok[1] == "-":
            self.take()
            self.enter(tok[2])
            inner = self.factor(typ)
            self.depth -= 1
            return [self._prim("neg", typ, tok[2], 1), *inner]
        return self.atom(typ)

    def _infix(self, tok: tuple[str, str, int], typ: type) -> list:
        table = self.g.binary if typ is Tensor else self.g.decay_binary
        for name, entry in table.items():
            if entry.infix == tok[1]:
                return [self._prim(name, typ, tok[2], 2)]
        raise CandidateError(f"operator {tok[1]!r} has no op in grammar {self.g.name}",
                             position=tok[2])

    def _prim(self, name: str, typ: type, pos: int, arity: int | None = None) -> gp.Primitive:
        internal = name if typ is Tensor or name == "decay" else SCHED_PREFIX + name
        node = self.g.pset.mapping.get(internal)
        if node is None or not isinstance(node, gp.Primitive) or node.ret is not typ:
            kind = "tensor" if typ is Tensor else "schedule"
            raise CandidateError(f"unknown {kind} op {name!r} in grammar {self.g.name}",
                                 position=pos)
        if arity is not None and node.arity != arity:
            raise CandidateError(f"op {name!r} takes {node.arity} argument(s)", position=pos)
        return node

    def atom(self, typ: type) -> list:
        kind, value, pos = self.take()
        if kind == "sym" and value == "(":
            self.enter(pos)
            inner = self.expr(typ)
            self.depth -= 1
            self.take(")")
            return inner
        if kind == "num":
            name = _NUMERIC_OPERANDS.get(value.rstrip("0").rstrip(".") if "." in value
                                         else value)
            if typ is not Tensor or name is None or name not in self.g.operands:
                raise CandidateError(f"number {value} is not an operand of grammar "
                                     f"{self.g.name}", position=pos)
            return [self.g.pset.mapping[name]]
        if kind != "name":
            raise CandidateError(f"unexpected {value!r}", position=pos)
        nxt = self.peek()
        if nxt and nxt[1] == "(":
            node = self._prim(value, typ, pos)
            self.take("(")
            self.enter(pos)
            out = [node]
            for k, arg_type in enumerate(node.args):
                if k:
                    self.take(",")
                out += self.expr(arg_type)
            self.depth -= 1
            self.take(")")
            return out
        node = self.g.pset.mapping.get(value)
        if not isinstance(node, gp.Terminal) or node.ret is not typ:
            kind_name = "operand" if typ is Tensor else "decay base"
            raise CandidateError(f"unknown {kind_name} {value!r} in grammar {self.g.name}",
                                 position=pos)
        return [node]


def parse_canonical(text: str, grammar: Grammar) -> Candidate:
    """Read the canonical form (see module docstring).

    Raises:
      CandidateError: one line, with the position of the problem.
    """
    _check_size(text)
    r = _Reader(text, grammar)
    momentum = Momentum.NONE
    toks = r.toks
    if len(toks) >= 2 and toks[1][1] == "~":
        mode = toks[0][1].lower()
        if toks[0][0] != "name" or mode not in {m.value for m in Momentum}:
            raise CandidateError(f"unknown momentum {toks[0][1]!r} (expected none, mom or "
                                 "nest)", position=toks[0][2])
        if mode not in grammar.momentum:
            raise CandidateError(f"momentum {mode!r} is not in grammar {grammar.name}",
                                 position=toks[0][2])
        momentum = Momentum(mode)
        r.i = 2
    update = r.expr(Tensor)
    lr = None
    tok = r.peek()
    if tok is not None and tok[1] == ";":
        r.take()
        r.take("lr")
        r.take("=")
        if not grammar.lr_enabled:
            raise CandidateError(f"grammar {grammar.name} has no LR-schedule gene",
                                 position=tok[2])
        lr = gp.PrimitiveTree(r.expr(Schedule))
    tok = r.peek()
    if tok is not None:
        raise CandidateError(f"unexpected {tok[1]!r} after the end of the candidate",
                             position=tok[2])
    return Candidate(gp.PrimitiveTree(update), momentum, grammar, lr)


def _check_size(text: str) -> None:
    if not isinstance(text, str):
        raise CandidateError("candidate text must be a string")
    if len(text) > MAX_TEXT:
        raise CandidateError(f"candidate text longer than {MAX_TEXT} characters "
                             f"({len(text)})")
    if not text.strip():
        raise CandidateError("empty candidate text")


def parse(text: str, grammar: Grammar) -> Candidate:
    """Read a candidate in the canonical form or in the reference's string format.

    The canonical reader is tried first; if it fails and the grammar has ``ref`` spellings,
    the reference reader (:func:`nos.refparse.parse_reference`) is tried. The error of the
    reader that got further is reported. ``zoo:NAME`` is the zoo's entry (in its own
    grammar, see :mod:`nos.zoo`).
    """
    _check_size(text)
    if text.strip().startswith("zoo:"):
        from nos.zoo import get  # the zoo imports this module

        return get(text.strip().removeprefix("zoo:"))
    try:
        return parse_canonical(text, grammar)
    except CandidateError as first:
        from nos.refparse import parse_reference  # the reference format is optional

        try:
            return parse_reference(text, grammar)
        except CandidateError as second:
            if (second.position or 0) > (first.position or 0):
                raise second from None
            raise first from None
