"""app.update_job: edit a waiting job in place (issue 17), and its API, CLI and page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import pgq
from tests.openapi_check import check_responses
from tests.processes import pgq_cli
from tests.test_web_api import client, csrf_of
from tests.test_worker import finished, job, run_until


def test_only_the_options_given_change(app: pgq.App, conn: Any) -> None:
    job_id = app.enqueue("report", {"day": 1}, priority=1, tags=["a"], meta={"by": "ops"}, delay=3600)
    before = job(app, job_id)
    when = datetime.now(UTC) + timedelta(days=2)
    updated = app.update_job(job_id, priority=9, run_at=when)
    assert updated.priority == 9 and updated.run_at == when
    assert (updated.args, updated.tags, updated.meta, updated.max_attempts) == (
        before.args,
        before.tags,
        before.meta,
        before.max_attempts,
    )
    updated = app.update_job(job_id, args={"day": 2}, tags=["b", "c"], meta=None, max_attempts=7, delay=0)
    assert updated.args == {"day": 2} and updated.tags == ["b", "c"] and updated.meta is None
    assert updated.max_attempts == 7 and updated.priority == 9
    db_now = conn.execute("select now() as t").fetchone()["t"]
    assert updated.run_at <= db_now, "delay=0: due now"
    assert app.update_job(job_id, tags=[]).tags is None


async def test_a_worker_runs_the_job_as_updated(app: pgq.App) -> None:
    seen: list[int] = []

    @app.task
    def count(n: int) -> int:
        seen.append(n)
        return n

    job_id = app.enqueue(count, {"n": 1}, delay=3600)
    app.update_job(job_id, args={"n": 5}, delay=0)
    await run_until(app, finished(app, [job_id]))
    assert seen == [5] and job(app, job_id).result == 5


def test_args_are_checked_against_the_registered_task(app: pgq.App) -> None:
    @app.task
    def send(user_id: int) -> None:
        pass

    job_id = send.enqueue(user_id=1)
    with pytest.raises(pgq.InvalidJob, match="user_id"):
        app.update_job(job_id, args={"user_id": "x"})
    with pytest.raises(pgq.InvalidJob):
        app.update_job(job_id, args={"nobody": 1})
    assert job(app, job_id).args == {"user_id": 1}


def test_running_and_finished_jobs_are_refused(app: pgq.App, conn: Any) -> None:
    running = app.enqueue("t")
    conn.execute("update pgq.jobs set status = 'running', attempts = 2 where id = %s", [running])
    with pytest.raises(pgq.InvalidState, match=f"job {running} is running; only a waiting job"):
        app.update_job(running, priority=3)
    done = app.enqueue("t")
    app.cancel(done)
    with pytest.raises(pgq.InvalidState, match="is cancelled"):
        app.update_job(done, priority=3)
    with pytest.raises(pgq.JobNotFound):
        app.update_job(987654321, priority=3)
    retried = app.enqueue("t")
    conn.execute("update pgq.jobs set attempts = 2 where id = %s", [retried])
    with pytest.raises(pgq.InvalidState, match="made 2 attempts already; max_attempts cannot go below"):
        app.update_job(retried, max_attempts=1)
    assert app.update_job(retried, max_attempts=2).max_attempts == 2


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, pgq.ConfigurationError, "nothing to change"),
        ({"run_at": datetime.now(UTC), "delay": 1}, pgq.ConfigurationError, "run_at or delay, not both"),
        ({"priority": "high"}, pgq.InvalidJob, "priority must be an integer"),
        ({"max_attempts": 0}, pgq.InvalidJob, "max_attempts"),
        ({"run_at": datetime(2030, 1, 1)}, pgq.InvalidJob, "has no time zone"),
        ({"tags": ["a b"]}, pgq.InvalidJob, "tag"),
        ({"meta": [1]}, pgq.InvalidJob, "meta must be a dict"),
        ({"delay": -1}, pgq.InvalidJob, "delay"),
    ],
)
def test_bad_values_are_refused_and_change_nothing(
    app: pgq.App, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    job_id = app.enqueue("t", priority=4)
    with pytest.raises(error, match=message):
        app.update_job(job_id, **options)
    assert job(app, job_id).priority == 4


def test_patch_the_api_and_the_job_page(app: pgq.App) -> None:
    job_id = app.enqueue("t", {"a": 1}, delay=3600)
    with client(app) as web:
        answer = web.patch(f"/api/jobs/{job_id}", json={"priority": 5, "tags": ["x"], "args": {"a": 2}})
        assert answer.status_code == 200, answer.text
        assert (answer.json()["priority"], answer.json()["tags"], answer.json()["args"]) == (5, ["x"], {"a": 2})
        assert web.patch(f"/api/jobs/{job_id}", json={}).status_code == 422
        assert "must be" in web.patch(f"/api/jobs/{job_id}", json={"priority": "high"}).json()["error"]
        assert web.patch("/api/jobs/987654321", json={"priority": 1}).status_code == 404
        app.cancel(job_id)
        assert web.patch(f"/api/jobs/{job_id}", json={"priority": 1}).status_code == 409
        check_responses(web.app.state.dashboard.openapi(""), web.seen)  # type: ignore[attr-defined]

        waiting = app.enqueue("t", {"a": 1}, delay=3600)
        page = web.get(f"/jobs/{waiting}").text
        assert "Edit" in page and 'name="priority"' in page
        token = csrf_of(web, f"/jobs/{waiting}")
        form = {
            "csrf": token,
            "id": str(waiting),
            "priority": "8",
            "max_attempts": "4",
            "tags": "tenant:1 import",
            "args": '{"a": 3}',
            "run_at": "",
        }
        done = web.post("/actions/edit", data=form)
        assert done.status_code == 303 and done.headers["location"] == f"/jobs/{waiting}"
        edited = job(app, waiting)
        assert (edited.priority, edited.max_attempts, edited.tags, edited.args) == (
            8,
            4,
            ["tenant:1", "import"],
            {"a": 3},
        )
        bad = web.post("/actions/edit", data={**form, "args": "[1"})
        assert bad.status_code == 303 and "args must be a JSON object" in web.get(f"/jobs/{waiting}").text
        assert job(app, waiting).args == {"a": 3}


@pytest.mark.slow
def test_pgq_jobs_update(app: pgq.App, database_url: str) -> None:
    job_id = app.enqueue("t", {"a": 1}, delay=3600)
    result = pgq_cli(
        database_url, "jobs", "update", str(job_id), "--priority", "3", "--tag", "x", "--tag", "y", "--json"
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["priority"] == 3 and shown["tags"] == ["x", "y"]
    result = pgq_cli(database_url, "jobs", "update", str(job_id), "--args", '{"a": 2}', "--delay", "0")
    assert result.returncode == 0 and job(app, job_id).args == {"a": 2}
    for args, message in (
        (("jobs", "update", str(job_id)), "nothing to change"),
        (("jobs", "update", str(job_id), "--args", "[1]"), "--args must be a JSON object"),
        (("jobs", "update", str(job_id), "--no-tags", "--tag", "x"), "not both"),
        (("jobs", "update", "abc", "--priority", "1"), "not a job id"),
    ):
        failed = pgq_cli(database_url, *args)
        assert failed.returncode == 2 and message in failed.stderr, (args, failed.stderr)
