"""`nos search --resume` refuses a run created with other code or another grammar."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nos.cli import main
from nos.search.session import changes_since_creation, source_digest
from nos.search.store import load_run

SHAPE = [
    "--task",
    "fake",
    "--grammar",
    "tiny",
    "--particles",
    "2",
    "--steps",
    "1",
    "--children",
    "2",
    "--init-factor",
    "2",
    "--seed",
    "3",
    "--executor",
    "serial",
]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def interrupted(capsys, tmp_path) -> Path:
    """A run that ended with its ``done`` record cut off, as after a kill."""
    code, _, err = _run(capsys, "search", *SHAPE, "--name", "r", "--root", tmp_path)
    assert code == 0, err
    evals = tmp_path / "r" / "evaluations.jsonl"
    lines = evals.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["type"] == "done"
    evals.write_text("".join(lines[:-1]))
    return tmp_path


def _edit_config(run_dir: Path, section: str, key: str, value: str) -> None:
    path = run_dir / "config.toml"
    text = path.read_text()
    head, sep, body = text.partition(f"[{section}]\n")
    assert sep, f"no [{section}] in config.toml"
    body, n = re.subn(rf'(?m)^{key} = "[^"]*"', f'{key} = "{value}"', body, count=1)
    assert n == 1
    path.write_text(head + sep + body)


def test_a_new_run_records_what_the_guard_compares(interrupted):
    config = load_run("r", interrupted).config
    assert config["versions"]["nos_source"] == source_digest()
    assert config["grammar"]["digest"]
    assert changes_since_creation(config, config["grammar"]["digest"]) == []


@pytest.mark.parametrize(
    "section, key, label",
    [
        ("versions", "torch", "torch version"),
        ("versions", "nos", "nos version"),
        ("versions", "nos_source", "nos source"),
    ],
)
def test_resume_with_changed_code_is_refused_in_one_line(capsys, interrupted, section, key, label):
    _edit_config(interrupted / "r", section, key, "0.0.1-other")
    code, _, err = _run(capsys, "search", "--resume", "r", "--root", interrupted)
    assert code == 1 and err.count("\n") == 1 and err.startswith("nos: error:")
    assert f"{label} 0.0.1-other ->" in err and "--force" in err
    code, _, err = _run(capsys, "search", "--resume", "r", "--root", interrupted, "--force")
    assert code == 0, err
    assert load_run("r", interrupted).status == "finished"


def test_resume_with_a_changed_grammar_is_refused(capsys, interrupted):
    grammar = interrupted / "r" / "grammar.toml"
    grammar.write_text(grammar.read_text() + "\n# edited\n")
    code, _, err = _run(capsys, "search", "--resume", "r", "--root", interrupted)
    assert code == 1 and "grammar" in err and "--force" in err


def test_resume_with_the_same_code_goes_on(capsys, interrupted):
    code, out, err = _run(capsys, "search", "--resume", "r", "--root", interrupted)
    assert code == 0, err
    assert "finished" in out


def test_runs_of_older_versions_without_the_fields_still_resume(capsys, interrupted):
    path = interrupted / "r" / "config.toml"
    text = path.read_text()
    text = re.sub(r'(?m)^nos_source = "[^"]*"\n', "", text)
    text = re.sub(r'(?m)^digest = "[^"]*"\n', "", text)
    path.write_text(text)
    code, _, err = _run(capsys, "search", "--resume", "r", "--root", interrupted)
    assert code == 0, err
