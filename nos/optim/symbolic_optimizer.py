"""``SymbolicOptimizer``: a ``torch.optim.Optimizer`` whose update rule is a candidate.

The class does the bookkeeping (param groups, state, schedules, dropout generator,
``state_dict``); the maths is the whole-group step of :mod:`nos.optim.runtime`, emitted from
the candidate's phenotype by :mod:`nos.symbolic.emit` (ARCHITECTURE §1.2).

Per step and parameter group, with t the group's step count ``group["step"]`` (spec
§2.5-§2.7):

* ``schedule="cosine"`` (the default when ``total_steps`` is given): eta_t is the base
  warmup-hold-cosine schedule of spec §2.7 peaking at the group's ``lr``; ``"constant"``:
  eta_t is the group's ``lr`` itself, so ``torch.optim.lr_scheduler`` drives it.
* The candidate's LR-schedule gene multiplies eta_t (spec §2.8); decays and the gene are
  functions of tau = t/T, so they need ``total_steps``.
* ``momentum="cyclic"`` is the one-cycle mu_t of spec §2.7; a number is a constant mu.
* The step is w += sigma eta_t U (with the momentum form of the candidate's gene, see
  :mod:`nos.optim.runtime`), sigma = -1, or +1 when ``flip``.
* ``weight_decay`` is decoupled (AdamW's): w <- w (1 - lr_t weight_decay) before the step,
  lr_t = eta_t times the LR multiplier; ``maximize`` negates the gradients, as in torch.optim.

The schedules (eta_t, mu_t, and tau of the decays and the LR gene) follow the group's step
count; the bias corrections 1 - beta^(k+1) of the moments and of ``ema`` count each
parameter's own steps k, ``state[p]["step"]`` (as torch.optim does), so a parameter that
first gets a gradient late is corrected from its own first step. Settings of one group
(``lr``, ``weight_decay``, ``total_steps``, ``warmup``, ``hold``, ``schedule``,
``momentum``, ``flip``, ``maximize``) may be overridden per parameter group.

A NaN or inf in a step does not raise: :attr:`SymbolicOptimizer.nonfinite` exposes it. A
step only ever adds to the weights, and a NaN or inf added to a weight never leaves it,
so the flag is computed when read, from the parameters: the steps themselves do no
check and never synchronise with the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from nos.errors import NosError
from nos.optim.runtime import LAYOUTS, TorchRuntime, group_step
from nos.symbolic.emit import NumpyRuntime, compile_phenotype
from nos.symbolic.genome import Candidate
from nos.symbolic.schedules import base_lr, cyclic_momentum
from nos.zoo.resolve import resolve

__all__ = ["FLAT_MAX", "OptimizerArgumentError", "SparseGradientError", "SymbolicOptimizer"]

_SCHEDULES = ("cosine", "constant")
_SCALAR_NAMES = ("t", "tau", "inv_T", "eta", "mu")
_BLOCK = 1024  # steps per cached block of schedule values
#: Largest group (in elements) that ``layout="auto"`` steps in the flat layout; measured
#: with ``tools/bench_step.py`` (flat wins on small groups, loses on large ones).
FLAT_MAX = 1 << 20
_NP_RT = NumpyRuntime()


class OptimizerArgumentError(NosError, ValueError):
    """A bad optimizer setting: a ValueError, as torch.optim raises, and a one-line NosError."""


class SparseGradientError(NosError, RuntimeError):
    """A sparse gradient: a RuntimeError, as torch.optim's Adam raises."""


def _reads_progress(cand: Candidate) -> bool:
    """Whether the candidate's update or LR gene depends on tau = t/T."""
    ph = cand.phenotype
    names = {s.name for s in ph.update.free_symbols}
    return bool(names - {"g", "w", "v", "s", "lam", "v_hat", "s_hat", "lam_hat"}) or ph.lr != 1


class SymbolicOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose update direction U is a candidate (see the module docstring).

    Args:
      params: parameters or parameter groups, as for any torch optimizer.
      candidate: a :class:`~nos.symbolic.genome.Candidate`, candidate text of ``grammar``, or
        ``zoo:NAME``. Zoo entries may carry defaults (e.g. Opt10's Nesterov form).
      lr: peak learning rate (``cosine``) or the learning rate (``constant``).
      total_steps: horizon T; required by the cosine schedule, decays, the LR gene and
        cyclic momentum.
      warmup, hold: warmup steps W and hold steps H of the base schedule (spec §2.7).
      schedule: ``"cosine"`` or ``"constant"``; default cosine when ``total_steps`` is set.
      momentum: ``"cyclic"`` or a number; default cyclic under the cosine schedule, else 0.9.
      nesterov: ``"search"`` (spec §2.5) or ``"keras"`` (the final code, spec §7.2).
      flip: step along +U instead of -U (spec §3).
      weight_decay: decoupled weight decay (AdamW's), scaled by the scheduled LR.
      maximize: ascend the objective (negate the gradients), as in torch.optim.
      seed: seed of the generator that draws dropout masks.
      compile: run the step through ``torch.compile`` (falls back to eager on failure).
      layout: ``"foreach"``, ``"flat"`` (see :mod:`nos.optim.runtime`) or ``"auto"``:
        flat for a group of at most :data:`FLAT_MAX` elements whose parameters all have
        gradients (where per-op overhead dominates, one op per group beats one foreach
        call over many small tensors), foreach otherwise. Both layouts share the same
        per-tensor state views, so a group may change layout from one step to the next.
      grammar: grammar of a textual candidate.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        candidate: Candidate | str,
        lr: float = 1e-3,
        *,
        total_steps: int | None = None,
        warmup: int = 0,
        hold: int = 0,
        schedule: str | None = None,
        momentum: float | str | None = None,
        nesterov: str | None = None,
        flip: bool = False,
        weight_decay: float = 0.0,
        maximize: bool = False,
        seed: int = 0,
        compile: bool = False,
        layout: str = "auto",
        grammar: str = "morgan2024",
    ) -> None:
        cand = resolve(candidate, grammar)
        options = dict(getattr(cand, "options", {}) or {})
        # None: resolved per group from its total_steps (see _validate), as the export does
        schedule = schedule or options.get("schedule")
        if momentum is None:
            momentum = options.get("momentum")
        nesterov = nesterov or options.get("nesterov", "search")
        if layout not in (*LAYOUTS, "auto"):
            raise OptimizerArgumentError(
                f"unknown layout {layout!r}; expected foreach, flat or auto"
            )
        if nesterov not in ("search", "keras"):
            raise OptimizerArgumentError(
                f"unknown Nesterov form {nesterov!r}; expected search or keras"
            )
        self.candidate = cand
        self.nesterov = nesterov
        self.layout = layout
        self.compile = compile
        self._needs_horizon = _reads_progress(cand)
        self._torch_fns = compile_phenotype(cand.phenotype, "torch")
        self._numpy_fns = compile_phenotype(cand.phenotype, "numpy")
        self._seed = seed
        self._generators: dict[str, torch.Generator] = {}
        self._nonfinite = False
        self._runtimes: dict[tuple[int, bool], TorchRuntime] = {}
        self._flat: dict[int, tuple[tuple[int, ...], dict[str, torch.Tensor]]] = {}
        # per group: the parameters of the last step and their state lists
        self._lists: dict[int, tuple[tuple[int, ...], dict[str, list[torch.Tensor]], Any]] = {}
        # per group: a block of base-schedule values (see _schedule)
        self._sched: dict[int, tuple[tuple, int, list[float], list[float]]] = {}
        self._random_slots = [name for name, kind in self._torch_fns.slots if kind == "random"]
        self._has_momentum = cand.momentum.value != "none"
        self._step_fns: dict[str, Callable[..., None]] = {}
        self._sizes: dict[int, tuple[tuple[int, ...], bool]] = {}
        defaults = {
            "lr": lr,
            "total_steps": total_steps,
            "warmup": warmup,
            "hold": hold,
            "schedule": schedule,
            "momentum": momentum,
            "flip": flip,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        self._keys = list(self._torch_fns.init_state(torch.zeros(1), TorchRuntime()))
        super().__init__(params, defaults)

    # ------------------------------------------------------------------ configuration

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        param_group.setdefault("step", 0)
        try:
            self._validate(self.param_groups[-1])
        except NosError:
            self.param_groups.pop()
            raise

    def _validate(self, group: dict[str, Any]) -> None:
        """Resolve a group's schedule and momentum defaults and check its settings."""
        err = OptimizerArgumentError
        lr, wd = group["lr"], group["weight_decay"]
        if not (isinstance(lr, int | float) and lr >= 0 and math.isfinite(lr)):
            raise err(f"invalid learning rate: {lr}")
        if not (isinstance(wd, int | float) and wd >= 0 and math.isfinite(wd)):
            raise err(f"invalid weight_decay: {wd}")
        total = group["total_steps"]
        if group["schedule"] is None:
            group["schedule"] = "cosine" if total is not None else "constant"
        if group["schedule"] not in _SCHEDULES:
            raise err(f"unknown schedule {group['schedule']!r}; expected cosine or constant")
        if group["momentum"] is None:
            group["momentum"] = "cyclic" if group["schedule"] == "cosine" else 0.9
        mu = group["momentum"]
        if mu != "cyclic" and not (isinstance(mu, int | float) and mu >= 0 and math.isfinite(mu)):
            raise err(f"momentum must be 'cyclic' or a number >= 0, got {mu!r}")
        needs = []
        if group["schedule"] == "cosine":
            needs.append("the cosine LR schedule")
        if self._needs_horizon:
            needs.append("its decays or LR-schedule gene")
        if group["momentum"] == "cyclic" and self.candidate.momentum.value != "none":
            needs.append("cyclic momentum")
        if total is None:
            if needs:
                raise err(
                    f"candidate '{self.candidate}' needs total_steps for {' and '.join(needs)}"
                )
            return
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise err(f"total_steps must be a positive integer, got {total!r}")
        w, h = group["warmup"], group["hold"]
        if isinstance(w, int) and w > total:
            raise err(f"warmup {w} is larger than total_steps {total}")
        bad = not (
            isinstance(w, int) and isinstance(h, int) and w >= 0 and h >= 0 and w + h < total
        )
        if bad and (group["schedule"] == "cosine" or group["momentum"] == "cyclic"):
            raise err(
                f"need 0 <= warmup, 0 <= hold and warmup + hold < total_steps; "
                f"got warmup={w}, hold={h}, total_steps={total}"
            )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("step", 0)
            group.setdefault("weight_decay", 0.0)
            group.setdefault("maximize", False)

    # ------------------------------------------------------------------------- state

    @property
    def nonfinite(self) -> bool:
        """Whether a step so far produced a NaN or inf: whether a parameter holds one (one
        synchronisation per device; sticky once seen)."""
        if not self._nonfinite:
            by_device: dict[torch.device, list[torch.Tensor]] = {}
            for group in self.param_groups:
                for p in group["params"]:
                    by_device.setdefault(p.device, []).append(p)
            self._nonfinite = any(
                not bool(torch.stack([torch.isfinite(p).all() for p in ps]).all())
                for ps in by_device.values()
            )
        return self._nonfinite

    def generator(self, device: torch.device) -> torch.Generator:
        """The dropout-mask generator of a device (seeded from ``seed`` and the device)."""
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._seed)
            self._generators[key] = gen
        return gen

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["nos"] = {
            "generators": {k: g.get_state() for k, g in self._generators.items()},
            "nonfinite": self.nonfinite,
            "candidate": self.candidate.text,
        }
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("nos", None)
        super().load_state_dict(state_dict)
        self._flat.clear()  # flat buffers are rebuilt from the loaded per-tensor state
        self._lists.clear()
        if extra is not None:
            for key, gen_state in extra.get("generators", {}).items():
                gen = torch.Generator(device=key)
                gen.set_state(gen_state.cpu() if isinstance(gen_state, torch.Tensor) else gen_state)
                self._generators[key] = gen
            if extra.get("nonfinite"):
                self._nonfinite = True

    # -------------------------------------------------------------------------- step

    def _schedule(self, gi: int, group: dict[str, Any], tc: int) -> tuple[float, float]:
        """Base eta_t and cyclic mu_t of step ``tc``, from a cached block of steps: one
        vectorised evaluation per block instead of two numpy calls per step."""
        total, warmup, hold = group["total_steps"], group["warmup"], group["hold"]
        key = (group["lr"], warmup, hold, total, group["schedule"], group["momentum"])
        start = tc - tc % _BLOCK
        hit = self._sched.get(gi)
        if hit is None or hit[0] != key or hit[1] != start:
            ts = np.arange(start, min(start + _BLOCK, total))
            etas = (
                base_lr(ts, group["lr"], warmup, total, hold).tolist()
                if group["schedule"] == "cosine"
                else []
            )
            mus = (
                cyclic_momentum(ts, warmup, total, hold).tolist()
                if group["momentum"] == "cyclic"
                else []
            )
            hit = self._sched[gi] = (key, start, etas, mus)
        i = tc - start
        eta = hit[2][i] if hit[2] else float(group["lr"])
        mu = hit[3][i] if hit[3] else float(group["momentum"])
        return eta, mu

    def _scalars(self, gi: int, group: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """The per-step numbers of a group (``t`` is set per parameter by the caller) and
        lr_t, the unsigned step size that scales the weight decay."""
        t = group["step"]
        total = group["total_steps"]
        if total is None:
            eta, mu = float(group["lr"]), group["momentum"]
            tc, tau, inv_t = t, 0.0, 0.0
            mu = 0.0 if mu == "cyclic" else float(mu)
        else:
            # past the horizon the schedules hold their last step (the reference would
            # index past the end of its precomputed arrays)
            tc = min(t, total - 1)
            tau, inv_t = tc / total, 1.0 / total
            if group["schedule"] == "cosine" or group["momentum"] == "cyclic":
                eta, mu = self._schedule(gi, group, tc)
            else:
                eta, mu = float(group["lr"]), float(group["momentum"])
        if not self._numpy_fns.lr_is_one:
            with np.errstate(all="ignore"):
                eta *= float(self._numpy_fns.lr(tau, inv_t, _NP_RT))
        lr_t = eta
        eta = eta if group["flip"] else -eta
        return {"t": tc, "tau": tau, "inv_T": inv_t, "eta": eta, "mu": mu}, lr_t

    @staticmethod
    def _as_tensors(sc: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        """The per-step numbers as 0-d float64 tensors (the compiled step's inputs)."""
        values = torch.tensor([float(sc[k]) for k in _SCALAR_NAMES], dtype=torch.float64)
        if device.type != "cpu":
            values = values.to(device, non_blocking=True)
        return dict(zip(_SCALAR_NAMES, values.unbind(), strict=True))

    def _function(self, layout: str) -> Callable[..., None]:
        fn = self._step_fns.get(layout)
        if fn is None:
            from nos.symbolic.keys import canonical_key

            fn = self._step_fns[layout] = group_step(
                self._torch_fns,
                self.candidate.momentum.value,
                nesterov=self.nesterov,
                layout=layout,
                compile=self.compile,
                key=canonical_key(self.candidate) if self.compile else None,
            )
        return fn

    def _layout(self, gi: int, group: dict[str, Any]) -> str:
        if self.layout != "auto":
            return self.layout
        params = group["params"]
        if any(p.grad is None for p in params):
            return "foreach"
        ids = tuple(map(id, params))
        hit = self._sizes.get(gi)
        if hit is None or hit[0] != ids:
            kinds = {(p.dtype, p.device) for p in params}  # one buffer needs one of each
            small = sum(p.numel() for p in params) <= FLAT_MAX and len(kinds) == 1
            hit = self._sizes[gi] = (ids, small)
        return "flat" if hit[1] else "foreach"

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimizer step for every group; returns ``closure()`` when given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            with_grad = [p for p in group["params"] if p.grad is not None]
            if not with_grad:
                continue
            if any(p.grad.is_sparse for p in with_grad):
                raise SparseGradientError("SymbolicOptimizer does not support sparse gradients")
            steps = []
            for p in with_grad:  # each parameter's own step count (its bias corrections)
                st = self.state[p]
                if "step" not in st:  # new, or state saved before steps were per parameter
                    st["step"] = group["step"] if st else 0
                steps.append(st["step"])
            uniform = steps.count(steps[0]) == len(steps)
            every = len(with_grad) == len(group["params"])
            layout = self._layout(gi, group) if uniform and every else "foreach"
            fn = self._step_fns.get(layout) or self._function(layout)
            flat = layout == "flat"
            device = with_grad[0].device
            sc, lr_t = self._scalars(gi, group)
            if group["weight_decay"]:  # decoupled, before the update reads the weights
                torch._foreach_mul_(with_grad, 1.0 - lr_t * group["weight_decay"])
            grads = [p.grad for p in with_grad]
            if group["maximize"]:
                grads = list(torch._foreach_neg(grads))
            noise = self._noise(with_grad, device, flat) if self._random_slots else {}
            if uniform:
                parts = [(with_grad, grads, steps[0], noise, True)]
            else:  # one call per step count; noise drawn for the group, then shared out
                by_step: dict[int, list[int]] = {}
                for i, k in enumerate(steps):
                    by_step.setdefault(k, []).append(i)
                parts = [
                    (
                        [with_grad[i] for i in idx],
                        [grads[i] for i in idx],
                        k,
                        {s: [v[i] for i in idx] for s, v in noise.items()},
                        False,
                    )
                    for k, idx in by_step.items()
                ]
            for params, gs, k, nz, cache in parts:
                rt = self._runtime(gi, params, device, flat)
                state: dict[str, torch.Tensor] | dict[str, list[torch.Tensor]]
                if flat:
                    state, mom = self._flat_state(gi, params, gs, rt)
                else:
                    state, mom = self._list_state(gi, params, gs, rt, cache=cache)
                rt.noise = nz
                sk = dict(sc, t=k)
                fn(params, gs, state, mom, self._as_tensors(sk, device) if self.compile else sk, rt)
            for p in with_grad:
                self.state[p]["step"] += 1
            group["step"] += 1
        return loss

    def _runtime(
        self, gi: int, params: list[torch.Tensor], device: torch.device, flat: bool
    ) -> TorchRuntime:
        rt = self._runtimes.get((gi, flat))
        if rt is None:
            sizes = [p.numel() for p in params] if flat else None
            rt = self._runtimes[(gi, flat)] = TorchRuntime(sizes, device)
        return rt

    def _noise(
        self, params: list[torch.Tensor], device: torch.device, flat: bool
    ) -> dict[str, Any]:
        slots = self._random_slots
        gen = self.generator(device)
        if flat:
            n = sum(p.numel() for p in params)
            return {
                s: torch.rand(n, generator=gen, dtype=params[0].dtype, device=device) for s in slots
            }
        return {
            s: [torch.rand(p.shape, generator=gen, dtype=p.dtype, device=device) for p in params]
            for s in slots
        }

    def _list_state(
        self,
        gi: int,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
        rt: TorchRuntime,
        cache: bool = True,
    ) -> tuple[dict[str, list[torch.Tensor]], Any]:
        ids = tuple(map(id, params))
        hit = self._lists.get(gi)
        if cache and hit is not None and hit[0] == ids:
            return hit[1], hit[2]
        keys = self._keys + (["momentum_buffer"] if self._has_momentum else [])
        for p in params:  # lazily created (zeros), as torch optimizers do
            st = self.state[p]
            for k in keys:
                if k not in st:
                    st[k] = torch.zeros_like(p)
        state = {k: [self.state[p][k] for p in params] for k in self._keys}
        mom = [self.state[p]["momentum_buffer"] for p in params] if self._has_momentum else None
        if cache:
            self._lists[gi] = (ids, state, mom)
        return state, mom

    def _flat_state(
        self, gi: int, params: list[torch.Tensor], grads: list[torch.Tensor], rt: TorchRuntime
    ) -> tuple[dict[str, torch.Tensor], Any]:
        ids = tuple(id(p) for p in params)
        hit = self._flat.get(gi)
        if hit is None or hit[0] != ids:
            # the flat buffers, from per-tensor state (after a load, or after foreach
            # steps); a parameter without state yet starts at zero
            keys = self._keys + (["momentum_buffer"] if self._has_momentum else [])
            bufs = {
                k: torch.cat(
                    [
                        self.state[p][k].reshape(-1)
                        if k in self.state[p]
                        else torch.zeros_like(p).reshape(-1)
                        for p in params
                    ]
                )
                for k in keys
            }
            self._lists.pop(gi, None)  # the per-tensor state now lives in these buffers
            sizes = [p.numel() for p in params]
            for k, buf in bufs.items():  # per-tensor views, so state_dict is the usual one
                for p, piece in zip(params, torch.split(buf, sizes), strict=True):
                    self.state[p][k] = piece.view_as(p)
            hit = self._flat[gi] = (ids, bufs)
        bufs = dict(hit[1])
        mom = bufs.pop("momentum_buffer", None)
        return bufs, mom
