"""The op table: every operand, op and decay base that a grammar may name.

A grammar file (``grammars/*.toml``) only *selects* entries of this table and weights them;
the meaning of each entry lives here, once, as a sympy construction. Everything numeric
(numpy for the integrity check, torch for training and export) is emitted from those sympy
expressions by :mod:`nos.symbolic.emit`, so search, check and export compute the same function.

Conventions (paper-spec §2.2–§2.6):
  * ``g`` gradient, ``w`` weight; ``v``, ``s``, ``lam`` raw EMAs of g, g², g³ and
    ``v_hat``, ``s_hat``, ``lam_hat`` their bias-corrected values (EMAs updated before use).
  * ``tau = t/T`` is training progress; decay bases ``a1``…``a14`` are sympy symbols whose
    values the emitted code computes from ``tau`` once per step.
  * Protected and non-standard ops are ``sympy.Function`` subclasses without ``eval`` rules,
    so sympy cannot rewrite them; plain arithmetic stays plain sympy, which gives cheap
    canonicalisation (``g - g -> 0``, ``g*g -> g**2``).
  * Numeric constants are exact rationals, so ``0.95*x + 0.05*x`` simplifies to ``x``.

This module imports sympy only (never torch or numpy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import sympy
from sympy import Rational, sqrt

__all__ = [
    "BASES",
    "EPS",
    "MOMENTS",
    "OPERANDS",
    "OPS",
    "SYM",
    "Base",
    "NosFunction",
    "OpSpec",
    "Operand",
]

#: Keras epsilon used by the reference's protected ops (spec §2.3).
EPS = Rational(1, 10**7)
#: torch.optim's default epsilon (Adam, AdamW, RMSprop), for the classic baselines.
ADAM_EPS = Rational(1, 10**8)

SYM: dict[str, sympy.Symbol] = {
    name: sympy.Symbol(name, real=True)
    for name in ("g", "w", "v", "s", "lam", "v_hat", "s_hat", "lam_hat", "tau")
}
for _i in range(1, 15):
    SYM[f"a{_i}"] = sympy.Symbol(f"a{_i}", real=True)
SYM["a14f_dsoft"] = sympy.Symbol("a14f_dsoft", real=True)

#: The three moment estimates: raw EMA symbol, bias-corrected symbol, power of g averaged.
MOMENTS: dict[str, tuple[str, str, int]] = {
    "v": ("v", "v_hat", 1),
    "s": ("s", "s_hat", 2),
    "lam": ("lam", "lam_hat", 3),
}


# --------------------------------------------------------------------------- functions


class NosFunction(sympy.Function):
    """Base of the custom, non-rewriting functions. Subclasses set the class attributes.

    Attributes:
      op: short name used by the emitters' spelling tables.
      state: ``None``, or the kind of per-occurrence state the op carries
        (``"ema"``, ``"delta"``, ``"max"``) or ``"random"`` for dropout.
      latex: LaTeX name.
    """

    op: str = ""
    state: str | None = None
    latex: str = ""

    def _latex(self, printer: Any, exp: str | None = None) -> str:
        args = ", ".join(printer._print(a) for a in self.args)
        out = rf"\operatorname{{{self.latex or self.op}}}\left({args}\right)"
        # sympy asks for f(x)^n through ``exp``
        return rf"{out}^{{{exp}}}" if exp is not None else out

    def _eval_is_extended_real(self) -> bool:
        # every op maps reals to reals (possibly ±inf); saying so keeps sympy from wrapping
        # re()/im() around them
        return True


class _Extremum(NosFunction):
    """max/min of two values, with only the cheap rewrites.

    sympy's Max/Min prove orderings with the assumptions system on construction: that cost
    most of the phenotype build and raises on some constant arguments. Equal arguments,
    two numbers, and a canonical argument order (for commutativity) are all we need.
    """

    nargs = 2
    _pick = max

    @classmethod
    def eval(cls, x: sympy.Expr, y: sympy.Expr) -> sympy.Expr | None:
        if x == y:
            return x
        if x.is_Number and y.is_Number:
            return cls._pick(x, y)
        if x.compare(y) > 0:
            return cls(y, x)
        return None


class maximum(_Extremum):
    """max(x, y), elementwise (spec §2.4 id 3; relu is max(x, 0))."""

    op = "max"
    _pick = max


class minimum(_Extremum):
    """min(x, y), elementwise (spec §2.4 id 4)."""

    op = "min"
    _pick = min


def _fn(
    op: str, nargs: int, doc: str, *, latex: str = "", state: str | None = None
) -> type[NosFunction]:
    cls = type(
        op,
        (NosFunction,),
        {"nargs": nargs, "op": op, "state": state, "latex": latex, "__doc__": doc},
    )
    # three-argument type() is typed as plain ``type``; its base is NosFunction
    return cast("type[NosFunction]", cls)


plog = _fn("plog", 1, "ln(|x| + eps), spec §2.3 id 1", latex="ln_\\epsilon")
sigmoid = _fn("sigmoid", 1, "1/(1+exp(-x)), spec §2.3 id 5", latex="\\sigma")
softplus = _fn("softplus", 1, "ln(|1+exp(x)| + eps), spec §2.3 id 7")
i1e = _fn(
    "i1e", 1, "exp(-|x|) I1(x), exponentially scaled Bessel I1, spec §2.3 id 14", latex="I_{1e}"
)
clip = _fn("clip", 2, "clip(x, -|y|, |y|), spec §2.4 id 7")
clip_norm = _fn(
    "clip_norm", 1, "rescale the whole tensor to L2 norm <= 1, spec §2.3 id 20", latex="clipnorm"
)
dropout = _fn(
    "dropout",
    2,
    "dropout(x, rate): keep w.p. 1-rate, scale by 1/(1-rate)",
    latex="drop",
    state="random",
)
ema = _fn(
    "ema",
    1,
    "bias-corrected EMA of x with beta 0.95 (sound expMovAvg, spec §2.3 id 22)",
    latex="EMA",
    state="ema",
)
delta = _fn(
    "delta",
    1,
    "n <- x - n_prev (the reference deltaChange, spec §2.3 id 23)",
    latex="\\Delta",
    state="delta",
)
running_max = _fn(
    "running_max",
    1,
    "n <- max(x, n_prev), n_0 = 0 (MaxValue, spec §2.3 id 24)",
    latex="runmax",
    state="max",
)

# Elementary functions as plain NosFunctions too: sympy's own exp/Abs/sign/erf/... query the
# assumptions system on every construction (1-4 ms each on a sum), which dominated the cost of
# building a phenotype; their automatic rewrites (erf(-x) -> -erf(x), ...) are not needed
# for dedup, which the numeric fingerprint backs up.
exp_ = _fn("exp", 1, "e^x")
abs_ = _fn("abs", 1, "|x|")
sign_ = _fn("sign", 1, "sign(x)")
tanh_ = _fn("tanh", 1, "tanh(x)")
atan_ = _fn("atan", 1, "atan(x)", latex="atan")
asinh_ = _fn("asinh", 1, "asinh(x)", latex="asinh")
erf_ = _fn("erf", 1, "erf(x)")
erfc_ = _fn("erfc", 1, "erfc(x) = 1 - erf(x)")
abs_._eval_is_extended_nonnegative = lambda self: True

FUNCTIONS: dict[str, type[NosFunction]] = {
    f.op: f
    for f in (
        plog,
        sigmoid,
        softplus,
        i1e,
        clip,
        clip_norm,
        dropout,
        ema,
        delta,
        running_max,
        maximum,
        minimum,
        exp_,
        abs_,
        sign_,
        tanh_,
        atan_,
        asinh_,
        erf_,
        erfc_,
    )
}


# --------------------------------------------------------------------------- ops


@dataclass(frozen=True)
class OpSpec:
    """One op: arity, sympy construction, and the contexts it may appear in.

    ``contexts`` holds ``"tensor"`` and/or ``"schedule"``: schedule ops act on scalar
    functions of tau (decays and the LR-schedule gene), tensor ops on update tensors.
    """

    name: str
    arity: int
    build: Callable[..., sympy.Expr]
    doc: str
    contexts: frozenset[str] = frozenset({"tensor"})


_BOTH = frozenset({"tensor", "schedule"})
_SCHED = frozenset({"schedule"})


def _dsig(x: sympy.Expr) -> sympy.Expr:
    return sigmoid(x) * (1 - sigmoid(x))


_OP_LIST = [
    # unary (spec §2.3 ids 0..24; decay unary ops spec §2.6)
    OpSpec("neg", 1, lambda x: -x, "-x"),
    OpSpec("plog", 1, plog, "ln(|x| + eps)"),
    OpSpec("sqrt_abs", 1, lambda x: sqrt(abs_(x)), "sqrt(|x|)", _BOTH),
    OpSpec("exp", 1, exp_, "e^x"),
    OpSpec("abs", 1, abs_, "|x|"),
    OpSpec("sigmoid", 1, sigmoid, "1/(1+e^-x)", _BOTH),
    OpSpec("deriv_soft", 1, lambda x: 1 / (1 + abs_(x)), "1/(1+|x|)", _BOTH),
    OpSpec("softplus", 1, softplus, "ln(|1+e^x| + eps)"),
    OpSpec("erf", 1, erf_, "erf(x)", _BOTH),
    OpSpec("erfc", 1, erfc_, "erfc(x) = 1 - erf(x)", _BOTH),
    OpSpec("asinh", 1, asinh_, "asinh(x)"),
    OpSpec("tanh", 1, tanh_, "tanh(x)", _BOTH),
    OpSpec("atan", 1, atan_, "atan(x)", _BOTH),
    OpSpec("recip", 1, lambda x: 1 / (x + EPS), "1/(x + eps)", _BOTH),
    OpSpec("i1e", 1, i1e, "exp(-|x|) I1(x)", _BOTH),
    OpSpec("relu", 1, lambda x: maximum(x, 0), "max(x, 0)"),
    OpSpec("min0", 1, lambda x: minimum(x, 0), "min(x, 0)"),
    OpSpec("drop50", 1, lambda x: dropout(x, Rational(1, 2)), "dropout, rate 0.5"),
    OpSpec("drop30", 1, lambda x: dropout(x, Rational(3, 10)), "dropout, rate 0.3"),
    OpSpec("drop10", 1, lambda x: dropout(x, Rational(1, 10)), "dropout, rate 0.1"),
    OpSpec("clip_norm", 1, clip_norm, "x * min(1, 1/||x||_2)"),
    OpSpec("softsign", 1, lambda x: x / (1 + abs_(x)), "x/(1+|x|)", _BOTH),
    OpSpec("ema", 1, ema, "bias-corrected EMA(0.95) of x"),
    OpSpec("delta", 1, delta, "x - n_prev"),
    OpSpec("running_max", 1, running_max, "running max, from 0"),
    OpSpec("sign", 1, sign_, "sign(x)"),
    OpSpec("square", 1, lambda x: x**2, "x²", _BOTH),
    OpSpec("deriv_tanh", 1, lambda x: 1 - tanh_(x) ** 2, "1 - tanh²(x)", _BOTH),
    OpSpec("deriv_sig", 1, _dsig, "σ(x)(1 - σ(x))", _BOTH),
    # For the paper's final code (spec §7), which writes a few things the search space
    # cannot: an unprotected 1/x (LR schedules 4 and 6) and AdamClip's "+ 1e-7".
    OpSpec("inv", 1, lambda x: 1 / x, "1/x (unprotected)", _BOTH),
    OpSpec("plus_eps", 1, lambda x: x + EPS, "x + eps"),
    # binary (spec §2.4; decay binary ops spec §2.6)
    OpSpec("add", 2, lambda x, y: x + y, "x + y", _BOTH),
    OpSpec("sub", 2, lambda x, y: x - y, "x - y", _BOTH),
    OpSpec("mul", 2, lambda x, y: x * y, "x·y", _BOTH),
    OpSpec("max", 2, maximum, "max(x, y)", _BOTH),
    OpSpec("min", 2, minimum, "min(x, y)", _BOTH),
    OpSpec("div", 2, lambda x, y: x / (y + EPS), "x/(y + eps)", _BOTH),
    OpSpec("div_sqrt", 2, lambda x, y: x / sqrt(1 + y**2), "x/sqrt(1 + y²)", _BOTH),
    OpSpec("clip", 2, clip, "clip(x, -|y|, |y|)"),
    OpSpec("mix", 2, lambda x, y: Rational(19, 20) * x + Rational(1, 20) * y, "0.95x + 0.05y"),
    OpSpec("pow_abs", 2, lambda x, y: abs_(x) ** y, "|x|^y"),
    # Unprotected division of the final code (spec §7.2-§7.4) and Adam's denominator
    # (the classic baselines): x / (sqrt(|y|) + 1e-8).
    OpSpec("quot", 2, lambda x, y: x / y, "x/y (unprotected)", _BOTH),
    OpSpec("rms_div", 2, lambda x, y: x / (sqrt(abs_(y)) + ADAM_EPS), "x/(sqrt(|y|) + 1e-8)"),
]
OPS: dict[str, OpSpec] = {op.name: op for op in _OP_LIST}


# --------------------------------------------------------------------------- operands


@dataclass(frozen=True)
class Operand:
    """A terminal of the update tree: its sympy definition and the moments it reads."""

    name: str
    build: Callable[[], sympy.Expr]
    doc: str
    moments: tuple[str, ...] = ()


_g, _w = SYM["g"], SYM["w"]
_v, _s, _lam = SYM["v"], SYM["s"], SYM["lam"]
_vh, _sh, _lh = SYM["v_hat"], SYM["s_hat"], SYM["lam_hat"]


def _aggmo(raw: sympy.Symbol, power: int, betas: tuple[Rational, ...]) -> sympy.Expr:
    """mean over beta of (beta * raw EMA - g^power) (spec §2.2 ids 17-19, 'AggMo')."""
    return sum(betas, Rational(0)) / len(betas) * raw - _g**power


_OPERAND_LIST = [
    Operand("g", lambda: _g, "gradient"),
    Operand("g2", lambda: _g**2, "g²"),
    Operand("g3", lambda: _g**3, "g³"),
    Operand("v_hat", lambda: _vh, "bias-corrected EMA of g", ("v",)),
    Operand("s_hat", lambda: _sh, "bias-corrected EMA of g²", ("s",)),
    Operand("lam_hat", lambda: _lh, "bias-corrected EMA of g³", ("lam",)),
    Operand("one", lambda: sympy.Integer(1), "1"),
    Operand("two", lambda: sympy.Integer(2), "2"),
    Operand("zero", lambda: sympy.Integer(0), "0 (for degenerate-candidate tests)"),
    Operand("wd6", lambda: _w / 10**6, "1e-6 w"),
    Operand("wd5", lambda: _w / 10**5, "1e-5 w"),
    Operand("wd4", lambda: _w / 10**4, "1e-4 w"),
    Operand("wd3", lambda: _w / 10**3, "1e-3 w"),
    Operand("sign_g", lambda: sign_(_g), "sign(g)"),
    Operand("sign_v_hat", lambda: sign_(_vh), "sign(v̂)", ("v",)),
    Operand(
        "qhm_v", lambda: Rational(3, 10) * _g + Rational(7, 10) * _vh, "0.3 g + 0.7 v̂ (QHM)", ("v",)
    ),
    Operand(
        "qhm_s",
        lambda: Rational(1, 20) * _g**2 + Rational(19, 20) * _sh,
        "0.05 g² + 0.95 ŝ",
        ("s",),
    ),
    # The reference log labels this g^2 but the code computes g³ (spec §2.2 id 16).
    Operand(
        "qhm_lam",
        lambda: Rational(1, 100) * _g**3 + Rational(99, 100) * _lh,
        "0.01 g³ + 0.99 λ̂",
        ("lam",),
    ),
    Operand(
        "aggmo_v",
        lambda: _aggmo(_v, 1, (0, Rational(9, 10), Rational(999, 1000))),
        "mean over β∈{0, .9, .999} of (β v - g)",
        ("v",),
    ),
    Operand(
        "aggmo_s",
        lambda: _aggmo(_s, 2, (0, Rational(99, 100), Rational(999, 1000))),
        "mean over β∈{0, .99, .999} of (β s - g²)",
        ("s",),
    ),
    # Raw (not bias-corrected) moments, for the classic baselines (RMSprop, Lion).
    Operand("v_raw", lambda: _v, "raw EMA of g", ("v",)),
    Operand("s_raw", lambda: _s, "raw EMA of g²", ("s",)),
    # Lion's interpolation beta1 m_{t-1} + (1 - beta1) g with beta1 = 0.9, written with the
    # EMA m_t = beta2 m_{t-1} + (1 - beta2) g after its update: only for beta2 = v = 0.99.
    Operand(
        "lion_c",
        lambda: Rational(10, 11) * _v + Rational(1, 11) * _g,
        "Lion's 0.9 m_{t-1} + 0.1 g (needs moment v = 0.99)",
        ("v",),
    ),
    Operand("wd2", lambda: _w / 10**2, "1e-2 w"),
    Operand(
        "aggmo_lam",
        lambda: _aggmo(_lam, 3, (0, Rational(999, 1000), Rational(9999, 10000))),
        "mean over β∈{0, .999, .9999} of (β λ - g³)",
        ("lam",),
    ),
]
OPERANDS: dict[str, Operand] = {o.name: o for o in _OPERAND_LIST}


# --------------------------------------------------------------------------- decay bases


_tau = SYM["tau"]
#: 1/T, so that a13's "(t+1)/T" can be written as tau + inv_T.
INV_T = sympy.Symbol("inv_T", positive=True)
SYM["inv_T"] = INV_T
_pi = sympy.pi
_B0 = Rational(19, 20)  # Demon's beta_0 (spec §2.6)
_beta_d = _B0 * (1 - _tau - INV_T)
_a13 = _beta_d / ((1 - _B0) + _beta_d)


@dataclass(frozen=True)
class Base:
    """A decay base a_i: a function of progress tau = t/T (and 1/T), spec §2.6.

    ``expr`` is the sympy definition in ``tau`` and ``inv_T``; the emitter computes it
    once per step in whatever backend it targets.
    """

    name: str
    expr: sympy.Expr
    formula: str


BASES: dict[str, Base] = {
    b.name: b
    for b in (
        Base("a1", 1 - _tau, "1 - τ (linear decay)"),
        Base("a2", _tau, "τ (linear increase)"),
        Base("a3", (1 + sympy.cos(_pi * _tau)) / 2, "(1 + cos πτ)/2 (cosine decay)"),
        Base("a4", (1 - sympy.cos(_pi * _tau)) / 2, "(1 - cos πτ)/2 (cosine increase)"),
        Base("a5", (1 + sympy.cos(2 * _pi * _tau)) / 2, "(1 + cos 2πτ)/2 (one cycle)"),
        Base("a6", (1 - sympy.cos(2 * _pi * _tau)) / 2, "(1 - cos 2πτ)/2 (one cycle)"),
        Base(
            "a7",
            (1 + sympy.cos(_pi * sympy.Mod(2 * _tau, 1))) / 2,
            "(1 + cos π(2τ mod 1))/2 (cosine decay, restart at T/2)",
        ),
        Base(
            "a8",
            (1 - sympy.cos(_pi * sympy.Mod(2 * _tau, 1))) / 2,
            "(1 - cos π(2τ mod 1))/2 (cosine increase, restart)",
        ),
        Base("a9", 1 - sympy.Mod(2 * _tau, 1), "1 - (2τ mod 1) (linear decay, restart)"),
        Base("a10", sympy.Mod(2 * _tau, 1), "2τ mod 1 (linear increase, restart)"),
        Base("a11", Rational(1, 100) ** _tau, "0.01^τ (exponential decay)"),
        Base("a12", 1 - Rational(1, 100) ** _tau, "1 - 0.01^τ (exponential increase)"),
        Base("a13", _a13, "β_d/((1-β0) + β_d), β_d = β0(1 - τ - 1/T), β0 = 0.95 (Demon)"),
        Base("a14", _B0 - _a13, "β0 - a13 (the search code's definition)"),
        # The final code's a14 = (β0 - β_d)/((1-β0) + β_d) runs 0 -> 19, outside the [0, 1]
        # of a decay base; its only use (LR schedule 2, spec §7.4) is dsoft(a14) =
        # 1/(1 + a14), which is exactly this base.
        Base(
            "a14f_dsoft",
            (1 - _B0) + _beta_d,
            "1/(1 + a14') = (1-β0) + β_d, a14' the final code's a14 (spec §2.6, §7.4)",
        ),
    )
}
