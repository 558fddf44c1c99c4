"""app.wait / app.wait_async: a job's end, woken by LISTEN (issue 17, migration 0015).

The waits that must be woken by a NOTIFY run with the look-up backstop set to
far longer than their timeout (20 s), so that only a wake-up ends them early: a
lost one shows as a wait that lasted to its timeout (its last look then finds
the job ended), which WOKEN (10 s) tells apart with room to spare.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import psycopg
import pytest

import pgq
from pgq import waiting
from pgq.db.queries import query
from pgq.maintenance.sweeper import Sweeper
from tests.processes import pgq_cli
from tests.test_worker import job

WOKEN = 10.0


@pytest.fixture
def no_backstop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "BACKSTOP", 1000.0)


def waiters(conn: Any) -> list[dict[str, Any]]:
    return list(conn.execute("select job_id, pid from pgq.job_waiters").fetchall())


async def test_wait_returns_the_job_a_worker_finished_with_its_result(
    app: pgq.App, conn: Any, no_backstop: None
) -> None:
    @app.task
    async def double(n: int) -> int:
        await asyncio.sleep(0.2)
        return n * 2

    job_id = double.enqueue(n=21)
    async with app.worker(poll_interval=0.2):
        started = time.monotonic()
        done = await app.wait_async(job_id, timeout=20)
        assert time.monotonic() - started < WOKEN
    assert done.id == job_id and done.status == "completed" and done.result == 42
    assert waiters(conn) == [], "the waiter's row is taken away when it returns"


async def test_a_failed_job_is_returned_not_raised(app: pgq.App, no_backstop: None) -> None:
    @app.task(max_attempts=1)
    def broken() -> None:
        raise ValueError("no")

    job_id = broken.enqueue()
    async with app.worker(poll_interval=0.2):
        started = time.monotonic()
        done = await asyncio.to_thread(app.wait, job_id, 20)
        assert time.monotonic() - started < WOKEN
    assert done.status == "failed" and done.errors[-1]["type"] == "ValueError"


def test_a_job_that_already_ended_is_returned_at_once(app: pgq.App, conn: Any) -> None:
    job_id = app.enqueue("anything")
    app.cancel(job_id)
    assert app.wait(job_id, timeout=0).status == "cancelled"
    assert waiters(conn) == []


def test_the_wait_is_woken_by_the_move_to_history(app: pgq.App, conn: Any, no_backstop: None) -> None:
    job_id = app.enqueue("anything")
    threading.Timer(0.3, app.cancel, [job_id]).start()
    started = time.monotonic()
    assert app.wait(job_id, timeout=20).status == "cancelled"
    assert 0.3 <= time.monotonic() - started < WOKEN


def test_a_timeout_raises_and_leaves_the_job_alone(app: pgq.App, conn: Any) -> None:
    job_id = app.enqueue("anything")
    with pytest.raises(TimeoutError, match=f"job {job_id} is still pending after 0.3 s"):
        app.wait(job_id, timeout=0.3)
    assert job(app, job_id).status == "pending"
    assert waiters(conn) == []


async def test_wait_async_times_out_too(app: pgq.App, conn: Any) -> None:
    job_id = app.enqueue("anything")
    with pytest.raises(TimeoutError, match="still pending"):
        await app.wait_async(job_id, timeout=0.2)
    assert waiters(conn) == []


def test_bad_input_is_refused_before_any_wait(app: pgq.App) -> None:
    with pytest.raises(pgq.JobNotFound, match="no job with id 987654321"):
        app.wait(987654321, timeout=1)
    for timeout in (-1, float("nan"), "5", True):
        with pytest.raises(pgq.ConfigurationError, match="timeout"):
            app.wait(1, timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(pgq.ConfigurationError, match="a job id is a whole number"):
        app.wait("seven", timeout=1)  # type: ignore[arg-type]


def test_a_finish_that_has_not_committed_is_waited_for(app: pgq.App, database_url: str, no_backstop: None) -> None:
    """The race the settle step closes: a finish deleted the row and looked for waiters
    before this wait registered, then commits after the wait's first look."""
    job_id = app.enqueue("anything")
    with psycopg.connect(database_url) as finishing:
        rows = finishing.execute(
            query("job_cancel", "pgq").encode(), {"id": job_id, "cancel_channel": "pgq_cancel"}
        ).fetchall()
        assert rows == [("cancelled",)]  # moved to history, not committed: no waiter yet, so no NOTIFY
        threading.Timer(0.5, finishing.commit).start()
        started = time.monotonic()
        done = app.wait(job_id, timeout=20)
    assert done.status == "cancelled" and 0.4 <= time.monotonic() - started < WOKEN


def test_a_finish_notifies_only_while_someone_waits(app: pgq.App, database_url: str, conn: Any) -> None:
    quiet, heard = app.enqueue("anything"), app.enqueue("anything")
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("listen pgq_done")
        app.cancel(quiet)
        assert list(listener.notifies(timeout=0.5, stop_after=1)) == []
        conn.execute("insert into pgq.job_waiters (job_id) values (%s)", [heard])
        app.cancel(heard)
        assert [n.channel for n in listener.notifies(timeout=5, stop_after=1)] == ["pgq_done"]
    conn.execute("delete from pgq.job_waiters")


async def test_the_sweeper_removes_the_rows_of_sessions_that_are_gone(app: pgq.App, conn: Any) -> None:
    with psycopg.connect(conn.info.dsn, autocommit=True) as gone:
        gone.execute("insert into pgq.job_waiters (job_id) values (1)")
    conn.execute("insert into pgq.job_waiters (job_id) values (2)")  # this session is alive
    sweeper = Sweeper(app, worker_name="test")
    try:
        await sweeper.run_once()
    finally:
        await sweeper.close()
    assert [row["job_id"] for row in waiters(conn)] == [2]
    conn.execute("delete from pgq.job_waiters")


def test_behind_a_transaction_pooler_without_a_listen_url_the_wait_polls(database_url: str) -> None:
    app = pgq.App(database_url, pooler="transaction")
    try:
        job_id = app.enqueue("anything")
        threading.Timer(0.3, app.cancel, [job_id]).start()
        assert app.wait(job_id, timeout=20).status == "cancelled"
        with psycopg.connect(database_url, autocommit=True) as check:
            assert check.execute("select count(*) from pgq.job_waiters").fetchone() == (0,)
    finally:
        app.close()


@pytest.mark.slow
def test_pgq_jobs_wait_exits_by_how_the_job_ended(app: pgq.App, database_url: str) -> None:
    waiting_job = app.enqueue("anything")
    result = pgq_cli(database_url, "jobs", "wait", str(waiting_job), "--timeout", "0.5")
    assert result.returncode == 3 and f"job {waiting_job} is still pending after 0.5 s" in result.stderr
    app.cancel(waiting_job)
    result = pgq_cli(database_url, "jobs", "wait", str(waiting_job), "--json")
    assert result.returncode == 1 and json.loads(result.stdout)["status"] == "cancelled"
    result = pgq_cli(database_url, "jobs", "wait", "-3", "--timeout", "soon")
    assert result.returncode == 2 and "--timeout" in result.stderr
