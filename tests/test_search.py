"""The particle GA and its driver, with the fake fitness: determinism, dedup, moves, retries."""

from __future__ import annotations

import collections
import functools

import pytest

from nos.errors import NosError
from nos.executors import LocalExecutor, SerialExecutor
from nos.search.config import SearchConfig, parse_budget
from nos.search.driver import MemoryStore, run_search
from nos.search.engine import Result
from nos.search.fake import job_payload
from nos.search.report import hall_of_fame, run_stats
from nos.symbolic.grammar import load_grammar
from nos.zoo.resolve import parse

FAKE = "nos.search.fake:evaluate"


@pytest.fixture(scope="module")
def tiny():
    return load_grammar("tiny")


def search(grammar, executor, **overrides):
    cfg = SearchConfig(
        **{
            "grammar": "tiny",
            "task": "fake",
            "particles": 4,
            "steps": 3,
            "children": 4,
            "init_factor": 4,
            "seed": 3,
            "fake": {"fail_rate": 0.25},
            **overrides,
        }
    )
    store = MemoryStore()
    outcome = run_search(
        cfg,
        grammar,
        executor=executor,
        store=store,
        job_factory=functools.partial(job_payload, options=cfg.fake),
    )
    return outcome, store


def decisions(store):
    """What the search decided, independent of the order records were written in."""
    evals = sorted(
        (r["cache_id"], r["candidate"], r["status"], r["fitness"])
        for r in store.records
        if r["type"] == "eval"
    )
    others = sorted(
        (r["origin"], repr(sorted(r.items()))) for r in store.records if r["type"] != "eval"
    )
    return evals, others


@pytest.mark.parametrize("dedup", [True, False], ids=["dedup", "no-dedup"])
def test_same_decisions_whatever_the_workers_and_the_arrival_order(tiny, dedup, shuffled):
    base_outcome, base = search(tiny, SerialExecutor(FAKE), dedup=dedup)
    assert base_outcome.status == "finished"
    reference = decisions(base)
    for seed, workers in ((1, 2), (2, 5), (3, 16)):
        outcome, store = search(tiny, shuffled(seed, workers), dedup=dedup)
        assert decisions(store) == reference
        assert hall_of_fame(store.records) == hall_of_fame(base.records)
        assert outcome.rejections == base_outcome.rejections
    # and a different seed makes a different search
    _, other = search(tiny, SerialExecutor(FAKE), dedup=dedup, seed=4)
    assert decisions(other) != reference


def test_paper_shape_and_bookkeeping(tiny):
    outcome, store = search(tiny, SerialExecutor(FAKE))
    recs = store.records
    selection = [r for r in recs if r["type"] == "selection"]
    assert len(selection) == 1 and len(selection[0]["particles"]) == 4
    inits = [r for r in recs if r["type"] == "eval" and r["stage"] == "init"]
    assert len(inits) == 16  # 10·n in the paper; init_factor 4 here
    moves = [r for r in recs if r["type"] == "move"]
    assert sorted((m["particle"], m["step"]) for m in moves) == [
        (p, s) for p in range(4) for s in range(3)
    ]
    for m in moves:
        assert len(m["children"]) == 4
        # a particle starts each step where the previous move left it
        if m["step"]:
            [prev] = [
                x for x in moves if (x["particle"], x["step"]) == (m["particle"], m["step"] - 1)
            ]
            assert m["from"] == prev["to"]
    rejected = collections.Counter()
    for r in recs:
        if r["type"] == "rejections":
            rejected.update(r["counts"])
    assert dict(rejected) == outcome.rejections and sum(rejected.values()) > 0
    evals = [r for r in recs if r["type"] == "eval"]
    for field in (
        "candidate",
        "key",
        "fingerprint",
        "parent",
        "mutation",
        "fitness_per_seed",
        "status",
        "reason",
        "wall_s",
        "worker",
    ):
        assert all(field in r for r in evals), field
    assert {r["mutation"] for r in evals if r["stage"] == "full" and r["parent"]} <= {
        "op",
        "connection",
        "arity",
        "momentum",
        "decay",
        "lr_schedule",
    }
    assert store.checkpoints and store.checkpoints[-1]["particles"][0]["rng"][0] == 3


def test_retries_up_to_four_evaluations_per_slot(tiny):
    _, store = search(tiny, SerialExecutor(FAKE), fake={"fail_rate": 0.6})
    slots = [c for r in store.records if r["type"] == "move" for c in r["children"]]
    assert max(c["tries"] for c in slots) == 4
    assert any(1 < c["tries"] < 4 for c in slots)
    for c in slots:
        assert 1 <= c["tries"] <= 4
        if c["status"] != "ok":
            assert c["tries"] == 4  # a failed slot was retried until its tries ran out
        elif c["tries"] > 1:
            assert c["status"] == "ok"


def test_non_elitist_moves_can_go_down_elitist_never(tiny):
    def falls(store):
        moves = [r for r in store.records if r["type"] == "move"]
        reeval = {r["origin"]: r for r in store.records if r["type"] == "eval"}
        out = 0
        for m in moves:
            before = [
                x["fitness"]
                for x in moves
                if (x["particle"], x["step"]) == (m["particle"], m["step"] - 1)
            ]
            if m["step"] == 0:
                r = reeval.get(f"p{m['particle']}/reeval")
                before = [r["fitness"]] if r and r["fitness"] is not None else []
            if before and m["fitness"] < before[0]:
                out += 1
        return out

    _, paper = search(tiny, SerialExecutor(FAKE), seed=5, dedup=False)
    assert falls(paper) > 0  # best-of-M moves even when the best child is worse
    _, elitist = search(tiny, SerialExecutor(FAKE), seed=5, dedup=False, elitist=True)
    assert falls(elitist) == 0
    stays = [m for m in elitist.records if m["type"] == "move" and not m["moved"]]
    assert stays and all(m["best_child_fitness"] < m["fitness"] for m in stays)


def test_global_dedup_trains_each_function_once(tiny):
    grammar = tiny
    kw = {"particles": 6, "steps": 3, "children": 6, "init_factor": 2, "seed": 11, "fake": {}}
    on, on_store = search(grammar, SerialExecutor(FAKE), dedup=True, **kw)
    _, off_store = search(grammar, SerialExecutor(FAKE), dedup=False, **kw)
    on_stats, off_stats = run_stats(on_store.records), run_stats(off_store.records)
    assert on_stats["duplicates"] == 0
    assert off_stats["duplicates"] > 0  # the reference's per-lineage seen sets let them in
    trained = [(r["stage"], r["fingerprint"]) for r in on_store.records if r["type"] == "eval"]
    assert len(trained) == len(set(trained))
    assert on.cached > 0  # duplicates across particles were answered from the cache


def test_budget_stops_the_search(tiny):
    outcome, store = search(tiny, SerialExecutor(FAKE), budget_evals=20)
    assert outcome.status == "stopped" and "budget" in outcome.stop_reason
    assert len([r for r in store.records if r["type"] == "eval"]) == 20


def test_rescore_and_seeds(tiny):
    seed_text = "nest ~ mul(g, v_hat)"
    cfg = SearchConfig(
        grammar="tiny",
        task="fake",
        particles=3,
        steps=2,
        children=3,
        init_factor=3,
        rescore_top=3,
        rescore_seeds=4,
    )
    store = MemoryStore()
    run_search(
        cfg,
        tiny,
        executor=SerialExecutor(FAKE),
        store=store,
        seeds=[parse(seed_text, tiny)],
        job_factory=job_payload,
    )
    first = next(r for r in store.records if r["type"] == "eval")
    assert first["origin"] == "init/0" and first["mutation"] == "seed"
    rescored = [r for r in store.records if r["type"] == "eval" and r["stage"] == "rescore"]
    assert len(rescored) == 3 and all(len(r["fitness_per_seed"]) == 4 for r in rescored)
    hof = hall_of_fame(store.records, 5)
    assert [row["rescore"] is not None for row in hof] == [True] * 3 + [False] * 2


def test_search_goes_on_when_workers_crash(tiny):
    with LocalExecutor(FAKE, workers=2, timeout_s=30) as ex:
        outcome, store = search(
            tiny, ex, particles=2, steps=2, children=3, fake={"crash_rate": 0.15, "error_rate": 0.1}
        )
    assert outcome.status == "finished"
    reasons = [r["reason"] for r in store.records if r["type"] == "eval" and r["status"] == "error"]
    assert any("SIGKILL" in x for x in reasons) and any("ValueError" in x for x in reasons)
    assert sum(r["status"] == "ok" for r in store.records if r["type"] == "eval") > 10


def test_results_are_normalised():
    assert Result.from_raw({"status": "ok", "fitness": 0.5}).score() == 0.5
    assert Result.from_raw({"status": "ok"}).status == "error"
    assert Result.from_raw({"status": "ok", "fitness": float("nan")}).status == "error"
    assert Result.from_raw({"status": "weird"}).status == "error"
    assert Result.from_raw({"status": "diverged", "fitness": 0.9}).score() == -1.0


def test_config_validation_and_budgets():
    assert parse_budget("200") == (200, 0.0)
    assert parse_budget("10m") == (0, 600.0)
    assert parse_budget("1.5h") == (0, 5400.0)
    for bad in ("", "ten", "0", "-3", "5x"):
        with pytest.raises(NosError):
            parse_budget(bad)
    with pytest.raises(NosError, match="strategy"):
        SearchConfig(strategy="annealing")
    with pytest.raises(NosError, match="particles"):
        SearchConfig(particles=0)
    cfg = SearchConfig(seed_from=("zoo:adam",), fake={"a": 1})
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(NosError, match="unknown"):
        SearchConfig.from_dict({"particle": 3})
