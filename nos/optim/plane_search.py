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
outnumber the outputs. The kept pre-activations also give the loss and the gradient without
the model's forward pass (``step()`` without a closure): an iteration then takes two
products with X, as many as a fixed-LR step. ``tools/bench_plane_search.py`` measures an
iteration against a fixed-LR momentum step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nos.errors import NosError

__all__ = ["ACTIVATIONS", "LOSSES", "STRUCTURES", "PlaneSearch", "Subspace", "plane_search_for"]

LOSSES = ("mse", "logistic", "cross_entropy")
STRUCTURES = ("linear", "two_layer")
# A Newton decrement below this (relative) ends the search after one more full step when phi
# falls by what its quadratic model predicts.
_FINAL = 1e-4


# Each returns act(z), then act'(z) from order 1 and act''(z) (None where it is 0) at order
# 2, with fused ops: these arrays are n x hidden, the largest the inner search touches.


def _tanh(z: Tensor, order: int) -> tuple[Tensor | None, ...]:
    # tanh z = 2 sigmoid(2z) - 1: torch's CPU tanh is several times slower than its sigmoid
    h = torch.sigmoid(z * 2.0).mul_(2.0).sub_(1.0)
    if order == 0:
        return (h,)
    d1 = torch.addcmul(h.new_ones(()), h, h, value=-1.0)  # 1 - h^2
    if order == 1:
        return h, d1
    return h, d1, torch.addcmul(h.new_zeros(()), h, d1, value=-2.0)


def _sigmoid(z: Tensor, order: int) -> tuple[Tensor | None, ...]:
    h = torch.sigmoid(z)
    if order == 0:
        return (h,)
    d1 = torch.addcmul(h, h, h, value=-1.0)  # h (1 - h)
    if order == 1:
        return h, d1
    return h, d1, torch.addcmul(d1, d1, h, value=-2.0)


def _relu(z: Tensor, order: int) -> tuple[Tensor | None, ...]:
    h = torch.relu(z)
    if order == 0:
        return (h,)
    d1 = (z > 0).to(z.dtype)
    return (h, d1) if order == 1 else (h, d1, None)


def _softplus(z: Tensor, order: int) -> tuple[Tensor | None, ...]:
    h = F.softplus(z)
    if order == 0:
        return (h,)
    sig = torch.sigmoid(z)
    if order == 1:
        return h, sig
    return h, sig, torch.addcmul(sig, sig, sig, value=-1.0)


def _silu(z: Tensor, order: int) -> tuple[Tensor | None, ...]:
    sig = torch.sigmoid(z)
    h = z * sig
    if order == 0:
        return (h,)
    ds = torch.addcmul(sig, sig, sig, value=-1.0)  # sig'
    d1 = torch.addcmul(sig, z, ds)  # sig + z sig'
    if order == 1:
        return h, d1
    d2 = torch.add(z, h, alpha=-2.0).add_(2.0).mul_(ds)  # sig' (2 + z (1 - 2 sig))
    return h, d1, d2


#: Activation name -> function of (z, order) giving act(z) and its derivatives up to order.
ACTIVATIONS: dict[str, Callable[[Tensor, int], tuple[Tensor | None, ...]]] = {
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "relu": _relu,
    "softplus": _softplus,
    "silu": _silu,
}


@overload
def _activate(name: str | None, z: Tensor, order: Literal[0]) -> tuple[Tensor]: ...
@overload
def _activate(name: str | None, z: Tensor, order: Literal[1]) -> tuple[Tensor, Tensor]: ...
@overload
def _activate(
    name: str | None, z: Tensor, order: Literal[2]
) -> tuple[Tensor, Tensor, Tensor | None]: ...
def _activate(name: str | None, z: Tensor, order: int) -> tuple[Tensor | None, ...]:
    """The hidden activation's act(z) and derivatives up to ``order`` (see ACTIVATIONS):
    only act'' can be None."""
    if name is None:
        raise NosError("a linear model has no activation")
    return ACTIVATIONS[name](z, order)


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

            def mse_form(j: Tensor) -> Tensor:
                jf = j.flatten(1)
                return scale * (jf @ jf.T)

            return (r * r).mean(), scale * r, mse_form
        if self.kind == "logistic":
            p = torch.sigmoid(o)
            w = p * (1.0 - p) / n

            def logistic_form(j: Tensor) -> Tensor:
                return (j * w).flatten(1) @ j.flatten(1).T

            return self.value(o), (p - self.y) / n, logistic_form
        logp = torch.log_softmax(o, dim=1)
        p = logp.exp()
        loss = -logp.gather(1, self.y[:, None]).mean()

        def cross_entropy_form(j: Tensor) -> Tensor:
            jp = j * p
            s = jp.sum(dim=2)
            return (jp.flatten(1) @ j.flatten(1).T - s @ s.T) / n

        return loss, (p - self.onehot) / n, cross_entropy_form


@dataclass
class _Layer:
    """One affine layer's weight and bias."""

    weight: Tensor
    bias: Tensor | None

    def params(self) -> list[Tensor]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])


#: A parameter, its search direction D (the negative gradient) and M (the previous step).
_Directions = tuple[Tensor, Tensor, Tensor]


@dataclass
class _Search:
    """One layer's search directions at the current iteration, for its weight and (when it
    has one) its bias."""

    weight: _Directions
    bias: _Directions | None

    def all(self) -> list[_Directions]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])


def _gram(weight: _Directions) -> np.ndarray:
    """The inner products of (W, D, M), for the L2 term."""
    w, d, m = weight
    vecs = torch.stack([w.detach(), d, m]).flatten(1).double()
    return (vecs @ vecs.T).cpu().numpy()


class Subspace:
    """The objective on the search subspace, phi(s) = f(w + sum_l (a_l D_l + b_l M_l)).

    ``s`` has one (alpha, beta) pair per layer: (a, b) for a linear model, (a1, b1, a2, b2)
    for a 2-layer network. :meth:`value` and :meth:`derivatives` (value, gradient and
    Hessian in s) touch only the arrays kept here, never the data matrix X: the first
    layer's pre-activations ``z`` (n x width) at s = 0 and ``zdm`` (n x 2 x width), the
    products of X with the first layer's two directions.

    Products with a few outputs are computed as (outputs x n) and read transposed: MKL
    runs them several times faster that way round.
    """

    def __init__(self, opt: PlaneSearch, z: Tensor, zdm: Tensor):
        self.opt, self.z, self.zdm = opt, z, zdm
        self.zd, self.zm = zdm[:, 0], zdm[:, 1]
        self.layers = opt._layers
        self.search = opt._search
        self.dim = 2 * len(self.layers)
        self._grams = [_gram(layer.weight) for layer in self.search] if opt._l2 else []
        self._dmc: Tensor | None = None
        self._squares: Tensor | None = None
        if len(self.layers) == 1:
            self._jac = zdm.transpose(0, 1).contiguous()  # the outputs are linear in s
        else:
            two = self.search[1]
            self._dm2 = torch.cat([two.weight[1], two.weight[2]])  # (2k, h)
            if two.bias is not None:
                self._dmc = torch.cat([two.bias[1], two.bias[2]])
            # products of the directions, for the second derivatives through act'' (none
            # for relu, whose act'' is 0)
            if opt._activation != "relu":
                self._squares = torch.stack(
                    [self.zd * self.zd, self.zd * self.zm, self.zm * self.zm]
                ).view(3, -1)

    def _l2(self, s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        lam = self.opt._l2
        grad, hess = np.zeros(self.dim), np.zeros((self.dim, self.dim))
        if lam == 0.0:
            return 0.0, grad, hess
        val = 0.0
        for i, q in enumerate(self._grams):
            c = np.array([1.0, s[2 * i], s[2 * i + 1]])
            val += 0.5 * lam * float(c @ q @ c)
            grad[2 * i : 2 * i + 2] = lam * (q[1:] @ c)
            hess[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = lam * q[1:, 1:]
        return val, grad, hess

    def _pre_activations(self, s: np.ndarray) -> Tensor:
        return torch.add(self.z, self.zd, alpha=float(s[0])).add_(self.zm, alpha=float(s[1]))

    def _outputs(self, h: Tensor, s: np.ndarray, directions: bool = False) -> tuple[Tensor, ...]:
        """The second layer at s: its outputs (n x k), its weight and, with ``directions``,
        its two directions' outputs (n x 2k), from one product with h."""
        two = self.search[1]
        a2, b2 = float(s[2]), float(s[3])
        w, dw, mw = two.weight
        v = torch.add(w.detach(), dw, alpha=a2).add_(mw, alpha=b2)
        c = None
        if two.bias is not None:
            b, db, mb = two.bias
            c = torch.add(b.detach(), db, alpha=a2).add_(mb, alpha=b2)
        if not directions:
            return ((v @ h.T).T if c is None else torch.addmm(c[:, None], v, h.T).T), v
        k = v.shape[0]
        both = torch.cat([v, self._dm2]) @ h.T  # (3k, n)
        o, j2 = both[:k].T, both[k:].T
        if c is not None:
            o = o + c
        if self._dmc is not None:  # set exactly when the layer has a bias, like c
            j2 = j2 + self._dmc
        return o, v, j2

    @torch.no_grad()
    def value(self, s: npt.ArrayLike) -> float:
        """phi(s), the full objective (mean loss plus the L2 term) at step sizes s."""
        point = np.asarray(s, dtype=float)
        o = self._pre_activations(point)
        if len(self.layers) == 2:
            o = self._outputs(_activate(self.opt._activation, o, 0)[0], point)[0]
        return float(self.opt._loss.value(o)) + self._l2(point)[0]

    @torch.no_grad()
    def derivatives(self, s: npt.ArrayLike) -> tuple[float, np.ndarray, np.ndarray]:
        """phi(s), its gradient and its Hessian in s (float64 numpy arrays)."""
        point = np.asarray(s, dtype=float)
        loss = self.opt._loss
        z = self._pre_activations(point)
        if len(self.layers) == 1:
            val, g, form = loss.derivatives(z)
            jac = self._jac
            grad = jac.flatten(1) @ g.reshape(-1)
            hess = form(jac)
        else:
            n, k = z.shape[0], self._dm2.shape[0] // 2
            h, d1, d2 = _activate(self.opt._activation, z, 2)
            o, v, j2 = self._outputs(h, point, directions=True)
            val, g, form = loss.derivatives(o)
            # output Jacobian: through the first layer (a1, b1), then the second (a2, b2)
            jab = d1[:, None, :] * self.zdm  # d act(z) / d(a1, b1), (n, 2, h)
            j1 = (v @ jab.view(2 * n, -1).T).T.reshape(n, 2, k)
            jac = torch.cat([j1, j2.reshape(n, 2, k)], dim=1).transpose(0, 1).contiguous()
            grad = jac.flatten(1) @ g.reshape(-1)
            hess = form(jac)
            # second derivatives of the outputs, contracted with G without forming them:
            # d2 o / d(a1, b1) d(a2, b2) = act'(z) (zd or zm) [D2 or M2]^T, and through act''
            gj = (g.T @ jab.view(n, -1)).view(k, 2, -1)  # G^T d act(z) / d(a1, b1)
            cross = torch.einsum("kih,jkh->ij", gj, self._dm2.view(2, k, -1))
            second = torch.zeros(4, 4, dtype=hess.dtype, device=hess.device)
            second[:2, 2:] = cross
            if d2 is not None and self._squares is not None:  # both None exactly for relu
                sq = self._squares @ (d2 * (g @ v)).view(-1)  # zd^2, zd zm and zm^2 terms
                second[0, 0], second[0, 1], second[1, 1] = sq[0], sq[1], sq[2]
            hess = hess + second + torch.triu(second, 1).T
        lval, lgrad, lhess = self._l2(point)
        grad = grad.double().cpu().numpy() + lgrad
        hess = hess.double().cpu().numpy() + lhess
        return float(val) + lval, grad, hess


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

    ``step(closure)`` takes a closure that zeroes the gradients, computes the objective on
    the full batch (the mean loss above, plus the L2 term when ``l2`` is set) from the
    model, calls ``backward()`` and returns it. The optimizer computes the same objective
    from its own description of the model; a difference beyond ``check_tol`` that a fresh
    computation does not explain is an error (the structure, the data or the loss do not
    describe the model).

    ``step()`` without a closure computes the objective and the gradients itself (into
    ``.grad``) from the pre-activations it keeps, without the model's forward pass: an
    iteration then takes two products with X, as many as a fixed-LR step's forward and
    backward passes. The weights must then change only through this optimizer (or call
    ``step`` with a closure once after changing them), since nothing checks the kept
    products between their periodic recomputations.

    After a step, :attr:`last_step_sizes` holds the step sizes (a, b) or (a1, b1, a2, b2),
    :attr:`last_loss` the objective at the new weights and :attr:`last_inner_iterations`
    the evaluations of the subspace derivatives used.
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
        self._search: list[_Search] = []  # the current iteration's directions, per layer
        self._since_refresh = 0
        self.last_step_sizes: tuple[float, ...] = ()
        self.last_loss: float | None = None
        self.last_inner_iterations = 0

    # ---- state -------------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._z = self._zm = None  # recomputed from the loaded weights and momentum

    def _momentum(self, p: Tensor) -> Tensor | None:
        return self.state[p].get("momentum") if p in self.state else None

    def _has_momentum(self) -> bool:
        return all(self._momentum(p) is not None for p in self._params())

    def _params(self) -> list[Tensor]:
        return [p for layer in self._layers for p in layer.params()]

    def _first_layer_product(self, weight: Tensor, bias: Tensor | None) -> Tensor:
        z = self._x @ weight.T
        return z + bias if bias is not None else z

    def _refresh(self) -> Tensor:
        """Recompute the first layer's products from the weights and the previous step;
        returns the pre-activations X W1^T + b1."""
        one = self._layers[0]
        bias = one.bias.detach() if one.bias is not None else None
        z = self._first_layer_product(one.weight.detach(), bias)
        self._z = z
        m_weight = self._momentum(one.weight)
        if m_weight is not None and self._has_momentum():
            m_bias = self._momentum(one.bias) if one.bias is not None else None
            self._zm = self._first_layer_product(m_weight, m_bias)
        self._since_refresh = 0
        return z

    def _kept_z(self) -> Tensor:
        """X W1^T + b1 at the current weights: the kept one, recomputed when there is none
        yet or a periodic recomputation is due."""
        if self._z is None or self._since_refresh >= self._refresh_every:
            return self._refresh()
        return self._z

    def _own_gradients(self) -> Tensor:
        """The objective at the current weights, with its gradients put in ``.grad``,
        computed from the kept pre-activations: one product with X (the first layer's
        gradient), where a closure's forward and backward passes need two."""
        one, z = self._layers[0], self._kept_z()
        if len(self._layers) == 1:
            val, g, _ = self._loss.derivatives(z)
            delta = g
        else:
            two = self._layers[1]
            h, d1 = _activate(self._activation, z, 1)
            w2 = two.weight.detach()
            o = (w2 @ h.T).T if two.bias is None else torch.addmm(two.bias[:, None], w2, h.T).T
            val, g, _ = self._loss.derivatives(o)
            _set_grad(two.weight, g.T @ h)
            if two.bias is not None:
                _set_grad(two.bias, g.sum(0))
            delta = (g @ w2).mul_(d1)
        _set_grad(one.weight, delta.T @ self._x)
        if one.bias is not None:
            _set_grad(one.bias, delta.sum(0))
        val = val.detach()
        if self._l2:
            for layer in self._layers:
                w = layer.weight.detach()
                _grad(layer.weight).add_(w, alpha=self._l2)
                val = val + 0.5 * self._l2 * (w * w).sum()
        return val

    # ---- one iteration -----------------------------------------------------------------

    def subspace(self) -> Subspace:
        """The search problem at the current weights, from their ``.grad`` (call after the
        closure's backward pass); used by :meth:`step`, exposed for inspection."""
        search = []
        for layer in self._layers:
            grads = [_grad(p) for p in layer.params()]  # all checked before any is used
            weight = self._search_directions(layer.weight, grads[0])
            bias = None
            if layer.bias is not None:
                bias = self._search_directions(layer.bias, grads[1])
            search.append(_Search(weight, bias))
        self._search = search
        return Subspace(self, self._kept_z(), self._directions())

    def _search_directions(self, p: Tensor, grad: Tensor) -> _Directions:
        d = -grad.detach()
        m = self._momentum(p)
        return p, d, m if m is not None else torch.zeros_like(d)

    def _directions(self) -> Tensor:
        """X D1^T + d_b1 (the one product with X per step) beside the kept X M1^T + m_b1."""
        one = self._search[0]
        zd = self._first_layer_product(one.weight[1], one.bias[1] if one.bias is not None else None)
        zm = self._zm if self._zm is not None else torch.zeros_like(zd)
        return torch.stack([zd, zm], dim=1)

    def _basis(self, with_momentum: bool) -> np.ndarray:
        """Columns map the searched scalars to (a1, b1[, a2, b2])."""
        layers = len(self._layers)
        pairs = np.eye(2 * layers) if self._per_layer else np.tile(np.eye(2), (layers, 1))
        return pairs if with_momentum else pairs[:, ::2]

    # torch's stubs type step() as returning None without a closure and the closure's
    # float with one; this one returns the loss (a Tensor) either way, hence Any. The
    # closure must return a Tensor, which is checked when it runs.
    @torch.no_grad()
    def step(self, closure: Callable[[], float | Tensor] | None = None) -> Any:
        """One plane-search iteration; returns the loss before the step (the closure's)."""
        reported = None
        if closure is None:
            loss = self._own_gradients()
        else:
            with torch.enable_grad():
                out = closure()
            if not isinstance(out, Tensor) or out.numel() != 1:
                raise NosError("the PlaneSearch closure must return the loss as a 1-element tensor")
            loss = out
            reported = float(loss.detach())
        problem = self.subspace()
        start = problem.derivatives(np.zeros(problem.dim))
        if reported is not None and not self._agrees(reported, start[0]):
            z = self._refresh()  # the kept products may have drifted, or the weights changed
            zdm = problem.zdm
            if self._zm is not None:
                zdm[:, 1].copy_(self._zm)
            problem = Subspace(self, z, zdm)
            start = problem.derivatives(np.zeros(problem.dim))
            if not self._agrees(reported, start[0]):
                raise NosError(
                    f"the closure's loss {reported:.6g} differs from the {start[0]:.6g} that "
                    f"the PlaneSearch description gives ({self._structure}, {self._loss.kind}"
                    f"{', ' + self._activation if self._activation else ''}, l2={self._l2}):"
                    " the structure, inputs, targets or loss do not match the model"
                )
        basis = self._basis(self._has_momentum())
        r, val, iters = self._newton(problem, basis, start)
        s = basis @ r
        self._apply(problem, s)
        self.last_step_sizes = tuple(float(v) for v in s)
        self.last_loss = val
        self.last_inner_iterations = iters
        return loss

    def _agrees(self, a: float, b: float) -> bool:
        return math.isfinite(b) and abs(a - b) <= self._check_tol * max(1.0, abs(a))

    def _newton(
        self,
        problem: Subspace,
        basis: np.ndarray,
        start: tuple[float, np.ndarray, np.ndarray],
    ) -> tuple[np.ndarray, float, int]:
        """Minimise phi over span(basis) from 0 by a safeguarded Newton method.

        Returns the solution in the basis, phi there and the number of evaluations of
        the derivatives (the first, at 0, included; evaluations of values alone, a third of
        the cost, are not counted)."""
        r = np.zeros(basis.shape[1])
        f, g, h = start
        iters = 1
        for _ in range(self._max_inner):
            g_r, h_r = basis.T @ g, basis.T @ h @ basis
            if not (np.all(np.isfinite(g_r)) and np.all(np.isfinite(h_r))):
                break
            # Newton step on the eigenvalues made positive: a descent direction even where
            # phi is not convex, and a plain Newton step where it is
            lam, q = np.linalg.eigh(0.5 * (h_r + h_r.T))
            floor = max(1e-10 * float(np.max(np.abs(lam))), 1e-300)
            delta = -(q @ ((q.T @ g_r) / np.maximum(np.abs(lam), floor)))
            decrement = float(-g_r @ delta)
            if not decrement > 2.0 * self._inner_tol * max(1.0, abs(f)):
                break
            trial = r + delta
            if decrement <= _FINAL * max(1.0, abs(f)):
                # close: if phi falls by what its quadratic model predicts, this full step
                # ends the search (the next decrement would be about its square); a value
                # is a third of the cost of the derivatives
                ft = problem.value(basis @ trial)
                if abs((f - ft) - 0.5 * decrement) <= 0.25 * decrement:
                    r, f = trial, ft
                    break
            # the full step, with the derivatives the next iteration needs (it usually holds)
            ft, gt, ht = problem.derivatives(basis @ trial)
            iters += 1
            if ft <= f - 1e-4 * decrement:
                r, f, g, h = trial, ft, gt, ht
                continue
            t = 0.5  # backtracking on values only
            while t > 1e-12:
                trial = r + t * delta
                ft = problem.value(basis @ trial)
                if ft <= f - 1e-4 * t * decrement:
                    break
                t *= 0.5
            else:
                break  # no decrease left at this precision
            r = trial
            f, g, h = problem.derivatives(basis @ r)
            iters += 1
        return r, f, iters

    def _apply(self, problem: Subspace, s: np.ndarray) -> None:
        for i, layer in enumerate(problem.search):
            a, b = float(s[2 * i]), float(s[2 * i + 1])
            for p, d, m in layer.all():
                step = torch.add(d * a, m, alpha=b)
                p.add_(step)
                self.state[p]["momentum"] = step
        # the first layer's products follow the step without touching X
        zm = torch.add(problem.zd * float(s[0]), problem.zm, alpha=float(s[1]))
        self._z = problem.z + zm  # problem.z is the kept self._z
        self._zm = zm
        self._since_refresh += 1
        self._search = []


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


def _grad(p: Tensor) -> Tensor:
    if p.grad is None:
        raise NosError(
            "PlaneSearch: a parameter has no gradient; the closure must call backward() on the loss"
        )
    return p.grad


def _set_grad(p: Tensor, grad: Tensor) -> None:
    if p.grad is None:
        p.grad = grad.detach().clone()
    else:
        p.grad.copy_(grad)


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
