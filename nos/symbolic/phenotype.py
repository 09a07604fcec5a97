"""The phenotype: a candidate's trees as sympy expressions.

``decay(d, x)`` becomes the product ``d*x``; operands become their definitions from
:mod:`nos.symbolic.ops` (``qhm_v -> 3*g/10 + 7*v_hat/10``); decay bases become the symbols
``a1``…``a14`` (times the grammar's scale, if any). Sympy's automatic canonicalisation then
merges trivially equal trees (``add(g, g)`` and ``mul(two, g)`` are both ``2*g``).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from deap import gp

from nos.symbolic import ops
from nos.symbolic.grammar import SCHED_PREFIX, Grammar, Schedule

__all__ = ["Phenotype", "serialize", "tree_to_sympy"]


# Sub-tree memo shared by all candidates of a process: a mutated child shares all but one
# path with its parent, and random trees share small sub-trees, so most sympy constructions
# are reused. Sub-trees are named by small ints, (node name, child ids) -> id.
_SUBTREE_IDS: dict[tuple[str, str, tuple[int, ...]], int] = {}
_SUBTREE_EXPR: list[sympy.Expr] = []
_MEMO_LIMIT = 200_000


def tree_to_sympy(tree: gp.PrimitiveTree, grammar: Grammar) -> sympy.Expr:
    """Build the sympy expression of a tensor or schedule tree (iteratively, no recursion)."""
    if len(_SUBTREE_EXPR) > _MEMO_LIMIT:
        _SUBTREE_IDS.clear()
        _SUBTREE_EXPR.clear()
    stack: list[int] = []
    gid = grammar.digest  # scales and operand sets differ between grammars
    for node in reversed(tree):
        args = tuple(stack.pop() for _ in range(node.arity))
        key = (gid, node.name, args)
        ident = _SUBTREE_IDS.get(key)
        if ident is None:
            expr = _build(node, [_SUBTREE_EXPR[a] for a in args], grammar)
            ident = _SUBTREE_IDS[key] = len(_SUBTREE_EXPR)
            _SUBTREE_EXPR.append(expr)
        stack.append(ident)
    (root,) = stack
    return _SUBTREE_EXPR[root]


def _build(
    node: gp.Primitive | gp.Terminal, args: list[sympy.Expr], grammar: Grammar
) -> sympy.Expr:
    if isinstance(node, gp.Terminal):
        if node.ret is Schedule:
            entry = grammar.decay_bases[node.name]
            sym = ops.SYM[node.name]
            return sym if entry.scale == 1 else sympy.Float(entry.scale) * sym
        return ops.OPERANDS[node.name].build()
    if node.name == "decay":
        return args[0] * args[1]
    name = node.name[len(SCHED_PREFIX) :] if node.ret is Schedule else node.name
    return ops.OPS[name].build(*args)


def serialize(expr: sympy.Basic) -> str:
    """An exact, process-independent text of a sympy tree, like ``srepr`` but ~50x cheaper.

    Arguments appear in sympy's own order, which for sums and products is its canonical
    sort (structural, not hash-based), so equal expressions serialize equally.
    """
    out: list[str] = []
    stack: list[sympy.Basic | str] = [expr]
    while stack:
        e = stack.pop()
        if isinstance(e, str):
            out.append(e)
        elif e.is_Symbol:
            out.append(e.name)
        elif e.is_Integer:
            out.append(str(e.p))
        elif e.is_Rational:
            out.append(f"{e.p}/{e.q}")
        elif e.is_Float:
            out.append(repr(float(e)))
        elif not e.args:
            out.append(type(e).__name__)  # pi, E, oo, zoo, nan, ...
        else:
            out.append(type(e).__name__ + "(")
            stack.append(")")
            for i, arg in enumerate(reversed(e.args)):
                if i:
                    stack.append(",")
                stack.append(arg)
    return "".join(out)


_MOMENT_SYMBOLS = {ops.SYM[raw]: moment for moment, (raw, _hat, _p) in ops.MOMENTS.items()} | {
    ops.SYM[hat]: moment for moment, (_raw, hat, _p) in ops.MOMENTS.items()
}
_GRADIENT_SYMBOLS = frozenset(_MOMENT_SYMBOLS) | {ops.SYM["g"]}


@dataclass(frozen=True)
class Phenotype:
    """The sympy form of a candidate: update, LR multiplier and the genes around them."""

    update: sympy.Expr
    lr: sympy.Expr
    momentum: str
    betas: tuple[tuple[str, str], ...]  # (moment, beta) for the moments the update reads

    @property
    def moments(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.betas)

    @property
    def reads_gradient(self) -> bool:
        """True when the update's symbols include g or a moment of g."""
        return bool(self.update.free_symbols & _GRADIENT_SYMBOLS)

    def canonical(self) -> str:
        """The string hashed by the canonical key (see :func:`serialize`)."""
        betas = ",".join(f"{m}={b}" for m, b in self.betas)
        return f"{self.momentum}|{serialize(self.update)}|{serialize(self.lr)}|{betas}"

    @classmethod
    def of(cls, update: sympy.Expr, lr: sympy.Expr, momentum: str, grammar: Grammar) -> Phenotype:
        used = sorted({_MOMENT_SYMBOLS[s] for s in update.free_symbols if s in _MOMENT_SYMBOLS})
        betas = tuple((m, str(grammar.moment_beta(m))) for m in used)
        return cls(update, lr, momentum, betas)
