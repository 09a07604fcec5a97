"""The suite fitness inside a search: reference cache, live view, reports, CLI and seeds."""

from __future__ import annotations

import json

import pytest

from nos.cli import main
from nos.errors import NosError
from nos.search.config import SearchConfig
from nos.search.live import LiveView
from nos.search.report import hall_of_fame, run_stats
from nos.search.seeds import resolve_seeds
from nos.search.session import (
    REFERENCE_FILE,
    Execution,
    create_run,
    ensure_reference,
    read_reference,
)
from nos.search.store import RunStore
from nos.symbolic.grammar import load_grammar


def _eval(seq, stage, status, fitness, steps, rung, fp, **extra):
    suite = {"rung": rung, "steps_per_rung": [min(steps, 100)] + ([steps - 100] if rung else [])}
    suite.update(extra)
    return {
        "type": "eval",
        "seq": seq,
        "stage": stage,
        "status": status,
        "fitness": fitness,
        "steps": steps,
        "key": f"k{fp}",
        "fingerprint": f"f{fp}",
        "candidate": f"none ~ c{fp}",
        "size": 3,
        "suite": suite,
        "elapsed_s": float(seq),
        "wall_s": 1.0,
    }


RECORDS = [
    _eval(1, "init", "ok", -0.5, 100, 0, 1),
    _eval(2, "full", "failed_threshold", None, 80, 0, 2),
    _eval(3, "full", "ok", 0.10, 600, 1, 3),
    _eval(4, "full", "ok", 0.05, 600, 1, 4),
    _eval(5, "full", "diverged", None, 20, 0, 5),
    _eval(
        6,
        "rescore",
        "ok",
        0.08,
        1600,
        1,
        3,
        tasks={"a": {"score": [0.1, -0.2, 0.3]}, "b": {"score": [0.0, 0.1, 0.2]}},
    ),
]
RECORDS[-1]["fitness_per_seed"] = [0.05, -0.05, 0.24]


def test_run_stats_count_training_steps_per_rung_and_the_waste():
    stats = run_stats(RECORDS)
    assert stats["steps"] == 3000
    assert stats["steps_wasted"] == 100  # the failed (80) and the diverged (20) steps
    assert stats["steps_wasted_rate"] == pytest.approx(100 / 3000)
    assert stats["steps_per_rung"] == [500, 2500]
    assert stats["rung_reached"] == {"0": 6, "1": 3}
    assert stats["rung_failed"] == {"0": 2}


def test_the_rescored_hall_of_fame_has_wins_and_losses_per_task():
    hof = hall_of_fame(RECORDS, 3)
    assert hof[0]["candidate"] == "none ~ c3" and hof[0]["rescore"] == 0.08
    a = hof[0]["rescore_tasks"]["a"]
    assert a["wins"] == 2 and a["losses"] == 1 and a["mean"] == pytest.approx(0.2 / 3)
    b = hof[0]["rescore_tasks"]["b"]
    assert b["wins"] == 2 and b["losses"] == 0  # a tie is neither
    assert hof[1]["rescore_tasks"] is None


def test_the_live_view_writes_events_tensorboard_reads(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as accumulator

    view = LiveView(tmp_path, RECORDS[:2])
    for record in RECORDS[2:]:
        view.observe(record)
    view.close()
    acc = accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"score/best", "score/median", "waste/steps_rate", "rungs/reached_1"} <= tags
    assert {"throughput/evals_per_s"} <= tags
    best = [e.value for e in acc.Scalars("score/best")]
    assert best[-1] == pytest.approx(0.10)
    assert [e.step for e in acc.Scalars("evaluations")] == [3, 4, 5, 6]
    assert acc.Scalars("waste/steps_rate")[-1].value == pytest.approx(100 / 3000)


def test_zoo_seeds_a_grammar_cannot_spell_get_their_nearest_form():
    grammar = load_grammar("morgan2024")
    [adam, nesterov] = resolve_seeds(("zoo:adam", "zoo:nesterov"), grammar)
    assert adam.text == "none ~ div(v_hat, sqrt_abs(s_hat))"
    assert nesterov.text == "nest ~ g"
    with pytest.raises(NosError, match="zoo:lion is not in grammar morgan2024"):
        resolve_seeds(("zoo:lion",), grammar)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fitness", "paper", "--task", "teacher"], "no preset of the paper's protocol"),
        (["--suite", "nonesuch"], "unknown suite 'nonesuch'"),
        (["--fitness", "suite", "--preset", "quick"], "--preset belongs to --fitness paper"),
        (["--fitness", "paper", "--hurdle", "2"], "--hurdle belongs to --fitness suite"),
        (["--task", "imagenet"], "unknown task"),
    ],
)
def test_bad_fitness_flags_give_one_line_errors(capsys, tmp_path, argv, message):
    assert main(["search", *argv, "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_the_default_search_uses_the_suite_fitness():
    from nos.cli import build_parser
    from nos.cli.search import _config

    config = _config(build_parser().parse_args(["search"]))
    assert config.fitness == "suite" and config.task == "" and config.target == "search"
    assert config.rescore_top > 0
    one = _config(build_parser().parse_args(["search", "--task", "teacher"]))
    assert one.fitness == "suite" and one.target == "teacher"
    paper = _config(build_parser().parse_args(["search", "--task", "digits", "--preset", "quick"]))
    assert paper.fitness == "paper" and paper.preset == "quick"


def test_the_reference_is_computed_once_and_reused_on_resume(tmp_path):
    pytest.importorskip("torch")
    import torch

    from nos.search.suite_jobs import serial_batches

    config = SearchConfig(fitness="suite", task="teacher", grammar="tiny")
    execution = Execution(executor="serial", tensorboard=False)
    calls = []

    def counting(payloads):
        calls.append(len(payloads))
        return serial_batches(payloads)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = create_run(config, execution, name="r", root=tmp_path)
        first = ensure_reference(store, config, execution, counting)
        store.close()
    finally:
        torch.set_num_threads(threads)
    assert calls and sum(calls) == 5 + 1  # Adam at 5 LRs, then its rung 0
    assert (tmp_path / "r" / REFERENCE_FILE).exists()
    assert read_reference(tmp_path / "r").to_dict() == first.to_dict()

    def refuse(payloads):
        raise AssertionError("the reference was trained again")

    store = RunStore.resume("r", tmp_path)
    again = ensure_reference(store, config, execution, refuse)
    assert again.to_dict() == first.to_dict()
    # a reference that does not belong to the run's fitness is refused
    path = tmp_path / "r" / REFERENCE_FILE
    data = json.loads(path.read_text())
    data["fitness"]["hurdle"] = 9.0
    path.write_text(json.dumps(data))
    with pytest.raises(NosError, match="does not belong"):
        ensure_reference(store, config, execution, refuse)
    store.close()


def test_show_reports_the_reference_the_rescored_tasks_and_the_steps(tmp_path, capsys):
    config = SearchConfig(fitness="suite", task="", grammar="tiny")
    store = create_run(config, Execution(executor="serial"), name="s", root=tmp_path)
    for record in RECORDS:
        store.append(record)
    store.close()
    reference = {
        "fitness": {"tasks": [{"task": "a"}, {"task": "b"}]},
        "tasks": {
            "b": {"lr": 0.01, "loss": {"0": 0.5}},
            "a": {"lr": 0.03, "loss": {"0": 0.25}},
        },
        "rung0": {"0": {"lr": 0.03, "loss": 0.4}},
    }
    (tmp_path / "s" / REFERENCE_FILE).write_text(json.dumps(reference))
    assert main(["show", "s", "--root", str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "suite fitness on a, b" in out
    assert out.index("  a ") < out.index("  b ")  # in the suite's order
    assert "rescore 0.0800 ± " in out and "a +0.067±" in out and "(2W/1L)" in out
    assert "training steps: 3,000 (rung 0 500, rung 1 2,500)" in out
    assert "wasted steps (failed, diverged or duplicate): 100 of 3,000 = 3.3%" in out


def test_a_real_suite_search_decides_the_same_with_one_or_two_workers(tmp_path, capsys):
    pytest.importorskip("torch")
    from nos.search.store import load_run

    shape = ["--fitness", "suite", "--task", "teacher", "--grammar", "tiny", "--seed", "3"]
    shape += ["--particles", "2", "--steps", "1", "--children", "3", "--init-factor", "2"]
    shape += ["--rescore-top", "1", "--rescore-seeds", "1", "--seed-from", ""]
    shape += ["--no-tensorboard", "--no-progress", "--root", str(tmp_path)]
    runs = {}
    for name, execution in (("one", ["--executor", "serial"]), ("two", ["--workers", "2"])):
        assert main(["search", *shape, "--name", name, *execution]) == 0
        records = load_run(tmp_path / name).records
        moves = sorted((r["origin"], r["to"], r["fitness"]) for r in records if r["type"] == "move")
        trained = [r for r in records if r["type"] == "eval"]
        assert any(r["suite"]["rung"] == 1 for r in trained)  # real training past rung 0
        runs[name] = (hall_of_fame(records), moves)
    capsys.readouterr()
    assert runs["one"] == runs["two"]


def test_gpu_pinned_suite_jobs_name_the_device_as_their_worker_sees_it(monkeypatch):
    from types import SimpleNamespace

    from nos.search import session
    from nos.search.fitness import Reference
    from nos.training.device import Pinning

    pinned = Pinning("cuda", ({"CUDA_VISIBLE_DEVICES": "1"},), 1)
    monkeypatch.setattr(session.Execution, "pinning", lambda self: pinned)
    execution = Execution(device="cuda:1")
    assert session.worker_execution(execution)["device"] == "cuda"
    config = SearchConfig(fitness="suite", task="teacher", grammar="tiny")
    spec = session.fitness_spec(config).to_dict()
    reference = Reference(spec, {"teacher": {"lr": 0.01, "loss": {"0": 1.0}}}, {"0": {}})
    _, factory = session._job_setup(config, execution, "tiny", reference)
    entry = SimpleNamespace(
        candidate=SimpleNamespace(text="none ~ g"), check=SimpleNamespace(flip=False)
    )
    payload = factory(SimpleNamespace(entry=entry, seeds=(0,), stage="full"))
    assert payload["device"] == "cuda"  # not cuda:1, which the pinned worker cannot see
