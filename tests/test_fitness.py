"""The suite fitness: a paired, continuous score against LR-tuned Adam, with a cheap first rung."""

from __future__ import annotations

import functools
import json
import math

import pytest

from nos.errors import NosError
from nos.executors import SerialExecutor
from nos.search.config import SearchConfig
from nos.search.driver import MemoryStore, run_search
from nos.search.fake import job_payload
from nos.search.fitness import FitnessSpec, TaskBudget, aggregate, fitness_for, log_ratio
from nos.search.report import hall_of_fame
from nos.status import Status
from nos.symbolic.grammar import load_grammar
from nos.training.presets import Budget

pytest.importorskip("torch")

from nos.search.suite_eval import run_job, rung0_multiples
from nos.search.suite_jobs import (
    candidate_payload,
    compute_reference,
    serial_batches,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = FitnessSpec(
    tasks=(
        TaskBudget("digits", Budget(40, batch_size=64, warmup=2, eval_every=20)),
        TaskBudget("teacher", Budget(40, batch_size=64, warmup=2, eval_every=20)),
    ),
    rung0=TaskBudget("digits", Budget(20, batch_size=64, warmup=1, eval_every=20)),
    reference_grid=(3e-3, 3e-2),
)
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def reference():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in every test here (results depend on the thread count)
    try:
        return compute_reference(TINY, SEEDS, SEEDS, serial_batches)
    finally:
        torch.set_num_threads(threads)


def score(candidate, reference, *, spec=TINY, seeds=SEEDS, full=True, flip=False):
    payload = candidate_payload(
        candidate=candidate,
        grammar="morgan2024",
        flip=flip,
        seeds=seeds,
        rung0_seed=seeds[0],
        spec=spec,
        reference=reference,
        full=full,
    )
    return run_job(json.loads(json.dumps(payload)))  # payloads are plain data


def test_log_ratio_and_aggregate():
    assert log_ratio(0.5, 0.5, 1.0) == 0.0
    assert log_ratio(1.0, 0.5, 1.0) == pytest.approx(math.log(2))
    assert log_ratio(1.0, 100.0, 1.0) == -1.0  # clipped
    assert log_ratio(1.0, None, 1.0) == -1.0  # diverged
    fitness, per_seed = aggregate({"a": [0.2, 0.0], "b": [-0.2, 0.4]})
    assert per_seed == pytest.approx([0.0, 0.2]) and fitness == pytest.approx(0.1)


def test_the_reference_is_tuned_per_task_and_paired_by_seed(reference):
    for name in TINY.task_names:
        info = reference.tasks[name]
        assert info["lr"] in TINY.reference_grid
        best = min(v for v in info["grid"].values() if v is not None)
        assert info["loss"]["0"] == best  # tuned on the first seed
        assert info["loss"]["0"] != info["loss"]["1"]  # another seed, another network
    assert set(reference.rung0) == {"0", "1"}
    assert reference.rung0["0"]["multiple"] == 1.0  # Adam's matched multiple is its own


def test_an_optimizer_identical_to_the_reference_scores_neutral(reference):
    result = score("torch:adam", reference)
    assert result["status"] == Status.OK and result["fitness"] == 0.0
    for task in result["suite"]["tasks"].values():
        assert task["score"] == [0.0, 0.0]  # paired: each seed against the same seed
    assert result["suite"]["multiple"] == 1.0
    # Adam as a candidate (the emitted update) differs from torch's only in rounding
    zoo = score("zoo:adam", reference)
    assert zoo["status"] == Status.OK and abs(zoo["fitness"]) < 1e-3


def test_the_score_is_continuous(reference):
    plain = score("none ~ div(v_hat, sqrt_abs(s_hat))", reference)
    nudged = score("none ~ div(v_hat, add(sqrt_abs(s_hat), wd6))", reference)
    assert plain["status"] == nudged["status"] == Status.OK
    assert plain["fitness"] != nudged["fitness"]
    assert abs(plain["fitness"] - nudged["fitness"]) < 0.05
    again = score("none ~ div(v_hat, sqrt_abs(s_hat))", reference)
    assert again["fitness"] == plain["fitness"]
    assert again["suite"]["tasks"]["teacher"]["loss"] == plain["suite"]["tasks"]["teacher"]["loss"]


@pytest.mark.parametrize("broken", ["none ~ neg(g)", "none ~ wd6"])
def test_a_broken_optimizer_stops_at_the_first_rung(reference, broken):
    result = score(broken, reference)
    assert result["status"] in (Status.FAILED_THRESHOLD, Status.DIVERGED)
    details = result["suite"]
    assert details["rung"] == 0 and len(details["steps_per_rung"]) == 1
    most = TINY.probe_steps + (3 + TINY.extend) * TINY.rung0.budget.steps
    assert 0 < result["steps"] == details["steps_per_rung"][0] <= most


def test_the_initial_population_is_scored_on_the_first_rung_only(reference):
    result = score("zoo:adam", reference, full=False)
    assert result["status"] == Status.OK
    assert result["suite"]["rung"] == 0 and result["steps"] <= 400
    assert result["fitness"] == result["suite"]["rung0_score"]
    # no later rung to stop before: a poor candidate keeps its (clipped) rung-0 score
    poor = score("none ~ wd6", reference, full=False)
    assert poor["status"] == Status.OK and poor["fitness"] == -TINY.clip


def test_lr_schemes():
    assert rung0_multiples("matched", 0.01, 30.0) == pytest.approx(
        [10**1.5, 10.0, 100.0]
    )  # rounded to the nearest half decade
    assert rung0_multiples("matched", 0.01, None)[0] == 1.0
    assert sorted(rung0_multiples("decades", 0.01, None)) == [1e-2, 1e-1, 1.0, 1e1, 1e2]
    assert 10.0 / 0.01 in rung0_multiples("paper", 0.01, None)
    with pytest.raises(NosError, match="LR scheme"):
        TINY.replace(lr_scheme="grid")
    assert FitnessSpec.from_dict(TINY.to_dict()) == TINY


def test_the_default_fitness_is_the_search_suite():
    spec = fitness_for()
    assert spec.task_names[0] == spec.rung0.task == "digits"
    assert spec.rung0.budget.steps < spec.budget("digits").steps
    one = fitness_for(tasks=["teacher"])
    assert one.task_names == ("teacher",) and one.rung0.task == "teacher"
    with pytest.raises(NosError, match="unknown suite"):
        fitness_for("nonesuch")


BASELINES = ["zoo:momentum", "zoo:addsign", "zoo:powersign", "zoo:adam", "zoo:rmsprop", "zoo:lion"]


def test_classic_baselines_clear_the_default_first_hurdle_on_every_seed():
    default = fitness_for()
    # the first rung needs only the reference on its own task
    spec = default.replace(tasks=(TaskBudget("digits", default.budget("digits")),))
    seeds = [0, 1]  # tools/ measurements: 4 seeds
    ref = compute_reference(spec, seeds, seeds, serial_batches)
    means = {}
    for name in BASELINES:
        scores = []
        for seed in seeds:
            result = score(name, ref, spec=spec, seeds=[seed])
            assert result["status"] == Status.OK, (name, seed, result.get("reason"))
            assert result["suite"]["rung"] == 1  # went on past the hurdle
            scores.append(result["suite"]["rung0_score"])
        means[name] = sum(scores) / len(scores)
    broken = score("none ~ wd6", ref, spec=spec, seeds=[0])
    assert broken["status"] == Status.FAILED_THRESHOLD
    # adaptive rules first, then momentum SGD, then the sign-scaled gradients of Bello et al.
    ranked = sorted(means, key=means.get, reverse=True)
    assert set(ranked[:2]) == {"zoo:adam", "zoo:lion"}
    adaptive = ("zoo:adam", "zoo:lion", "zoo:rmsprop")
    assert min(means[n] for n in adaptive) > means["zoo:momentum"]
    assert means["zoo:momentum"] > max(means["zoo:addsign"], means["zoo:powersign"])


# ------------------------------------------------------------------------ the engine


def test_suite_scores_keep_the_search_deterministic_and_fail_below_every_score(shuffled):
    config = SearchConfig(
        grammar="tiny",
        fitness="suite",
        task="fake",
        particles=3,
        steps=2,
        children=3,
        init_factor=3,
        seed=2,
        fake={"fail_rate": 0.3},
    )

    def run(executor):
        store = MemoryStore()
        run_search(
            config,
            load_grammar("tiny"),
            executor=executor,
            store=store,
            job_factory=functools.partial(job_payload, options=config.fake),
        )
        return store

    def moves(store):
        return sorted((r for r in store.records if r["type"] == "move"), key=lambda r: r["origin"])

    base = run(SerialExecutor("nos.search.fake:evaluate"))
    for seed, workers in ((1, 3),):
        other = run(shuffled(seed, workers))
        assert hall_of_fame(other.records) == hall_of_fame(base.records)
        assert moves(other) == moves(base)
    selection = next(r for r in base.records if r["type"] == "selection")
    assert all(p["init_fitness"] != 0.0 for p in selection["particles"])  # no failed one


def test_config_checks_the_fitness():
    with pytest.raises(NosError, match="unknown fitness"):
        SearchConfig(fitness="accuracy")
    cfg = SearchConfig(fitness="suite", task="", suite="search")
    assert cfg.target == "search" and SearchConfig.from_dict(cfg.to_dict()) == cfg
    assert SearchConfig().fitness == "paper"  # runs made before the suite fitness
