"""`pgq worker` as a real process: draining, signals, several processes, and a
database that drops its connections or restarts underneath it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgq
from tests import pgservers
from tests.processes import APP, ROOT, WorkerProcess, count, wait_for

pytestmark = pytest.mark.slow


def test_drains_then_sigterm_lets_the_running_job_finish(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    ids = app.enqueue_many([pgq.JobSpec("record", {"n": i}) for i in range(50)])
    worker = start_worker("--concurrency", "5", "--log-format", "json", "--log-level", "DEBUG")
    wait_for(
        lambda: count(db, "select count(*) as n from pgq.job_history where status = 'completed'") == 50,
        60,
        "50 completed jobs",
    )
    slow = app.enqueue("sleepy", {"seconds": 1.5})
    wait_for(lambda: count(db, "select count(*) as n from runs where job_id = %s", slow), 30, "the slow job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    finished = app.get_job(slow)
    assert finished is not None and finished.status == "completed" and finished.result == "slept"
    assert db.execute("select status, stopped_at is not null as stopped from pgq.workers").fetchall() == [
        {"status": "stopped", "stopped": True}
    ]
    assert count(db, "select count(*) as n from runs") == 51
    assert all(app.get_job(i).status == "completed" for i in ids)  # type: ignore[union-attr]
    # --log-format json: every line is one JSON object; each outcome carries its fields.
    lines = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    completed = [entry for entry in lines if entry.get("event") == "job_completed"]
    assert len(completed) == 51
    assert {"job_id", "task", "queue", "attempt", "duration_ms", "time", "level"} <= set(completed[0])
    assert {entry["job_id"] for entry in completed} == {*ids, slow}
    # At INFO a worker logs no line per completed job, but counts them when it stops.
    assert all(entry["level"] == "debug" for entry in completed)
    summaries = [entry for entry in lines if entry.get("event") == "worker_summary"]
    assert sum(entry["jobs_completed"] for entry in summaries) == 51 and summaries[-1]["level"] == "info"
    app.close()


def test_sigterm_past_the_shutdown_timeout_returns_the_job(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    slow = app.enqueue("async_sleepy", {"seconds": 60})
    worker = start_worker("--shutdown-timeout", "0.5")
    wait_for(lambda: count(db, "select count(*) as n from runs where job_id = %s", slow), 30, "the job to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    returned = app.get_job(slow)
    assert returned is not None and returned.status == "pending"
    assert returned.attempts == 0 and returned.worker_id is None  # the attempt was given back
    assert [(e["type"], e["charged"]) for e in returned.errors] == [("Shutdown", False)]
    assert db.execute("select status from pgq.workers").fetchone() == {"status": "stopped"}
    assert "returned to the queue" in worker.output()
    app.close()


def test_second_sigint_stops_at_once(db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]) -> None:
    app = pgq.App(database_url)
    slow = app.enqueue("async_sleepy", {"seconds": 60})
    worker = start_worker("--shutdown-timeout", "120")
    wait_for(lambda: count(db, "select count(*) as n from runs where job_id = %s", slow), 30, "the job to start")
    worker.signal(signal.SIGINT)
    time.sleep(0.5)
    worker.signal(signal.SIGINT)
    assert worker.wait(15) == 0  # far less than the 120 s grace
    assert app.get_job(slow).status == "pending"  # type: ignore[union-attr]
    app.close()


def test_four_workers_run_each_of_5000_jobs_exactly_once(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    app = pgq.App(database_url)
    app.enqueue_many([pgq.JobSpec("record", {"n": i}) for i in range(5000)])
    workers = [start_worker("--concurrency", "8") for _ in range(4)]
    wait_for(lambda: count(db, "select count(*) as n from pgq.job_history") == 5000, 240, "5000 finished jobs")
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(30) == 0
    assert count(db, "select count(*) as n from runs") == 5000
    assert count(db, "select count(distinct job_id) as n from runs") == 5000
    odd = db.execute(
        "select id, status, attempts, errors from pgq.job_history where status <> 'completed' or attempts <> 1"
    ).fetchall()
    assert odd == []
    assert count(db, "select count(distinct pid) as n from runs") >= 2  # the work was shared
    app.close()


def test_survives_terminated_connections_and_a_restart(
    db: Any, database_url: str, pg_server: pgservers.Server, start_worker: Callable[..., WorkerProcess]
) -> None:
    if pg_server.name == "external":
        pytest.skip("cannot restart an external server")
    worker = start_worker()
    wait_for(lambda: count(db, "select count(*) as n from pgq.workers where status = 'running'"), 30, "the worker")
    dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]

    def run_one(n: int) -> None:
        app = pgq.App(database_url)
        job_id = app.enqueue("record", {"n": n})
        wait_for(lambda: (j := app.get_job(job_id)) is not None and j.status == "completed", 60, f"job {n}")
        app.close()

    run_one(1)
    for _ in range(3):  # a storm: every pgq session of this database, listener included
        db.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname = %s and application_name like 'pgq %%' and pid <> pg_backend_pid()",
            [dbname],
        )
        time.sleep(0.3)
    run_one(2)

    pgservers.pg_ctl(pg_server, "restart", "-m", "fast")
    run_one(3)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The listener is back: it holds a LISTEN session again.
        wait_for(
            lambda: conn.execute(
                "select count(*) from pg_stat_activity where datname = %s and application_name = 'pgq listener'",
                [dbname],
            ).fetchone()[0],  # type: ignore[index]
            30,
            "the listener to reconnect",
        )
    assert worker.process.poll() is None, worker.output()
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert "Traceback" not in worker.output()


def test_processes_supervisor_restarts_a_dead_child(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    supervisor = start_worker("--processes", "2", "--concurrency", "2")
    rows = wait_for(
        lambda: (
            db.execute("select pid from pgq.workers where status = 'running'").fetchall()
            if count(db, "select count(*) as n from pgq.workers where status = 'running'") == 2
            else None
        ),
        60,
        "two worker processes",
    )
    os.kill(rows[0]["pid"], signal.SIGKILL)
    wait_for(lambda: count(db, "select count(*) as n from pgq.workers") == 3, 60, "a replacement child")
    app = pgq.App(database_url)
    ids = app.enqueue_many([pgq.JobSpec("record", {"n": i}) for i in range(20)])
    wait_for(lambda: all(app.get_job(i).status == "completed" for i in ids), 60, "jobs on the restarted set")  # type: ignore[union-attr]
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0
    assert count(db, "select count(*) as n from pgq.workers where status = 'stopped'") == 2
    app.close()


@pytest.mark.parametrize(
    ("app_path", "message"),
    [
        ("no_such_module:app", "cannot import 'no_such_module'"),
        ("json:dumps", "json:dumps is a function, not a pgq.App"),
        ("tests.apps.recording:nothing", "has no attribute 'nothing'"),
        ("json", "must hold exactly one pgq.App"),
        ("a:b:c", "is not module:attribute"),
    ],
)
def test_bad_app_path_is_a_one_line_error(app_path: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgq", "worker", app_path, "--database-url", "postgresql://localhost/x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("pgq: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--concurrency", "0"], "must be at least 1"),
        (["--concurrency", "ten"], "expected a whole number"),
        (["--queues", "a b"], "queue must be 1-128 ASCII letters, digits, '_', '.', ':' or '-', got 'a b'"),
        (["--queues", ","], "expected queue names"),
        (["--shutdown-timeout", "-1"], "must be a finite number >= 0"),
        (["--poll-interval", "0"], "must be more than 0"),
    ],
)
def test_bad_worker_flags(flags: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pgq", "worker", APP, *flags], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_worker_runs_on_either_event_loop(
    db: Any, database_url: str, start_worker: Callable[..., WorkerProcess], loop: str
) -> None:
    """PGQ_EVENT_LOOP picks the loop (auto: uvloop when installed, which the test extra does)."""
    app = pgq.App(database_url)
    ids = [app.enqueue("record", {"n": i}) for i in range(20)]
    worker = start_worker("--log-level", "DEBUG", env={"PGQ_EVENT_LOOP": loop})
    wait_for(
        lambda: count(db, "select count(*) as n from pgq.job_history where status = 'completed'") == 20,
        60,
        "20 completed jobs",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert {j.id for j in app.list_jobs(status="completed", limit=50)} == set(ids)
    assert f"event loop {loop}" in worker.output()
    app.close()
