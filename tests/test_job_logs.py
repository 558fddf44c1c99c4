"""Per-job logs: what a handler logs through ctx.log is kept with its attempt (issue 17)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import pgq
from pgq import context
from pgq.maintenance.sweeper import Sweeper
from pgq.output import job_detail
from tests.processes import pgq_cli, sweep_until_leader
from tests.test_web_api import client
from tests.test_worker import finished, job, run_until


async def test_lines_are_kept_per_attempt_and_shown(app: pgq.App, database_url: str) -> None:
    @app.task(pass_context=True, max_attempts=2, backoff=0)
    def fetch(ctx: pgq.JobContext, url: str) -> str:
        ctx.log.info("fetching %s", url)
        ctx.log.debug("below the logger's level, kept all the same")
        if ctx.attempt == 1:
            try:
                raise ConnectionError("reset by peer")
            except ConnectionError:
                ctx.log.warning("attempt %d failed", ctx.attempt, exc_info=True)
                raise
        return "ok"

    @app.task
    def quiet() -> None:
        pass

    ids = [fetch.enqueue(url="https://example.com"), quiet.enqueue()]
    await run_until(app, finished(app, ids))
    assert job(app, ids[0]).status == "completed"
    lines = app.job_logs(ids[0])
    assert [(line.attempt, line.level) for line in lines] == [
        (1, "INFO"),
        (1, "DEBUG"),
        (1, "WARNING"),
        (2, "INFO"),
        (2, "DEBUG"),
    ]
    assert lines[0].message == "fetching https://example.com"
    assert (
        lines[2].message.startswith("attempt 1 failed\nTraceback")
        and "ConnectionError: reset by peer" in lines[2].message
    )
    assert app.job_logs(ids[1]) == [], "a job that logs nothing writes nothing"

    shown = job_detail(job(app, ids[0]), lines)
    assert "log (ctx.log)" in shown and "INFO    fetching https://example.com" in shown
    with client(app) as web:
        page = web.get(f"/jobs/{ids[0]}").text
        assert "<h2>Log</h2>" in page and "fetching https://example.com" in page
        assert "<h2>Log</h2>" not in web.get(f"/jobs/{ids[1]}").text


def test_a_run_keeps_its_newest_lines_within_the_limits() -> None:
    kept = context.JobLog()
    for n in range(250):
        kept.add(logging.INFO, f"line {n}")
    rows = kept.rows()
    assert len(rows) == 201 and rows[1][2] == "line 50" and rows[-1][2] == "line 249"
    assert rows[0][2] == "50 earlier lines not kept (at most 200 lines or 64 KiB per run)"
    big = context.JobLog()
    for _ in range(10):
        big.add(logging.INFO, "x" * 10_000)
    assert len(big.lines) == 6 and big.size <= context.MAX_LOG_BYTES
    huge = context.JobLog()
    huge.add(logging.ERROR, "y" * 100_000)
    assert huge.size <= context.MAX_LOG_BYTES and huge.lines[0][2].endswith("[cut: the line was longer than 64 KiB]")


async def test_lines_go_with_their_job(app: pgq.App, conn: Any) -> None:
    @app.task(pass_context=True)
    def noisy(ctx: pgq.JobContext) -> None:
        ctx.log.info("hello\x00world")  # a NUL, which PostgreSQL's text cannot hold

    job_id = noisy.enqueue()
    await run_until(app, finished(app, [job_id]))
    assert [line.message for line in app.job_logs(job_id)] == ["hello\\0world"]
    app.delete(job_id)
    sweeper = Sweeper(app, worker_name="test")
    try:
        # The worker's own sweeper held the lock: the server ends its session a moment after
        # the worker hung up (CI once swept before that, as a follower, and pruned nothing).
        await sweep_until_leader(sweeper, "the test's sweeper, after the worker's exit")
    finally:
        await sweeper.close()
    assert conn.execute("select count(*) as n from pgq.job_logs where job_id = %s", [job_id]).fetchone()["n"] == 0


@pytest.mark.slow
def test_pgq_jobs_show_prints_the_log(app: pgq.App, conn: Any, database_url: str) -> None:
    job_id = app.enqueue("t")
    conn.execute(
        "insert into pgq.job_logs (job_id, attempt, at, level, message) values (%s, 1, now(), 'INFO', 'step 1 of 3')",
        [job_id],
    )
    shown = pgq_cli(database_url, "jobs", "show", str(job_id))
    assert shown.returncode == 0 and "log (ctx.log)" in shown.stdout and "step 1 of 3" in shown.stdout
