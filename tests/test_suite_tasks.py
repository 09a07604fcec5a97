"""The generated tasks of the search suite and of the validation suite: data and networks."""

from __future__ import annotations

import numpy as np
import pytest

from nos.training.data import generated
from nos.training.registry import get_task, suite

torch = pytest.importorskip("torch")

from nos.training.tasks import load_task  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GENERATED = ("recall", "teacher", "spirals", "gratings", "forecast", "checkerboard", "quadratic")
LOADERS = {name: getattr(generated, f"load_{name}") for name in GENERATED}


@pytest.mark.parametrize("name", GENERATED)
def test_generated_data_are_a_function_of_the_seed(name):
    load = LOADERS[name]
    a, b, c = load(include_test=True), load(include_test=True), load(seed=1, include_test=True)
    for split in ("train", "validation", "test"):
        sa, sb = a.splits()[split], b.splits()[split]
        assert np.array_equal(sa.x, sb.x) and np.array_equal(sa.y, sb.y)
    assert not np.array_equal(a.train.x, c.train.x)
    assert load().test is None  # the test split only when asked for
    assert len(a.train) > len(a.validation) > 0


def test_generated_targets_hold_what_their_docstrings_say():
    recall = generated.load_recall(noise=0.0)
    x, y = recall.train.x, recall.train.y
    assert np.array_equal(y[:, 3:], (x[:, 2:-1] + x[:, :-3]) % 6)
    assert recall.train.y.dtype == np.int64 and recall.num_classes == 6
    noisy = generated.load_recall()
    share = (noisy.train.y != y).mean()
    assert 0.05 < share < 0.1  # 10% replaced, 5/6 of them by another token
    teacher = generated.load_teacher(noise=0.0)
    assert teacher.train.y.dtype == np.float32 and teacher.train.y.shape[1] == 4
    spirals = generated.load_spirals()
    assert set(np.unique(spirals.train.y)) == {0, 1, 2}
    board = generated.load_checkerboard(flip=0.0)
    p, label = board.train.x, board.train.y
    cell = np.floor((p + 1) * 2).clip(0, 3).astype(int)
    assert np.array_equal(label, (cell[:, 0] + cell[:, 1]) % 2)


@pytest.mark.parametrize("name", [*suite("search"), *suite("holdout")])
def test_every_suite_task_trains_a_step_and_evaluates(name):
    if name == "mnist1d":
        pytest.importorskip("mnist1d")
    task = load_task(name)
    model = task.build_model(0)
    again = task.build_model(0)
    for p, q in zip(model.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)  # the seed fixes the initial weights
    out = model(task.train_x[:8])
    loss = task.loss(out, task.train_y[:8])
    loss.backward()
    assert torch.isfinite(loss)
    val_loss, metric = task.evaluate(model)
    assert np.isfinite(val_loss) and np.isfinite(metric)
    assert get_task(name).kind in ("classification", "regression", "language-model")


def test_the_search_suite_holds_tasks_of_every_kind_and_no_bench_data():
    tasks = suite("search")
    assert len(tasks) >= 5
    kinds = {get_task(t).kind for t in tasks}
    assert kinds == {"classification", "regression", "language-model"}
    assert not set(tasks) & set(suite("holdout"))
