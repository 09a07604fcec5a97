"""The torch backend of the emitter: whole-group optimizer steps, eager or compiled.

The update direction is the one :mod:`nos.symbolic.emit` writes for numpy (spec §2.2-§2.7), run on
torch values through a runtime object :class:`TorchRuntime`. Its spelling table differs
from numpy's only where torch can do better: the moment EMAs and the stateful ops of spec
§2.3 (ids 22-24) update their state buffers in place.

A step acts on a whole parameter group at once, in one of two layouts:

``"foreach"``
    the emitted code runs on :class:`FList` values, lists of tensors whose arithmetic is
    ``torch._foreach_*`` over the group's parameters;
``"flat"``
    the group's gradients (and weights, when the update reads them) are concatenated into
    one contiguous buffer, state buffers are flat too, and every op runs once per group.

Per-tensor reductions (``clip_norm``, spec §2.3 id 20) act on each parameter tensor in both
layouts, as in the reference. ``tools/bench_step.py`` measures the two: flat wins where
per-op overhead dominates (small groups), foreach on large ones, which is how
``SymbolicOptimizer(layout="auto")`` picks; :data:`DEFAULT_LAYOUT` is this module's default.

:func:`group_step` returns the step function for a compiled candidate, optionally wrapped in
``torch.compile(fullgraph=True, dynamic=False)``. Every per-step number (step, tau, 1/T,
the signed learning rate, momentum) is a 0-d float64 tensor, so new values never trigger
a recompile. Dropout masks (spec §2.3 ids 17-19) are drawn outside the step from the
optimizer's own ``torch.Generator`` and passed in as uniform noise, one buffer per dropout
occurrence, which also lets a test feed the masks of another backend.

The weight step (spec §2.5), with eta = sigma * eta_t * (LR multiplier), sigma = -1 (+1 if
flipped):

* ``none``: w += eta U
* ``mom``:  m = mu m + eta U; w += m
* ``nest`` (search form): m = mu m + eta U; w += m + eta U
* ``nest`` (``nesterov="keras"``, the final code of spec §7.2): m = mu m + eta U;
  w += mu m + eta U
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from nos.symbolic.emit import Compiled, NumpyRuntime, register_backend

__all__ = [
    "DEFAULT_LAYOUT",
    "EXPORT_TEMPLATES",
    "LAYOUTS",
    "NESTEROV_FORMS",
    "TORCH_TEMPLATES",
    "FList",
    "TorchRuntime",
    "group_step",
]

LAYOUTS = ("foreach", "flat")
#: Faster than "flat" on large groups, and it leaves parameters and gradients where autograd
#: put them (``SymbolicOptimizer`` chooses per group, see its ``layout``).
DEFAULT_LAYOUT = "foreach"
NESTEROV_FORMS = ("search", "keras")

log = logging.getLogger(__name__)
_NP = NumpyRuntime  # numpy spellings of the elementwise functions, for scalar operands

# ------------------------------------------------------------------------ spelling tables

#: In-search spelling: numpy's, with in-place state updates.
TORCH_TEMPLATES: dict[str, str] = {
    "scalar": "{0}",  # tau and 1/T already arrive as 0-d tensors
    "moment": "{raw} = rt.ema_(state[{raw!r}], {src}, {beta}, {one_minus})",
    "moment_hat": "{hat} = {raw} / rt.unbias({beta}, t)",
    "ema": ("{n} = rt.ema_(state[{slot!r}], {0}, 0.95, 0.05)\n{out} = {n} / rt.unbias(0.95, t)"),
    "delta": "{n} = rt.delta_(state[{slot!r}], {0})\n{out} = {n}",
    "max_state": "{n} = rt.max_(state[{slot!r}], {0})\n{out} = {n}",
}
register_backend("torch", TORCH_TEMPLATES)

_EPS = "1e-07"
#: The standalone export's spelling: plain torch on one tensor, with small helpers
#: (``_sign``, ``_clip``, ``_clip_norm``, ``_dropout``) that the exported file defines when used.
EXPORT_TEMPLATES: dict[str, str] = {
    "exp": "torch.exp({0})",
    "log": "torch.log({0})",
    "abs": "torch.abs({0})",
    "sign": "_sign({0})",  # NaN stays NaN, as in numpy (torch.sign gives 0)
    "tanh": "torch.tanh({0})",
    "atan": "torch.atan({0})",
    "asinh": "torch.asinh({0})",
    "erf": "torch.special.erf({0})",
    "erfc": "torch.special.erfc({0})",
    "cos": "torch.cos({0})",
    "sin": "torch.sin({0})",
    "sqrt": "torch.sqrt({0})",
    "power": "torch.pow({0}, {1})",
    "max": "torch.maximum({0}, {1})",
    "min": "torch.minimum({0}, {1})",
    "mod": "torch.remainder({0}, {1})",
    "plog": f"torch.log(torch.abs({{0}}) + {_EPS})",
    "sigmoid": "torch.sigmoid({0})",
    "softplus": f"torch.log(torch.abs(1.0 + torch.exp({{0}})) + {_EPS})",
    "i1e": "torch.special.i1e({0})",
    "clip": "_clip({0}, {1})",
    "clip_norm": "_clip_norm({0})",
    "dropout": "_dropout({0}, {1}, noise[{slot!r}])",
    "full_like": "(torch.zeros_like({like}) + {0})",
    "zeros_like": "torch.zeros_like({like})",
    "scalar": "{0}",
    "literal_arg": "g.new_tensor({0})",
    "inf": "torch.inf",
    "nan": "torch.nan",
    "ema": (
        "{n} = state[{slot!r}].mul_(0.95).add_({0}, alpha=0.05)\n"
        "{out} = {n} / (1.0 - 0.95 ** (t + 1))"
    ),
    "delta": "{n} = state[{slot!r}].neg_().add_({0})\n{out} = {n}",
    "max_state": "{n} = torch.maximum(state[{slot!r}], {0}, out=state[{slot!r}])\n{out} = {n}",
    "moment": "{raw} = state[{raw!r}].mul_({beta}).add_({src}, alpha={one_minus})",
    "moment_hat": "{hat} = {raw} / (1.0 - {beta} ** (t + 1))",
}
register_backend("torch_export", EXPORT_TEMPLATES)


# ------------------------------------------------------------------------- tensor lists


def _scalar_like(x: Any, ref: torch.Tensor) -> Any:
    """A 0-d tensor operand cast to the list's dtype (the foreach kernels need one dtype)."""
    if isinstance(x, torch.Tensor) and x.dtype != ref.dtype:
        return x.to(ref.dtype)
    return x


class FList:
    """The tensors of one parameter group, with elementwise arithmetic done by
    ``torch._foreach_*`` (one call per op for the whole group).

    Operands may be another FList of the same length, a Python number or a 0-d tensor.
    """

    __slots__ = ("ts",)
    # numpy scalars (tau, 1/T in eager steps) then defer to the reflected operators below
    __array_ufunc__ = None

    def __init__(self, ts: Sequence[torch.Tensor]):
        self.ts = list(ts)

    def __len__(self) -> int:
        return len(self.ts)

    def _zip(self, other: Any, fn: Callable[[torch.Tensor, Any], torch.Tensor]) -> FList:
        if isinstance(other, FList):
            return FList([fn(a, b) for a, b in zip(self.ts, other.ts, strict=True)])
        return FList([fn(a, other) for a in self.ts])

    def __add__(self, other: Any) -> FList:
        if isinstance(other, FList):
            return FList(torch._foreach_add(self.ts, other.ts))
        return FList(torch._foreach_add(self.ts, _scalar_like(other, self.ts[0])))

    __radd__ = __add__

    def __mul__(self, other: Any) -> FList:
        if isinstance(other, FList):
            return FList(torch._foreach_mul(self.ts, other.ts))
        return FList(torch._foreach_mul(self.ts, _scalar_like(other, self.ts[0])))

    __rmul__ = __mul__

    def __sub__(self, other: Any) -> FList:
        if isinstance(other, FList):
            return FList(torch._foreach_sub(self.ts, other.ts))
        if isinstance(other, torch.Tensor):
            return self._zip(other, torch.sub)
        return FList(torch._foreach_sub(self.ts, other))

    def __rsub__(self, other: Any) -> FList:
        return FList([other - a for a in self.ts])

    def __truediv__(self, other: Any) -> FList:
        if isinstance(other, FList):
            return FList(torch._foreach_div(self.ts, other.ts))
        return FList(torch._foreach_div(self.ts, _scalar_like(other, self.ts[0])))

    def __rtruediv__(self, other: Any) -> FList:
        return FList([other / a for a in self.ts])

    def __neg__(self) -> FList:
        return FList(torch._foreach_neg(self.ts))

    def __pow__(self, other: Any) -> FList:
        if isinstance(other, FList):
            return FList(torch._foreach_pow(self.ts, other.ts))
        if isinstance(other, torch.Tensor):
            return self._zip(other, torch.pow)
        return FList(torch._foreach_pow(self.ts, other))

    def __rpow__(self, other: Any) -> FList:
        if isinstance(other, torch.Tensor):
            return FList([torch.pow(other, a) for a in self.ts])
        return FList(torch._foreach_pow(other, self.ts))


def _is_number(x: Any) -> bool:
    return not isinstance(x, torch.Tensor | FList)


def _map(
    x: Any,
    one: Callable[[torch.Tensor], torch.Tensor],
    many: Callable[[list[torch.Tensor]], Sequence[torch.Tensor]] | None = None,
    number: Callable[[Any], Any] | None = None,
) -> Any:
    """Apply a unary function to a tensor, an FList or a number (with numpy's function,
    ``number``, so that scalar sub-expressions of tau cost no tensor op)."""
    if isinstance(x, FList):
        return FList(many(x.ts) if many is not None else [one(a) for a in x.ts])
    if not isinstance(x, torch.Tensor):
        if number is not None:
            return number(x)
        x = torch.tensor(x, dtype=torch.float64)
    return one(x)


def _zip2(
    x: Any,
    y: Any,
    fn: Callable[[Any, Any], torch.Tensor],
    number: Callable[[Any, Any], Any] | None = None,
) -> Any:
    """Apply a binary function elementwise over FLists, tensors and numbers."""
    xl, yl = isinstance(x, FList), isinstance(y, FList)
    if xl or yl:
        n = len(x) if xl else len(y)
        xs = x.ts if xl else [x] * n
        ys = y.ts if yl else [y] * n
        return FList([fn(a, b) for a, b in zip(xs, ys, strict=True)])
    if number is not None and _is_number(x) and _is_number(y):
        return number(x, y)
    return fn(x, y)


def _extremum(
    x: Any,
    y: Any,
    many: Callable[..., Sequence[torch.Tensor]],
    one: Callable[[Any, Any], torch.Tensor],
    number: Callable[[Any, Any], Any],
) -> Any:
    """maximum/minimum: one foreach call where the operands allow (NaN propagates)."""
    if isinstance(y, FList) and not isinstance(x, FList):
        x, y = y, x
    if isinstance(x, FList) and (isinstance(y, FList) or _is_number(y)):
        return FList(many(x.ts, y.ts if isinstance(y, FList) else float(y)))
    return _zip2(x, y, one, number)


def _as_tensor(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)


def _maximum(x: Any, y: Any) -> torch.Tensor:
    return torch.maximum(_as_tensor(x), _as_tensor(y))


def _minimum(x: Any, y: Any) -> torch.Tensor:
    return torch.minimum(_as_tensor(x), _as_tensor(y))


def _sign(x: torch.Tensor) -> torch.Tensor:
    # torch.sign(NaN) is 0; numpy's (the reference's) is NaN
    return torch.where(torch.isnan(x), x, torch.sign(x))


class TorchRuntime:
    """The ``rt`` object of the torch backend (see :mod:`nos.symbolic.emit`).

    Args:
      sizes: in the flat layout, the number of elements of each parameter tensor, so that
        ``clip_norm`` acts per tensor; ``None`` for the foreach layout or one tensor.
      device: where those segment indices live.

    ``noise`` maps each dropout occurrence to its uniform [0, 1) draws (a tensor, or a
    list of tensors in the foreach layout); the step function sets it.
    """

    inf = math.inf
    nan = math.nan

    def __init__(self, sizes: Sequence[int] | None = None, device: torch.device | str = "cpu"):
        self.noise: dict[str, Any] = {}
        #: beta -> 1 - beta^(t+1), set per step by the compiled step (see ``unbias``)
        self.unbiased: dict[float, torch.Tensor] = {}
        self.segments: torch.Tensor | None = None
        self.n_segments = 0
        if sizes is not None and len(sizes) > 1:
            self.n_segments = len(sizes)
            self.segments = torch.repeat_interleave(
                torch.arange(len(sizes), device=device), torch.tensor(list(sizes), device=device)
            )

    # elementwise functions (numpy's names, as the shared spelling table calls them)
    def exp(self, x: Any) -> Any:
        return _map(x, torch.exp, torch._foreach_exp, np.exp)

    def log(self, x: Any) -> Any:
        return _map(x, torch.log, torch._foreach_log, np.log)

    def abs(self, x: Any) -> Any:
        return _map(x, torch.abs, torch._foreach_abs, np.abs)

    def sign(self, x: Any) -> Any:
        return _map(x, _sign, None, np.sign)

    def tanh(self, x: Any) -> Any:
        return _map(x, torch.tanh, torch._foreach_tanh, np.tanh)

    def arctan(self, x: Any) -> Any:
        return _map(x, torch.atan, torch._foreach_atan, np.arctan)

    def arcsinh(self, x: Any) -> Any:
        return _map(x, torch.asinh, None, np.arcsinh)

    def erf(self, x: Any) -> Any:
        return _map(x, torch.special.erf, torch._foreach_erf, _NP.erf)

    def erfc(self, x: Any) -> Any:
        return _map(x, torch.special.erfc, torch._foreach_erfc, _NP.erfc)

    def cos(self, x: Any) -> Any:
        return _map(x, torch.cos, torch._foreach_cos, np.cos)

    def sin(self, x: Any) -> Any:
        return _map(x, torch.sin, torch._foreach_sin, np.sin)

    def sqrt(self, x: Any) -> Any:
        return _map(x, torch.sqrt, torch._foreach_sqrt, np.sqrt)

    def sigmoid(self, x: Any) -> Any:
        return _map(x, torch.sigmoid, torch._foreach_sigmoid, _NP.sigmoid)

    def i1e(self, x: Any) -> Any:
        return _map(x, torch.special.i1e, None, _NP.i1e)

    def power(self, x: Any, y: Any) -> Any:
        return _zip2(x, y, lambda a, b: torch.pow(_as_tensor(a), b), np.power)

    def maximum(self, x: Any, y: Any) -> Any:
        return _extremum(x, y, torch._foreach_maximum, _maximum, np.maximum)

    def minimum(self, x: Any, y: Any) -> Any:
        return _extremum(x, y, torch._foreach_minimum, _minimum, np.minimum)

    def mod(self, x: Any, y: Any) -> Any:
        return _zip2(x, y, lambda a, b: torch.remainder(_as_tensor(a), b), np.mod)

    def clip(self, x: Any, y: Any) -> Any:
        """clip(x, -|y|, |y|), spec §2.4 id 7 (NaN propagates as in numpy)."""
        bound = self.abs(y)
        return self.minimum(self.maximum(x, -bound), bound)

    def zeros_like(self, like: Any) -> Any:
        return _map(like, torch.zeros_like)

    def full_like(self, like: Any, value: Any) -> Any:
        return self.zeros_like(like) + value

    def scalar(self, x: Any) -> Any:
        return x

    def unbias(self, beta: float, t: Any) -> Any:
        """The bias correction 1 - beta^(t+1) of an EMA. The compiled step passes it in
        precomputed: inductor would otherwise recompute the pow for every element."""
        hit = self.unbiased.get(beta)
        return hit if hit is not None else 1.0 - beta ** (t + 1)

    def clip_norm(self, x: Any) -> Any:
        """Rescale each parameter tensor to L2 norm <= 1 (spec §2.3 id 20)."""
        if isinstance(x, FList):
            return FList(
                [
                    a * torch.clamp_max(1.0 / torch.sqrt((a * a).sum()), 1.0) if a.numel() else a
                    for a in x.ts
                ]
            )
        if self.segments is None:
            return x * torch.clamp_max(1.0 / torch.sqrt((x * x).sum()), 1.0)
        sq = torch.zeros(self.n_segments, dtype=x.dtype, device=x.device)
        sq = sq.index_add(0, self.segments, x * x)
        scale = torch.clamp_max(1.0 / torch.sqrt(sq), 1.0)
        return x * scale[self.segments]

    def dropout(self, x: Any, rate: float, slot: str, like: Any) -> Any:
        """Keep each entry w.p. 1 - rate, scaled by 1/(1 - rate) (spec §2.3 ids 17-19)."""
        noise = self.noise[slot]

        def one(a: Any, u: torch.Tensor) -> torch.Tensor:
            a = _as_tensor(a)
            return torch.where(u >= rate, a / (1.0 - rate), 0.0 * a)

        if isinstance(noise, list):
            return _zip2(x, FList(noise), one)
        return one(x, noise)

    # in-place state updates (the shared moment/stateful templates of TORCH_TEMPLATES)
    @staticmethod
    def ema_(state: Any, x: Any, beta: float, one_minus: float) -> Any:
        """state <- beta * state + (1 - beta) * x, in place; returns state."""
        if isinstance(state, FList):
            torch._foreach_mul_(state.ts, beta)
            if isinstance(x, FList):
                torch._foreach_add_(state.ts, x.ts, alpha=one_minus)
            else:
                torch._foreach_add_(state.ts, _scalar_like(one_minus * x, state.ts[0]))
            return state
        return state.mul_(beta).add_(x, alpha=one_minus)

    @staticmethod
    def delta_(state: Any, x: Any) -> Any:
        """state <- x - state, in place (the reference's deltaChange); returns state."""
        if isinstance(state, FList):
            torch._foreach_neg_(state.ts)
            if isinstance(x, FList):
                torch._foreach_add_(state.ts, x.ts)
            else:
                torch._foreach_add_(state.ts, _scalar_like(x, state.ts[0]))
            return state
        return state.neg_().add_(x)

    @staticmethod
    def max_(state: Any, x: Any) -> Any:
        """state <- max(x, state), in place (MaxValue); returns state."""
        if isinstance(state, FList):
            xs = x.ts if isinstance(x, FList) else [x] * len(state)
            for s, a in zip(state.ts, xs, strict=True):
                torch.maximum(_as_tensor(a).to(s.dtype), s, out=s)
            return state
        return torch.maximum(_as_tensor(x).to(state.dtype), state, out=state)


# ------------------------------------------------------------------------- group steps

_SCALARS = ("t", "tau", "inv_T", "eta", "mu")


def _py(x: Any) -> float:
    """A per-step number as a Python float (callers may pass 0-d tensors)."""
    return x.item() if isinstance(x, torch.Tensor) else float(x)


def _reads_progress(c: Compiled) -> bool:
    """Whether ``update`` does arithmetic on tau or 1/T (decays), which may divide by zero."""
    body = c.source.split("def init_state", 1)[0].split("\n", 1)[1]
    return re.search(r"\b(tau|inv_T)\b", body) is not None


def _make_eager(c: Compiled, momentum: str, nesterov: str, layout: str) -> Callable[..., None]:
    """The eager whole-group step (see :func:`group_step` for its arguments).

    Per-step numbers are Python numbers here, not 0-d tensors: each 0-d op costs as much
    as a whole-group op on a small model. tau and 1/T are numpy float64 scalars, so
    their arithmetic follows numpy (x/0 -> inf) exactly as the numpy backend's does.
    """
    update, reads_w = c.update, c.reads_w
    guard = _reads_progress(c)
    keras = nesterov == "keras"

    def direction(g: Any, w: Any, st: dict[str, Any], sc: dict[str, Any], rt: TorchRuntime) -> Any:
        t = sc["t"]
        t = int(t.item()) if isinstance(t, torch.Tensor) else t
        tau, inv_t = np.float64(_py(sc["tau"])), np.float64(_py(sc["inv_T"]))
        if guard:
            with np.errstate(all="ignore"):
                return update(g, w, st, t, tau, inv_t, rt)
        return update(g, w, st, t, tau, inv_t, rt)

    def apply(
        params: list[torch.Tensor],
        u: list[torch.Tensor],
        mom: list[torch.Tensor],
        eta: float,
        mu: float,
    ) -> None:
        """w += eta u with the momentum form; eta is folded into the adds (one op less)."""
        if momentum == "none":
            torch._foreach_add_(params, u, alpha=eta)
            return
        torch._foreach_mul_(mom, mu)
        torch._foreach_add_(mom, u, alpha=eta)
        if momentum == "mom":
            torch._foreach_add_(params, mom)
            return
        torch._foreach_add_(params, mom, alpha=mu if keras else 1.0)
        torch._foreach_add_(params, u, alpha=eta)

    def step(
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        state: dict[str, Any],
        mom: Any,
        sc: dict[str, Any],
        rt: TorchRuntime,
    ) -> None:
        eta, mu = _py(sc["eta"]), _py(sc["mu"])
        g: torch.Tensor | FList  # one flat tensor, or the group's tensors
        if layout == "flat":
            g = torch.cat([x.reshape(-1) for x in grads])
            w = torch.cat([p.reshape(-1) for p in params]) if reads_w else g
            u = direction(g, w, dict(state), sc, rt)
            if u.dtype != params[0].dtype:
                u = u.to(params[0].dtype)
            sizes = [p.numel() for p in params]
            us = [a.view_as(p) for a, p in zip(torch.split(u, sizes), params, strict=True)]
            ms = (
                [a.view_as(p) for a, p in zip(torch.split(mom, sizes), params, strict=True)]
                if mom is not None
                else []
            )
            apply(params, us, ms, eta, mu)
            return
        g = FList(grads)
        u = direction(
            g, FList(params) if reads_w else g, {k: FList(v) for k, v in state.items()}, sc, rt
        )
        apply(params, u.ts, mom, eta, mu)

    return step


def _make_traced(c: Compiled, momentum: str, nesterov: str, layout: str) -> Callable[..., None]:
    """The step ``torch.compile`` traces: a loop over the group's tensors, one plain tensor
    at a time (dynamo cannot trace :class:`FList`), with every per-step number a 0-d
    tensor so that new values never recompile."""
    update, reads_w = c.update, c.reads_w

    def delta(
        g: torch.Tensor,
        w: torch.Tensor,
        st: dict[str, torch.Tensor],
        sc: dict[str, torch.Tensor],
        rt: TorchRuntime,
        mom: Any,
    ) -> torch.Tensor:
        u = update(g, w, st, sc["t"], sc["tau"], sc["inv_T"], rt)
        step_ = u * sc["eta"]
        if momentum == "none":
            return step_
        new_m = mom * sc["mu"] + step_
        mom.copy_(new_m)
        if momentum == "mom":
            return new_m
        if nesterov == "keras":
            return new_m * sc["mu"] + step_
        return new_m + step_

    def step(
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        state: dict[str, Any],
        mom: Any,
        sc: dict[str, torch.Tensor],
        rt: TorchRuntime,
    ) -> None:
        if layout == "flat":
            g = torch.cat([x.reshape(-1) for x in grads])
            d = delta(
                g,
                torch.cat([p.reshape(-1) for p in params]) if reads_w else g,
                dict(state),
                sc,
                rt,
                mom,
            )
            pieces = torch.split(d, [p.numel() for p in params])
            torch._foreach_add_(params, [a.view_as(p) for a, p in zip(pieces, params, strict=True)])
            return
        noise = rt.noise
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            rt.noise = {k: v[i] for k, v in noise.items()}
            # an in-place add per tensor fuses into that tensor's kernel
            p.add_(
                delta(
                    g,
                    p if reads_w else g,
                    {k: v[i] for k, v in state.items()},
                    sc,
                    rt,
                    mom[i] if mom is not None else None,
                )
            )
        rt.noise = noise

    return step


_compiled: dict[tuple, Callable[..., None]] = {}
_lock = threading.Lock()
_failed: set[tuple] = set()


def group_step(
    c: Compiled,
    momentum: str,
    *,
    nesterov: str = "search",
    layout: str = DEFAULT_LAYOUT,
    compile: bool = False,
    key: str | None = None,
) -> Callable[..., None]:
    """The step function of a compiled candidate (``c.backend`` must be ``"torch"``).

    With ``compile``, the function is wrapped in ``torch.compile(fullgraph=True,
    dynamic=False)``, cached by ``key`` (the candidate's canonical key) and the step form;
    if compiling fails on first use, the eager function is used from then on, after a
    one-line warning.
    """
    if c.backend != "torch":
        raise ValueError(f"expected functions of the torch backend, got {c.backend!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if nesterov not in NESTEROV_FORMS:
        raise ValueError(f"unknown Nesterov form {nesterov!r}; expected search or keras")
    eager = _make_eager(c, momentum, nesterov, layout)
    if not compile:
        return eager
    traced = _make_traced(c, momentum, nesterov, layout)
    cache_key = (key if key is not None else id(c), momentum, nesterov, layout)
    with _lock:
        hit = _compiled.get(cache_key)
        if hit is None:
            hit = _with_fallback(traced, eager, cache_key, c)
            _compiled[cache_key] = hit
    return hit


_UNBIAS = re.compile(r"rt\.unbias\(([0-9.e+-]+), t\)")


def _with_fallback(
    traced: Callable[..., None], eager: Callable[..., None], cache_key: tuple, c: Compiled
) -> Callable[..., None]:
    fast = torch.compile(traced, fullgraph=True, dynamic=False)
    state = {"fn": fast}
    betas = sorted({float(b) for b in _UNBIAS.findall(c.source)})

    @functools.wraps(eager)
    def call(*args: Any) -> None:
        fn = state["fn"]
        if fn is eager:
            return eager(*args)
        sc, rt = args[4], args[5]
        t1 = sc["t"] + 1
        rt.unbiased = {b: 1.0 - torch.pow(b, t1) for b in betas}
        try:
            with warnings.catch_warnings():
                # torch's compiler stack still calls a deprecated torch.jit API internally
                warnings.filterwarnings(
                    "ignore",
                    category=DeprecationWarning,
                    message=r"`torch\.jit\.script_method` is deprecated",
                )
                fn(*args)
                return None
        except Exception as exc:  # any compiler failure: the eager step is still correct
            rt.unbiased = {}
            state["fn"] = eager
            _failed.add(cache_key)
            warnings.warn(
                f"torch.compile failed ({type(exc).__name__}); using the eager step",
                RuntimeWarning,
                stacklevel=3,
            )
            return eager(*args)

    return call
