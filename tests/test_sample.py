"""Random sampling (nos.symbolic.sample): round trips, limits, determinism and the DAG statistics.

The DAG statistics are compared with what the reference's initialization implies
(paper-spec §2.5, §2.6, §2.10).
"""

from __future__ import annotations

import collections
import random

import mpmath
import numpy as np
import pytest
import sympy
from deap import gp

from nos.errors import GrammarError
from nos.symbolic import ops, sample
from nos.symbolic.genome import Candidate
from nos.symbolic.grammar import Grammar, Schedule, load_grammar, parse_grammar
from nos.symbolic.phenotype import tree_to_sympy
from nos.symbolic.sample import (
    random_schedule,
    sample_candidate,
    schedule_ops_depth,
    schedule_values,
    valid_schedule,
)
from nos.symbolic.text import parse_canonical

GRAMMARS = ("morgan2024", "bello2017", "tiny")
N = 10_000


@pytest.fixture(scope="module")
def samples() -> dict[str, list[Candidate]]:
    """10,000 candidates per grammar, drawn once for the whole module."""
    out = {}
    for name in GRAMMARS:
        rnd = random.Random(2024)
        g = load_grammar(name)
        out[name] = [sample_candidate(g, rnd) for _ in range(N)]
    return out


def _decays(c: Candidate) -> list[list]:
    """The schedule node lists of every decay in the update."""
    nodes = list(c.update)
    return [nodes[c.update.searchSubtree(i + 1)] for i, n in enumerate(nodes) if n.name == "decay"]


@pytest.mark.parametrize("name", GRAMMARS)
def test_round_trip_and_limits(samples, name):
    g = load_grammar(name)
    for c in samples[name]:
        assert c.within_limits(), c.text
        back = parse_canonical(str(c), g)
        assert back == c
        assert list(back.update) == list(c.update)  # same nodes, not just the same text
        assert (back.lr is None) == (c.lr is None)


@pytest.mark.parametrize("name", GRAMMARS)
def test_schedules_valid(samples, name):
    g = load_grammar(name)
    for c in samples[name][:2000]:
        for sched in _decays(c):
            assert schedule_ops_depth(sched) <= g.decay_depth
            assert valid_schedule(schedule_values(sched, g)), c.text
        if c.lr is not None:
            assert valid_schedule(schedule_values(list(c.lr), g)), c.text


@pytest.mark.parametrize("name", GRAMMARS)
def test_seeded_determinism(name):
    g = load_grammar(name)
    a = [sample_candidate(g, random.Random(7)).text for _ in range(3)]
    assert len(set(a)) == 1
    rnd = random.Random(11)
    state = rnd.getstate()
    first = [sample_candidate(g, rnd).text for _ in range(200)]
    rnd.setstate(state)
    again = [sample_candidate(g, rnd).text for _ in range(200)]
    assert first == again
    other = [sample_candidate(g, random.Random(12)).text for _ in range(200)]
    assert other != first


def test_global_random_untouched():
    g = load_grammar("morgan2024")
    random.seed(99)
    before = random.getstate()
    for name in GRAMMARS:
        rnd = random.Random(1)
        for _ in range(50):
            sample_candidate(load_grammar(name), rnd)
    assert random.getstate() == before
    assert g.sampling["method"] == "dag"


def _top_arity(c: Candidate) -> int:
    """Arity of the first tensor node below any decays at the top of the update."""
    for node in c.update:
        if node.name == "decay" or node.ret is Schedule:
            continue
        return node.arity
    raise AssertionError("no tensor node")


def test_dag_statistics(samples):
    cands = samples["morgan2024"]
    # momentum uniform over None/Mom/Nest (spec §2.10 step 3)
    counts = collections.Counter(c.momentum.value for c in cands)
    for mode in ("none", "mom", "nest"):
        assert abs(counts[mode] / N - 1 / 3) < 0.025, counts
    # Root binary w.p. 0.75; an identity root (0.25 * 0.2) passes its hidden node up, which
    # is binary w.p. 0.25 itself, so the flattened top is binary a little more often.
    top = collections.Counter(_top_arity(c) for c in cands)
    assert 0.74 < top[2] / N < 0.79, top
    # Decays: the root edges alone give 0.25 * 0.85 + 0.75 * (1 - 0.85**2) = 0.42; the
    # active hidden edges (0.15 each) add roughly another 0.1.
    share = sum(bool(_decays(c)) for c in cands) / N
    assert 0.50 < share < 0.60, share
    # stateful, dropout and clip ops appear: every unary op is reachable at creation
    used = {n.name for c in cands for n in c.update}
    assert set(load_grammar("morgan2024").unary) <= used


def test_dag_root_arity_before_flattening():
    g = load_grammar("morgan2024")
    rnd = random.Random(3)
    dags = [sample._sample_dag(g, rnd) for _ in range(10_000)]
    binary = sum(len(d[-1].inputs) == 2 for d in dags) / len(dags)
    assert abs(binary - 0.75) < 0.02
    hidden_binary = sum(len(n.inputs) == 2 for d in dags for n in d[:-1]) / (5 * len(dags))
    assert abs(hidden_binary - 0.25) < 0.01
    # a binary root always reads a hidden node (spec §2.10)
    assert all(any(isinstance(s, int) for s in d[-1].inputs) for d in dags)


def test_reference_schedule_shape():
    """Decay schedules: depth <= 2, binary roots about 0.2 of the draws before validity."""
    g = load_grammar("morgan2024")
    rnd = random.Random(5)
    scheds = [sample._reference_schedule(g, rnd) for _ in range(20_000)]
    assert max(schedule_ops_depth(s) for s in scheds) <= 2
    binary_root = sum(s[0].arity == 2 for s in scheds) / len(scheds)
    assert abs(binary_root - 0.2) < 0.015
    valid = [s for s in scheds if valid_schedule(schedule_values(s, g))]
    assert 0.3 < len(valid) / len(scheds) < 1


_MPMATH = {
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "i1e": lambda x: mpmath.exp(-abs(x)) * mpmath.besseli(1, x),
    "maximum": max,
    "minimum": min,
    "exp": mpmath.exp,
    "abs": abs,
    "sign": mpmath.sign,
    "tanh": mpmath.tanh,
    "atan": mpmath.atan,
    "asinh": mpmath.asinh,
    "erf": mpmath.erf,
    "erfc": mpmath.erfc,
}


def test_schedule_values_match_sympy():
    """The fast numpy evaluation agrees with an independent mpmath evaluation."""
    g = load_grammar("morgan2024")
    rnd = random.Random(8)
    tau, inv_t = ops.SYM["tau"], ops.INV_T
    t = np.arange(100) / 100
    for _ in range(40):
        nodes = random_schedule(g, rnd)
        expr = tree_to_sympy(gp.PrimitiveTree(nodes), g)
        expr = expr.subs({ops.SYM[b]: ops.BASES[b].expr for b in ops.BASES})
        fn = sympy.lambdify((tau, inv_t), expr, modules=[_MPMATH, "mpmath"])
        want = np.array([float(fn(x, 0.01)) for x in t])
        assert np.allclose(schedule_values(nodes, g), want, rtol=1e-9, atol=1e-12)


def test_lr_gene(samples):
    cands = samples["tiny"]
    share = sum(c.lr is not None for c in cands) / N
    assert abs(share - 0.5) < 0.03
    g = load_grammar("tiny")
    assert all(schedule_ops_depth(list(c.lr)) <= g.lr_max_depth for c in cands if c.lr)
    assert all(c.lr is None for c in samples["morgan2024"])


def test_grow_respects_parameters(samples):
    g = load_grammar("bello2017")
    cands = samples["bello2017"]
    assert min(c.depth for c in cands) >= 2  # min_depth = 2: never a lone operand
    # grow depth 4 plus a decay wrapper on each of at most 3 edges along a path
    assert max(c.depth for c in cands) <= g.max_depth
    weights = collections.Counter(
        n.name
        for c in samples["tiny"]
        for n in c.update
        if isinstance(n, gp.Terminal) and n.ret is not Schedule
    )
    # operand `one` has weight 0.5, the other three 1
    assert 0.35 < weights["one"] / weights["g"] < 0.65


def test_bello_signs_expressible():
    g = load_grammar("bello2017")
    for text in (
        "mul(exp(mul(sign_g, sign_v_hat)), g)",
        "mul(add(one, mul(sign_g, sign_v_hat)), g)",
    ):
        c = parse_canonical(text, g)
        assert c.within_limits()
        assert str(c) == f"none ~ {text}"


def _grammar(extra: str) -> Grammar:
    return parse_grammar('name = "t"\n[operands]\ng = {}\n[unary]\nneg = {}\n' + extra)


def test_impossible_limits_raise(monkeypatch):
    monkeypatch.setattr(sample, "MAX_ATTEMPTS", 50)
    g = _grammar(
        "[limits]\nmax_depth = 1\n[sampling]\nmin_depth = 2\nmax_depth = 3\n[mutation]\ndecay = 0\n"
    )
    with pytest.raises(GrammarError, match="no candidate within the limits"):
        sample_candidate(g, random.Random(0))
