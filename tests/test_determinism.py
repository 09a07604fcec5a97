"""Same seed, same search, whatever the workers and the arrival order: with real training.

The fake fitness of the other search tests is a hash of the fingerprint, so every member of
a fingerprint class scores the same and the member that is trained cannot matter. Here the
fitness really trains (:mod:`nos.search.fake`'s ``train`` option: a float32 regression fitted
by the candidate's optimizer), so members such as ``sign(g)`` and ``sign(g)/(1 + 1e-7)``
score differently, and only a choice of the trained member that ignores timing keeps the
search the same.
"""

from __future__ import annotations

import collections
import functools
import json

import pytest

pytest.importorskip("torch")

from nos.cli import main
from nos.executors import SerialExecutor
from nos.search.config import SearchConfig
from nos.search.driver import MemoryStore, run_search
from nos.search.fake import evaluate, job_payload
from nos.search.report import hall_of_fame
from nos.search.store import load_run
from nos.symbolic.grammar import load_grammar

FAKE = "nos.search.fake:evaluate"
TRAIN = {"train": True, "train_steps": 12}
SHAPE = {
    "grammar": "tiny",
    "task": "fake",
    "particles": 6,
    "steps": 3,
    "children": 5,
    "init_factor": 2,
    "seed": 6,
    "fake": TRAIN,
}


def _search(executor, **overrides):
    config = SearchConfig(**{**SHAPE, **overrides})
    store = MemoryStore()
    run_search(
        config,
        load_grammar("tiny"),
        executor=executor,
        store=store,
        job_factory=functools.partial(job_payload, options=config.fake),
    )
    return store


def _decisions(records):
    evals = sorted(
        (r["cache_id"], r["candidate"], r["status"], r["fitness"])
        for r in records
        if r["type"] == "eval"
    )
    moves = sorted((r["origin"], r["to"], r["fitness"]) for r in records if r["type"] == "move")
    return evals, moves


def _classes_with_distinct_members(records) -> int:
    members = collections.defaultdict(set)
    for r in records:
        if r["type"] == "move":
            for child in r["children"]:
                members[child["fingerprint"]].add(child["key"])
    return sum(len(keys) > 1 for keys in members.values())


def test_trained_members_of_a_class_really_differ():
    """The case is one where dedup matters: classes whose members are different trees, and
    members of one class that score differently when trained."""
    store = _search(SerialExecutor(FAKE))
    assert _classes_with_distinct_members(store.records) >= 1
    a, b = _fitness("none ~ sign_g"), _fitness("none ~ div(sign_g, abs(sign_g))")
    assert a != b and abs(a - b) < 1e-4


def _fitness(text: str) -> float:
    payload = {
        "candidate": text,
        "grammar": "morgan2024",
        "seeds": [0],
        "fake": TRAIN,
        "lr_hint": 0.1,
    }
    result = evaluate(payload)
    assert result["status"] == "ok"
    return float(result["fitness"])


def test_same_decisions_whatever_the_arrival_order_with_real_training(shuffled):
    reference = _search(SerialExecutor(FAKE))
    for seed, workers in ((1, 2), (2, 4), (3, 9)):
        store = _search(shuffled(seed, workers))
        assert _decisions(store.records) == _decisions(reference.records)
        assert hall_of_fame(store.records) == hall_of_fame(reference.records)


def test_workers_1_2_and_4_give_the_same_run(capsys, tmp_path):
    shape = ["--fake", json.dumps(TRAIN), "--root", str(tmp_path), "--no-progress"]
    for key in ("task", "grammar", "particles", "steps", "children", "init_factor", "seed"):
        shape += [f"--{key.replace('_', '-')}", str(SHAPE[key])]
    runs = {}
    for workers in (1, 2, 4):
        assert main(["search", *shape, "--workers", str(workers), "--name", f"w{workers}"]) == 0
        data = load_run(f"w{workers}", tmp_path)
        runs[workers] = (_decisions(data.records), hall_of_fame(data.records))
        assert _classes_with_distinct_members(data.records) >= 1
    capsys.readouterr()
    assert runs[1] == runs[2] == runs[4]


def test_a_screening_pool_makes_the_same_decisions():
    """Screening (check, key, fingerprint) in driver-side processes changes nothing."""
    import functools

    from nos.search.fake import job_payload

    config = SearchConfig(
        grammar="morgan2024", task="fake", particles=4, steps=2, children=4, init_factor=3, seed=2
    )
    grammar = load_grammar("morgan2024")
    runs = []
    for workers in (0, 2):
        store = MemoryStore()
        outcome = run_search(
            config,
            grammar,
            executor=SerialExecutor(FAKE),
            store=store,
            job_factory=functools.partial(job_payload, options={}),
            screen_workers=workers,
        )
        runs.append((_decisions(store.records), outcome.rejections))
    assert runs[0] == runs[1]
