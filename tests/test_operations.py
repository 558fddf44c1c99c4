"""Operating pgq: retry, cancel, promote, delete, pause and resume, queues, workers, stats.

Every method of :class:`pgq.operations.OperationControls` and every error it
raises, on the real databases; then the same through the ``pgq`` command in a
subprocess (exit codes, one-line errors, ``--json`` shapes).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

import pgq
from pgq import bulk
from tests.processes import pgq_cli
from tests.rows import add_history, add_worker

# ------------------------------------------------------------------ helpers


def finished_job(
    conn: Any,
    status: str,
    *,
    queue: str = "default",
    task: str = "t",
    key: str | None = None,
    ago: float = 60.0,
    run: float = 1.0,
    wait: float = 0.5,
    attempts: int = 3,
) -> int:
    """A job in history that finished ``ago`` seconds ago after running ``run`` s and waiting ``wait`` s."""
    errors = [{"attempt": 3, "type": "RuntimeError", "message": "boom"}] if status == "failed" else []
    [job_id] = add_history(
        conn,
        status=status,
        queue=queue,
        task=task,
        key=key,
        finished=f"now() - make_interval(secs => {ago})",
        run=run,
        wait=wait,
        attempts=attempts,
        errors=errors,
    )
    return job_id


def set_running(conn: Any, job_id: int) -> None:
    conn.execute("update pgq.jobs set status = 'running', attempts = 1, started_at = now() where id = %s", [job_id])


def status_of(app: pgq.App, job_id: int) -> str | None:
    job = app.get_job(job_id)
    return None if job is None else job.status


# --------------------------------------------------------------- retry, cancel


def test_retry_and_cancel_take_ids_as_ints_or_digit_strings(app: pgq.App) -> None:
    job_id = app.enqueue("t", delay=3600)
    assert app.cancel(str(job_id)) == "cancelled"  # type: ignore[arg-type]
    app.retry(job_id)
    assert status_of(app, job_id) == "pending"
    for bad in ("abc", "1.5", True, None, 2.0):
        with pytest.raises(pgq.ConfigurationError, match="a job id is a whole number"):
            app.cancel(bad)  # type: ignore[arg-type]
    with pytest.raises(pgq.JobNotFound, match="no job with id 424242"):
        app.retry(424242)
    with pytest.raises(pgq.InvalidState, match="is pending; only failed or cancelled"):
        app.retry(job_id)


def test_retry_failed_by_queue_and_task(app: pgq.App, conn: Any) -> None:
    a_x = [finished_job(conn, "failed", queue="a", task="x", ago=100 - i) for i in range(3)]
    a_y = finished_job(conn, "failed", queue="a", task="y")
    b_x = [finished_job(conn, "failed", queue="b", task="x") for _ in range(2)]
    done = finished_job(conn, "completed", queue="a", task="x")
    cancelled = finished_job(conn, "cancelled", queue="a", task="x")

    assert app.retry_failed(queue="a", task="x") == 3
    for job_id in a_x:
        job = app.get_job(job_id)
        assert job is not None and job.status == "pending" and job.queue == "a"
        # One more attempt than it used; its errors stay.
        assert job.attempts == 3 and job.max_attempts == 4 and job.errors[0]["message"] == "boom"
    assert [status_of(app, i) for i in (a_y, *b_x, done, cancelled)] == [
        "failed",
        "failed",
        "failed",
        "completed",
        "cancelled",
    ]
    assert app.retry_failed(task="x") == 2  # queue b
    assert app.retry_failed(queue="a") == 1  # task y
    assert app.retry_failed() == 0
    assert status_of(app, done) == "completed" and status_of(app, cancelled) == "cancelled"
    with pytest.raises(pgq.ConfigurationError, match="queue must be"):
        app.retry_failed(queue="no such; queue")
    with pytest.raises(pgq.ConfigurationError, match="task must be"):
        app.retry_failed(task="")


def test_retry_failed_in_batches_skips_held_keys(app: pgq.App, conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "BATCH", 2)
    plain = [finished_job(conn, "failed", ago=50 - i) for i in range(5)]
    # Two failed jobs share a key: the earlier failure goes back, the other stays failed.
    first_k = finished_job(conn, "failed", key="k", ago=40)
    second_k = finished_job(conn, "failed", key="k", ago=30)
    # A live job holds key h: its failed namesake stays failed.
    live_h = app.enqueue("t", key="h", delay=3600)
    held = finished_job(conn, "failed", key="h", ago=20)
    # The same ago for several: the keyset must not skip ties.
    ties = [finished_job(conn, "failed", ago=10) for _ in range(3)]

    assert app.retry_failed() == 5 + 1 + 3
    for job_id in (*plain, first_k, *ties):
        assert status_of(app, job_id) == "pending", job_id
    assert status_of(app, second_k) == "failed" and status_of(app, held) == "failed"
    assert status_of(app, live_h) == "pending"
    keys = conn.execute("select key, count(*) as n from pgq.jobs where key is not null group by key").fetchall()
    assert {row["key"]: row["n"] for row in keys} == {"k": 1, "h": 1}


# ------------------------------------------------------------------- promote


def test_promote_a_delayed_job_wakes_the_workers(app: pgq.App, conn: Any) -> None:
    delayed = app.enqueue("t", delay=3600)
    conn.execute("listen pgq_jobs")
    app.promote(delayed)
    row = conn.execute("select run_at <= now() as due, status from pgq.jobs where id = %s", [delayed]).fetchone()
    assert row == {"due": True, "status": "pending"}
    notices = list(conn.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in notices] == ["pgq_jobs"]
    # A job that is due already: nothing to do, no error.
    due = app.enqueue("t")
    before = app.get_job(due)
    app.promote(due)
    assert app.get_job(due) == before


def test_promote_refuses_what_is_not_pending(app: pgq.App, conn: Any) -> None:
    running = app.enqueue("t", delay=3600)
    set_running(conn, running)
    failed = finished_job(conn, "failed")
    with pytest.raises(pgq.InvalidState, match=f"job {running} is running; only pending jobs can be promoted"):
        app.promote(running)
    with pytest.raises(pgq.InvalidState, match=r"already finished \(failed\)"):
        app.promote(failed)
    with pytest.raises(pgq.JobNotFound, match="no job with id 999999"):
        app.promote(999999)
    with pytest.raises(pgq.ConfigurationError, match="a job id is a whole number"):
        app.promote("seven")  # type: ignore[arg-type]
    assert status_of(app, running) == "running" and status_of(app, failed) == "failed"


# -------------------------------------------------------------------- delete


def test_delete_finished_jobs_only(app: pgq.App, conn: Any) -> None:
    finished = [finished_job(conn, status) for status in ("completed", "failed", "cancelled")]
    for job_id in finished:
        app.delete(job_id)
        assert app.get_job(job_id) is None
    pending = app.enqueue("t")
    running = app.enqueue("t")
    set_running(conn, running)
    for job_id, state in ((pending, "pending"), (running, "running")):
        with pytest.raises(pgq.InvalidState, match=f"job {job_id} is {state}; .*cancel it first"):
            app.delete(job_id)
        assert status_of(app, job_id) == state
    with pytest.raises(pgq.JobNotFound, match=f"no job with id {finished[0]}"):
        app.delete(finished[0])
    with pytest.raises(pgq.ConfigurationError):
        app.delete("1; drop table pgq.jobs")  # type: ignore[arg-type]


# -------------------------------------------------------------------- queues


def test_pause_and_resume(app: pgq.App, conn: Any) -> None:
    app.pause_queue("emails")  # before any job exists
    app.pause_queue("emails")  # twice is fine
    queues = app.list_queues()
    assert [(q.name, q.paused) for q in queues] == [("emails", True)]
    assert queues[0].updated_at is not None and queues[0].waiting == 0
    job_id = app.enqueue("t", queue="emails")  # enqueueing still works
    assert status_of(app, job_id) == "pending"

    conn.execute("listen pgq_jobs")
    app.resume_queue("emails")
    assert [n.channel for n in conn.notifies(timeout=5, stop_after=1)] == ["pgq_jobs"]
    assert [(q.name, q.paused) for q in app.list_queues()] == [("emails", False)]
    app.resume_queue("emails")  # not paused: nothing to do
    app.resume_queue("never-paused")  # no row is created for it
    assert conn.execute("select count(*) as n from pgq.queues").fetchone()["n"] == 1
    for bad in ("", "a b", "x" * 129, None):
        with pytest.raises(pgq.ConfigurationError, match="queue must be"):
            app.pause_queue(bad)  # type: ignore[arg-type]
        with pytest.raises(pgq.ConfigurationError, match="queue must be"):
            app.resume_queue(bad)  # type: ignore[arg-type]


async def test_a_worker_claims_nothing_from_a_paused_queue(app: pgq.App) -> None:
    ran: list[str] = []

    @app.task(queue="reports")
    def report(name: str) -> None:
        ran.append(name)

    @app.task(queue="emails")
    def email(name: str) -> None:
        ran.append(name)

    await asyncio.to_thread(app.pause_queue, "reports")
    paused_job = report.enqueue(name="report")
    other = email.enqueue(name="email")
    async with app.worker(queues=["reports", "emails"], poll_interval=0.2):
        deadline = time.monotonic() + 20
        while await asyncio.to_thread(status_of, app, other) != "completed":
            assert time.monotonic() < deadline, "the job of the running queue did not run"
            await asyncio.sleep(0.05)
        # Several polls and a wake-up later, the paused queue's job is still waiting.
        await asyncio.to_thread(app.enqueue, "email", {"name": "wake"}, queue="emails")
        await asyncio.sleep(1.5)
        assert await asyncio.to_thread(status_of, app, paused_job) == "pending"
        assert "report" not in ran
        await asyncio.to_thread(app.resume_queue, "reports")
        deadline = time.monotonic() + 20
        while await asyncio.to_thread(status_of, app, paused_job) != "completed":
            assert time.monotonic() < deadline, "the resumed queue's job did not run"
            await asyncio.sleep(0.05)
    assert "report" in ran


def test_list_queues_counts(app: pgq.App, conn: Any) -> None:
    assert app.list_queues() == []
    app.enqueue("t", queue="a")
    app.enqueue("t", queue="a")
    app.enqueue("t", queue="a", delay=3600)
    set_running(conn, app.enqueue("t", queue="a"))
    finished_job(conn, "completed", queue="old")  # only history
    app.pause_queue("p")
    add_worker(conn, queues=["a", "idle"], concurrency=4)
    add_worker(conn, name="gone", queues=["a", "gone"], concurrency=4, status="dead")
    queues = {q.name: q for q in app.list_queues()}
    assert sorted(queues) == ["a", "idle", "old", "p"]
    a = queues["a"]
    assert (a.waiting, a.delayed, a.active, a.blocked, a.workers, a.paused) == (2, 1, 1, 0, 1, False)
    assert a.oldest_waiting_seconds is not None and a.oldest_waiting_seconds >= 0 and a.updated_at is None
    assert queues["idle"].workers == 1 and queues["idle"].oldest_waiting_seconds is None
    assert queues["p"].paused and queues["old"].waiting == 0


# ------------------------------------------------------------------- workers


async def test_list_workers_shows_what_each_runs(app: pgq.App) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    @app.task
    async def hold() -> None:
        started.set()
        await release.wait()

    job_id = hold.enqueue()
    async with app.worker(queues=["default", "other"], concurrency=3, poll_interval=0.2, name="ops-test"):
        await asyncio.wait_for(started.wait(), 20)
        workers = await asyncio.to_thread(app.list_workers)
        assert len(workers) == 1
        worker = workers[0]
        assert isinstance(worker, pgq.WorkerInfo)
        assert (worker.name, worker.status, worker.queues, worker.concurrency) == (
            "ops-test",
            "running",
            ["default", "other"],
            3,
        )
        assert worker.running == [job_id] and worker.pid == os.getpid() and worker.host
        assert 0 <= worker.seconds_since_heartbeat < 30 and worker.stopped_at is None
        assert worker.version == pgq.__version__
        release.set()
    stopped = (await asyncio.to_thread(app.list_workers))[0]
    assert stopped.status == "stopped" and stopped.running == [] and stopped.stopped_at is not None


# --------------------------------------------------------------------- stats


def test_stats_without_metrics_counts_history_in_the_window(app: pgq.App, conn: Any) -> None:
    app.enqueue("t", queue="a")
    app.enqueue("t", queue="a", delay=3600)
    set_running(conn, app.enqueue("t", queue="a"))
    for run in (0.1, 0.2, 0.3, 0.4):
        finished_job(conn, "completed", queue="a", ago=30, run=run, wait=0.05)
    finished_job(conn, "completed", queue="a", ago=600)  # in the window, not in the last 5 min
    finished_job(conn, "completed", queue="a", ago=25 * 3600)  # outside the window
    finished_job(conn, "failed", queue="a", ago=30)
    finished_job(conn, "cancelled", queue="a", ago=7200)
    app.pause_queue("quiet")

    stats = {s.queue: s for s in app.stats()}
    assert sorted(stats) == ["a", "quiet"]
    a = stats["a"]
    assert isinstance(a, pgq.QueueStats)
    assert (a.waiting, a.delayed, a.active, a.blocked) == (1, 1, 1, 0)
    assert (a.completed, a.failed, a.cancelled) == (5, 1, 1)
    assert a.completed_per_minute == pytest.approx(4 / 5)
    assert a.failed_per_minute == pytest.approx(1 / 5)
    # Timings of completed jobs of the last 15 minutes: four of 0.1-0.4 s and one of 1 s.
    assert a.run_ms_p50 == pytest.approx(300, abs=1)
    assert a.run_ms_p95 is not None and 400 < a.run_ms_p95 <= 1000
    assert a.wait_ms_p50 == pytest.approx(50, abs=1)
    assert a.window_seconds == 24 * 3600 and a.at is not None and not a.paused
    quiet = stats["quiet"]
    assert quiet.paused and (quiet.waiting, quiet.completed, quiet.completed_per_minute) == (0, 0, 0)
    assert quiet.run_ms_p50 is None and quiet.oldest_waiting_seconds is None

    narrow = {s.queue: s for s in app.stats(window=3600)}["a"]
    assert (narrow.completed, narrow.failed, narrow.cancelled) == (5, 1, 0)
    with pytest.raises(pgq.ConfigurationError, match="window must be"):
        app.stats(window=0)


def test_stats_use_metrics_rows_and_history_where_no_row_covers(app: pgq.App, conn: Any) -> None:
    # The sweeper's rows: each counts what finished in (at - interval_seconds, at].
    conn.execute(
        """insert into pgq.metrics (queue, at, interval_seconds, completed, failed, cancelled)
           values ('a', now() - interval '25 hours', 10, 1000, 1000, 1000),   -- before the window
                  ('a', now() - interval '2 hours', 3600, 100, 10, 1),        -- covers 3 h to 2 h ago
                  ('a', now() - interval '2 minutes', 600, 7, 2, 0)           -- covers 12 to 2 min ago"""
    )
    # History the rows cover is not read again ...
    finished_job(conn, "completed", queue="a", ago=2.5 * 3600)
    finished_job(conn, "completed", queue="a", ago=300)
    # ... what no row covers is: before the first row, between rows, after the latest.
    finished_job(conn, "completed", queue="a", ago=5 * 3600)
    finished_job(conn, "failed", queue="a", ago=3600)
    finished_job(conn, "completed", queue="a", ago=60)
    finished_job(conn, "failed", queue="a", ago=30)

    a = {s.queue: s for s in app.stats()}["a"]
    assert (a.completed, a.failed, a.cancelled) == (100 + 7 + 1 + 1, 10 + 2 + 1 + 1, 1)
    # Last 5 minutes: the row of 2 minutes ago and what finished after it.
    assert a.completed_per_minute == pytest.approx((7 + 1) / 5)
    assert a.failed_per_minute == pytest.approx((2 + 1) / 5)
    # A window of 1 hour: the row of 2 minutes ago, the gap before it (from 1 h to 12 min ago) and the tail.
    hour = {s.queue: s for s in app.stats(window=3600)}["a"]
    assert (hour.completed, hour.failed, hour.cancelled) == (7 + 1, 2 + 1, 0)


async def test_stats_of_a_real_worker_run(app: pgq.App) -> None:
    @app.task(queue="work")
    async def quick(n: int) -> int:
        return n

    ids = [quick.enqueue(n=i) for i in range(5)]
    async with app.worker(queues=["work"], poll_interval=0.2):
        deadline = time.monotonic() + 20
        while not all(await asyncio.to_thread(lambda: [status_of(app, i) == "completed" for i in ids])):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        stats = (await asyncio.to_thread(app.stats))[0]
    assert (stats.queue, stats.completed, stats.waiting, stats.active, stats.workers) == ("work", 5, 0, 0, 1)
    assert stats.completed_per_minute == pytest.approx(1.0)
    assert stats.run_ms_p50 is not None and stats.run_ms_p50 >= 0
    assert stats.wait_ms_p95 is not None and stats.wait_ms_p95 >= 0


# ----------------------------------------------------------------------- CLI


def assert_error(result: subprocess.CompletedProcess[str], *messages: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("pgq: error: ") for line in lines), result.stderr
    for message in messages:
        assert message in result.stderr, result.stderr


@pytest.mark.slow
def test_cli_job_actions(database_url: str, app: pgq.App, conn: Any) -> None:
    delayed = app.enqueue("t", delay=3600)
    failed = [finished_job(conn, "failed", queue="a") for _ in range(3)]
    done = finished_job(conn, "completed")

    result = pgq_cli(database_url, "jobs", "promote", str(delayed))
    assert result.returncode == 0 and result.stdout.strip() == f"job {delayed} promoted", result
    # Several ids: every valid one is acted on, every failure gets its line, exit 2.
    result = pgq_cli(database_url, "jobs", "retry", str(failed[0]), "abc", "424242", str(delayed))
    assert_error(
        result,
        "'abc' is not a job id",
        "no job with id 424242",
        f"job {delayed} is pending; only failed or cancelled",
    )
    assert len(result.stderr.strip().splitlines()) == 3
    assert result.stdout.strip() == f"job {failed[0]} retried"
    assert status_of(app, failed[0]) == "pending" and status_of(app, delayed) == "pending"

    assert_error(pgq_cli(database_url, "jobs", "retry", "--failed", str(failed[1])), "not both")
    assert_error(pgq_cli(database_url, "jobs", "retry"), "give job ids, or a filter")
    assert_error(pgq_cli(database_url, "jobs", "retry", str(failed[1]), "--queue", "a"), "ids or a filter, not both")
    assert status_of(app, failed[1]) == "failed"
    result = pgq_cli(database_url, "jobs", "retry", "--failed", "--queue", "a")
    assert result.returncode == 0 and result.stdout.strip() == "2 jobs retried (status=failed, queue=a)", result
    assert status_of(app, failed[2]) == "pending"

    assert_error(pgq_cli(database_url, "jobs", "delete", str(delayed)), "cancel it first")
    assert_error(pgq_cli(database_url, "jobs", "promote", str(done)), "only pending jobs can be promoted")
    result = pgq_cli(database_url, "jobs", "cancel", str(delayed), str(done))
    assert_error(result, f"job {done} already finished (completed)")
    assert result.stdout.strip() == f"job {delayed} cancelled"
    result = pgq_cli(database_url, "jobs", "delete", str(done), str(delayed))
    assert result.returncode == 0 and app.get_job(done) is None and app.get_job(delayed) is None
    assert_error(pgq_cli(database_url, "jobs", "show", "x1"), "'x1' is not a job id")


@pytest.mark.slow
def test_cli_queues_workers_and_stats(database_url: str, app: pgq.App, conn: Any) -> None:
    app.enqueue("t", queue="emails")
    finished_job(conn, "completed", queue="emails")
    result = pgq_cli(database_url, "queues", "pause", "emails")
    assert result.returncode == 0 and result.stdout.strip() == "queue emails paused", result
    assert_error(pgq_cli(database_url, "queues", "pause", "bad name"), "queue must be")

    listing = json.loads(pgq_cli(database_url, "queues", "list", "--json").stdout)
    assert listing == [
        {
            "name": "emails",
            "paused": True,
            "waiting": 1,
            "delayed": 0,
            "active": 0,
            "blocked": 0,
            "workers": 0,
            "oldest_waiting_seconds": listing[0]["oldest_waiting_seconds"],
            "updated_at": listing[0]["updated_at"],
            # no limits set (pgq queues set; docs/flow-control.md)
            "concurrency": None,
            "rate": None,
            "group_concurrency": None,
            "group_rate": None,
            "max_pending": None,
            "on_full": "reject",
            "rejected": 0,
            "group_max_pending": None,
            "slo": {},  # no service-level objectives set
        }
    ]
    table = pgq_cli(database_url, "queues", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["QUEUE", "PAUSED", "WAITING"] and "emails" in table

    stats = json.loads(pgq_cli(database_url, "stats", "--json").stdout)
    assert [s["queue"] for s in stats] == ["emails"]
    assert stats[0]["paused"] is True and stats[0]["completed"] == 1 and stats[0]["waiting"] == 1
    assert {"completed_per_minute", "run_ms_p95", "wait_ms_p50", "window_seconds", "at"} <= set(stats[0])
    assert "emails" in pgq_cli(database_url, "stats").stdout

    result = pgq_cli(database_url, "queues", "resume", "emails")
    assert result.returncode == 0 and result.stdout.strip() == "queue emails resumed"
    assert app.list_queues()[0].paused is False

    assert json.loads(pgq_cli(database_url, "workers", "list", "--json").stdout) == []
    assert pgq_cli(database_url, "workers", "list").stdout.strip() == "no workers"
    conn.execute(
        """insert into pgq.workers (id, name, host, pid, queues, concurrency)
           values ('00000000-0000-0000-0000-000000000001', 'w1', 'host1', 42, '{emails}', 4)"""
    )
    workers = json.loads(pgq_cli(database_url, "workers", "list", "--json").stdout)
    assert workers[0]["id"] == "00000000-0000-0000-0000-000000000001"
    assert (workers[0]["name"], workers[0]["queues"], workers[0]["running"]) == ("w1", ["emails"], [])
    assert "w1" in pgq_cli(database_url, "workers", "list").stdout
    assert_error(pgq_cli(database_url, "stats", "--json", "--watch"), "--json and --watch")


@pytest.mark.slow
def test_cli_stats_watch_refreshes_until_ctrl_c(database_url: str, app: pgq.App) -> None:
    app.enqueue("t", queue="emails")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
    env["PGQ_DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "pgq", "stats", "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        seen = b""
        deadline = time.monotonic() + 30
        while seen.count(b"\x1b[2J") < 3:
            assert time.monotonic() < deadline, seen
            seen += os.read(process.stdout.fileno(), 4096)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert b"emails" in seen and b"QUEUE" in seen


def test_cli_parser_knows_the_new_commands() -> None:
    from pgq.cli import build_parser

    parser = build_parser()
    for argv in (
        ["jobs", "retry", "1", "2"],
        ["jobs", "retry", "--failed", "--queue", "q", "--task", "t"],
        ["jobs", "cancel", "1"],
        ["jobs", "promote", "1"],
        ["jobs", "delete", "1"],
        ["queues", "list", "--json"],
        ["queues", "pause", "q"],
        ["queues", "resume", "q"],
        ["workers", "list", "--json"],
        ["stats", "--json"],
        ["stats", "--watch", "--interval", "2"],
    ):
        assert callable(parser.parse_args(argv).handler)


def test_cli_masks_secret_args_like_the_dashboard(database_url: str, app: pgq.App) -> None:
    job_id = app.enqueue("login", {"user": "ada", "db_password": "hunter2", "nested": {"access_token": "t-1"}})
    for args in (("jobs", "show", str(job_id)), ("jobs", "show", str(job_id), "--json"), ("jobs", "list", "--json")):
        result = pgq_cli(database_url, *args)
        assert result.returncode == 0, result.stderr
        assert "hunter2" not in result.stdout and "t-1" not in result.stdout, result.stdout
        assert "[redacted]" in result.stdout and "ada" in result.stdout
