"""Devices: one-line errors for bad or missing devices, CUDA's deterministic settings."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from nos.cli import main  # noqa: E402
from nos.errors import NosError  # noqa: E402
from nos.training import device as devices  # noqa: E402
from nos.training.device import make_deterministic, resolve_device  # noqa: E402


def test_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("text", ["bogus", "cpu:1", "cuda:x", "gpu", "", "cuda:-1", "auto:0"])
def test_unknown_devices(text):
    with pytest.raises(NosError, match="unknown device"):
        resolve_device(text)


def test_cuda_without_a_cuda_build(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(NosError, match="built without CUDA"):
        resolve_device("cuda")


def test_cuda_without_a_gpu_and_a_missing_index(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(NosError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(NosError, match=r"only 2 GPU\(s\) visible"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("command", ["search", "eval"])
@pytest.mark.parametrize("text", ["bogus", "cuda:99"])
def test_cli_device_errors_are_one_line(capsys, tmp_path, command, text):
    if text == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    argv = (
        ["search", "--task", "fake", "--root", str(tmp_path)]
        if command == "search"
        else ["eval", "zoo:adam", "--seeds", "1", "--out", str(tmp_path)]
    )
    code = main([*argv, "--device", text])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("nos: error:")
    assert "device" in err


def test_deterministic_settings_leave_the_cpu_alone(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = torch.are_deterministic_algorithms_enabled()
    make_deterministic(torch.device("cpu"))
    assert torch.are_deterministic_algorithms_enabled() == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in devices.os.environ


def test_deterministic_settings_on_cuda(monkeypatch):
    calls = []
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # restored after the test
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on: calls.append(on))
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    make_deterministic(torch.device("cuda", 0))
    assert calls == [True]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert devices.os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_evaluation_is_deterministic():
    from nos.training.protocol import evaluate
    from nos.training.spec import EvalSpec

    tiny = {"sweep_steps": 3, "final_steps": 3, "final_epochs": 4, "warmup": 12, "total_steps": 18}
    spec = EvalSpec("zoo:adam", device="cuda", overrides=tiny)
    first, second = evaluate(spec), evaluate(spec)
    assert first.status == "ok" and first.fitness == second.fitness
    assert first.curves == second.curves
