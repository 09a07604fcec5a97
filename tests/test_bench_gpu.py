"""tools/bench_gpu.py runs its tiny configuration on the CPU and reports every figure."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_gpu.py"


def _tool():
    spec = importlib.util.spec_from_file_location("bench_gpu", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_data_is_cifar10_format(tmp_path):
    from nos.training.data import load_cifar10

    bench = _tool()
    bench.write_cifar(tmp_path, 30)
    data = load_cifar10(tmp_path, validation_size=50)
    assert data.train.x.shape == (100, 32, 32, 3) and data.validation.x.shape == (50, 32, 32, 3)
    assert set(data.train.y.tolist()) <= set(range(10))
    assert bench.parse_options("compile=model,cuda_graph=1,channels_last=auto") == {
        "compile": "model",
        "cuda_graph": True,
        "channels_last": None,
    }


@pytest.mark.slow
def test_tiny_configuration_on_the_cpu(tmp_path, capsys):
    bench = _tool()
    out = tmp_path / "figures.json"
    argv = ["--device", "cpu", "--ks", "1", "--pack-evals", "1", "--paths", "eager,fast"]
    report = bench.main([*argv, "--pack-paths", "fast", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["tiny"] and report["device"] == "cpu"
    for path in ("eager", "fast"):
        for phase in ("cold", "warm"):
            run = report["latency"][path][phase]
            assert run["status"] == "ok" and run["steps"] > 0 and run["wall_s"] > 0
    # the same evaluation along both paths: channels-last changes only the last bits
    eager, fast = report["latency"]["eager"]["warm"], report["latency"]["fast"]["warm"]
    assert abs(eager["fitness"] - fast["fitness"]) <= 0.1
    (packed,) = report["packing"]["fast"]
    assert packed["k"] == 1 and packed["ok"] == 1 and packed["evals_per_hour"] > 0
    assert {"eager", "fast"} <= set(report["rate"]) and report["rate"]["fast"]["steps"] == 8
    text = capsys.readouterr().out
    assert "[latency]" in text and "[packing]" in text and "x the eager path" in text
