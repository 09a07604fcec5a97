"""GPU pinning: one GPU per local worker, K workers per GPU, round-robin (no GPU needed)."""

from __future__ import annotations

import os
import time

import pytest

from nos.errors import NosError
from nos.executors import LocalExecutor, make_executor


def report_env(payload):
    """A job that says which GPU its worker was given (run in the workers)."""
    return {"status": "ok", "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}


def _drain(ex, n, timeout=60.0):
    out = {}
    end = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < end:
        for o in ex.wait(timeout=1.0):
            out[o.job_id] = o
    assert len(out) == n, f"only {len(out)} of {n} jobs came back"
    return out


def test_each_worker_slot_starts_with_its_own_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "driver")
    envs = [{"CUDA_VISIBLE_DEVICES": "7"}, {"CUDA_VISIBLE_DEVICES": "3"}]
    with make_executor("local", f"{__name__}:report_env", workers=2, worker_env=envs) as ex:
        # two jobs at once: one per worker
        for i in range(2):
            ex.submit(f"j{i}", {})
        first = _drain(ex, 2)
        by_worker = {o.worker: o.result["visible"] for o in first.values()}
        assert sorted(by_worker.values()) == ["3", "7"]
        # a replaced worker keeps its slot's GPU
        victim = next(o for o in first.values() if o.result["visible"] == "3")
        os.kill(victim.result["pid"], 9)
        time.sleep(0.5)
        for i in range(2, 4):  # one of them may land on the dead worker: an error
            ex.submit(f"j{i}", {})
        _drain(ex, 2)
        for i in range(4, 6):
            ex.submit(f"j{i}", {})
        later = {o.result["visible"]: o.result["pid"] for o in _drain(ex, 2).values()}
        assert sorted(later) == ["3", "7"] and later["3"] != victim.result["pid"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "driver"  # the driver's own is untouched


def test_without_worker_env_the_environment_is_inherited(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    with LocalExecutor(f"{__name__}:report_env", workers=1) as ex:
        ex.submit("a", {})
        (out,) = _drain(ex, 1).values()
    assert out.result["visible"] == "5"


# The workers import this module to run report_env: torch is imported by the tests below
# only, so that a worker starts in a blink.


@pytest.fixture
def gpus(monkeypatch):
    """A machine with ``n`` GPUs, as far as torch can tell."""
    torch = pytest.importorskip("torch")

    def make(n, visible=None):
        monkeypatch.setattr(torch.version, "cuda", "12.8")
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)

    return make


def _visible(pinning):
    return [env["CUDA_VISIBLE_DEVICES"] for env in pinning.envs]


def test_round_robin_over_the_gpus_with_k_per_gpu(gpus):
    from nos.training.device import worker_pinning

    gpus(2)
    p = worker_pinning("cuda", workers_per_gpu=3)
    assert p.device == "cuda" and p.workers == 6
    assert _visible(p) == ["0", "1", "0", "1", "0", "1"]
    assert _visible(worker_pinning("auto", 1)) == ["0", "1"]
    explicit = worker_pinning("cuda", workers_per_gpu=3, workers=3)  # --workers wins
    assert explicit.workers == 3 and _visible(explicit) == ["0", "1", "0"]
    one = worker_pinning("cuda:1", workers_per_gpu=4)  # every worker on GPU 1
    assert one.device == "cuda" and _visible(one) == ["1"] * 4


def test_the_drivers_visible_devices_are_passed_on(gpus):
    from nos.training.device import gpu_ids, worker_pinning

    gpus(2, visible="4,6")
    assert gpu_ids() == ["4", "6"]
    assert _visible(worker_pinning("cuda:1", 2)) == ["6", "6"]


def test_cpu_is_not_pinned_and_bad_counts_are_one_line_errors(gpus):
    from nos.training.device import worker_pinning

    gpus(0)
    p = worker_pinning("cpu", workers_per_gpu=4)
    assert p.envs == () and p.device == "cpu"
    for bad in (0, -1):
        with pytest.raises(NosError, match="--workers-per-gpu must be at least 1"):
            worker_pinning("cpu", bad)
    with pytest.raises(NosError, match="no CUDA GPU is visible"):
        worker_pinning("cuda", 1)
