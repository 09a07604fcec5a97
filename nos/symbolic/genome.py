"""Candidates: the genome (typed DEAP trees + genes), its canonical text and the safe parser.

A :class:`Candidate` is

* ``update``: a DEAP ``PrimitiveTree`` of type :class:`~nos.symbolic.grammar.Tensor`, the update
  direction U (spec §2.1);
* ``momentum``: the momentum gene, ``none``/``mom``/``nest`` (spec §2.5);
* ``lr``: the LR-schedule gene, a ``Schedule`` tree multiplying the base warmup-cosine
  schedule, or ``None`` for the constant 1.

The canonical text is prefix notation, ``nest ~ i1e(i1e(decay(mul(a13, a2), g)))``, with
``; lr = <schedule>`` appended when the LR gene is not 1; :mod:`nos.symbolic.text` reads it
back.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import Any

import sympy
from deap import gp

from nos.symbolic.grammar import SCHED_PREFIX, Grammar, Schedule
from nos.symbolic.phenotype import Phenotype, tree_to_sympy

__all__ = [
    "MAX_NESTING",
    "MAX_TEXT",
    "Candidate",
    "Momentum",
    "display_name",
    "format_tree",
    "schedule_depth",
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
        grammar = self.grammar
        if len(self.update) > grammar.max_nodes or tree_depth(self.update) > grammar.max_depth:
            return False
        if any(
            schedule_depth(self.update, i) > grammar.decay_depth
            for i, node in enumerate(self.update)
            if node.name == "decay"
        ):
            return False
        return self.lr is None or tree_depth(self.lr) <= grammar.lr_max_depth + 1

    def replace(self, **changes: Any) -> Candidate:
        fields = {
            "update": self.update,
            "momentum": self.momentum,
            "grammar": self.grammar,
            "lr": self.lr,
        }
        fields.update(changes)
        return Candidate(**fields)


# ------------------------------------------------------------------------- tree helpers


def display_name(node: gp.Primitive | gp.Terminal) -> str:
    """A node's name in the canonical text (schedule ops lose their internal prefix)."""
    name: str = node.name
    if node.ret is Schedule and isinstance(node, gp.Primitive):
        return name[len(SCHED_PREFIX) :]
    return name


def format_tree(tree: gp.PrimitiveTree) -> str:
    """Prefix text of a tree, e.g. ``i1e(decay(mul(a13, a2), g))``."""
    out: list[str] = []
    stack: list[list[Any]] = []  # [name, arity, argument texts]
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
