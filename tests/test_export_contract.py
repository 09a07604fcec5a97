"""The exported optimizer behaves as torch.optim users expect: torch.optim's Adam/AdamW step
for step, SymbolicOptimizer step for step under every option, state_dict round trips, half
precision, argument checks, sparse gradients, per-parameter step counts, and no float64
tensor or host copy on the parameters' device."""

from __future__ import annotations

import importlib.util
import inspect
import io
import math
import random
import re
import sys
from pathlib import Path

import pytest
import torch

from nos.errors import NosError
from nos.optim import SymbolicOptimizer
from nos.optim.export import render_module
from nos.symbolic.check import check_candidate
from nos.symbolic.grammar import load_grammar
from nos.symbolic.sample import sample_candidate
from nos.zoo.resolve import resolve

torch.set_num_threads(1)

WINNER = "none ~ add(v_hat, tanh(sub(sign_v_hat, aggmo_s)))"
DROPOUT = "nest ~ add(drop30(qhm_v), decay(mul(a13, a2), ema(delta(g))))"
STEPS = 30


def _sampled(n: int, seed: int) -> list[str]:
    """Sampled morgan2024 candidates that pass the integrity check (so they have a sign)."""
    grammar, rnd = load_grammar("morgan2024"), random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        cand = sample_candidate(grammar, rnd)
        if check_candidate(cand).passed:
            out.append(cand.text)
    return out


CANDIDATES = ["zoo:adam", "zoo:opt10", DROPOUT, WINNER, *_sampled(4, seed=5)]


def export_class(text: str, tmp_path: Path, name: str = "Exported") -> type:
    """Render ``text`` (with the sign its check chooses) and import the file."""
    cand = resolve(text, "morgan2024")
    flip = check_candidate(cand).flip
    path = tmp_path / f"{name.lower()}_{abs(hash(text)) % 10**8}.py"
    path.write_text(render_module(cand, name, options={"flip": flip}))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    cls: type = getattr(module, name)
    cls.module = module  # type: ignore[attr-defined]
    return cls


def _params(dtype: torch.dtype = torch.float64, seed: int = 0) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    shapes = ((6, 5), (5,), (4, 3), (3,), (7,))
    return [torch.nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in shapes]


def _grad(p: torch.Tensor, k: int) -> torch.Tensor:
    # non-quadratic: the gradients change direction, so moments and stateful ops matter
    return torch.sin(3 * p.detach() + k) + 0.1 * p.detach()


def _set_grads(params: list[torch.nn.Parameter], step: int, late: int | None = None) -> None:
    """Gradients for every parameter; ``params[late]`` gets none before step 7."""
    for k, p in enumerate(params):
        p.grad = None if (k == late and step < 7) else _grad(p, k)


def _groups(params: list[torch.nn.Parameter], maximize: bool) -> list[dict]:
    """Two groups with their own lr, weight decay and schedule."""
    return [
        {"params": params[:3], "lr": 0.03, "weight_decay": 0.05},
        {
            "params": params[3:],
            "lr": 0.01,
            "weight_decay": 0.0,
            "total_steps": 50,
            "warmup": 0,
            "hold": 5,
            "schedule": "constant",
            "momentum": 0.8,
            "maximize": maximize,
        },
    ]


# ---------------------------------------------------------------- torch.optim's own rules


@pytest.mark.parametrize("foreach", [True, False])
def test_exported_adam_steps_like_torch_adam_adamw_and_maximize(tmp_path, foreach):
    cls = export_class("zoo:adam", tmp_path, "Adam")
    cases = [
        (dict(lr=0.01), lambda ps: torch.optim.Adam(ps, lr=0.01)),
        (
            dict(lr=0.01, weight_decay=0.1),
            lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1),
        ),
        (dict(lr=0.01, maximize=True), lambda ps: torch.optim.Adam(ps, lr=0.01, maximize=True)),
    ]
    for kwargs, make in cases:
        ours, theirs = _params(), _params()
        opt_ours = cls(ours, foreach=foreach, **kwargs)
        opt_theirs = make(theirs)
        for t in range(STEPS):
            _set_grads(ours, t, late=1)
            _set_grads(theirs, t, late=1)
            opt_ours.step()
            opt_theirs.step()
            for a, b in zip(ours, theirs, strict=True):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=f"{kwargs} step {t}")
        # each parameter counts its own steps, as torch does: the late one 7 fewer
        assert [opt_ours.state[p]["step"] for p in ours] == [
            int(opt_theirs.state[p]["step"]) for p in theirs
        ]
        assert opt_ours.state[ours[1]]["step"] == STEPS - 7


def test_symbolic_optimizer_steps_like_torch_adamw_with_a_late_parameter():
    ours, theirs = _params(), _params()
    opt = SymbolicOptimizer(ours, "zoo:adam", lr=0.01, weight_decay=0.1)
    ref = torch.optim.AdamW(theirs, lr=0.01, weight_decay=0.1)
    for t in range(STEPS):
        _set_grads(ours, t, late=2)
        _set_grads(theirs, t, late=2)
        opt.step()
        ref.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    assert opt.state[ours[2]]["step"] == STEPS - 7


# --------------------------------------------------------- the export is the search's rule


def _run(make, steps: int, maximize: bool, dtype=torch.float64):
    params = _params(dtype)
    opt = make(_groups(params, maximize))
    history = []
    for t in range(steps):
        _set_grads(params, t, late=4)
        opt.step()
        history.append([p.detach().clone() for p in params])
    return opt, history


@pytest.mark.parametrize("text", CANDIDATES)
def test_export_matches_symbolic_optimizer_step_for_step(tmp_path, text):
    cls = export_class(text, tmp_path)
    flip = check_candidate(resolve(text, "morgan2024")).flip
    common = dict(lr=0.03, total_steps=40, warmup=4, seed=3, flip=flip)
    _, want = _run(lambda g: SymbolicOptimizer(g, text, **common), STEPS, maximize=True)
    for foreach in (True, False):
        _, got = _run(lambda g, f=foreach: cls(g, foreach=f, **common), STEPS, maximize=True)
        for t, (a, b) in enumerate(zip(got, want, strict=True)):
            for x, y in zip(a, b, strict=True):
                torch.testing.assert_close(
                    x, y, rtol=1e-9, atol=1e-12, msg=f"{text} foreach={foreach} step {t}"
                )


@pytest.mark.parametrize("text", ["zoo:opt1", DROPOUT, "zoo:opt10", "zoo:adamclip4"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_foreach_buckets_match_the_loop_bit_for_bit(tmp_path, monkeypatch, text, dtype):
    cls = export_class(text, tmp_path)
    # tiny buckets: tensors are cut into slices and small ones gathered across boundaries
    monkeypatch.setattr(
        cls.module, "_BUCKET_BYTES", 7 * torch.empty((), dtype=dtype).element_size()
    )
    runs = []
    for foreach in (True, False):
        params = _params(dtype, seed=1)
        opt = cls(_groups(params, maximize=False), total_steps=40, warmup=4, foreach=foreach)
        for t in range(STEPS):
            _set_grads(params, t, late=0)
            opt.step()
        runs.append(params)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b), text


def test_multi_tensor_path_follows_a_replaced_p_data(tmp_path):
    cls = export_class("zoo:adam", tmp_path)
    runs = []
    for foreach in (True, False):
        params = _params()
        opt = cls(params, lr=0.01, foreach=foreach)
        for t in range(6):
            if t == 3:  # e.g. a weight re-tied or re-loaded into new storage
                params[0].data = params[0].data.clone()
            _set_grads(params, t)
            opt.step()
        runs.append(params)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_multi_tensor_state_is_per_parameter_views(tmp_path):
    cls = export_class(WINNER, tmp_path)
    params = _params()
    opt = cls(params, lr=0.01)
    for t in range(3):
        _set_grads(params, t)
        opt.step()
    for p in params:
        st = opt.state[p]
        assert st["step"] == 3 and st["v"].shape == p.shape and st["s"].shape == p.shape
    assert 'group["step"]' in cls.__doc__ and 'state["step"]' in cls.__doc__


def test_every_zoo_entry_exports_ruff_clean_and_steps_finite(tmp_path):
    from nos.zoo import catalogue

    ruff = Path(sys.executable).with_name("ruff")
    paths = []
    for name in catalogue.names():
        if catalogue.entry(name).kind == "schedule":
            continue
        cls = export_class(f"zoo:{name}", tmp_path, "Zoo")
        paths.append(str(Path(cls.module.__file__)))
        for foreach in (True, False):
            params = _params(torch.float32)
            opt = cls(params, lr=1e-3, total_steps=20, warmup=2, weight_decay=1e-4, foreach=foreach)
            for t in range(3):
                _set_grads(params, t, late=1)
                opt.step()
            assert all(torch.isfinite(p).all() for p in params), name
    if ruff.exists():
        import subprocess

        root = Path(__file__).resolve().parents[1]
        res = subprocess.run(
            [str(ruff), "check", "--config", str(root / "pyproject.toml"), *paths],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout[-2000:]


# ------------------------------------------------------------------------------ state


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("text", [DROPOUT, "zoo:opt10"])
def test_state_dict_round_trip_is_bit_identical(tmp_path, text, foreach):
    cls = export_class(text, tmp_path)

    def make(params, seed):
        return cls(
            _groups(params, maximize=False), total_steps=100, warmup=10, seed=seed, foreach=foreach
        )

    def train(params, opt, start, stop):
        for t in range(start, stop):
            _set_grads(params, t, late=3)
            opt.step()

    straight = _params()
    train(straight, make(straight, 11), 0, 100)

    first = _params()
    opt = make(first, 11)
    train(first, opt, 0, 50)
    buf = io.BytesIO()
    torch.save({"params": [p.detach() for p in first], "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    if "drop" in text:
        assert saved["opt"]["generators"]
    second = _params(seed=9)  # other weights until they are loaded
    with torch.no_grad():
        for p, w in zip(second, saved["params"], strict=True):
            p.copy_(w)
    opt2 = make(second, 99)  # another seed: the generator state comes from the load
    opt2.load_state_dict(saved["opt"])
    train(second, opt2, 50, 100)
    for a, b in zip(straight, second, strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------- precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("text", ["zoo:adam", "zoo:opt10", WINNER, "zoo:opt1"])
def test_half_precision_parameters_track_float32(tmp_path, text, dtype):
    cls = export_class(text, tmp_path)
    gen = torch.Generator().manual_seed(7)
    targets = [torch.randn(p.shape, generator=gen) for p in _params(torch.float32)]
    out = {}
    for dt in (torch.float32, dtype):
        params = _params(dt, seed=2)
        opt = cls(params, lr=0.2, total_steps=40, warmup=4)
        for _ in range(40):  # a convex quadratic, so that rounding is not amplified
            for p, b in zip(params, targets, strict=True):
                p.grad = (p.detach().float() - b).to(dt)
            opt.step()
        assert all(
            v.dtype == dt for p in params for v in opt.state[p].values() if torch.is_tensor(v)
        )
        out[dt] = torch.cat([p.detach().float().reshape(-1) for p in params])
    assert torch.isfinite(out[dtype]).all()
    start = torch.cat([p.detach().float().reshape(-1) for p in _params(torch.float32, seed=2)])
    moved = (out[torch.float32] - start).abs().max()
    assert moved > 1.0  # the runs really moved
    assert (out[dtype] - out[torch.float32]).abs().max() < 0.05 * moved


# -------------------------------------------------------------------- bad input


def test_argument_errors_are_value_errors_naming_the_value(tmp_path):
    cls = export_class("zoo:opt10", tmp_path)
    p = [torch.nn.Parameter(torch.ones(3))]
    for kwargs, value in [
        (dict(lr=-0.1, total_steps=10), "-0.1"),
        (dict(lr=math.nan, total_steps=10), "nan"),
        (dict(weight_decay=-1e-3, total_steps=10), "-0.001"),
        (dict(weight_decay=math.nan, total_steps=10), "nan"),
        (dict(total_steps=0), "0"),
        (dict(total_steps=-5), "-5"),
        (dict(total_steps=10, warmup=11), "11"),
        (dict(total_steps=10, warmup=-1), "-1"),
        (dict(total_steps=10, momentum=-0.5), "-0.5"),
        (dict(), "total_steps"),
    ]:
        with pytest.raises(ValueError, match=re.escape(value)):
            cls(p, **kwargs)
        with pytest.raises(ValueError) as err:  # also a one-line NosError
            SymbolicOptimizer(p, "zoo:opt10", **kwargs)
        assert isinstance(err.value, NosError) and "\n" not in str(err.value)
    opt = cls(p, total_steps=10)
    with pytest.raises(ValueError, match=re.escape("-1.0")):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "lr": -1.0})
    assert len(opt.param_groups) == 1


def test_sparse_gradients_raise_like_torch_adam(tmp_path):
    cls = export_class("zoo:adam", tmp_path)
    emb = torch.nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    for opt in (cls(emb.parameters()), SymbolicOptimizer(emb.parameters(), "zoo:adam")):
        with pytest.raises(RuntimeError, match="does not support sparse gradients"):
            opt.step()


# ------------------------------------------------------------------ device hygiene


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("text", ["zoo:opt10", WINNER, "zoo:opt1"])
def test_steps_make_no_float64_tensor_and_no_copy_on_the_parameter_device(tmp_path, text, foreach):
    """On the meta device (a stand-in for MPS or CUDA): no op of a step makes a float64
    tensor there, and none moves a host tensor there."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.bad: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            ins = [
                a
                for a in torch.utils._pytree.tree_leaves((args, kwargs))
                if isinstance(a, torch.Tensor)
            ]
            outs = [o for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
            for o in outs:
                if o.device.type == "meta" and o.dtype == torch.float64:
                    self.bad.append(f"{func}: float64 on meta")
                if o.device.type == "meta" and any(i.device.type == "cpu" for i in ins):
                    self.bad.append(f"{func}: host tensor copied to meta")
            return out

    cls = export_class(text, tmp_path)
    params = [torch.nn.Parameter(torch.ones(s, device="meta")) for s in ((4, 3), (3,))]
    opt = cls(params, lr=0.01, total_steps=20, warmup=2, weight_decay=0.01, foreach=foreach)
    for _ in range(3):
        for p in params:
            p.grad = torch.ones_like(p)
        with Record() as rec:
            opt.step()
        assert not rec.bad, rec.bad[:3]


# ------------------------------------------------------------------------ compile


def test_compile_failure_falls_back_to_eager_with_a_warning(tmp_path, monkeypatch):
    cls = export_class(WINNER, tmp_path)

    def broken(fn, **_kw):
        def call(*_args):
            raise RuntimeError("no compiler")

        return call

    monkeypatch.setattr(torch, "compile", broken)
    runs = []
    for compile in (True, False):
        params = _params()
        opt = cls(params, lr=0.01, compile=compile)
        with pytest.warns(RuntimeWarning, match="torch.compile failed") if compile else _nothing():
            for t in range(5):
                _set_grads(params, t)
                opt.step()
        runs.append(params)
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_compiled_forms_of_tanh_and_i1e_are_accurate(tmp_path):
    """_tanh and _i1e, which the compiled step uses (the library kernels are slow under
    torch.compile on CPU), in float32, against the float64 library functions."""
    winner, opt10 = (
        export_class(WINNER, tmp_path).module,
        export_class("zoo:opt10", tmp_path).module,
    )
    assert "_tanh(" in inspect.getsource(winner._update_compiled)
    assert "torch.special.i1e(" in inspect.getsource(opt10._update)
    assert "_i1e(" in inspect.getsource(opt10._update_compiled)
    x = torch.cat(
        [torch.linspace(-60, 60, 200_001), torch.tensor([0.0, -0.0, 1e-30, 0.3, 9.99, 10.0])]
    )
    special = torch.tensor([math.inf, -math.inf, math.nan])
    for fast, exact in ((winner._tanh, torch.tanh), (opt10._i1e, torch.special.i1e)):
        want = exact(x.double())
        got = fast(x).double()
        assert torch.equal(got.sign(), want.sign())
        err = (got - want).abs() / want.abs().clamp_min(1e-30)
        assert float(err.max()) < 1e-6, (exact, float(err.max()))
        torch.testing.assert_close(fast(special), exact(special), equal_nan=True)
        assert fast(x.bfloat16()).dtype == torch.bfloat16
        assert torch.equal(fast(x.double()), exact(x.double()))  # float64: the library's


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("text", [DROPOUT, "zoo:opt10", WINNER])
def test_compiled_step_matches_eager(tmp_path, text):
    pytest.importorskip("torch._inductor")
    cls = export_class(text, tmp_path)
    runs = []
    for compile in (False, True):  # one group, one compiled graph: a few seconds
        params = _params(torch.float32)[:2]
        opt = cls(
            params,
            lr=0.03,
            total_steps=40,
            warmup=4,
            weight_decay=0.01,
            maximize=True,
            compile=compile,
        )
        for t in range(12):
            _set_grads(params, t)
            opt.step()
        assert not opt.compile or compile  # no fallback happened
        runs.append(params)
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- CUDA


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("text", ["zoo:adam", "zoo:opt10", DROPOUT, WINNER])
def test_cuda_export_matches_symbolic_optimizer(tmp_path, text):
    cls = export_class(text, tmp_path)
    out = []
    for make in (
        lambda g: SymbolicOptimizer(g, text, lr=0.03, total_steps=40, warmup=4, layout="foreach"),
        lambda g: cls(g, lr=0.03, total_steps=40, warmup=4),
    ):
        params = [torch.nn.Parameter(p.detach().cuda()) for p in _params()]
        opt = make(_groups(params, maximize=False))
        for t in range(STEPS):
            _set_grads(params, t, late=4)
            opt.step()
        out.append([p.detach().cpu() for p in params])
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@cuda
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_cuda_compiled_step_matches_eager(tmp_path):
    cls = export_class("zoo:adam", tmp_path)
    runs = []
    for compile in (False, True):
        params = [torch.nn.Parameter(p.detach().float().cuda()) for p in _params()]
        opt = cls(params, lr=0.01, compile=compile)
        for t in range(10):
            _set_grads(params, t)
            opt.step()
        runs.append([p.detach().cpu() for p in params])
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
