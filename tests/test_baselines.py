"""Baseline optimizers: each entry against torch.optim or a transcription of its paper's rule."""

from __future__ import annotations

import itertools
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nos.errors import NosError
from nos.optim.baselines import (
    BASELINES,
    MuonWithAdamW,
    eval_mode,
    get_baseline,
    make_baseline,
    train_mode,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 20


def _model(depth: int = 3, seed: int = 0) -> nn.Sequential:
    """A float64 MLP 6 -> 8 -> ... -> 3 with weights drawn from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [6] + [8] * (depth - 1) + [3]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        lin = nn.Linear(a, b).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=gen, dtype=torch.float64) / a**0.5)
            lin.bias.copy_(0.1 * torch.randn(b, generator=gen, dtype=torch.float64))
        layers.append(lin)
        if i < depth - 1:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=gen)
    return x, y


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int = STEPS) -> list[list]:
    """Steps ``opt`` on the fixed batch; the parameters after each step."""
    x, y = _data()
    history = []
    for _ in range(steps):
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
        history.append([p.detach().clone() for p in model.parameters()])
    return history


def _grads(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradient of the batch loss at plain tensors laid out like ``_model()``'s parameters."""
    model = _model()
    with torch.no_grad():
        for p, v in zip(model.parameters(), params, strict=True):
            p.copy_(v)
    x, y = _data()
    _loss(model, x, y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _assert_same(a: list[list], b: list[list], atol: float = 0.0) -> None:
    for step, (ps, qs) in enumerate(zip(a, b, strict=True)):
        for p, q in zip(ps, qs, strict=True):
            if atol == 0.0:
                assert torch.equal(p, q), f"step {step + 1}"
            else:
                assert torch.allclose(p, q, atol=atol, rtol=0.0), f"step {step + 1}"


def test_registry_has_the_entries_and_their_flags():
    assert set(BASELINES) == {
        "adamw",
        "adam",
        "nadamw",
        "rmsprop",
        "sgd-nesterov",
        "lion",
        "cautious-adamw",
        "schedulefree-adamw",
        "muon",
    }
    assert [n for n, e in BASELINES.items() if e.schedules_itself] == ["schedulefree-adamw"]
    assert [n for n, e in BASELINES.items() if e.matrix_class] == ["muon"]
    assert {n for n, e in BASELINES.items() if not e.decoupled} == {
        "adam",
        "rmsprop",
        "sgd-nesterov",
    }
    for entry in BASELINES.values():
        assert entry.description and entry.default_weight_decay >= 0.0


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(NosError, match="unknown baseline optimizer 'adamx'") as err:
        get_baseline("adamx")
    for name in BASELINES:
        assert name in str(err.value)


@pytest.mark.parametrize("lr", [-1e-3, 0.0, float("nan"), float("inf")])
def test_bad_learning_rate_is_a_clear_error(lr):
    model = _model()
    with pytest.raises(NosError, match="learning rate must be a positive number"):
        make_baseline("adamw", model.parameters(), lr)


def test_bad_weight_decay_and_warmup_are_clear_errors():
    model = _model()
    with pytest.raises(NosError, match="weight decay must be a number >= 0"):
        make_baseline("lion", model.parameters(), 1e-3, weight_decay=-0.1)
    with pytest.raises(NosError, match="warmup_steps"):
        make_baseline("adamw", model.parameters(), 1e-3, warmup_steps=-1)


TORCH_REFERENCES = {
    "adamw": lambda ps, lr, wd: torch.optim.AdamW(
        ps, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd
    ),
    "adam": lambda ps, lr, wd: torch.optim.Adam(
        ps, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd
    ),
    "nadamw": lambda ps, lr, wd: torch.optim.NAdam(
        ps,
        lr=lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=wd,
        momentum_decay=4e-3,
        decoupled_weight_decay=True,
    ),
    "rmsprop": lambda ps, lr, wd: torch.optim.RMSprop(
        ps, lr=lr, alpha=0.99, eps=1e-8, weight_decay=wd, momentum=0.0
    ),
    "sgd-nesterov": lambda ps, lr, wd: torch.optim.SGD(
        ps, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd
    ),
}


@pytest.mark.parametrize("name", sorted(TORCH_REFERENCES))
@pytest.mark.parametrize("wd", [None, 0.05])
def test_torch_backed_entries_match_torch_optim(name, wd):
    lr = 0.01
    mine, ref = _model(), _model()
    opt = make_baseline(name, mine.parameters(), lr, weight_decay=wd)
    expect_wd = BASELINES[name].default_weight_decay if wd is None else wd
    ref_opt = TORCH_REFERENCES[name](ref.parameters(), lr, expect_wd)
    got, want = _train(mine, opt), _train(ref, ref_opt)
    _assert_same(got, want)
    assert not torch.equal(got[-1][0], next(_model().parameters()))  # it moved


def test_lion_follows_the_papers_rule():
    lr, wd, b1, b2 = 3e-3, 0.1, 0.9, 0.99
    model = _model()
    opt = make_baseline("lion", model.parameters(), lr, weight_decay=wd)
    got = _train(model, opt)
    w = [p.detach().clone() for p in _model().parameters()]
    m = [torch.zeros_like(p) for p in w]
    want = []
    for _ in range(STEPS):
        g = _grads(w)
        c = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
        w = [wi - lr * (torch.sign(ci) + wd * wi) for wi, ci in zip(w, c, strict=True)]
        m = [b2 * mi + (1 - b2) * gi for mi, gi in zip(m, g, strict=True)]
        want.append(w)
    _assert_same(got, want, atol=1e-6)


def test_cautious_adamw_follows_the_papers_rule():
    lr, wd, b1, b2, eps = 0.02, 0.01, 0.9, 0.999, 1e-8
    model = _model()
    opt = make_baseline("cautious-adamw", model.parameters(), lr)
    got = _train(model, opt)
    w = [p.detach().clone() for p in _model().parameters()]
    m = [torch.zeros_like(p) for p in w]
    v = [torch.zeros_like(p) for p in w]
    want, masked = [], 0
    for t in range(1, STEPS + 1):
        g = _grads(w)
        new_w = []
        for i, gi in enumerate(g):
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi**2
            u = (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps)
            phi = (u * gi > 0).double()
            masked += int((phi == 0).sum())
            new_w.append(w[i] - lr * wd * w[i] - lr * u * phi / (phi.mean() + 1e-8))
        w = new_w
        want.append(w)
    assert masked > 0  # the mask did act, so the comparison tests it
    _assert_same(got, want, atol=1e-6)
    # and the mask makes it differ from AdamW
    plain = _train(_model(), torch.optim.AdamW(_model().parameters(), lr=lr, weight_decay=wd))
    assert not torch.allclose(got[-1][0], plain[-1][0])


def _muon_reference(model: nn.Module, lr: float, wd: float):
    """The usual split done by hand: hidden matrices to torch's Muon, the rest to AdamW."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    hidden = [lin.weight for lin in linears[1:-1]]
    ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in ids]
    muon = torch.optim.Muon(
        hidden, lr=lr, weight_decay=wd, momentum=0.95, nesterov=True, adjust_lr_fn="match_rms_adamw"
    )
    adamw = torch.optim.AdamW(rest, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=wd)
    return muon, adamw


def test_muon_steps_match_torch_muon_and_adamw():
    lr, wd = 0.01, 0.01
    model = _model(depth=4)
    opt = make_baseline("muon", model.parameters(), lr)
    assert isinstance(opt, MuonWithAdamW) and opt.muon_params == 2
    ref = _model(depth=4)
    muon, adamw = _muon_reference(ref, lr, wd)
    x, y = _data()
    for _ in range(STEPS):
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
        muon.zero_grad()
        adamw.zero_grad()
        _loss(ref, x, y).backward()
        muon.step()
        adamw.step()
        for p, q in zip(model.parameters(), ref.parameters(), strict=True):
            assert torch.equal(p, q)
    # the hidden matrices did get Muon's (not AdamW's) steps
    plain = _model(depth=4)
    _train(plain, torch.optim.AdamW(plain.parameters(), lr=lr, weight_decay=wd))
    assert not torch.allclose(plain[2].weight, model[2].weight)


def test_muon_state_dict_round_trip_and_lr_scheduler():
    lr = 0.01
    x, y = _data()

    def run(opt, model, steps):
        for _ in range(steps):
            opt.zero_grad()
            _loss(model, x, y).backward()
            opt.step()

    straight = _model(depth=4)
    opt = make_baseline("muon", straight.parameters(), lr)
    run(opt, straight, 10)

    first = _model(depth=4)
    opt1 = make_baseline("muon", first.parameters(), lr)
    run(opt1, first, 5)
    saved, weights = opt1.state_dict(), [p.detach().clone() for p in first.parameters()]
    resumed = _model(depth=4, seed=7)
    with torch.no_grad():
        for p, w in zip(resumed.parameters(), weights, strict=True):
            p.copy_(w)
    opt2 = make_baseline("muon", resumed.parameters(), lr)
    opt2.load_state_dict(saved)
    run(opt2, resumed, 5)
    for p, q in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)

    sched = torch.optim.lr_scheduler.LambdaLR(opt2, lambda step: 0.5)
    assert sched is not None
    assert all(g["lr"] == pytest.approx(lr * 0.5) for g in opt2._muon.param_groups)
    assert all(g["lr"] == pytest.approx(lr * 0.5) for g in opt2._adamw.param_groups)


def test_muon_split_rules():
    two = _model(depth=2)  # input and output layers only: no hidden matrix
    opt = make_baseline("muon", two.parameters(), 1e-3)
    assert opt.muon_params == 0 and opt._muon is None
    _train(two, opt, steps=2)

    deep = _model(depth=4)
    lins = [m for m in deep if isinstance(m, nn.Linear)]
    groups = [
        {"params": [lins[0].weight], "muon": True},
        {"params": [p for lin in lins[1:] for p in lin.parameters()] + [lins[0].bias], "lr": 5e-4},
    ]
    opt = MuonWithAdamW(groups, lr=1e-3)
    muon_ids = {id(p) for g in opt._muon.param_groups for p in g["params"]}
    assert muon_ids == {id(lins[0].weight), id(lins[1].weight), id(lins[2].weight)}
    head = [g for g in opt.param_groups if any(p is lins[3].weight for p in g["params"])]
    assert len(head) == 1 and head[0]["lr"] == 5e-4
    assert any(g is head[0] for g in opt._adamw.param_groups)
    with pytest.raises(NosError, match="only 2-D"):
        MuonWithAdamW([{"params": [lins[0].bias], "muon": True}], lr=1e-3)
    with pytest.raises(NosError, match="all its parameters"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)]})


def test_train_and_eval_mode_do_nothing_for_ordinary_entries():
    for name in ("adamw", "lion", "cautious-adamw", "muon", "sgd-nesterov"):
        model = _model(depth=4)
        opt = make_baseline(name, model.parameters(), 1e-2)
        _train(model, opt, steps=3)
        before = [p.detach().clone() for p in model.parameters()]
        eval_mode(opt)
        train_mode(opt)
        eval_mode(opt)
        assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))


def test_schedulefree_missing_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "schedulefree", None)  # makes the import fail
    with pytest.raises(NosError, match="pip install schedulefree") as err:
        make_baseline("schedulefree-adamw", _model().parameters(), 1e-3)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("warmup", [0, 5])
def test_schedulefree_follows_the_papers_rule(warmup):
    """Schedule-Free AdamW (Defazio et al. 2024) written out with x, y and z kept apart."""
    pytest.importorskip("schedulefree")
    lr, wd, b1, b2, eps = 0.02, 0.01, 0.9, 0.999, 1e-8
    model = _model()
    opt = make_baseline("schedulefree-adamw", model.parameters(), lr, warmup_steps=warmup)
    x_data, y_data = _data()
    z = [p.detach().clone() for p in _model().parameters()]
    x = [p.clone() for p in z]
    v = [torch.zeros_like(p) for p in z]
    weight_sum, lr_max = 0.0, 0.0
    for t in range(1, STEPS + 1):
        train_mode(opt)
        opt.zero_grad()
        _loss(model, x_data, y_data).backward()
        opt.step()
        # the rule: gradient at y, Adam-normalised, decay at y; z steps; x averages z
        y = [(1 - b1) * zi + b1 * xi for zi, xi in zip(z, x, strict=True)]
        g = _grads(y)
        gamma = lr * min(1.0, t / warmup) if warmup else lr
        lr_max = max(lr_max, gamma)
        weight_sum += lr_max**2
        c = lr_max**2 / weight_sum
        for i, gi in enumerate(g):
            v[i] = b2 * v[i] + (1 - b2) * gi**2
            step = gi / ((v[i] / (1 - b2**t)).sqrt() + eps) + wd * y[i]
            z[i] = z[i] - gamma * step
            x[i] = (1 - c) * x[i] + c * z[i]
        y = [(1 - b1) * zi + b1 * xi for zi, xi in zip(z, x, strict=True)]
        for p, yi in zip(model.parameters(), y, strict=True):  # training point: y
            assert torch.allclose(p, yi, atol=1e-6, rtol=0.0)
        if t % 5 == 0:
            eval_mode(opt)  # evaluation point: x
            for p, xi in zip(model.parameters(), x, strict=True):
                assert torch.allclose(p, xi, atol=1e-6, rtol=0.0)
