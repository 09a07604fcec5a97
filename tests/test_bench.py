"""`nos bench`: the small suite, tuning, resuming, the statistics and the report (tiny budgets)."""

from __future__ import annotations

import ast
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nos.bench import driver, jobs, space, stats  # noqa: E402
from nos.bench.driver import make_settings, plan, run_bench, run_key, scaled_budget  # noqa: E402
from nos.bench.optimizers import plane_search_structure, with_decoupled_decay  # noqa: E402
from nos.bench.specs import parse_specs  # noqa: E402
from nos.cli import main  # noqa: E402
from nos.errors import NosError  # noqa: E402
from nos.executors import Outcome, resolve_function  # noqa: E402
from nos.optim.factories import baseline_factory  # noqa: E402
from nos.optim.symbolic_optimizer import SymbolicOptimizer  # noqa: E402
from nos.training import bench_models  # noqa: E402
from nos.training.curves import train_curve  # noqa: E402
from nos.training.data import synthetic  # noqa: E402
from nos.training.presets import Budget  # noqa: E402
from nos.training.registry import KINDS, get_task, suite  # noqa: E402
from nos.training.tasks import load_task  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A do-nothing optimizer, benched through a file: it must rank last.
NOOP = """
import torch


class DoNothing(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        return None
"""

TASKS = "logreg,lstsq,markov-lm"  # every kind, SO-friendly and not


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------ suites


def test_small_suite_has_five_tasks_of_three_kinds_none_of_the_searchs():
    tasks = suite("small")
    kinds = {get_task(t).kind for t in tasks}
    assert len(tasks) >= 5 and len(kinds) >= 3 and kinds <= set(KINDS)
    assert not set(tasks) & set(suite("search"))
    assert len({get_task(t).model for t in tasks}) >= 5  # different networks, not one reused
    so = [t for t in tasks if get_task(t).so_friendly]
    assert so and all(get_task(t).budget.batch_size == 0 for t in so)  # plane search: full batch
    for name in so:  # plane search really applies to their networks
        info = get_task(name)
        model = info.model_class()(generator=torch.Generator().manual_seed(0), **info.model_options)
        structure, _ = plane_search_structure(model)
        assert structure in ("linear", "two_layer")
    # generated data only: scikit-learn's generators, never one of its stored data sets
    assert _sklearn_datasets_used(synthetic) and all(
        name.startswith("make_") for name in _sklearn_datasets_used(synthetic)
    )
    assert {"cifar10", "flowers102", "cifar10-resnet"} <= set(suite("cifar"))


def _sklearn_datasets_used(module) -> set[str]:
    """The names a module imports from ``sklearn.datasets`` (read with ast)."""
    tree = ast.parse(inspect.getsource(module))
    return {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "sklearn.datasets"
        for alias in node.names
    }


@pytest.mark.parametrize(
    "loader",
    [
        synthetic.load_logreg,
        synthetic.load_wide,
        synthetic.load_lstsq,
        synthetic.load_friedman,
        synthetic.load_shapes,
        synthetic.load_markov_text,
    ],
)
def test_generated_data_are_deterministic_with_three_splits(loader):
    sizes = {"n_train": 300, "n_val": 100, "n_test": 100}
    a, b = loader(include_test=True, **sizes), loader(include_test=True, **sizes)
    for name, split in a.splits().items():
        other = b.splits()[name]
        assert np.array_equal(split.x, other.x) and np.array_equal(split.y, other.y)
    assert a.test is not None and loader(**sizes).test is None
    assert (len(a.train), len(a.validation), len(a.test)) == (300, 100, 100)
    other_seed = loader(include_test=True, seed=123, **sizes)
    assert not np.array_equal(other_seed.train.x, a.train.x)


def test_markov_text_is_text_of_its_alphabet():
    data = synthetic.load_markov_text(n_train=10, n_val=2, n_test=2)
    text = "".join(synthetic.TEXT_ALPHABET[i] for i in data.train.x[0])
    assert set(text) <= set(synthetic.TEXT_ALPHABET) and " " in text
    assert np.array_equal(data.train.x[0, 1:], data.train.y[0, :-1])  # y is x shifted by one


@pytest.mark.parametrize("name", suite("small"))
def test_bench_models_initialise_from_their_seed_alone(name):
    state = torch.random.get_rng_state()
    task = load_task(name)
    one, two = task.build_model(3), task.build_model(3)
    assert torch.equal(state, torch.random.get_rng_state())
    for p, q in zip(one.parameters(), two.parameters(), strict=True):
        assert torch.equal(p, q)
    other = task.build_model(4)
    pairs = zip(one.parameters(), other.parameters(), strict=True)
    assert any(not torch.equal(p, q) for p, q in pairs)
    out = one(task.val_x[:3])
    assert out.shape[0] == 3 and torch.isfinite(out).all()


def test_resnet_is_residual_and_deterministic():
    a = bench_models.ResNet(generator=torch.Generator().manual_seed(0))
    b = bench_models.ResNet(generator=torch.Generator().manual_seed(0))
    x = torch.zeros(2, 3, 32, 32)
    assert torch.equal(a(x), b(x)) and a(x).shape == (2, 10)
    assert sum(isinstance(m, bench_models._Block) for m in a.modules()) == 6  # ResNet-14


# ------------------------------------------------------------------------ tuning space


def test_tuning_space():
    grid = space.log_grid(1e-4, 1.0, 5)
    assert grid[0] == pytest.approx(1e-4) and grid[-1] == pytest.approx(1.0)
    assert grid[2] == pytest.approx(1e-2)
    assert space.halton(3) == [(0.5, 1 / 3), (0.25, 2 / 3), (0.75, 1 / 9)]
    specs = {s.label: s for s in parse_specs(["baselines", "zoo:adam"])}
    lion = space.trial_points(specs["lion"], 8, "lr")
    assert lion[0]["lr"] == pytest.approx(1e-5) and lion[-1]["wd"] is None
    # a candidate's scale is unknown: its window spans Adam-like and SGD-like steps
    assert space.trial_points(specs["zoo:adam"], 6, "lr")[-1]["lr"] == pytest.approx(10.0)
    assert space.trial_points(specs["adamw"], 6, "lr")[-1]["lr"] == pytest.approx(1.0)
    both = space.trial_points(specs["zoo:adam"], 8, "lr+wd")
    assert len(both) == 8 and len({p["lr"] for p in both}) == 8
    assert all(1e-5 <= p["wd"] <= 0.1 for p in both)
    assert space.trial_points(specs["plane-search"], 8, "lr") == [{"lr": None, "wd": None}]
    assert len(space.trial_points(specs["plane-search"], 8, "lr+wd")) == 8
    points = [{"lr": v, "wd": None} for v in grid]
    assert space.edges(points, points[0]) == {"lr": "low"}
    assert space.edges(points, points[2]) == {"lr": None}
    assert space.edges(points, points[-1]) == {"lr": "high"}
    assert space.choose([0.5, None, 0.7, 0.7], higher_is_better=True) == 2
    assert space.choose([0.5, None, 0.2, 0.2], higher_is_better=False) == 2
    assert space.choose([None, math.nan], higher_is_better=True) is None


# ------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny bench through the CLI: three real optimizers, plane search, and a do-nothing one."""
    root = tmp_path_factory.mktemp("bench")
    noop = root / "noop.py"
    noop.write_text(NOOP)
    out = root / "out"
    argv = [
        "bench",
        "zoo:adam",
        "adamw",
        "plane-search",
        f"file:{noop}",
        "--tasks",
        TASKS,
        "--steps",
        "12",
        "--trials",
        "3",
        "--seeds",
        "2",
        "--workers",
        "1",
        "-o",
        out,
    ]
    code = main([str(a) for a in argv])
    assert code == 0
    return out, json.loads((out / "bench.json").read_text())


def test_bench_end_to_end(bench):
    out, report = bench
    for name in ("bench.md", "bench.json", "profile.png", "curves.png", "runs.jsonl"):
        assert (out / name).stat().st_size > 500, name
    tasks = report["summary"]["tasks"]
    assert list(tasks) == TASKS.split(",")
    # 3 tuned optimizers x 3 tasks x (3 trials + 2 seeds), plane search on 2 tasks x (1 + 2)
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == len({json.loads(line)["key"] for line in lines}) == 3 * 3 * 5 + 2 * 3
    for task, entry in tasks.items():
        row = entry["optimizers"]["plane-search"]
        assert row["applies"] == get_task(task).so_friendly
        if row["applies"]:
            assert row["n_ok"] == 2 and row["mean"] is not None
        adam = entry["optimizers"]["zoo:adam"]
        assert (
            adam["n_ok"] == 2
            and len(adam["trials"]) == 3
            and adam["chosen"]["lr"] in [t["lr"] for t in adam["trials"]]
        )
    md = (out / "bench.md").read_text()
    assert "n/a (not SO-friendly)" in md and "## markov-lm" in md
    assert "VeLO and LHOPT" in md and "Wins / losses / ties" in md
    # the win/loss/tie table puts the non-baselines against every baseline
    table = report["win_loss_tie"]["table"]
    assert set(table) == {"zoo:adam", "file:noop.py:DoNothing"}
    assert set(table["zoo:adam"]) == {"adamw", "plane-search"}
    assert sum(table["zoo:adam"]["plane-search"].values()) == 2  # the SO-friendly tasks only


def test_a_do_nothing_optimizer_ranks_last(bench):
    _, report = bench
    noop = "file:noop.py:DoNothing"
    ranks = report["mean_ranks"]
    assert all(ranks[noop]["mean_rank"] > ranks[o]["mean_rank"] for o in ranks if o != noop)
    for per_task in report["ranks"].values():
        assert per_task[noop] == max(per_task.values())
    curves = report["profile"]["curves"]["all"]
    for label, rho in curves.items():
        if label not in (noop, "plane-search"):  # plane search applies on half the tasks
            assert all(n <= o for n, o in zip(curves[noop], rho, strict=True)), label
            assert any(o > n for n, o in zip(curves[noop], rho, strict=True)), label
    for wins in report["win_loss_tie"]["table"][noop].values():
        assert wins["win"] == 0


def test_tuning_picks_the_lr_of_an_explicit_grid_search(bench):
    """The bench's choice equals a plain grid search with train_curve on the same grid."""
    _, report = bench
    for task_name in ("lstsq", "markov-lm"):
        info = get_task(task_name)
        task = load_task(task_name, include_test=True)
        budget = Budget(**scaled_budget(info.budget.to_dict(), 12))
        grid = space.log_grid(1e-4, 1.0, 3)
        scores = []
        for lr in grid:
            curve = train_curve(baseline_factory("adamw"), task, budget, lr, seed=0)
            scores.append(math.inf if curve.final_metric is None else curve.final_metric)
        best = grid[int(np.argmin(scores))]  # both tasks' metrics are losses
        row = report["summary"]["tasks"][task_name]["optimizers"]["adamw"]
        assert row["chosen"]["lr"] == pytest.approx(best)
        assert [t["val"] for t in row["trials"]] == pytest.approx(scores)


def test_report_tables(bench):
    out, _ = bench
    md = (out / "bench.md").read_text()
    summary = md.split("## Summary")[1].split("\n## ")[0]
    assert "| mean rank (tasks) |" in summary
    header = summary.splitlines()[2]
    assert "plane-search" in header and "zoo:adam" in header
    lstsq = md.split("## lstsq")[1].split("\n## ")[0]
    assert "edge)" in lstsq or "| 0.01 |" in lstsq  # tuned values with their grid edges
    assert "0.01 (default)" in lstsq  # AdamW's weight decay under --tune lr


# ------------------------------------------------------------------------------ resume


def _settings(tmp_path):
    specs = parse_specs(["adamw", "zoo:adam"])
    return make_settings(
        specs, ["lstsq", "logreg"], suite=None, trials=2, seeds=2, tune="lr", steps=5
    )


def test_an_interrupted_bench_resumes_without_rerunning(tmp_path, monkeypatch):
    settings = _settings(tmp_path)
    real = jobs.run_job
    calls: list[str] = []

    def interrupted(payload):
        if len(calls) == 5:
            raise KeyboardInterrupt
        calls.append(payload["task"])
        return real(payload)

    monkeypatch.setattr(jobs, "run_job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_bench(settings, tmp_path / "b", progress=False)
    first = (tmp_path / "b" / "runs.jsonl").read_text().splitlines()
    assert len(first) == 5
    # a kill during a write leaves a partial line: it is set aside on resume
    with open(tmp_path / "b" / "runs.jsonl", "a") as fh:
        fh.write('{"key": "half')
    calls.clear()

    def counted(payload):
        calls.append(payload["task"])
        return real(payload)

    monkeypatch.setattr(jobs, "run_job", counted)
    report = run_bench(settings, tmp_path / "b", resume=True, progress=False)
    total = 2 * 2 * (2 + 2)
    assert len(calls) == total - 5 and report["runs"] == total
    lines = (tmp_path / "b" / "runs.jsonl").read_text().splitlines()
    assert lines[:5] == first and len({json.loads(x)["key"] for x in lines}) == total
    assert (tmp_path / "b" / "runs.jsonl.corrupt").exists()
    # the same bench uninterrupted gives the same results
    monkeypatch.setattr(jobs, "run_job", real)
    again = run_bench(settings, tmp_path / "c", progress=False)
    assert again["summary"] == report["summary"] and again["ranks"] == report["ranks"]
    # resuming a finished bench runs nothing
    calls.clear()
    monkeypatch.setattr(jobs, "run_job", counted)
    run_bench(settings, tmp_path / "b", resume=True, progress=False)
    assert calls == []


def test_resume_refuses_other_settings(tmp_path, capsys):
    out = tmp_path / "b"
    args = ["bench", "adamw", "--tasks", "lstsq", "--steps", "3", "--trials", "1", "--seeds", "1"]
    code, _, err = _cli(capsys, *args, "--workers", "1", "-o", out)
    assert code == 0, err
    code, _, err = _cli(capsys, "bench", "--resume", out, "--trials", "2")
    assert code == 1 and "settings differ" in err and "trials" in err and err.count("\n") == 1
    code, _, err = _cli(capsys, "bench", "adamw", "lion", "--resume", out)
    assert code == 1 and "optimizers" in err
    code, out_text, err = _cli(capsys, "bench", "--resume", out, "--workers", "1")
    assert code == 0, err and "mean rank" in out_text
    code, _, err = _cli(capsys, *args, "-o", out)
    assert code == 1 and "already holds a bench" in err


class _Reversed:
    """An executor that finishes its jobs in the reverse order of submission, several at a
    time, as many workers might: the bench must come out the same."""

    workers = 3

    def __init__(self):
        self.queue = []

    def submit(self, job_id, payload, timeout_s=None):
        json.dumps(payload)  # plain data: what crosses to a worker process
        self.queue.append((job_id, payload))

    @property
    def pending(self):
        return len(self.queue)

    def wait(self, timeout=None):
        batch, self.queue = self.queue[-3:][::-1], self.queue[:-3]
        return [Outcome(job, jobs.run_job(payload), "w", 0.0, 0.0) for job, payload in batch]

    def close(self):
        self.queue.clear()


def test_results_do_not_depend_on_the_order_runs_finish_in(tmp_path, monkeypatch):
    settings = make_settings(
        parse_specs(["adamw", "plane-search"]),
        ["lstsq"],
        suite=None,
        trials=3,
        seeds=2,
        tune="lr",
        steps=4,
    )
    one = run_bench(settings, tmp_path / "one", workers=1, progress=False)
    monkeypatch.setattr(driver, "_executor", lambda workers: _Reversed())
    other = run_bench(settings, tmp_path / "other", workers=3, progress=False)
    assert one["summary"] == other["summary"] and one["ranks"] == other["ranks"]
    first, second = (
        [json.loads(x)["key"] for x in (tmp_path / d / "runs.jsonl").read_text().splitlines()]
        for d in ("one", "other")
    )
    assert first != second and sorted(first) == sorted(second)
    assert resolve_function(driver.JOB_FUNCTION) is jobs.run_job  # what workers run


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "none ~ frobnicate(g)"], "OPT 'none ~ frobnicate(g)'"),
        (["bench", "zoo:nosuch"], "nosuch"),
        (["bench", "adamw", "--suite", "huge"], "unknown suite 'huge'"),
        (["bench", "adamw", "--tasks", "imagenet"], "unknown task 'imagenet'"),
        (["bench", "adamw", "--lr-range", "1:0"], "--lr-range"),
        (["bench", "adamw", "adamw"], "given twice"),
        (["bench", "file:/nonexistent/x.py"], "no such file"),
        (["bench", "nosuchrun --rank 1"], "no run named"),
        (["bench"], "name at least one OPT"),
        (["bench", "--resume", "/nonexistent/bench"], "no bench to resume"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, argv, message):
    out = [] if "--resume" in argv else ["-o", tmp_path / "x"]
    code, _, err = _cli(capsys, *argv, *out, "--root", tmp_path)
    assert code == 1 and message in err and err.count("\n") == 1, err


def test_an_unwritable_directory_is_one_line(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = _cli(capsys, "bench", "adamw", "--tasks", "lstsq", "-o", blocker / "sub")
    assert code == 1 and "cannot write to the bench directory" in err and err.count("\n") == 1


def test_a_file_without_an_optimizer_class_is_one_line(capsys, tmp_path):
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    code, _, err = _cli(capsys, "bench", f"file:{empty}", "-o", tmp_path / "o")
    assert code == 1 and "name the optimizer class" in err
    code, _, err = _cli(capsys, "bench", f"file:{empty}:Nope", "-o", tmp_path / "o")
    assert code == 1 and "no torch.optim.Optimizer subclass 'Nope'" in err


# ---------------------------------------------------------------------- pieces


def test_decoupled_decay_shrinks_the_weights_on_the_schedule():
    w = torch.nn.Parameter(torch.ones(4))
    opt = SymbolicOptimizer([w], "none ~ g", lr=1e-9, total_steps=10, warmup=0)
    with_decoupled_decay(opt, 0.5, 0.1, 10, 0)
    w.grad = torch.zeros(4)
    opt.step()  # t = 0: eta = 0.5, so w *= 1 - 0.05
    assert torch.allclose(w.detach(), torch.full((4,), 0.95))
    assert with_decoupled_decay(opt, 0.5, 0.0, 10, 0) is opt


def test_a_run_candidate_benches_with_its_flip(capsys, tmp_path):
    argv = ["search", "--task", "fake", "--grammar", "tiny", "--particles", "2", "--steps", "1"]
    argv += ["--children", "2", "--init-factor", "2", "--executor", "serial"]
    code, _, err = _cli(capsys, *argv, "--name", "demo", "--root", tmp_path)
    assert code == 0, err
    specs = parse_specs(["demo --rank 1"], root=str(tmp_path))
    assert specs[0].label == "demo#1" and specs[0].payload["grammar"].endswith("grammar.toml")
    code, _, err = _cli(
        capsys,
        "bench",
        "demo",
        "--rank",
        "1",
        "--root",
        tmp_path,
        "--tasks",
        "lstsq",
        "--steps",
        "3",
        "--trials",
        "1",
        "--seeds",
        "1",
        "--workers",
        "1",
        "-o",
        tmp_path / "b",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert report["summary"]["tasks"]["lstsq"]["optimizers"]["demo#1"]["n_runs"] == 1


def test_lr_and_weight_decay_tuning(tmp_path):
    settings = make_settings(
        parse_specs(["zoo:adam", "adamw", "plane-search"]),
        ["lstsq"],
        suite=None,
        trials=3,
        seeds=1,
        tune="lr+wd",
        steps=4,
    )
    report = run_bench(settings, tmp_path / "b", progress=False)
    rows = report["summary"]["tasks"]["lstsq"]["optimizers"]
    for label, row in rows.items():
        assert len(row["trials"]) == 3 and row["chosen"]["wd"] is not None, label
        assert set(row["edges"]) == ({"wd"} if label == "plane-search" else {"lr", "wd"})
    records = [json.loads(x) for x in (tmp_path / "b" / "runs.jsonl").read_text().splitlines()]
    assert all(r["wd"] is not None for r in records)


def test_stats_on_hand_made_entries():
    entry = {
        "metric": "accuracy",
        "higher_is_better": True,
        "n_test": 100,
        "optimizers": {
            "a": {"applies": True, "test": [0.9, 0.91, 0.92, 0.9, 0.91], "n_ok": 5},
            "b": {"applies": True, "test": [0.8, 0.82, 0.81, 0.8, 0.83], "n_ok": 5},
            "c": {"applies": True, "test": [0.9, 0.91, 0.92, 0.9, None], "n_ok": 4},
            "d": {"applies": False},
        },
    }
    entry["penalty"] = stats._worst(entry)
    assert entry["penalty"] == 0.8
    assert stats.paired_outcome(entry, "a", "b")["outcome"] == "win"
    assert stats.paired_outcome(entry, "b", "a")["outcome"] == "loss"
    assert stats.paired_outcome(entry, "a", "a")["outcome"] == "tie"
    assert stats.paired_outcome(entry, "a", "d") is None
    assert stats.penalised(entry, "c")[-1] == 0.8
    summary = {"tasks": {"t": entry}}
    assert stats.ranks(summary, ["a", "b", "c", "d"]) == {"t": {"a": 1.0, "c": 2.0, "b": 3.0}}
    ratios = stats.ratios(summary, ["a", "b", "d"], ["t"])
    best = 1 - statistics_mean([0.9, 0.91, 0.92, 0.9, 0.91]) + 0.01
    assert ratios["a"] == [1.0] and ratios["d"] == [math.inf]
    assert ratios["b"][0] == pytest.approx((1 - 0.812 + 0.01) / best)
    prof = stats.profile(summary, ["a", "b", "d"], ["t"], [1.0, 2.0])
    assert prof == {"a": [1.0, 1.0], "b": [0.0, 1.0], "d": [0.0, 0.0]}
    lm = {"metric": "loss"}
    assert stats.cost(lm, 2.0) / stats.cost(lm, 1.5) == pytest.approx(math.exp(0.5))


def statistics_mean(values):
    return sum(values) / len(values)


def test_plan_covers_every_cell(tmp_path):
    settings = _settings(tmp_path)
    cells = plan(settings)
    assert [(c.spec.label, c.task) for c in cells] == [
        ("adamw", "lstsq"),
        ("zoo:adam", "lstsq"),
        ("adamw", "logreg"),
        ("zoo:adam", "logreg"),
    ]
    assert run_key("adamw", "lstsq", "tune", 0) == "adamw|lstsq|tune|0"
    assert driver.compare_settings(settings, json.loads(json.dumps(settings))) == []
    assert driver.compare_settings({**settings, "seeds": 3}, settings) == ["seeds"]
    with pytest.raises(NosError, match="at least 1"):
        make_settings(parse_specs(["adamw"]), ["lstsq"], suite=None, trials=0, seeds=1, tune="lr")


def test_cifar_suite_runs_on_tiny_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        labels = rng.integers(0, 10, 4).astype(np.uint8)
        pixels = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        (folder / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], pixels], 1).tobytes())
    options = {"validation_size": 4}
    settings = make_settings(
        parse_specs(["adamw"]),
        ["cifar10", "cifar10-resnet"],
        suite=None,
        trials=1,
        seeds=1,
        tune="lr",
        steps=2,
        data_dir=str(tmp_path),
        task_options={"cifar10": options, "cifar10-resnet": options},
    )
    report = run_bench(settings, tmp_path / "b", progress=False)
    for task in ("cifar10", "cifar10-resnet"):
        row = report["summary"]["tasks"][task]["optimizers"]["adamw"]
        assert row["n_runs"] == 1 and report["summary"]["tasks"][task]["n_test"] == 4
    missing = make_settings(
        parse_specs(["adamw"]),
        ["cifar10"],
        suite=None,
        trials=1,
        seeds=1,
        tune="lr",
        steps=2,
        data_dir=str(tmp_path / "nowhere"),
    )
    with pytest.raises(NosError, match="does not exist"):
        run_bench(missing, tmp_path / "c", progress=False)


def test_the_command_is_light_at_import():
    import subprocess
    import sys

    code = "import sys, nos.cli.bench, nos.bench; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
    assert Path(driver.__file__).parent.name == "bench"


def test_bench_tasks_are_kept_out_of_search_and_eval(capsys):
    for argv in (["search", "--task", "logreg"], ["eval", "zoo:adam", "--task", "markov-lm"]):
        code, _, err = _cli(capsys, *argv)
        assert code == 1 and "no fitness preset" in err and err.count("\n") == 1
