"""The emitter's numpy functions against hand computations of the op table (spec §2.2-§2.7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

from nos.symbolic.emit import NumpyRuntime, compile_candidate, emit_source
from nos.symbolic.grammar import load_grammar, parse_grammar
from nos.symbolic.text import parse_canonical

EPS = 1e-7
T = 35


def run(cand, gs, ws=None, taus=None, inv_t=1 / T, seed=0):
    """Outputs of the emitted update over the given gradient sequence."""
    c = compile_candidate(cand)
    rt = NumpyRuntime(np.random.default_rng(seed))
    ws = ws if ws is not None else [np.zeros_like(gs[0])] * len(gs)
    taus = taus if taus is not None else [t / T for t in range(len(gs))]
    state = c.init_state(gs[0], rt)
    out = []
    with np.errstate(all="ignore"):
        for t, (g, w, tau) in enumerate(zip(gs, ws, taus, strict=True)):
            out.append(np.array(c.update(g, w, state, t, tau, inv_t, rt)))
    return out


@pytest.fixture(scope="module")
def grammar():
    return load_grammar("morgan2024")


@pytest.fixture(scope="module")
def lr_grammar():
    text = load_grammar("morgan2024").text.replace("enabled = false", "enabled = true")
    return parse_grammar(text)


@pytest.fixture
def data():
    rng = np.random.default_rng(42)
    g = rng.normal(size=(3, 6)) * 2
    w = rng.normal(size=(3, 6))
    return g, w


STATELESS = [
    ("g", lambda g, w: g),
    ("neg(g)", lambda g, w: -g),
    ("plog(g)", lambda g, w: np.log(np.abs(g) + EPS)),
    ("sqrt_abs(g)", lambda g, w: np.sqrt(np.abs(g))),
    ("exp(g)", lambda g, w: np.exp(g)),
    ("sigmoid(g)", lambda g, w: 1 / (1 + np.exp(-g))),
    ("deriv_soft(g)", lambda g, w: 1 / (1 + np.abs(g))),
    ("softplus(g)", lambda g, w: np.log(np.abs(1 + np.exp(g)) + EPS)),
    ("erf(g)", lambda g, w: scipy.special.erf(g)),
    ("erfc(g)", lambda g, w: scipy.special.erfc(g)),
    ("asinh(g)", lambda g, w: np.arcsinh(g)),
    ("tanh(g)", lambda g, w: np.tanh(g)),
    ("atan(g)", lambda g, w: np.arctan(g)),
    ("recip(g)", lambda g, w: 1 / (g + EPS)),
    ("i1e(g)", lambda g, w: np.exp(-np.abs(g)) * scipy.special.iv(1, g)),
    ("relu(g)", lambda g, w: np.maximum(g, 0)),
    ("min0(g)", lambda g, w: np.minimum(g, 0)),
    ("softsign(g)", lambda g, w: g / (1 + np.abs(g))),
    ("sign_g", lambda g, w: np.sign(g)),
    ("g3", lambda g, w: g**3),
    ("add(g, wd3)", lambda g, w: g + 1e-3 * w),
    ("sub(g2, wd6)", lambda g, w: g**2 - 1e-6 * w),
    ("max(g, wd4)", lambda g, w: np.maximum(g, 1e-4 * w)),
    ("min(g, two)", lambda g, w: np.minimum(g, 2.0)),
    ("div(g, wd5)", lambda g, w: g / (1e-5 * w + EPS)),
    ("div_sqrt(g, g2)", lambda g, w: g / np.sqrt(1 + g**4)),
    ("clip(g, wd3)", lambda g, w: np.clip(g, -np.abs(1e-3 * w), np.abs(1e-3 * w))),
    ("mix(g, one)", lambda g, w: 0.95 * g + 0.05),
    ("pow_abs(g, wd3)", lambda g, w: np.abs(g) ** (1e-3 * w)),
    ("pow_abs(g, neg(two))", lambda g, w: np.abs(g) ** -2.0),
    ("pow_abs(g, sigmoid(g))", lambda g, w: np.abs(g) ** (1 / (1 + np.exp(-g)))),
    ("sqrt_abs(exp(two))", lambda g, w: np.full_like(g, math.exp(1.0))),
    ("mul(g, max(sign_g, min0(g)))", lambda g, w: g * np.maximum(np.sign(g), np.minimum(g, 0))),
    ("clip_norm(g)", lambda g, w: g / np.maximum(1.0, np.linalg.norm(g, axis=-1, keepdims=True))),
    ("clip_norm(one)", lambda g, w: np.full_like(g, 1 / math.sqrt(g.shape[-1]))),
    ("one", lambda g, w: np.ones_like(g)),
]


@pytest.mark.parametrize("expr, expected", STATELESS, ids=[s for s, _ in STATELESS])
def test_stateless_ops_match_hand_computation(grammar, data, expr, expected):
    g, w = data
    (u,) = run(parse_canonical(f"none ~ {expr}", grammar), [g], [w])
    assert u.shape == g.shape
    np.testing.assert_allclose(u, expected(g, w), rtol=1e-12, atol=1e-300)


def test_clip_norm_acts_on_last_axis_only(grammar):
    g = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    (u,) = run(parse_canonical("none ~ clip_norm(g)", grammar), [g])
    np.testing.assert_allclose(u, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])


def test_moments_are_updated_before_use_and_bias_corrected(grammar, rng):
    gs = [rng.normal(size=(2, 4)) for _ in range(5)]
    cand = parse_canonical("none ~ add(add(v_hat, s_hat), lam_hat)", grammar)
    v = s = lam = 0.0
    for t, (g, u) in enumerate(zip(gs, run(cand, gs), strict=True)):
        v = 0.9 * v + 0.1 * g
        s = 0.99 * s + 0.01 * g**2
        lam = 0.999 * lam + 0.001 * g**3
        want = v / (1 - 0.9 ** (t + 1)) + s / (1 - 0.99 ** (t + 1)) + lam / (1 - 0.999 ** (t + 1))
        np.testing.assert_allclose(u, want, rtol=1e-10)


def test_aggmo_reads_the_raw_ema(grammar, rng):
    gs = [rng.normal(size=(4,)) for _ in range(3)]
    v = 0.0
    for g, u in zip(gs, run(parse_canonical("none ~ aggmo_v", grammar), gs), strict=True):
        v = 0.9 * v + 0.1 * g
        np.testing.assert_allclose(u, (0 + 0.9 + 0.999) / 3 * v - g, rtol=1e-12)


def test_stateful_ops(grammar, rng):
    gs = [rng.normal(size=(2, 5)) for _ in range(6)]
    n = 0.0
    for t, (g, u) in enumerate(
        zip(gs, run(parse_canonical("none ~ ema(g)", grammar), gs), strict=True)
    ):
        n = 0.95 * n + 0.05 * g
        np.testing.assert_allclose(u, n / (1 - 0.95 ** (t + 1)), rtol=1e-12)
    # delta alternates: n <- x - n_prev (the reference's deltaChange)
    prev = 0.0
    for g, u in zip(gs, run(parse_canonical("none ~ delta(g)", grammar), gs), strict=True):
        prev = g - prev
        np.testing.assert_allclose(u, prev, rtol=1e-12)
    # running max starts from 0
    best = np.zeros_like(gs[0])
    for g, u in zip(gs, run(parse_canonical("none ~ running_max(g)", grammar), gs), strict=True):
        best = np.maximum(g, best)
        np.testing.assert_allclose(u, best)
    assert (best >= 0).all()


def test_two_stateful_occurrences_keep_separate_state(grammar, rng):
    gs = [rng.normal(size=(3,)) for _ in range(4)]
    cand = parse_canonical("none ~ add(delta(g), delta(g2))", grammar)
    a = b = 0.0
    for g, u in zip(gs, run(cand, gs), strict=True):
        a, b = g - a, g**2 - b
        np.testing.assert_allclose(u, a + b, rtol=1e-12)


def _bases(tau: float, inv_t: float) -> dict[str, float]:
    """Spec §2.6 written out by hand, with t/T = tau."""
    c = math.cos
    r = (2 * tau) % 1.0
    bd = 0.95 * (1 - tau - inv_t)
    a13 = bd / (0.05 + bd)
    return {
        "a1": 1 - tau,
        "a2": tau,
        "a3": (1 + c(math.pi * tau)) / 2,
        "a4": (1 - c(math.pi * tau)) / 2,
        "a5": (1 + c(2 * math.pi * tau)) / 2,
        "a6": (1 - c(2 * math.pi * tau)) / 2,
        "a7": (1 + c(math.pi * r)) / 2,
        "a8": (1 - c(math.pi * r)) / 2,
        "a9": 1 - r,
        "a10": r,
        "a11": 0.01**tau,
        "a12": 1 - 0.01**tau,
        "a13": a13,
        "a14": 0.95 - a13,
    }


@pytest.mark.parametrize("base", [f"a{i}" for i in range(1, 15)])
def test_decay_bases(grammar, base):
    taus = [0.0, 0.3, 0.55, 0.8, 34 / 35]
    g = np.array([[1.0, -2.0, 0.5]])
    outs = run(parse_canonical(f"none ~ decay({base}, g)", grammar), [g] * len(taus), taus=taus)
    for tau, u in zip(taus, outs, strict=True):
        np.testing.assert_allclose(u, _bases(tau, 1 / T)[base] * g, rtol=1e-12, atol=1e-15)


def test_decay_schedule_ops_and_opt10(grammar):
    g = np.array([0.3, -1.2, 2.0])
    tau = 0.4
    b = _bases(tau, 1 / T)
    (u,) = run(
        parse_canonical("none ~ decay(deriv_tanh(min(a12, a9)), g)", grammar), [g], taus=[tau]
    )
    np.testing.assert_allclose(u, (1 - math.tanh(min(b["a12"], b["a9"])) ** 2) * g)
    (u,) = run(parse_canonical("nest ~ i1e(i1e(decay(mul(a13, a2), g)))", grammar), [g], taus=[tau])
    i1e = scipy.special.i1e
    np.testing.assert_allclose(u, i1e(i1e(b["a13"] * b["a2"] * g)), rtol=1e-12)


def test_lr_multiplier(lr_grammar):
    cand = parse_canonical("none ~ g ; lr = mul(a3, sigmoid(a9))", lr_grammar)
    c = compile_candidate(cand)
    for tau in (0.0, 0.2, 0.7):
        b = _bases(tau, 0.01)
        want = b["a3"] / (1 + math.exp(-b["a9"]))
        assert c.lr(tau, 0.01, NumpyRuntime()) == pytest.approx(want, rel=1e-12)
    frozen = compile_candidate(parse_canonical("none ~ g", lr_grammar))
    assert frozen.lr_is_one and frozen.lr(0.5, 0.01, NumpyRuntime()) == 1.0


def test_dropout_is_seeded_and_scaled(grammar):
    g = np.ones((200, 50))
    cand = parse_canonical("none ~ drop30(g)", grammar)
    (a,) = run(cand, [g], seed=7)
    (b,) = run(cand, [g], seed=7)
    (c,) = run(cand, [g], seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_allclose(np.unique(a), [0.0, 1 / 0.7])
    assert (a > 0).mean() == pytest.approx(0.7, abs=0.02)
    (d,) = run(parse_canonical("none ~ drop50(one)", grammar), [g])
    assert d.shape == g.shape and (d > 0).mean() == pytest.approx(0.5, abs=0.02)


def test_non_finite_constants_and_broadcasting(grammar):
    g = np.ones((2, 3))
    (u,) = run(parse_canonical("none ~ pow_abs(sub(g, g), neg(one))", grammar), [g])
    assert u.shape == g.shape and np.isposinf(u).all()


def test_batch_rows_are_independent(grammar, rng):
    cand = parse_canonical("mom ~ add(clip_norm(v_hat), ema(delta(g)))", grammar)
    gs = [rng.normal(size=(4, 5)) for _ in range(5)]
    batch = run(cand, gs)
    for row in range(4):
        single = run(cand, [g[row : row + 1] for g in gs])
        for b, s in zip(batch, single, strict=True):
            np.testing.assert_allclose(b[row : row + 1], s, rtol=1e-14)


def test_source_is_plain_and_shares_subexpressions(grammar):
    cand = parse_canonical("none ~ add(tanh(div(g, v_hat)), mul(tanh(div(g, v_hat)), g2))", grammar)
    src, slots = emit_source(cand.phenotype, describe=True)
    assert src.count("rt.tanh(") == 1  # the repeated sub-tree is computed once
    assert "import" not in src and "__" not in src
    assert slots == ()
    assert src.startswith("# update direction:")


def test_compiled_functions_are_cached_by_phenotype(grammar):
    a = compile_candidate(parse_canonical("none ~ add(g, g)", grammar))
    b = compile_candidate(parse_canonical("none ~ mul(two, g)", grammar))
    c = compile_candidate(parse_canonical("none ~ g", grammar))
    assert a is b and a is not c
