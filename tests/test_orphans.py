"""Workers do not outlive a driver killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 of stat: the parent pid
            out.append(int(stat.parent.name))
    return out


def _is_worker(pid: int) -> bool:
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped running; only its exit status is left


def test_workers_exit_within_two_seconds_of_a_sigkilled_driver(tmp_path):
    fake = json.dumps({"sleep_s": 30})  # every evaluation outlasts the test
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nos",
            "search",
            "--task",
            "fake",
            "--grammar",
            "tiny",
            "--workers",
            "2",
            "--fake",
            fake,
            "--root",
            str(tmp_path),
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = [p for p in _children(driver.pid) if _alive(p) and _is_worker(p)]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the driver never started its workers"
        # The two initial candidates go out at once; give the workers time to start them
        # (a worker that waits for a job would also end when the pipe closes).
        time.sleep(5.0)
        assert all(_alive(p) for p in workers)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        killed_at = time.monotonic()
        while any(_alive(p) for p in workers) and time.monotonic() - killed_at < 2.0:
            time.sleep(0.05)
        gone_after = time.monotonic() - killed_at
        assert not any(_alive(p) for p in workers), f"workers alive {gone_after:.1f}s later"
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid in workers:  # the test's own cleanup, whatever happened
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
