"""The fast step (nos.training.fast, nos.training.graphs): options, reuse, fallbacks, OOM.

torch.compile is replaced by its ``eager`` backend (or the identity) here: inductor takes
tens of seconds on this CPU, and what is tested is the wiring, not the compiler. The
CUDA graph and real out-of-memory tests need a GPU and skip without one.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nos.errors import NosError  # noqa: E402
from nos.optim.factories import baseline_factory, factory_for  # noqa: E402
from nos.optim.symbolic_optimizer import SymbolicOptimizer  # noqa: E402
from nos.training import fast  # noqa: E402
from nos.training.graphs import GraphedStep, capture_problem  # noqa: E402
from nos.training.protocol import evaluate, evaluate_factory  # noqa: E402
from nos.training.spec import EvalSpec, StepOptions  # noqa: E402
from nos.training.tasks import load_task  # noqa: E402
from nos.training.trainer import Trainer, _Member  # noqa: E402

TINY = {"sweep_steps": 3, "final_steps": 3, "final_epochs": 6, "warmup": 12, "total_steps": 18}
CUDA = torch.cuda.is_available()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def eager_compile(monkeypatch):
    """torch.compile with the eager backend: dynamo traces, nothing is code-generated."""
    real = torch.compile
    calls = []

    def compile(model, **kwargs):
        calls.append(model)
        return real(model, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", compile)
    fast.reset_networks()
    yield calls
    fast.reset_networks()


def _key(result):
    return {**result.to_dict(), "wall_s": 0, "config": {}}


def test_step_options_are_checked():
    with pytest.raises(NosError, match="unknown precision 'fp16'"):
        StepOptions(precision="fp16")
    with pytest.raises(NosError, match="unknown compile mode"):
        StepOptions(compile="everything")
    assert StepOptions("fp32", "update").compile_update and not StepOptions().compile_update
    assert not StepOptions(cuda_graph=True).compile_update  # the graph runs the traced step
    assert (
        StepOptions(compile="all").compile_model and not StepOptions("fp32", "update").compile_model
    )
    spec = EvalSpec("zoo:adam", precision="bf16", compile="model")
    assert spec.step_options == StepOptions("bf16", "model")
    assert EvalSpec.from_dict(spec.to_dict()) == spec
    old = spec.to_dict()
    for name in ("precision", "compile", "cuda_graph", "channels_last"):
        old.pop(name)  # specs written before these fields read back as the plain step
    assert EvalSpec.from_dict(old).step_options == StepOptions()


def test_plain_options_and_channels_last_on_cpu_keep_the_results():
    adam = baseline_factory("adam")
    plain = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY)
    same = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY, options=StepOptions())
    assert _key(plain) == _key(same)
    assert plain.config["step"] == {
        "precision": "fp32",
        "compile": "off",
        "cuda_graph": False,
        "channels_last": None,
    }


def test_bf16_autocast_trains_and_stays_close():
    adam = baseline_factory("adam")
    fp32 = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY)
    bf16 = evaluate_factory(
        adam, preset="quick", seeds=0, overrides=TINY, options=StepOptions(precision="bf16")
    )
    assert bf16.status == "ok" and bf16.config["step"]["precision"] == "bf16"
    assert bf16.curves != fp32.curves  # it is a different computation
    assert abs(bf16.fitness - fp32.fitness) < 0.05


def test_channels_last_plan_converts_image_batches_only(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        records = np.random.default_rng(i).integers(0, 256, (4, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        (folder / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    task = load_task("cifar10", data_dir=tmp_path, width=4, validation_size=4)
    plan = fast.StepPlan(StepOptions(channels_last=True), task)
    x = plan.prepare(task.inputs(task.train_x[:4]))
    assert x.is_contiguous(memory_format=torch.channels_last)
    model, runner = plan.network(task, 0, shared=True)
    assert model is runner  # nothing compiled
    assert model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not fast.StepPlan(StepOptions(), task).channels_last  # CPU default: off
    digits = fast.StepPlan(StepOptions(channels_last=True), load_task("digits"))
    assert not digits.channels_last  # not images


def test_compiled_network_is_reused_across_candidates(eager_compile):
    options = StepOptions(compile="model")
    adam, sgd = baseline_factory("adam"), factory_for("zoo:sgd")
    eager = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY)
    first = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY, options=options)
    other = evaluate_factory(sgd, preset="quick", seeds=1, overrides=TINY, options=options)
    again = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY, options=options)
    assert len(eager_compile) == 1  # compiled once for all three evaluations
    assert _key(first) == _key(eager) == _key(again)  # weights reset in place each run
    assert other.status == "ok"
    (net,) = fast._NETS.values()
    assert not net.failed


def test_batched_sweep_never_shares_the_compiled_network(eager_compile):
    options = StepOptions(compile="model")
    adam = baseline_factory("adam")
    seq = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY, batch_sweep=True)
    fused = evaluate_factory(
        adam, preset="quick", seeds=0, overrides=TINY, batch_sweep=True, options=options
    )
    assert _key(seq) == _key(fused)


def test_a_compiler_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    def broken(model, **kwargs):
        def fail(*args):
            raise RuntimeError("no compiler here")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(fast, "_warned", set())
    fast.reset_networks()
    adam = baseline_factory("adam")
    eager = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        options = StepOptions(compile="model")
        one = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY, options=options)
        two = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY, options=options)
    fast.reset_networks()
    messages = [str(w.message) for w in caught if "torch.compile" in str(w.message)]
    assert messages == ["torch.compile of the network failed (RuntimeError); eager"]
    assert _key(one) == _key(eager) == _key(two)


def test_a_compiled_network_that_fails_later_falls_back_too(monkeypatch):
    """A compiled call that fails after the trial (a new shape, say) runs eagerly; an error
    of the network itself is still raised."""
    monkeypatch.setattr(fast, "_warned", set())
    calls = []

    def flaky(model, **kwargs):
        def run(x):
            calls.append(len(x))
            if len(x) == 2:
                raise RuntimeError("cannot compile this shape")
            return model(x)

        return run

    monkeypatch.setattr(torch, "compile", flaky)
    net = fast.CompiledNet(torch.nn.Linear(4, 2).eval())
    x = torch.ones(3, 4)
    with torch.no_grad():
        assert torch.equal(net(x), net.module(x))  # the trial, then the call
        with pytest.warns(RuntimeWarning, match="torch.compile of the network failed"):
            assert torch.equal(net(x[:2]), net.module(x[:2]))
    assert net.failed and calls == [3, 3, 2]
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        net(torch.ones(3, 5))


def test_out_of_memory_marks_the_candidate_and_the_next_one_runs(monkeypatch):
    released = []
    monkeypatch.setattr(fast, "release_memory", released.append)
    import nos.training.protocol as protocol

    monkeypatch.setattr(protocol, "release_memory", released.append)

    def hungry(params, lr, total, warmup):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    bad = evaluate_factory(hungry, preset="quick", seeds=[0, 1], overrides=TINY)
    assert bad.status == "error" and bad.fitness is None
    assert bad.reason.startswith("out of memory: OutOfMemoryError: CUDA out of memory")
    assert protocol._reason(torch.OutOfMemoryError("x"), "cuda:0").startswith("out of GPU memory: ")
    assert released  # memory is handed back after every evaluation
    good = evaluate_factory(baseline_factory("adam"), preset="quick", seeds=0, overrides=TINY)
    assert good.status == "ok"


def test_out_of_memory_while_loading_is_an_error_result(monkeypatch):
    import nos.training.protocol as protocol

    def no_room(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(protocol, "load_task", no_room)
    result = evaluate(EvalSpec("zoo:adam", overrides=TINY))
    assert result.status == "error" and result.reason.startswith("out of memory")


def test_release_memory_empties_the_cuda_cache_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    fast.release_memory("cpu")
    assert calls == []
    fast.release_memory("cuda:0")
    assert calls == [1]


def test_capture_problems_are_named():
    params = [torch.nn.Parameter(torch.zeros(3))]
    assert "not a candidate" in capture_problem(torch.optim.Adam(params))
    assert capture_problem(SymbolicOptimizer(params, "zoo:adam", total_steps=10)) is None
    dropout = SymbolicOptimizer(params, "none ~ drop50(g)", total_steps=10, compile=True)
    assert "dropout" in capture_problem(dropout)
    decayed = SymbolicOptimizer(params, "zoo:adam", total_steps=10, weight_decay=0.1)
    assert "weight decay" in capture_problem(decayed)


@pytest.mark.parametrize("candidate", ["zoo:adam", "zoo:opt10", "zoo:opt4"])
def test_device_fed_scalars_match_the_plain_step(monkeypatch, candidate):
    """GraphedStep without capture: static inputs, numbers from the device table in blocks
    of 5 steps, the traced tensor-scalar update run uncompiled - the same weights as the
    plain eager step."""
    compiled = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda *a, **k: compiled.append(a) or real(*a, **k))
    task = load_task("digits")
    plan = fast.StepPlan(StepOptions(), task)  # GraphedStep reads its device and autocast

    def member() -> _Member:
        model = task.build_model(0)
        opt = SymbolicOptimizer(
            list(model.parameters()), candidate, lr=3e-3, total_steps=23, warmup=4
        )
        return _Member(model, opt, 3e-3)

    fed, plain = member(), member()
    step = GraphedStep(fed, plan, capture=False, block=5)
    trainer = Trainer(baseline_factory("adam"), task, None, 0)  # only for its plain step
    generator = torch.Generator().manual_seed(0)
    for _ in range(23):
        index = torch.randint(0, len(task.train_y), (32,), generator=generator)
        x, y = task.train_batch(index)
        step([fed], x, y)
        trainer._sequential_step([plain], x, y)
    assert fed.opt.param_groups[0]["step"] == plain.opt.param_groups[0]["step"] == 23
    assert fed.log.steps == plain.log.steps == 23
    for a, b in zip(fed.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert int(fed.correct) == int(plain.correct)
    assert fed.opt.compile and not plain.opt.compile and compiled == []  # nothing compiled


def test_cuda_graphs_on_the_cpu_train_eagerly(monkeypatch):
    monkeypatch.setattr(fast, "_warned", set())
    with pytest.warns(RuntimeWarning, match="CUDA graphs need a CUDA device"):
        plan = fast.StepPlan(StepOptions(cuda_graph=True), load_task("digits"))
    assert not plan.graphs


# ---------------------------------------------------------------------- CUDA only


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("candidate", ["zoo:adam", "zoo:opt10"])
def test_cuda_graph_step_matches_the_eager_step(candidate):
    fast.reset_networks()
    task = load_task("digits", device="cuda")
    tiny = {**TINY, "final_epochs": 3}
    spec = dict(preset="quick", seeds=0, overrides=tiny)
    eager = evaluate_factory(factory_for(candidate), task, **spec)
    for compile in ("off", "update"):
        with warnings.catch_warnings():  # a fallback to eager would warn
            warnings.filterwarnings("error", message=".*eager", category=RuntimeWarning)
            graphed = evaluate_factory(
                factory_for(candidate, compile=compile == "update"),
                task,
                options=StepOptions(compile=compile, cuda_graph=True),
                **spec,
            )
        assert graphed.status == eager.status == "ok"
        assert graphed.lr == eager.lr
        assert graphed.fitness == pytest.approx(eager.fitness, abs=0.02)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_fast_path_is_deterministic():
    spec = EvalSpec(
        "zoo:adam",
        device="cuda",
        overrides=TINY,
        precision="bf16",
        compile="all",
        cuda_graph=True,
    )
    first, second = evaluate(spec), evaluate(spec)
    assert first.status == "ok" and _key(first) == _key(second)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_a_real_cuda_out_of_memory_is_an_error_and_memory_comes_back():
    free, _total = torch.cuda.mem_get_info()

    def hog(params, lr, total, warmup):
        hog.block = torch.empty(int(free * 4), dtype=torch.uint8, device="cuda")
        return torch.optim.SGD(params, lr=lr)

    task = load_task("digits", device="cuda")
    result = evaluate_factory(hog, task, preset="quick", seeds=0, overrides=TINY)
    assert result.status == "error" and result.reason.startswith("out of GPU memory")
    ok = evaluate_factory(baseline_factory("adam"), task, preset="quick", seeds=0, overrides=TINY)
    assert ok.status == "ok"
