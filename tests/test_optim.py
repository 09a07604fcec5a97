"""SymbolicOptimizer: torch.optim parity of the classic baselines, the paper rules of Lion,
PowerSign and AddSign, state_dict round trips, schedules and bad input."""

from __future__ import annotations

import io
import math

import pytest
import torch

from nos.errors import NosError
from nos.optim import SymbolicOptimizer
from nos.symbolic.grammar import load_grammar
from nos.zoo import catalogue as zoo
from nos.zoo.resolve import parse

torch.set_num_threads(1)
STEPS = 200


def _problem(seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64))
        for s in ((6, 4), (4,), (3,))
    ]


def _loss(params: list[torch.Tensor]) -> torch.Tensor:
    # non-quadratic, so the gradients change direction and the moments matter
    return sum((p**2).sum() + torch.sin(3 * p).sum() for p in params)


def _train(
    opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int = STEPS
) -> list[torch.Tensor]:
    history = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(params).backward()
        opt.step()
        history.append(torch.cat([p.detach().reshape(-1) for p in params]).clone())
    return history


def _with_betas(name: str, **moments: float):
    """A zoo baseline parsed in its grammar with other EMA rates (torch's betas)."""
    e = zoo.entry(name)
    return zoo._grammar(e.grammar, tuple(sorted({**e.moments, **moments}.items())))


# (zoo name, torch factory, SymbolicOptimizer kwargs, moment overrides)
PARITY = [
    ("sgd", lambda p: torch.optim.SGD(p, lr=1e-3), {"lr": 1e-3}, {}),
    ("sgd", lambda p: torch.optim.SGD(p, lr=0.05), {"lr": 0.05}, {}),
    ("momentum", lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9), {"lr": 1e-3}, {}),
    (
        "momentum",
        lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.5),
        {"lr": 0.02, "momentum": 0.5},
        {},
    ),
    (
        "nesterov",
        lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, nesterov=True),
        {"lr": 1e-3},
        {},
    ),
    (
        "nesterov",
        lambda p: torch.optim.SGD(p, lr=0.02, momentum=0.7, nesterov=True),
        {"lr": 0.02, "momentum": 0.7},
        {},
    ),
    ("adam", lambda p: torch.optim.Adam(p), {"lr": 1e-3}, {}),
    (
        "adam",
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99)),
        {"lr": 0.01},
        {"v": 0.8, "s": 0.99},
    ),
    ("adamw", lambda p: torch.optim.AdamW(p), {"lr": 1e-3}, {}),
    (
        "adamw",
        lambda p: torch.optim.AdamW(p, lr=0.01, betas=(0.85, 0.995)),
        {"lr": 0.01},
        {"v": 0.85, "s": 0.995},
    ),
    ("rmsprop", lambda p: torch.optim.RMSprop(p), {"lr": 0.01}, {}),
    ("rmsprop", lambda p: torch.optim.RMSprop(p, lr=3e-3, alpha=0.9), {"lr": 3e-3}, {"s": 0.9}),
]


@pytest.mark.parametrize(
    ("name", "make", "kwargs", "moments"), PARITY, ids=[f"{p[0]}-{i}" for i, p in enumerate(PARITY)]
)
def test_baselines_match_torch_optim_step_for_step(name, make, kwargs, moments):
    base = zoo.get(name)
    cand = base
    if moments:
        cand = parse(zoo.entry(name).text, _with_betas(name, **moments))
        cand = zoo.ZooCandidate(
            cand.update, cand.momentum, cand.grammar, cand.lr, name=name, options=base.options
        )
    ours, theirs = _problem(), _problem()
    got = _train(SymbolicOptimizer(ours, cand, **kwargs), ours)
    want = _train(make(theirs), theirs)
    for step, (a, b) in enumerate(zip(got, want, strict=True)):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9), (name, step)


def test_adamw_non_default_weight_decay():
    # weight_decay 1e-3 is the wd3 operand
    cand = parse("none ~ add(rms_div(v_hat, s_hat), wd3)", load_grammar("classic"))
    ours, theirs = _problem(1), _problem(1)
    got = _train(SymbolicOptimizer(ours, cand, lr=0.01), ours)
    want = _train(torch.optim.AdamW(theirs, lr=0.01, weight_decay=1e-3), theirs)
    assert torch.allclose(got[-1], want[-1], rtol=1e-6, atol=1e-9)


def _rule_run(update_rule, steps: int = STEPS, lr: float = 1e-3) -> torch.Tensor:
    """Train with a hand-written per-step rule ``(w, g, state) -> delta``."""
    params = _problem()
    state: dict = {}
    for _ in range(steps):
        for p in params:
            p.grad = None
        _loss(params).backward()
        with torch.no_grad():
            for i, p in enumerate(params):
                p += lr * update_rule(p, p.grad, state.setdefault(i, {}))
    return torch.cat([p.detach().reshape(-1) for p in params])


def _ours(name: str, lr: float = 1e-3) -> torch.Tensor:
    params = _problem()
    return _train(SymbolicOptimizer(params, zoo.get(name), lr=lr), params)[-1]


def test_lion_follows_its_paper_rule():
    # Chen et al. 2023, Algorithm 2 (no weight decay): c = b1 m + (1-b1) g;
    # w -= lr sign(c); m = b2 m + (1-b2) g, with b1 = 0.9, b2 = 0.99
    def lion(w, g, st):
        m = st.setdefault("m", torch.zeros_like(w))
        c = 0.9 * m + 0.1 * g
        st["m"] = 0.99 * m + 0.01 * g
        return -torch.sign(c)

    assert torch.allclose(_ours("lion"), _rule_run(lion), rtol=1e-6, atol=1e-9)


def test_powersign_and_addsign_follow_their_paper_rules():
    # Bello et al. 2017: PowerSign alpha^(sign(g) sign(m)) g with alpha = e, AddSign
    # (alpha + sign(g) sign(m)) g with alpha = 1; m an EMA of g with beta 0.9
    def signs(w, g, st):
        m = st["m"] = 0.9 * st.setdefault("m", torch.zeros_like(w)) + 0.1 * g
        return torch.sign(g) * torch.sign(m)

    def powersign(w, g, st):
        return -torch.exp(signs(w, g, st)) * g

    def addsign(w, g, st):
        return -(1.0 + signs(w, g, st)) * g

    assert torch.allclose(_ours("powersign"), _rule_run(powersign), rtol=1e-6, atol=1e-9)
    assert torch.allclose(_ours("addsign"), _rule_run(addsign), rtol=1e-6, atol=1e-9)


DROPOUT = "nest ~ add(drop30(qhm_v), decay(mul(a13, a2), ema(delta(g))))"


@pytest.mark.parametrize("layout", ["foreach", "flat"])
def test_state_dict_round_trip_is_bit_identical(layout):
    grammar = load_grammar("morgan2024")
    cand = parse(DROPOUT, grammar)

    def model(seed):
        torch.manual_seed(seed)  # only the model's initial weights
        return torch.nn.Sequential(
            torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
        ).double()

    gen = torch.Generator().manual_seed(3)
    xs = torch.randn(100, 8, 5, generator=gen, dtype=torch.float64)

    def train(net, opt, start, stop):
        for i in range(start, stop):
            opt.zero_grad()
            net(xs[i]).pow(2).mean().backward()
            opt.step()

    kw = {"lr": 0.05, "total_steps": 100, "warmup": 10, "seed": 11, "layout": layout}
    straight = model(0)
    opt = SymbolicOptimizer(straight.parameters(), cand, **kw)
    train(straight, opt, 0, 100)

    first = model(0)
    opt1 = SymbolicOptimizer(first.parameters(), cand, **kw)
    train(first, opt1, 0, 50)
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    second = model(1)  # different weights until the load
    second.load_state_dict(saved["model"])
    opt2 = SymbolicOptimizer(second.parameters(), cand, **{**kw, "seed": 99})
    opt2.load_state_dict(saved["opt"])
    train(second, opt2, 50, 100)
    for a, b in zip(straight.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_param_groups_have_their_own_lr_and_closure_returns_the_loss():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = SymbolicOptimizer([{"params": [a]}, {"params": [b], "lr": 0.5}], "none ~ g", lr=0.1)

    def closure():
        opt.zero_grad()
        loss = a.sum() + b.sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == 6.0
    torch.testing.assert_close(a.detach(), torch.full((3,), 0.9))
    torch.testing.assert_close(b.detach(), torch.full((3,), 0.5))
    opt.zero_grad()
    assert a.grad is None


def test_cosine_schedule_lr_gene_and_flip():
    grammar = load_grammar("final2024")
    cand = parse("none ~ g ; lr = a2", grammar)  # multiplier tau = t/T
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = SymbolicOptimizer([p], cand, lr=1.0, total_steps=10, warmup=2, flip=True)
    expected = 0.0
    for t in range(10):
        p.grad = torch.ones(1, dtype=torch.float64)
        opt.step()
        base = t / 2 if t < 2 else 0.5 * (1 + math.cos((t - 2) / 8 * math.pi))
        expected += base * t / 10  # flip: the step goes along +U
        assert float(p.detach()) == pytest.approx(expected, rel=1e-12)


def test_lr_scheduler_drives_a_constant_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = SymbolicOptimizer([p], "none ~ g", lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = torch.ones(1)
        opt.step()
        sched.step()
    assert float(p.detach()) == pytest.approx(-(1 + 0.5 + 0.25))


def test_nonfinite_step_sets_the_flag_without_raising():
    p = torch.nn.Parameter(torch.ones(4))
    opt = SymbolicOptimizer([p], "none ~ recip(sub(g, g))", lr=1.0)  # 1/(0 + eps): finite
    p.grad = torch.ones(4)
    opt.step()
    assert not opt.nonfinite
    opt2 = SymbolicOptimizer([p], "none ~ exp(exp(exp(g)))", lr=1.0)
    p.grad = torch.full((4,), 10.0)  # e^(e^(e^10)) overflows
    opt2.step()
    assert opt2.nonfinite
    assert opt2.state_dict()["nos"]["nonfinite"] is True


def test_missing_total_steps_is_a_one_line_error():
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(NosError, match="needs total_steps") as err:
        SymbolicOptimizer([p], "zoo:opt10")
    assert "\n" not in str(err.value)
    with pytest.raises(NosError, match="unknown tensor op 'bogus'"):
        SymbolicOptimizer([p], "none ~ bogus(g)")
    with pytest.raises(NosError, match="learning rate"):
        SymbolicOptimizer([p], "none ~ g", lr=-1.0)


def test_zoo_text_and_options_reach_the_optimizer():
    p = torch.nn.Parameter(torch.ones(2))
    opt = SymbolicOptimizer([p], "zoo:opt10", total_steps=100, warmup=5)
    assert opt.nesterov == "keras"
    assert opt.param_groups[0]["momentum"] == "cyclic"


def test_auto_layout_matches_foreach_when_a_gradient_comes_and_goes():
    # auto steps flat while every parameter has a gradient and foreach otherwise; both
    # layouts share the per-tensor state, so the result is the foreach run's
    runs = []
    for layout in ("auto", "foreach"):
        params = _problem(2)
        opt = SymbolicOptimizer(params, zoo.get("adam"), lr=0.01, layout=layout)
        for t in range(30):
            opt.zero_grad()
            _loss(params if t % 7 else params[:2]).backward()
            opt.step()
        runs.append(torch.cat([p.detach().reshape(-1) for p in params]))
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-12, atol=1e-12)
    assert not opt.nonfinite


@pytest.mark.parametrize("layout", ["flat", "foreach"])
def test_maximize_and_a_late_parameter_match_torch_adam(layout):
    # maximize negates the gradient; bias corrections count each parameter's own steps
    ours, theirs = _problem(3), _problem(3)
    opt = SymbolicOptimizer(ours, zoo.get("adam"), lr=0.01, maximize=True, layout=layout)
    ref = torch.optim.Adam(theirs, lr=0.01, maximize=True)
    for t in range(40):
        for o in (opt, ref):
            o.zero_grad()
        # the last parameter gets its first gradient at step 10
        _loss(ours if t >= 10 else ours[:2]).backward()
        _loss(theirs if t >= 10 else theirs[:2]).backward()
        opt.step()
        ref.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert [opt.state[p]["step"] for p in ours] == [40, 40, 30]


def test_group_settings_are_resolved_and_checked_per_group():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = SymbolicOptimizer([{"params": [a]}, {"params": [b], "total_steps": 20}], "none ~ g")
    assert [g["schedule"] for g in opt.param_groups] == ["constant", "cosine"]
    assert opt.param_groups[1]["momentum"] == "cyclic"
    with pytest.raises(ValueError, match="weight_decay") as err:
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "weight_decay": -1})
    assert isinstance(err.value, NosError)
    assert len(opt.param_groups) == 2
