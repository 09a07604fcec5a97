"""The zoo: entries parse in their grammars, listed deviations behave as described, the LR
schedules have the ranges of spec §7.4, and `nos zoo` / `nos inspect zoo:NAME` work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nos.cli import main
from nos.errors import CandidateError
from nos.optim import SymbolicOptimizer
from nos.symbolic.emit import NumpyRuntime, compile_phenotype
from nos.zoo import catalogue as zoo

torch.set_num_threads(1)

EXPECTED = (
    [f"opt{i}" for i in range(1, 11)]
    + [f"adamclip{i}" for i in range(5)]
    + [f"lr{i}" for i in range(9)]
    + ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "lion", "powersign", "addsign"]
)


def test_every_required_entry_is_a_candidate_of_its_grammar():
    for name in EXPECTED:
        c = zoo.get(name)
        assert c.name == name and c.within_limits(), name
        assert str(zoo.get(f"zoo:{name}")) == str(c)
    with pytest.raises(CandidateError, match="no zoo entry named 'opt11'"):
        zoo.get("opt11")


def _multiplier(name: str, T: int = 1000) -> np.ndarray:
    c = compile_phenotype(zoo.get(name).phenotype)
    with np.errstate(all="ignore"):
        return np.array([float(c.lr(t / T, 1 / T, NumpyRuntime())) for t in range(T)])


# (schedule, M at t = 0, max of M over [0, T)) from spec §7.4
RANGES = [
    ("lr0", 0.157, 1.96),
    ("lr1", 0.157, 4.67),
    ("lr2", 0.0, 8.36),
    ("lr3", 0.34, 1.07),
    ("lr4", 1.09, 9.41),
    ("lr5", 0.0, 0.785),
    ("lr6", 1.0, 1.41),
    ("lr8", 0.0, 0.76),
]


@pytest.mark.parametrize(("name", "start", "top"), RANGES)
def test_lr_schedules_have_the_ranges_of_the_spec(name, start, top):
    m = _multiplier(name)
    assert m[0] == pytest.approx(start, abs=0.01)
    assert m.max() == pytest.approx(top, rel=0.02)
    assert zoo.schedule(name) in zoo.entry(name).text


def test_lr7_starts_at_1e7_then_settles():
    m = _multiplier("lr7")
    assert m[0] == pytest.approx(1e7)
    assert np.all(np.diff(m) < 0)  # falls from there
    assert m[len(m) // 4 :].min() > 1.4 and m[len(m) // 4 :].max() < 2.0


def test_opt10_decay_peaks_near_the_spec_value():
    ph = zoo.get("opt10").phenotype
    T = 1000
    c = compile_phenotype(ph)
    # U = i1e(i1e(d g)); for tiny g, U ~ d g / 4, so U/g recovers d(t)/4
    g = np.full(1, 1e-6)
    vals = np.array(
        [c.update(g, g, {}, t, t / T, 1 / T, NumpyRuntime())[0] / 1e-6 * 4 for t in range(T)]
    )
    assert vals.max() == pytest.approx(0.635, abs=0.01)
    assert vals.argmax() / T == pytest.approx(0.82, abs=0.02)


def test_opt4_last_step_is_finite_but_the_faithful_variant_is_not():
    for name, finite in (("opt4", True), ("opt4-faithful", False)):
        p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
        opt = SymbolicOptimizer([p], zoo.get(name), lr=1e-3, total_steps=20, warmup=2)
        for _ in range(20):
            p.grad = torch.full((3,), 0.1, dtype=torch.float64)
            opt.step()
        assert opt.nonfinite is not finite, name


def test_opt1_faithful_differs_only_in_the_clip_bound():
    a, b = zoo.get("opt1").phenotype.update, zoo.get("opt1-faithful").phenotype.update
    assert a != b
    assert "s_hat" in str(a) and "s_hat" in str(b)


def test_state_buffers():
    assert zoo.state_buffers(zoo.get("adam")) == 2
    assert zoo.state_buffers(zoo.get("opt10")) == 1  # the momentum buffer
    assert zoo.state_buffers(zoo.get("sgd")) == 0
    assert zoo.state_buffers(zoo.get("opt3")) == 2  # v and lambda


def test_deviations_name_every_faithful_entry():
    text = " ".join(zoo.DEVIATIONS)
    for name in zoo.ZOO:
        if name.endswith("-faithful") or name.endswith("-search"):
            assert f"zoo:{name}" in text, name


def test_cli_lists_the_zoo_and_inspects_entries(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert f"\n{name}\n" in f"\n{out}"
    assert "buffer(s) per parameter" in out and "finalOptimizers.py" in out
    assert main(["inspect", "zoo:opt10"]) == 0
    out = capsys.readouterr().out
    assert "nest ~ i1e(i1e(decay(mul(a13, a2), g)))" in out and "final2024" in out
    assert main(["inspect", "zoo:nothing"]) == 1
