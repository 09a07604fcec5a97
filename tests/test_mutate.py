"""Mutation (nos.symbolic.mutate): one mutation per child with the kinds and rates of spec §4.4."""

from __future__ import annotations

import collections
import random

import pytest

from nos.symbolic.grammar import load_grammar, parse_grammar
from nos.symbolic.mutate import KINDS, Mutation, MutationError, mutate_candidate, mutate_schedule
from nos.symbolic.sample import (
    random_schedule,
    sample_candidate,
    schedule_ops_depth,
    schedule_values,
    valid_schedule,
)
from nos.symbolic.text import parse_canonical

GRAMMARS = ("morgan2024", "bello2017", "tiny")
SEEDS = 200


def _parents(name: str, n: int = SEEDS, seed0: int = 0):
    g = load_grammar(name)
    return [sample_candidate(g, random.Random(seed0 + s)) for s in range(n)]


@pytest.mark.parametrize("name", GRAMMARS)
def test_every_kind_gives_a_new_child_within_limits(name):
    g = load_grammar(name)
    kinds = [k for k, p in g.mutation.items() if p > 0]
    details: dict[str, set[str]] = collections.defaultdict(set)
    for seed, parent in enumerate(_parents(name)):
        before = list(parent.update), parent.text
        for kind in kinds:
            m = mutate_candidate(parent, random.Random(seed), kinds={kind: 1.0})
            assert isinstance(m, Mutation)
            child = m.child
            assert child.text != parent.text
            assert child.within_limits(), child.text
            # only grammar ops: the canonical reader rejects anything outside the grammar
            assert parse_canonical(child.text, g) == child
            assert m.detail
            has_ops = any(
                n.arity and n.name != "decay" and n.ret.__name__ == "Tensor" for n in parent.update
            )
            assert m.kind == kind or (m.kind == "op" and not has_ops)
            details[m.kind].add(m.detail.split(" ")[0])
        assert (list(parent.update), parent.text) == before  # the parent is untouched
    # every sub-case of the node kinds shows up over 200 parents
    assert {"insert"} <= details["op"]
    assert any("identity" in d for d in _all_details(name, "op"))
    if "decay" in kinds:
        assert {"add", "remove"} <= details["decay"]
        if g.decay_depth > 0:
            assert any("->" in d for d in _all_details(name, "decay"))
    assert {"swap", "argument"} <= details["connection"]


def _all_details(name: str, kind: str) -> list[str]:
    return [
        mutate_candidate(p, random.Random(s), kinds={kind: 1.0}).detail
        for s, p in enumerate(_parents(name, 100))
    ]


@pytest.mark.parametrize("name", GRAMMARS)
def test_kind_frequencies_match_the_grammar(name):
    g = load_grammar(name)
    probs = {k: p for k, p in g.mutation.items() if p > 0}
    total = sum(probs.values())
    rnd = random.Random(1)
    parents = _parents(name, 300, seed0=1000)
    counts: collections.Counter[str] = collections.Counter()
    n = 4000
    for i in range(n):
        counts[mutate_candidate(parents[i % len(parents)], rnd).kind] += 1
    assert set(counts) <= set(probs)
    for kind, p in probs.items():
        # 4000 draws: one standard error is at most 0.008
        assert abs(counts[kind] / n - p / total) < 0.035, (kind, counts)


def test_mutation_is_seeded():
    parent = _parents("morgan2024", 1)[0]
    rnd = random.Random(5)
    state = rnd.getstate()
    first = [mutate_candidate(parent, rnd).child.text for _ in range(50)]
    rnd.setstate(state)
    assert [mutate_candidate(parent, rnd).child.text for _ in range(50)] == first
    random.seed(3)
    before = random.getstate()
    mutate_candidate(parent, random.Random(0))
    assert random.getstate() == before


def test_lone_operand_gets_an_op():
    g = load_grammar("morgan2024")
    parent = parse_canonical("nest ~ g", g)
    for seed in range(20):
        m = mutate_candidate(parent, random.Random(seed), kinds={"connection": 1.0})
        assert m.kind == "op" and m.detail.startswith("insert")
        assert m.child.text.endswith("(g)")


def test_top_level_decay_is_editable():
    g = load_grammar("morgan2024")
    parent = parse_canonical("none ~ decay(a1, neg(g))", g)
    texts = {
        mutate_candidate(parent, random.Random(s), kinds={"decay": 1.0}).child.text
        for s in range(100)
    }
    assert "none ~ neg(g)" in texts  # the decay above the root was removed
    assert any(t.startswith("none ~ decay(a1, neg(decay(") for t in texts)


def test_momentum_switches_mode():
    parent = parse_canonical("mom ~ g", load_grammar("morgan2024"))
    modes = {
        mutate_candidate(parent, random.Random(s), kinds={"momentum": 1.0}).child.momentum.value
        for s in range(40)
    }
    assert modes == {"none", "nest"}


def test_arity_switch_keeps_the_input():
    g = load_grammar("tiny")
    parent = parse_canonical("none ~ neg(v_hat)", g)
    for s in range(30):
        m = mutate_candidate(parent, random.Random(s), kinds={"arity": 1.0})
        assert m.child.update[0].arity == 2
        assert "v_hat" in m.child.text
    parent = parse_canonical("none ~ add(g, s_hat)", g)
    texts = {
        mutate_candidate(parent, random.Random(s), kinds={"arity": 1.0}).child.text.split("(", 1)[1]
        for s in range(60)
    }
    assert texts == {"g)", "s_hat)"}


def test_lr_schedule_kind():
    g = load_grammar("tiny")
    bare = parse_canonical("none ~ neg(g)", g)
    m = mutate_candidate(bare, random.Random(0), kinds={"lr_schedule": 1.0})
    assert m.child.lr is not None and m.kind == "lr_schedule"
    with_lr = parse_canonical("none ~ neg(g) ; lr = square(a1)", g)
    seen = collections.Counter()
    for s in range(200):
        child = mutate_candidate(with_lr, random.Random(s), kinds={"lr_schedule": 1.0}).child
        seen["removed" if child.lr is None else "changed"] += 1
        if child.lr is not None:
            assert valid_schedule(schedule_values(list(child.lr), g))
    assert 0.15 < seen["removed"] / 200 < 0.35


def test_schedule_mutation_valid_and_new():
    g = load_grammar("morgan2024")
    rnd = random.Random(4)
    for _ in range(300):
        old = random_schedule(g, rnd)
        result = mutate_schedule(old, g, rnd, g.decay_depth)
        if result is None:
            continue
        new, how = result
        assert how
        assert schedule_ops_depth(new) <= g.decay_depth
        assert valid_schedule(schedule_values(new, g))
        assert new != old


def test_impossible_mutation_raises():
    g = parse_grammar(
        'name = "t"\n[momentum]\nnone = 1\n[mutation]\nop = 0\nconnection = 0\n'
        "arity = 0\ndecay = 0\nmomentum = 1\n[operands]\ng = {}\n[unary]\n"
        "neg = {}\n"
    )
    parent = parse_canonical("neg(g)", g)
    with pytest.raises(MutationError):
        mutate_candidate(parent, random.Random(0))
    with pytest.raises(ValueError, match="unknown mutation kind"):
        mutate_candidate(parent, random.Random(0), kinds={"crossover": 1.0})
    assert set(KINDS) == set(g.mutation)
