"""The Slurm script renderer: arguments, one-line errors, and the rendered script run
against stand-in ``scontrol``/``srun``/``ray``/``nos`` commands that record their argv."""

from __future__ import annotations

import ast
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from nos.executors.slurm import main, render_sbatch

BASE = ["--nodes", "3", "--cpus-per-node", "16", "--time", "12:00:00", "--name", "cifar-s1"]
SEARCH = [
    "--task",
    "cifar10",
    "--data-dir",
    "/shared/my data",
    "--seed",
    "1",
    "--seed-from",
    "zoo:adam,it's",
]


def test_dry_run_prints_the_script(capsys):
    code = main(
        [
            *BASE,
            "--gpus-per-node",
            "4",
            "--gpus-per-eval",
            "0.5",
            "--cpus-per-eval",
            "2",
            "--partition",
            "gpu",
            "--setup",
            "source ~/venv/bin/activate",
            "--dry-run",
            "--",
            *SEARCH,
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "#!/bin/bash"
    for directive in (
        "--nodes=3",
        "--ntasks-per-node=1",
        "--cpus-per-task=16",
        "--time=12:00:00",
        "--gres=gpu:4",
        "--partition=gpu",
        "--job-name=cifar-s1",
    ):
        assert f"#SBATCH {directive}" in lines
    assert "source ~/venv/bin/activate" in lines
    assert "ray start --head" in out and "--num-cpus=16 --num-gpus=4 --block &" in out
    assert 'srun --nodes=2 --ntasks=2 --exclude="$head"' in out
    assert 'ray start --address="$RAY_ADDRESS"' in out
    fresh = next(line for line in lines if line.strip().startswith("nos search --task"))
    argv = shlex.split(fresh)
    assert argv[: 2 + len(SEARCH)] == ["nos", "search", *SEARCH]  # quoted, read back intact
    for flag, value in (
        ("--executor", "ray"),
        ("--address", "auto"),
        ("--name", "cifar-s1"),
        ("--gpus-per-eval", "0.5"),
        ("--cpus-per-eval", "2"),
    ):
        assert argv[argv.index(flag) + 1] == value
    assert "nos search --resume cifar-s1 --executor ray --address auto" in out
    assert subprocess.run(["bash", "-n"], input=out, text=True).returncode == 0


def test_one_node_has_no_worker_step():
    text = render_sbatch(nodes=1, cpus_per_node=8, time_limit="90", name="one")
    assert "ray start --head" in text and "--exclude" not in text
    assert "--gres" not in text and "--partition" not in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--nodes", "0"], "--nodes must be >= 1"),
        (["--nodes", "two"], "invalid int value"),
        (["--time", "soon"], "is not a Slurm time"),
        (["--name", "a b"], "use letters, digits"),
        (["--partition", "gpu;rm"], "--partition"),
        (["--gpus-per-eval", "0.5"], "needs --gpus-per-node"),
        (["--gpus-per-node", "1", "--gpus-per-eval", "2"], "more than a node's 1 GPUs"),
        (["--cpus-per-eval", "0"], "--cpus-per-eval must be positive"),
        (["--cpus-per-eval", "32"], "more than a node's 16 CPUs"),
        (["--port", "70000"], "--port must be in"),
        (["--", "--executor", "local"], "--executor is set by the script"),
        (["--", "--name=x"], "--name is set by the script"),
    ],
)
def test_bad_arguments_are_one_line(capsys, argv, message):
    own, rest = (argv[: argv.index("--")], argv[argv.index("--") :]) if "--" in argv else (argv, [])
    code = main([*BASE, *own, "--dry-run", *rest])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("nos: error:") and err.count("\n") == 1 and message in err, err


def test_missing_required_argument(capsys):
    assert main(["--nodes", "2", "--dry-run"]) == 1
    assert "required" in capsys.readouterr().err


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def slurm(tmp_path):
    """Stand-ins for the commands the script calls; each appends its argv to calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    # one write per call: background steps append at the same time
    record = (
        f'line=$(printf "%q " "$(basename "$0")" "$@"); echo "$line" >> {shlex.quote(str(log))}\n'
    )
    _stub(bin_dir, "scontrol", record + 'printf "node1\\nnode2\\nnode3\\n"\n')
    _stub(
        bin_dir,
        "srun",
        record + 'for a; do [ "$a" = hostname ] && echo "10.1.2.3 ::1"; done; exit 0\n',
    )
    for name in ("ray", "nos"):
        _stub(bin_dir, name, record)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node[1-3]",
    }
    return tmp_path, env, log


def _calls(log: Path) -> list[list[str]]:
    return [shlex.split(line) for line in log.read_text().splitlines()]


def test_rendered_script_runs_head_workers_then_the_search(slurm):
    tmp_path, env, log = slurm
    script = tmp_path / "job.sbatch"
    assert (
        main(
            [*BASE, "--root", str(tmp_path / "runs"), "-o", str(script), "--dry-run", "--", *SEARCH]
        )
        == 0
    )
    done = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    calls = _calls(log)
    srun = [c for c in calls if c[0] == "srun"]
    assert any("hostname" in c for c in srun)
    head = next(c for c in srun if "--head" in c)
    assert head[head.index("-w") + 1] == "node1" and "--node-ip-address=10.1.2.3" in head
    workers = next(c for c in srun if "--address=10.1.2.3:6379" in c)
    assert "--exclude=node1" in workers and "--nodes=2" in workers
    nos = [c for c in calls if c[0] == "nos"]
    assert len(nos) == 1 and nos[0][1 : 2 + len(SEARCH)] == ["search", *SEARCH]
    assert nos[0][nos[0].index("--address") + 1] == "auto"
    text = script.read_text()  # background steps log in any order; the script's is fixed
    assert text.index("ray start --head") < text.index("--exclude") < text.index("    nos search")

    # submitted again once the run exists: it resumes the run instead of starting over
    (tmp_path / "runs" / "cifar-s1").mkdir(parents=True)
    (tmp_path / "runs" / "cifar-s1" / "config.toml").write_text("")
    log.unlink()
    done = subprocess.run(
        ["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    nos = [c for c in _calls(log) if c[0] == "nos"]
    assert nos[0][:4] == ["nos", "search", "--resume", "cifar-s1"]


def test_submit_calls_sbatch(slurm, capsys, monkeypatch):
    tmp_path, env, _log = slurm
    bin_dir = tmp_path / "bin"
    _stub(
        bin_dir,
        "sbatch",
        f'cp "$1" {shlex.quote(str(tmp_path / "seen"))}\necho "Submitted batch job 42"\n',
    )
    monkeypatch.setenv("PATH", env["PATH"])
    assert main([*BASE, "-o", str(tmp_path / "job.sbatch")]) == 0
    assert "Submitted batch job 42" in capsys.readouterr().out
    assert (tmp_path / "seen").read_text() == (tmp_path / "job.sbatch").read_text()
    (bin_dir / "sbatch").write_text(
        "#!/bin/bash\necho 'sbatch: error: invalid partition' >&2\nexit 1\n"
    )
    assert main(BASE) == 1
    assert capsys.readouterr().err.endswith("sbatch: error: invalid partition\n")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(BASE) == 1
    assert "sbatch not found" in capsys.readouterr().err


def test_nothing_but_the_ray_executor_imports_ray():
    """Ray is an optional extra: only nos/executors/ray.py may import it (even lazily)."""
    root = Path(__file__).resolve().parents[1] / "nos"
    importers = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "ray" or n.startswith("ray.") for n in names):
                importers.append(path.relative_to(root.parent).as_posix())
    assert sorted(set(importers)) == ["nos/executors/ray.py"]


def test_the_documented_script_is_the_rendered_one(capsys):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cluster.md").read_text()
    start = doc.index("```bash\n") + len("```bash\n")
    argv = [
        "--nodes",
        "4",
        "--cpus-per-node",
        "32",
        "--gpus-per-node",
        "4",
        "--time",
        "24:00:00",
        "--partition",
        "gpu",
        "--name",
        "c10-s0",
        "--gpus-per-eval",
        "0.5",
        "--cpus-per-eval",
        "4",
        "--setup",
        "source ~/venv/bin/activate",
        "--dry-run",
        "--",
        "--task",
        "cifar10",
        "--data-dir",
        "/shared/data",
        "--seed",
        "0",
    ]
    assert main(argv) == 0
    assert capsys.readouterr().out == doc[start : doc.index("```", start)]
