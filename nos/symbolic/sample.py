"""Random candidates: the reference's DAG initialization and a weighted typed grow generator.

:func:`sample_candidate` draws one candidate of a grammar that is within the grammar's limits
by construction. It does not run the integrity check: the caller checks and resamples
(spec §2.10, step 4).

Two shapes, chosen by ``[sampling] method`` of the grammar:

``dag``
  The reference initialization (spec §2.10). Five hidden nodes and a root are drawn with the
  reference's probabilities (``[sampling]`` of ``morgan2024.toml``), every edge carries a
  decay with its probability, a candidate whose active sub-graph has a cycle is rejected, and
  the active sub-graph is flattened into a typed tree: identity nodes vanish, a hidden node
  read twice is copied (with the same decay schedules on its edges). Decay schedules follow
  the reference's 2-node construction (spec §2.6): a hidden decay node and a root, each unary
  (0.8) or binary (0.2); the decay identity op, which the grammar cannot name, is drawn like
  one more unary op (w.p. 1/(n+1), ``decay_identity`` overrides it) and vanishes.

``grow``
  A weighted typed grow generator for other grammars. Parameters of ``[sampling]``:
  ``min_depth`` (2), ``max_depth`` (min(4, limit)), ``terminal_prob`` (0.3, chance of an
  operand once ``min_depth`` is reached), ``decay_prob`` (0.1, chance that an op's argument
  is wrapped in a decay), ``schedule_terminal_prob`` (0.4, chance of a base inside a
  schedule).

Both shapes draw ops and operands with the grammar's weights, the momentum gene from the
grammar's weighted modes, and, when the grammar has an LR-schedule gene, the LR multiplier:
``None`` (the constant 1) w.p. ``lr_none`` (0.5), else a grown schedule of at most
``lr_max_depth`` ops.

Every schedule (decay or LR) must stay within [0, 1] on T = 100 steps, t = 0..99 (spec §2.6);
construction repeats until it does. Unlike the reference, non-finite values are rejected too.
The check evaluates the schedule with numpy, op by op, from the sympy definitions of
:mod:`nos.symbolic.ops` (compiled once per op), so a check costs tens of microseconds.

All randomness comes from the ``random.Random`` passed in; DEAP's own generators (which use
the module-level ``random`` and ignore weights) are not used.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import sympy
from deap import gp

from nos.errors import GrammarError
from nos.symbolic import ops
from nos.symbolic.emit import NumpyRuntime
from nos.symbolic.genome import Candidate, Momentum
from nos.symbolic.grammar import SCHED_PREFIX, SCHEDULE_STEPS, Grammar, OpEntry, base_values

__all__ = [
    "SCHEDULE_STEPS",
    "Node",
    "random_schedule",
    "sample_candidate",
    "sample_lr",
    "sample_schedule",
    "schedule_ops_depth",
    "schedule_values",
    "valid_schedule",
    "weighted_pick",
    "weighted_pick_one",
]

Node: TypeAlias = gp.Primitive | gp.Terminal

#: Attempts before giving up on a grammar whose limits cannot be met.
MAX_ATTEMPTS = 10_000

_DAG_DEFAULTS: dict[str, float] = {
    "hidden_nodes": 5,
    "hidden_unary": 0.75,
    "root_unary": 0.25,
    "identity": 0.2,
    "hidden_input": 0.2,
    "decay_edge": 0.15,
    "decay_unary_root": 0.85,
    "decay_hidden_unary": 0.8,
    "decay_root_unary": 0.8,
    "decay_root_hidden": 0.2,
}


# ---------------------------------------------------------------------------- helpers


def weighted_pick(
    rnd: random.Random, table: Mapping[str, OpEntry], exclude: Sequence[str] = ()
) -> str | None:
    """A name of ``table`` drawn by weight, skipping ``exclude``; ``None`` when none is left."""
    names = [n for n in table if n not in exclude]
    if not names:
        return None
    if len(names) == 1:
        return names[0]
    return rnd.choices(names, weights=[table[n].weight for n in names])[0]


def weighted_pick_one(
    rnd: random.Random, table: Mapping[str, OpEntry], exclude: Sequence[str] = ()
) -> str:
    """:func:`weighted_pick` where the caller has made sure that a name is left."""
    name = weighted_pick(rnd, table, exclude)
    if name is None:
        raise GrammarError("nothing left to draw: the grammar's table is empty")
    return name


def _param(grammar: Grammar, key: str, default: float) -> float:
    value = grammar.sampling.get(key, default)
    return float(value)


def _tensor(grammar: Grammar, name: str) -> Node:
    return grammar.pset.mapping[name]


def _sched(grammar: Grammar, name: str) -> Node:
    return grammar.pset.mapping[SCHED_PREFIX + name]


def _base(grammar: Grammar, name: str) -> Node:
    return grammar.pset.mapping[name]


# ------------------------------------------------------------------- schedule numerics


# The numpy runtime of the emitter supplies the special functions, so that schedules are
# judged by the same numerics that training uses.
_NUMPY_FUNCS: dict[str, Callable[..., Any]] = {
    name: getattr(NumpyRuntime, name) for name in ("sigmoid", "i1e", "erf", "erfc")
}


@functools.cache
def _op_function(name: str) -> Callable[..., np.ndarray]:
    """A numpy function of one schedule op, compiled from its sympy definition."""
    spec = ops.OPS[name]
    args = sympy.symbols(f"x0:{spec.arity}", real=True)
    # lambdify compiles our own op table (never user text)
    fn: Callable[..., np.ndarray] = sympy.lambdify(
        args, spec.build(*args), modules=[_NUMPY_FUNCS, "numpy"]
    )
    return fn


def schedule_values(nodes: Sequence[Node], grammar: Grammar) -> np.ndarray:
    """Values of a schedule tree (prefix node list) at t = 0..99 of T = 100."""
    stack: list[np.ndarray] = []
    with np.errstate(all="ignore"):
        for node in reversed(nodes):
            if isinstance(node, gp.Terminal):
                stack.append(base_values(node.name, grammar.decay_bases[node.name].scale))
                continue
            args = [stack.pop() for _ in range(node.arity)]
            stack.append(
                np.asarray(_op_function(node.name[len(SCHED_PREFIX) :])(*args), dtype=float)
            )
    (values,) = stack
    return np.broadcast_to(values, (SCHEDULE_STEPS,))


def valid_schedule(values: np.ndarray) -> bool:
    """Finite and within [0, 1] at every step (spec §2.6)."""
    return bool(np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 1)


def schedule_ops_depth(nodes: Sequence[Node]) -> int:
    """Schedule ops on the longest root-to-leaf path (a lone base has 0)."""
    stack = [0]
    best = 0
    for node in nodes:
        depth = stack.pop() + (1 if isinstance(node, gp.Primitive) else 0)
        best = max(best, depth)
        stack.extend([depth] * node.arity)
    return best


# ------------------------------------------------------------------- schedule sampling


def _decay_unary_or_identity(grammar: Grammar, rnd: random.Random) -> str | None:
    """A decay unary op, or ``None`` for the reference's identity (spec §2.6, id 12)."""
    p_id = _param(grammar, "decay_identity", 1 / (len(grammar.decay_unary) + 1))
    if not grammar.decay_unary or rnd.random() < p_id:
        return None
    return weighted_pick(rnd, grammar.decay_unary)


def _reference_schedule(grammar: Grammar, rnd: random.Random) -> list[Node]:
    """One draw of the reference's 2-node DecaySchedule (spec §2.6), flattened."""
    bases = grammar.decay_bases
    hidden_unary = _param(grammar, "decay_hidden_unary", 0.8)
    root_unary = _param(grammar, "decay_root_unary", 0.8)
    root_hidden = _param(grammar, "decay_root_hidden", 0.2)

    def base() -> list[Node]:
        return [_base(grammar, weighted_pick_one(rnd, bases))]

    def unary(op: str | None, arg: list[Node]) -> list[Node]:
        return arg if op is None else [_sched(grammar, op), *arg]

    def binary(arg0: list[Node], arg1: list[Node]) -> list[Node]:
        return [_sched(grammar, weighted_pick_one(rnd, grammar.decay_binary)), *arg0, *arg1]

    # The hidden decay node; it only shows up if the root reads it.
    if not grammar.decay_binary or len(bases) < 2 or rnd.random() < hidden_unary:
        hidden = unary(_decay_unary_or_identity(grammar, rnd), base())
    else:
        b0 = weighted_pick_one(rnd, bases)
        b1 = weighted_pick_one(rnd, bases, exclude=[b0])
        hidden = binary([_base(grammar, b0)], [_base(grammar, b1)])

    # "uniform over the bases and the hidden node": the hidden node counts as one more base
    p_hidden_slot = 1 / (len(bases) + 1)
    if not grammar.decay_binary or rnd.random() < root_unary:
        arg = hidden if rnd.random() < root_hidden or rnd.random() < p_hidden_slot else base()
        return unary(_decay_unary_or_identity(grammar, rnd), arg)
    if rnd.random() < root_hidden:
        other = base()
        return binary(hidden, other) if rnd.random() < 0.5 else binary(other, hidden)
    if rnd.random() < p_hidden_slot:
        return binary(hidden, base())
    b0 = weighted_pick_one(rnd, bases)
    b1 = weighted_pick(rnd, bases, exclude=[b0]) or b0
    return binary([_base(grammar, b0)], [_base(grammar, b1)])


def _grow_schedule(grammar: Grammar, rnd: random.Random, max_ops: int) -> list[Node]:
    """A weighted grow schedule with at most ``max_ops`` ops on any path."""
    p_term = _param(grammar, "schedule_terminal_prob", 0.4)
    table = {**grammar.decay_unary, **grammar.decay_binary}
    out: list[Node] = []

    def grow(budget: int) -> None:
        if budget <= 0 or not table or rnd.random() < p_term:
            out.append(_base(grammar, weighted_pick_one(rnd, grammar.decay_bases)))
            return
        op = _sched(grammar, weighted_pick_one(rnd, table))
        out.append(op)
        for _ in range(op.arity):
            grow(budget - 1)

    grow(max_ops)
    return out


def random_schedule(
    grammar: Grammar, rnd: random.Random, max_ops: int | None = None, *, shape: str | None = None
) -> list[Node]:
    """A valid schedule (prefix node list): within [0, 1] and at most ``max_ops`` deep.

    ``shape`` is ``"dag"`` (the reference construction) or ``"grow"``; by default the
    grammar's sampling method. ``max_ops`` defaults to the grammar's ``decay_depth``.
    """
    if max_ops is None:
        max_ops = grammar.decay_depth
    if shape is None:
        shape = grammar.sampling.get("method", "grow")
    for _ in range(MAX_ATTEMPTS):
        if shape == "dag" and max_ops >= 1:
            nodes = _reference_schedule(grammar, rnd)
            if schedule_ops_depth(nodes) > max_ops:
                continue
        else:
            nodes = _grow_schedule(grammar, rnd, max_ops)
        if valid_schedule(schedule_values(nodes, grammar)):
            return nodes
    raise GrammarError("cannot draw a decay schedule within [0, 1]", path=grammar.path)


def sample_schedule(
    grammar: Grammar, rnd: random.Random, max_ops: int | None = None
) -> gp.PrimitiveTree:
    """:func:`random_schedule` as a DEAP tree."""
    return gp.PrimitiveTree(random_schedule(grammar, rnd, max_ops))


def sample_lr(
    grammar: Grammar, rnd: random.Random, *, allow_none: bool = True
) -> gp.PrimitiveTree | None:
    """The LR-schedule gene: ``None`` (constant 1) w.p. ``lr_none``, else a grown schedule."""
    if not grammar.lr_enabled:
        return None
    if allow_none and rnd.random() < _param(grammar, "lr_none", 0.5):
        return None
    return gp.PrimitiveTree(random_schedule(grammar, rnd, grammar.lr_max_depth, shape="grow"))


def _momentum(grammar: Grammar, rnd: random.Random) -> Momentum:
    modes = list(grammar.momentum)
    return Momentum(rnd.choices(modes, weights=[grammar.momentum[m] for m in modes])[0])


# ------------------------------------------------------------------------- dag shape


@dataclass
class _DagNode:
    """A hidden node or the root. Inputs are operand names (str) or hidden indices (int)."""

    op: str | None  # None: identity
    inputs: list[str | int]
    decayed: list[bool]
    schedules: dict[int, list[Node]] = field(default_factory=dict)


class _TooLarge(Exception):
    pass


def _sample_dag(grammar: Grammar, rnd: random.Random) -> list[_DagNode]:
    """Hidden nodes 0..H-1 and the root (last), with the reference's probabilities."""
    p = {k: _param(grammar, k, v) for k, v in _DAG_DEFAULTS.items()}
    n_hidden = int(p["hidden_nodes"])
    has_decay = grammar.decay is not None

    def operand(exclude: Sequence[str] = ()) -> str:
        return weighted_pick(rnd, grammar.operands, exclude) or weighted_pick_one(
            rnd, grammar.operands
        )

    def unary_op() -> str | None:
        if rnd.random() < p["identity"]:
            return None
        return weighted_pick(rnd, grammar.unary)

    def other_hidden(exclude: Sequence[int]) -> int | None:
        choices = [h for h in range(n_hidden) if h not in exclude]
        return rnd.choice(choices) if choices else None

    nodes: list[_DagNode] = []
    for i in range(n_hidden):
        binary = bool(grammar.binary) and not (grammar.unary and rnd.random() < p["hidden_unary"])
        op = weighted_pick(rnd, grammar.binary) if binary else unary_op()
        first: str | int | None = None
        if rnd.random() < p["hidden_input"]:
            first = other_hidden([i])
        if first is None:
            first = operand()
        inputs: list[str | int] = [first]
        if binary:
            second: str | int | None = None
            if rnd.random() < p["hidden_input"]:
                # With a hidden first input the reference excludes the wrong index, so a
                # self-loop can be drawn here; the cycle check rejects it (spec §2.10).
                second = other_hidden([i] if isinstance(first, str) else [first])
            if second is None:
                second = operand([first] if isinstance(first, str) else [])
            inputs.append(second)
        decayed = [has_decay and rnd.random() < p["decay_edge"] for _ in inputs]
        nodes.append(_DagNode(op, inputs, decayed))

    root_binary = bool(grammar.binary) and not (grammar.unary and rnd.random() < p["root_unary"])
    if not root_binary:
        op = unary_op()
        inputs = [rnd.randrange(n_hidden) if n_hidden else operand()]
        decayed = [has_decay and rnd.random() < p["decay_unary_root"]]
    else:
        op = weighted_pick(rnd, grammar.binary)
        first = (
            operand()
            if not n_hidden or rnd.random() >= p["hidden_input"]
            else rnd.randrange(n_hidden)
        )
        if isinstance(first, str):
            second = rnd.randrange(n_hidden) if n_hidden else operand([first])
        elif rnd.random() >= p["hidden_input"]:
            second = operand()
        else:
            second = other_hidden([first])
            if second is None:
                second = operand()
        inputs = [first, second]
        decayed = [has_decay and rnd.random() < p["decay_edge"] for _ in inputs]
    nodes.append(_DagNode(op, inputs, decayed))
    return nodes


def _flatten_dag(dag: list[_DagNode], grammar: Grammar, rnd: random.Random) -> list[Node] | None:
    """Prefix node list of the root's active sub-graph; ``None`` if it has a cycle."""
    out: list[Node] = []
    on_path: set[int] = set()
    decay = _tensor(grammar, "decay") if grammar.decay is not None else None

    def emit(index: int) -> bool:
        if index in on_path:
            return False
        on_path.add(index)
        node = dag[index]
        if node.op is not None:
            out.append(_tensor(grammar, node.op))
        for k, source in enumerate(node.inputs):
            if node.decayed[k]:
                # one schedule per edge, shared by every copy of the node
                if k not in node.schedules:
                    node.schedules[k] = random_schedule(grammar, rnd)
                out.append(decay)
                out.extend(node.schedules[k])
            if isinstance(source, str):
                out.append(_tensor(grammar, source))
            elif not emit(source):
                return False
            if len(out) > grammar.max_nodes:
                raise _TooLarge
        on_path.discard(index)
        return True

    try:
        return out if emit(len(dag) - 1) else None
    except _TooLarge:
        return None


# ------------------------------------------------------------------------ grow shape


def _grow_update(grammar: Grammar, rnd: random.Random) -> list[Node]:
    min_depth = int(_param(grammar, "min_depth", 2))
    max_depth = int(_param(grammar, "max_depth", min(4, grammar.max_depth)))
    p_term = _param(grammar, "terminal_prob", 0.3)
    p_decay = _param(grammar, "decay_prob", 0.1) if grammar.decay is not None else 0.0
    table = {**grammar.unary, **grammar.binary}
    decay = _tensor(grammar, "decay") if grammar.decay is not None else None
    out: list[Node] = []

    def grow(depth: int) -> None:
        if not table or depth >= max_depth or (depth >= min_depth and rnd.random() < p_term):
            out.append(_tensor(grammar, weighted_pick_one(rnd, grammar.operands)))
            return
        op = _tensor(grammar, weighted_pick_one(rnd, table))
        out.append(op)
        for _ in range(op.arity):
            if p_decay and rnd.random() < p_decay:
                out.append(decay)
                out.extend(random_schedule(grammar, rnd))
            grow(depth + 1)

    grow(1)
    return out


# -------------------------------------------------------------------------- candidates


def sample_candidate(grammar: Grammar, rnd: random.Random) -> Candidate:
    """One random candidate of ``grammar`` within its limits (see the module docstring).

    Raises:
      GrammarError: when no candidate within the limits is found in ``MAX_ATTEMPTS`` draws.
    """
    method = grammar.sampling.get("method", "grow")
    for _ in range(MAX_ATTEMPTS):
        if method == "dag":
            update = _flatten_dag(_sample_dag(grammar, rnd), grammar, rnd)
            if update is None:  # cyclic active sub-graph or too large: resample (spec §2.10)
                continue
        else:
            update = _grow_update(grammar, rnd)
        momentum = _momentum(grammar, rnd)
        lr = sample_lr(grammar, rnd)
        candidate = Candidate(gp.PrimitiveTree(update), momentum, grammar, lr)
        if candidate.within_limits():
            return candidate
    raise GrammarError(
        f"no candidate within the limits after {MAX_ATTEMPTS} draws", path=grammar.path
    )
