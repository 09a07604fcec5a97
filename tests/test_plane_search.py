"""Plane search: exact inner derivatives, agreement with brute-force searches, speed of
convergence against tuned GD with momentum, and clear errors for bad descriptions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits
from torch import nn
from torch.func import functional_call

from nos.errors import NosError
from nos.optim.plane_search import ACTIVATIONS, PlaneSearch, plane_search_for

pytestmark = pytest.mark.usefixtures("one_torch_thread", "one_blas_thread")


@pytest.fixture
def one_blas_thread():
    """numpy's BLAS on one thread too: the GD baselines' numpy products are small."""
    with threadpool_limits(1):
        yield


LOSS_FNS = {
    "mse": F.mse_loss,
    "logistic": F.binary_cross_entropy_with_logits,
    "cross_entropy": F.cross_entropy,
}
ACT_MODULES = {
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
}


def _init(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p.shape[1] if p.ndim == 2 else 1
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / fan_in**0.5)
    return model


def _linear(d: int, k: int, seed: int = 0) -> nn.Linear:
    return _init(nn.Linear(d, k).double(), seed)


def _mlp(d: int, h: int, k: int, act: str = "tanh", seed: int = 0) -> nn.Sequential:
    return _init(nn.Sequential(nn.Linear(d, h), ACT_MODULES[act](), nn.Linear(h, k)).double(), seed)


def _data(loss: str, n: int, d: int, k: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) * np.geomspace(0.3, 3.0, d)
    if loss == "mse":
        y = x @ rng.standard_normal((d, k)) / d**0.5 + 0.3 * rng.standard_normal((n, k))
    elif loss == "logistic":
        score = x @ rng.standard_normal(d) / d**0.5 + 0.5 * rng.standard_normal(n)
        y = (score > 0).astype(float)[:, None]
    else:
        y = np.argmax(x @ rng.standard_normal((d, k)) + rng.standard_normal((n, k)), axis=1)
    return torch.tensor(x), torch.tensor(y)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for name, p in model.named_parameters() if name.endswith("weight")]


def _objective(model: nn.Module, x, y, loss: str, l2: float = 0.0, params=None):
    """The full objective, directly from the model (optionally at other parameter values)."""
    if params is None:
        out = model(x)
        weights = _weights(model)
    else:
        out = functional_call(model, params, (x,))
        weights = [v for k, v in params.items() if k.endswith("weight")]
    value = LOSS_FNS[loss](out, y)
    if l2:
        value = value + 0.5 * l2 * sum((w * w).sum() for w in weights)
    return value


def _closure(opt, model, x, y, loss, l2=0.0):
    def closure():
        opt.zero_grad()
        value = _objective(model, x, y, loss, l2)
        value.backward()
        return value

    return closure


def _setup(kind: str, loss: str, *, per_layer=False, l2=0.0, act="tanh", seed=0):
    if kind == "linear":
        k = 1 if loss != "cross_entropy" else 3
        x, y = _data(loss, 80, 6, k, seed)
        model = _linear(6, k, seed)
    else:
        k = 1 if loss == "logistic" else 3
        x, y = _data(loss, 80, 7, k, seed)
        model = _mlp(7, 5, k, act, seed)
    opt = plane_search_for(model, x, y, loss=loss, per_layer=per_layer, l2=l2)
    return model, opt, x, y, _closure(opt, model, x, y, loss, l2)


def _plane_point(model, directions, s):
    """Parameters at w + sum_l (a_l D_l + b_l M_l), as a dict for functional_call."""
    names = [n for n, _ in model.named_parameters()]
    out = {}
    for i, (name, p) in enumerate(model.named_parameters()):
        layer = i // 2 if len(names) == 4 else 0
        d, m = directions[name]
        out[name] = p.detach() + s[2 * layer] * d + s[2 * layer + 1] * m
    return out


def _directions(opt, model):
    return {
        name: (
            -p.grad.detach().clone(),
            opt.state[p]["momentum"].clone() if "momentum" in opt.state[p] else torch.zeros_like(p),
        )
        for name, p in model.named_parameters()
    }


# ---- the inner problem is computed exactly ---------------------------------------------


@pytest.mark.parametrize(
    ("kind", "loss", "act"),
    [("linear", "mse", None), ("linear", "logistic", None), ("linear", "cross_entropy", None)]
    + [("two_layer", "cross_entropy", a) for a in sorted(ACTIVATIONS)]
    + [("two_layer", "mse", "tanh"), ("two_layer", "logistic", "silu")],
)
def test_subspace_derivatives_match_autograd(kind, loss, act):
    l2 = 0.01
    model, opt, x, y, closure = _setup(kind, loss, l2=l2, act=act or "tanh", per_layer=True)
    for _ in range(3):
        opt.step(closure)
    closure()
    problem = opt.subspace()
    directions = _directions(opt, model)
    gen = torch.Generator().manual_seed(3)
    s = 0.3 * torch.randn(problem.dim, generator=gen, dtype=torch.float64)

    def full(s):
        return _objective(model, x, y, loss, l2, _plane_point(model, directions, s))

    val, grad, hess = problem.derivatives(s)
    assert val == pytest.approx(float(full(s)), rel=1e-12)
    assert problem.value(s) == pytest.approx(val, rel=1e-12)
    want_grad = torch.autograd.functional.jacobian(full, s)
    want_hess = torch.autograd.functional.hessian(full, s)
    assert torch.allclose(torch.as_tensor(grad), want_grad, rtol=1e-9, atol=1e-11)
    assert torch.allclose(torch.as_tensor(hess), want_hess, rtol=1e-9, atol=1e-11)


# ---- agreement with brute-force line and plane searches ----------------------------------

NP_ACTS = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}


def _np_objective(
    params: list[np.ndarray], x: np.ndarray, y: np.ndarray, loss: str, act: str = "tanh"
) -> float:
    """The full loss from the raw data, in numpy: [W, b] or [W1, b1, W2, b2]."""
    out = x @ params[0].T + params[1]
    if len(params) == 4:
        out = NP_ACTS[act](out) @ params[2].T + params[3]
    if loss == "mse":
        return float(np.mean((out - y) ** 2))
    if loss == "logistic":
        return float(np.mean(np.logaddexp(0.0, out) - y * out))
    top = out.max(axis=1, keepdims=True)
    logz = top[:, 0] + np.log(np.exp(out - top).sum(axis=1))
    return float(np.mean(logz - out[np.arange(len(y)), y]))


def _brute_force(f, grid: list[np.ndarray], top: int = 4) -> float:
    """Lowest value of f over a dense grid, refined by Nelder-Mead from the best points."""
    points = np.array(list(itertools.product(*grid)))
    values = np.array([f(p) for p in points])
    best = float(values.min())
    for i in np.argsort(values)[:top]:
        res = minimize(
            f,
            points[i],
            method="Nelder-Mead",
            options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 2000},
        )
        best = min(best, float(res.fun))
    return best


@pytest.mark.parametrize(
    ("kind", "loss", "per_layer"),
    [
        ("linear", "logistic", False),
        ("linear", "mse", False),
        ("two_layer", "cross_entropy", False),
        ("two_layer", "cross_entropy", True),
        ("two_layer", "mse", True),
    ],
)
def test_steps_agree_with_brute_force_searches(kind, loss, per_layer):
    model, opt, x, y, closure = _setup(kind, loss, per_layer=per_layer)
    xn, yn = x.numpy(), y.numpy()
    for it in range(3):
        closure()
        start = [p.detach().numpy().copy() for p in model.parameters()]
        dirs = [
            (
                -p.grad.numpy().copy(),
                opt.state[p]["momentum"].numpy().copy()
                if "momentum" in opt.state[p]
                else np.zeros(p.shape),
            )
            for p in model.parameters()
        ]
        opt.step(closure)
        after = float(_objective(model, x, y, loss).detach())
        assert after == pytest.approx(opt.last_loss, rel=1e-10)

        def f(s, start=start, dirs=dirs):
            pts = []
            for i, (w, (d, m)) in enumerate(zip(start, dirs, strict=True)):
                j = 2 * (i // 2) if per_layer else 0
                pts.append(w + s[j] * d + s[j + 1] * m)
            return _np_objective(pts, xn, yn, loss)

        scale = max(opt.last_step_sizes[0], 1.0)
        if it == 0:  # no previous step yet: a line search on the gradient's step size

            def line(a, f=f):
                return f([a[0], 0.0, a[0], 0.0])

            best = _brute_force(line, [np.linspace(0.0, 4.0 * scale, 81)])
        elif per_layer:
            coarse = [
                np.linspace(0.0, 3.0 * max(v, 1.0), 7) if j % 2 == 0 else np.linspace(-1.0, 2.0, 7)
                for j, v in enumerate(opt.last_step_sizes)
            ]
            best = _brute_force(f, coarse, top=6)
        else:
            best = _brute_force(f, [np.linspace(0.0, 4.0 * scale, 41), np.linspace(-1, 2, 31)])
        assert after <= best + 1e-9 * max(1.0, abs(best)), (it, after, best)


def test_loss_never_increases_on_a_two_layer_net():
    _, opt, _, _, closure = _setup("two_layer", "cross_entropy", act="relu", per_layer=True)
    losses = [float(opt.step(closure).detach()) for _ in range(20)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(losses))
    assert losses[-1] < 0.7 * losses[0]


# ---- fewer iterations than GD with momentum at its best fixed LR --------------------------


def _gd_momentum_iterations(grad_fn, loss_fn, w0, lrs, momenta, target, max_iter):
    """The fewest iterations any (lr, momentum) of the grid needs to reach ``target``, and
    that configuration; (max_iter + 1, None) when none gets there.

    Heavy ball as torch.optim.SGD does it: buf = mu buf + g, w = w - lr buf, with every
    configuration a column of W, all stepped at once.
    """
    configs = list(itertools.product(lrs, momenta))
    lr = np.array([c[0] for c in configs])
    mu = np.array([c[1] for c in configs])
    w = np.repeat(w0[:, None], len(configs), axis=1)
    buf = np.zeros_like(w)
    with np.errstate(over="ignore", invalid="ignore"):  # the largest LRs diverge
        for t in range(1, max_iter + 1):
            buf = mu * buf + grad_fn(w)
            w = w - lr * buf
            values = loss_fn(w)
            if (values <= target).any():
                return t, configs[int(np.argmax(values <= target))]
            w[:, ~np.isfinite(values)] = 0.0  # keep diverged columns finite
            buf[:, ~np.isfinite(values)] = 0.0
    return max_iter + 1, None


def _plane_iterations(opt, closure, target, max_iter):
    for t in range(1, max_iter + 1):
        opt.step(closure)
        if opt.last_loss <= target:
            return t
    return max_iter + 1


def _check_grid(gd_best: int, config, lrs, max_iter: int) -> None:
    assert gd_best <= max_iter, "the tuned baseline must reach the target for a fair test"
    # the grid brackets the best LR: it is not at either end
    assert lrs[0] < config[0] < lrs[-1], config


def test_least_squares_needs_fewer_iterations_than_tuned_momentum():
    n, d = 300, 30
    x, y = _data("mse", n, d, 1, seed=5)
    xa = np.hstack([x.numpy(), np.ones((n, 1))])  # weights then bias
    yn = y.numpy()[:, 0]
    sol = np.linalg.lstsq(xa, yn, rcond=None)[0]
    f_star = float(np.mean((xa @ sol - yn) ** 2))
    model = _linear(d, 1, seed=5)
    w0 = np.concatenate([model.weight.detach().numpy()[0], model.bias.detach().numpy()])
    f0 = float(np.mean((xa @ w0 - yn) ** 2))
    target = f_star + 1e-6 * (f0 - f_star)

    lipschitz = 2.0 * np.linalg.eigvalsh(xa.T @ xa / n).max()
    lrs = list(2.0 ** np.arange(-5.0, 3.0, 0.5) / lipschitz)
    momenta = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99]
    gd_best, config = _gd_momentum_iterations(
        lambda w: 2.0 / n * xa.T @ (xa @ w - yn[:, None]),
        lambda w: np.mean((xa @ w - yn[:, None]) ** 2, axis=0),
        w0,
        lrs,
        momenta,
        target,
        max_iter=4000,
    )
    _check_grid(gd_best, config, lrs, 4000)

    opt = plane_search_for(model, x, y, loss="mse")
    plane = _plane_iterations(opt, _closure(opt, model, x, y, "mse"), target, gd_best)
    print(f"plane search {plane} iterations, GD with momentum {gd_best} at {config}")
    assert plane < gd_best, (plane, gd_best, config)


def test_logistic_regression_needs_fewer_iterations_than_tuned_momentum():
    n, d, l2 = 300, 20, 1e-3
    x, y = _data("logistic", n, d, 1, seed=6)
    xa = np.hstack([x.numpy(), np.ones((n, 1))])
    yn = y.numpy()[:, 0]
    mask = np.r_[np.ones(d), 0.0]  # no L2 on the bias

    def loss_fn(w):  # columns of w are weight vectors
        z = xa @ w
        return (np.logaddexp(0.0, z) - yn[:, None] * z).mean(0) + 0.5 * l2 * (
            (mask[:, None] * w) ** 2
        ).sum(0)

    def grad_fn(w):
        p = 1.0 / (1.0 + np.exp(-(xa @ w)))
        return xa.T @ (p - yn[:, None]) / n + l2 * mask[:, None] * w

    w = np.zeros(d + 1)  # Newton's method for the optimum
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(xa @ w)))
        hess = (xa * (p * (1 - p))[:, None]).T @ xa / n + l2 * np.diag(mask)
        w = w - np.linalg.solve(hess + 1e-14 * np.eye(d + 1), grad_fn(w[:, None])[:, 0])
    f_star = float(loss_fn(w[:, None])[0])

    model = _linear(d, 1, seed=6)
    w0 = np.concatenate([model.weight.detach().numpy()[0], model.bias.detach().numpy()])
    f0 = float(loss_fn(w0[:, None])[0])
    target = f_star + 1e-5 * (f0 - f_star)

    lipschitz = 0.25 * np.linalg.eigvalsh(xa.T @ xa / n).max() + l2
    lrs = list(2.0 ** np.arange(-4.0, 3.5, 0.5) / lipschitz)
    momenta = [0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99]
    gd_best, config = _gd_momentum_iterations(
        grad_fn, loss_fn, w0, lrs, momenta, target, max_iter=3000
    )
    _check_grid(gd_best, config, lrs, 3000)

    opt = plane_search_for(model, x, y, loss="logistic", l2=l2)
    plane = _plane_iterations(opt, _closure(opt, model, x, y, "logistic", l2), target, gd_best)
    print(f"plane search {plane} iterations, GD with momentum {gd_best} at {config}")
    assert plane < gd_best, (plane, gd_best, config)


# ---- state, drift and errors ---------------------------------------------------------------


def test_state_dict_round_trip_and_outside_changes():
    model, opt, x, y, closure = _setup("two_layer", "cross_entropy", per_layer=True)
    twin, opt2, _, _, closure2 = _setup("two_layer", "cross_entropy", per_layer=True)
    for _ in range(5):
        opt.step(closure)
        opt2.step(closure2)
    saved = opt2.state_dict()
    third, opt3, _, _, closure3 = _setup("two_layer", "cross_entropy", per_layer=True)
    with torch.no_grad():
        for p, q in zip(third.parameters(), twin.parameters(), strict=True):
            p.copy_(q)
    opt3.load_state_dict(saved)
    for _ in range(5):
        opt.step(closure)
        opt3.step(closure3)
    for p, q in zip(model.parameters(), third.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    # weights changed behind the optimizer's back: it notices and recomputes
    with torch.no_grad():
        model[0].weight.mul_(0.5)
    before = float(_objective(model, x, y, "cross_entropy").detach())
    opt.step(closure)
    assert opt.last_loss < before


@pytest.mark.parametrize(
    ("kind", "loss", "act", "bias"),
    [
        ("linear", "mse", None, True),
        ("linear", "cross_entropy", None, False),
        ("two_layer", "cross_entropy", "tanh", True),
        ("two_layer", "logistic", "silu", False),
        ("two_layer", "mse", "relu", True),
    ],
)
def test_steps_without_a_closure_compute_the_same_gradients(kind, loss, act, bias):
    l2 = 0.01
    k = {"mse": 2, "logistic": 1, "cross_entropy": 3}[loss]
    x, y = _data(loss, 60, 7, k, seed=4)

    def build():
        if kind == "linear":
            return _init(nn.Linear(7, k, bias=bias).double(), 4)
        layers = [nn.Linear(7, 5, bias=bias), ACT_MODULES[act](), nn.Linear(5, k, bias=bias)]
        return _init(nn.Sequential(*layers).double(), 4)

    model, twin = build(), build()
    opt = plane_search_for(model, x, y, loss=loss, l2=l2, per_layer=True)
    ref = plane_search_for(twin, x, y, loss=loss, l2=l2, per_layer=True)
    closure = _closure(ref, twin, x, y, loss, l2)
    for _ in range(6):
        own = float(opt.step())
        given = float(ref.step(closure).detach())
        assert own == pytest.approx(given, rel=1e-10)
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12)
            assert torch.allclose(p, q, rtol=1e-8, atol=1e-10)


def test_float32_runs_and_decreases():
    x, y = _data("cross_entropy", 200, 12, 3, seed=2)
    model = _mlp(12, 6, 3, "silu").float()
    opt = plane_search_for(model, x.float(), y, loss="cross_entropy", refresh_every=7)
    closure = _closure(opt, model, x.float(), y, "cross_entropy")
    losses = [float(opt.step(closure).detach()) for _ in range(25)]
    assert losses[-1] < 0.8 * losses[0]


def _errors_for(**changes):
    x, y = _data("cross_entropy", 20, 6, 3)
    model = _mlp(6, 4, 3)
    kwargs = {"loss": "cross_entropy", "structure": "two_layer", "activation": "tanh"}
    kwargs.update(changes.pop("kwargs", {}))
    params = changes.pop("params", list(model.parameters()))
    return lambda: PlaneSearch(params, changes.pop("x", x), changes.pop("y", y), **kwargs)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_errors_for(kwargs={"structure": "conv"}), "unknown structure 'conv'"),
        (_errors_for(kwargs={"loss": "hinge"}), "unknown loss 'hinge'"),
        (_errors_for(kwargs={"activation": "gelu"}), "two_layer needs an activation"),
        (_errors_for(kwargs={"activation": None}), "two_layer needs an activation"),
        (
            _errors_for(kwargs={"structure": "linear", "activation": None}),
            "linear expects parameters shaped",
        ),
        (
            _errors_for(
                params=[torch.zeros(3, requires_grad=True), torch.zeros(3, 6, requires_grad=True)],
                kwargs={"structure": "linear", "activation": None},
            ),
            "linear expects parameters shaped",
        ),
        (
            _errors_for(
                params=[
                    torch.zeros(4, 6, requires_grad=True),
                    torch.zeros(3, 5, requires_grad=True),
                ]
            ),
            "the second layer takes 5 inputs but the first has 4 outputs",
        ),
        (_errors_for(x=torch.zeros(20, 5)), "the inputs have 5 features"),
        (_errors_for(x=torch.zeros(20)), "must be a 2-D tensor"),
        (_errors_for(y=torch.zeros(19, dtype=torch.long)), "one row per sample"),
        (_errors_for(y=torch.zeros(20)), "integer class indices"),
        (_errors_for(y=torch.full((20,), 3)), r"must lie in \[0, 3\)"),
        (_errors_for(kwargs={"loss": "logistic"}), "logistic loss needs one output"),
        (_errors_for(kwargs={"loss": "mse"}), "mse targets must be shaped like the outputs"),
        (_errors_for(kwargs={"l2": -1.0}), "l2 must be a number >= 0"),
        (_errors_for(kwargs={"max_inner": 0}), "max_inner"),
    ],
)
def test_bad_descriptions_are_clear_errors(build, message):
    with pytest.raises(NosError, match=message):
        build()


def test_more_outputs_than_inputs_is_refused():
    x, y = _data("mse", 20, 3, 5)
    with pytest.raises(NosError, match="needs more inputs than outputs"):
        plane_search_for(_mlp(3, 4, 5), x, y, loss="mse")


def test_logistic_targets_must_be_binary():
    x = torch.zeros(10, 4, dtype=torch.float64)
    with pytest.raises(NosError, match="0 or 1"):
        plane_search_for(_linear(4, 1), x, torch.full((10,), 0.5), loss="logistic")


def test_unsupported_models_are_refused():
    x, y = _data("mse", 10, 4, 1)
    deep = nn.Sequential(
        nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)
    ).double()
    with pytest.raises(NosError, match=r"plane search applies to nn\.Linear"):
        plane_search_for(deep, x, y, loss="mse")
    with pytest.raises(NosError, match=r"plane search applies to nn\.Linear"):
        plane_search_for(
            nn.Sequential(nn.Linear(4, 3), nn.GELU(), nn.Linear(3, 1)), x, y, loss="mse"
        )
    with pytest.raises(NosError, match="not parameter groups"):
        PlaneSearch([{"params": list(_linear(4, 1).parameters())}], x, y, loss="mse")


def test_step_needs_a_matching_closure():
    x, y = _data("mse", 30, 4, 1)
    model = _linear(4, 1)
    opt = plane_search_for(model, x, y, loss="mse")

    def no_backward():
        return F.mse_loss(model(x), y)

    with pytest.raises(NosError, match="has no gradient"):
        opt.step(no_backward)

    def summed():  # a sum where the description says mean: not the model described
        opt.zero_grad()
        value = F.mse_loss(model(x), y, reduction="sum")
        value.backward()
        return value

    with pytest.raises(NosError, match="do not match the model"):
        opt.step(summed)
    logistic_x, logistic_y = _data("logistic", 30, 4, 1)
    wrong = plane_search_for(model, logistic_x, logistic_y, loss="logistic")
    with pytest.raises(NosError, match="do not match the model"):  # closure's data differ
        wrong.step(_closure(wrong, model, x, y, "mse"))
