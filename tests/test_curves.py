"""Plain training to a budget (nos.training.curves): paired seeds, divergence, test split."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from nos.optim.factories import baseline_factory, factory_for  # noqa: E402
from nos.training.curves import Curve, train_curve  # noqa: E402
from nos.training.presets import Budget  # noqa: E402
from nos.training.tasks import load_task  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BUDGET = Budget(60, batch_size=64, warmup=5, eval_every=20)


@pytest.fixture(scope="module")
def digits():
    return load_task("digits", include_test=True)


def test_the_same_seed_gives_the_same_run_and_pairs_optimizers(digits):
    adam = baseline_factory("adam")
    a = train_curve(adam, digits, BUDGET, 3e-3, seed=1)
    b = train_curve(adam, digits, BUDGET, 3e-3, seed=1)
    assert a.val_loss == b.val_loss and a.steps == [20, 40, 60]
    other_seed = train_curve(adam, digits, BUDGET, 3e-3, seed=2)
    assert other_seed.val_loss != a.val_loss
    # the candidate form of Adam sees the same weights and batches as torch's Adam
    candidate = train_curve(factory_for("zoo:adam"), digits, BUDGET, 3e-3, seed=1)
    assert candidate.val_loss == pytest.approx(a.val_loss, rel=1e-4)


def test_a_better_optimizer_reaches_a_lower_loss(digits):
    adam = train_curve(baseline_factory("adam"), digits, BUDGET, 3e-3, seed=0)
    tiny_lr = train_curve(baseline_factory("sgd"), digits, BUDGET, 1e-5, seed=0)
    assert adam.final_loss < tiny_lr.final_loss and adam.final_metric > tiny_lr.final_metric


def test_divergence_ends_the_run(digits):
    curve = train_curve(factory_for("none ~ neg(g)"), digits, BUDGET, 1e6, seed=0)
    assert curve.diverged and curve.final_loss is None and curve.trained < BUDGET.steps


def test_test_split_and_round_trip(digits):
    curve = train_curve(baseline_factory("adam"), digits, BUDGET, 3e-3, seed=0, test=True)
    assert curve.test_metric is not None and 0 < curve.test_metric <= 1
    again = Curve.from_dict(curve.to_dict())
    assert again.val_loss == curve.val_loss and again.test_metric == curve.test_metric
    assert curve.steps_to(0.0, higher_is_better=True) == 20
    assert curve.steps_to(2.0, higher_is_better=True) is None
    plain = load_task("digits")
    with pytest.raises(ValueError, match="without its test split"):
        train_curve(baseline_factory("adam"), plain, BUDGET, 3e-3, seed=0, test=True)
    assert math.isfinite(curve.wall_s)
