"""The fitness protocol (spec §5.3/§5.4): schedule, thresholds, aborts, determinism, seeds."""

from __future__ import annotations

import json
import math
import statistics
import time
from typing import ClassVar

import pytest

torch = pytest.importorskip("torch")

from nos.errors import NosError  # noqa: E402
from nos.optim.factories import baseline_factory  # noqa: E402
from nos.training.presets import PAPER_STAGES  # noqa: E402
from nos.training.protocol import evaluate, evaluate_factory, run_protocol  # noqa: E402
from nos.training.registry import PRESETS  # noqa: E402
from nos.training.spec import EvalResult, EvalSpec  # noqa: E402
from nos.training.trainer import RunLog  # noqa: E402

# A few steps per epoch keep every real run here well under a second.
TINY = {"sweep_steps": 3, "final_steps": 3, "final_epochs": 6, "warmup": 12, "total_steps": 18}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeTrainer:
    """Records the protocol's calls and answers with scripted accuracies per LR."""

    def __init__(self, train_acc: dict[float, float], val: float = 0.7):
        self.train_acc, self.val, self.calls = train_acc, val, []

    def train(self, lrs, *, epochs, steps_per_epoch, validate, stop_below, stop_from):
        self.calls.append(
            dict(
                lrs=list(lrs),
                epochs=epochs,
                steps=steps_per_epoch,
                validate=validate,
                stop_below=stop_below,
                stop_from=stop_from,
            )
        )
        return [
            RunLog(
                lr,
                [self.train_acc[lr]] * epochs,
                [self.val] * epochs if validate else [],
                epochs * steps_per_epoch,
            )
            for lr in lrs
        ]


def test_paper_preset_budgets():
    paper, init = PRESETS["paper"], PRESETS["paper-init"]
    assert paper.stages == PAPER_STAGES == ((10, 1e-2, 1e-5), (1, 1e-1, 1e-3, 1e-4))
    assert (paper.task, paper.width, paper.augment, paper.batch_size) == ("cifar10", 48, True, 128)
    assert (init.task, init.width, init.augment) == ("cifar10", 32, False)
    assert (paper.total_steps, paper.warmup, paper.final_steps) == (16000, 800, 400)
    assert (init.total_steps, init.warmup, init.final_steps) == (8000, 800, 200)
    for p in (paper, init):
        assert (p.sweep_epochs, p.sweep_steps, p.final_epochs) == (4, 200, 40)
        assert p.sweep_epochs * p.sweep_steps == p.warmup  # the sweep is all warmup
        assert not p.shuffle
    assert paper.max_steps == 7 * 800 + 16000 and init.max_steps == 7 * 800 + 8000


def test_paper_protocol_schedule_and_tie_order():
    # 1e-2 and 1 tie; the spec's order [10, 1e-2, 1e-5, 1, ...] picks 1e-2.
    acc = {10: 0.1, 1e-2: 0.6, 1e-5: 0.3, 1: 0.6, 1e-1: 0.5, 1e-3: 0.2, 1e-4: 0.1}
    trainer = FakeTrainer(acc)
    out = run_protocol(trainer, PRESETS["paper"])
    assert out.status == "ok" and out.lr == 1e-2 and out.fitness == 0.7
    sweep = dict(epochs=4, steps=200, validate=False, stop_below=0.25, stop_from=2)
    assert trainer.calls == [
        {"lrs": [10, 1e-2, 1e-5], **sweep},
        {"lrs": [1, 1e-1, 1e-3, 1e-4], **sweep},
        {
            "lrs": [1e-2],
            "epochs": 40,
            "steps": 400,
            "validate": True,
            "stop_below": 0.4,
            "stop_from": 4,
        },
    ]
    init = FakeTrainer(acc)
    run_protocol(init, PRESETS["paper-init"])
    assert init.calls[-1]["steps"] == 200 and init.calls[-1]["epochs"] == 40


def test_protocol_thresholds():
    stage1_fails = FakeTrainer(
        {10: 0.2, 1e-2: 0.24, 1e-5: 0.1, 1: 0.9, 1e-1: 0.9, 1e-3: 0.9, 1e-4: 0.9}
    )
    out = run_protocol(stage1_fails, PRESETS["paper"])
    assert out.status == "failed_threshold" and "stage 1" in out.reason
    assert len(stage1_fails.calls) == 1  # stage 2 never runs

    below_040 = FakeTrainer(
        {10: 0.3, 1e-2: 0.39, 1e-5: 0.1, 1: 0.2, 1e-1: 0.35, 1e-3: 0.1, 1e-4: 0.1}
    )
    out = run_protocol(below_040, PRESETS["paper"])
    assert out.status == "failed_threshold" and "0.4" in out.reason
    assert len(below_040.calls) == 2  # no final run

    reduced = FakeTrainer({1e-3: 0.5, 1e-2: 0.5, 1e-4: 0.2})
    out = run_protocol(reduced, PRESETS["paper"], [(1e-3, 1e-2, 1e-4)])
    assert out.status == "ok" and out.lr == 1e-3 and len(reduced.calls) == 2


class _Counting(torch.optim.SGD):
    """SGD that records what the protocol built it with and how often it stepped."""

    built: ClassVar[list[tuple[float, int, int]]] = []
    steps = 0

    def step(self, closure=None):
        type(self).steps += 1
        return super().step(closure)


def test_trainer_passes_schedule_and_runs_exact_step_counts():
    _Counting.built, _Counting.steps = [], 0

    def factory(params, lr, total, warmup):
        _Counting.built.append((lr, total, warmup))
        return _Counting(params, lr=0.05)

    # Thresholds at zero: no run stops early, so every step count is exact.
    never_stop = {
        **TINY,
        "sweep_stop_below": 0.0,
        "final_stop_below": 0.0,
        "stage1_threshold": 0.0,
        "overall_threshold": 0.0,
    }
    result = evaluate_factory(factory, preset="quick", seeds=0, overrides=never_stop)
    assert result.status == "ok"
    lrs = [lr for lr, _, _ in _Counting.built]
    assert lrs[:7] == [10, 1e-2, 1e-5, 1, 1e-1, 1e-3, 1e-4] and len(lrs) == 8
    assert {(t, w) for _, t, w in _Counting.built} == {(18, 12)}
    assert _Counting.steps == result.steps == 7 * 4 * 3 + 6 * 3
    assert len(result.curves[0]) == 6 and result.steps_per_epoch == 3


def test_zero_lr_fails_the_threshold():
    def frozen(params, lr, total, warmup):
        return torch.optim.SGD(params, lr=0.0)

    result = evaluate_factory(frozen, preset="quick", seeds=0, overrides=TINY)
    assert result.status == "failed_threshold" and result.fitness is None
    assert "stage 1" in result.reason
    # Stage 1 only, each run stopped after epoch index 2.
    assert result.steps == 3 * 3 * 3


class _Exploding(torch.optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, {})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(p.grad.sign() * 1e3)


def test_divergence_is_reported_and_aborts_early():
    result = evaluate_factory(lambda p, *_: _Exploding(p), preset="quick", seeds=0, overrides=TINY)
    assert result.status == "diverged" and result.fitness is None
    assert result.steps < 3 * 4 * 3  # every stage-1 run aborted before its budget


class _Sleepy(torch.optim.SGD):
    def step(self, closure=None):
        time.sleep(0.02)
        return super().step(closure)


def test_wall_clock_timeout():
    started = time.monotonic()
    result = evaluate_factory(
        lambda p, lr, *_: _Sleepy(p, lr=lr), preset="quick", seeds=0, timeout_s=0.2
    )
    assert result.status == "timeout" and result.fitness is None
    assert time.monotonic() - started < 2.0


def test_optimizer_exception_is_an_error_status():
    class Broken(torch.optim.SGD):
        def step(self, closure=None):
            raise RuntimeError("bad numerics")

    result = evaluate_factory(
        lambda p, lr, *_: Broken(p, lr=lr), preset="quick", seeds=0, overrides=TINY
    )
    assert result.status == "error" and "bad numerics" in result.reason


def test_same_seed_same_fitness_and_multi_seed_stats():
    adam = baseline_factory("adam")
    one = evaluate_factory(adam, preset="quick", seeds=[0, 1, 2], overrides=TINY)
    two = evaluate_factory(adam, preset="quick", seeds=[0, 1, 2], overrides=TINY)
    assert one.status == "ok"
    assert {**one.to_dict(), "wall_s": 0} == {**two.to_dict(), "wall_s": 0}
    per_seed = one.fitness_per_seed
    assert len(per_seed) == 3 and len(set(one.curves)) > 1  # seeds differ
    assert one.fitness == pytest.approx(statistics.fmean(per_seed))
    assert one.std == pytest.approx(statistics.pstdev(per_seed))
    assert per_seed == pytest.approx([max(c) for c in one.curves], abs=1e-6)  # best val


def test_batched_sweep_matches_sequential():
    adam = baseline_factory("adam")
    seq = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY)
    bat = evaluate_factory(adam, preset="quick", seeds=0, overrides=TINY, batch_sweep=True)
    assert bat.lr == seq.lr
    for (lr_a, a), (lr_b, b) in zip(seq.sweep[0], bat.sweep[0], strict=True):
        assert lr_a == lr_b and a == pytest.approx(b, abs=0.02)


def test_results_and_specs_round_trip_through_json():
    result = evaluate_factory(baseline_factory("sgd"), preset="quick", seeds=[0, 1], overrides=TINY)
    back = EvalResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result
    assert back.steps_to(0.0) == (3, 3) and back.steps_to(1.01) == (None, None)
    spec = EvalSpec("torch:adam", seeds=(0, 1), overrides=TINY, timeout_s=5.0)
    assert EvalSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_evaluate_spec_maps_candidate_faults_to_statuses():
    ok = evaluate(EvalSpec("torch:adam", overrides=TINY))
    assert ok.status == "ok" and 0.0 < ok.fitness <= 1.0 and math.isfinite(ok.wall_s)
    assert ok.config["spec"]["candidate"] == "torch:adam"
    assert ok.config["preset"]["name"] == "quick"
    bad = evaluate(EvalSpec("nest ~ this is not a candidate", overrides=TINY))
    assert bad.status == "error" and bad.fitness is None
    with pytest.raises(NosError, match="unknown preset"):
        evaluate(EvalSpec("torch:adam", preset="fastest"))
    with pytest.raises(NosError, match="LR hint"):
        evaluate(EvalSpec("torch:adam", lr_grid="reduced"))


def test_reduced_grid_runs_around_the_hint():
    result = evaluate_factory(
        baseline_factory("adam"),
        preset="quick",
        seeds=0,
        lr_grid="reduced",
        lr_hint=1e-2,
        overrides=TINY,
    )
    assert [lr for lr, _ in result.sweep[0]] == pytest.approx([1e-2, 1e-1, 1e-3])
    assert result.config["stages"] == [[1e-2, 1e-1, 1e-3]]
