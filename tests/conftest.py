from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from nos.symbolic.grammar import Grammar, load_grammar

REFERENCE_LOG = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "nos_particle_run.log"
)


@pytest.fixture(scope="session")
def morgan() -> Grammar:
    return load_grammar("morgan2024")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def reference_log() -> Path:
    """The authors' search log, read from ../shared; tests that need it skip without it."""
    if not REFERENCE_LOG.exists():
        pytest.skip("reference log not found beside the checkout (../shared/reference)")
    return REFERENCE_LOG


@pytest.fixture
def one_torch_thread():
    """One torch thread: two threads fighting over this machine's two cores run ~60x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ShuffledExecutor:
    """Answers jobs in this process a few at a time, in a random order: any arrival order
    (and so any number of workers) is possible. Jobs run through the fake task's evaluate."""

    def __init__(self, seed: int, workers: int):
        self.rnd = random.Random(seed)
        self.workers = workers
        self.jobs: list[tuple[str, dict]] = []

    def submit(self, job_id, payload, timeout_s=None):
        self.jobs.append((job_id, payload))

    @property
    def pending(self):
        return len(self.jobs)

    def wait(self, timeout=None):
        from nos.executors import Outcome
        from nos.search.fake import evaluate

        self.rnd.shuffle(self.jobs)
        take = self.rnd.randint(1, self.workers)
        done, self.jobs = self.jobs[:take], self.jobs[take:]
        return [Outcome(j, evaluate(p), f"fake{i}", 0.0, 0.0) for i, (j, p) in enumerate(done)]

    def close(self):
        self.jobs.clear()


@pytest.fixture
def shuffled() -> type[ShuffledExecutor]:
    """The class of :class:`ShuffledExecutor`: ``shuffled(seed, workers)``."""
    return ShuffledExecutor
