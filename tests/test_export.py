"""nos export: a standalone, ruff-clean module whose optimizer matches the in-search step."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from nos.cli import main
from nos.optim import SymbolicOptimizer
from nos.optim.export import render_module
from nos.symbolic.grammar import load_grammar
from nos.symbolic.sample import sample_candidate

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")
STEPS = 100


def test_export_writes_a_standalone_ruff_clean_file(tmp_path, capsys):
    out = tmp_path / "my_optimizer.py"
    assert main(["export", "zoo:opt10", "-o", str(out), "--name", "MyOpt"]) == 0
    text = out.read_text()
    imports = [ln for ln in text.splitlines() if ln.startswith(("import ", "from "))]
    assert imports == ["import torch"]
    assert "class MyOpt(torch.optim.Optimizer):" in text
    for needed in (
        "U = i1e(i1e(a13*a2*g))",
        "LaTeX: U =",
        "Grammar: final2024",
        "canonical key:",
        "i1e0 = torch.special.i1e(",
    ):
        assert needed in text
    if RUFF.exists():
        res = subprocess.run(
            [str(RUFF), "check", "--config", str(ROOT / "pyproject.toml"), str(out)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stdout
    # refuses to overwrite without --force
    assert main(["export", "zoo:opt10", "-o", str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["export", "none ~ g", "-o", str(out), "--force"]) == 0
    assert "class EvolvedOptimizer(" in out.read_text()


def test_exported_zoo_optimizer_trains(tmp_path):
    path = tmp_path / "adamclip.py"
    assert main(["export", "zoo:adamclip4", "-o", str(path)]) == 0
    code = textwrap.dedent(f"""
        import importlib.util, torch
        spec = importlib.util.spec_from_file_location("m", {str(path)!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        w = torch.nn.Parameter(torch.full((5,), 3.0))
        opt = m.Adamclip4([w], lr=0.1, total_steps=200, warmup=10)
        for _ in range(200):
            opt.zero_grad(); (w ** 2).sum().backward(); opt.step()
        print(float(w.detach().abs().max()))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(res.stdout) < 1.0


def _grad(w: torch.Tensor, k: int) -> torch.Tensor:
    return torch.sin(3 * w + k) + 0.1 * w


_RUNNER = """
import importlib.util, json, sys, torch
torch.set_num_threads(1)
specs = json.load(open(sys.argv[1]))
out = {}
for spec in specs:
    loader = importlib.util.spec_from_file_location("m" + str(spec["i"]), spec["path"])
    mod = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(mod)
    params = [torch.tensor(x, dtype=torch.float64) for x in spec["w0"]]
    opt = mod.Candidate(params, lr=spec["lr"], total_steps=spec["T"], warmup=spec["W"],
                        flip=spec["flip"], seed=spec["seed"])
    for t in range(spec["steps"]):
        for k, p in enumerate(params):
            p.grad = torch.sin(3 * p + k) + 0.1 * p
        opt.step()
    out[spec["i"]] = [p.tolist() for p in params]
json.dump(out, open(sys.argv[2], "w"))
"""


def _in_search(text_cand, spec, scale: float = 1.0) -> list[np.ndarray]:
    params = [torch.tensor(x, dtype=torch.float64) * scale for x in spec["w0"]]
    opt = SymbolicOptimizer(
        params,
        text_cand,
        lr=spec["lr"],
        total_steps=spec["T"],
        warmup=spec["W"],
        flip=spec["flip"],
        seed=spec["seed"],
    )
    for _ in range(spec["steps"]):
        for k, p in enumerate(params):
            p.grad = _grad(p, k)
        opt.step()
    return [p.numpy() for p in params]


def _close(a, b, rtol):
    a, b = np.concatenate([x.ravel() for x in a]), np.concatenate([x.ravel() for x in b])
    same = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
    return bool((same | np.isclose(a, b, rtol=rtol, atol=rtol * 1e-3)).all())


@pytest.mark.slow
def test_round_trip_of_200_sampled_candidates(tmp_path):
    grammar = load_grammar("morgan2024")
    rnd = random.Random(42)
    rng = np.random.default_rng(0)
    specs, cands = [], []
    for i in range(200):
        cand = sample_candidate(grammar, rnd)
        path = tmp_path / f"cand{i}.py"
        path.write_text(render_module(cand, "Candidate"))
        specs.append(
            {
                "i": str(i),
                "path": str(path),
                "lr": float(rng.choice([1e-3, 0.1])),
                "T": STEPS,
                "W": 10,
                "flip": bool(i % 4 == 0),
                "seed": i,
                "steps": STEPS,
                "w0": [rng.normal(size=(3, 4)).tolist(), rng.normal(size=5).tolist()],
            }
        )
        cands.append(cand)
    spec_file, out_file = tmp_path / "specs.json", tmp_path / "out.json"
    spec_file.write_text(json.dumps(specs))
    subprocess.run(
        [sys.executable, "-c", _RUNNER, str(spec_file), str(out_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    exported = json.loads(out_file.read_text())
    failures, chaotic = [], 0
    for cand, spec in zip(cands, specs, strict=True):
        ours = _in_search(cand, spec)
        theirs = [np.array(x) for x in exported[spec["i"]]]
        if _close(ours, theirs, 1e-6):
            continue
        if not _close(ours, _in_search(cand, spec, 1 + 1e-13), 1e-8):
            chaotic += 1  # rounding differences are amplified: no pair of codes agrees
            continue
        failures.append(str(cand))
    assert not failures, failures[:5]
    assert chaotic <= 10


def _load_class(path: Path, name: str) -> type:
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _sphere_loss_after(opt_class: type, lr: float) -> tuple[float, float]:
    """The integrity check's convex quadratic (spec §3) stepped by an exported class."""
    from nos.symbolic.check import SPHERE_B, SPHERE_T, SPHERE_W, SPHERE_X0

    w = torch.nn.Parameter(torch.tensor(SPHERE_X0, dtype=torch.float64))
    b = torch.tensor(SPHERE_B, dtype=torch.float64)
    opt = opt_class([w], lr=lr, total_steps=SPHERE_T, warmup=SPHERE_W)
    first = float(((w.detach() - b) ** 2).sum())
    for _ in range(SPHERE_T):
        opt.zero_grad()
        loss = ((w - b) ** 2).sum()
        loss.backward()
        opt.step()
    return first, float(((w.detach() - b) ** 2).sum())


def test_every_exported_candidate_descends_a_convex_quadratic(tmp_path, capsys):
    from nos.symbolic.check import check_candidate

    grammar = load_grammar("morgan2024")
    rnd = random.Random(11)
    texts = ["none ~ neg(g)", "none ~ neg(sign_v_hat)", "mom ~ neg(div(v_hat, sqrt_abs(s_hat)))"]
    while len(texts) < 24:
        cand = sample_candidate(grammar, rnd)
        # dropout masks differ between numpy and torch; a rejected candidate has no sign
        if "drop" not in cand.text and check_candidate(cand).passed:
            texts.append(cand.text)
    flipped = 0
    for i, text in enumerate(texts):
        out = tmp_path / f"opt{i}.py"
        assert main(["export", text, "-o", str(out), "--name", "Opt"]) == 0, text
        check = check_candidate(_parse(text, grammar))
        flipped += check.flip
        first, last = _sphere_loss_after(_load_class(out, "Opt"), check.lr)
        assert last < first, f"{text}: loss {first:.3f} -> {last:.3f}"
    capsys.readouterr()
    assert flipped >= 3  # the set holds candidates that descend only with the sign flipped


def _parse(text, grammar):
    from nos.symbolic.text import parse_canonical

    return parse_canonical(text, grammar)
