"""Human views of a candidate: sympy pretty print, LaTeX and an indented tree."""

from __future__ import annotations

import sympy
from deap import gp

from nos.symbolic.genome import Candidate, display_name
from nos.symbolic.ops import EPS

__all__ = ["latex", "pretty", "tree_view"]

_PRETTY_NAMES = {"v_hat": "v̂", "s_hat": "ŝ", "lam_hat": "λ̂", "lam": "λ", "tau": "τ"}
_LATEX_NAMES = {
    "v_hat": r"\hat{v}",
    "s_hat": r"\hat{s}",
    "lam_hat": r"\hat{\lambda}",
    "lam": r"\lambda",
    "tau": r"\tau",
}


_EPS_SYMBOL = sympy.Symbol("eps")


def _momentum_prefix(c: Candidate) -> str:
    return {"none": "", "mom": "momentum: ", "nest": "nesterov: "}[c.momentum.value]


def pretty(c: Candidate) -> str:
    """Multi-line unicode rendering of U (and the LR multiplier when it is not 1)."""
    ph = c.phenotype
    names: dict[sympy.Basic, sympy.Symbol] = {
        s: sympy.Symbol(_PRETTY_NAMES.get(s.name, s.name))
        for s in ph.update.free_symbols | ph.lr.free_symbols
    }
    names[EPS] = sympy.Symbol("ε")
    out: str = f"{_momentum_prefix(c)}U =\n" + sympy.pretty(ph.update.xreplace(names))
    if ph.lr != 1:
        out += "\nLR multiplier =\n" + sympy.pretty(ph.lr.xreplace(names))
    return out


def latex(c: Candidate) -> str:
    """LaTeX of U (``U = ...``), with the LR multiplier appended when present."""
    ph = c.phenotype
    names = {
        s: _LATEX_NAMES[s.name]
        for s in ph.update.free_symbols | ph.lr.free_symbols
        if s.name in _LATEX_NAMES
    }
    names[_EPS_SYMBOL] = r"\epsilon"
    out: str = "U = " + sympy.latex(ph.update.xreplace({EPS: _EPS_SYMBOL}), symbol_names=names)
    if ph.lr != 1:
        out += r", \quad \rho(\tau) = " + sympy.latex(ph.lr, symbol_names=names)
    return out


def tree_view(c: Candidate) -> str:
    """Indented tree of the genome, one node per line."""
    lines = [f"{c.momentum.value} ~"]
    _render(c.update, lines)
    if c.lr is not None:
        lines.append("lr =")
        _render(c.lr, lines)
    return "\n".join(lines)


def _render(tree: gp.PrimitiveTree, lines: list[str]) -> None:
    # Walk the prefix list keeping, for every open ancestor, whether it has more children.
    pending: list[int] = []  # children still to come for each open ancestor
    for node in tree:
        prefix = "".join("│  " if left > 0 else "   " for left in pending[:-1])
        if pending:
            prefix += "├─ " if pending[-1] > 1 else "└─ "
            pending[-1] -= 1
        lines.append("  " + prefix + display_name(node))
        if node.arity:
            pending.append(node.arity)
        else:
            while pending and pending[-1] == 0:
                pending.pop()
