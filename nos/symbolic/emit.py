"""Emit executable step functions from a candidate's sympy phenotype.

One emitter serves every numeric backend. It walks the phenotype's sympy expressions
(:mod:`nos.symbolic.phenotype`), reusing any repeated sub-expression, and writes plain Python source
whose only backend-specific parts are

* a *spelling table*: a template per primitive (``"tanh": "rt.tanh({0})"``), and
* a *runtime object* ``rt`` passed in at call time, which supplies the array functions and
  the few ops that need more than an expression (``rt.i1e``, ``rt.clip_norm``,
  ``rt.dropout(x, rate, slot, like)``, ``rt.full_like``).

The numpy backend (:class:`NumpyRuntime`) is defined here; a torch backend adds its own
table with :func:`register_backend` and its own runtime object from a module that may import
torch (this module never does).

The emitted module defines three functions (spec §2.2-§2.7):

``update(g, w, state, t, tau, inv_T, rt) -> U``
    One optimizer step's update direction. ``g`` and ``w`` are arrays shaped ``(..., n)``;
    leading axes are independent runs (per-tensor reductions act on the last axis only).
    ``t`` is the 0-based step, ``tau = t/T`` the progress, ``inv_T = 1/T``. ``state`` is the
    dict made by ``init_state``; the function updates in it, before use, the moment EMAs the
    candidate reads (spec §2.2) and one slot per stateful op (spec §2.3 ids 22-24).
``init_state(g, rt) -> dict``
    Zeroed state for arrays shaped like ``g``.
``lr(tau, inv_T, rt) -> float``
    The LR-schedule multiplier (1 when the gene is frozen, spec §2.8).

Stateful ops keep one slot per *distinct* sub-expression: the phenotype has already merged
identical sub-trees (``ema(g) + ema(g)`` is ``2*ema(g)``), so the slots follow its meaning.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.special
import sympy
from sympy import S

from nos.symbolic import ops
from nos.symbolic.phenotype import Phenotype

__all__ = [
    "BACKENDS",
    "Compiled",
    "EmitError",
    "NumpyRuntime",
    "compile_candidate",
    "compile_phenotype",
    "emit_source",
    "register_backend",
]


class EmitError(NotImplementedError):
    """The phenotype contains a sympy construction the emitter has no spelling for.

    This is a gap in the emitter, not a property of the candidate, so callers let it
    propagate instead of recording it as a rejection.
    """


# ------------------------------------------------------------------------ spelling tables

_EPS = repr(float(ops.EPS))

#: The numpy spelling table. ``{0}``/``{1}`` are the arguments; ``{slot}`` a state slot
#: name; ``{like}`` an array whose shape a scalar must take. A backend whose runtime uses
#: the same method names can reuse it wholesale.
NUMPY_TEMPLATES: dict[str, str] = {
    "exp": "rt.exp({0})",
    "log": "rt.log({0})",
    "abs": "rt.abs({0})",
    "sign": "rt.sign({0})",
    "tanh": "rt.tanh({0})",
    "atan": "rt.arctan({0})",
    "asinh": "rt.arcsinh({0})",
    "erf": "rt.erf({0})",
    "erfc": "rt.erfc({0})",
    "cos": "rt.cos({0})",
    "sin": "rt.sin({0})",
    "sqrt": "rt.sqrt({0})",
    "power": "rt.power({0}, {1})",
    "max": "rt.maximum({0}, {1})",
    "min": "rt.minimum({0}, {1})",
    "mod": "rt.mod({0}, {1})",
    "plog": f"rt.log(rt.abs({{0}}) + {_EPS})",
    "sigmoid": "rt.sigmoid({0})",
    "softplus": f"rt.log(rt.abs(1.0 + rt.exp({{0}})) + {_EPS})",
    "i1e": "rt.i1e({0})",
    "clip": "rt.clip({0}, {1})",
    "clip_norm": "rt.clip_norm({0})",
    "dropout": "rt.dropout({0}, {1}, {slot!r}, {like})",
    "full_like": "rt.full_like({like}, {0})",
    "zeros_like": "rt.zeros_like({like})",
    "scalar": "rt.scalar({0})",
    "inf": "rt.inf",
    "nan": "rt.nan",
    # stateful ops (spec §2.3 ids 22-24): {n} is the local name of the new state value
    "ema": (
        "{n} = state[{slot!r}] = 0.95 * state[{slot!r}] + 0.05 * {0}\n"
        "{out} = {n} / (1.0 - 0.95 ** (t + 1))"
    ),
    "delta": "{n} = state[{slot!r}] = {0} - state[{slot!r}]\n{out} = {n}",
    "max_state": "{n} = state[{slot!r}] = rt.maximum({0}, state[{slot!r}])\n{out} = {n}",
    # moments (spec §2.2): EMA updated before use, then bias-corrected
    "moment": "{raw} = state[{raw!r}] = {beta} * state[{raw!r}] + {one_minus} * {src}",
    "moment_hat": "{hat} = {raw} / (1.0 - {beta} ** (t + 1))",
}

BACKENDS: dict[str, Mapping[str, str]] = {"numpy": NUMPY_TEMPLATES}


def register_backend(name: str, templates: Mapping[str, str]) -> None:
    """Add a backend's spelling table; missing entries fall back to the numpy spelling."""
    BACKENDS[name] = {**NUMPY_TEMPLATES, **templates}


# ----------------------------------------------------------------------- numpy runtime


class NumpyRuntime:
    """The ``rt`` object of the numpy backend.

    ``rng`` draws dropout masks; the integrity check and the fingerprint pass a freshly
    seeded one so that their results are deterministic. Callers wrap evaluation in
    ``np.errstate(all="ignore")``: overflow and 0/0 are legitimate candidate behaviour here.
    """

    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    abs = staticmethod(np.abs)
    sign = staticmethod(np.sign)
    tanh = staticmethod(np.tanh)
    arctan = staticmethod(np.arctan)
    arcsinh = staticmethod(np.arcsinh)
    cos = staticmethod(np.cos)
    sin = staticmethod(np.sin)
    sqrt = staticmethod(np.sqrt)
    power = staticmethod(np.power)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    mod = staticmethod(np.mod)
    erf = staticmethod(scipy.special.erf)
    erfc = staticmethod(scipy.special.erfc)
    i1e = staticmethod(scipy.special.i1e)
    sigmoid = staticmethod(scipy.special.expit)
    zeros_like = staticmethod(np.zeros_like)
    full_like = staticmethod(np.full_like)
    scalar = staticmethod(np.float64)  # numpy scalar semantics: x/0 -> inf, not an exception
    inf = math.inf
    nan = math.nan

    def __init__(self, rng: np.random.Generator | None = None):
        self.rng = rng if rng is not None else np.random.default_rng(0)

    @staticmethod
    def clip(x: Any, y: Any) -> Any:
        """clip(x, -|y|, |y|), spec §2.4 id 7."""
        bound = np.abs(y)
        return np.minimum(np.maximum(x, -bound), bound)

    @staticmethod
    def clip_norm(x: np.ndarray) -> np.ndarray:
        """Rescale so the L2 norm over the last axis is at most 1 (spec §2.3 id 20)."""
        norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
        out: np.ndarray = x * np.minimum(1.0, 1.0 / norm)
        return out

    def dropout(self, x: Any, rate: float, slot: str, like: np.ndarray) -> np.ndarray:
        """Keep each entry w.p. 1 - rate and scale kept ones by 1/(1 - rate).

        ``slot`` names the occurrence; numpy draws every mask from the one generator, so
        it is unused here (a backend that records masks per occurrence would key on it).
        """
        shape = np.broadcast_shapes(np.shape(x), np.shape(like))
        keep = self.rng.random(shape) >= rate
        out: np.ndarray = np.where(keep, x / (1.0 - rate), 0.0 * x)
        return out


# ---------------------------------------------------------------------------- emitter

_TENSOR = frozenset({"g", "w", "v", "s", "lam", "v_hat", "s_hat", "lam_hat"})
_RAW_OF = {raw: m for m, (raw, _hat, _p) in ops.MOMENTS.items()}
_RAW_OF.update({hat: m for m, (_raw, hat, _p) in ops.MOMENTS.items()})
_SIMPLE = {
    sympy.exp: "exp",
    sympy.log: "log",
    sympy.Abs: "abs",
    sympy.sign: "sign",
    sympy.tanh: "tanh",
    sympy.atan: "atan",
    sympy.asinh: "asinh",
    sympy.erf: "erf",
    sympy.erfc: "erfc",
    sympy.cos: "cos",
    sympy.sin: "sin",
}
# Ops whose result depends on the whole array, so a scalar argument is first broadcast.
_NEEDS_ARRAY = frozenset({"clip_norm", "dropout"})


def _literal(x: float) -> str:
    if math.isnan(x):
        return "rt.nan"
    if math.isinf(x):
        return "rt.inf" if x > 0 else "(-rt.inf)"
    text = repr(float(x))
    return f"({text})" if x < 0 else text


def _number(e: sympy.Basic) -> float:
    """float() of a sympy number; p/q in Python is correctly rounded and avoids mpmath."""
    if e.is_Rational:
        return e.p / e.q if e.q != 1 else float(e.p)
    return float(e)


class _Emitter:
    """Writes the lines of one function body; ``emit`` returns (atom, is_tensor).

    ``used`` collects the symbol names met, so the prologue (moment updates, decay bases)
    can be written after the walk and placed before it.
    """

    def __init__(
        self,
        templates: Mapping[str, str],
        counter: dict[str, int],
        slots: list[tuple[str, str]],
        prefix: str = "",
    ):
        self.t = templates
        self.prefix = prefix
        self.counter = counter  # shared between emitters so names never collide
        self.slots = slots
        self.lines: list[str] = []
        self.used: set[str] = set()
        self.state_keys: list[str] = []
        self.memo: dict[Any, tuple[str, bool]] = {}

    def name(self, stem: str) -> str:
        k = self.counter.get(stem, 0)
        self.counter[stem] = k + 1
        return f"{self.prefix}{stem}{k}"

    def assign(self, stem: str, code: str, tensor: bool) -> tuple[str, bool]:
        var = self.name(stem)
        self.lines.append(f"{var} = {code}")
        return var, tensor

    def literal(self, x: float) -> str:
        """A number in this backend's spelling (non-finite values use its templates)."""
        if math.isnan(x):
            return self.t["nan"]
        if math.isinf(x):
            return self.t["inf"] if x > 0 else f"(-{self.t['inf']})"
        return _literal(x)

    def arg(self, expr: sympy.Basic) -> tuple[str, bool]:
        """``emit`` for a function argument: a backend whose functions reject plain numbers
        (torch) wraps a number in its ``literal_arg`` template."""
        atom, tensor = self.emit(expr)
        if not tensor and (expr.is_Number or expr.is_NumberSymbol) and "literal_arg" in self.t:
            atom = self.t["literal_arg"].format(atom)
        return atom, tensor

    def as_array(self, atom: str, tensor: bool) -> str:
        return atom if tensor else self.t["full_like"].format(atom, like="g")

    def prologue(self, moments: Mapping[str, sympy.Rational]) -> list[str]:
        """Lines to run before the body: scalar conversion of tau and 1/T, the moment
        updates (spec §2.2) and the decay bases (spec §2.6) that the body used."""
        order = list(ops.BASES)
        bases = tuple(sorted((n for n in self.used if n in ops.BASES), key=order.index))
        base_lines, base_used = _bases_block(self.t, bases) if bases else ((), frozenset())
        # a backend whose callers already pass scalars in its own type spells "scalar"
        # as "{0}"; the no-op assignment is then left out
        out = [
            f"{arg} = {self.t['scalar'].format(arg)}"
            for arg in ("tau", "inv_T")
            if (arg in self.used or arg in base_used) and self.t["scalar"].format(arg) != arg
        ]
        for m, (raw, hat, power) in ops.MOMENTS.items():
            if raw not in self.used and hat not in self.used:
                continue
            if m not in moments:
                raise EmitError(f"moment {m!r} is read but has no beta in the phenotype")
            beta = moments[m]
            fields = {
                "raw": raw,
                "hat": hat,
                "beta": _literal(_number(beta)),
                "one_minus": _literal(_number(1 - beta)),
                "src": " * ".join(["g"] * power),
            }
            self.state_keys.insert(0, raw)
            out.append(self.t["moment"].format(**fields))
            if hat in self.used:
                out.append(self.t["moment_hat"].format(**fields))
        return out + list(base_lines)

    def emit(self, expr: sympy.Basic) -> tuple[str, bool]:
        hit = self.memo.get(expr)
        if hit is None:
            hit = self._emit(expr)
            self.memo[expr] = hit
        return hit

    def _emit(self, e: sympy.Basic) -> tuple[str, bool]:
        if e.is_Symbol:
            self.used.add(e.name)
            return e.name, e.name in _TENSOR
        if e.is_Number or e.is_NumberSymbol:
            if e is S.ComplexInfinity:
                return self.t["inf"], False
            return self.literal(_number(e)), False
        if e is S.ComplexInfinity:
            return self.t["inf"], False
        if e.is_Add:
            return self._add(e)
        if e.is_Mul:
            coeff, factors = (e.args[0], e.args[1:]) if e.args[0].is_Number else (S.One, e.args)
            return self._product(_number(coeff), factors)
        if e.is_Pow:
            return self._pow(e)
        if isinstance(e, ops.NosFunction):
            return self._nos(e)
        func = e.func
        if func in _SIMPLE:
            atom, tensor = self.arg(e.args[0])
            key = _SIMPLE[func]
            return self.assign(key, self.t[key].format(atom), tensor)
        if func in (sympy.Max, sympy.Min):
            key = "max" if func is sympy.Max else "min"
            atoms = [self.arg(a) for a in e.args]
            code, tensor = atoms[0]
            for atom, t2 in atoms[1:]:
                code, tensor = self.t[key].format(code, atom), tensor or t2
            return self.assign(key, code, tensor)
        if func in (sympy.re, sympy.conjugate):
            # every value here is real; sympy adds these around the custom functions,
            # which it cannot prove real
            return self.emit(e.args[0])
        if func is sympy.im:
            return "0.0", False
        if func is sympy.Mod:
            (a, ta), (b, tb) = self.arg(e.args[0]), self.arg(e.args[1])
            return self.assign("mod", self.t["mod"].format(a, b), ta or tb)
        raise EmitError(f"no spelling for sympy {func.__name__} in {e}")

    def _add(self, e: sympy.Add) -> tuple[str, bool]:
        parts: list[str] = []
        tensor = False
        terms = e.args
        if terms[0].is_Number:  # sympy sorts the constant first; add it last, as ops.py does
            terms = (*terms[1:], terms[0])
        for term in terms:
            args = term.args
            if term.is_Mul and args[0].is_Number and _number(args[0]) < 0:
                # c*x with c < 0 is written "- |c|*x", sharing the code of |c|*x
                atom, t2 = self._product(-_number(args[0]), args[1:])
                sign = "-"
            else:
                atom, t2 = self.emit(term)
                sign = "+"
            tensor = tensor or t2
            if parts:
                parts.append(f"{sign} {atom}")
            else:
                parts.append(atom if sign == "+" else f"-{atom}")
        return self.assign("add", " ".join(parts), tensor)

    def _product(self, coeff: float, factors: tuple[sympy.Basic, ...]) -> tuple[str, bool]:
        key = ("product", coeff, factors)
        hit = self.memo.get(key)
        if hit is None:
            hit = self.memo[key] = self._product_code(coeff, factors)
        return hit

    def _product_code(self, coeff: float, factors: tuple[sympy.Basic, ...]) -> tuple[str, bool]:
        num: list[str] = []
        den: list[str] = []
        tensor = False
        for f in factors:
            if f.is_Pow and f.exp.is_Integer and f.exp.p < 0:
                atom, t2 = self.emit(f.base) if f.exp.p == -1 else self._power(f.base, -f.exp.p)
                den.append(atom)
            else:
                atom, t2 = self.emit(f)
                num.append(atom)
            tensor = tensor or t2
        if coeff == 1.0 and len(num) == 1 and not den:
            return num[0], tensor
        if coeff not in (1.0, -1.0) or not num:
            num.insert(0, self.literal(coeff))
        code = " * ".join(num)
        if den:
            code += " / " + (den[0] if len(den) == 1 else "(" + " * ".join(den) + ")")
        if coeff == -1.0:
            code = f"-({code})"
        return self.assign("mul", code, tensor)

    def _power(self, base: sympy.Basic, n: int) -> tuple[str, bool]:
        """base**n for an integer n >= 1 (memoised like a sub-expression)."""
        key = ("power", base, n)
        hit = self.memo.get(key)
        if hit is None:
            b, tb = self.emit(base)
            if n == 1:
                hit = (b, tb)
            else:
                code = " * ".join([b] * n) if n <= 3 else f"{b} ** {n}"
                hit = self.assign("pow", code, tb)
            self.memo[key] = hit
        return hit

    def _pow(self, e: sympy.Pow) -> tuple[str, bool]:
        base, ex = e.args
        if ex.is_Integer:
            n = ex.p
            if n > 0:
                return self._power(base, n)
            b, tb = self._power(base, -n)
            return self.assign("recip", f"1.0 / {b}", tb)
        b, tb = self.arg(base)
        if ex == S.Half:
            return self.assign("sqrt", self.t["sqrt"].format(b), tb)
        if ex == -S.Half:
            return self.assign("rsqrt", f"1.0 / {self.t['sqrt'].format(b)}", tb)
        x, tx = self.arg(ex)
        return self.assign("pow", self.t["power"].format(b, x), tb or tx)

    def _nos(self, e: ops.NosFunction) -> tuple[str, bool]:
        op = e.op
        if op == "dropout":
            x, _ = self.emit(e.args[0])
            slot = self.name("drop")
            self.slots.append((slot, "random"))
            code = self.t["dropout"].format(x, _literal(_number(e.args[1])), slot=slot, like="g")
            self.lines.append(f"{slot} = {code}")
            return slot, True
        atoms = [self.arg(a) for a in e.args]
        tensor = any(t2 for _, t2 in atoms)
        args = [a for a, _ in atoms]
        if op in _NEEDS_ARRAY and not tensor:
            args[0], tensor = self.as_array(args[0], False), True
        if e.state is not None:
            key = {"ema": "ema", "delta": "delta", "max": "max_state"}[e.state]
            slot = self.name(op)
            self.slots.append((slot, e.state))
            self.state_keys.append(slot)
            out = self.name(op + "_out") if e.state == "ema" else slot
            lines = self.t[key].format(*args, n=slot, out=out, slot=slot).split("\n")
            self.lines.extend(line for line in lines if line != f"{slot} = {slot}")
            return out, tensor
        return self.assign(op, self.t[op].format(*args), tensor)


_BASES_CACHE: dict[tuple[int, tuple[str, ...]], tuple[tuple[str, ...], frozenset[str]]] = {}


def _bases_block(
    templates: Mapping[str, str], bases: tuple[str, ...]
) -> tuple[tuple[str, ...], frozenset[str]]:
    """Lines computing the given decay bases from tau and inv_T (spec §2.6), and the
    symbols they read; cached, since few combinations of bases occur."""
    key = (id(templates), bases)
    hit = _BASES_CACHE.get(key)
    if hit is not None:
        return hit
    sub = _Emitter(templates, {}, [], prefix="s_")  # the prefix keeps body names free
    for b in bases:
        expr = ops.BASES[b].expr
        atom, _ = sub.emit(expr)
        if sub.lines and sub.lines[-1].startswith(f"{atom} = "):
            # name the base's own line after it rather than adding an alias
            sub.lines[-1] = b + sub.lines[-1][len(atom) :]
            for k, (a, t2) in list(sub.memo.items()):
                if a == atom:
                    sub.memo[k] = (b, t2)
        else:
            sub.lines.append(f"{b} = {atom}")
    hit = (tuple(sub.lines), frozenset(sub.used))
    if len(_BASES_CACHE) < 100_000:
        _BASES_CACHE[key] = hit
    return hit


def emit_source(
    ph: Phenotype, backend: str = "numpy", *, describe: bool = False
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The Python source of the update/init_state/lr functions and the state slots used.

    ``describe`` adds the sympy form of each function as a comment (printing sympy costs
    more than emitting, so the compile path leaves it out).

    Returns:
      (source, slots): ``slots`` lists ``(name, kind)`` for each stateful or random op.
    """
    out = _emit_module(ph, backend, describe)
    return out.source, out.slots


@dataclass(frozen=True)
class _Module:
    source: str
    slots: tuple[tuple[str, str], ...]
    reads_w: bool


def _emit_module(ph: Phenotype, backend: str, describe: bool) -> _Module:
    templates = BACKENDS[backend]
    moments = {m: sympy.Rational(b) for m, b in ph.betas}
    counter: dict[str, int] = {}
    slots: list[tuple[str, str]] = []

    body = _Emitter(templates, counter, slots)
    atom, tensor = body.emit(ph.update)
    result = body.as_array(atom, tensor)
    body_lines = body.prologue(moments) + body.lines

    sched = _Emitter(templates, counter, [])
    lr_atom, lr_tensor = sched.emit(ph.lr)
    if lr_tensor or sched.slots:
        raise EmitError("the LR multiplier must be a stateless function of tau")
    sched_lines = sched.prologue({}) + sched.lines

    zeros = templates["zeros_like"].format(like="g")
    init = ", ".join(f"{k!r}: {zeros}" for k in body.state_keys)

    def block(lines: list[str]) -> str:
        return "".join(f"    {line}\n" for line in lines)

    head_u = f"# update direction: {_short(ph.update)}\n" if describe else ""
    head_lr = f"# LR-schedule multiplier: {_short(ph.lr)}\n" if describe else ""
    src = (
        f"{head_u}def update(g, w, state, t, tau, inv_T, rt):\n"
        f"{block(body_lines)}    return {result}\n\n\n"
        "def init_state(g, rt):\n"
        f"    return {{{init}}}\n\n\n"
        f"{head_lr}def lr(tau, inv_T, rt):\n"
        f"{block(sched_lines)}    return {lr_atom}\n"
    )
    return _Module(src, tuple(slots), "w" in body.used)


def _short(expr: sympy.Basic, limit: int = 200) -> str:
    text = str(expr).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------- compiling


@dataclass(eq=False)
class Compiled:
    """The compiled functions of one phenotype (see the module docstring for signatures).

    ``memo`` holds per-function caches of callers (probe outputs, fingerprints), so work
    that depends only on the phenotype is done once per distinct phenotype.
    """

    backend: str
    source: str
    slots: tuple[tuple[str, str], ...]
    update: Callable[..., Any]
    init_state: Callable[..., dict[str, Any]]
    lr: Callable[..., Any]
    lr_is_one: bool
    reads_w: bool  # whether ``update`` reads its ``w`` argument
    memo: dict[str, Any] = field(default_factory=dict)


_CACHE_SIZE = 20_000
_cache: OrderedDict[tuple[str, sympy.Expr, sympy.Expr, tuple[tuple[str, str], ...]], Compiled] = (
    OrderedDict()
)
_cache_lock = threading.Lock()


def compile_phenotype(ph: Phenotype, backend: str = "numpy") -> Compiled:
    """Emit and compile a phenotype's functions, cached by its sympy content (LRU)."""
    key = (backend, ph.update, ph.lr, ph.betas)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    module = _emit_module(ph, backend, False)
    source, slots = module.source, module.slots
    # The source is produced by this module from the op table and a parsed phenotype; no
    # text supplied by a user reaches it, and it runs with no builtins at all.
    namespace: dict[str, Any] = {"__builtins__": {}}
    exec(compile(source, f"<nos.symbolic.emit:{backend}>", "exec"), namespace)
    out = Compiled(
        backend,
        source,
        slots,
        namespace["update"],
        namespace["init_state"],
        namespace["lr"],
        ph.lr == S.One,
        module.reads_w,
    )
    with _cache_lock:
        _cache[key] = out
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return out


def compile_candidate(candidate: Any, backend: str = "numpy") -> Compiled:
    """:func:`compile_phenotype` of ``candidate.phenotype``."""
    return compile_phenotype(candidate.phenotype, backend)
