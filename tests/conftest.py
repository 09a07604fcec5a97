from __future__ import annotations

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
