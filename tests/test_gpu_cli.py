"""The GPU flags of `nos search` / `nos eval`: one-line errors, what reaches each evaluation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nos.cli import main
from nos.cli._step import step_fields
from nos.search.config import SearchConfig
from nos.search.session import Execution, _job_setup, open_run

FAKE = ["search", "--task", "fake", "--grammar", "tiny", "--particles", "2", "--steps", "1"]
FAKE += ["--children", "2", "--init-factor", "2", "--executor", "serial", "--no-progress"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err, *words):
    assert code == 1 and err.startswith("nos: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def _cifar_without(root: Path, missing: str) -> Path:
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        if f"data_batch_{i}" == missing:
            continue
        records = rng.integers(0, 256, (4, 3073), dtype=np.uint8)
        records[:, 0] %= 10
        (folder / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    return root


@pytest.mark.parametrize("value", ["0", "-2", "x"])
def test_workers_per_gpu_must_be_positive(capsys, tmp_path, value):
    code, _, err = run(capsys, *FAKE, "--root", tmp_path, "--workers-per-gpu", value)
    one_line_error(code, err, "--workers-per-gpu", "positive integer")
    assert not any(tmp_path.iterdir())  # no run was created


@pytest.mark.parametrize(("flag", "value"), [("--precision", "fp16"), ("--compile", "everything")])
@pytest.mark.parametrize("command", ["search", "eval"])
def test_unknown_step_options_are_one_line(capsys, tmp_path, command, flag, value):
    argv = [*FAKE, "--root", tmp_path] if command == "search" else ["eval", "zoo:adam"]
    code, _, err = run(capsys, *argv, flag, value)
    one_line_error(code, err, flag, value)


def test_search_with_a_missing_cifar_batch_fails_before_the_run(capsys, tmp_path):
    data = _cifar_without(tmp_path / "data", "data_batch_4")
    runs = tmp_path / "runs"
    code, _, err = run(
        capsys, "search", "--task", "cifar10", "--data-dir", data, "--root", runs, "--no-progress"
    )
    one_line_error(code, err, "missing CIFAR-10 file", "data_batch_4.bin")
    assert not runs.exists() or not any(runs.iterdir())


def test_eval_with_a_missing_cifar_batch_is_one_line(capsys, tmp_path):
    data = _cifar_without(tmp_path / "data", "data_batch_3")
    code, _out, err = run(
        capsys, "eval", "zoo:adam", "--task", "cifar10", "--data-dir", data, "--out", tmp_path
    )
    one_line_error(code, err, "data_batch_3.bin")


def test_truncated_cifar_batch_is_caught_by_the_search_check(capsys, tmp_path):
    data = _cifar_without(tmp_path / "data", "none")
    path = data / "cifar-10-batches-bin" / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-5])
    code, _, err = run(
        capsys, "search", "--task", "cifar10", "--data-dir", data, "--root", tmp_path
    )
    one_line_error(code, err, "data_batch_2.bin", "truncated")


def test_the_step_flags_reach_every_evaluation_and_change_on_resume(capsys, tmp_path):
    code, _, err = run(
        capsys, *FAKE, "--root", tmp_path, "--name", "r", "--precision", "bf16",
        "--compile", "model", "--batch-sweep", "--workers-per-gpu", "3", "--budget", "2",
    )  # fmt: skip
    assert code == 0, err
    store, _, execution = open_run("r", tmp_path)
    store.close()
    assert (execution.precision, execution.compile, execution.batch_sweep) == (
        "bf16",
        "model",
        True,
    )
    assert execution.workers_per_gpu == 3 and not execution.cuda_graph

    config = SearchConfig(task="digits", preset="quick")
    _, job = _job_setup(config, execution, "tiny")
    request = SimpleNamespace(
        entry=SimpleNamespace(
            candidate=SimpleNamespace(text="none ~ g"), check=SimpleNamespace(flip=False, lr=0.1)
        ),
        stage="full",
        seeds=[0],
    )
    spec = job(request)
    assert (spec["precision"], spec["compile"], spec["batch_sweep"]) == ("bf16", "model", True)
    assert spec["device"] == "cpu" and spec["cuda_graph"] is False
    assert spec["channels_last"] is None  # auto
    # on resume, a flag given replaces the run's value and the others keep theirs
    given = argparse.Namespace(
        precision="fp32",
        compile=None,
        cuda_graph=None,
        channels_last="on",
        batch_sweep=None,
        workers_per_gpu=None,
    )
    assert step_fields(given, execution) == {
        "precision": "fp32",
        "compile": "model",
        "cuda_graph": False,
        "channels_last": "on",
        "batch_sweep": True,
        "workers_per_gpu": 3,
    }


def test_a_cuda_run_pins_workers_and_jobs_use_their_one_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    execution = Execution(device="cuda", workers_per_gpu=4)
    assert execution.n_workers == 8
    pinning = execution.pinning()
    assert [e["CUDA_VISIBLE_DEVICES"] for e in pinning.envs] == ["0", "1"] * 4
    assert (
        Execution(device="cuda:1", workers=3).pinning().envs == ({"CUDA_VISIBLE_DEVICES": "1"},) * 3
    )
    assert Execution(device="cuda", executor="serial").pinning() is None
    _, job = _job_setup(SearchConfig(task="digits"), execution, "tiny")
    request = SimpleNamespace(
        entry=SimpleNamespace(
            candidate=SimpleNamespace(text="none ~ g"), check=SimpleNamespace(flip=False, lr=0.1)
        ),
        stage="full",
        seeds=[0],
    )
    assert job(request)["device"] == "cuda"


def test_eval_bf16_records_its_step_options(capsys, tmp_path):
    code, _out, err = run(
        capsys, "eval", "zoo:adam", "--seeds", "1", "--precision", "bf16", "--out", tmp_path,
        "--channels-last", "on",
        "--set", "sweep_steps=3", "--set", "final_steps=3", "--set", "final_epochs=2",
        "--set", "warmup=12", "--set", "total_steps=18",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["config"]["step"]["precision"] == "bf16"
    assert report["config"]["step"]["channels_last"] is True


def test_the_data_checks_name_the_missing_file(tmp_path):
    from nos.training.data import DataError, check_dataset

    check_dataset("digits")  # nothing on disk to check
    (tmp_path / "imagelabels.mat").write_bytes(b"")
    with pytest.raises(DataError, match=r"missing Flowers102 file .*setid\.mat"):
        check_dataset("flowers102", tmp_path)
    with pytest.raises(DataError, match=r"CIFAR-10 not found: expected .*data_batch_1\.bin"):
        check_dataset("cifar10", tmp_path)
    data = _cifar_without(tmp_path / "c", "data_batch_5")
    with pytest.raises(DataError, match=r"missing CIFAR-10 file .*data_batch_5\.bin"):
        check_dataset("cifar10", data)
