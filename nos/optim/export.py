"""Standalone export: one Python file, importing only torch, with a ``torch.optim.Optimizer``.

The update function is written by the same emitter as the in-search step (:mod:`nos.symbolic.emit`,
spelling table ``torch_export`` of :mod:`nos.optim.runtime`), so the exported class computes
what was searched: per parameter tensor, the moments and stateful ops (spec §2.2-§2.3),
the decays of tau = t/T (spec §2.6), the base warmup-hold-cosine schedule and cyclical
momentum (spec §2.7), the LR-schedule gene (spec §2.8) and the momentum form (spec §2.5).
Dropout masks are drawn in the same order from a generator seeded like
``SymbolicOptimizer``'s, so the two agree step for step.

The emitted update is split here (by reading it with :mod:`ast`, never running it) into

* ``_scalars(tau, inv_T)``: every sub-expression that depends on tau and 1/T only (decays,
  constants), evaluated on float64 CPU tensors for a block of steps at once, so that a step
  reads them as Python floats: no tensor is built on the parameters' device per step, and
  none in float64;
* ``_update(g, w, state, unbias, sc, noise)``: the tensor part, with the bias corrections
  ``1 - beta^(t+1)`` passed in as numbers (``unbias``) computed from the tensor's own step.

The tensor part then runs its ops in place on temporaries it no longer needs (the same
kernels, so the same bits), and computes once what the moment updates and the body share.

The exported class steps a group in one of three ways: a multi-tensor path (``foreach``,
the default) that runs the update once per cache-sized flat bucket of the group's tensors;
a plain loop over the tensors (``foreach=False``); and, opt-in, a ``torch.compile``d loop
that fuses each tensor's update into one kernel (``compile=True``; there ``tanh`` and
``i1e`` take forms the compiler vectorises). ``tools/bench_export.py`` measures them.
"""

from __future__ import annotations

import ast
import copy
import functools
import re
import string
import textwrap
from dataclasses import dataclass
from typing import Any

from nos.errors import NosError
from nos.optim import runtime as backend_torch  # noqa: F401  (registers the torch_export spelling table)
from nos.symbolic.emit import emit_source
from nos.symbolic.genome import Candidate

__all__ = ["class_name_for", "render_module"]

_WIDTH = 95

_HELPERS = {
    "_sign(": '''

def _sign(x):
    """sign(x) with NaN kept, as numpy's (torch.sign maps NaN to 0): clamp(x, 0, 0) is 0,
    or NaN where x is NaN, and costs less than torch.where."""
    return torch.sign(x).add_(torch.clamp(x, 0.0, 0.0))
''',
    "_tanh(": '''

def _tanh(x):
    """tanh for torch.compile, whose tanh kernel is slow on CPU: below float64, the rational
    fit c P(c^2) / Q(c^2) of tanh for c = clamp(x, -9, 9) (tanh(9) is 1 in float32), from
    _TANH_P and _TANH_Q; within 4e-7 relative of tanh."""
    if x.dtype == torch.float64:
        return torch.tanh(x)
    c = torch.clamp(x, -9.0, 9.0)
    y = c * c
    p, q = _TANH_P[-1], _TANH_Q[-1]
    for a, b in zip(_TANH_P[-2::-1], _TANH_Q[-2::-1], strict=True):
        p, q = p * y + a, q * y + b
    return torch.clamp(c * p / q, -1.0, 1.0)


# coefficients of x^(2k), k = 0..4: a least-squares fit of the relative error on (0, 9]
_TANH_P = $tanh_p
_TANH_Q = $tanh_q
''',
    "_i1e(": '''

def _i1e(x):
    """i1e for torch.compile, which evaluates the library function one element at a time:
    below float64, the rational fit a P(a) / Q(a), a = |x|, of i1e for a < 10 (from _I1E_P
    and _I1E_Q), else the asymptotic series (2 pi a)^(-1/2) sum d_k a^-k; within 6e-7
    relative (torch's own float32 i1e: 1e-6)."""
    if x.dtype == torch.float64:
        return torch.special.i1e(x)
    a = torch.abs(x)
    p, q = _I1E_P[-1], _I1E_Q[-1]
    for c in _I1E_P[-2::-1]:
        p = p * a + c
    for c in _I1E_Q[-2::-1]:
        q = q * a + c
    r = 1.0 / a
    s = _I1E_ASYMPTOTIC[-1]
    for d in _I1E_ASYMPTOTIC[-2::-1]:
        s = s * r + d
    large = s * torch.rsqrt(2.0 * torch.pi * a)
    return torch.copysign(torch.where(a < 10.0, a * p / q, large), x)


# coefficients of x^k: a least-squares fit of the relative error on (0, 10]
_I1E_P = $i1e_p
_I1E_Q = $i1e_q
_I1E_ASYMPTOTIC = [1.0]  # d_k = d_(k-1) ((2k-1)^2 - 4) / (8k) for I1, k = 0..6
for _k in range(1, 7):
    _I1E_ASYMPTOTIC.append(_I1E_ASYMPTOTIC[-1] * ((2 * _k - 1) ** 2 - 4) / (8 * _k))
''',
    "_clip(": '''

def _clip(x, y):
    """clip(x, -|y|, |y|), with NaN propagating; either argument may be a number."""
    if not isinstance(y, torch.Tensor):
        bound = abs(y)
        return torch.clamp(x, -bound, bound)
    bound = torch.abs(y)
    if not isinstance(x, torch.Tensor):
        return torch.minimum(torch.clamp_min(-bound, x), bound)
    return torch.minimum(torch.maximum(x, -bound), bound)
''',
    "_clip_norm(": '''

def _clip_norm(x):
    """Rescale the tensor so that its L2 norm is at most 1."""
    return x * torch.clamp_max(1.0 / torch.sqrt((x * x).sum()), 1.0)
''',
    "_dropout(": '''

def _dropout(x, rate, u):
    """Keep entries where the uniform draw u >= rate, scaled by 1/(1 - rate)."""
    return torch.where(u >= rate, x / (1.0 - rate), 0.0 * x)
''',
}


@functools.cache
def _rational_fit(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Coefficients of f(x) ~ x P(v) / Q(v), Q(0) = 1, for the compiled step's forms:
    tanh with v = x^2 on 0 < x <= 9 (degrees 4 and 4 in v), i1e with v = x on
    0 < x <= 10 (degrees 5 and 6). Least squares of the relative error, linearised and
    reweighted by 1/Q (Sanathanan-Koerner iterations) in the scaled variable v / max(v);
    rounded to 12 digits, so that the exported text does not depend on the BLAS."""
    import numpy as np
    import scipy.special

    fn, top, square, n_p, n_q = {
        "tanh": (np.tanh, 9.0, True, 5, 5),
        "i1e": (scipy.special.i1e, 10.0, False, 6, 7),
    }[name]
    x = np.concatenate([np.linspace(1e-5, 1.0, 6000), np.linspace(1.0, top, 20000)])
    f = fn(x)
    v = x * x if square else x
    scale = top * top if square else top
    u = v / scale
    weight = np.ones_like(x)
    for _ in range(50):
        cols = [x * u**k for k in range(n_p)] + [-f * u**k for k in range(1, n_q)]
        w = 1.0 / (f * weight)
        sol = np.linalg.lstsq(np.stack(cols, 1) * w[:, None], f * w, rcond=None)[0]
        weight = np.abs(np.polyval(np.concatenate([[1.0], sol[n_p:]])[::-1], u))
    p = sol[:n_p] / scale ** np.arange(n_p)
    q = np.concatenate([[1.0], sol[n_p:]]) / scale ** np.arange(n_q)
    return tuple(float(f"{c:.12g}") for c in p), tuple(float(f"{c:.12g}") for c in q)


def class_name_for(candidate: Candidate) -> str:
    """A default class name: the zoo entry's (``Opt10``) or ``EvolvedOptimizer``."""
    name = getattr(candidate, "name", "")
    if name:
        parts = re.split(r"[^A-Za-z0-9]+", name)
        return "".join(p[:1].upper() + p[1:] for p in parts if p)
    return "EvolvedOptimizer"


def _wrap(line: str, indent: str) -> list[str]:
    """Break a long ``name = expression`` line inside parentheses at spaces."""
    if len(indent) + len(line) <= _WIDTH or " = " not in line:
        return [indent + line]
    name, expr = line.split(" = ", 1)
    inner = indent + "    "
    body = textwrap.wrap(
        expr, width=_WIDTH - len(inner), break_long_words=False, break_on_hyphens=False
    )
    return [f"{indent}{name} = ("] + [inner + b for b in body] + [f"{indent})"]


def _function(header: str, doc: str, lines: list[str]) -> str:
    """A module-level function from its header, its docstring and its body lines."""
    doc_lines = textwrap.wrap(doc, width=_WIDTH - 4)
    doc_lines[0] = '"""' + doc_lines[0]
    doc_lines[-1] += '"""'
    out = [header] + ["    " + line for line in doc_lines]
    for line in lines:
        out.extend(_wrap(line, "    "))
    return "\n".join(out) + "\n"


def _split_functions(source: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for chunk in re.split(r"\n(?=def )", source.strip()):
        name = re.match(r"def (\w+)\(", chunk)
        if name:
            parts[name.group(1)] = chunk
    return parts


# ------------------------------------------------------------ splitting the emitted update

# the bias corrections of the moment and ema templates of EXPORT_TEMPLATES
_UNBIAS = re.compile(r"\(1\.0 - ([0-9.e+-]+) \*\* \(t \+ 1\)\)")
_TENSOR, _LOCAL, _SCALAR = 2, 1, 0  # kinds of a value, ordered: tensor wins over the rest
_PROGRESS = ("tau", "inv_T")  # read by _scalars only: a tensor statement gets a name
_CLAMP = {"torch.maximum": "torch.clamp_min", "torch.minimum": "torch.clamp_max"}


def _new_tensor_literal(node: ast.AST) -> ast.expr | None:
    """The number of a ``g.new_tensor(NUMBER)`` call (the emitter's literal_arg), else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "new_tensor"
        and isinstance(node.func.value, ast.Name)
        and len(node.args) == 1
        and not node.keywords
    ):
        return node.args[0]
    return None


def _is_leaf(node: ast.AST) -> bool:
    """Values that are never worth naming: names, numbers and torch constants."""
    if isinstance(node, ast.Name | ast.Constant | ast.Subscript):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return True
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id == "torch"
    return _new_tensor_literal(node) is not None


def _float64(node: ast.expr) -> ast.expr:
    """``torch.tensor(NUMBER, dtype=torch.float64)``: a literal argument in scalar code."""
    return ast.Call(
        func=ast.Attribute(value=ast.Name("torch", ast.Load()), attr="tensor", ctx=ast.Load()),
        args=[node],
        keywords=[
            ast.keyword(
                "dtype",
                ast.Attribute(value=ast.Name("torch", ast.Load()), attr="float64", ctx=ast.Load()),
            )
        ],
    )


class _ScalarLiterals(ast.NodeTransformer):
    """Scalar code runs on float64 CPU tensors: ``g.new_tensor(c)`` becomes one."""

    def visit_Call(self, node: ast.Call) -> ast.expr:
        lit = _new_tensor_literal(node)
        if lit is not None:
            return _float64(lit)
        self.generic_visit(node)
        return node


@dataclass
class _Split:
    scalar_lines: list[str]  # body of _scalars(tau, inv_T)
    outputs: list[str]  # the names _scalars returns, in order
    tensor_lines: list[str]  # body of _update after unpacking sc
    result: str
    betas: list[str]
    reads_w: bool
    compiled_lines: list[str] | None  # _update with the compiler's forms, if they differ
    compiled_result: str


class _Splitter:
    """Sort the emitted update's statements into scalar code (functions of tau and 1/T) and
    tensor code, moving every scalar sub-expression of a tensor statement into the scalar
    code, so that tensor statements combine tensors with plain names and numbers only."""

    def __init__(self) -> None:
        self.kinds: dict[str, int] = {
            "g": _TENSOR,
            "w": _TENSOR,
            "t": _LOCAL,
            "tau": _SCALAR,
            "inv_T": _SCALAR,
        }
        self.scalar: list[ast.stmt] = []
        self.tensor: list[ast.stmt] = []
        self.n_hoisted = 0

    def kind(self, node: ast.AST) -> int:
        return self.kind_of(self.kinds, node)

    @staticmethod
    def kind_of(kinds: dict[str, int], node: ast.AST) -> int:
        """Tensor, local (unbias) or scalar: what a value of the emitted code is."""
        kind = _Splitter.kind_of
        if isinstance(node, ast.Name):
            return kinds.get(node.id, _SCALAR)  # "torch" and the like
        if isinstance(node, ast.Constant):
            return _SCALAR
        if isinstance(node, ast.Subscript):
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("state", "noise"):
                return _TENSOR
            if isinstance(base, ast.Name) and base.id == "unbias":
                return _LOCAL
            return max(kind(kinds, base), kind(kinds, node.slice))
        if _new_tensor_literal(node) is not None:
            return _SCALAR
        if isinstance(node, ast.Attribute):
            return kind(kinds, node.value)
        if isinstance(node, ast.Call):
            found = [kind(kinds, node.func)]
            found += [kind(kinds, a) for a in node.args]
            found += [kind(kinds, k.value) for k in node.keywords]
            return max(found)
        if isinstance(node, ast.BinOp):
            return max(kind(kinds, node.left), kind(kinds, node.right))
        if isinstance(node, ast.UnaryOp):
            return kind(kinds, node.operand)
        raise NosError(f"cannot export emitted code: unexpected {ast.unparse(node)!r}")

    def hoist(self, node: ast.expr) -> ast.expr:
        """Replace the maximal scalar sub-expressions of a tensor expression by names."""
        if self.kind(node) == _SCALAR:
            lit = _new_tensor_literal(node)
            if lit is not None:
                return lit  # a plain number works wherever a tensor meets it
            if _is_leaf(node) and not (isinstance(node, ast.Name) and node.id in _PROGRESS):
                return node
            name = f"_k{self.n_hoisted}"
            self.n_hoisted += 1
            self.scalar.append(
                ast.Assign(targets=[ast.Name(name, ast.Store())], value=node, lineno=0)
            )
            self.kinds[name] = _SCALAR
            return ast.Name(name, ast.Load())
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and self.kind(node.func.value) == _TENSOR:
                node.func.value = self.hoist(node.func.value)  # a method chain on a tensor
            node.args = [self.hoist(a) for a in node.args]
            for k in node.keywords:
                k.value = self.hoist(k.value)
            return self._clamp(node)
        if isinstance(node, ast.BinOp):
            node.left, node.right = self.hoist(node.left), self.hoist(node.right)
        elif isinstance(node, ast.UnaryOp):
            node.operand = self.hoist(node.operand)
        return node

    def _clamp(self, node: ast.Call) -> ast.Call:
        """torch.maximum/minimum of a tensor and a number: torch.clamp_min/clamp_max (same
        NaN propagation), since torch.maximum takes tensors only."""
        fn = ast.unparse(node.func)
        if fn not in _CLAMP or len(node.args) != 2:
            return node
        a, b = node.args
        if self.kind(a) == _TENSOR and self.kind(b) != _TENSOR:
            args = [a, b]
        elif self.kind(b) == _TENSOR and self.kind(a) != _TENSOR:
            args = [b, a]
        else:
            return node
        module, attr = _CLAMP[fn].split(".")
        node.func = ast.Attribute(value=ast.Name(module, ast.Load()), attr=attr, ctx=ast.Load())
        node.args = args
        return node

    def split(self, source: str) -> _Split:
        betas: list[str] = []

        def unbias(m: re.Match[str]) -> str:
            if m.group(1) not in betas:
                betas.append(m.group(1))
            return f"unbias[{betas.index(m.group(1))}]"

        fn = ast.parse(_UNBIAS.sub(unbias, source)).body[0]
        assert isinstance(fn, ast.FunctionDef)
        result: ast.expr | None = None
        for stmt in fn.body:
            if isinstance(stmt, ast.Return) and stmt.value is not None:
                result = self.hoist(stmt.value)
                continue
            if not (
                isinstance(stmt, ast.Assign)
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                raise NosError(f"cannot export emitted code: {ast.unparse(stmt)!r}")
            name = stmt.targets[0].id
            if self.kind(stmt.value) == _SCALAR:
                self.scalar.append(stmt)
                self.kinds[name] = _SCALAR
            else:
                stmt.value = self.hoist(stmt.value)
                self.tensor.append(stmt)
                self.kinds[name] = _TENSOR
        assert result is not None
        self.tensor, result = _Reuse(self.kinds).run(self.tensor, result)
        used: list[str] = []
        reads_w = False
        for node in [*self.tensor, result]:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                    reads_w = reads_w or sub.id == "w"
                    if self.kinds.get(sub.id) == _SCALAR and sub.id not in used:
                        used.append(sub.id)
        lits = _ScalarLiterals()
        scalar_lines = [ast.unparse(lits.visit(s)) for s in self.scalar]
        tensor_lines, result_text = [ast.unparse(s) for s in self.tensor], ast.unparse(result)
        forms = _CompilerForms()
        compiled = [ast.unparse(forms.visit(copy.deepcopy(s))) for s in self.tensor]
        compiled_result = ast.unparse(forms.visit(copy.deepcopy(result)))
        return _Split(
            scalar_lines,
            used,
            tensor_lines,
            result_text,
            betas,
            reads_w,
            compiled if forms.changed else None,
            compiled_result,
        )


# in-place forms of elementwise ops: same kernels, so results are bit for bit the same
_INPLACE_BIN = {
    ast.Add: "add_",
    ast.Sub: "sub_",
    ast.Mult: "mul_",
    ast.Div: "div_",
    ast.Pow: "pow_",
}
_INPLACE_CALL = {
    f"torch.{f}": f"{f}_"
    for f in ("abs", "exp", "log", "sqrt", "sin", "cos", "tanh", "atan", "asinh", "sigmoid")
}
_INPLACE_CALL.update(
    {
        "torch.special.erf": "erf_",
        "torch.special.erfc": "erfc_",
        "torch.clamp_min": "clamp_min_",
        "torch.clamp_max": "clamp_max_",
        "torch.pow": "pow_",
        "torch.remainder": "remainder_",
    }
)


def _method(obj: ast.expr, name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(
        func=ast.Attribute(value=obj, attr=name, ctx=ast.Load()), args=list(args), keywords=[]
    )


def _names(node: ast.AST) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]


class _Reuse:
    """Fewer passes and temporaries in the tensor code (every op is a pass over memory):

    * a statement that reads only g and w moves to the top, and its expression, where it
      recurs (``g * g`` in a moment update and in the body), reads the name instead;
    * an op whose tensor operand is a temporary dead after it (or the fresh result of an
      inner op) runs in place on that operand: ``a - b + c`` becomes ``a.sub_(b).add_(c)``.

    The state buffers, g, w and the noise are never written: a name that aliases them (the
    moment updates return their buffer) is not a temporary.
    """

    def __init__(self, kinds: dict[str, int]):
        self.kinds = kinds
        self.owned: set[str] = set()  # temporaries made by the tensor code itself
        self.last: dict[str, int] = {}
        self.here = 0
        self.count: dict[str, int] = {}

    def run(self, stmts: list[ast.stmt], result: ast.expr) -> tuple[list[ast.stmt], ast.expr]:
        stmts = self._share(stmts)
        body: list[Any] = [*stmts, result]
        for i, node in enumerate(body):
            for name in _names(node):
                self.last[name] = i
        out: list[ast.stmt] = []
        for i, stmt in enumerate(stmts):
            assert isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name)
            self.here, self.count = i, _counts(stmt.value)
            stmt.value, fresh = self.rewrite(stmt.value)
            if fresh:
                self.owned.add(stmt.targets[0].id)
            out.append(stmt)
        self.here, self.count = len(stmts), _counts(result)
        result, _ = self.rewrite(result)
        return out, result

    def _share(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        pure = [
            s
            for s in stmts
            if isinstance(s, ast.Assign)
            and set(_names(s.value)) <= {"g", "w"}
            and isinstance(s.value, ast.BinOp)
        ]
        rest = [s for s in stmts if s not in pure]
        for i, s in enumerate(pure):
            assert isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name)
            _Replace(ast.dump(s.value), s.targets[0].id).visit_all(pure[i + 1 :] + rest)
        return pure + rest

    def tensor(self, node: ast.AST) -> bool:
        return _Splitter.kind_of(self.kinds, node) == _TENSOR

    def dying(self, node: ast.expr) -> bool:
        return (
            isinstance(node, ast.Name)
            and node.id in self.owned
            and self.last.get(node.id) == self.here
            and self.count.get(node.id) == 1
        )

    def rewrite(self, node: ast.expr) -> tuple[ast.expr, bool]:
        """The expression with in-place ops where allowed, and whether its value is a
        tensor that nothing else refers to (which the caller may then overwrite)."""
        if isinstance(node, ast.Name):
            return node, self.dying(node)
        if isinstance(node, ast.BinOp):
            left, fl = self.rewrite(node.left)
            right, fr = self.rewrite(node.right)
            node.left, node.right = left, right
            op = type(node.op)
            if not self.tensor(node):
                return node, False
            if fl and self.tensor(left) and op in _INPLACE_BIN:
                return _method(left, _INPLACE_BIN[op], right), True
            if fr and self.tensor(right) and op in (ast.Add, ast.Mult):
                return _method(right, _INPLACE_BIN[op], left), True
            if fr and self.tensor(right) and op is ast.Sub:  # a - b == (-b) + a exactly
                return _method(_method(right, "neg_"), "add_", left), True
            return node, True
        if isinstance(node, ast.UnaryOp):
            operand, fo = self.rewrite(node.operand)
            node.operand = operand
            if isinstance(node.op, ast.USub) and fo:
                return _method(operand, "neg_"), True
            return node, self.tensor(node)
        if isinstance(node, ast.Call):
            fresh = []
            for k, arg in enumerate(node.args):
                node.args[k], f = self.rewrite(arg)
                fresh.append(f)
            for kw in node.keywords:
                kw.value, _ = self.rewrite(kw.value)
            func = ast.unparse(node.func)
            if isinstance(node.func, ast.Attribute) and func.split(".")[0] != "torch":
                # a method: mul_/add_ return their receiver, an alias unless it is fresh
                value, fv = self.rewrite(node.func.value)
                node.func.value = value
                return node, fv and node.func.attr.endswith("_")
            if any(kw.arg == "out" for kw in node.keywords):
                return node, False
            if func in _INPLACE_CALL and node.args and fresh[0] and self.tensor(node.args[0]):
                return _method(node.args[0], _INPLACE_CALL[func], *node.args[1:]), True
            return node, self.tensor(node)
        return node, False


class _CompilerForms(ast.NodeTransformer):
    """tanh and i1e (also the in-place tanh_) as the exported file's _tanh and _i1e, which
    torch.compile vectorises on CPU where its own kernels are slow."""

    def __init__(self) -> None:
        self.changed = False

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        func = ast.unparse(node.func)
        if func in ("torch.tanh", "torch.special.i1e"):
            arg = node.args[0]
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "tanh_":
            func, arg = "torch.tanh", node.func.value
        else:
            return node
        self.changed = True
        name = "_tanh" if func == "torch.tanh" else "_i1e"
        return ast.Call(func=ast.Name(name, ast.Load()), args=[arg], keywords=[])


def _counts(node: ast.AST) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in _names(node):
        out[name] = out.get(name, 0) + 1
    return out


class _Replace(ast.NodeTransformer):
    """Replace every sub-expression equal to ``dump`` by the name ``name``."""

    def __init__(self, dump: str, name: str):
        self.dump, self.name = dump, name

    def visit_all(self, stmts: list[ast.stmt]) -> None:
        for s in stmts:
            self.visit(s)

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, ast.expr) and ast.dump(node) == self.dump:
            return ast.Name(self.name, ast.Load())
        return super().generic_visit(node)


def _lr_lines(source: str) -> tuple[list[str], str]:
    """The LR-schedule gene's body and result, as scalar code on float64 CPU tensors."""
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.FunctionDef)
    lits = _ScalarLiterals()
    lines, result = [], "1.0"
    for stmt in fn.body:
        stmt = lits.visit(stmt)
        if isinstance(stmt, ast.Return) and stmt.value is not None:
            result = ast.unparse(stmt.value)
        else:
            lines.append(ast.unparse(stmt))
    return lines, result


def _state_keys(source: str) -> tuple[str, ...]:
    fn = ast.parse(source).body[0]
    assert isinstance(fn, ast.FunctionDef)
    ret = fn.body[-1]
    assert isinstance(ret, ast.Return) and isinstance(ret.value, ast.Dict)
    return tuple(str(ast.literal_eval(k)) for k in ret.value.keys if k is not None)


# --------------------------------------------------------------------------- docstrings


def _docstring(candidate: Candidate, cls: str) -> str:
    from nos.symbolic.display import latex
    from nos.symbolic.keys import canonical_key

    ph = candidate.phenotype
    grammar = candidate.grammar
    momentum = {
        "none": "none: w <- w + sigma eta_t U",
        "mom": "mom: m <- mu_t m + sigma eta_t U; w <- w + m",
        "nest": "nest: m <- mu_t m + sigma eta_t U; w <- w + m + sigma eta_t U "
        "(nesterov='search') or w <- w + mu_t m + sigma eta_t U "
        "(nesterov='keras')",
    }[ph.momentum]
    lines = [
        f"{cls}: an optimizer found by symbolic search (Morgan & Hougen 2024 space).",
        "",
        "Update direction U, elementwise per parameter tensor:",
        "",
        f"    U = {ph.update}",
        "",
        f"LaTeX: {latex(candidate)}",
        "",
        f"Momentum {momentum}; sigma = -1 (+1 with flip).",
        "eta_t: linear warmup over `warmup` steps to `lr`, a hold of `hold` steps, then a",
        "half cosine to 0 at `total_steps` (schedule='cosine'), or `lr` itself",
        "(schedule='constant')" + ("." if ph.lr == 1 else f", times the LR multiplier {ph.lr}."),
        "mu_t: 0.95 -> 0.85 over the warmup, 0.85 during the hold, back to 0.95 at the end",
        "(momentum='cyclic'), or a constant.",
        "",
        f"Candidate: {candidate.text}",
        f"Grammar: {grammar.name} (sha256 {grammar.digest}); "
        f"canonical key: {canonical_key(candidate)}",
    ]
    out = []
    for line in lines:
        out.extend(
            textwrap.wrap(
                line,
                width=_WIDTH - 4,
                break_long_words=False,
                break_on_hyphens=False,
                subsequent_indent="    " if line.startswith("    ") else "",
            )
            or [""]
        )
    text = "\n".join(out).replace('"""', "'''")
    return f'r"""{text}\n"""' if "\\" in text else f'"""{text}\n"""'


_CLASS_DOC = """
Options (torch.optim conventions; each may be overridden per parameter group, except
nesterov, seed and compile):

* lr, total_steps, warmup, hold, schedule, momentum: the schedules above. total_steps is
  required by the cosine schedule, by cyclic momentum and by an update or LR gene that reads
  tau = t/T.
* flip: step along +U instead of -U (the sign the integrity check chose).
* weight_decay: decoupled, AdamW-style: w <- w - lr_t * weight_decay * w before each step,
  with lr_t the scheduled learning rate (LR multiplier included, sign not).
* maximize: ascend the objective (the gradient is negated, as in torch.optim).
* foreach: the multi-tensor path (default, None or True): the group's tensors are stepped in
  cache-sized flat buckets (small tensors gathered, large ones sliced) with one call of the
  update per bucket, its state kept in one flat buffer per group (state[p] holds views);
  False: a plain loop over the tensors. Candidates with a per-tensor reduction
  (clip_norm) and non-contiguous parameters always take the loop.
* compile: run each step through torch.compile (each tensor's update fused into one
  kernel; the first steps compile); if compiling fails, a warning is issued and the eager
  step is used. Compiled, tanh and i1e take forms the compiler vectorises (within 1e-6
  relative of the library functions); results agree with the eager step to rounding.
* seed: seed of the generator that draws dropout masks (its state is in state_dict()).

Step counts: the schedules (eta_t, mu_t, and tau = t/T of the decays and of the LR gene)
follow the group's step count t, group["step"], advanced by every step() in which the group
has a gradient; past total_steps they hold their last value. The bias corrections
1 - beta^(k+1) of the moment estimates (and of ema) count each parameter's own steps k,
state["step"], as torch.optim does: a parameter that first receives a gradient late is
corrected from its own first step.
"""

_MODULE = string.Template('''$header

import torch

MOMENTUM = $momentum  # momentum form of the candidate's gene
BETAS = $betas  # EMA rates whose bias corrections 1 - beta^(k+1) the update reads
SCALARS = $scalars  # functions of tau = t/T and 1/T that the update reads (see _scalars)
STATE_KEYS = $state_keys  # per-parameter buffers of the moments and stateful ops
DROPOUT_SLOTS = $dropout  # uniform draws per step, one tensor per slot and parameter
NEEDS_TOTAL_STEPS = $needs_total  # the update or the LR gene reads tau = t/T
PER_TENSOR = $per_tensor  # the update reduces over whole tensors (clip_norm)
READS_W = $reads_w  # the update reads the weights
_BLOCK = 1024  # steps per cached block of schedule values
_BUCKET_BYTES = 1 << 19  # size of one bucket of the multi-tensor path (fits in L2 / L3)
$helpers

$scalars_fn

$lr_fn

$update_fn

def _unbias(k):
    """The bias corrections 1 - beta^(k+1) of BETAS at a parameter's own step k."""
    return tuple(1.0 - beta ** (k + 1) for beta in BETAS)


def _schedule_block(total, warmup, hold, cosine, cyclic, start):
    """eta_t / lr, mu_t, the LR multiplier and SCALARS for the steps start, start + 1, ...
    of one block, as lists of floats: one vectorised float64 evaluation per block."""
    if total is None:
        ts = torch.zeros(1, dtype=torch.float64)
        tau, inv_t = ts, torch.zeros((), dtype=torch.float64)
    else:
        ts = torch.arange(start, min(start + _BLOCK, total), dtype=torch.float64)
        tau, inv_t = ts / total, torch.tensor(1.0 / total, dtype=torch.float64)
    n = len(ts)

    def values(x):
        return torch.as_tensor(x, dtype=torch.float64).expand(n).tolist()

    factor = momentum = None
    if cosine or cyclic:
        up = ts / warmup if warmup else torch.ones_like(ts)
        down = (ts - warmup - hold) / (total - warmup - hold)
        if cosine:
            cos = 0.5 * (1.0 + torch.cos(torch.pi * down))
            held = torch.where(ts <= warmup + hold, 1.0, cos)
            factor = values(torch.where(ts < warmup, up, held))
        if cyclic:
            rising = 0.85 + (0.95 - 0.85) * down
            falling = 0.95 - (0.95 - 0.85) * up
            held = torch.where(ts <= warmup + hold, 0.85, rising)
            momentum = values(torch.where(ts < warmup, falling, held))
    scalars = [values(x) for x in _scalars(tau, inv_t)]
    return factor, momentum, values(_lr_multiplier(tau, inv_t)), scalars


def _apply(p, u, m, eta, mu, keras):
    """The weight step of one tensor (or one flat bucket): w += eta U, or with momentum."""
    if MOMENTUM == "none":
        p.add_(u, alpha=eta)
        return
    m.mul_(mu).add_(u, alpha=eta)
    if MOMENTUM == "mom":
        p.add_(m)
        return
    p.add_(m, alpha=mu if keras else 1.0)
    p.add_(u, alpha=eta)


def _apply_many(ps, sizes, u, m, eta, mu, keras):
    """_apply for the pieces ps of a bucket whose update u and momentum m are flat."""
    if MOMENTUM == "none":
        torch._foreach_add_(ps, u.split(sizes), alpha=eta)
        return
    m.mul_(mu).add_(u, alpha=eta)
    if MOMENTUM == "mom":
        torch._foreach_add_(ps, m.split(sizes))
        return
    torch._foreach_add_(ps, m.split(sizes), alpha=mu if keras else 1.0)
    torch._foreach_add_(ps, u.split(sizes), alpha=eta)


def _group_step(params, grads, states, moms, nums, noise, maximize, decays, keras):
    """One group's step as torch.compile sees it: a loop over the tensors, unrolled, so that
    each tensor's update becomes one fused kernel. nums holds eta, mu, the weight-decay
    factor, SCALARS and then len(BETAS) bias corrections per tensor."""
    eta, mu, decay = nums[0], nums[1], nums[2]
    sc = tuple(nums[3 + j] for j in range(len(SCALARS)))
    first, nb = 3 + len(SCALARS), len(BETAS)
    for i, p in enumerate(params):
        g = -grads[i] if maximize else grads[i]
        if decays:
            p.mul_(decay)
        unbias = tuple(nums[first + nb * i + j] for j in range(nb))
        u = _update_compiled(g, p, states[i], unbias, sc, noise[i] if noise is not None else None)
        change = u * eta
        if MOMENTUM == "none":
            p.add_(change)
            continue
        m = moms[i]
        m.mul_(mu).add_(change)
        if MOMENTUM == "mom":
            p.add_(m)
        elif keras:
            p.add_(m * mu + change)
        else:
            p.add_(m + change)


def _check_group(group):
    """Resolve a group's schedule and momentum defaults and check its values as torch.optim
    does: a ValueError that names the bad value."""
    lr, wd = group["lr"], group["weight_decay"]
    if not 0.0 <= lr < float("inf"):
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= wd < float("inf"):
        raise ValueError(f"Invalid weight_decay value: {wd}")
    total, warmup, hold = group["total_steps"], group["warmup"], group["hold"]
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total <= 0):
        raise ValueError(f"Invalid total_steps: {total!r} (expected a positive integer or None)")
    for name, value in (("warmup", warmup), ("hold", hold)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"Invalid {name}: {value!r} (expected an integer >= 0)")
    if total is not None and warmup > total:
        raise ValueError(f"Invalid warmup: {warmup} is larger than total_steps={total}")
    if group["schedule"] is None:
        group["schedule"] = "cosine" if total is not None else "constant"
    if group["schedule"] not in ("cosine", "constant"):
        raise ValueError(f"Invalid schedule: {group['schedule']!r} (cosine or constant)")
    if group["momentum"] is None:
        group["momentum"] = "cyclic" if group["schedule"] == "cosine" else 0.9
    mu = group["momentum"]
    if mu != "cyclic" and (isinstance(mu, str) or not 0.0 <= mu < float("inf")):
        raise ValueError(f"Invalid momentum value: {mu!r} ('cyclic' or a number >= 0)")
    cyclic = mu == "cyclic" and MOMENTUM != "none"
    if total is None and (group["schedule"] == "cosine" or NEEDS_TOTAL_STEPS or cyclic):
        raise ValueError("total_steps is required by this optimizer's schedules")
    shaped = group["schedule"] == "cosine" or mu == "cyclic"
    if total is not None and shaped and warmup + hold >= total:
        raise ValueError(
            f"Invalid warmup and hold: warmup + hold must be < total_steps, got "
            f"warmup={warmup}, hold={hold}, total_steps={total}"
        )
    group.setdefault("step", 0)


class $cls(torch.optim.Optimizer):
    $doc

    def __init__(self, params, lr=1e-3, total_steps=None, warmup=0, hold=0,
                 schedule=$schedule, momentum=$momentum_default, nesterov=$nesterov,
                 flip=$flip, weight_decay=0.0, maximize=False, foreach=None,
                 compile=False, seed=0):
        if nesterov not in ("search", "keras"):
            raise ValueError(f"Invalid nesterov form: {nesterov!r} (search or keras)")
        defaults = dict(lr=lr, total_steps=total_steps, warmup=warmup, hold=hold,
                        schedule=schedule, momentum=momentum, flip=flip,
                        weight_decay=weight_decay, maximize=maximize, foreach=foreach)
        self.nesterov = nesterov
        self.seed = seed
        self.compile = compile
        self._reset_caches()
        super().__init__(params, defaults)

    def _reset_caches(self):
        self._generators = {}  # device -> dropout generator
        self._layouts = {}  # group index -> (key, flat buckets of the multi-tensor path)
        self._blocks = {}  # schedule settings and block start -> block of values
        self._compiled = None
        self._inputs = {}  # group index -> (key, state dicts, inputs of the compiled step)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        try:
            _check_group(self.param_groups[-1])
        except ValueError:
            self.param_groups.pop()
            raise

    def __getstate__(self):
        state = super().__getstate__()
        state.update(nesterov=self.nesterov, seed=self.seed, compile=self.compile)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("nesterov", $nesterov)
        self.__dict__.setdefault("seed", 0)
        self.__dict__.setdefault("compile", False)
        for group in self.param_groups:
            group.setdefault("step", 0)
            group.setdefault("weight_decay", 0.0)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
        self._reset_caches()

    def state_dict(self):
        """torch.optim's state_dict, plus the dropout generators' states under "generators"."""
        out = super().state_dict()
        out["generators"] = {key: gen.get_state() for key, gen in self._generators.items()}
        return out

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        generators = state_dict.pop("generators", {})
        super().load_state_dict(state_dict)
        self._reset_caches()
        for key, value in generators.items():
            gen = torch.Generator(device=key)
            gen.set_state(value.cpu())
            self._generators[key] = gen

    def _generator(self, device):
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = self._generators[key] = torch.Generator(device=device)
            gen.manual_seed(self.seed)
        return gen

    def _values(self, group):
        """eta (signed), mu, the weight-decay factor and SCALARS at the group's step."""
        total = group["total_steps"]
        t = group["step"] if total is None else min(group["step"], total - 1)
        cosine = group["schedule"] == "cosine"
        cyclic = group["momentum"] == "cyclic" and total is not None
        start = 0 if total is None else t - t % _BLOCK
        key = (total, group["warmup"], group["hold"], cosine, cyclic, start)
        block = self._blocks.get(key)
        if block is None:
            if len(self._blocks) > 64:
                self._blocks.clear()
            block = self._blocks[key] = _schedule_block(*key)
        i = 0 if total is None else t - start
        factor, momentum, multiplier, scalars = block
        lr_t = (group["lr"] * factor[i] if cosine else float(group["lr"])) * multiplier[i]
        if cyclic:
            mu = momentum[i]
        else:
            mu = 0.0 if group["momentum"] == "cyclic" else float(group["momentum"])
        wd = group["weight_decay"]
        decay = 1.0 - lr_t * wd if wd else 1.0
        return (lr_t if group["flip"] else -lr_t), mu, decay, tuple(s[i] for s in scalars)

    def _fresh(self, p):
        state = {key: torch.zeros_like(p, memory_format=torch.preserve_format)
                 for key in STATE_KEYS}
        if MOMENTUM != "none":
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] = 0
        return state

    @torch.no_grad()
    def step(self, closure=None):
        """One optimizer step for every group; returns closure() when one is given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            params = []
            for p in group["params"]:
                if p.grad is not None:
                    if p.grad.is_sparse:
                        name = type(self).__name__
                        raise RuntimeError(f"{name} does not support sparse gradients")
                    params.append(p)
            if not params:
                continue
            eta, mu, decay, sc = self._values(group)
            noise = None
            if DROPOUT_SLOTS:  # drawn per slot, then per tensor, in parameter order
                noise = {slot: [torch.rand(p.shape, generator=self._generator(p.device),
                                           dtype=p.dtype, device=p.device) for p in params]
                         for slot in DROPOUT_SLOTS}
            done = self.compile and self._step_compiled(
                gi, group, params, eta, mu, decay, sc, noise
            )
            if not done:
                if group["foreach"] is not False and self._multi_ok(params):
                    self._step_multi(gi, group, params, eta, mu, decay, sc, noise)
                else:
                    self._step_loop(group, params, eta, mu, decay, sc, noise)
            group["step"] += 1
        return loss

    @staticmethod
    def _multi_ok(params):
        return not PER_TENSOR and all(p.is_contiguous() for p in params)

    def _step_loop(self, group, params, eta, mu, decay, sc, noise):
        """foreach=False: the update once per tensor."""
        keras, maximize = self.nesterov == "keras", group["maximize"]
        for i, p in enumerate(params):
            state = self.state[p]
            if "step" not in state:
                state.update(self._fresh(p))
            if decay != 1.0:
                p.mul_(decay)
            g = -p.grad if maximize else p.grad
            nz = {slot: noise[slot][i] for slot in DROPOUT_SLOTS} if noise else None
            u = _update(g, p, state, _unbias(state["step"]), sc, nz)
            _apply(p, u, state.get("momentum_buffer"), eta, mu, keras)
            state["step"] += 1

    def _step_multi(self, gi, group, params, eta, mu, decay, sc, noise):
        """The multi-tensor path: the update once per flat bucket of tensors that share a
        device, a dtype and a step count."""
        keras, maximize = self.nesterov == "keras", group["maximize"]
        for members, buckets in self._layout(gi, params):
            unbias = _unbias(self.state[params[members[0]]]["step"])
            for pieces, views, sizes, state, mom in buckets:
                if decay != 1.0:
                    torch._foreach_mul_(views, decay)
                if len(pieces) == 1:
                    i, a, b = pieces[0]
                    g = params[i].grad.reshape(-1)[a:b]
                    g = -g if maximize else g
                    w = views[0] if READS_W else None
                    nz = ({slot: noise[slot][i].view(-1)[a:b] for slot in DROPOUT_SLOTS}
                          if noise else None)
                    _apply(views[0], _update(g, w, state, unbias, sc, nz), mom, eta, mu, keras)
                    continue
                g = torch.cat([params[i].grad.reshape(-1)[a:b] for i, a, b in pieces])
                if maximize:
                    g.neg_()
                w = torch.cat(views) if READS_W else None
                nz = None
                if noise:
                    nz = {slot: torch.cat([noise[slot][i].view(-1)[a:b] for i, a, b in pieces])
                          for slot in DROPOUT_SLOTS}
                u = _update(g, w, state, unbias, sc, nz)
                _apply_many(views, sizes, u, mom, eta, mu, keras)
            for i in members:
                self.state[params[i]]["step"] += 1

    def _layout(self, gi, params):
        """The flat buckets of a group's tensors, rebuilt when the tensors that have a
        gradient, or the way their step counts differ, change."""
        steps = [self.state[p].get("step", 0) for p in params]
        # the buckets hold views of the weights: a new p.data makes new ones
        key = (tuple((id(p), p.data_ptr()) for p in params), tuple(k - steps[0] for k in steps))
        hit = self._layouts.get(gi)
        if hit is not None and hit[0] == key:
            return hit[1]
        parts = {}
        for i, (p, k) in enumerate(zip(params, steps, strict=True)):
            parts.setdefault((p.device, p.dtype, k), []).append(i)
        layout = [(members, self._buckets(params, members)) for members in parts.values()]
        self._layouts[gi] = (key, layout)
        return layout

    def _buckets(self, params, members):
        """Move the state of params[members] into flat buffers (state[p] keeps views) and cut
        them into buckets of at most _BUCKET_BYTES: (pieces (i, start, stop), weight views,
        piece sizes, state slices, momentum slice)."""
        self._inputs.clear()  # state moves into new buffers
        ps = [params[i] for i in members]
        sizes = [p.numel() for p in ps]
        keys = STATE_KEYS + (("momentum_buffer",) if MOMENTUM != "none" else ())
        flat = {}
        for key in keys:
            flat[key] = torch.cat([self.state[p][key].reshape(-1) if key in self.state[p]
                                   else p.new_zeros(p.numel()) for p in ps])
            for p, piece in zip(ps, flat[key].split(sizes), strict=True):
                self.state[p][key] = piece.view(p.shape)
        for p in ps:
            self.state[p].setdefault("step", 0)
        limit = max(1, _BUCKET_BYTES // ps[0].element_size())
        buckets, pieces, start, filled = [], [], 0, 0

        def close():
            views = [params[i].detach().view(-1)[a:b] for i, a, b in pieces]
            state = {key: flat[key][start:start + filled] for key in STATE_KEYS}
            mom = flat["momentum_buffer"][start:start + filled] if MOMENTUM != "none" else None
            buckets.append((pieces, views, [b - a for _, a, b in pieces], state, mom))

        for i, n in zip(members, sizes, strict=True):
            a = 0
            while a < n:
                take = min(n - a, limit - filled)
                pieces.append((i, a, a + take))
                a, filled = a + take, filled + take
                if filled == limit:
                    close()
                    start, pieces, filled = start + filled, [], 0
        if pieces:
            close()
        return buckets

    def _step_compiled(self, gi, group, params, eta, mu, decay, sc, noise):
        """compile=True: the group's step through torch.compile; False if it failed."""
        if self._compiled is None:
            # dynamo's guards already check the inputs' sizes and strides
            self._compiled = torch.compile(_group_step, fullgraph=True, dynamic=False,
                                           options={"size_asserts": False})
        key = tuple(map(id, params))
        hit = self._inputs.get(gi)
        if hit is None or hit[0] != key:  # the inputs' containers, kept while params stay
            for p in params:
                if "step" not in self.state[p]:
                    self.state[p].update(self._fresh(p))
            st = [self.state[p] for p in params]
            states = [{k: s[k] for k in STATE_KEYS} for s in st]
            moms = [s["momentum_buffer"] for s in st] if MOMENTUM != "none" else None
            hit = self._inputs[gi] = (key, st, states, moms)
        _, st, states, moms = hit
        steps = [s["step"] for s in st]
        nums = [eta, mu, decay, *sc]
        if steps.count(steps[0]) == len(steps):
            nums += _unbias(steps[0]) * len(steps)
        else:
            for k in steps:
                nums += _unbias(k)
        if params[0].device.type == "cpu":
            # CPU scalars as one tensor: new values then never recompile; on other devices
            # plain floats reach the kernels as arguments, with no copy to the device
            nums = torch.tensor(nums, dtype=torch.float64)
        nz = None
        if noise:
            nz = [{slot: noise[slot][i] for slot in DROPOUT_SLOTS} for i in range(len(params))]
        try:
            self._compiled(params, [p.grad for p in params], states, moms, nums, nz,
                           bool(group["maximize"]), decay != 1.0, self.nesterov == "keras")
        except Exception as exc:  # any compiler failure: the eager step is still correct
            import warnings  # standard library, only on this path

            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {exc}); "
                          "using the eager step", RuntimeWarning, stacklevel=3)
            self.compile = False
            return False
        for s in st:
            s["step"] += 1
        return True
''')


def _tuple_lines(values: tuple[float, ...]) -> str:
    return "(\n" + "".join(f"    {v!r},\n" for v in values) + ")"


def _tuple(names: tuple[str, ...]) -> str:
    if len(names) == 1:
        return f"({names[0]},)"
    return f"({', '.join(names)})"


def render_module(
    candidate: Candidate, name: str | None = None, *, options: dict[str, Any] | None = None
) -> str:
    """The source of a standalone module defining the optimizer class ``name``.

    ``options`` (default: a zoo candidate's own) sets the class's default ``schedule``,
    ``momentum``, ``nesterov`` and ``flip`` (the sign the integrity check chose).
    """
    cls = name or class_name_for(candidate)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cls):
        raise NosError(f"class name {cls!r} is not a Python identifier")
    opts = dict(getattr(candidate, "options", {}) or {})
    opts.update(options or {})
    ph = candidate.phenotype
    source, slots = emit_source(ph, "torch_export")
    fns = _split_functions(source)
    split = _Splitter().split(fns["update"])
    outputs = tuple(split.outputs)
    scalars_fn = _function(
        "def _scalars(tau, inv_T):",
        "The parts of U that depend on tau = t/T and 1/T only, in the order of SCALARS.",
        [*split.scalar_lines, f"return {_tuple(outputs)}"],
    )
    lr_lines, lr_result = _lr_lines(fns["lr"])
    lr_fn = _function(
        "def _lr_multiplier(tau, inv_T):",
        "The LR-schedule gene: a multiplier of eta_t.",
        [*lr_lines, f"return {lr_result}"],
    )
    unpack = [f"{', '.join(outputs)}{',' if len(outputs) == 1 else ''} = sc"] if outputs else []
    update_fn = _function(
        "def _update(g, w, state, unbias, sc, noise):",
        "U for one tensor or one flat bucket: state is updated in place, unbias comes from "
        "_unbias at the tensor's own step, sc holds SCALARS at the group's step, noise the "
        "dropout draws.",
        [*unpack, *split.tensor_lines, f"return {split.result}"],
    )
    if split.compiled_lines is None:
        compiled_fn = "\n\n_update_compiled = _update  # the compiler's forms change nothing\n"
    else:
        compiled_fn = "\n\n" + _function(
            "def _update_compiled(g, w, state, unbias, sc, noise):",
            "_update as the compiled step runs it: tanh and i1e as _tanh and _i1e.",
            [*unpack, *split.compiled_lines, f"return {split.compiled_result}"],
        )
    update_fn += compiled_fn
    body = scalars_fn + lr_fn + update_fn
    helpers = "".join(code for marker, code in _HELPERS.items() if marker in body)
    for fn in ("tanh", "i1e"):
        if f"_{fn}(" in body:
            fit_p, fit_q = _rational_fit(fn)
            helpers = helpers.replace(f"${fn}_p", _tuple_lines(fit_p))
            helpers = helpers.replace(f"${fn}_q", _tuple_lines(fit_q))
    dropout = tuple(s for s, kind in slots if kind == "random")
    names = {s.name for s in ph.update.free_symbols}
    needs_total = (
        bool(names - {"g", "w", "v", "s", "lam", "v_hat", "s_hat", "lam_hat"}) or ph.lr != 1
    )
    header = _docstring(candidate, cls)
    doc = header[:-3].rstrip("\n") + "\n" + _CLASS_DOC + '"""'
    doc = doc.replace("\n", "\n    ")
    doc = re.sub(r"\n    (?=\n)", "\n", doc)
    betas = tuple(float(b) for b in split.betas)
    module = _MODULE.substitute(
        header=header,
        momentum=repr(ph.momentum),
        betas=repr(betas),
        scalars=repr(outputs),
        state_keys=repr(_state_keys(fns["init_state"])),
        dropout=repr(dropout),
        needs_total=repr(needs_total),
        per_tensor=repr("_clip_norm(" in body),
        reads_w=repr(split.reads_w),
        helpers=("\n" + helpers) if helpers else "",
        scalars_fn="\n" + scalars_fn,
        lr_fn="\n" + lr_fn,
        update_fn="\n" + update_fn,
        cls=cls,
        doc=doc,
        schedule=repr(opts.get("schedule")),
        momentum_default=repr(opts.get("momentum")),
        nesterov=repr(opts.get("nesterov", "search")),
        flip=repr(bool(opts.get("flip", False))),
    )
    module = re.sub(r"\n{4,}", "\n\n\n", module)
    return module
