"""Mutation: exactly one change per child (spec §4.4), expressed on typed trees.

:func:`mutate_candidate` draws a kind with the grammar's ``[mutation]`` probabilities, applies
it once and returns a :class:`Mutation` (child, kind, detail). A draw whose child has the
parent's canonical text or breaks the grammar's limits is retried (bounded); the integrity
check is left to the caller, as in the reference (spec §4.3).

Mapping of the reference's DAG mutations onto trees. The reference picks a node uniformly
among the active hidden nodes and the root; here that is a uniformly chosen *tensor op node*
(the ``decay`` wrapper is an edge attribute, not a node). A node's input edges are its
argument slots; a decay on an edge is a ``decay(schedule, ·)`` wrapper at the top of that
argument. Identity nodes cannot exist in a tree: they vanish.

``op`` (0.4)
  Binary: another binary op (by weight). Unary: w.p. ``identity`` (0.2) the node becomes the
  identity, i.e. it is removed and its argument spliced in; else another unary op. The
  opposite direction (an identity node getting an op) becomes an *insertion*: w.p.
  ``op_insert`` (``[sampling]``, default 0.1, about the share of identity nodes among the
  reference's active nodes) a new unary op is put above a uniformly chosen tensor
  position. A lone-operand update has no op nodes, so any node kind becomes an insertion
  there (reported as ``op``).
``connection`` (0.3)
  Binary: w.p. 0.2 swap the arguments (with their decays), else replace the 1st or 2nd
  argument (50/50); unary: replace the argument. The new source is an operand not yet read
  by the node w.p. #operands/(#operands + #hidden), else a copy of another op subtree of the
  tree (the analog of rewiring to another hidden node); #hidden counts the op nodes that are
  neither the node nor its ancestors (those would be cycles in the DAG). As in the
  reference, a decay belongs to the old (node, source) edge and goes with it.
``arity`` (0.1)
  Unary -> binary: the old argument becomes the 1st or 2nd argument (50/50), the other is a
  new operand. Binary -> unary: keep the 1st or the 2nd (50/50). The new op is drawn fresh
  by weight (a tree has no dormant op id to re-activate).
``momentum`` (0.1)
  Another of the grammar's modes, by weight.
``decay`` (0.1)
  On a uniformly chosen input edge of the node (for the topmost op node, a decay sitting
  above it counts as one more edge, so it can be edited): no decay -> attach a new random
  schedule; a decay -> w.p. 0.5 remove it, else mutate its schedule in place with the
  reference's table (change op 0.6, change connection 0.25, switch arity 0.15). **Deviation:**
  the reference keeps an in-place schedule mutation even when it leaves [0, 1] or changes
  nothing (its return value is ignored); here such a draw is retried.
``lr_schedule`` (grammar probability, 0 in morgan2024)
  No LR gene -> add a random one; else mutate it in place (0.5), replace it (0.25) or
  remove it (0.25).

Other differences from the reference: ops are drawn from the grammar's whole op table by
weight (the reference cannot reach ``MaxValue`` by mutation, spec §2.3), and the
reference's "a root keeps a hidden-node input" rule has no tree analog.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from deap import gp

from nos.errors import NosError
from nos.symbolic.genome import Candidate, Momentum, display_name, format_tree
from nos.symbolic.grammar import SCHED_PREFIX, Grammar, Tensor
from nos.symbolic.sample import (
    Node,
    random_schedule,
    schedule_ops_depth,
    schedule_values,
    valid_schedule,
    weighted_pick,
    weighted_pick_one,
)

__all__ = ["KINDS", "Mutation", "MutationError", "mutate_candidate", "mutate_schedule"]

KINDS = ("op", "connection", "arity", "momentum", "decay", "lr_schedule")
#: Draws per kind before the kind counts as impossible for this parent.
TRIES_PER_KIND = 40
#: Draws of an in-place schedule mutation before giving up on it.
SCHEDULE_TRIES = 40
#: Minimal L2 distance between a schedule and its mutant (the reference's 1e-4, spec §4.4).
MIN_SCHEDULE_CHANGE = 1e-4


class MutationError(NosError):
    """No mutation of any kind gives a new candidate within the grammar's limits."""


@dataclass(frozen=True)
class Mutation:
    """One child, the kind of mutation that made it, and a one-line description."""

    child: Candidate
    kind: str
    detail: str


# ------------------------------------------------------------------------ tree helpers

Nodes = list[Node]


def _is_op(node: Node) -> bool:
    return isinstance(node, gp.Primitive) and node.ret is Tensor and node.name != "decay"


def _subtree(nodes: Nodes, index: int) -> slice:
    span: slice = gp.PrimitiveTree(nodes).searchSubtree(index)
    return span


def _arg_starts(nodes: Nodes, index: int) -> list[int]:
    """Start indices of the arguments of the node at ``index``."""
    tree = gp.PrimitiveTree(nodes)
    starts = []
    pos = index + 1
    for _ in range(nodes[index].arity):
        starts.append(pos)
        pos = tree.searchSubtree(pos).stop
    return starts


def _ancestors_or_self(nodes: Nodes, index: int) -> set[int]:
    tree = gp.PrimitiveTree(nodes)
    return {j for j in range(index + 1) if tree.searchSubtree(j).stop > index}


def _strip_decays(arg: Nodes) -> Nodes:
    """An argument without the decay wrappers on its edge."""
    while arg[0].name == "decay":
        arg = arg[_subtree(arg, 1).stop :]
    return arg


def _text(nodes: Nodes) -> str:
    return format_tree(gp.PrimitiveTree(nodes))


def _operand(grammar: Grammar, rnd: random.Random, exclude: Sequence[str] = ()) -> Node:
    name = weighted_pick(rnd, grammar.operands, exclude) or weighted_pick(rnd, grammar.operands)
    return grammar.pset.mapping[name]


def _child(parent: Candidate, nodes: Nodes) -> Candidate:
    return parent.replace(update=gp.PrimitiveTree(nodes))


Result = tuple[Candidate, str, str] | None


# -------------------------------------------------------------------------- operators


def _insert_unary(parent: Candidate, rnd: random.Random, why: str = "") -> Result:
    grammar = parent.grammar
    nodes = list(parent.update)
    op = weighted_pick(rnd, grammar.unary)
    if op is None:
        return None
    positions = [i for i, n in enumerate(nodes) if n.ret is Tensor]
    pos = rnd.choice(positions)
    target = _text(nodes[_subtree(nodes, pos)])
    new = [*nodes[:pos], grammar.pset.mapping[op], *nodes[pos:]]
    return _child(parent, new), "op", f"insert {op} above {target}{why}"


def _mutate_op(parent: Candidate, rnd: random.Random, index: int) -> Result:
    grammar = parent.grammar
    nodes = list(parent.update)
    if rnd.random() < float(grammar.sampling.get("op_insert", 0.1)):
        return _insert_unary(parent, rnd)
    node = nodes[index]
    if node.arity == 1:
        if rnd.random() < float(grammar.sampling.get("identity", 0.2)):
            return (
                _child(parent, nodes[:index] + nodes[index + 1 :]),
                "op",
                f"{node.name} -> identity (removed)",
            )
        new = weighted_pick(rnd, grammar.unary, exclude=[node.name])
    else:
        new = weighted_pick(rnd, grammar.binary, exclude=[node.name])
    if new is None:
        return None
    nodes[index] = grammar.pset.mapping[new]
    return _child(parent, nodes), "op", f"{node.name} -> {new}"


def _source(
    parent: Candidate, rnd: random.Random, index: int, exclude: Sequence[str]
) -> tuple[Nodes, str]:
    """A new input for the node at ``index``: an operand or a copy of another op subtree."""
    grammar = parent.grammar
    nodes = list(parent.update)
    blocked = _ancestors_or_self(nodes, index)
    hidden = [j for j, n in enumerate(nodes) if _is_op(n) and j not in blocked]
    n_operands = len(grammar.operands)
    if not hidden or rnd.random() < n_operands / (n_operands + len(hidden)):
        operand = _operand(grammar, rnd, exclude)
        return [operand], operand.name
    j = rnd.choice(hidden)
    copy = nodes[_subtree(nodes, j)]
    return copy, f"copy of {_text(copy)}"


def _mutate_connection(parent: Candidate, rnd: random.Random, index: int) -> Result:
    nodes = list(parent.update)
    node = nodes[index]
    starts = _arg_starts(nodes, index)
    args = [nodes[_subtree(nodes, s)] for s in starts]
    end = _subtree(nodes, index).stop
    if node.arity == 2 and rnd.random() < 0.2:
        new = [*nodes[: index + 1], *args[1], *args[0], *nodes[end:]]
        return _child(parent, new), "connection", f"swap the arguments of {node.name}"
    k = 0 if node.arity == 1 else rnd.randrange(2)
    read = [src[0].name for src in map(_strip_decays, args) if isinstance(src[0], gp.Terminal)]
    source, what = _source(parent, rnd, index, read)
    args[k] = source
    new = [*nodes[: index + 1], *(n for a in args for n in a), *nodes[end:]]
    return (_child(parent, new), "connection", f"argument {k + 1} of {node.name} <- {what}")


def _mutate_arity(parent: Candidate, rnd: random.Random, index: int) -> Result:
    grammar = parent.grammar
    nodes = list(parent.update)
    node = nodes[index]
    starts = _arg_starts(nodes, index)
    args = [nodes[_subtree(nodes, s)] for s in starts]
    end = _subtree(nodes, index).stop
    if node.arity == 1:
        op = weighted_pick(rnd, grammar.binary)
        if op is None:
            return None
        operand = _operand(grammar, rnd)
        first = rnd.random() < 0.5
        new_args = [*args[0], operand] if first else [operand, *args[0]]
        detail = f"{node.name} -> {op}, old input {'1st' if first else '2nd'}, new {operand.name}"
    else:
        op = weighted_pick(rnd, grammar.unary)
        if op is None:
            return None
        keep = rnd.randrange(2)
        new_args = args[keep]
        detail = f"{node.name} -> {op}, keeping argument {keep + 1}"
    new = [*nodes[:index], grammar.pset.mapping[op], *new_args, *nodes[end:]]
    return _child(parent, new), "arity", detail


def _mutate_momentum(parent: Candidate, rnd: random.Random) -> Result:
    grammar = parent.grammar
    modes = [m for m in grammar.momentum if m != parent.momentum.value]
    if not modes:
        return None
    mode = rnd.choices(modes, weights=[grammar.momentum[m] for m in modes])[0]
    return (
        parent.replace(momentum=Momentum(mode)),
        "momentum",
        f"{parent.momentum.value} -> {mode}",
    )


def _decay_edges(nodes: Nodes, index: int) -> list[int]:
    edges = _arg_starts(nodes, index)
    # the decays above the topmost op node have no node to belong to; let it own them
    if nodes[0].name == "decay" and not any(_is_op(n) for n in nodes[:index]):
        edges.append(0)
    return edges


def _mutate_decay(parent: Candidate, rnd: random.Random, index: int) -> Result:
    grammar = parent.grammar
    if grammar.decay is None:
        return None
    nodes = list(parent.update)
    edge = rnd.choice(_decay_edges(nodes, index))
    where = f"on argument of {nodes[index].name}" if edge != 0 else "on the whole update"
    if nodes[edge].name != "decay":
        schedule = random_schedule(grammar, rnd)
        new = [*nodes[:edge], grammar.pset.mapping["decay"], *schedule, *nodes[edge:]]
        return _child(parent, new), "decay", f"add {_text(schedule)} {where}"
    sched = _subtree(nodes, edge + 1)
    old = nodes[sched]
    if rnd.random() < 0.5:
        new = [*nodes[:edge], *nodes[sched.stop :]]
        return _child(parent, new), "decay", f"remove {_text(old)} {where}"
    mutated = mutate_schedule(old, grammar, rnd, grammar.decay_depth)
    if mutated is None:
        return None
    schedule, how = mutated
    new = [*nodes[: sched.start], *schedule, *nodes[sched.stop :]]
    return (_child(parent, new), "decay", f"{_text(old)} -> {_text(schedule)} ({how}) {where}")


def _mutate_lr(parent: Candidate, rnd: random.Random) -> Result:
    grammar = parent.grammar
    if not grammar.lr_enabled:
        return None
    if parent.lr is None:
        lr = random_schedule(grammar, rnd, grammar.lr_max_depth, shape="grow")
        return (parent.replace(lr=gp.PrimitiveTree(lr)), "lr_schedule", f"add lr = {_text(lr)}")
    old = list(parent.lr)
    r = rnd.random()
    if r < 0.25:
        return parent.replace(lr=None), "lr_schedule", f"remove lr = {_text(old)}"
    if r < 0.5:
        lr = random_schedule(grammar, rnd, grammar.lr_max_depth, shape="grow")
        how = "replaced"
    else:
        mutated = mutate_schedule(old, grammar, rnd, grammar.lr_max_depth)
        if mutated is None:
            return None
        lr, how = mutated
    return (
        parent.replace(lr=gp.PrimitiveTree(lr)),
        "lr_schedule",
        f"lr {_text(old)} -> {_text(lr)} ({how})",
    )


# ------------------------------------------------------------------ schedule mutation


def _schedule_source(grammar: Grammar, rnd: random.Random, exclude: Sequence[str] = ()) -> Nodes:
    """A base, or (like rewiring to the latent hidden decay node) a fresh one-op schedule."""
    m = grammar.pset.mapping
    bases = grammar.decay_bases
    if rnd.random() < len(bases) / (len(bases) + 1) or not (
        grammar.decay_unary or grammar.decay_binary
    ):
        name = weighted_pick(rnd, bases, exclude) or weighted_pick(rnd, bases)
        return [m[name]]
    # the reference's hidden decay node: unary over a base (0.8) or binary over two
    if grammar.decay_unary and (not grammar.decay_binary or rnd.random() < 0.8):
        return [
            m[SCHED_PREFIX + weighted_pick_one(rnd, grammar.decay_unary)],
            m[weighted_pick(rnd, bases)],
        ]
    b0 = weighted_pick_one(rnd, bases)
    b1 = weighted_pick(rnd, bases, [b0]) or b0
    return [m[SCHED_PREFIX + weighted_pick_one(rnd, grammar.decay_binary)], m[b0], m[b1]]


def _schedule_step(nodes: Nodes, grammar: Grammar, rnd: random.Random) -> tuple[Nodes, str]:
    """One draw of the in-place schedule mutation table of spec §4.4."""
    m = grammar.pset.mapping
    op_positions = [j for j, n in enumerate(nodes) if isinstance(n, gp.Primitive)]
    r = rnd.random()
    op: str | None  # the new op's name; None where its table is empty
    if not op_positions:
        # a lone base is a vanished identity root
        base = nodes[0]
        if r >= 0.4 and grammar.decay_unary:
            op = weighted_pick_one(rnd, grammar.decay_unary)
            return [m[SCHED_PREFIX + op], base], f"identity -> {op}"
        if r >= 0.15 or not grammar.decay_binary:
            other = weighted_pick(rnd, grammar.decay_bases, [base.name]) or base.name
            return [m[other]], "new input"
        op = weighted_pick_one(rnd, grammar.decay_binary)
        other = m[weighted_pick(rnd, grammar.decay_bases, [base.name]) or base.name]
        args = [base, other] if rnd.random() < 0.5 else [other, base]
        return [m[SCHED_PREFIX + op], *args], f"identity -> {op}"
    j = rnd.choice(op_positions)
    node = nodes[j]
    name = display_name(node)
    starts = _arg_starts(nodes, j)
    args = [nodes[_subtree(nodes, s)] for s in starts]
    end = _subtree(nodes, j).stop
    if r >= 0.4:  # change the op
        if node.arity == 1:
            p_id = float(grammar.sampling.get("decay_identity", 1 / (len(grammar.decay_unary) + 1)))
            if rnd.random() < p_id:
                return nodes[:j] + nodes[j + 1 :], f"{name} -> identity"
            new = weighted_pick(rnd, grammar.decay_unary, [name])
        else:
            new = weighted_pick(rnd, grammar.decay_binary, [name])
        if new is None:
            return nodes, "unchanged"
        return [*nodes[:j], m[SCHED_PREFIX + new], *nodes[j + 1 :]], f"{name} -> {new}"
    if r >= 0.15:  # change a connection
        if node.arity == 2 and rnd.random() < 0.2:
            return [*nodes[: j + 1], *args[1], *args[0], *nodes[end:]], f"swap in {name}"
        k = 0 if node.arity == 1 else rnd.randrange(2)
        read = [a[0].name for a in args if isinstance(a[0], gp.Terminal)]
        args[k] = _schedule_source(grammar, rnd, read)
        return (
            [*nodes[: j + 1], *(n for a in args for n in a), *nodes[end:]],
            f"new input {k + 1} of {name}",
        )
    # switch arity
    if node.arity == 1:
        op = weighted_pick(rnd, grammar.decay_binary)
        if op is None:
            return nodes, "unchanged"
        other = m[weighted_pick(rnd, grammar.decay_bases)]
        new_args = [*args[0], other] if rnd.random() < 0.5 else [other, *args[0]]
    else:
        op = weighted_pick(rnd, grammar.decay_unary)
        if op is None:
            return nodes, "unchanged"
        new_args = args[rnd.randrange(2)]
    return [*nodes[:j], m[SCHED_PREFIX + op], *new_args, *nodes[end:]], f"{name} -> {op}"


def mutate_schedule(
    nodes: Sequence[Node], grammar: Grammar, rnd: random.Random, max_ops: int
) -> tuple[Nodes, str] | None:
    """Mutate a schedule in place (spec §4.4 table), retrying until the result is valid.

    Valid: at most ``max_ops`` ops deep, within [0, 1] on T = 100, with new text and an L2
    distance over 1e-4 from the original. ``None`` after ``SCHEDULE_TRIES`` failed draws.
    """
    nodes = list(nodes)
    old_text = _text(nodes)
    old_values = schedule_values(nodes, grammar)
    for _ in range(SCHEDULE_TRIES):
        new, how = _schedule_step(nodes, grammar, rnd)
        if schedule_ops_depth(new) > max_ops or _text(new) == old_text:
            continue
        values = schedule_values(new, grammar)
        if (
            valid_schedule(values)
            and float(np.linalg.norm(values - old_values)) > MIN_SCHEDULE_CHANGE
        ):
            return new, how
    return None


# ---------------------------------------------------------------------------- driver

_NODE_KINDS: dict[str, Callable[[Candidate, random.Random, int], Result]] = {
    "op": _mutate_op,
    "connection": _mutate_connection,
    "arity": _mutate_arity,
    "decay": _mutate_decay,
}
_GENE_KINDS: dict[str, Callable[[Candidate, random.Random], Result]] = {
    "momentum": _mutate_momentum,
    "lr_schedule": _mutate_lr,
}


def _apply(parent: Candidate, kind: str, rnd: random.Random) -> Result:
    if kind in _GENE_KINDS:
        return _GENE_KINDS[kind](parent, rnd)
    op_nodes = [i for i, n in enumerate(parent.update) if _is_op(n)]
    if not op_nodes:
        return _insert_unary(parent, rnd, " (the update had no op)")
    return _NODE_KINDS[kind](parent, rnd, rnd.choice(op_nodes))


def mutate_candidate(
    parent: Candidate, rnd: random.Random, *, kinds: Mapping[str, float] | None = None
) -> Mutation:
    """Exactly one mutation of ``parent`` (see the module docstring).

    The kind is drawn with the grammar's probabilities (or ``kinds``, e.g. ``{"decay": 1}``
    to force one kind); draws that give the parent's text or break the limits are retried
    with the same kind, and a kind that fails ``TRIES_PER_KIND`` times is dropped for this
    parent.

    Raises:
      MutationError: when no kind can produce a new candidate within the limits.
    """
    grammar = parent.grammar
    probs = grammar.mutation if kinds is None else kinds
    unknown = set(probs) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown mutation kind(s): {', '.join(sorted(unknown))}")
    left = {k: p for k, p in probs.items() if p > 0}
    while left:
        names = list(left)
        kind = rnd.choices(names, weights=[left[k] for k in names])[0]
        for _ in range(TRIES_PER_KIND):
            result = _apply(parent, kind, rnd)
            if result is None:
                continue
            child, done, detail = result
            if child.text != parent.text and child.within_limits():
                return Mutation(child, done, detail)
        del left[kind]
    raise MutationError(
        f"no mutation of {parent.text!r} gives a new candidate within the "
        f"limits of grammar {grammar.name}"
    )
