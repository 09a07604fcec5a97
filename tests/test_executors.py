"""Executors: serial and local worker processes, crash isolation (SIGKILL, raise, timeout)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from nos.executors import LocalExecutor, SerialExecutor, make_executor
from nos.search.fake import fake_fitness

FAKE = "nos.search.fake:evaluate"


def drain(ex, n, timeout=60.0):
    out = {}
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        for o in ex.wait(timeout=1.0):
            out[o.job_id] = o
    assert len(out) == n, f"only {len(out)} of {n} jobs came back"
    return out


def payload(identity, **fake):
    return {
        "candidate": identity,
        "fingerprint": identity,
        "stage": "full",
        "seeds": [0],
        "fake": fake,
    }


def test_serial_runs_jobs_and_isolates_exceptions():
    ex = SerialExecutor(FAKE)
    ex.submit("a", payload("x"))
    ex.submit("b", payload("y", error_rate=1.0))
    assert ex.pending == 2
    out = drain(ex, 2)
    assert out["a"].result["status"] == "ok"
    assert out["a"].result["fitness"] == fake_fitness("x", "full", 0)
    assert out["b"].result["status"] == "error"
    assert "ValueError" in out["b"].result["reason"]
    assert ex.pending == 0 and ex.wait() == []


def test_make_executor_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown executor"):
        make_executor("cluster", FAKE)


@pytest.fixture(scope="module")
def pool():
    ex = LocalExecutor(FAKE, workers=2, timeout_s=20)
    yield ex
    ex.close()


def test_local_pool_survives_raise_sigkill_and_timeout(pool, tmp_path: Path):
    pool.submit("ok1", payload("a"))
    pool.submit("raise", payload("b", error_rate=1.0))
    out = drain(pool, 2)
    assert out["ok1"].result["status"] == "ok"
    assert (
        out["raise"].result["status"] == "error" and "ValueError" in out["raise"].result["reason"]
    )

    # a worker killed with SIGKILL in the middle of an evaluation
    pool.submit("victim", payload("c", sleep_s=30, pid_dir=str(tmp_path)))
    end = time.monotonic() + 30
    pids = []
    while not pids and time.monotonic() < end:
        pids = list(tmp_path.glob("*.pid"))
        time.sleep(0.05)
    assert pids, "the worker never started the job"
    os.kill(int(pids[0].stem), signal.SIGKILL)
    out = drain(pool, 1)
    assert out["victim"].result["status"] == "error"
    assert "SIGKILL" in out["victim"].result["reason"]

    # a job past its wall-clock limit; and a job that kills its own worker
    pool.submit("slow", payload("d", sleep_s=30), timeout_s=0.5)
    pool.submit("crash", payload("e", crash_rate=1.0))
    out = drain(pool, 2)
    assert out["slow"].result["status"] == "timeout"
    assert out["crash"].result["status"] == "error"

    # replaced workers go on serving
    for i in range(4):
        pool.submit(f"after{i}", payload(f"z{i}"))
    out = drain(pool, 4)
    assert all(o.result["status"] == "ok" for o in out.values())
    assert len({o.worker for o in out.values()}) >= 1
    assert pool.pending == 0


def test_local_pool_runs_in_parallel(pool):
    t0 = time.monotonic()
    for i in range(4):
        pool.submit(f"p{i}", payload(f"p{i}", sleep_s=0.6))
    out = drain(pool, 4)
    elapsed = time.monotonic() - t0
    assert elapsed < 2.2, elapsed  # 4 x 0.6 s on 2 workers: about 1.2 s, serial would be 2.4
    assert len({o.worker for o in out.values()}) == 2
