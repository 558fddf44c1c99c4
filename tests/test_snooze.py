"""pgq.Snooze: a job waits and runs again without counting an attempt (issue 17).

Run by an in-process worker on both servers; times are the database's own
(``started_at`` of each run, as the handler sees it in ``ctx.job``).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

import pgq
from pgq.output import job_detail
from pgq.testing import run_job
from pgq.web import create_app
from tests.openapi_check import CheckedClient
from tests.test_worker import finished, job, run_until


async def test_a_snooze_waits_and_gives_its_attempt_back(app: pgq.App) -> None:
    runs: list[pgq.Job] = []

    @app.task(max_attempts=1, pass_context=True)
    def poll(ctx: pgq.JobContext) -> str:
        runs.append(ctx.job)
        if len(runs) < 3:
            raise pgq.Snooze(timedelta(seconds=0.3) if len(runs) == 1 else 0.3, reason="not ready yet")
        return "ready"

    job_id = poll.enqueue()
    await run_until(app, finished(app, [job_id]))
    done = job(app, job_id)
    # max_attempts=1: a snooze that counted an attempt would have failed the job.
    assert done.status == "completed" and done.result == "ready"
    assert done.attempts == 1 and done.snoozes == 2 and done.errors == []
    assert [run.snoozes for run in runs] == [0, 1, 2]
    assert [run.attempts for run in runs] == [1, 1, 1]
    for before, after in itertools.pairwise(runs):
        assert before.started_at is not None and after.started_at is not None
        assert (after.started_at - before.started_at).total_seconds() >= 0.3


async def test_the_snooze_past_max_snoozes_fails_the_job_for_good(app: pgq.App) -> None:
    calls: list[int] = []

    @app.task(max_snoozes=2, max_attempts=5)
    def forever() -> None:
        calls.append(1)
        raise pgq.Snooze(0)

    job_id = forever.enqueue()
    await run_until(app, finished(app, [job_id]))
    failed = job(app, job_id)
    assert failed.status == "failed" and len(calls) == 3
    assert failed.snoozes == 2 and failed.attempts == 1
    last = failed.errors[-1]
    assert last["type"] == "Snooze" and last["permanent"] is True
    assert "snoozed 2 times" in last["message"] and "max_snoozes=2" in last["message"]
    assert "pgq.Retry" in last["message"], "the message says what to do instead"


async def test_max_snoozes_none_has_no_limit_and_zero_allows_none(app: pgq.App) -> None:
    @app.task(max_snoozes=None, pass_context=True)
    def patient(ctx: pgq.JobContext) -> int:
        if ctx.job.snoozes < 120:
            raise pgq.Snooze(0)
        return ctx.job.snoozes

    @app.task(max_snoozes=0)
    def never() -> None:
        raise pgq.Snooze(0)

    ids = [patient.enqueue(), never.enqueue()]
    await run_until(app, finished(app, ids), timeout=60)
    assert job(app, ids[0]).result == 120 and job(app, ids[0]).snoozes == 120
    refused = job(app, ids[1])
    assert refused.status == "failed" and refused.snoozes == 0 and refused.errors[-1]["type"] == "Snooze"


async def test_a_job_cancelled_while_it_runs_ends_cancelled_when_it_snoozes(app: pgq.App) -> None:
    @app.task(pass_context=True)
    def cancels_itself(ctx: pgq.JobContext) -> None:
        app.cancel(ctx.job.id)
        raise pgq.Snooze(0)

    job_id = cancels_itself.enqueue()
    await run_until(app, finished(app, [job_id]))
    ended = job(app, job_id)
    assert ended.status == "cancelled" and ended.snoozes == 0 and ended.cancel_requested_at is not None


async def test_a_batch_member_snoozes_alone(app: pgq.App) -> None:
    @app.task(batch_size=2, batch_wait=0.5)
    def pair(jobs: list[pgq.Job]) -> list[Any]:
        return [pgq.Snooze(0) if j.args["n"] == 1 and j.snoozes == 0 else j.snoozes for j in jobs]

    ids = [pair.enqueue(n=1), pair.enqueue(n=2)]
    await run_until(app, finished(app, ids))
    first, second = job(app, ids[0]), job(app, ids[1])
    assert (first.status, first.snoozes, first.attempts, first.result) == ("completed", 1, 1, 1)
    assert (second.status, second.snoozes, second.result) == ("completed", 0, 0)


async def test_snoozes_are_shown_where_the_job_is(app: pgq.App) -> None:
    events: list[pgq.Event] = []
    app.on("job_snoozed", events.append)

    @app.task(pass_context=True)
    def once(ctx: pgq.JobContext) -> None:
        if ctx.job.snoozes == 0:
            raise pgq.Snooze(0.1)

    job_id = once.enqueue()
    await run_until(app, finished(app, [job_id]))
    done = job(app, job_id)
    never = once.enqueue()
    assert [(e.name, e.job.id, e.retry_in) for e in events] == [("job_snoozed", job_id, pytest.approx(0.1))]
    assert "  snoozes     1 (each waited without counting an attempt)" in job_detail(done)
    assert "snoozes" not in job_detail(job(app, never)), "a job that never snoozed says nothing of it"
    with CheckedClient(create_app(app), base_url="http://127.0.0.1") as dashboard:
        page = dashboard.get(f"/jobs/{job_id}")
        assert page.status_code == 200
        assert f'<dt>snoozes</dt><dd data-job-snoozes="{job_id}">1 ' in page.text
        assert "data-job-snoozes" not in dashboard.get(f"/jobs/{never}").text
        answer = dashboard.get(f"/api/jobs/{job_id}")
        assert answer.status_code == 200 and answer.json()["snoozes"] == 1


@pytest.mark.parametrize("delay", [-1, float("inf"), float("nan"), "5", True, None])
def test_a_bad_snooze_delay_is_explained(delay: Any) -> None:
    with pytest.raises(pgq.ConfigurationError, match="Snooze delay must be a finite number of seconds >= 0"):
        pgq.Snooze(delay)


@pytest.mark.parametrize("limit", [-1, "3", True, 2.5])
def test_a_bad_max_snoozes_is_explained(app: pgq.App, limit: Any) -> None:
    with pytest.raises(pgq.ConfigurationError, match="max_snoozes of task 'snoozer' must be an integer >= 0"):

        @app.task(max_snoozes=limit)
        def snoozer() -> None: ...


def test_run_job_classifies_a_snooze_as_a_worker_does() -> None:
    offline = pgq.App("postgresql://nobody@127.0.0.1:1/nothing")  # run_job never connects

    @offline.task(max_snoozes=0)
    def never() -> None:
        raise pgq.Snooze(1)

    @offline.task
    def later() -> None:
        raise pgq.Snooze(timedelta(minutes=1), reason="not yet")

    snoozed = run_job(offline, later)
    assert (snoozed.status, snoozed.retry_in, snoozed.error) == ("snooze", 60.0, None)
    refused = run_job(offline, never)
    assert refused.status == "failed" and refused.error is not None and refused.error["type"] == "Snooze"
