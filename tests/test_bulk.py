"""Bulk actions on everything a filter matches (issue 17): app.bulk, run on both
servers; the API, CLI and dashboard forms over it are tested here too."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

import pgq
from pgq import bulk
from tests.openapi_check import check_responses
from tests.processes import pgq_cli
from tests.test_web_api import client, csrf_of
from tests.test_worker import job


def run(conn: Any, job_id: int) -> uuid.UUID:
    """Make a job look claimed by a live worker."""
    worker_id = uuid.uuid4()
    conn.execute(
        "insert into pgq.workers (id, name, host, pid, queues, concurrency, status, last_heartbeat) "
        "values (%s, 'w', 'h', 1, '{default}', 1, 'running', now())",
        [worker_id],
    )
    conn.execute(
        "update pgq.jobs set status = 'running', worker_id = %s, started_at = now(), attempts = 1 where id = %s",
        [worker_id, job_id],
    )
    return worker_id


def fail(app: pgq.App, conn: Any, job_id: int) -> None:
    """Move a pending job to history as failed (cancel, then relabel)."""
    app.cancel(job_id)
    conn.execute("update pgq.job_history set status = 'failed' where id = %s", [job_id])


def test_cancel_by_tag_counts_first_then_cancels_waiting_and_flags_running(app: pgq.App, conn: Any) -> None:
    tagged = [app.enqueue("t", tags=["tenant:42"]) for _ in range(4)]
    delayed = app.enqueue("t", tags=["tenant:42"], delay=3600)
    running = app.enqueue("t", tags=["tenant:42"])
    run(conn, running)
    other = app.enqueue("t", tags=["tenant:7"])
    finished = app.enqueue("t", tags=["tenant:42"])
    app.cancel(finished)

    preview = app.bulk("cancel", tag="tenant:42", dry_run=True)
    assert preview == bulk.BulkResult("cancel", 6, dry_run=True)
    assert all(job(app, i).status == "pending" for i in tagged), "a dry run changes nothing"

    result = app.bulk("cancel", tag="tenant:42")
    assert (result.count, result.cancelling) == (5, 1)
    assert result.message(bulk.JobFilter(tag="tenant:42")) == (
        "5 jobs cancelled (tag=tenant:42); 1 running, their workers were told to stop them"
    )
    assert [job(app, i).status for i in (*tagged, delayed)] == ["cancelled"] * 5
    assert job(app, running).status == "running" and job(app, running).cancel_requested_at is not None
    assert job(app, other).status == "pending"


def test_batches_take_every_match_and_nothing_enqueued_after_the_start(
    app: pgq.App, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "BATCH", 2)
    ids = [app.enqueue("t", queue="imports") for _ in range(5)]
    assert app.bulk("priority", queue="imports", priority=9).count == 5
    assert {job(app, i).priority for i in ids} == {9}
    assert app.bulk("cancel", queue="imports").count == 5
    assert app.bulk("retry", queue="imports").count == 5
    assert app.bulk("cancel", queue="imports").count == 5
    assert app.bulk("delete", queue="imports").count == 5
    assert all(app.get_job(i) is None for i in ids)

    # The newest id at the start bounds the action: a job enqueued after it
    # began (here: an id past the one it read) is not taken.
    later = app.enqueue("t", queue="imports")
    real_run = app.db.run

    def start_before_later(sql: str, params: dict[str, Any], *rest: Any, **options: Any) -> Any:
        rows = real_run(sql, params, *rest, **options)
        if "as cutoff" in sql:
            rows = [{**rows[0], "last": later - 1}]
        return rows

    monkeypatch.setattr(app.db, "run", start_before_later)
    assert app.bulk("cancel", queue="imports").count == 0
    assert job(app, later).status == "pending"


def test_retry_by_args_keeps_every_column_and_skips_held_keys(app: pgq.App, conn: Any) -> None:
    mine = app.enqueue("t", {"user_id": 7, "page": 1}, tags=["a"], meta={"by": "ops"}, priority=3)
    also = app.enqueue("t", {"user_id": 7, "page": 2})
    theirs = app.enqueue("t", {"user_id": 8})
    held = app.enqueue("t", {"user_id": 7}, key="k")
    for job_id in (mine, theirs, held):
        fail(app, conn, job_id)
    app.cancel(also)
    app.enqueue("t", key="k")  # a live job holds key k

    assert app.bulk("retry", args={"user_id": 7}, dry_run=True).count == 3
    assert app.bulk("retry", args={"user_id": 7}).count == 2
    back = job(app, mine)
    assert back.status == "pending" and back.tags == ["a"] and back.meta == {"by": "ops"} and back.priority == 3
    assert job(app, also).status == "pending"
    assert job(app, theirs).status == "failed" and job(app, held).status == "failed"
    # status narrows an action to one of its states.
    fail(app, conn, also)
    app.cancel(mine)
    assert app.bulk("retry", status="cancelled", args={"user_id": 7}).count == 1
    assert job(app, mine).status == "pending" and job(app, also).status == "failed"


def test_delete_and_priority_leave_the_states_they_do_not_act_on(app: pgq.App, conn: Any) -> None:
    done = app.enqueue("report")
    app.cancel(done)
    live = app.enqueue("report")
    running = app.enqueue("report")
    run(conn, running)
    assert app.bulk("delete", task="report").count == 1
    assert app.get_job(done) is None and job(app, live).status == "pending"
    assert app.bulk("priority", task="report", priority=-5).count == 1
    assert job(app, live).priority == -5 and job(app, running).priority == 0


def test_every_job_needs_all_true(app: pgq.App) -> None:
    ids = [app.enqueue("t"), app.enqueue("u", queue="q2")]
    with pytest.raises(pgq.ConfigurationError, match=r"with no filter acts on every job: .* or all=True"):
        app.bulk("cancel")
    assert all(job(app, i).status == "pending" for i in ids)
    assert app.bulk("cancel", all=True).count == 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"action": "purge", "queue": "q"}, r"action must be one of retry, cancel, delete, priority; got 'purge'"),
        ({"action": "priority", "queue": "q"}, r"priority must be a whole number"),
        ({"action": "priority", "queue": "q", "priority": 2**31}, r"priority must be a whole number"),
        ({"action": "cancel", "queue": "q", "priority": 1}, r"priority= goes with the action 'priority'"),
        (
            {"action": "cancel", "status": "completed"},
            r"cancel acts on pending, blocked, running jobs; status=completed",
        ),
        ({"action": "delete", "status": "nope"}, r"status must be one of"),
        ({"action": "delete", "tag": ""}, r"tag must be a non-empty string"),
        ({"action": "delete", "args": [7]}, r"args must be a dict"),
    ],
)
def test_bad_input_is_refused_before_anything_changes(app: pgq.App, call: dict[str, Any], message: str) -> None:
    job_id = app.enqueue("t", queue="q")
    options = dict(call)  # one dict serves both servers' runs
    action = options.pop("action")
    with pytest.raises(pgq.ConfigurationError, match=message):
        app.bulk(action, **options)
    assert job(app, job_id).status == "pending"


# ------------------------------------------------------------------ the API


def test_the_api_counts_then_acts_and_says_what_is_wrong(app: pgq.App) -> None:
    ids = [app.enqueue("t", tags=["batch:9"]) for _ in range(3)]
    with client(app) as api:
        preview = api.post("/api/jobs/bulk", json={"action": "cancel", "filter": {"tag": "batch:9"}, "dry_run": True})
        assert preview.status_code == 200, preview.text
        assert preview.json() == {
            "action": "cancel",
            "count": 3,
            "cancelling": 0,
            "dry_run": True,
            "message": "cancel would act on 3 jobs (tag=batch:9)",
        }
        done = api.post("/api/jobs/bulk", json={"action": "cancel", "filter": {"tag": "batch:9"}}).json()
        assert done["count"] == 3 and done["message"] == "3 jobs cancelled (tag=batch:9)"
        assert {job(app, i).status for i in ids} == {"cancelled"}

        for body, message in (
            ({"action": "cancel"}, "with no filter acts on every job"),
            ({"action": "purge", "filter": {"tag": "x"}}, "field 'action' must be one of the actions"),
            ({"action": "cancel", "filter": {"tag": "a b"}}, "field 'filter.tag' must be a tag"),
            ({"action": "cancel", "filter": {"colour": "red"}}, "unknown field(s) filter.colour"),
            ({"action": "cancel", "filter": {"status": "completed"}}, "cancel acts on pending, blocked, running"),
            ({"action": "priority", "filter": {"tag": "x"}}, "priority must be a whole number"),
        ):
            refused = api.post("/api/jobs/bulk", json=body)
            assert refused.status_code == 422 and message in refused.json()["error"], (body, refused.text)
        assert api.post("/api/jobs/bulk", json={"action": "delete", "all": True}).json()["count"] == 3
    # Every answer, errors too, is one the OpenAPI document describes.
    assert check_responses(api.app.state.dashboard.openapi(""), api.seen) >= 8  # type: ignore[attr-defined]


def test_the_dashboard_shows_the_count_and_asks_before_it_acts(app: pgq.App) -> None:
    ids = [app.enqueue("t", queue="imports") for _ in range(2)]
    other = app.enqueue("t")
    with client(app) as web:
        listed = web.get("/jobs", params={"queue": "imports"}).text
        assert "Act on every job this filter matches" in listed
        assert "Act on every job" not in web.get("/jobs").text, "no bulk form without a filter"
        token = csrf_of(web, "/jobs?queue=imports")
        form = {"csrf": token, "queue": "imports", "action": "priority", "priority": "7"}
        asked = web.post("/actions/bulk", data=form)
        assert asked.status_code == 200 and "Set the priority of 2 jobs?" in asked.text
        assert 'name="confirm" value="1"' in asked.text
        assert {job(app, i).priority for i in ids} == {0}, "asking changes nothing"
        done = web.post("/actions/bulk", data={**form, "confirm": "1"})
        assert done.status_code == 303 and done.headers["location"] == "/jobs?queue=imports"
        assert {job(app, i).priority for i in ids} == {7} and job(app, other).priority == 0
        assert "2 jobs reprioritised (queue=imports)" in web.get("/jobs?queue=imports").text

        bad = web.post("/actions/bulk", data={**form, "priority": "high", "confirm": "1"})
        assert bad.status_code == 303 and "priority must be a whole number" in web.get("/jobs?queue=imports").text
        unfiltered = web.post("/actions/bulk", data={"csrf": token, "action": "cancel", "confirm": "1"})
        assert unfiltered.status_code == 303 and "choose a filter first" in web.get("/jobs").text
        assert job(app, other).status == "pending"
        forged = web.post("/actions/bulk", data={**form, "csrf": "forged" * 5, "confirm": "1"})
        assert forged.status_code == 403


# ------------------------------------------------------------------ the CLI


@pytest.mark.slow
def test_the_cli_asks_unless_told_yes_and_prints_json(app: pgq.App, database_url: str) -> None:
    ids = [app.enqueue("t", {"user_id": 7}) for _ in range(2)]
    app.enqueue("t", {"user_id": 8})
    filters = ("--args", '{"user_id": 7}')
    counted = pgq_cli(database_url, "jobs", "cancel", *filters, "--dry-run")
    assert counted.returncode == 0 and counted.stdout.strip() == 'cancel would act on 2 jobs (args={"user_id": 7})'
    refused = pgq_cli(database_url, "jobs", "cancel", *filters)  # stdin is not a terminal
    assert refused.returncode == 2 and "pass --yes to go on" in refused.stderr
    assert {job(app, i).status for i in ids} == {"pending"}
    done = pgq_cli(database_url, "jobs", "cancel", *filters, "--yes", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["count"] == 2
    retried = pgq_cli(database_url, "jobs", "retry", "--status", "cancelled", *filters)
    assert (
        retried.returncode == 0 and retried.stdout.strip() == '2 jobs retried (status=cancelled, args={"user_id": 7})'
    )
    per_id = pgq_cli(database_url, "jobs", "cancel", str(ids[0]), "nope", "--json")
    assert per_id.returncode == 2
    assert json.loads(per_id.stdout) == [
        {"id": ids[0], "outcome": "cancelled"},
        {"id": "nope", "error": "'nope' is not a job id (a whole number)"},
    ]
    for args, message in (
        (("jobs", "cancel"), "give job ids, or a filter"),
        (("jobs", "cancel", "1", "--queue", "q"), "give job ids or a filter, not both"),
        (("jobs", "delete", "--args", "[7]"), "--args must be a JSON object"),
        (("jobs", "priority", "high", "--queue", "q"), "invalid int value"),
        (("jobs", "retry", "--failed", "--status", "cancelled"), "--failed is --status failed"),
    ):
        result = pgq_cli(database_url, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    explained = json.loads(pgq_cli(database_url, "explain", str(ids[1]), "--json").stdout)
    assert explained["id"] == ids[1] and explained["reasons"] and explained["text"].startswith(f"job {ids[1]}")
