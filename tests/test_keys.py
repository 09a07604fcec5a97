"""Canonical keys and behavioural fingerprints."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nos.symbolic.keys import canonical_key, fingerprint, quantize
from nos.symbolic.text import parse_canonical


@pytest.fixture(scope="module")
def g():
    from nos.symbolic.grammar import load_grammar

    return load_grammar("morgan2024")


def key(text, grammar):
    return canonical_key(parse_canonical(text, grammar))


def fp(text, grammar):
    return fingerprint(parse_canonical(text, grammar))


def test_trivially_equal_trees_share_a_key(g):
    keys = {
        key(t, g)
        for t in ("none ~ sub(g, neg(g))", "none ~ mul(two, g)", "none ~ add(g, g)", "none ~ g + g")
    }
    assert len(keys) == 1
    assert len(next(iter(keys))) == 16


def test_different_trees_and_genes_get_different_keys(g):
    texts = [
        "none ~ g",
        "none ~ mul(two, g)",
        "mom ~ mul(two, g)",
        "nest ~ mul(two, g)",
        "none ~ v_hat",
        "none ~ qhm_v",
        "none ~ decay(a2, g)",
        "none ~ decay(a1, g)",
    ]
    assert len({key(t, g) for t in texts}) == len(texts)


def test_fingerprint_equal_for_numerically_equal_trees(g):
    # sympy merges the first three; the last two agree only numerically
    same = ["none ~ sub(g, neg(g))", "none ~ mul(two, g)", "none ~ add(g, g)"]
    assert len({fp(t, g) for t in same}) == 1
    a = "none ~ mul(two, sigmoid(g))"
    b = "none ~ add(sigmoid(g), sub(one, sigmoid(neg(g))))"
    assert key(a, g) != key(b, g)
    assert fp(a, g) == fp(b, g)
    # max(g, 0) + min(g, 0) is g, which sympy does not see
    assert key("none ~ add(relu(g), min0(g))", g) != key("none ~ g", g)
    assert fp("none ~ add(relu(g), min0(g))", g) == fp("none ~ g", g)


def test_fingerprint_differs_for_different_behaviour(g):
    texts = [
        "none ~ g",
        "mom ~ g",
        "none ~ mul(two, g)",
        "none ~ v_hat",
        "none ~ sign_g",
        "none ~ decay(a2, g)",
        "none ~ decay(a3, g)",
        "none ~ add(g, wd6)",
    ]
    assert len({fp(t, g) for t in texts}) == len(texts)


def test_fingerprint_sees_the_lr_multiplier():
    from nos.symbolic.grammar import load_grammar, parse_grammar

    text = load_grammar("morgan2024").text.replace("enabled = false", "enabled = true")
    lr_g = parse_grammar(text)
    assert fp("none ~ g ; lr = a3", lr_g) != fp("none ~ g", lr_g)
    assert fp("none ~ g ; lr = a3", lr_g) != fp("none ~ g ; lr = a4", lr_g)


def test_fingerprint_is_nan_safe_and_stable(g):
    bad = "none ~ exp(exp(g3))"
    assert fp(bad, g) == fp(bad, g)
    assert fp(bad, g) != fp("none ~ exp(g3)", g)
    assert fp("none ~ drop50(g)", g) == fp("none ~ drop50(g)", g)


def test_quantize_rounds_and_codes_non_finite_values():
    assert quantize(np.array([1.0])) == quantize(np.array([1.0 + 1e-12]))
    assert quantize(np.array([1.0])) == quantize(np.array([1.0 - 1e-12]))  # carry case
    assert quantize(np.array([1.0])) != quantize(np.array([1.001]))
    assert quantize(np.array([0.0])) == quantize(np.array([-0.0])) == quantize(np.array([1e-15]))
    codes = {quantize(np.array([x])) for x in (np.nan, np.inf, -np.inf, 0.0)}
    assert len(codes) == 4


def test_keys_are_deterministic_across_processes(g):
    texts = ["nest ~ i1e(i1e(decay(mul(a13, a2), g)))", "mom ~ drop30(v_hat)"]
    here = [(key(t, g), fp(t, g)) for t in texts]
    code = (
        "from nos.symbolic.grammar import load_grammar\n"
        "from nos.symbolic.text import parse_canonical\n"
        "from nos.symbolic.keys import canonical_key, fingerprint\n"
        "g = load_grammar('morgan2024')\n"
        f"for t in {texts!r}:\n"
        "    c = parse_canonical(t, g)\n"
        "    print(canonical_key(c), fingerprint(c))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert [tuple(line.split()) for line in out.stdout.splitlines()] == here


@pytest.mark.parametrize(
    "u, minus_u",
    [
        ("none ~ min(sign_v_hat, sign_v_hat)", "none ~ neg(sign_v_hat)"),
        ("mom ~ g", "mom ~ neg(g)"),
        ("none ~ div(v_hat, sqrt_abs(s_hat))", "none ~ neg(div(v_hat, sqrt_abs(s_hat)))"),
    ],
)
def test_u_and_minus_u_share_a_fingerprint_under_the_checks_flip(g, u, minus_u):
    from nos.symbolic.check import check_candidate

    a, b = parse_canonical(u, g), parse_canonical(minus_u, g)
    ca, cb = check_candidate(a), check_candidate(b)
    assert ca.passed and cb.passed and ca.flip != cb.flip
    assert fingerprint(a, flip=ca.flip) == fingerprint(b, flip=cb.flip)
    # with the same sign they step in opposite directions: different functions
    assert fingerprint(a) != fingerprint(b)


def test_the_search_merges_u_and_minus_u(g):
    import collections

    from nos.search.config import SearchConfig
    from nos.search.engine import ParticleGA

    ga = ParticleGA(SearchConfig(), g)
    counts: collections.Counter[str] = collections.Counter()
    keys: set[str] = set()
    fps: set[str] = set()
    from nos.search.screening import screen

    u, minus_u = (
        parse_canonical("none ~ sign_v_hat", g),
        parse_canonical("none ~ neg(sign_v_hat)", g),
    )
    first = ga._admit(u, screen(u), counts, keys, fps)
    second = ga._admit(minus_u, screen(minus_u), counts, keys, fps)
    assert first is not None and second is None and counts["duplicate"] == 1
