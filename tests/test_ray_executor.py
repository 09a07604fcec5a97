"""The Ray executor on a real local Ray cluster (loopback only): same search as the serial
executor, a killed worker loses nothing, resume of a Ray run, one-line errors."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nos.cli import main
from nos.search.fake import fake_fitness
from nos.search.report import hall_of_fame
from nos.search.store import load_run

if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed (pip install 'nos[ray]')", allow_module_level=True)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

FAKE = "nos.search.fake:evaluate"
SHAPE = [
    "--task",
    "fake",
    "--grammar",
    "tiny",
    "--particles",
    "3",
    "--steps",
    "3",
    "--children",
    "3",
    "--init-factor",
    "3",
    "--seed",
    "7",
]
#: Ray binds to the machine's network address unless told that this is a one-machine
#: cluster; the tests use the loopback interface only.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture(scope="module")
def cluster():
    """A real Ray instance with 2 CPUs on 127.0.0.1 for this module; its GCS address."""
    saved = {k: os.environ.get(k) for k in LOOPBACK_ENV}
    os.environ.update(LOOPBACK_ENV)
    import ray

    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False  # in case ray was imported before
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=80 * 2**20,
        logging_level=logging.WARNING,
        # idle workers of the test process survive the drivers the tests start and kill
        _system_config={"num_workers_soft_limit": 8},
    )
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), address
    yield address
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def summary(root: Path, name: str):
    """Hall of fame, evaluations and the GA's decisions of a run (no timings)."""
    data = load_run(name, root)
    evals = sorted(
        (r["cache_id"], r["candidate"], r["status"], r["fitness"], r["parent"]) for r in data.evals
    )
    decisions = sorted(
        json.dumps(r, sort_keys=True)
        for r in data.records
        if r.get("type") in ("selection", "move", "rejections")
    )
    return hall_of_fame(data.records, 10), evals, decisions


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The serial executor's run of SHAPE with a fake task that fails 30% of candidates."""
    root = tmp_path_factory.mktemp("serial")
    code = main(
        [
            "search",
            *SHAPE,
            "--executor",
            "serial",
            "--name",
            "ref",
            "--root",
            str(root),
            "--no-progress",
            "--fake",
            json.dumps({"fail_rate": 0.3}),
        ]
    )
    assert code == 0
    return summary(root, "ref")


def test_ray_search_matches_serial(cluster, reference, capsys, tmp_path):
    fake = {"fail_rate": 0.3, "sleep_s": 0.05, "sleep_jitter": 1.0}  # out-of-order results
    code, out, err = run(
        capsys,
        "search",
        *SHAPE,
        "--executor",
        "ray",
        "--address",
        cluster,
        "--name",
        "r",
        "--root",
        tmp_path,
        "--no-progress",
        "--fake",
        json.dumps(fake),
    )
    assert code == 0, err
    assert "run r: finished" in out and "ray executor" in err
    hof, evals, decisions = summary(tmp_path, "r")
    assert (hof, evals, decisions) == reference
    workers = {r["worker"] for r in load_run("r", tmp_path).evals}
    assert len(workers) == 2  # both Ray workers (host/pid) took evaluations
    config = load_run("r", tmp_path).config
    assert config["execution"]["executor"] == "ray"
    assert config["execution"]["device"] == "cpu" and config["versions"]["ray"] != "absent"


def test_killed_worker_loses_nothing(cluster, reference, capsys, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    fake = {"fail_rate": 0.3, "sleep_s": 0.1, "pid_dir": str(pids)}
    killed: list[str] = []
    stop = threading.Event()

    def killer():  # SIGKILL two workers in the middle of their evaluations
        while not stop.is_set() and len(killed) < 2:
            for pid_file in list(pids.glob("*.pid")):
                try:
                    identity = pid_file.read_text()
                    os.kill(int(pid_file.stem), signal.SIGKILL)
                except (OSError, ValueError):
                    continue
                killed.append(identity)
                time.sleep(0.3)
                break
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        code, _out, err = run(
            capsys,
            "search",
            *SHAPE,
            "--executor",
            "ray",
            "--name",
            "k",
            "--root",
            tmp_path,
            "--no-progress",
            "--fake",
            json.dumps(fake),
        )
    finally:
        stop.set()
        thread.join(timeout=5)
    assert code == 0, err
    assert len(killed) == 2, killed
    # the killed evaluations were submitted again: the run equals the undisturbed one
    assert summary(tmp_path, "k") == reference
    by_identity = {r["fingerprint"]: r for r in load_run("k", tmp_path).evals}
    assert all(by_identity[i]["status"] in ("ok", "failed_threshold") for i in killed)


def test_retries_are_bounded_and_timeouts_enforced(cluster, tmp_path):
    from nos.executors.ray import RayExecutor

    ex = RayExecutor(FAKE, address=cluster, retries=1, timeout_s=30)
    try:
        assert ex.workers == 2
        ex.submit("crash", {"candidate": "c", "fake": {"crash_rate": 1.0}})
        ex.submit("raise", {"candidate": "r", "fake": {"error_rate": 1.0}})
        ex.submit("slow", {"candidate": "s", "fake": {"sleep_s": 60}}, timeout_s=1.0)
        ex.submit("ok", {"candidate": "o", "stage": "full", "seeds": [3]})
        out = {}
        end = time.monotonic() + 40
        while len(out) < 4 and time.monotonic() < end:
            out.update((o.job_id, o) for o in ex.wait(timeout=1.0))
        assert sorted(out) == ["crash", "ok", "raise", "slow"]
        crash = out["crash"].result
        assert crash["status"] == "error" and "worker lost on 2 attempt(s)" in crash["reason"]
        assert "WorkerCrashedError" in crash["reason"] and ex.retried == 1
        assert out["raise"].result["status"] == "error"  # the candidate's error: no retry
        assert "ValueError" in out["raise"].result["reason"]
        assert out["slow"].result["status"] == "timeout"
        assert out["ok"].result["fitness"] == fake_fitness("o", "full", 3)
        assert re.fullmatch(r".+/\d+", out["ok"].worker)  # host/pid of the Ray worker
        assert ex.pending == 0
    finally:
        ex.close()


def _driver(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "nos", "search", *argv, "--no-progress"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **LOOPBACK_ENV},
        )


def test_resume_of_a_ray_run_after_the_driver_dies(cluster, reference, capsys, tmp_path):
    fake = json.dumps({"fail_rate": 0.3, "sleep_s": 0.1})
    log = tmp_path / "driver.stderr"
    proc = _driver(
        [
            *SHAPE,
            "--executor",
            "ray",
            "--address",
            cluster,
            "--name",
            "d",
            "--root",
            str(tmp_path),
            "--fake",
            fake,
        ],
        log,
    )
    evals = tmp_path / "d" / "evaluations.jsonl"
    deadline = time.monotonic() + 40
    while proc.poll() is None and time.monotonic() < deadline:
        if evals.exists() and evals.read_bytes().count(b'"type":"eval"') >= 12:
            break
        time.sleep(0.02)
    assert proc.poll() is None, log.read_text()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = evals.read_bytes().count(b'"type":"eval"')
    assert 12 <= done_before < len(reference[1])
    code, out, err = run(
        capsys,
        "search",
        "--resume",
        "d",
        "--executor",
        "ray",
        "--address",
        cluster,
        "--root",
        tmp_path,
        "--no-progress",
    )
    assert code == 0, err
    assert "from the record" in out and "run d: finished" in out
    assert summary(tmp_path, "d") == reference  # nothing lost, nothing trained twice


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def not_ray():
    """An HTTP-ish server on a loopback port: it answers, but is no Ray head."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--address", "127.0.0.1:{free}"], "cannot reach a Ray cluster at 127.0.0.1:"),
        (["--address", "{not_ray}"], "not a Ray head node"),
        (["--address", "nohost"], "bad Ray address"),
        (["--gpus-per-eval", "0.25"], "has no GPU"),
        (["--cpus-per-eval", "64"], "no node of the Ray cluster"),
        (["--cpus-per-eval", "0"], "expected a positive number"),
        (["--cpus-per-eval", "-1"], "expected a positive number"),
        (["--gpus-per-eval", "-0.5"], "expected a number >= 0"),
        (["--gpus-per-eval", "1.5"], "above 1 must be a whole number"),
    ],
)
def test_bad_ray_input_is_one_line(cluster, not_ray, capsys, tmp_path, extra, message):
    extra = [e.format(free=_free_port(), not_ray=not_ray) for e in extra]
    t0 = time.monotonic()
    code, _, err = run(
        capsys, "search", *SHAPE, "--executor", "ray", *extra, "--root", tmp_path, "--no-progress"
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert message in lines[-1] and lines[-1].startswith("nos: error:"), err
    assert all(line.startswith("run ") for line in lines[:-1]), err  # no traceback
    assert time.monotonic() - t0 < 15  # a bad address does not hang


def test_ray_flags_need_the_ray_executor(capsys, tmp_path):
    code, _, err = run(
        capsys, "search", *SHAPE, "--executor", "local", "--address", "auto", "--root", tmp_path
    )
    assert code == 1 and "--address applies to --executor ray only" in err


def test_without_ray_the_error_says_how_to_install(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from nos.cli import main\n"
        f"sys.exit(main(['search', *{SHAPE!r}, '--executor', 'ray', '--root', "
        f"{str(tmp_path)!r}, '--no-progress']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last == "nos: error: the ray executor needs Ray: pip install 'nos[ray]'"
    assert "Traceback" not in out.stderr


def test_probe_accepts_the_ray_head_and_capacity_counts_packed_gpus(cluster):
    from nos.executors.ray import _capacity, probe_address

    probe_address(cluster)  # no error: a Ray head answers there
    nodes = [
        {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
        {"Alive": True, "Resources": {"CPU": 4.0}},
        {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
    ]
    assert _capacity(nodes, 1.0, 0.0) == 20
    assert _capacity(nodes, 1.0, 0.25) == 8  # four per GPU on the one live GPU node
    assert _capacity(nodes, 4.0, 0.25) == 4  # then CPUs are the limit
    assert _capacity(nodes, 0.5, 1.0) == 2


def test_max_calls_recycles_worker_processes(cluster):
    from nos.executors.ray import RayExecutor

    ex = RayExecutor(FAKE, address=cluster, max_calls=1)  # what GPU work gets by default
    try:
        workers = []
        for i in range(3):  # one at a time: 2 idle workers would serve 3 jobs with a repeat
            ex.submit(f"j{i}", {"candidate": f"m{i}"})
            out = []
            while not out:
                out = ex.wait(timeout=1.0)
            assert out[0].result["status"] == "ok"
            workers.append(out[0].worker)
        assert len(set(workers)) == 3, workers  # a fresh process for every evaluation
    finally:
        ex.close()
