"""Built-in baseline optimizers: the tuned modern optimizers that discovered ones are compared to.

:data:`BASELINES` maps a name to a :class:`Baseline`: a factory with one signature,
``factory(params, lr, weight_decay, warmup_steps) -> torch.optim.Optimizer``, and the facts a
benchmark needs to treat it fairly:

* ``schedules_itself`` - the optimizer brings its own schedule (Schedule-Free): the caller
  must not add a warmup+cosine LR schedule; ``warmup_steps`` is for such entries only (the
  others receive the caller's schedule and ignore it).
* ``matrix_class`` - the optimizer treats weight matrices as matrices (Muon); reports put it
  in a column of its own, as a ceiling rather than a like-for-like elementwise rival.
* ``default_weight_decay`` and ``decoupled`` (decoupled decay, as in AdamW, or an L2 term
  added to the gradient, as in torch's Adam, RMSprop and SGD).

:func:`make_baseline` builds one by name. :func:`train_mode` / :func:`eval_mode` must be
called around training and evaluation with every entry: they switch Schedule-Free between
its training point and its averaged point and do nothing for the others.

Lion and cautious AdamW are written here (torch has neither); Schedule-Free AdamW comes from
the optional ``schedulefree`` package; Muon is :class:`MuonWithAdamW`, ``torch.optim.Muon``
on the hidden weight matrices and AdamW on everything else, as one optimizer object.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, overload

import torch
from torch import Tensor

from nos.errors import NosError

__all__ = [
    "BASELINES",
    "Baseline",
    "CautiousAdamW",
    "Lion",
    "MuonWithAdamW",
    "baseline_names",
    "eval_mode",
    "get_baseline",
    "make_baseline",
    "train_mode",
]

Params = Iterable[Tensor] | Iterable[dict[str, Any]]
Factory = Callable[[Params, float, float, int], torch.optim.Optimizer]
# torch's stubs type the closure as returning a float; a loss closure returns a Tensor
Closure = Callable[[], float] | Callable[[], Tensor]


class _PerTensor(torch.optim.Optimizer):
    """The step of an elementwise optimizer written here: the closure under grad mode, then
    :meth:`_update` for every parameter that has a gradient."""

    _label = ""  # in error messages

    def _check(self, lr: float, weight_decay: float, betas: tuple[float, float]) -> None:
        _check_hyper(lr, weight_decay)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise NosError(f"{self._label} betas must lie in [0, 1), got {betas}")

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], float]) -> float: ...
    @overload
    def step(self, closure: Callable[[], Tensor]) -> Tensor: ...
    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> float | Tensor | None:
        loss: float | Tensor | None = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self.state[p], group)
        return loss


class Lion(_PerTensor):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

    Per step, with gradient g and momentum m (zero at the start)::

        c = beta1 * m + (1 - beta1) * g
        w = w - lr * (sign(c) + weight_decay * w)
        m = beta2 * m + (1 - beta2) * g

    The update is a sign, so every coordinate moves by exactly lr (plus decay): the paper
    uses an lr 3-10x smaller and a decoupled weight decay 3-10x larger than AdamW's.
    """

    _label = "Lion"

    def __init__(
        self,
        params: Params,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ):
        self._check(lr, weight_decay, betas)
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        m = state["exp_avg"]
        direction = torch.lerp(g, m, beta1).sign_()  # beta1*m + (1-beta1)*g
        if wd != 0.0:
            p.mul_(1.0 - lr * wd)
        p.add_(direction, alpha=-lr)
        m.lerp_(g, 1.0 - beta2)


class CautiousAdamW(_PerTensor):
    """AdamW with the cautious mask (Liang et al. 2024, "Cautious Optimizers").

    Per step and tensor, u is AdamW's bias-corrected update m_hat / (sqrt(v_hat) + eps).
    Coordinates where u and the current gradient g disagree in sign are dropped and the
    rest are scaled up by the inverse of the kept fraction (the mask over its mean), so the
    average step size is unchanged::

        phi = 1[u * g > 0]
        w = w * (1 - lr * weight_decay)            # decoupled, on every coordinate
        w = w - lr * u * phi / (mean(phi) + mask_eps)

    The mean is taken over each parameter tensor. With every coordinate kept this is AdamW.
    """

    _label = "cautious AdamW"

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        mask_eps: float = 1e-8,
    ):
        self._check(lr, weight_decay, betas)
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "mask_eps": mask_eps,
        }
        super().__init__(params, defaults)

    def _update(self, p: Tensor, g: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1.0 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denom = (v / (1.0 - beta2**t)).sqrt_().add_(eps)
        u = (m / (1.0 - beta1**t)).div_(denom)
        mask = (u * g > 0).to(u.dtype)
        u.mul_(mask).div_(mask.mean() + group["mask_eps"])
        if wd != 0.0:
            p.mul_(1.0 - lr * wd)
        p.add_(u, alpha=-lr)


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon on the hidden weight matrices, AdamW on every other parameter, as one optimizer.

    ``torch.optim.Muon`` orthogonalises the momentum of a weight matrix; it is meant for
    the matrices of hidden layers only. Which parameters get it (the usual practice):

    * parameters are taken in the order given (``model.parameters()`` order, input to
      output); among the 2-D ones, the first (the input layer or embedding) and the last
      (the classifier head) go to AdamW, every 2-D one in between to Muon;
    * biases, norm scales and every other non-2-D parameter go to AdamW, and so do
      convolution kernels (``torch.optim.Muon`` accepts matrices only);
    * a param-group dict may carry ``"muon": True`` or ``False`` to decide for its
      parameters; its other keys (``lr``, ``weight_decay``) apply to them either way.

    Muon's step size is adjusted with ``adjust_lr_fn="match_rms_adamw"`` (0.2 sqrt(max(A, B))
    per A x B matrix), which gives its updates AdamW's RMS, so one ``lr`` and one
    ``weight_decay`` serve both halves. A model with fewer than three weight matrices has
    no hidden matrix and the optimizer is then plain AdamW (:attr:`muon_params` is 0).

    ``param_groups`` lists the Muon groups then the AdamW groups; they are the inner
    optimizers' own dicts, so LR schedulers act on both. ``step``, ``zero_grad``,
    ``state_dict`` and ``load_state_dict`` work as for any optimizer.
    """

    def __init__(
        self,
        params: Params,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        *,
        momentum: float = 0.95,
        nesterov: bool = True,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        _check_hyper(lr, weight_decay)
        muon_groups, adamw_groups = _split_for_muon(params)
        if not muon_groups and not adamw_groups:
            raise NosError("Muon got an empty parameter list")
        self._muon: torch.optim.Optimizer | None = None
        self._adamw: torch.optim.Optimizer | None = None
        if muon_groups:
            self._muon = torch.optim.Muon(
                muon_groups,
                lr=lr,
                weight_decay=weight_decay,
                momentum=momentum,
                nesterov=nesterov,
                adjust_lr_fn="match_rms_adamw",
            )
        if adamw_groups:
            self._adamw = torch.optim.AdamW(
                adamw_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay
            )
        self.muon_params = sum(len(g["params"]) for g in muon_groups)
        self._n_muon_groups = len(muon_groups)
        # add_param_group keeps the dict objects, so the groups stay shared with the inner ones
        super().__init__([g for opt in self._inner() for g in opt.param_groups], {"lr": lr})
        self._link()
        self._built = True

    def _inner(self) -> list[torch.optim.Optimizer]:
        return [opt for opt in (self._muon, self._adamw) if opt is not None]

    def _link(self) -> None:
        """Point the inner optimizers at this object's groups and (shared) state."""
        k = self._n_muon_groups
        if self._muon is not None:
            self._muon.param_groups = self.param_groups[:k]
            self._muon.state = self.state
        if self._adamw is not None:
            self._adamw.param_groups = self.param_groups[k:]
            self._adamw.state = self.state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if getattr(self, "_built", False):
            raise NosError("Muon takes all its parameters when it is built")
        super().add_param_group(param_group)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._link()

    @overload
    def step(self, closure: None = None) -> None: ...
    @overload
    def step(self, closure: Callable[[], float]) -> float: ...
    @overload
    def step(self, closure: Callable[[], Tensor]) -> Tensor: ...
    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> float | Tensor | None:
        loss: float | Tensor | None = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self._inner():
            opt.step()
        return loss


def _split_for_muon(params: Params) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Param groups for Muon and for AdamW (see :class:`MuonWithAdamW`)."""
    items: list[Tensor | dict[str, Any]] = list(params)
    given: list[dict[str, Any]] = [{"params": items}]
    if items and isinstance(items[0], dict):
        given = [_group(item) for item in items]
    groups = [{**g, "params": _as_list(g["params"])} for g in given]
    matrices = [p for g in groups for p in g["params"] if p.ndim == 2]
    edge = {id(matrices[0]), id(matrices[-1])} if matrices else set()
    muon_groups: list[dict[str, Any]] = []
    adamw_groups: list[dict[str, Any]] = []
    for group in groups:
        choice = group.pop("muon", None)
        if choice is None:
            to_muon = [p for p in group["params"] if p.ndim == 2 and id(p) not in edge]
        elif choice:
            bad = [tuple(p.shape) for p in group["params"] if p.ndim != 2]
            if bad:
                raise NosError(f"Muon takes only 2-D parameters, got shapes {bad}")
            to_muon = list(group["params"])
        else:
            to_muon = []
        chosen = {id(p) for p in to_muon}
        rest = [p for p in group["params"] if id(p) not in chosen]
        if to_muon:
            muon_groups.append({**group, "params": to_muon})
        if rest:
            adamw_groups.append({**group, "params": rest})
    return muon_groups, adamw_groups


def _group(item: Tensor | dict[str, Any]) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise NosError("Muon takes a list of tensors or a list of param-group dicts, not both")
    return item


def _as_list(params: Tensor | Iterable[Tensor]) -> list[Tensor]:
    return [params] if isinstance(params, Tensor) else list(params)


def _check_hyper(lr: float, weight_decay: float) -> None:
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise NosError(f"learning rate must be a positive number, got {lr!r}")
    if not (
        isinstance(weight_decay, int | float) and math.isfinite(weight_decay) and weight_decay >= 0
    ):
        raise NosError(f"weight decay must be a number >= 0, got {weight_decay!r}")


# ---- the registry -------------------------------------------------------------------------


def _adamw(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def _adam(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def _nadamw(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    return torch.optim.NAdam(params, lr=lr, weight_decay=wd, decoupled_weight_decay=True)


def _rmsprop(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)


def _sgd_nesterov(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)


def _lion(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    return Lion(params, lr=lr, betas=(0.9, 0.99), weight_decay=wd)


def _cautious_adamw(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    return CautiousAdamW(params, lr=lr, weight_decay=wd)


def _schedulefree_adamw(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    try:
        import schedulefree
    except ImportError:
        raise NosError(
            "schedulefree-adamw needs the optional 'schedulefree' package: pip install schedulefree"
        ) from None
    opt = schedulefree.AdamWScheduleFree(params, lr=lr, weight_decay=wd, warmup_steps=warmup)
    opt.train()  # ready to step, like every other entry
    return opt


def _muon(params: Params, lr: float, wd: float, warmup: int) -> torch.optim.Optimizer:
    return MuonWithAdamW(params, lr=lr, weight_decay=wd)


@dataclass(frozen=True)
class Baseline:
    """A named baseline optimizer and what a benchmark must know to run it fairly."""

    name: str
    description: str
    factory: Factory
    default_weight_decay: float = 0.0
    decoupled: bool = True
    schedules_itself: bool = False
    matrix_class: bool = False

    def make(
        self,
        params: Params,
        lr: float,
        weight_decay: float | None = None,
        *,
        warmup_steps: int = 0,
    ) -> torch.optim.Optimizer:
        """The optimizer over ``params``; ``weight_decay=None`` takes the entry's default."""
        wd = self.default_weight_decay if weight_decay is None else weight_decay
        _check_hyper(lr, wd)
        if not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise NosError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        return self.factory(params, float(lr), float(wd), warmup_steps)


def _entries() -> dict[str, Baseline]:
    entries = [
        Baseline("adamw", "AdamW (torch.optim), decoupled weight decay", _adamw, 0.01),
        Baseline(
            "adam", "Adam (torch.optim), weight decay as an L2 term", _adam, 0.0, decoupled=False
        ),
        Baseline("nadamw", "NAdam (torch.optim) with decoupled weight decay", _nadamw, 0.01),
        Baseline(
            "rmsprop",
            "RMSprop (torch.optim), alpha 0.99, weight decay as L2",
            _rmsprop,
            0.0,
            decoupled=False,
        ),
        Baseline(
            "sgd-nesterov",
            "SGD with Nesterov momentum 0.9, weight decay as L2",
            _sgd_nesterov,
            0.0,
            decoupled=False,
        ),
        Baseline(
            "lion", "Lion (Chen et al. 2023), betas 0.9/0.99, decoupled weight decay", _lion, 0.1
        ),
        Baseline(
            "cautious-adamw",
            "AdamW masked where its update and the gradient disagree in sign (Liang et al. 2024)",
            _cautious_adamw,
            0.01,
        ),
        Baseline(
            "schedulefree-adamw",
            "Schedule-Free AdamW (Defazio et al. 2024; optional"
            " 'schedulefree' package), its own schedule",
            _schedulefree_adamw,
            0.01,
            schedules_itself=True,
        ),
        Baseline(
            "muon",
            "Muon (torch.optim) on hidden weight matrices, AdamW on the rest",
            _muon,
            0.01,
            matrix_class=True,
        ),
    ]
    return {e.name: e for e in entries}


#: The baselines by name.
BASELINES: dict[str, Baseline] = _entries()


def baseline_names() -> list[str]:
    """The registered names, in registry order."""
    return list(BASELINES)


def get_baseline(name: str) -> Baseline:
    """The entry called ``name``; an unknown name is a NosError listing the known ones."""
    try:
        return BASELINES[name]
    except (KeyError, TypeError):
        raise NosError(
            f"unknown baseline optimizer {name!r}; known: {', '.join(BASELINES)}"
        ) from None


def make_baseline(
    name: str,
    params: Params,
    lr: float,
    weight_decay: float | None = None,
    *,
    warmup_steps: int = 0,
) -> torch.optim.Optimizer:
    """Build the baseline ``name`` over ``params`` (see :meth:`Baseline.make`)."""
    return get_baseline(name).make(params, lr, weight_decay, warmup_steps=warmup_steps)


def train_mode(opt: torch.optim.Optimizer) -> None:
    """Call before training steps (after any evaluation): Schedule-Free moves the weights
    back to its training point; every other optimizer is left as it is."""
    switch = getattr(opt, "train", None)
    if callable(switch):
        switch()


def eval_mode(opt: torch.optim.Optimizer) -> None:
    """Call before evaluating or saving the model: Schedule-Free moves the weights to its
    averaged point; every other optimizer is left as it is."""
    switch = getattr(opt, "eval", None)
    if callable(switch):
        switch()
