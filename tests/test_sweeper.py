"""The sweeper's passes, called directly (``run_once``) on rows made to look
stuck or old by back-dating them: rescue, election, retention, metrics."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

import pgq
from pgq.db.connection import run_async
from pgq.db.flows import drive_async
from pgq.maintenance.retention import PRUNE_BATCH, prune_history_flow
from pgq.maintenance.sweeper import Sweeper
from tests.processes import sweep_until_leader
from tests.rows import add_history, add_worker


@pytest.fixture
async def sweeper(app: pgq.App) -> AsyncIterator[Sweeper]:
    sweeping = Sweeper(app, worker_name="test")
    yield sweeping
    await sweeping.close()


def add_running_job(
    conn: Any,
    worker_id: uuid.UUID,
    *,
    attempts: int = 1,
    max_attempts: int = 3,
    started_age: float = 60,
    timeout: float | None = None,
    errors: str = "[]",
) -> int:
    row = conn.execute(
        "insert into pgq.jobs (task, status, attempts, max_attempts, worker_id, started_at, timeout, errors) "
        "values ('work', 'running', %s, %s, %s, now() - make_interval(secs => %s), make_interval(secs => %s), %s) "
        "returning id",
        [attempts, max_attempts, worker_id, started_age, timeout, errors],
    ).fetchone()
    return int(row["id"])


async def test_dead_workers_jobs_are_retried_or_failed(app: pgq.App, conn: Any, sweeper: Sweeper) -> None:
    alive = add_worker(conn, heartbeat_age=1)
    dead = add_worker(conn, heartbeat_age=120)
    safe = add_running_job(conn, alive)
    retried = add_running_job(conn, dead, attempts=1)
    # Its first crash: nothing says it killed the worker, so its last attempt is given back.
    last_attempt = add_running_job(conn, dead, attempts=3, max_attempts=3)
    # Its second: given back too (bystanders rescued together are often claimed together).
    second = add_running_job(
        conn, dead, attempts=3, max_attempts=3, errors='[{"attempt": 2, "type": "WorkerDied", "charged": false}]'
    )
    # It died twice before (once alone, in a child): now the attempt counts, and it was the last.
    exhausted = add_running_job(
        conn,
        dead,
        attempts=3,
        max_attempts=3,
        errors='[{"attempt": 1, "type": "WorkerDied", "charged": false}, {"attempt": 2, "type": "Crashed"}]',
    )

    result = await sweeper.run_once()
    assert result.leader and result.dead_workers == [str(dead)]
    assert (result.retried, result.failed) == (3, 1)
    statuses = dict(
        conn.execute("select id, status from pgq.workers").fetchall()
        and [(r["id"], r["status"]) for r in conn.execute("select id, status from pgq.workers")]
    )
    assert statuses == {alive: "running", dead: "dead"}
    assert app.get_job(safe).status == "running"  # type: ignore[union-attr]

    back = app.get_job(retried)
    assert back is not None and back.status == "pending" and back.worker_id is None and back.attempts == 0
    assert back.errors[-1]["type"] == "WorkerDied" and "worker died" in back.errors[-1]["message"]
    assert back.errors[-1]["charged"] is False and "attempt given back" in back.errors[-1]["message"]
    again = app.get_job(last_attempt)
    assert again is not None and again.status == "pending" and again.attempts == 2
    assert again.errors[-1]["message"].endswith("; a first crash: attempt given back")
    twice = app.get_job(second)
    assert twice is not None and twice.status == "pending" and twice.attempts == 2
    assert twice.errors[-1]["charged"] is False
    assert twice.errors[-1]["message"].endswith(
        "; a second crash: attempt given back, and from now on it runs alone in a child process"
    )
    failed = app.get_job(exhausted)
    assert failed is not None and failed.status == "failed" and failed.attempts == 3
    assert failed.errors[-1]["type"] == "WorkerDied" and "charged" not in failed.errors[-1]

    # A late finish from the dead worker is refused: the fenced statement matches nothing.
    late = conn.execute(
        "select count(*) as n from pgq.jobs where id = %s and worker_id = %s and status = 'running'", [retried, dead]
    ).fetchone()
    assert late["n"] == 0


async def test_overrunning_job_on_a_live_worker_is_rescued(app: pgq.App, conn: Any, sweeper: Sweeper) -> None:
    alive = add_worker(conn, heartbeat_age=1)
    overran = add_running_job(conn, alive, timeout=5, started_age=60)  # 5 s timeout + 10 s grace < 60 s
    within = add_running_job(conn, alive, timeout=5, started_age=12)  # still inside the grace
    result = await sweeper.run_once()
    assert (result.retried, result.failed, result.dead_workers) == (1, 0, [])
    rescued = app.get_job(overran)
    assert rescued is not None and rescued.status == "pending" and rescued.errors[-1]["type"] == "Timeout"
    assert app.get_job(within).status == "running"  # type: ignore[union-attr]


def released(conn: Any, worker: uuid.UUID) -> bool:
    return conn.execute("select released_at is not null as r from pgq.workers where id = %s", [worker]).fetchone()["r"]


def age_stop(conn: Any, worker: uuid.UUID, seconds: float) -> None:
    """The worker stopped (or was declared dead) ``seconds`` ago."""
    conn.execute(
        "update pgq.workers set stopped_at = now() - make_interval(secs => %s) where id = %s", [seconds, worker]
    )


async def test_a_gone_worker_is_released_once_past_its_claims_with_nothing_running(
    app: pgq.App, conn: Any, sweeper: Sweeper
) -> None:
    """No index keeps a worker's jobs (migration 0022): the rescue scans jobs for a gone
    worker's until no claim of it can still be in flight (claim_settle) and none of its
    jobs is left running; then it is released and no longer scanned for."""
    settle = app.settings.claim_settle
    stopped = add_worker(conn, status="stopped", heartbeat_age=1)
    age_stop(conn, stopped, 1)
    # A stop that left a job running (an outcome it could not write), claimed before the stop.
    left = add_running_job(conn, stopped, started_age=60)
    idle = add_worker(conn, status="stopped", heartbeat_age=1)
    age_stop(conn, idle, 1)

    first = await sweeper.run_once()
    assert (first.retried, first.released_workers) == (1, 0)  # neither is past its claims yet
    back = app.get_job(left)
    assert back is not None and back.status == "pending" and back.errors[-1]["type"] == "WorkerDied"
    assert not released(conn, stopped) and not released(conn, idle)

    # Past the settle time: a job that appeared late (a claim in flight at the stop) is
    # found, and the worker stays unreleased until it is rescued.
    age_stop(conn, stopped, settle + 1)
    age_stop(conn, idle, settle + 1)
    late = add_running_job(conn, stopped, started_age=settle + 2)
    locker = await _conn(app.url)
    try:
        await locker.execute("begin")
        await locker.execute("select 1 from pgq.jobs where id = %s for update", [late])
        blocked = await sweeper.run_once()  # the late job is locked by someone: skipped, so not released
        assert (blocked.retried, blocked.released_workers) == (0, 1)
        assert not released(conn, stopped) and released(conn, idle)
    finally:
        await locker.execute("rollback")
        await locker.close()
    third = await sweeper.run_once()
    assert (third.retried, third.released_workers) == (1, 1)
    assert released(conn, stopped) and app.get_job(late).status == "pending"  # type: ignore[union-attr]


async def test_a_worker_row_is_kept_while_a_job_runs_under_it(app: pgq.App, conn: Any, sweeper: Sweeper) -> None:
    """A gone worker's row is how the rescue finds its jobs: retention keeps it while
    one of them runs, however old (app.prune runs no rescue)."""
    old = add_worker(conn, status="dead", heartbeat_age=2 * 86400)
    holding = add_running_job(conn, old, started_age=2 * 86400)
    assert app.prune()["workers"] == 0
    assert conn.execute("select count(*) as n from pgq.workers where id = %s", [old]).fetchone()["n"] == 1
    result = await sweeper.run_once()  # rescues the job, then releases the worker, then prunes it
    assert (result.retried, result.released_workers, result.pruned.workers) == (1, 1, 1)
    assert app.get_job(holding).status == "pending"  # type: ignore[union-attr]


async def test_no_deaths_declared_right_after_an_outage(app: pgq.App, conn: Any, sweeper: Sweeper) -> None:
    stale = add_worker(conn, heartbeat_age=120)
    sweeper.on_error()  # the sweeper's own pass failed: the database was away
    result = await sweeper.run_once()
    assert result.leader and result.dead_workers == []
    assert sweeper.in_outage_grace()
    assert conn.execute("select status from pgq.workers where id = %s", [stale]).fetchone()["status"] == "running"


async def test_one_sweeper_at_a_time_and_takeover(app: pgq.App, database_url: str) -> None:
    first, second = Sweeper(app, worker_name="a"), Sweeper(app, worker_name="b")
    try:
        assert (await first.run_once()).leader
        assert not (await second.run_once()).leader
        assert not (await second.run_once()).leader
        await first.close()  # the leader dies: its session ends, so does its lock
        # The server ends the closed session a moment after the client hung up: the
        # next sweeps (one per PGQ_SWEEP_INTERVAL in a worker) take over once it has.
        await sweep_until_leader(second, "the second sweeper, after the leader's exit")
        # The lock session has a server-side idle timeout, so a half-open leader cannot hold it forever.
        session = await second.election.connection()
        timeout = await (await session.execute("show idle_session_timeout")).fetchone()
        assert timeout is not None and timeout["idle_session_timeout"] not in ("0", "0ms")
    finally:
        await first.close()
        await second.close()


def finish(conn: Any, count: int, status: str, age_days: float, queue: str = "default") -> None:
    add_history(
        conn, count, status=status, queue=queue, finished=f"now() - make_interval(days => {age_days})", run=1, wait=1
    )


def history_counts(conn: Any) -> dict[str, int]:
    rows = conn.execute("select status, count(*) as n from pgq.job_history group by status").fetchall()
    return {row["status"]: row["n"] for row in rows}


async def test_retention_deletes_only_what_is_due_in_batches(database_url: str, conn: Any) -> None:
    app = pgq.App(database_url, retention=7 * 86400, retention_failed=30 * 86400)
    finish(conn, 2500, "completed", age_days=8)  # due
    finish(conn, 10, "completed", age_days=6)  # kept
    finish(conn, 20, "failed", age_days=8)  # kept: failed jobs are kept 30 days
    finish(conn, 5, "failed", age_days=31)  # due
    finish(conn, 7, "cancelled", age_days=8)  # due
    async with await _conn(database_url) as aconn:
        # A bounded pass deletes at most max_batches batches.
        flow = prune_history_flow(app.schema, app.settings, max_batches=2)
        assert await drive_async(flow, lambda sql, p: run_async(aconn, sql, p)) == (2 * PRUNE_BATCH, 0, None)
    counts = history_counts(conn)
    assert counts["completed"] + counts.get("failed", 0) + counts.get("cancelled", 0) == 2542 - 2 * PRUNE_BATCH
    pruned = app.prune()  # `pgq prune`: to the end
    assert pruned["jobs"] == 2512 - 2 * PRUNE_BATCH
    assert history_counts(conn) == {"completed": 10, "failed": 20}
    app.close()


def leftovers(conn: Any) -> None:
    """One row of every kind retention deletes, and one it keeps beside it."""
    finish(conn, 2, "completed", age_days=10)
    add_worker(conn, status="stopped", heartbeat_age=2 * 86400)
    conn.execute(
        "insert into pgq.queue_groups (queue, group_key, rate_tat, last_served_at) values"
        " ('q', 'idle', null, now() - interval '2 hours'), ('q', 'recent', null, now()) on conflict do nothing"
    )
    conn.execute(
        "insert into pgq.metrics (at, queue, interval_seconds)"
        " values (now() - interval '60 days', 'q', 1), (now(), 'q', 1)"
    )
    conn.execute(
        "insert into pgq.job_keys (queue, key, job_id, expires_at) values"
        " ('q', 'spent', 1, now() - interval '2 days'), ('q', 'held', 1, now() + interval '1 day')"
        " on conflict do nothing"
    )
    conn.execute("insert into pgq.job_waiters (job_id, pid) values (1, 2147483647)")  # no such session
    conn.execute("insert into pgq.job_logs (job_id, attempt, at, level, message) values (-1, 1, now(), 'info', 'gone')")


PRUNED_ONE_OF_EACH = {
    "jobs": 2,
    "workers": 1,
    "groups": 1,
    "metrics": 1,
    "keys": 1,
    "waiters": 1,
    "logs": 1,
    "partitions": 0,
}


async def test_app_prune_and_a_sweeper_pass_delete_the_same(database_url: str, app: pgq.App, conn: Any) -> None:
    leftovers(conn)
    sweeping = Sweeper(app, worker_name="test")
    try:
        assert (await sweeping.run_once()).pruned.as_dict() == PRUNED_ONE_OF_EACH
    finally:
        await sweeping.close()
    leftovers(conn)
    assert app.prune() == PRUNED_ONE_OF_EACH
    kept = conn.execute(
        "select (select count(*) from pgq.queue_groups) as groups, (select count(*) from pgq.job_keys) as keys,"
        " (select count(*) from pgq.metrics where at > now() - interval '1 day' and queue = 'q') as metrics"
    ).fetchone()
    assert kept == {"groups": 1, "keys": 1, "metrics": 2}  # 'recent', 'held' and both recent metrics


async def _conn(url: str) -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(url, autocommit=True)


async def test_old_worker_rows_are_removed(app: pgq.App, conn: Any, sweeper: Sweeper) -> None:
    old = add_worker(conn, status="stopped", heartbeat_age=2 * 86400)
    recent = add_worker(conn, status="stopped", heartbeat_age=3600)
    result = await sweeper.run_once()
    assert result.pruned.workers == 1
    remaining = {row["id"] for row in conn.execute("select id from pgq.workers")}
    assert remaining == {recent} and old not in remaining


async def test_metrics_rows_match_the_jobs(database_url: str, conn: Any) -> None:
    app = pgq.App(database_url, metrics_interval=60)
    finish(conn, 4, "completed", age_days=0, queue="emails")  # finished just now, ran 1 s, waited 1 s
    finish(conn, 1, "failed", age_days=0, queue="emails")
    # ... a few seconds ago, in fact: a row's window ends METRICS_LAG before now.
    conn.execute(
        """update pgq.job_history set run_at = run_at - interval '5 s', created_at = created_at - interval '5 s',
                  started_at = started_at - interval '5 s', finished_at = finished_at - interval '5 s'
            where finished_at > now() - interval '1 day'"""
    )
    finish(conn, 3, "completed", age_days=2, queue="emails")  # long ago: not in this interval
    app.enqueue("t", {}, queue="emails")
    app.enqueue("t", {}, queue="emails", delay=3600)
    app.enqueue("t", {}, queue="images")
    retried = app.enqueue("t", {}, queue="images")
    conn.execute(
        "update pgq.jobs set errors = jsonb_build_array(jsonb_build_object('attempt', 1, 'at', now() - interval '5 s'))"
        " where id = %s",
        [retried],
    )
    worker = add_worker(conn, heartbeat_age=0)
    sweeper = Sweeper(app)
    try:
        result = await sweeper.run_once()
    finally:
        await sweeper.close()
    assert result.metrics_rows == 2
    rows = {row["queue"]: row for row in conn.execute("select * from pgq.metrics")}
    emails, images = rows["emails"], rows["images"]
    assert (emails["pending"], emails["scheduled"], emails["running"]) == (1, 1, 0)
    assert (emails["completed"], emails["failed"], emails["retried"]) == (4, 1, 0)
    assert emails["run_ms_mean"] == pytest.approx(1000, abs=1) and emails["wait_ms_p95"] == pytest.approx(1000, abs=1)
    assert (images["pending"], images["completed"], images["retried"], images["workers"]) == (2, 0, 1, 0)
    assert emails["workers"] == 0 and worker  # the test worker serves "default" only
    app.close()


async def test_metrics_p95_exact_up_to_ten_thousand_finishes_then_sampled(database_url: str, conn: Any) -> None:
    """A queue's p95 is exact up to 10,000 finishes in a window and taken over a sample of about
    10,000 beyond (sorting every finish of a busy window cost 85 ms a percentile); counts, means
    and retries stay exact either way, including the retries of a job finished after the window."""
    app = pgq.App(database_url)
    at = conn.execute("select date_trunc('second', now()) - interval '1 minute' as at").fetchone()["at"]

    def ran(queue: str, count: int, status: str = "completed", errors: str = "'[]'", ends: float = 10.0) -> None:
        # job i (1..count) ran i ms and waited 2 i ms, finished within the `ends` seconds before `at`
        conn.execute(
            f"""insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts,
                                             run_at, created_at, started_at, finished_at, errors)
                select nextval(pg_get_serial_sequence('pgq.jobs', 'id')), %(queue)s, 't', '{{}}', 0, %(status)s,
                       1, 3, f - (3 * i) * interval '1 ms', f - (3 * i) * interval '1 ms', f - i * interval '1 ms', f,
                       {errors}
                  from generate_series(1, %(count)s) i,
                       lateral (select cast(%(at)s as timestamptz) - (i %% 1000) * %(ends)s / 1000 * interval '1 s'
                                  as f) x""",
            {"queue": queue, "status": status, "count": count, "at": at, "ends": ends},
        )

    ran("busy", 40_000)
    ran("quiet", 200)
    entry = "jsonb_build_object('attempt', 1, 'at', cast(%(at)s as timestamptz) - interval '30 s', 'error', 'boom')"
    ran("retries", 3, errors=f"jsonb_build_array({entry}, {entry})")  # two retries each: 6
    ran("retries", 2, "failed", errors=f"jsonb_build_array({entry}, {entry})")  # one retry, then the failure: 2
    conn.execute(
        "insert into pgq.metrics (queue, at, interval_seconds) values ('busy', %s - interval '1 minute', 60)", [at]
    )
    # Finished after the window (which ends METRICS_LAG before `now`), retried inside it: a retry of this window.
    ran("retries", 1, errors=f"jsonb_build_array({entry})", ends=-1.0)
    sweeper = Sweeper(app)
    try:
        async with await _conn(database_url) as sweep_conn:
            await sweeper.metrics.run_once(sweep_conn, now=at + timedelta(seconds=2))
    finally:
        await sweeper.close()
        app.close()
    rows = {r["queue"]: r for r in conn.execute("select * from pgq.metrics where at = %s", [at])}
    busy, quiet, retries = rows["busy"], rows["quiet"], rows["retries"]
    assert (busy["completed"], quiet["completed"]) == (40_000, 200)
    assert busy["run_ms_mean"] == pytest.approx(20_000.5) and quiet["run_ms_mean"] == pytest.approx(100.5)
    assert quiet["run_ms_p95"] == pytest.approx(190.05) and quiet["wait_ms_p95"] == pytest.approx(380.1)
    # A sample of about 10,000 of 40,000: its p95 is within 1 % of the whole's (38,000.05).
    assert busy["run_ms_p95"] == pytest.approx(38_000, rel=0.01) and busy["run_ms_p95"] != pytest.approx(38_000.05)
    assert busy["wait_ms_p95"] == pytest.approx(76_000, rel=0.01)
    assert (retries["completed"], retries["failed"], retries["retried"]) == (3, 2, 6 + 2 + 1)
    # Means over the window's own rows of every status (1, 2, 3 and 1, 2 ms), not the late one's.
    assert retries["run_ms_mean"] == pytest.approx(1.8) and retries["wait_ms_mean"] == pytest.approx(3.6)


def test_prune_cli(database_url: str, conn: Any) -> None:
    finish(conn, 3, "completed", age_days=10)
    result = subprocess.run(
        [sys.executable, "-m", "pgq", "prune", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "jobs: 3, workers: 0, groups: 0, metrics: 0, keys: 0, waiters: 0, logs: 0, partitions: 0"
    )
    assert history_counts(conn) == {}


def dead_rows(conn: Any) -> int:
    row = conn.execute("select n_dead_tup as n from pg_stat_user_tables where relid = 'pgq.jobs'::regclass").fetchone()
    return int(row["n"])


async def until_dead_rows(conn: Any, count: int) -> None:
    """The statistics system counts a backend's dead rows a moment after its commit."""
    deadline = time.monotonic() + 15
    while dead_rows(conn) < count:
        assert time.monotonic() < deadline, f"the statistics never counted {count} dead rows"
        await asyncio.sleep(0.2)


async def test_the_sweeper_vacuums_the_live_table_once_dead_rows_pile_up(database_url: str, conn: Any) -> None:
    app = pgq.App(database_url, vacuum_threshold=5000)
    sweeping = Sweeper(app, worker_name="test")
    try:
        conn.execute("alter table pgq.jobs set (autovacuum_enabled = false)")  # only the sweeper vacuums here
        conn.execute("insert into pgq.jobs (task) select 'churn' from generate_series(1, 3000)")
        conn.execute("delete from pgq.jobs where task = 'churn'")
        await until_dead_rows(conn, 3000)
        assert (await sweeping.run_once()).vacuumed_dead_rows == 0  # under the threshold: left alone
        conn.execute("insert into pgq.jobs (task) select 'churn' from generate_series(1, 3000)")
        conn.execute("delete from pgq.jobs where task = 'churn'")
        await until_dead_rows(conn, 5000)
        result = await sweeping.run_once()
        assert result.vacuumed_dead_rows >= 5000
        assert dead_rows(conn) == 0  # VACUUM reports its work at once
        # It ran throttled as autovacuum is, without a statement timeout, which is set back after it.
        session = await sweeping.election.connection()
        shown = {
            name: (await (await session.execute(f"show {name}")).fetchone() or {}).get(name)
            for name in ("vacuum_cost_delay", "statement_timeout")
        }
        assert shown == {"vacuum_cost_delay": "2ms", "statement_timeout": "30s"}
    finally:
        await sweeping.close()
        app.close()


async def test_vacuum_threshold_zero_leaves_the_table_to_autovacuum(database_url: str, conn: Any) -> None:
    app = pgq.App(database_url, vacuum_threshold=0)
    sweeping = Sweeper(app, worker_name="test")
    try:
        conn.execute("alter table pgq.jobs set (autovacuum_enabled = false)")
        conn.execute("insert into pgq.jobs (task) select 'churn' from generate_series(1, 2000)")
        conn.execute("delete from pgq.jobs where task = 'churn'")
        await until_dead_rows(conn, 2000)
        assert (await sweeping.run_once()).vacuumed_dead_rows == 0
        assert dead_rows(conn) >= 2000
    finally:
        await sweeping.close()
        app.close()
