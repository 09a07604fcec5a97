"""Plane search: gradient descent with momentum whose two step sizes are optimised every step.

After Shea & Schmidt 2024, *Why line search when you can plane search? SO-friendly neural
networks allow per-iteration optimization of learning and momentum rates for every layer*
(arXiv:2406.17954). Each iteration moves the weights w in the plane of the negative gradient
d = -grad f(w) and the previous step m = w - w_prev::

    (alpha, beta) = argmin f(w + alpha d + beta m),      w <- w + alpha d + beta m

with the 2-D problem solved to tolerance by a safeguarded Newton method. Optionally every
layer gets its own alpha and beta (subspace optimisation: 4 scalars for a 2-layer network).
The first iteration has no previous step and is a line search on alpha alone.

Why this is cheap ("SO-friendly" problems): the data enter only through the first layer's
product X W1^T. It is linear in the weights, so the products of the data with the search
directions, X D^T and X M^T, give the pre-activations at every point of the plane:
Z(alpha, beta) = Z + alpha X D^T + beta X M^T. The momentum product is the previous step's
(kept from the last iteration), so one new product with X per iteration is all the search
needs; its inner Newton iterations then work on n x outputs (linear models) or n x hidden
arrays (2-layer networks), which is cheap next to the d-wide products with X when the inputs
outnumber the outputs. ``tools/bench_plane_search.py`` measures an iteration against a
fixed-LR momentum step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nos.errors import NosError

__all__ = ["ACTIVATIONS", "LOSSES", "STRUCTURES", "PlaneSearch", "Subspace", "plane_search_for"]

LOSSES = ("mse", "logistic", "cross_entropy")
STRUCTURES = ("linear", "two_layer")


def _tanh(z: Tensor, order: int) -> tuple[Tensor, ...]:
    h = torch.tanh(z)
    if order == 0:
        return (h,)
    d1 = 1.0 - h * h
    return h, d1, -2.0 * h * d1


def _sigmoid(z: Tensor, order: int) -> tuple[Tensor, ...]:
    h = torch.sigmoid(z)
    if order == 0:
        return (h,)
    d1 = h * (1.0 - h)
    return h, d1, d1 * (1.0 - 2.0 * h)


def _relu(z: Tensor, order: int) -> tuple[Tensor, ...]:
    h = torch.relu(z)
    if order == 0:
        return (h,)
    return h, (z > 0).to(z.dtype), torch.zeros_like(z)


def _softplus(z: Tensor, order: int) -> tuple[Tensor, ...]:
    h = F.softplus(z)
    if order == 0:
        return (h,)
    s = torch.sigmoid(z)
    return h, s, s * (1.0 - s)


def _silu(z: Tensor, order: int) -> tuple[Tensor, ...]:
    s = torch.sigmoid(z)
    h = z * s
    if order == 0:
        return (h,)
    ds = s * (1.0 - s)
    return h, s + z * ds, ds * (2.0 + z * (1.0 - 2.0 * s))


#: Activation name -> function giving (act, act', act'') of a tensor (only act at order 0).
ACTIVATIONS: dict[str, Callable[[Tensor, int], tuple[Tensor, ...]]] = {
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "relu": _relu,
    "softplus": _softplus,
    "silu": _silu,
}
_ACT_MODULES: dict[type, str] = {
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.ReLU: "relu",
    nn.SiLU: "silu",
}


class _Loss:
    """Mean loss over the samples of outputs O (n x k), with its derivatives in O.

    ``derivatives(O)`` returns the loss, G = dL/dO and ``form``, which maps a stack of
    output directions J (m x n x k) to the m x m matrix sum_i J_a,i^T Hess_i J_b,i of the
    second directional derivatives of L.
    """

    def __init__(self, kind: str, targets: Tensor, outputs: int, dtype: torch.dtype):
        self.kind, self.y, self.k = kind, targets, outputs
        self.n = targets.shape[0]
        if kind == "cross_entropy":
            self.onehot = F.one_hot(targets, outputs).to(dtype)

    def value(self, o: Tensor) -> Tensor:
        if self.kind == "mse":
            return F.mse_loss(o, self.y)
        if self.kind == "logistic":
            return F.binary_cross_entropy_with_logits(o, self.y)
        return F.cross_entropy(o, self.y)

    def derivatives(self, o: Tensor) -> tuple[Tensor, Tensor, Callable[[Tensor], Tensor]]:
        n = self.n
        if self.kind == "mse":
            r = o - self.y
            scale = 2.0 / r.numel()

            def form(j: Tensor) -> Tensor:
                return scale * torch.einsum("ank,bnk->ab", j, j)

            return (r * r).mean(), scale * r, form
        if self.kind == "logistic":
            p = torch.sigmoid(o)
            w = p * (1.0 - p) / n

            def form(j: Tensor) -> Tensor:
                return torch.einsum("ank,bnk->ab", j * w, j)

            return self.value(o), (p - self.y) / n, form
        logp = torch.log_softmax(o, dim=1)
        p = logp.exp()
        loss = -logp.gather(1, self.y[:, None]).mean()

        def form(j: Tensor) -> Tensor:
            jp = j * p
            s = jp.sum(dim=2)
            return (torch.einsum("ank,bnk->ab", jp, j) - torch.einsum("an,bn->ab", s, s)) / n

        return loss, (p - self.onehot) / n, form


@dataclass
class _Layer:
    """One affine layer's weight and bias, search directions and their Gram matrix."""

    weight: Tensor
    bias: Tensor | None
    d_weight: Tensor | None = None  # the negative gradient
    d_bias: Tensor | None = None
    m_weight: Tensor | None = None  # the previous step
    m_bias: Tensor | None = None
    gram: Tensor | None = None  # inner products of (W, D, M) for the L2 term

    def params(self) -> list[Tensor]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])


class Subspace:
    """The objective on the search subspace, phi(s) = f(w + sum_l (a_l D_l + b_l M_l)).

    ``s`` has one (alpha, beta) pair per layer: (a, b) for a linear model, (a1, b1, a2, b2)
    for a 2-layer network. :meth:`value` and :meth:`derivatives` (value, gradient and
    Hessian in s) touch only the arrays kept here, never the data matrix X.
    """

    def __init__(self, opt: PlaneSearch, z: Tensor, zd: Tensor, zm: Tensor):
        self.opt, self.z, self.zd, self.zm = opt, z, zd, zm
        self.layers = opt._layers
        self.dim = 2 * len(self.layers)

    def _l2(self, s: Tensor, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
        lam = self.opt._l2
        zero = s.new_zeros(())
        if lam == 0.0:
            return zero, None, None
        val, grad = zero, s.new_zeros(self.dim)
        hess = s.new_zeros(self.dim, self.dim)
        for i, layer in enumerate(self.layers):
            q = layer.gram
            c = torch.cat([s.new_ones(1), s[2 * i : 2 * i + 2]])
            val = val + 0.5 * lam * (c @ q @ c)
            if order:
                grad[2 * i : 2 * i + 2] = lam * (q[1:] @ c)
                hess[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = lam * q[1:, 1:]
        return val, grad, hess

    def _outputs(self, s: Tensor, order: int) -> tuple[Tensor, ...]:
        """Outputs at s and, for order 2, what the derivatives need."""
        a1, b1 = s[0], s[1]
        z = self.z + a1 * self.zd + b1 * self.zm
        if len(self.layers) == 1:
            return (z,)
        act = ACTIVATIONS[self.opt._activation]
        two = self.layers[1]
        a2, b2 = s[2], s[3]
        v = two.weight + a2 * two.d_weight + b2 * two.m_weight
        out = act(z, order)
        o = out[0] @ v.T
        if two.bias is not None:
            o = o + (two.bias + a2 * two.d_bias + b2 * two.m_bias)
        return (o, v, *out)

    @torch.no_grad()
    def value(self, s: Tensor) -> float:
        """phi(s), the full objective (mean loss plus the L2 term) at step sizes s."""
        o = self._outputs(s, 0)[0]
        return float(self.opt._loss.value(o) + self._l2(s, 0)[0])

    @torch.no_grad()
    def derivatives(self, s: Tensor) -> tuple[float, Tensor, Tensor]:
        """phi(s), its gradient and its Hessian in s (float64 tensors on the CPU)."""
        loss = self.opt._loss
        got = self._outputs(s, 2)
        if len(self.layers) == 1:
            o = got[0]
            val, g, form = loss.derivatives(o)
            jac = torch.stack([self.zd, self.zm])
            grad = torch.einsum("jnk,nk->j", jac, g)
            hess = form(jac)
        else:
            o, v, h, d1, d2 = got
            two = self.layers[1]
            val, g, form = loss.derivatives(o)
            ja, jb = d1 * self.zd, d1 * self.zm  # d act(z) / d a1, d b1
            j2 = h @ torch.cat([two.d_weight, two.m_weight]).T  # (n, 2k)
            k = v.shape[0]
            j_a2, j_b2 = j2[:, :k], j2[:, k:]
            if two.bias is not None:
                j_a2, j_b2 = j_a2 + two.d_bias, j_b2 + two.m_bias
            jac = torch.stack([ja @ v.T, jb @ v.T, j_a2, j_b2])
            grad = torch.einsum("jnk,nk->j", jac, g)
            hess = form(jac)
            # second derivatives of the outputs, contracted with G without forming them
            gv, gd, gm = (g @ torch.cat([v, two.d_weight, two.m_weight], 1)).split(v.shape[1], 1)
            pv = d2 * gv
            t = torch.stack(
                [
                    (pv * self.zd * self.zd).sum(),
                    (pv * self.zd * self.zm).sum(),
                    (pv * self.zm * self.zm).sum(),
                    (ja * gd).sum(),
                    (ja * gm).sum(),
                    (jb * gd).sum(),
                    (jb * gm).sum(),
                ]
            )
            second = torch.zeros(4, 4, dtype=t.dtype, device=t.device)
            second[0, 0], second[0, 1], second[1, 1] = t[0], t[1], t[2]
            second[0, 2], second[0, 3], second[1, 2], second[1, 3] = t[3], t[4], t[5], t[6]
            hess = hess + second + torch.triu(second, 1).T
        lval, lgrad, lhess = self._l2(s, 2)
        val = val + lval
        if lgrad is not None:
            grad, hess = grad + lgrad, hess + lhess
        return float(val), grad.detach().double().cpu(), hess.detach().double().cpu()


class PlaneSearch(torch.optim.Optimizer):
    """Full-batch plane search (see the module docstring) as a ``torch.optim.Optimizer``.

    Args:
      params: the model's parameters in this order (biases on every layer or on none):
        ``structure="linear"`` (outputs ``X W^T + b``): ``[W, b]`` or ``[W]``;
        ``structure="two_layer"`` (outputs ``act(X W1^T + b1) W2^T + b2``):
        ``[W1, b1, W2, b2]`` or ``[W1, W2]``. W is (out x in), b is (out,), as in
        ``nn.Linear``. :func:`plane_search_for` reads them off a module.
      inputs: the full batch X, (n x d); moved to the parameters' dtype and device.
      targets: the full batch y: for ``"mse"`` the outputs' shape, or (n,) for one output;
        for ``"logistic"`` (one output) 0/1 values, (n,) or (n x 1); for
        ``"cross_entropy"`` class indices (n,).
      loss: ``"mse"`` (``F.mse_loss``, the mean over all entries), ``"logistic"``
        (``F.binary_cross_entropy_with_logits``) or ``"cross_entropy"``
        (``F.cross_entropy``), each the mean over the batch.
      structure: ``"linear"`` or ``"two_layer"``.
      activation: for ``"two_layer"``: one of :data:`ACTIVATIONS`.
      per_layer: one (alpha, beta) pair per layer instead of one shared pair (a linear
        model has one layer, so this changes nothing there).
      l2: the objective adds ``l2 / 2`` times the squared norm of the weight matrices
        (not the biases).
      max_inner: Newton iterations per step at most.
      inner_tol: the Newton iteration stops when half the Newton decrement falls below
        ``inner_tol * max(1, |phi|)``; default 1e-12 in float64, 1e-7 in float32.
      refresh_every: every so many steps the pre-activations X W1^T + b1 are recomputed
        from the weights instead of being updated along the steps (bounds rounding drift).
      check_tol: relative tolerance of the check below; default 1e-8 (float64), 1e-4.

    ``step(closure)`` needs a closure that zeroes the gradients, computes the objective
    on the full batch (the mean loss above, plus the L2 term when ``l2`` is set) from the
    model, calls ``backward()`` and returns it. The optimizer computes the same objective
    from its own description of the model; a difference beyond ``check_tol`` that a fresh
    computation does not explain is an error (the structure, the data or the loss do not
    describe the model). After a step, :attr:`last_step_sizes` holds the step sizes
    (a, b) or (a1, b1, a2, b2), :attr:`last_loss` the objective at the new weights and
    :attr:`last_inner_iterations` the Newton iterations used.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        inputs: Tensor,
        targets: Tensor,
        *,
        loss: str,
        structure: str = "linear",
        activation: str | None = None,
        per_layer: bool = False,
        l2: float = 0.0,
        max_inner: int = 50,
        inner_tol: float | None = None,
        refresh_every: int = 50,
        check_tol: float | None = None,
    ) -> None:
        params = list(params)
        if any(isinstance(p, dict) for p in params):
            raise NosError("PlaneSearch takes one list of parameters, not parameter groups")
        if not all(isinstance(p, Tensor) for p in params):
            raise NosError("PlaneSearch parameters must be tensors")
        if structure not in STRUCTURES:
            raise NosError(f"unknown structure {structure!r}; expected one of {STRUCTURES}")
        if loss not in LOSSES:
            raise NosError(f"unknown loss {loss!r}; expected one of {LOSSES}")
        if not (isinstance(l2, int | float) and math.isfinite(l2) and l2 >= 0):
            raise NosError(f"l2 must be a number >= 0, got {l2!r}")
        if not (isinstance(max_inner, int) and max_inner >= 1):
            raise NosError(f"max_inner must be an integer >= 1, got {max_inner!r}")
        if not (isinstance(refresh_every, int) and refresh_every >= 1):
            raise NosError(f"refresh_every must be an integer >= 1, got {refresh_every!r}")
        self._layers = _layers(params, structure)
        if structure == "two_layer":
            if activation not in ACTIVATIONS:
                raise NosError(
                    f"two_layer needs an activation, one of {', '.join(ACTIVATIONS)}; "
                    f"got {activation!r}"
                )
        elif activation is not None:
            raise NosError("a linear model has no activation")
        w1 = self._layers[0].weight
        if not w1.is_floating_point():
            raise NosError("PlaneSearch parameters must be floating point")
        self._x = _inputs(inputs, w1)
        outputs = self._layers[-1].weight.shape[0]
        if structure == "two_layer" and self._x.shape[1] <= outputs:
            raise NosError(
                f"plane search on a 2-layer network needs more inputs than outputs "
                f"(got {self._x.shape[1]} inputs, {outputs} outputs): otherwise the "
                "search costs more than the step"
            )
        y = _targets(targets, loss, self._x.shape[0], outputs, w1)
        self._loss = _Loss(loss, y, outputs, w1.dtype)
        self._activation = activation
        self._structure = structure
        self._per_layer = per_layer
        self._l2 = float(l2)
        low = w1.dtype in (torch.float16, torch.bfloat16, torch.float32)
        self._inner_tol = inner_tol if inner_tol is not None else (1e-7 if low else 1e-12)
        self._check_tol = check_tol if check_tol is not None else (1e-4 if low else 1e-8)
        self._max_inner = max_inner
        self._refresh_every = refresh_every
        defaults = {"per_layer": per_layer, "l2": self._l2}
        super().__init__(params, defaults)
        self._z: Tensor | None = None  # X W1^T + b1 at the current weights
        self._zm: Tensor | None = None  # X M1^T + m_b1 for the previous step M
        self._since_refresh = 0
        self._warm: np.ndarray | None = None
        self.last_step_sizes: tuple[float, ...] = ()
        self.last_loss: float | None = None
        self.last_inner_iterations = 0

    # ---- state -------------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._z = self._zm = None  # recomputed from the loaded weights and momentum
        self._warm = None

    def _momentum(self, p: Tensor) -> Tensor | None:
        return self.state[p].get("momentum") if p in self.state else None

    def _has_momentum(self) -> bool:
        return all(self._momentum(p) is not None for p in self._params())

    def _params(self) -> list[Tensor]:
        return [p for layer in self._layers for p in layer.params()]

    def _first_layer_product(self, weight: Tensor, bias: Tensor | None) -> Tensor:
        z = self._x @ weight.T
        return z + bias if bias is not None else z

    def _refresh(self) -> None:
        one = self._layers[0]
        self._z = self._first_layer_product(one.weight, one.bias)
        if self._has_momentum():
            self._zm = self._first_layer_product(one.m_weight, one.m_bias)
        self._since_refresh = 0

    # ---- one iteration -----------------------------------------------------------------

    def subspace(self) -> Subspace:
        """The search problem at the current weights, from their ``.grad`` (call after the
        closure's backward pass); used by :meth:`step`, exposed for inspection."""
        for layer in self._layers:
            for p in layer.params():
                if p.grad is None:
                    raise NosError(
                        "PlaneSearch: a parameter has no gradient; the closure "
                        "must call backward() on the loss"
                    )
            layer.d_weight = -layer.weight.grad.detach()
            layer.d_bias = -layer.bias.grad.detach() if layer.bias is not None else None
            m_w, m_b = self._momentum(layer.weight), None
            if layer.bias is not None:
                m_b = self._momentum(layer.bias)
            layer.m_weight = m_w if m_w is not None else torch.zeros_like(layer.weight)
            if layer.bias is not None:
                layer.m_bias = m_b if m_b is not None else torch.zeros_like(layer.bias)
            if self._l2:
                vecs = torch.stack([layer.weight.detach(), layer.d_weight, layer.m_weight]).flatten(
                    1
                )
                layer.gram = vecs @ vecs.T
        if self._z is None or self._since_refresh >= self._refresh_every:
            self._refresh()
        one = self._layers[0]
        zd = self._first_layer_product(one.d_weight, one.d_bias)  # the one product with X
        zm = self._zm if self._zm is not None else torch.zeros_like(zd)
        return Subspace(self, self._z, zd, zm)

    def _basis(self, with_momentum: bool) -> np.ndarray:
        """Columns map the searched scalars to (a1, b1[, a2, b2])."""
        layers = len(self._layers)
        pairs = np.eye(2 * layers) if self._per_layer else np.tile(np.eye(2), (layers, 1))
        return pairs if with_momentum else pairs[:, ::2]

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """One plane-search iteration; returns the closure's loss (before the step)."""
        if closure is None:
            raise NosError(
                "PlaneSearch.step needs a closure that computes the full-batch "
                "loss and its gradients"
            )
        with torch.enable_grad():
            loss = closure()
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise NosError("the PlaneSearch closure must return the loss as a 1-element tensor")
        reported = float(loss.detach())
        problem = self.subspace()
        dtype = self._z.dtype
        zero = torch.zeros(problem.dim, dtype=dtype, device=self._z.device)
        here = problem.value(zero)
        if not self._agrees(reported, here):
            self._refresh()  # the kept products may have drifted, or the weights were changed
            zm = self._zm if self._zm is not None else torch.zeros_like(problem.zd)
            problem = Subspace(self, self._z, problem.zd, zm)
            here = problem.value(zero)
            if not self._agrees(reported, here):
                raise NosError(
                    f"the closure's loss {reported:.6g} differs from the {here:.6g} that the "
                    f"PlaneSearch description gives ({self._structure}, {self._loss.kind}"
                    f"{', ' + self._activation if self._activation else ''}, l2={self._l2}):"
                    " the structure, inputs, targets or loss do not match the model"
                )
        momentum = self._has_momentum()
        basis = self._basis(momentum)
        r, val, iters = self._newton(problem, basis, here, dtype)
        s = basis @ r
        self._apply(problem, s, dtype)
        self._warm = r if momentum else None
        self.last_step_sizes = tuple(float(v) for v in s)
        self.last_loss = val
        self.last_inner_iterations = iters
        return loss

    def _agrees(self, a: float, b: float) -> bool:
        return math.isfinite(b) and abs(a - b) <= self._check_tol * max(1.0, abs(a))

    def _newton(
        self, problem: Subspace, basis: np.ndarray, here: float, dtype: torch.dtype
    ) -> tuple[np.ndarray, float, int]:
        """Minimise phi over span(basis) from the better of 0 and last step's solution."""
        device = self._z.device

        def full(r: np.ndarray) -> Tensor:
            return torch.as_tensor(basis @ r, dtype=dtype, device=device)

        r = np.zeros(basis.shape[1])
        f = here
        if self._warm is not None and self._warm.shape == r.shape:
            fw = problem.value(full(self._warm))
            if fw < f:
                r, f = self._warm.copy(), fw
        iters = 0
        for _ in range(self._max_inner):
            iters += 1
            f, g, h = problem.derivatives(full(r))
            g_r = basis.T @ g.numpy()
            h_r = basis.T @ h.numpy() @ basis
            if not (np.all(np.isfinite(g_r)) and np.all(np.isfinite(h_r))):
                break
            # Newton step on the eigenvalues made positive: a descent direction even where
            # phi is not convex, and a plain Newton step where it is
            lam, q = np.linalg.eigh(0.5 * (h_r + h_r.T))
            top = float(np.max(np.abs(lam))) if lam.size else 0.0
            floor = max(1e-10 * top, 1e-300)
            delta = -(q @ ((q.T @ g_r) / np.maximum(np.abs(lam), floor)))
            decrement = float(-g_r @ delta)
            if not decrement > 2.0 * self._inner_tol * max(1.0, abs(f)):
                break
            t = 1.0
            while t > 1e-12:
                trial = r + t * delta
                ft = problem.value(full(trial))
                if ft <= f - 1e-4 * t * decrement:
                    r, f = trial, ft
                    break
                t *= 0.5
            else:
                break  # no decrease left at this precision
        return r, f, iters

    def _apply(self, problem: Subspace, s: np.ndarray, dtype: torch.dtype) -> None:
        for i, layer in enumerate(self._layers):
            a, b = float(s[2 * i]), float(s[2 * i + 1])
            pairs = [(layer.weight, layer.d_weight, layer.m_weight)]
            if layer.bias is not None:
                pairs.append((layer.bias, layer.d_bias, layer.m_bias))
            for p, d, m in pairs:
                step = d * a + m * b
                p.add_(step)
                self.state[p]["momentum"] = step
        # the first layer's products follow the step without touching X
        a1, b1 = float(s[0]), float(s[1])
        zm = problem.zd * a1 + problem.zm * b1
        self._z = self._z + zm
        self._zm = zm
        self._since_refresh += 1
        for layer in self._layers:
            layer.d_weight = layer.d_bias = layer.m_weight = layer.m_bias = layer.gram = None


def _layers(params: Sequence[Tensor], structure: str) -> list[_Layer]:
    dims = [p.ndim for p in params]
    patterns = {"linear": ([2], [2, 1]), "two_layer": ([2, 2], [2, 1, 2, 1])}[structure]
    if dims not in [list(p) for p in patterns]:
        raise NosError(
            f"{structure} expects parameters shaped "
            + (
                " or ".join(
                    "[" + ", ".join("W" if d == 2 else "b" for d in p) + "]" for p in patterns
                )
            )
            + f" (W 2-D, b 1-D); got shapes {[tuple(p.shape) for p in params]}"
        )
    with_bias = len(params) == 2 * len(patterns[0])
    step = 2 if with_bias else 1
    layers = [
        _Layer(params[i], params[i + 1] if with_bias else None) for i in range(0, len(params), step)
    ]
    for i, layer in enumerate(layers):
        if layer.bias is not None and layer.bias.shape[0] != layer.weight.shape[0]:
            raise NosError(
                f"layer {i + 1}: bias of size {layer.bias.shape[0]} for a weight "
                f"with {layer.weight.shape[0]} outputs"
            )
    if len(layers) == 2 and layers[1].weight.shape[1] != layers[0].weight.shape[0]:
        raise NosError(
            f"the second layer takes {layers[1].weight.shape[1]} inputs but the "
            f"first has {layers[0].weight.shape[0]} outputs"
        )
    kinds = {(p.dtype, p.device) for p in params}
    if len(kinds) > 1:
        raise NosError("PlaneSearch parameters must share one dtype and device")
    return layers


def _inputs(inputs: Tensor, w1: Tensor) -> Tensor:
    if not isinstance(inputs, Tensor) or inputs.ndim != 2:
        raise NosError("PlaneSearch inputs must be a 2-D tensor (samples x features)")
    if inputs.shape[1] != w1.shape[1]:
        raise NosError(
            f"the inputs have {inputs.shape[1]} features but the first layer takes {w1.shape[1]}"
        )
    if inputs.shape[0] == 0:
        raise NosError("PlaneSearch needs at least one sample")
    return inputs.detach().to(dtype=w1.dtype, device=w1.device)


def _targets(targets: Tensor, loss: str, n: int, outputs: int, w1: Tensor) -> Tensor:
    if not isinstance(targets, Tensor) or targets.shape[:1] != (n,):
        raise NosError(f"PlaneSearch targets must be a tensor with one row per sample ({n})")
    targets = targets.detach().to(device=w1.device)
    if loss == "cross_entropy":
        if outputs < 2:
            raise NosError("cross_entropy needs at least 2 outputs; use logistic for one")
        if targets.ndim != 1 or targets.is_floating_point() or targets.is_complex():
            raise NosError("cross_entropy targets must be integer class indices, shape (n,)")
        if int(targets.min()) < 0 or int(targets.max()) >= outputs:
            raise NosError(f"cross_entropy targets must lie in [0, {outputs})")
        return targets.long()
    if loss == "logistic":
        if outputs != 1:
            raise NosError(
                f"logistic loss needs one output, the model has {outputs}; use cross_entropy"
            )
        targets = targets.reshape(n, 1).to(w1.dtype)
        if not bool(((targets == 0) | (targets == 1)).all()):
            raise NosError("logistic targets must be 0 or 1")
        return targets
    if targets.shape == (n,) and outputs == 1:
        targets = targets.reshape(n, 1)
    if targets.shape != (n, outputs):
        raise NosError(
            f"mse targets must be shaped like the outputs, ({n}, {outputs}); "
            f"got {tuple(targets.shape)}"
        )
    return targets.to(w1.dtype)


def plane_search_for(
    model: nn.Module, inputs: Tensor, targets: Tensor, *, loss: str, **options: Any
) -> PlaneSearch:
    """A :class:`PlaneSearch` for ``nn.Linear`` or ``nn.Sequential(Linear, act, Linear)``
    with act one of ``nn.Tanh``, ``nn.Sigmoid``, ``nn.ReLU``, ``nn.SiLU`` or
    ``nn.Softplus()`` (beta 1); other options as for :class:`PlaneSearch`."""
    if isinstance(model, nn.Linear):
        return PlaneSearch(model.parameters(), inputs, targets, loss=loss, **options)
    parts = list(model.children()) if isinstance(model, nn.Sequential) else []
    if len(parts) == 3 and isinstance(parts[0], nn.Linear) and isinstance(parts[2], nn.Linear):
        act = parts[1]
        name = _ACT_MODULES.get(type(act))
        if isinstance(act, nn.Softplus) and act.beta == 1:
            name = "softplus"
        if name is not None:
            params = [*parts[0].parameters(), *parts[2].parameters()]
            return PlaneSearch(
                params,
                inputs,
                targets,
                loss=loss,
                structure="two_layer",
                activation=name,
                **options,
            )
    raise NosError(
        "plane search applies to nn.Linear or nn.Sequential(nn.Linear, activation, nn.Linear)"
        f" with activation Tanh, Sigmoid, ReLU, SiLU or Softplus; got {type(model).__name__}"
    )
