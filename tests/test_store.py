"""Run store: config round trip, append-only records, corrupt tails, the writer lock."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from nos.errors import NosError
from nos.search.report import candidate_at_rank
from nos.search.store import RunStore, list_runs, load_run, to_toml
from nos.symbolic.grammar import load_grammar

CONFIG = {
    "search": {
        "grammar": "tiny",
        "task": "fake",
        "seed": 3,
        "seed_from": ["zoo:adam"],
        "fake": {"fail_rate": 0.5},
    },
    "execution": {"workers": 2},
}


def make(tmp_path: Path, name="r1") -> RunStore:
    return RunStore.create(name, CONFIG, load_grammar("tiny").text, tmp_path)


def evaluation(i: int, fitness: float, text="none ~ g", fp=None) -> dict:
    return {
        "type": "eval",
        "cache_id": f"full:{fp or i}",
        "origin": f"p0/s0/c{i}/t0",
        "stage": "full",
        "candidate": text,
        "key": f"k{i}",
        "fingerprint": fp or f"f{i}",
        "size": 1,
        "status": "ok",
        "fitness": fitness,
        "elapsed_s": float(i),
    }


def test_toml_round_trip():
    data = {
        "a": {
            "s": 'quote " and \\ and é',
            "i": 3,
            "f": 0.25,
            "b": False,
            "l": [1, "x"],
            "skip": None,
            "sub": {"x": 1},
        }
    }
    assert tomllib.loads(to_toml(data)) == {
        "a": {
            "s": 'quote " and \\ and é',
            "i": 3,
            "f": 0.25,
            "b": False,
            "l": [1, "x"],
            "sub": {"x": 1},
        }
    }


def test_create_append_and_read_back(tmp_path):
    store = make(tmp_path)
    assert (tmp_path / "r1" / "grammar.toml").read_text() == load_grammar("tiny").text
    store.append(evaluation(0, 0.5))
    store.append_once({"type": "move", "origin": "p0/s0/move"})
    store.append_once({"type": "move", "origin": "p0/s0/move"})  # written once only
    store.checkpoint({"elapsed_s": 7.5, "particles": []})
    assert store.recorded("full:0")["fitness"] == 0.5
    store.close()
    run = load_run("r1", tmp_path)
    assert run.config["search"]["fake"] == {"fail_rate": 0.5}
    assert run.config["run"]["name"] == "r1"
    assert [r["type"] for r in run.records] == ["eval", "move"]
    assert run.status == "interrupted" and not run.warnings
    again = RunStore.resume("r1", tmp_path)
    assert again.elapsed_before() == 7.5 and again.recorded("full:0") is not None
    again.finish({"status": "finished"})
    again.close()
    assert load_run("r1", tmp_path).status == "finished"
    with pytest.raises(NosError, match="already exists"):
        make(tmp_path)
    with pytest.raises(NosError, match="bad run name"):
        make(tmp_path, "../escape")


def test_one_writer_at_a_time(tmp_path):
    store = make(tmp_path)
    assert load_run("r1", tmp_path).status == "running"
    with pytest.raises(NosError, match="another process"):
        RunStore.resume("r1", tmp_path)
    store.close()
    RunStore.resume("r1", tmp_path).close()


def test_corrupt_last_line_is_reported_skipped_and_moved_aside(tmp_path):
    store = make(tmp_path)
    store.append(evaluation(0, 0.5))
    store.append(evaluation(1, 0.7))
    store.close()
    path = tmp_path / "r1" / "evaluations.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"type": "eval", "cache_id": "full:9", "fitn')  # killed mid-write
    run = load_run("r1", tmp_path)
    assert len(run.evals) == 2
    assert len(run.warnings) == 1 and "evaluations.jsonl:3" in run.warnings[0]
    store = RunStore.resume("r1", tmp_path)
    assert store.warnings and store.recorded("full:9") is None
    store.append(evaluation(2, 0.6))
    store.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    assert "fitn" in (tmp_path / "r1" / "evaluations.jsonl.corrupt").read_text()
    assert not load_run("r1", tmp_path).warnings


def test_corrupt_inner_line_or_config_is_an_error(tmp_path):
    store = make(tmp_path)
    store.append(evaluation(0, 0.5))
    store.close()
    path = tmp_path / "r1" / "evaluations.jsonl"
    path.write_text("garbage\n" + path.read_text())
    with pytest.raises(NosError, match=r"evaluations\.jsonl:1: corrupt record"):
        load_run("r1", tmp_path)
    (tmp_path / "r1" / "config.toml").write_text("search = [")
    with pytest.raises(NosError, match="corrupt run configuration"):
        load_run("r1", tmp_path)
    with pytest.raises(NosError, match="no run named"):
        load_run("nope", tmp_path)


def test_list_runs_and_rank(tmp_path):
    store = make(tmp_path, "a")
    store.append(evaluation(0, 0.5, "none ~ g", fp="x"))
    store.append(evaluation(1, 0.9, "nest ~ mul(g, v_hat)", fp="y"))
    store.append(evaluation(2, 0.9, "nest ~ mul(v_hat, g)", fp="y"))  # same function
    store.close()
    make(tmp_path, "b").close()
    (tmp_path / "junk").mkdir()
    assert [r.name for r in list_runs(tmp_path)] == ["a", "b"]
    assert candidate_at_rank("a", 1, tmp_path).text == "nest ~ mul(g, v_hat)"
    assert candidate_at_rank(tmp_path / "a", 2).text == "none ~ g"
    with pytest.raises(NosError, match="no rank 3"):
        candidate_at_rank("a", 3, tmp_path)


def test_export_by_rank_keeps_the_flip(tmp_path, capsys):
    from nos.cli import main

    store = make(tmp_path, "a")
    flipped = evaluation(0, 0.9, "none ~ neg(g)", fp="x")
    flipped["flip"] = True
    store.append(flipped)
    store.append(evaluation(1, 0.5, "none ~ g", fp="y"))
    store.close()
    out = tmp_path / "best.py"
    argv = ["export", "a", "--rank", "1", "--root", str(tmp_path), "-o", str(out)]
    assert main(argv) == 0
    text = out.read_text()
    assert "flip=True" in text and "U = -g" in text
    assert main([*argv[:3], "2", *argv[4:], "--force"]) == 0
    assert "flip=False" in out.read_text()
    assert main([*argv[:3], "3", *argv[4:], "--force"]) == 1
    assert "no rank 3" in capsys.readouterr().err
