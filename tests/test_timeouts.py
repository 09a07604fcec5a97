"""A wall-clock timeout is no verdict on a candidate: retryable, never shared, re-run on resume."""

from __future__ import annotations

import functools
import json

from nos.cli import main
from nos.executors import Outcome
from nos.search.config import SearchConfig
from nos.search.driver import MemoryStore, run_search
from nos.search.fake import evaluate, job_payload
from nos.search.store import RunStore, load_run
from nos.symbolic.grammar import load_grammar

CONFIG = SearchConfig(
    grammar="tiny",
    task="fake",
    particles=2,
    steps=1,
    children=2,
    init_factor=2,
    seed=1,
    timeout_s=5.0,
)


class TimesOutOnce:
    """Answers like the fake evaluator, except that the first job of ``victim`` times out."""

    def __init__(self, victim: str | None):
        self.workers, self.jobs, self.victim, self.seen = 1, [], victim, []

    def submit(self, job_id, payload, timeout_s=None):
        self.jobs.append((job_id, payload, timeout_s))

    @property
    def pending(self):
        return len(self.jobs)

    def wait(self, timeout=None):
        out = []
        for job_id, payload, limit in self.jobs:
            self.seen.append((job_id, limit))
            if job_id == self.victim:
                self.victim = None
                result = {"status": "timeout", "reason": "exceeded the 5s wall-clock limit"}
            else:
                result = evaluate(payload)
            out.append(Outcome(job_id, result, "fake", 0.0, 0.0))
        self.jobs = []
        return out


def _run(executor, store):
    return run_search(
        CONFIG,
        load_grammar("tiny"),
        executor=executor,
        store=store,
        job_factory=functools.partial(job_payload, options={}),
    )


def test_a_timeout_is_retryable_and_trained_again_on_resume():
    first = TimesOutOnce(None)
    _run(first, MemoryStore())
    victim = first.seen[0][0]  # an initial-population job
    store = MemoryStore()
    outcome = _run(TimesOutOnce(victim), store)
    assert outcome.timeouts == 1
    [timed_out] = [r for r in store.records if r["type"] == "eval" and r["cache_id"] == victim]
    assert timed_out["status"] == "timeout" and timed_out["retryable"] is True
    # the executor's hard limit is the soft one plus a margin, never the soft one itself
    assert {limit for _, limit in first.seen} == {CONFIG.kill_after_s} and CONFIG.kill_after_s > 5
    again = TimesOutOnce(None)
    resumed = _run(again, store)
    assert [job for job, _ in again.seen] == [victim]  # only the timeout trains again
    assert resumed.timeouts == 0 and resumed.replayed > 0
    latest = [r for r in store.records if r["type"] == "eval" and r["cache_id"] == victim][-1]
    assert latest["status"] == "ok" and "retryable" not in latest


def test_the_default_search_has_no_wall_clock_limit():
    config = SearchConfig()
    assert config.timeout_s == 0 and config.soft_timeout_s is None and config.kill_after_s is None


def test_a_run_with_a_timeout_is_not_finished_until_retried(capsys, tmp_path):
    shape = [
        "search",
        "--task",
        "fake",
        "--grammar",
        "tiny",
        "--particles",
        "2",
        "--steps",
        "1",
        "--children",
        "2",
        "--init-factor",
        "2",
        "--seed",
        "1",
        "--executor",
        "serial",
        "--root",
        str(tmp_path),
        "--name",
        "t",
    ]
    assert main(shape) == 0
    path = tmp_path / "t" / "evaluations.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    first_eval = next(r for r in records if r["type"] == "eval")
    first_eval.update(status="timeout", fitness=None, retryable=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in [*records, first_eval]))
    store = RunStore.resume("t", tmp_path)
    assert store.retryable == 1 and not store.finished()
    store.close()
    assert main(["search", "--resume", "t", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    data = load_run("t", tmp_path)
    assert data.status == "finished"
    assert [r["origin"] for r in data.records if r["type"] == "done"] == ["done", "done/2"]
