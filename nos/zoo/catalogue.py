"""The optimizer zoo: the paper's final optimizers and classic baselines, as candidates.

Every entry is candidate text of a grammar, never hand-written torch, so it runs through
the same emitter as searched candidates (``SymbolicOptimizer``, ``nos export``):

* ``opt1`` ... ``opt10``: the ten final optimizers of spec §7.2, in ``grammars/final2024``;
* ``adamclip0`` ... ``adamclip4``: the AdamClip variants of spec §7.3;
* ``lr0`` ... ``lr8``: the evolved LR schedules of spec §7.4, as LR-schedule genes on plain
  SGD (``schedule(name)`` gives the gene's text for use with any candidate);
* baselines of ``grammars/classic``: ``sgd``, ``momentum``, ``nesterov``, ``adam``,
  ``adamw``, ``rmsprop``, ``lion``, ``powersign``, ``addsign``.

Where the reference code has a bug (spec §7, §9.2) an entry implements the intended
behaviour and a ``-faithful`` entry keeps the reference's; :data:`DEVIATIONS` lists every
difference from the reference code. Entries carry optimizer defaults in ``options``
(Opt9/Opt10 step with the final code's Nesterov form; SGD with momentum and Nesterov use
torch's constant momentum 0.9).

This module is symbolic (no torch), so ``nos zoo`` and ``nos inspect zoo:NAME`` stay light.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nos.errors import CandidateError
from nos.symbolic.genome import Candidate
from nos.symbolic.grammar import Grammar, load_grammar, parse_grammar
from nos.symbolic.text import parse_canonical

__all__ = [
    "DEVIATIONS",
    "ZOO",
    "ZooCandidate",
    "ZooEntry",
    "entry",
    "get",
    "names",
    "schedule",
    "state_buffers",
]


@dataclass(frozen=True, eq=False)
class ZooCandidate(Candidate):
    """A candidate from the zoo: its name and the optimizer defaults it comes with."""

    name: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ZooEntry:
    """One zoo entry: candidate text of a grammar, where it comes from, and its defaults.

    ``moments`` overrides the grammar's EMA rates (RMSprop's and Lion's betas differ from
    Adam's); ``options`` are :class:`~nos.optim.SymbolicOptimizer` defaults.
    """

    name: str
    text: str
    grammar: str
    source: str
    kind: str = "optimizer"  # optimizer | adamclip | schedule | baseline
    moments: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


# The evolved LR multipliers (spec §7.4), as schedule trees of grammars/final2024.
_LR = {
    0: "quot(erfc(erfc(a4)), deriv_tanh(a8))",
    1: "quot(erfc(erfc(a4)), mul(deriv_tanh(a8), deriv_tanh(a4)))",
    2: "quot(atan(a2), mul(deriv_tanh(a10), sqrt_abs(a14f_dsoft)))",
    3: "quot(square(sigmoid(a2)), sigmoid(add(softsign(a1), softsign(a1))))",
    4: "inv(sqrt_abs(erf(a11)))",
    5: "quot(mul(atan(a2), erfc(a6)), sqrt_abs(deriv_soft(a6)))",
    6: "inv(sqrt_abs(deriv_soft(a10)))",
    7: "recip(sqrt_abs(softsign(atan(a12))))",
    8: "tanh(max(a10, a6))",
}
_RHO = _LR[0]  # Opt4-Opt6's LR multiplier is schedule 0 (spec §7.1)
_FINAL = "Morgan & Hougen 2024, finalOptimizers.py"
_KERAS_NEST = {"nesterov": "keras"}
# torch.optim's constant momentum; the schedule follows total_steps as for any candidate
_TORCH: dict[str, Any] = {}


def _final(name: str, text: str, source: str, note: str = "", **kw: Any) -> ZooEntry:
    return ZooEntry(name, text, "final2024", f"{_FINAL}: {source}", note=note, **kw)


_ENTRIES: list[ZooEntry] = [
    _final(
        "opt1",
        "none ~ add(qhm_v, softsign(clip(wd5, sub(wd5, qhm_s))))",
        "Opt1 (§7.2)",
        "clip bound |1e-5 w - (0.05 g² + 0.95 ŝ)| as the search graph builds it",
    ),
    _final(
        "opt1-faithful",
        "none ~ add(qhm_v, softsign(clip(wd5, add(wd5, mix(s_hat, neg(g2))))))",
        "Opt1 (§7.2), as written",
        "clip bound |1e-5 w - 0.05 g² + 0.95 ŝ| (the final code's parenthesisation)",
    ),
    _final("opt2", "none ~ add(qhm_v, softsign(div_sqrt(wd5, sub(wd5, qhm_s))))", "Opt2 (§7.2)"),
    _final(
        "opt3",
        "none ~ add(qhm_v, softsign(div_sqrt(wd5, sub(wd5, qhm_lam))))",
        "Opt3 (§7.2)",
        "uses the search operand 0.01 g³ + 0.99 λ̂ (λ an EMA of g³); the "
        "final code's λ̂ averages g² instead",
    ),
    _final(
        "opt4",
        f"none ~ div(qhm_v, clip(two, decay(atan(a13), exp(v_hat)))) ; lr = {_RHO}",
        "Opt4 variant 0 (§7.2), use_decay=True",
        "protected division q/(min(2, c) + 1e-7): finite at t = T-1 where c = 0",
    ),
    _final(
        "opt4-faithful",
        f"none ~ quot(qhm_v, clip(two, decay(atan(a13), exp(v_hat)))) ; lr = {_RHO}",
        "Opt4 variant 0 (§7.2), use_decay=True, as written",
        "plain division: U = ±inf at the last step t = T-1",
    ),
    _final(
        "opt4-v1",
        f"none ~ div(qhm_v, clip(two, exp(v_hat))) ; lr = {_RHO}",
        "Opt4 variant 1 (§7.2), use_decay=True",
    ),
    _final(
        "opt5",
        f"none ~ div(qhm_v, clip(two, exp(v_hat))) ; lr = {_RHO}",
        "Opt5 (§7.2), use_decay=True",
    ),
    _final(
        "opt6",
        f"none ~ div(qhm_v, abs(decay(deriv_tanh(a4), exp(wd4)))) ; lr = {_RHO}",
        "Opt6 (§7.2), use_decay=True",
    ),
    _final("opt7", "none ~ tanh(decay(max(a6, a10), asinh(qhm_v)))", "Opt7 (§7.2), use_decay=True"),
    _final(
        "opt8", "none ~ asinh(decay(max(a6, a10), asinh(qhm_v)))", "Opt8 (§7.2), use_decay=True"
    ),
    _final(
        "opt9",
        "nest ~ mul(decay(erfc(a11), g), exp(atan(qhm_s)))",
        "Opt9 (§7.2), use_decay=True",
        "Nesterov step of the final code",
        options=_KERAS_NEST,
    ),
    _final(
        "opt10",
        "nest ~ i1e(i1e(decay(mul(a13, a2), g)))",
        "Opt10 (§7.2), use_decay=True",
        "Nesterov step of the final code",
        options=_KERAS_NEST,
    ),
    _final(
        "opt10-search",
        "nest ~ i1e(i1e(decay(mul(a13, a2), g)))",
        "Opt10 as found by the search (§2.9)",
        "search-time Nesterov: w += m + eta U",
    ),
]
_ENTRIES += [
    _final(f"adamclip{i}", f"none ~ {body}", f"AdamClip(variant={i}) (§7.3)", kind="adamclip")
    for i, body in enumerate(
        [
            "clip(v_hat, plus_eps(sqrt_abs(s_hat)))",
            "clip(v_hat, plog(s_hat))",
            "clip(v_hat, sqrt_abs(plog(s_hat)))",
            "clip(v_hat, sigmoid(plus_eps(s_hat)))",
            "clip_norm(clip(v_hat, plus_eps(sqrt_abs(s_hat))))",
        ]
    )
]
_ENTRIES += [
    _final(
        f"lr{i}",
        f"none ~ g ; lr = {text}",
        f"EvolvedLRSchedules(type={i}) (§7.4)",
        "the schedule on plain SGD; schedule() gives the gene alone",
        kind="schedule",
    )
    for i, text in _LR.items()
]
_ADAM = "Kingma & Ba 2015; torch.optim.Adam"
_ENTRIES += [
    ZooEntry(
        "sgd",
        "none ~ g",
        "classic",
        "Robbins & Monro 1951; torch.optim.SGD",
        "baseline",
        options=_TORCH,
    ),
    ZooEntry(
        "momentum",
        "mom ~ g",
        "classic",
        "Polyak 1964; torch.optim.SGD(momentum=0.9)",
        "baseline",
        options={**_TORCH, "momentum": 0.9},
    ),
    ZooEntry(
        "nesterov",
        "nest ~ g",
        "classic",
        "Nesterov 1983, Sutskever et al. 2013; torch.optim.SGD(momentum=0.9, nesterov=True)",
        "baseline",
        options={**_TORCH, "momentum": 0.9, "nesterov": "keras"},
    ),
    ZooEntry("adam", "none ~ rms_div(v_hat, s_hat)", "classic", _ADAM, "baseline", options=_TORCH),
    ZooEntry(
        "adamw",
        "none ~ add(rms_div(v_hat, s_hat), wd2)",
        "classic",
        "Loshchilov & Hutter 2019; torch.optim.AdamW",
        "baseline",
        options=_TORCH,
    ),
    ZooEntry(
        "rmsprop",
        "none ~ rms_div(g, s_raw)",
        "classic",
        "Tieleman & Hinton 2012; torch.optim.RMSprop",
        "baseline",
        {"s": 0.99},
        options=_TORCH,
    ),
    ZooEntry(
        "lion",
        "none ~ sign(lion_c)",
        "classic",
        "Chen et al. 2023 (Lion)",
        "baseline",
        {"v": 0.99},
        options=_TORCH,
    ),
    ZooEntry(
        "powersign",
        "none ~ mul(exp(mul(sign_g, sign_v_hat)), g)",
        "classic",
        "Bello et al. 2017 (PowerSign, alpha = e)",
        "baseline",
        options=_TORCH,
    ),
    ZooEntry(
        "addsign",
        "none ~ mul(add(one, mul(sign_g, sign_v_hat)), g)",
        "classic",
        "Bello et al. 2017 (AddSign, alpha = 1)",
        "baseline",
        options=_TORCH,
    ),
]

#: Name -> entry, in listing order.
ZOO: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}

#: Every way the zoo differs from the reference's finalOptimizers.py (for the README).
DEVIATIONS: tuple[str, ...] = (
    "Opt1: the clip bound is |1e-5 w - (0.05 g² + 0.95 ŝ)| as the search graph computes "
    "it; the final code's missing parentheses give |1e-5 w - 0.05 g² + 0.95 ŝ| "
    "(zoo:opt1-faithful).",
    "Opt3: uses the search-space operand 0.01 g³ + 0.99 λ̂ with λ an EMA of g³; the final "
    "code's λ̂ is an EMA of g² (a transcription slip, spec §9.2 item 9). The term is "
    "scaled by 1e-5 w, so no faithful entry is kept.",
    "Opt4 variant 0: divides with the search space's protected division q/(y + 1e-7), so "
    "the last step t = T-1 (where atan(a13) = 0) stays finite; the final code's plain "
    "division gives ±inf there (zoo:opt4-faithful).",
    "Opt4-Opt6: the final code divides by min(2, c) or |d exp(1e-4 w)| without an "
    "epsilon; the zoo uses the search space's x/(y + 1e-7) (a relative difference "
    "below 1e-7 where the denominator is not near 0).",
    "Opt4-Opt10: the decays and the LR multiplier rho are on, i.e. use_decay=True; the "
    "final classes default to use_decay=False, which drops them (except Opt4's atan(a13)).",
    "Opt9, Opt10: step with the final code's Nesterov form w += mu m - eta U; the search "
    "ran them with w += m - eta U (zoo:opt10-search, SymbolicOptimizer(nesterov='search')).",
    "LR schedules: the final code's a14 (0 -> 19) appears only as dsoft(a14) in schedule 2; "
    "it is the base a14f_dsoft = 1/(1 + a14), exactly, since decay bases must stay in [0, 1].",
    "LR schedules: the callback's +1e-7 on every learning rate is left out, and so is its "
    "attempt to set eta_0 = 1e-7 (an item assignment on a tf.Tensor, which raises).",
    "Schedules past total_steps hold their value at t = T-1; the final code indexes past "
    "the end of its precomputed arrays.",
    "expMovAvg (spec §2.3 id 22) divides by 1 - 0.95^(t+1), not by 1 - 0.95^0 = 0.",
)


@functools.cache
def _grammar(name: str, moments: tuple[tuple[str, float], ...]) -> Grammar:
    base = load_grammar(name)
    if not moments:
        return base
    text = base.text
    for key, value in moments:  # each overridden moment is a "key = value" line
        text, n = re.subn(rf"(?m)^{key}\s*=\s*[0-9.]+", f"{key} = {value}", text, count=1)
        if n != 1:
            raise CandidateError(f"grammar {name} has no moment line for {key!r}")
    suffix = "-".join(f"{k}{v}" for k, v in moments)
    text = re.sub(r'(?m)^name\s*=\s*"([^"]+)"', rf'name = "\1-{suffix}"', text, count=1)
    return parse_grammar(text, f"{base.path}[{suffix}]")


def names() -> list[str]:
    return list(ZOO)


def entry(name: str) -> ZooEntry:
    """The zoo entry called ``name`` (a ``zoo:`` prefix is accepted).

    Raises:
      CandidateError: for an unknown name, listing the known ones.
    """
    key = name.strip().removeprefix("zoo:").lower()
    hit = ZOO.get(key)
    if hit is None:
        raise CandidateError(f"no zoo entry named {name!r} (known: {', '.join(ZOO)})")
    return hit


@functools.cache
def get(name: str) -> ZooCandidate:
    """The candidate of a zoo entry, with the entry's optimizer defaults in ``options``."""
    e = entry(name)
    grammar = _grammar(e.grammar, tuple(sorted(e.moments.items())))
    c = parse_canonical(e.text, grammar)
    return ZooCandidate(c.update, c.momentum, c.grammar, c.lr, name=e.name, options=dict(e.options))


def schedule(name: str) -> str:
    """The LR-schedule gene text of ``lr0`` ... ``lr8``, to append as ``; lr = ...``."""
    e = entry(name)
    if e.kind != "schedule":
        raise CandidateError(f"zoo entry {e.name!r} is not an LR schedule")
    return e.text.split(" ; lr = ", 1)[1]


def state_buffers(candidate: Candidate) -> int:
    """Tensors of optimizer state per parameter: moments, stateful ops, momentum buffer."""
    from nos.symbolic.emit import compile_phenotype

    c = compile_phenotype(candidate.phenotype)
    stateful = sum(1 for _, kind in c.slots if kind in ("ema", "delta", "max"))
    return len(candidate.phenotype.betas) + stateful + (candidate.momentum.value != "none")
