"""Standalone export: one Python file, importing only torch, with a ``torch.optim.Optimizer``.

The update function is written by the same emitter as the in-search step (:mod:`nos.symbolic.emit`,
spelling table ``torch_export`` of :mod:`nos.optim.runtime`), so the exported class computes
what was searched: per parameter tensor, the moments and stateful ops (spec §2.2-§2.3),
the decays of tau = t/T (spec §2.6), the base warmup-hold-cosine schedule and cyclical
momentum (spec §2.7), the LR-schedule gene (spec §2.8) and the momentum form (spec §2.5).
Dropout masks are drawn in the same order from a generator seeded like
``SymbolicOptimizer``'s, so the two agree step for step.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from nos.errors import NosError
from nos.optim import runtime as backend_torch  # noqa: F401  (registers the torch_export spelling table)
from nos.symbolic.emit import emit_source
from nos.symbolic.genome import Candidate

__all__ = ["class_name_for", "render_module"]

_WIDTH = 95

_HELPERS = {
    "_clip(": '''
def _clip(x, y):
    """clip(x, -|y|, |y|), with NaN propagating."""
    bound = torch.abs(y)
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


def _function(src: str, header: str, indent: str = "") -> str:
    """Re-head an emitted function and wrap its long lines."""
    lines = src.strip("\n").split("\n")
    out = [indent + header]
    for line in lines[1:]:
        stripped = line.strip()
        if not stripped:
            continue
        lead = line[: len(line) - len(line.lstrip())]
        out.extend(_wrap(stripped, indent + lead))
    return "\n".join(out) + "\n"


def _split_functions(source: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for chunk in re.split(r"\n(?=def )", source.strip()):
        name = re.match(r"def (\w+)\(", chunk)
        if name:
            parts[name.group(1)] = chunk
    return parts


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


_CLASS = '''

class {cls}(torch.optim.Optimizer):
    {doc}

    def __init__(self, params, lr=1e-3, total_steps=None, warmup=0, hold=0,
                 schedule={schedule!r}, momentum={momentum!r}, nesterov={nesterov!r},
                 flip={flip!r}, seed=0):
        if schedule is None:
            schedule = "cosine" if total_steps is not None else "constant"
        if momentum is None:
            momentum = "cyclic" if schedule == "cosine" else 0.9
        if lr < 0:
            raise ValueError(f"Invalid learning rate: {{lr}}")
        if total_steps is None and (schedule == "cosine" or NEEDS_TOTAL_STEPS
                                    or (momentum == "cyclic" and MOMENTUM != "none")):
            raise ValueError("total_steps is required by this optimizer's schedules")
        defaults = dict(lr=lr, total_steps=total_steps, warmup=warmup, hold=hold,
                        schedule=schedule, momentum=momentum, flip=flip)
        super().__init__(params, defaults)
        self.nesterov = nesterov
        self.seed = seed
        self._generators = {{}}

    def _generator(self, device):
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device)
            self._generators[key].manual_seed(self.seed)
        return self._generators[key]

    def _schedules(self, group, t):
        """eta_t (signed, with the LR multiplier) and mu_t at step t."""
        total, warmup, hold = group["total_steps"], group["warmup"], group["hold"]
        if total is not None:
            t = min(t, total - 1)
        if group["schedule"] == "cosine":
            if t < warmup:
                eta = group["lr"] * t / warmup
            elif t <= warmup + hold:
                eta = group["lr"]
            else:
                down = (t - warmup - hold) / (total - warmup - hold)
                eta = 0.5 * group["lr"] * (1.0 + float(torch.cos(_PI * down)))
        else:
            eta = group["lr"]
        if total is not None:
            tau = torch.tensor(t / total, dtype=torch.float64)
            eta *= float(_lr_multiplier(tau, torch.tensor(1.0 / total, dtype=torch.float64)))
        mu = group["momentum"]
        if mu == "cyclic":
            if t < warmup:
                mu = 0.95 - 0.1 * t / warmup
            elif t <= warmup + hold:
                mu = 0.85
            else:
                mu = 0.85 + 0.1 * (t - warmup - hold) / (total - warmup - hold)
        return (eta if group["flip"] else -eta), float(mu), t

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            step_count = group.setdefault("step", 0)
            eta, mu, t = self._schedules(group, step_count)
            total = group["total_steps"]
            device = params[0].device
            scalars = torch.tensor([t, t / total if total else 0.0,
                                    1.0 / total if total else 0.0, eta, mu],
                                   dtype=torch.float64).to(device)
            t_, tau, inv_t, eta_, mu_ = scalars.unbind()
            noise = {{slot: [torch.rand(p.shape, generator=self._generator(device),
                                       dtype=p.dtype, device=device) for p in params]
                     for slot in DROPOUT_SLOTS}}
            for i, p in enumerate(params):
                state = self.state[p]
                if not state:
                    state.update(_init_state(p.grad))
                    if MOMENTUM != "none":
                        state["momentum_buffer"] = torch.zeros_like(p)
                u = _update(p.grad, p, state, t_, tau, inv_t,
                            {{k: v[i] for k, v in noise.items()}})
                change = u * eta_
                if MOMENTUM != "none":
                    buf = state["momentum_buffer"]
                    new_buf = buf * mu_ + change
                    buf.copy_(new_buf)
                    if MOMENTUM == "mom":
                        change = new_buf
                    elif self.nesterov == "keras":
                        change = new_buf * mu_ + change
                    else:
                        change = new_buf + change
                p.add_(change)
            group["step"] = step_count + 1
        return loss
'''


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
    update = _function(fns["update"], "def _update(g, w, state, t, tau, inv_T, noise):")
    init = _function(fns["init_state"], "def _init_state(g):")
    lr = _function(
        fns["lr"].replace("g.new_tensor(", "tau.new_tensor("), "def _lr_multiplier(tau, inv_T):"
    )
    body = update + init + lr
    helpers = "".join(code for marker, code in _HELPERS.items() if marker in body)
    dropout = tuple(s for s, kind in slots if kind == "random")
    names = {s.name for s in ph.update.free_symbols}
    needs_total = (
        bool(names - {"g", "w", "v", "s", "lam", "v_hat", "s_hat", "lam_hat"}) or ph.lr != 1
    )
    doc = _docstring(candidate, cls).replace("\n", "\n    ")
    doc = re.sub(r"\n    (?=\n)", "\n", doc)
    header = _docstring(candidate, cls)
    module = (
        f"{header}\n\nimport torch\n\n"
        f"MOMENTUM = {ph.momentum!r}\n"
        f"DROPOUT_SLOTS = {dropout!r}\n"
        f"NEEDS_TOTAL_STEPS = {needs_total!r}\n"
        "_PI = torch.tensor(torch.pi, dtype=torch.float64)\n\n"
        f"{helpers}\n\n"
        + update.replace("\n", "\n", 1)
        + "\n\n"
        + init
        + "\n\n"
        + lr
        + _CLASS.format(
            cls=cls,
            doc=doc,
            schedule=opts.get("schedule"),
            momentum=opts.get("momentum"),
            nesterov=opts.get("nesterov", "search"),
            flip=bool(opts.get("flip", False)),
        )
    )
    module = re.sub(r"\n{4,}", "\n\n\n", module)
    return module
