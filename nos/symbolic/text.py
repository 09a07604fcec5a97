"""The canonical candidate text: a safe recursive-descent reader.

The canonical form is prefix notation, ``nest ~ i1e(i1e(decay(mul(a13, a2), g)))``, with
``; lr = <schedule>`` appended when the LR gene is not 1 (the printer is
:attr:`nos.symbolic.genome.Candidate.text`). The reader also accepts ``+ - * /`` infix and
numbers for the grammar's constant operands. It is our own reader over a fixed token set:
it never calls ``eval``, ``sympify`` or DEAP's ``from_string`` (which evaluates unknown
tokens). Other spellings (``zoo:NAME``, the reference's strings) are read by
:func:`nos.zoo.resolve.parse`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from deap import gp

from nos.errors import CandidateError
from nos.symbolic.genome import MAX_NESTING, MAX_TEXT, Candidate, Momentum
from nos.symbolic.grammar import SCHED_PREFIX, Grammar, Schedule, Tensor

__all__ = ["check_size", "parse_canonical"]

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
        self.grammar = grammar
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
    def expr(self, typ: type) -> list[gp.Primitive | gp.Terminal]:
        left = self.term(typ)
        while (tok := self.peek()) and tok[1] in "+-" and tok[0] == "sym":
            self.take()
            left = self._infix(tok, typ) + left + self.term(typ)
        return left

    def term(self, typ: type) -> list[gp.Primitive | gp.Terminal]:
        left = self.factor(typ)
        while (tok := self.peek()) and tok[1] in "*/" and tok[0] == "sym":
            self.take()
            left = self._infix(tok, typ) + left + self.factor(typ)
        return left

    def factor(self, typ: type) -> list[gp.Primitive | gp.Terminal]:
        tok = self.peek()
        if tok and tok[0] == "sym" and tok[1] == "-":
            self.take()
            self.enter(tok[2])
            inner = self.factor(typ)
            self.depth -= 1
            return [self._prim("neg", typ, tok[2], 1), *inner]
        return self.atom(typ)

    def _infix(self, tok: tuple[str, str, int], typ: type) -> list[gp.Primitive | gp.Terminal]:
        table = self.grammar.binary if typ is Tensor else self.grammar.decay_binary
        for name, entry in table.items():
            if entry.infix == tok[1]:
                return [self._prim(name, typ, tok[2], 2)]
        raise CandidateError(
            f"operator {tok[1]!r} has no op in grammar {self.grammar.name}", position=tok[2]
        )

    def _prim(self, name: str, typ: type, pos: int, arity: int | None = None) -> gp.Primitive:
        internal = name if typ is Tensor or name == "decay" else SCHED_PREFIX + name
        node = self.grammar.pset.mapping.get(internal)
        if node is None or not isinstance(node, gp.Primitive) or node.ret is not typ:
            kind = "tensor" if typ is Tensor else "schedule"
            raise CandidateError(
                f"unknown {kind} op {name!r} in grammar {self.grammar.name}", position=pos
            )
        if arity is not None and node.arity != arity:
            raise CandidateError(f"op {name!r} takes {node.arity} argument(s)", position=pos)
        return node

    def atom(self, typ: type) -> list[gp.Primitive | gp.Terminal]:
        kind, value, pos = self.take()
        if kind == "sym" and value == "(":
            self.enter(pos)
            inner = self.expr(typ)
            self.depth -= 1
            self.take(")")
            return inner
        if kind == "num":
            name = _NUMERIC_OPERANDS.get(value.rstrip("0").rstrip(".") if "." in value else value)
            if typ is not Tensor or name is None or name not in self.grammar.operands:
                raise CandidateError(
                    f"number {value} is not an operand of grammar {self.grammar.name}", position=pos
                )
            return [self.grammar.pset.mapping[name]]
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
        node = self.grammar.pset.mapping.get(value)
        if not isinstance(node, gp.Terminal) or node.ret is not typ:
            kind_name = "operand" if typ is Tensor else "decay base"
            raise CandidateError(
                f"unknown {kind_name} {value!r} in grammar {self.grammar.name}", position=pos
            )
        return [node]


def parse_canonical(text: str, grammar: Grammar) -> Candidate:
    """Read the canonical form (see module docstring).

    Raises:
      CandidateError: one line, with the position of the problem.
    """
    check_size(text)
    r = _Reader(text, grammar)
    momentum = Momentum.NONE
    toks = r.toks
    if len(toks) >= 2 and toks[1][1] == "~":
        mode = toks[0][1].lower()
        if toks[0][0] != "name" or mode not in {m.value for m in Momentum}:
            raise CandidateError(
                f"unknown momentum {toks[0][1]!r} (expected none, mom or nest)", position=toks[0][2]
            )
        if mode not in grammar.momentum:
            raise CandidateError(
                f"momentum {mode!r} is not in grammar {grammar.name}", position=toks[0][2]
            )
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
            raise CandidateError(f"grammar {grammar.name} has no LR-schedule gene", position=tok[2])
        lr = gp.PrimitiveTree(r.expr(Schedule))
    tok = r.peek()
    if tok is not None:
        raise CandidateError(
            f"unexpected {tok[1]!r} after the end of the candidate", position=tok[2]
        )
    return Candidate(gp.PrimitiveTree(update), momentum, grammar, lr)


def check_size(text: str) -> None:
    if not isinstance(text, str):
        raise CandidateError("candidate text must be a string")
    if len(text) > MAX_TEXT:
        raise CandidateError(f"candidate text longer than {MAX_TEXT} characters ({len(text)})")
    if not text.strip():
        raise CandidateError("empty candidate text")
