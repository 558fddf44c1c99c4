"""`pgq bench` runs every scenario in its own schema and leaves the user's jobs alone.

It checks that the instrument works, not how fast anything is: speed is for
the benchmark itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq

pytestmark = pytest.mark.slow

SCENARIOS = (
    "enqueue, 1 thread",
    "enqueue, 8 threads",
    "enqueue_many, 1,000 per call",
    "drain, plain SQL, 1 per claim",
    "drain, plain SQL, 10 per claim",
    "drain, plain SQL, 100 per claim",
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
    # Each async drain says how it compares with the plain-SQL drain of the same batch.
    by_name = {row["scenario"]: row for row in report["results"]}
    for concurrency in (1, 10, 100):
        assert " x plain SQL (" in by_name[f"drain, async, concurrency {concurrency}"]["note"]
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


# ------------------------------------------------------------ benchmarks/compare.py's instrument

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def compare_rows(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import cmp.common
    import cmp.pgq_rows
    import cmp.redis_peers
    import cmp.targets
    import cmp.tight_loop

    return cmp


def test_tight_loop_runs_every_job_once_into_history(compare_rows: Any, empty_database_url: str) -> None:
    """compare.py's ceiling does the whole job life: two processes drain every job, each once,
    and move it to job_history with the database's timestamps its rate is taken from."""
    result = compare_rows.tight_loop.tight_drain(empty_database_url, 600, slots=10, processes=2)
    assert result.note == "" and result.jobs_per_s > 0, result
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("select count(*) from jobs").fetchone() == (0,)
        rows = conn.execute(
            "select id, status, attempts, started_at <= finished_at, args->>'i' from job_history order by id"
        ).fetchall()
    assert [row[0] for row in rows] == list(range(1, 601))
    assert {row[1:4] for row in rows} == {("completed", 1, True)}
    assert sorted(int(row[4]) for row in rows) == list(range(600))


def test_compare_pgq_row_drains_through_pgq_worker(compare_rows: Any, database_url: str) -> None:
    """The pgq rows run `pgq worker` and see the drain's end and rate in the database only."""
    result = compare_rows.pgq_rows.pgq_drain(database_url, 300, concurrency=20)
    assert result.note == "" and result.jobs_per_s > 0, result
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from pgq.jobs").fetchone() == (0,)
        assert conn.execute(
            "select count(*), count(distinct id) from pgq.job_history where task = 'noop' and status = 'completed'"
        ).fetchone() == (300, 300)


def test_compare_skips_a_peer_that_cannot_run(
    compare_rows: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(compare_rows.common.Skipped, match="no redis-server on PATH"):
        compare_rows.redis_peers.celery_drain(10)
    with pytest.raises(compare_rows.common.Skipped, match="no node/npm on PATH"):
        compare_rows.redis_peers.bullmq_drain(10)


def test_compare_targets_say_met_not_met_and_not_measured(compare_rows: Any) -> None:
    result = compare_rows.common.Result
    rows = compare_rows.targets.Rows(
        {
            "tight_10": [result(1000.0), result(1200.0)],
            "pgq_10": [result(900.0), result(1000.0)],
            "tight_100": [result(1000.0)],
            "pgq_100": [result(700.0)],
            "pgq_latency": [result(lags_ms=[0.5] * 98 + [3.0, 3.0])],
        }
    )
    found = {check.label: check for check in compare_rows.targets.checks(rows)}
    ten = found["drain, 10 slots: pgq / tight loop"]
    assert ten.met is True and ten.value == pytest.approx(950 / 1100)
    assert found["drain, 100 slots: pgq / tight loop"].met is False
    assert found["drain, 2 processes: pgq / tight loop"].met is None
    # Spread: pgq (100/950) is narrower than the tight loop (200/1100).
    assert found["stable, 10 slots: pgq's spread - the tight loop's"].met is True
    assert found["stable, 100 slots: pgq's spread - the tight loop's"].met is None
    assert found["idle latency p50 (ms)"].met is True
    assert found["idle latency p99 (ms)"].met is False
