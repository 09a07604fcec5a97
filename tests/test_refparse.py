"""The reference-format reader and printer (nos.reference.format)."""

from __future__ import annotations

import builtins
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from deap import gp

from nos.errors import CandidateError
from nos.reference.format import format_reference, parse_reference
from nos.symbolic.genome import MAX_TEXT, Momentum
from nos.symbolic.grammar import Grammar, parse_grammar
from nos.symbolic.text import parse_canonical
from nos.zoo.resolve import parse

# The four line shapes that carry a candidate string (see nos.reference.logs).
_STRING = [
    re.compile(r"Fun: (.*)$"),
    re.compile(r"INIT PARTICLE \d+/\d+ : (.*) : (?:val: \S+ - Time: \S+|FAILED)$"),
    re.compile(r"^INFO:root:    (\S.*) : FAILED$"),
    re.compile(r"^INFO:root:    (\S.*) val: \S+ - Time: \S+$"),
    re.compile(r"Chosen (.*) : \S+ - ACCUMULATIVE TIME: \S+$"),
]


@pytest.fixture(scope="module")
def log_strings(reference_log: Path) -> list[str]:
    found: set[str] = set()
    with open(reference_log, encoding="utf-8") as fh:
        for raw in fh:
            line = raw.rstrip("\r\n")
            for pat in _STRING:
                if m := pat.search(line):
                    found.add(m.group(1))
                    break
    return sorted(found)


@pytest.fixture(scope="module")
def parsed_log(log_strings: list[str], morgan: Grammar) -> tuple[dict, float]:
    start = time.perf_counter()
    out = {s: parse_reference(s, morgan) for s in log_strings}
    return out, time.perf_counter() - start


# ------------------------------------------------------------------------ known strings

EXAMPLES = {
    "Nest ~ bessel_i1e(bessel_i1e([(a13)*(a2)][g]))": "nest ~ i1e(i1e(decay(mul(a13, a2), g)))",
    "Nest ~ bessel_i1e([(a13)*(a2)][g])": "nest ~ i1e(decay(mul(a13, a2), g))",
    "None ~ tanh(g)/(1+|tanh(g)|)": "none ~ softsign(tanh(g))",
    "Mom ~ clip([deriv_sig(a1)][sign(g)], [sqrt(1/(1+exp(-a3))][v hat])": (
        "mom ~ clip(decay(deriv_sig(a1), sign_g), decay(sqrt_abs(sigmoid(a3)), v_hat))"
    ),
    "None ~ (0.95*(sign(v hat))+0.05*(clip(((1-0.99)*g^2+0.99*lam hat), "
    "10-6w/(1+|10-6w|))))": "none ~ mix(sign_v_hat, clip(qhm_lam, softsign(wd6)))",
    "Nest ~ (g) / (sqrt(1+(max([deriv_sig(a2)][g^2], 0))^2))": (
        "nest ~ div_sqrt(g, relu(decay(deriv_sig(a2), g2)))"
    ),
    "None ~ [1/(1+exp(-a5)/(1+|1/(1+exp(-a5)|)][g]": "none ~ decay(softsign(sigmoid(a5)), g)",
    "Mom ~ (|g|)^(1/(1+|g|))": "mom ~ pow_abs(g, deriv_soft(g))",
    "None ~ 1/(1+|g^2|)": "none ~ deriv_soft(g2)",
    "None ~ 1/(g^2)": "none ~ recip(g2)",
    "Nest ~ ln(|1+exp(g)|)": "nest ~ softplus(g)",
    "Nest ~ ln(|g|)": "nest ~ plog(g)",
}


@pytest.mark.parametrize("text", sorted(EXAMPLES))
def test_examples(text: str, morgan: Grammar):
    cand = parse_reference(text, morgan)
    assert cand.text == EXAMPLES[text]
    assert format_reference(cand) == text


def test_opt10(morgan: Grammar):
    cand = parse_reference("Nest ~ bessel_i1e(bessel_i1e([(a13)*(a2)][g]))", morgan)
    assert cand.text == "nest ~ i1e(i1e(decay(mul(a13, a2), g)))"
    assert cand.momentum is Momentum.NEST
    assert parse("Nest ~ bessel_i1e(bessel_i1e([(a13)*(a2)][g]))", morgan) == cand


def test_identity_adds_no_node(morgan: Grammar):
    assert parse_reference("None ~ id(g)", morgan).text == "none ~ g"
    assert parse_reference("Nest ~ id(id(v hat))", morgan).text == "nest ~ v_hat"
    cand = parse_reference("Nest ~ ([min(id(a9), a4)][g])+(id(1))", morgan)
    assert cand.text == "nest ~ add(decay(min(a9, a4), g), one)"
    assert format_reference(cand) == "Nest ~ ([min(a9, a4)][g])+(1)"


def test_repeated_hole_must_repeat_the_same_text(morgan: Grammar):
    with pytest.raises(CandidateError):
        parse_reference("None ~ tanh(g)/(1+|g|)", morgan)


def test_momentum_prefix(morgan: Grammar):
    assert parse_reference("tanh(g)", morgan).momentum is Momentum.NONE
    assert parse_reference("  Mom ~ g  ", morgan).text == "mom ~ g"
    with pytest.raises(CandidateError, match="unknown momentum 'Adam'"):
        parse_reference("Adam ~ g", morgan)
    with pytest.raises(CandidateError, match="no expression"):
        parse_reference("Nest ~ ", morgan)


def test_error_position_points_at_the_problem(morgan: Grammar):
    with pytest.raises(CandidateError) as err:
        parse_reference("Nest ~ (g)+(foo(g))", morgan)
    assert err.value.position == 12
    assert "foo(g)" in str(err.value)


# ----------------------------------------------------------------------------- printing


def test_format_rejects_an_lr_gene(morgan: Grammar):
    cand = parse_reference("None ~ g", morgan)
    with_lr = cand.replace(lr=gp.PrimitiveTree([morgan.pset.mapping["a1"]]))
    with pytest.raises(CandidateError, match="LR-schedule"):
        format_reference(with_lr)


NO_REF = """
name = "noref"
[mutation]
decay = 0.0
[operands]
g = {}
g2 = { ref = "g^2" }
[unary]
tanh = { ref = "tanh({0})" }
"""


def test_missing_ref():
    grammar = parse_grammar(NO_REF, "noref.toml")
    cand = parse_reference("None ~ tanh(g^2)", grammar)
    assert cand.text == "none ~ tanh(g2)"
    assert format_reference(cand) == "None ~ tanh(g^2)"
    with pytest.raises(CandidateError, match="'g' has no 'ref'"):
        format_reference(parse_canonical("tanh(g)", grammar))
    with pytest.raises(CandidateError):
        parse_reference("None ~ tanh(g)", grammar)


PREFER = """
name = "prefer"
[mutation]
decay = 0.0
[operands]
g = { ref = "g" }
[unary]
tanh = { ref = "t({0})" }
atan = { ref = "t(id({0}))" }
"""


def test_exact_reprint_is_preferred():
    grammar = parse_grammar(PREFER, "prefer.toml")
    # tanh(id(g)) comes first in table order but does not re-print the text; atan(g) does
    cand = parse_reference("None ~ t(id(g))", grammar)
    assert cand.text == "none ~ atan(g)"
    # no parse re-prints this one exactly: the first in table order is kept
    assert parse_reference("None ~ t(id(id(g)))", grammar).text == "none ~ tanh(g)"
    assert parse_reference("None ~ t(g)", grammar).text == "none ~ tanh(g)"


# ------------------------------------------------------------------------ the whole log


def test_every_log_string_parses(log_strings: list[str], parsed_log: tuple[dict, float]):
    parsed, seconds = parsed_log
    assert len(log_strings) == 2657
    assert len(parsed) == len(log_strings)
    # about 0.1 ms per string; the bound leaves room for slow machines
    assert seconds < 10


def test_log_strings_reprint_exactly(parsed_log: tuple[dict, float]):
    parsed, _ = parsed_log
    for text, cand in parsed.items():
        if "id(" not in text:
            assert format_reference(cand) == text


def test_log_candidates_round_trip(parsed_log: tuple[dict, float], morgan: Grammar):
    parsed, _ = parsed_log
    for cand in parsed.values():
        assert parse_reference(format_reference(cand), morgan) == cand
        assert parse_canonical(cand.text, morgan) == cand


# ---------------------------------------------------------------------- hostile inputs

HOSTILE = [
    "__import__('os').system('ls')",
    "None ~ __import__('os').system('ls')",
    "lambda: 0",
    "None ~ lambda: 0",
    "g.__class__",
    "None ~ g.__class__",
    "(" * 1_000_000,
    "None ~ " + "(" * (MAX_TEXT - 20) + "g",
    "None ~ " + "-(" * 200 + "g" + ")" * 200,
    "None ~ " + "|" * 1000 + "g" + "|" * 1000,
    "None ~ " + "[a1][" * 300 + "g" + "]" * 300,
    "None ~ max(" + "g, " * 1300 + "g)",
    "None ~ (" + ")+(".join(["g"] * 800) + ")",
    "None ~ foo(g)",
    "None ~ sinh(g)",
    "None ~ ｇ",
    "None ~ tanh(ｇ)",
    "Ｎone ~ g",
    "None ~ g\nimport os",
    "",
    "   ",
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:24]))
def test_hostile_inputs_are_rejected_quickly(text: str, morgan: Grammar, monkeypatch):
    def forbidden(*_args, **_kwargs):
        raise AssertionError("the reader executed something")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    start = time.perf_counter()
    with pytest.raises(CandidateError) as err:
        parse_reference(text, morgan)
    assert time.perf_counter() - start < 1.0
    message = str(err.value)
    assert message and "\n" not in message


def test_confusables_are_named(morgan: Grammar):
    with pytest.raises(CandidateError, match=r"U\+FF47 FULLWIDTH LATIN SMALL LETTER G.*'g'"):
        parse_reference("None ~ ｇ", morgan)


def test_non_string_is_rejected(morgan: Grammar):
    with pytest.raises(CandidateError):
        parse_reference(b"None ~ g", morgan)  # type: ignore[arg-type]


def test_mangled_log_strings_fail_cleanly(log_strings: list[str], morgan: Grammar, rng):
    """Random edits of real strings either parse or raise CandidateError, nothing else."""
    alphabet = "()[]|,+-*/^ g1a2~"
    for _ in range(600):
        text = log_strings[int(rng.integers(len(log_strings)))]
        k = int(rng.integers(len(text)))
        if rng.random() < 0.5:
            text = text[:k] + text[k + 1 :]
        else:
            text = text[:k] + alphabet[int(rng.integers(len(alphabet)))] + text[k:]
        try:
            cand = parse_reference(text, morgan)
        except CandidateError as exc:
            assert "\n" not in str(exc)
        else:
            assert parse_canonical(cand.text, morgan) == cand
