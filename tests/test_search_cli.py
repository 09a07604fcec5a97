"""`nos search`, `nos runs`, `nos show` with the fake task; resume after SIGKILL of the driver."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nos.cli import main
from nos.search.report import hall_of_fame
from nos.search.store import load_run

SHAPE = [
    "--task",
    "fake",
    "--grammar",
    "tiny",
    "--particles",
    "3",
    "--steps",
    "3",
    "--children",
    "3",
    "--init-factor",
    "3",
    "--seed",
    "7",
]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def fingerprint_of_run(root: Path, name: str):
    data = load_run(name, root)
    evals = sorted((r["cache_id"], r["candidate"], r["status"], r["fitness"]) for r in data.evals)
    return hall_of_fame(data.records, 10), evals


def test_search_runs_show(capsys, tmp_path):
    code, out, err = run(
        capsys,
        "search",
        *SHAPE,
        "--executor",
        "serial",
        "--name",
        "demo",
        "--root",
        tmp_path,
        "--fake",
        '{"fail_rate": 0.3}',
    )
    assert code == 0, err
    assert "run demo: finished" in out and "hall of fame" in out and ">>>>" in out
    assert "nos export demo --rank 1" in out
    code, out, _ = run(capsys, "runs", "--root", tmp_path)
    assert code == 0
    assert out.split("\n")[1].split()[:2] == ["demo", "finished"]
    code, out, _ = run(capsys, "show", "demo", "--root", tmp_path)
    assert code == 0
    for part in (
        "hall of fame",
        "Pareto front",
        "evaluations:",
        "failed_threshold",
        "integrity-check rejections:",
        "wasted evaluations:",
        "throughput:",
    ):
        assert part in out, part
    assert (tmp_path / "demo" / "progress.png").stat().st_size > 1000
    assert (tmp_path / "demo" / "pareto.png").stat().st_size > 1000
    code, out, _ = run(capsys, "show", "demo", "--root", tmp_path, "--json", "--no-plots")
    shown = json.loads(out)
    assert shown["status"] == "finished" and shown["hall_of_fame"][0]["rank"] == 1
    code, out, _ = run(capsys, "search", "--resume", "demo", "--root", tmp_path)
    assert code == 0 and "already ended" in out

    # seeding the initial population from that run and from an imported log
    winner = shown["hall_of_fame"][0]["candidate"]
    log = tmp_path / "imported.jsonl"
    log.write_text(
        json.dumps({"canonical": "none ~ sign(g)", "val_acc": 0.8, "failed": False})
        + "\n"
        + json.dumps({"canonical": None, "val_acc": None, "failed": True})
        + "\n"
    )
    code, _, err = run(
        capsys,
        "search",
        *SHAPE,
        "--executor",
        "serial",
        "--name",
        "seeded",
        "--root",
        tmp_path,
        "--seed-from",
        f"{log},demo",
    )
    assert code == 0, err
    inits = [r for r in load_run("seeded", tmp_path).evals if r["stage"] == "init"]
    assert inits[0]["candidate"] == "none ~ sign(g)" and inits[0]["mutation"] == "seed"
    assert inits[1]["candidate"] == winner and inits[1]["mutation"] == "seed"
    assert all(r["mutation"] == "seed" for r in inits)  # 9 seeds fill the population
    code, _, err = run(capsys, "search", *SHAPE, "--root", tmp_path, "--seed-from", "nowhere")
    assert code == 1 and "neither zoo:NAME" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["show", "nope"], "no run named"),
        (["search", "--budget", "ten"], "bad budget"),
        (["search", "--particles", "0"], "positive integer"),
        (["search", "--task", "imagenet"], "unknown task"),
        (["search", "--strategy", "annealing", "--task", "fake"], "unknown strategy"),
        (["search", "--resume", "demo", "--seed", "3"], "keeps the run's own settings"),
        (["search", "--resume", "nope"], "no run named"),
        (["search", "--task", "fake", "--fake", "[1]"], "JSON object"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, argv, message):
    code, _, err = run(capsys, *argv, "--root", tmp_path)
    assert code == 1
    assert message in err and err.count("\n") == 1 and err.startswith("nos: error:")


def test_corrupt_run_file_is_an_error(capsys, tmp_path):
    run(capsys, "search", *SHAPE, "--executor", "serial", "--name", "c", "--root", tmp_path)
    (tmp_path / "c" / "config.toml").write_text("[search\n")
    code, _, err = run(capsys, "show", "c", "--root", tmp_path)
    assert code == 1 and "corrupt run configuration" in err


def _driver(root: Path, extra: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONHASHSEED": str(random.randrange(1 << 16))}
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "nos", "search", *extra, "--root", str(root), "--no-progress"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )


def test_resume_after_sigkill_gives_the_same_hall_of_fame(capsys, tmp_path):
    fake = json.dumps({"fail_rate": 0.3, "sleep_s": 0.02})
    code, _, err = run(
        capsys,
        "search",
        *SHAPE,
        "--executor",
        "serial",
        "--name",
        "ref",
        "--root",
        tmp_path,
        "--fake",
        fake,
    )
    assert code == 0, err
    reference = fingerprint_of_run(tmp_path, "ref")
    total = len(reference[1])
    rnd = random.Random(20240410)
    for trial in range(3):
        name = f"t{trial}"
        argv = [*SHAPE, "--executor", "serial", "--name", name, "--fake", fake]
        kills, max_kills = 0, 2 if trial == 0 else 1
        log = tmp_path / f"{name}.stderr"
        # kill the driver at a random point, then resume (and maybe kill again), until done
        while True:
            proc = _driver(tmp_path, argv, log)
            target = rnd.randrange(2, total)
            evals = tmp_path / name / "evaluations.jsonl"
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                if evals.exists() and evals.read_bytes().count(b'"type":"eval"') >= target:
                    time.sleep(rnd.random() * 0.05)
                    break
                time.sleep(0.01)
            if proc.poll() is None and kills < max_kills:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(timeout=120)
            if proc.returncode == 0:
                break
            assert proc.returncode == -signal.SIGKILL, log.read_text()
            argv = ["--resume", name, "--executor", "serial"]
            if trial == 2:
                argv = ["--resume", name, "--workers", "2"]  # resume on more workers
        assert kills >= 1
        hof, evals = fingerprint_of_run(tmp_path, name)
        assert hof == reference[0]
        assert evals == reference[1]  # nothing lost, nothing trained twice
        assert load_run(name, tmp_path).status == "finished"


def test_real_jobs_are_eval_specs(tmp_path):
    from nos.search.config import SearchConfig
    from nos.search.engine import ParticleGA
    from nos.search.session import Execution, _job_setup
    from nos.symbolic.grammar import load_grammar
    from nos.training.spec import EvalSpec

    cfg = SearchConfig(grammar="tiny", task="digits", preset="quick", particles=1, init_factor=1)
    function, factory = _job_setup(cfg, Execution(), load_grammar("tiny").path)
    assert function == "nos.search.worker:evaluate_job"
    from nos.search.screening import ScreenRequest, screen

    phase = ParticleGA(cfg, load_grammar("tiny")).initial_phase()
    batch = next(phase)
    while isinstance(batch, ScreenRequest):  # the phase asks for its candidates' screens
        batch = phase.send([screen(c) for c in batch.candidates])
    spec = EvalSpec.from_dict(factory(batch.requests[0]))
    assert spec.candidate == batch.requests[0].text and spec.preset == "quick"
    assert spec.flip == batch.requests[0].entry.check.flip and spec.seeds == (0,)
