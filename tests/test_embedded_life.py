"""pgq embedded status|stop, and the embedded server's stop after a killed holder (issue 17).

Real processes each start (or join) an embedded PostgreSQL in a folder of the
test's own, as a user's `pgq worker` would without PGQ_DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgq.db.embedded_life import embedded_status
from tests.processes import ROOT

pytestmark = pytest.mark.slow

HOLD = (
    "import sys, time, pgq; app = pgq.App(data_dir=sys.argv[1]); app.url; "
    "print('up', flush=True); time.sleep(float(sys.argv[2]))"
)


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}


def hold(data_dir: Path, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "up", process.stderr.read() if process.stderr else ""
    return process


def embedded(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgq", "embedded", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=60,
    )


def wait_stopped(data_dir: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while embedded_status(data_dir).running:
        assert time.monotonic() < deadline, "the embedded server did not stop"
        time.sleep(0.1)


def test_status_stop_and_a_killed_holder(tmp_path: Path) -> None:
    data_dir = tmp_path / "pgq-data"
    before = embedded(data_dir, "status")
    assert before.returncode == 0 and "not created yet" in before.stdout

    first = hold(data_dir, 120)
    try:
        status = json.loads(embedded(data_dir, "status", "--json").stdout)
        assert status["running"] and status["holders"] == [first.pid] and status["url"].startswith("postgresql://")
        text = embedded(data_dir, "status").stdout
        assert f"running (pid {status['pid']})" in text and f"used by {first.pid}" in text
        refused = embedded(data_dir, "stop")
        assert refused.returncode == 2 and f"in use by process(es) {first.pid}" in refused.stderr
        assert "--force" in refused.stderr
        first.send_signal(signal.SIGKILL)  # no exit handler runs: its pid stays listed
        first.wait()
        status = json.loads(embedded(data_dir, "status", "--json").stdout)
        assert status["running"] and status["holders"] == [] and status["gone"] == [first.pid]
    finally:
        first.kill()

    # The next process to join drops the dead pid, so its own exit stops the server.
    second = hold(data_dir, 0)
    second.wait(timeout=30)
    wait_stopped(data_dir)
    assert embedded_status(data_dir).gone == []

    third = hold(data_dir, 120)
    try:
        forced = embedded(data_dir, "stop", "--force")
        assert forced.returncode == 0 and "stopped" in forced.stdout
        assert not embedded_status(data_dir).running
        assert embedded(data_dir, "stop").stdout.strip().endswith("is not running")
    finally:
        third.kill()
        third.wait()
