"""`pgq bench` runs every scenario in its own schema and leaves the user's jobs alone.

It checks that the instrument works, not how fast anything is: speed is for
the benchmark itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pgq

pytestmark = pytest.mark.slow

SCENARIOS = (
    "enqueue, 1 thread",
    "enqueue, 8 threads",
    "enqueue_many, 1,000 per call",
    "drain, async, concurrency 1",
    "drain, async, concurrency 10",
    "drain, async, concurrency 100",
    "drain, sync handler, concurrency 10",
    "drain, 2 processes, concurrency 10",
    "drain, global limit 5, concurrency 10",
    "drain, 1,000 groups, concurrency 10",
    "latency, idle (200 jobs 20 ms apart)",
)


def test_bench_quick(database_url: str, conn: Any, tmp_path: Path) -> None:
    app = pgq.App(database_url)
    mine = app.enqueue("users_own_job", {"keep": True})
    app.close()
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgq",
            "bench",
            "--quick",
            "--jobs",
            "400",
            "--database-url",
            database_url,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    names = [row["scenario"] for row in report["results"]]
    for scenario in SCENARIOS:
        assert scenario in names, (scenario, names)
    assert any(name.startswith("latency, under load") for name in names)
    assert any(name.startswith("drain with 20,000 rows in history") for name in names)
    for row in report["results"]:
        if row["scenario"].startswith(("enqueue", "drain")):
            assert row["jobs_per_s"] and row["jobs_per_s"] > 0, row
    assert {"server_version", "fsync", "synchronous_commit", "shared_buffers"} <= set(report["server"])
    assert report["machine"]["cpus"] >= 1
    assert "SCENARIO" in result.stdout and "JOBS/S" in result.stdout
    # Its schema is gone, and the user's job is untouched.
    assert conn.execute("select to_regnamespace('pgq_bench') is null as gone").fetchone()["gone"]
    assert conn.execute("select task from pgq.jobs where id = %s", [mine]).fetchone() == {"task": "users_own_job"}


def test_bench_refuses_a_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgq", "bench", "--schema", "pgq", "--database-url", "postgresql://localhost/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "own schema pgq_bench" in result.stderr
