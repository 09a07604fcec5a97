"""The search-log reader (nos.reference.logs)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from nos.errors import NosError
from nos.reference.logs import ImportSummary, LogReader, import_log, read_log
from nos.symbolic.grammar import Grammar


@pytest.fixture(scope="module")
def imported(
    reference_log: Path, morgan: Grammar, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ImportSummary, Path]:
    out = tmp_path_factory.mktemp("import") / "run.jsonl"
    return import_log(reference_log, out, morgan), out


def test_import_counts(imported: tuple[ImportSummary, Path]):
    summary, _ = imported
    assert (summary.initial_ok, summary.initial_failed) == (101, 399)
    # 52 re-evaluations (2 failed) and 2,577 children (855 failed)
    assert (summary.particle_ok, summary.particle_failed) == (1772, 857)
    assert summary.records == 500 + 52 + 2577
    assert summary.distinct == 2657
    assert summary.unparsed == 0
    assert summary.restarts == 2
    assert summary.lines_read == 6265
    assert summary.malformed == 0


def test_import_file(imported: tuple[ImportSummary, Path]):
    summary, out = imported
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == summary.records
    assert not list(out.parent.glob(".*.tmp"))
    first = rows[0]
    assert first["reference"] == "None ~ tanh(g)/(1+|tanh(g)|)"
    assert first["canonical"] == "none ~ softsign(tanh(g))"
    assert (first["phase"], first["kind"], first["model"], first["failed"]) == (
        "initial",
        "init",
        0,
        False,
    )
    assert rows[1]["reference"] is None and rows[1]["failed"] and rows[1]["model"] == 1
    assert [r["model"] for r in rows if r["phase"] == "initial"] == list(range(500))
    assert all(r["kind"] != "chosen" for r in rows)
    assert not any(r["reference"] and r["reference"].endswith("FAILED") for r in rows)
    assert all((r["val_acc"] is None) == r["failed"] for r in rows)


def test_summary_text(imported: tuple[ImportSummary, Path]):
    summary, _ = imported
    text = str(summary)
    assert summary.lines() == text.splitlines()
    assert "101 trained, 399 failed" in text
    assert "1772 trained, 857 failed" in text
    assert len(summary.lines()) <= 6


def test_particle_phase(reference_log: Path, morgan: Grammar):
    records = list(read_log(reference_log, morgan, selections=True))
    reevals = [r for r in records if r.kind == "reeval"]
    assert [r.particle for r in reevals[:3]] == [1, 1, 1]
    assert [r.attempt for r in reevals[:4]] == [0, 1, 2, 2]
    assert sorted({r.particle for r in reevals}) == list(range(1, 51))
    chosen = [r for r in records if r.kind == "chosen"]
    assert len(chosen) == 250
    assert Counter(r.depth for r in chosen) == {d: 50 for d in range(1, 6)}
    children = [r for r in records if r.kind == "child"]
    assert {r.depth for r in children} == {1, 2, 3, 4, 5}
    opt10 = [r for r in records if r.canonical == "nest ~ i1e(i1e(decay(mul(a13, a2), g)))"]
    assert {r.kind for r in opt10} == {"child", "chosen"}
    assert all(r.momentum == "nest" for r in opt10)


SYNTHETIC = (
    "INFO:root:TRAINING INITIAL POPULATION\r\n"
    "INFO:root: MODEL 0/3 -> Val Acc: 0.5, Val Loss: 1.0, Time: 2.0, Fun: None ~ tanh(g)\r\n"
    "WARNING:tensorflow:something slow\r\n"
    "INFO:root: INIT MODEL ARCHITECTURE FAILED...\r\n"
    "INFO:root: MODEL 2/3 -> Val Acc: 0.25, Val Loss: 1.0, Time: 2.0, Fun: Mom ~ bogus(g)\r\n"
    "INFO:root:INIT PARTICLE 1/2 : None ~ tanh(g) : val: 0.6 - Time: 3.0\r\n"
    "INFO:root: Depth: 1/5\r\n"
    "INFO:root:    Nest ~ tanh(g) : FAILED\r\n"
    "INFO:root:    None ~ (g)+(v hat) val: 0.7 - Time: 4.0\r\n"
    "something else entirely\r\n"
    "INFO:root:  Chosen None ~ (g)+(v hat) : 0.7 - ACCUMULATIVE TIME: 10.0\r\n"
    "INFO:root:INIT PARTICLE 2/2 : None ~ g : FAILED\r\n"
    "\r\n"
)


def test_synthetic_log(tmp_path: Path, morgan: Grammar):
    log = tmp_path / "run.log"
    log.write_bytes(SYNTHETIC.encode())
    reader = LogReader(log, morgan, selections=True)
    records = list(reader.records())
    assert [r.kind for r in records] == [
        "init",
        "init",
        "init",
        "reeval",
        "child",
        "child",
        "chosen",
        "reeval",
    ]
    assert reader.malformed == 1 and reader.malformed_at == [10]
    bogus = records[2]
    assert bogus.canonical is None and bogus.momentum == "mom" and bogus.error
    failed_child = records[4]
    assert failed_child.reference == "Nest ~ tanh(g)" and failed_child.failed
    assert failed_child.val_acc is None and failed_child.depth == 1
    assert records[5].canonical == "none ~ add(g, v_hat)" and records[5].time_s == 4.0
    assert records[7].failed and records[7].particle == 2

    summary = import_log(log, tmp_path / "run.jsonl", morgan)
    assert summary.records == 7
    assert (summary.initial_ok, summary.initial_failed) == (2, 1)
    assert (summary.particle_ok, summary.particle_failed) == (2, 2)
    assert summary.distinct == 5 and summary.unparsed == 1
    assert summary.malformed == 1 and "unknown shape" in str(summary)


def test_import_refuses_to_overwrite_the_log(tmp_path: Path, morgan: Grammar):
    log = tmp_path / "run.log"
    log.write_text(SYNTHETIC, encoding="utf-8")
    with pytest.raises(NosError, match="overwrite"):
        import_log(log, log, morgan)
    with pytest.raises(NosError, match="no such log"):
        import_log(tmp_path / "missing.log", tmp_path / "x.jsonl", morgan)
    with pytest.raises(NosError):
        import_log(log, tmp_path / "no-such-dir" / "x.jsonl", morgan)
