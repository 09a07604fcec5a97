from __future__ import annotations

import json

import pytest

from nos.cli import main

OPT10_REF = "Nest ~ bessel_i1e(bessel_i1e([(a13)*(a2)][g]))"
OPT10 = "nest ~ i1e(i1e(decay(mul(a13, a2), g)))"


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_inspect_shows_every_form(capsys):
    code, out, _ = run(capsys, "inspect", OPT10_REF)
    assert code == 0
    assert f"canonical:   {OPT10}" in out
    assert f"reference:   {OPT10_REF}" in out
    for label in (
        "key:",
        "fingerprint:",
        "size:        7 nodes, depth 5",
        "latex:",
        "pretty:",
        "tree:",
        "I_{1e}",
    ):
        assert label in out
    assert "└─ decay" in out


def test_check_verdicts(capsys):
    code, out, _ = run(capsys, "check", "none ~ g")
    assert code == 0 and "verdict:   pass" in out and "flip:      false" in out
    code, out, _ = run(capsys, "check", "none ~ neg(g)")
    assert code == 0 and "flip:      true" in out
    code, out, _ = run(capsys, "check", "none ~ sub(g, g)", "--json")
    record = json.loads(out)
    assert record["passed"] is False and record["reason"] == "constant"


def test_sample_prints_valid_candidates(capsys):
    code, out, err = run(capsys, "sample", "-n", "3", "--seed", "1", "--json")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3
    assert all(json.loads(line)["passed"] for line in lines)
    assert "3 valid of" in err
    # same seed, same candidates
    assert run(capsys, "sample", "-n", "3", "--seed", "1", "--json")[1] == out


HOSTILE = [
    "__import__('os').system('touch {marker}')",
    "none ~ __import__('os').system('touch {marker}')",
    "lambda: open('{marker}', 'w')",
    "none ~ g.__class__.__bases__",
    'none ~ exec(\'open("{marker}", "w")\')',
    "(" * 200_000 + "g" + ")" * 200_000,
    "none ~ " + "neg(" * 5000 + "g" + ")" * 5000,
    "none ~ ｇ",  # fullwidth g
    "none ~ gа",  # Cyrillic a
    "none ~ frobnicate(g)",
    "Nest ~ [a1][g",
    "",
]


@pytest.mark.parametrize("command", ["inspect", "check"])
@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_candidates_are_rejected(capsys, tmp_path, command, text):
    marker = tmp_path / "pwned"
    code, out, err = run(capsys, command, text.format(marker=marker) if "{" in text else text)
    assert code == 1
    assert out == ""
    assert err.startswith("nos: error: ") and err.count("\n") == 1
    assert len(err) < 300
    assert not marker.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "-n", "0"],
        ["sample", "-n", "x"],
        ["sample", "--frob"],
        ["nope"],
        [],
        ["check"],
        ["sample", "--grammar", "missing_grammar"],
    ],
)
def test_bad_flags_are_one_line_exit_1(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("nos: error: ") and err.count("\n") == 1


def test_import_log_cli(capsys, tmp_path, reference_log):
    out_file = tmp_path / "run.jsonl"
    code, out, _ = run(capsys, "import-log", str(reference_log), "-o", str(out_file))
    assert code == 0
    records = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(records) == 3129
    assert sum(r["phase"] == "initial" and not r["failed"] for r in records) == 101
    assert "3129" in out.replace(",", "")


def test_import_log_bad_file(capsys, tmp_path):
    code, _, err = run(
        capsys, "import-log", str(tmp_path / "missing.log"), "-o", str(tmp_path / "x.jsonl")
    )
    assert code == 1 and err.startswith("nos: error: ") and err.count("\n") == 1
