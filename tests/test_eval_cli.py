"""`nos eval`: the comparison table, learning curves and results file; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from nos.cli import main  # noqa: E402

# A small budget: 7 x 4 x 3 sweep steps and a 6-epoch final run of 3 steps per optimizer.
SMALL = [
    "--set",
    "sweep_steps=3",
    "--set",
    "final_steps=3",
    "--set",
    "final_epochs=6",
    "--set",
    "warmup=12",
    "--set",
    "total_steps=18",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["eval", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _check_outputs(out_dir: Path, stdout: str, names: list[str], seeds: int) -> dict:
    assert "best val acc" in stdout and "tuned lr" in stdout
    png = out_dir / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out_dir / "results.json").read_text())
    assert report["task"] == "digits" and report["preset"] == "quick"
    assert report["config"]["preset"]["final_epochs"] == 6
    assert [o["optimizer"] for o in report["optimizers"]] == names
    for entry in report["optimizers"]:
        assert entry["optimizer"] in stdout
        assert len(entry["runs"]) == seeds
        fits = [r["fitness"] for r in entry["runs"] if r["status"] == "ok"]
        assert entry["ok"] == len(fits)
        if fits:
            assert entry["mean"] == pytest.approx(sum(fits) / len(fits))
            assert f"{entry['mean']:.4f} ± {entry['std']:.4f}" in stdout
    return report


def test_eval_torch_baselines_on_digits(tmp_path: Path, capsys):
    rc, out, err = _run(
        capsys,
        "torch:adam",
        "torch:sgd",
        "--task",
        "digits",
        "--seeds",
        "2",
        "--out",
        str(tmp_path),
        *SMALL,
    )
    assert rc == 0, err
    report = _check_outputs(tmp_path, out, ["torch:adam", "torch:sgd"], 2)
    adam = report["optimizers"][0]
    assert adam["ok"] == 2 and adam["lr"] in (10, 1e-2, 1e-5, 1, 1e-1, 1e-3, 1e-4)
    assert f"{adam['lr']:g}" in out


def test_eval_zoo_optimizers_on_digits(tmp_path: Path, capsys):
    names = ["zoo:adam", "zoo:sgd", "zoo:opt10"]
    rc, out, err = _run(
        capsys, *names, "--task", "digits", "--seeds", "2", "--out", str(tmp_path), *SMALL
    )
    assert rc == 0, err
    report = _check_outputs(tmp_path, out, names, 2)
    assert report["optimizers"][0]["ok"] == 2  # Adam trains digits at any small budget


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["torch:adam", "--preset", "fastest"], "unknown preset"),
        (["torch:adam", "--task", "imagenet"], "unknown task"),
        (["torch:nadam"], "unknown torch baseline"),
        (["nest ~ nonsense(g)"], "unknown"),
        (["torch:adam", "--seeds", "0"], "positive integer"),
        (["torch:adam", "--set", "final_epochs"], "FIELD=VALUE"),
        (["torch:adam", "--set", "epochs=3"], "unknown preset field"),
        (["torch:adam", "--target", "1.5"], "--target"),
        (["torch:adam", "--timeout", "0"], "--timeout"),
    ],
)
def test_eval_bad_input_is_one_line(tmp_path: Path, capsys, argv: list[str], message: str):
    rc, out, err = _run(capsys, *argv, "--out", str(tmp_path / "out"))
    assert rc == 1 and out == ""
    assert err.startswith("nos: error: ") and message in err and err.count("\n") == 1


def test_eval_missing_cifar_data_is_one_line(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.delenv("NOS_DATA", raising=False)
    rc, _, err = _run(
        capsys,
        "torch:adam",
        "--preset",
        "paper-init",
        "--data-dir",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
    )
    assert rc == 1 and "data_batch_1.bin" in err and err.count("\n") == 1
