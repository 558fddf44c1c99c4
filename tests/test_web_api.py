"""The dashboard's REST API, form actions and security, against a real PostgreSQL.

Starlette's TestClient drives the ASGI app in process; the browser tests
(test_web_browser.py) cover what needs a real page and a real server.
"""

from __future__ import annotations

import asyncio
import json
import re
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")

import pgq
from pgq.errors import ConfigurationError
from pgq.web import create_app
from pgq.web.server import check_exposure
from tests.openapi_check import CheckedClient, check_responses
from tests.rows import add_worker
from tests.sse import next_snapshot

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# https: the cookies are Secure, which httpx (unlike browsers on 127.0.0.1) sends over https only.
BASE = "https://127.0.0.1"
_CLIENTS: list[CheckedClient] = []


def client(app: pgq.App, **options: Any) -> CheckedClient:
    made = CheckedClient(create_app(app, **options), base_url=BASE, follow_redirects=False)
    _CLIENTS.append(made)
    return made


@pytest.fixture(autouse=True)
def responses_match_the_openapi_document() -> Iterator[None]:
    """Every API response a test saw is one the generated OpenAPI document describes."""
    _CLIENTS.clear()
    yield
    for made in _CLIENTS:
        check_responses(made.app.state.dashboard.openapi(""), made.seen)  # type: ignore[attr-defined]


@pytest.fixture
def api(app: pgq.App) -> Iterator[TestClient]:
    with client(app) as c:
        yield c


def csrf_of(c: TestClient, path: str = "/") -> str:
    page = c.get(path)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, "no CSRF field on the page"
    return match.group(1)


# ----------------------------------------------------------------------- jobs


def test_enqueue_list_get_and_paginate(api: TestClient) -> None:
    created = api.post("/api/jobs", json={"task": "send", "args": {"to": "ada"}, "queue": "emails", "priority": 5})
    assert created.status_code == 201, created.text
    job = created.json()["job"]
    assert job["task"] == "send" and job["queue"] == "emails" and job["priority"] == 5 and job["status"] == "pending"

    delayed = api.post("/api/jobs", json={"task": "send", "delay": 3600, "key": "k1"}).json()
    again = api.post("/api/jobs", json={"task": "send", "delay": 3600, "key": "k1"}).json()
    assert again["id"] == delayed["id"], "a live job's key returns the existing job"
    at = api.post("/api/jobs", json={"task": "send", "run_at": "2099-01-01T00:00:00+00:00", "max_attempts": 1}).json()
    assert at["job"]["run_at"].startswith("2099-01-01") and at["job"]["max_attempts"] == 1

    everything = api.get("/api/jobs").json()
    assert [j["id"] for j in everything["jobs"]] == [at["id"], delayed["id"], created.json()["id"]]
    assert everything["next_before_id"] is None
    page = api.get("/api/jobs", params={"limit": 2}).json()
    assert len(page["jobs"]) == 2 and page["next_before_id"] == delayed["id"]
    rest = api.get("/api/jobs", params={"limit": 2, "before_id": page["next_before_id"]}).json()
    assert [j["id"] for j in rest["jobs"]] == [created.json()["id"]]
    assert [j["id"] for j in api.get("/api/jobs", params={"queue": "emails"}).json()["jobs"]] == [job["id"]]
    assert [j["id"] for j in api.get("/api/jobs", params={"key": "k1"}).json()["jobs"]] == [delayed["id"]]
    assert len(api.get("/api/jobs", params={"status": "pending", "task": "send"}).json()["jobs"]) == 3
    assert api.get("/api/jobs", params={"status": "failed"}).json()["jobs"] == []

    one = api.get(f"/api/jobs/{job['id']}")
    assert one.status_code == 200 and one.json()["args"] == {"to": "ada"}
    stats = {q["queue"]: q for q in api.get("/api/jobs/stats").json()["queues"]}
    assert (stats["emails"]["waiting"], stats["default"]["waiting"], stats["default"]["delayed"]) == (1, 0, 2)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"args": {}}, '"task" is required'),
        ({"task": "t", "args": [1]}, "'args' must be a JSON object"),
        ({"task": "t", "args": "x"}, "'args' must be a JSON object"),
        ({"task": "t", "colour": "red"}, "unknown field(s) colour"),
        ({"task": "t", "priority": "high"}, "'priority' must be an integer"),
        ({"task": "t", "priority": True}, "'priority' must be an integer"),
        ({"task": 7}, "'task' must be a string"),
        ({"task": "t", "run_at": "tomorrow"}, "not ISO 8601"),
        ({"task": "t", "run_at": "2030-01-01T00:00:00"}, "no time zone"),
        ({"task": "t", "delay": 5, "run_at": "2030-01-01T00:00:00+00:00"}, "not both"),
        ({"task": "t", "max_attempts": 0}, "max_attempts"),
        ({"task": "t", "queue": "bad queue!"}, "queue"),
        ({"task": "t", "depends_on": 5}, "'depends_on' must be a JSON array"),
        ({"task": "t", "depends_on": ["a"]}, "positive integers"),
        ({"task": "t", "depends_on": [424242]}, "do not exist: 424242"),
        ({"task": "t", "on_parent_failure": "run"}, "on_parent_failure needs depends_on"),
        ({"task": "t", "unique_for": 60}, "unique_for needs a key"),
        ({"task": "t", "key": "k", "debounce": -1}, "'debounce' must be more than 0 s"),
        ({"task": "t", "group": ""}, "'group' must be a non-empty string"),
    ],
)
def test_enqueue_rejects_bad_bodies_with_422(api: TestClient, body: Any, message: str) -> None:
    content = body if isinstance(body, str) else json.dumps(body)
    response = api.post("/api/jobs", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]
    assert api.get("/api/jobs").json()["jobs"] == [], "nothing was written"


def test_enqueue_with_parents_group_and_keys(api: TestClient, app: pgq.App) -> None:
    parent = api.post("/api/jobs", json={"task": "t", "delay": 3600}).json()["id"]
    child = api.post(
        "/api/jobs", json={"task": "t", "depends_on": [parent], "on_parent_failure": "run", "group": "tenant:1"}
    ).json()["job"]
    assert child["status"] == "blocked" and child["depends_on"] == [parent]
    assert child["on_parent_failure"] == "run" and child["group_key"] == "tenant:1"
    page = api.get(f"/jobs/{child['id']}").text
    assert f'<dt>waits for</dt><dd><a href="/jobs/{parent}">#{parent}</a></dd>' in page
    assert "its parents are not done: job " in page
    first = api.post("/api/jobs", json={"task": "t", "key": "k", "unique_for": 60}).json()["id"]
    assert api.post("/api/jobs", json={"task": "t", "key": "k", "unique_for": 60}).json()["id"] == first


def test_enqueue_body_fields_are_the_options_of_app_enqueue(api: TestClient) -> None:
    """POST /api/jobs hands its body to app.enqueue field for field (``**body.model_dump()``)."""
    from pgq.job import EnqueueOptions
    from pgq.web.models import EnqueueIn

    options = {"task", "args"} | set(EnqueueOptions.__optional_keys__) - {"connection", "strict"}
    assert set(EnqueueIn.model_fields) == options
    body = {"task": "t", "args": {"n": 1}, "tags": ["a", "b"], "meta": {"by": "ops"}, "priority": -3}
    job = api.post("/api/jobs", json=body).json()["job"]
    assert (job["args"], job["tags"], job["meta"], job["priority"]) == ({"n": 1}, ["a", "b"], {"by": "ops"}, -3)


def test_strict_dashboard_refuses_unknown_tasks(app: pgq.App) -> None:
    @app.task
    def known(n: int) -> None: ...

    with client(app, strict=True) as c:
        refused = c.post("/api/jobs", json={"task": "unknown"})
        assert refused.status_code == 422 and "unknown" in refused.json()["error"]
        bad_args = c.post("/api/jobs", json={"task": "known", "args": {"m": 1}})
        assert bad_args.status_code == 422, bad_args.text
        assert c.post("/api/jobs", json={"task": "known", "args": {"n": 1}}).status_code == 201


def test_read_errors(api: TestClient) -> None:
    assert api.get("/api/jobs/12345").status_code == 404
    assert "no job with id 12345" in api.get("/api/jobs/12345").json()["error"]
    assert api.get("/api/jobs/abc").status_code == 404
    for params, message in (
        ({"status": "sleeping"}, "status must be one of"),
        ({"limit": "0"}, "between 1 and 1000"),
        ({"limit": "many"}, "whole number"),
        ({"before_id": "x"}, "whole number"),
        ({"colour": "red"}, "unknown query parameter"),
    ):
        response = api.get("/api/jobs", params=params)
        assert response.status_code == 422 and message in response.json()["error"], response.text
    # Digits that are not ASCII, underscores, NUL bytes: clear errors, never a 500.
    assert api.get("/api/jobs/1_0").status_code == 404
    assert api.get("/api/jobs/\u00b2").status_code == 404
    assert api.get("/jobs/\u00b2").status_code == 404
    assert api.get("/jobs", params={"id": "\u00b2"}).status_code == 303  # back to the list, with a message
    assert api.get("/jobs", params={"before_id": "\u00b2"}).status_code == 200
    for params in ({"queue": "a\x00b"}, {"task": "\x00"}):
        response = api.get("/api/jobs", params=params)
        assert response.status_code == 422 and "refused" in response.json()["error"], response.text
    nul = api.post("/api/jobs", json={"task": "t\u0000x"})
    assert nul.status_code == 422, nul.text
    missing = api.get("/api/nothing-here")
    assert missing.status_code == 404 and "openapi.json" in missing.json()["error"]
    assert api.delete("/api/jobs").status_code == 405
    assert "error" in api.delete("/api/jobs").json()


def test_job_actions_and_their_errors(api: TestClient, app: pgq.App) -> None:
    job_id = app.enqueue("work", {"n": 1})

    def act(target: int | str, body: Any) -> Any:
        return api.post(f"/api/jobs/{target}/action", json=body)

    conflict = act(job_id, {"action": "retry"})
    assert conflict.status_code == 409 and "only failed or cancelled" in conflict.json()["error"]
    cancelled = act(job_id, {"action": "cancel"})
    assert cancelled.status_code == 200 and cancelled.json()["job"]["status"] == "cancelled"
    again = act(job_id, {"action": "cancel"})
    assert again.status_code == 409 and "already finished" in again.json()["error"]
    retried = act(job_id, {"action": "retry"})
    assert retried.status_code == 200 and retried.json()["job"]["status"] == "pending"

    promoted = act(app.enqueue("work", {}, delay=3600), {"action": "promote"})
    assert promoted.status_code == 200, promoted.text
    promoted_job = promoted.json()["job"]
    due = datetime.fromisoformat(promoted_job["run_at"]) - datetime.fromisoformat(promoted_job["created_at"])
    assert due < timedelta(minutes=1), "promoted: due now, not in an hour"
    assert act(job_id, {"action": "remove"}).status_code == 409, "a live job cannot be removed"
    assert act(job_id, {"action": "cancel"}).status_code == 200
    assert act(job_id, {"action": "promote"}).status_code == 409
    removed = act(job_id, {"action": "remove"})
    assert removed.status_code == 200 and removed.json()["job"] is None
    assert api.get(f"/api/jobs/{job_id}").status_code == 404
    assert act(job_id, {"action": "remove"}).status_code == 404

    assert act(999999, {"action": "cancel"}).status_code == 404
    assert act(999999, {"action": "retry"}).status_code == 404
    assert act(job_id, {"action": "explode"}).status_code == 422
    assert act(job_id, {}).status_code == 422
    assert act(job_id, {"action": "cancel", "force": True}).status_code == 422
    assert act(job_id, [1]).status_code == 422
    assert act("abc", {"action": "cancel"}).status_code == 404


# ------------------------------------------------------------ queues, workers


def test_queues_and_workers_api(api: TestClient, app: pgq.App, database_url: str) -> None:
    failed = app.enqueue("t", {}, queue="emails")
    app.cancel(failed)
    with psycopg.connect(database_url, autocommit=True) as conn:  # a failed job, as a worker leaves it
        conn.execute("update pgq.job_history set status = 'failed' where id = %s", [failed])
        add_worker(conn, name="w-1", queues=["emails"], concurrency=4)
    app.enqueue("t", {}, queue="emails")

    paused = api.post("/api/queues/emails/pause")
    assert paused.status_code == 200 and "paused" in paused.json()["message"]
    queues = {q["name"]: q for q in api.get("/api/queues").json()["queues"]}
    assert queues["emails"]["paused"] is True and queues["emails"]["waiting"] == 1
    assert api.post("/api/queues/emails/resume", json={}).status_code == 200
    assert api.get("/api/queues").json()["queues"][0]["paused"] is False
    retried = api.post("/api/queues/emails/retry-failed")
    assert retried.status_code == 200 and "1 failed job back" in retried.json()["message"]
    assert app.get_job(failed).status == "pending"  # type: ignore[union-attr]

    assert api.post("/api/queues/emails/explode").status_code == 404
    assert api.post("/api/queues/bad%20name/pause").status_code == 422
    assert api.post("/api/queues/emails/pause", json={"why": "x"}).status_code == 422
    workers = api.get("/api/workers").json()["workers"]
    assert [(w["name"], w["concurrency"]) for w in workers] == [("w-1", 4)]

    token = csrf_of(api, "/queues")
    page = api.get("/queues").text
    assert "Pause" in page and "emails" in page and "w-1" not in page
    assert "w-1" in api.get("/workers").text and "w-1" in api.get("/").text
    done = api.post("/actions/queue", data={"name": "emails", "action": "pause", "csrf": token, "next": "/queues"})
    assert done.status_code == 303
    assert "Resume" in api.get("/queues").text and "paused" in api.get("/queues").text


# ------------------------------------------------------------------ schedules


def test_schedules_api(api: TestClient, app: pgq.App) -> None:
    app.add_schedule("nightly report", "0 3 * * *", "report", {"Api_Key": "k", "day": 1})
    listed = api.get("/api/schedules").json()["schedules"]
    assert [s["name"] for s in listed] == ["nightly report"]
    assert listed[0]["args"] == {"Api_Key": "[redacted]", "day": 1}

    url = "/api/schedules/nightly%20report/action"
    disabled = api.post(url, json={"action": "disable"})
    assert disabled.status_code == 200 and disabled.json()["schedule"]["enabled"] is False
    assert api.post(url, json={"action": "enable"}).json()["schedule"]["enabled"] is True
    triggered = api.post(url, json={"action": "trigger"})
    assert triggered.status_code == 200 and "enqueued" in triggered.json()["message"]
    assert [j["task"] for j in api.get("/api/jobs").json()["jobs"]] == ["report"]

    assert api.post("/api/schedules/nope/action", json={"action": "trigger"}).status_code == 404
    assert api.post(url, json={"action": "delete"}).status_code == 422
    assert api.post(url, content="{", headers={"content-type": "application/json"}).status_code == 422


def test_explain_endpoint_and_the_job_pages_panel(api: TestClient, app: pgq.App, database_url: str) -> None:
    task = "<b>bold</b> & co"
    job_id = app.enqueue(task, queue="mail")
    app.pause_queue("mail")
    with psycopg.connect(database_url, autocommit=True) as conn:
        add_worker(conn, queues=["mail"], tasks=["other"])
    body = api.get(f"/api/jobs/{job_id}/explain").json()
    assert body["id"] == job_id and body["text"] == app.explain(job_id)
    assert body["reasons"] == [
        "its queue mail is paused (pgq queues resume mail)",
        f"no live worker knows its task {task}: the 1 live worker(s) serving queue mail have not registered it "
        "(deploy the code that defines it, or check the task name)",
    ]
    page = api.get(f"/jobs/{job_id}").text
    assert "Why isn't it running?" in page and f'data-job-explain="{job_id}"' in page
    assert "<li>its queue mail is paused (pgq queues resume mail)</li>" in page
    assert "no live worker knows its task &lt;b&gt;bold&lt;/b&gt; &amp; co:" in page and "<b>bold</b>" not in page
    # Nothing to explain once it finished: no panel, and the API says so in one line.
    app.cancel(job_id)
    assert "Why isn't it running?" not in api.get(f"/jobs/{job_id}").text
    assert api.get(f"/api/jobs/{job_id}/explain").json()["reasons"] == []
    missing = api.get("/api/jobs/999999/explain")
    assert missing.status_code == 404 and "no job with id 999999" in missing.json()["error"]
    assert api.get("/api/jobs/abc/explain").status_code == 404


def test_openapi_describes_every_endpoint(api: TestClient) -> None:
    doc = api.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {
        "/api/queues",
        "/api/queues/{name}/{action}",
        "/api/workers",
        "/api/jobs",
        "/api/jobs/stats",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/action",
        "/api/jobs/{job_id}/explain",
        "/api/schedules",
        "/api/schedules/{name}/action",
    }
    action = doc["paths"]["/api/jobs/{job_id}/action"]["post"]
    assert {"404", "409", "422"} <= set(action["responses"])


# -------------------------------------------------------------------- security


def test_redaction_everywhere(api: TestClient, app: pgq.App) -> None:
    args = {
        "password": "hunter2",
        "nested": {"API-Key": "k-123", "Authorization": "Bearer xyz", "keep": "visible"},
        "items": [{"Secret": "s-456"}, {"token": "t-789"}],
        "access_token": "at-1",
        "client_secret": "cs-2",
        "db_password": "dp-3",
        "X-Api-Key": "xk-4",
    }
    job_id = app.enqueue("login", args)
    shown = api.get(f"/api/jobs/{job_id}").json()["args"]
    assert shown == {
        "password": "[redacted]",
        "nested": {"API-Key": "[redacted]", "Authorization": "[redacted]", "keep": "visible"},
        "items": [{"Secret": "[redacted]"}, {"token": "[redacted]"}],
        "access_token": "[redacted]",
        "client_secret": "[redacted]",
        "db_password": "[redacted]",
        "X-Api-Key": "[redacted]",
    }
    pages = api.get(f"/jobs/{job_id}").text + api.get("/jobs").text + json.dumps(api.get("/api/jobs").json())
    for secret in ("hunter2", "k-123", "xyz", "s-456", "t-789", "at-1", "cs-2", "dp-3", "xk-4"):
        assert secret not in pages
    assert "visible" in pages

    with client(app, redact_keys=["keep"]) as other:
        assert other.get(f"/api/jobs/{job_id}").json()["args"]["password"] == "hunter2"
        assert other.get(f"/api/jobs/{job_id}").json()["args"]["nested"]["keep"] == "[redacted]"


def test_html_in_args_and_errors_is_escaped(api: TestClient, app: pgq.App) -> None:
    job_id = app.enqueue("x<script>alert(1)</script>", {"html": "<script>alert('pwned')</script><img src=x onerror=1>"})
    detail = api.get(f"/jobs/{job_id}").text
    listing = api.get("/jobs").text
    for page in (detail, listing):
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page
    assert api.get(f"/jobs/{job_id}").headers["content-security-policy"].startswith("default-src 'none'")


def test_read_only_hides_and_refuses_actions(app: pgq.App) -> None:
    app.add_schedule("s", "0 * * * *", "t")
    job_id = app.enqueue("t", {})
    app.cancel(job_id)
    with client(app, read_only=True) as c:
        assert c.get("/api/jobs").status_code == 200
        for url, body in (
            ("/api/jobs", {"task": "t"}),
            (f"/api/jobs/{job_id}/action", {"action": "retry"}),
            ("/api/schedules/s/action", {"action": "trigger"}),
        ):
            refused = c.post(url, json=body)
            assert refused.status_code == 403 and "read-only" in refused.json()["error"], url
        detail = c.get(f"/jobs/{job_id}").text
        assert "read-only" in detail and "<button" not in detail.replace('<button class="link">Log out', "")
        assert "<button" not in c.get("/schedules").text
        form = c.post("/actions/job", data={"id": job_id, "action": "retry", "csrf": "x"})
        assert form.status_code == 403
    assert app.get_job(job_id).status == "cancelled"  # type: ignore[union-attr]


def test_forms_need_the_csrf_token(api: TestClient, app: pgq.App) -> None:
    job_id = app.enqueue("t", {})
    app.cancel(job_id)
    token = csrf_of(api, f"/jobs/{job_id}")
    assert api.post("/actions/job", data={"id": job_id, "action": "retry"}).status_code == 403
    assert api.post("/actions/job", data={"id": job_id, "action": "retry", "csrf": "forged" * 5}).status_code == 403
    cross = api.post(
        "/actions/job",
        data={"id": job_id, "action": "retry", "csrf": token},
        headers={"origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert app.get_job(job_id).status == "cancelled"  # type: ignore[union-attr]

    done = api.post("/actions/job", data={"id": job_id, "action": "retry", "csrf": token, "next": f"/jobs/{job_id}"})
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{job_id}"
    assert app.get_job(job_id).status == "pending"  # type: ignore[union-attr]
    assert "back in its queue" in api.get(f"/jobs/{job_id}").text  # the flash message
    refused = api.post("/actions/job", data={"id": job_id, "action": "retry", "csrf": token, "next": "//evil.example"})
    assert refused.headers["location"] == "/", "never redirect off the dashboard"
    assert "only failed or cancelled" in api.get("/").text

    # The JSON API refuses requests a browser sends for another site.
    for headers in ({"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
        response = api.post(f"/api/jobs/{job_id}/action", json={"action": "cancel"}, headers=headers)
        assert response.status_code == 403 and "cross-site" in response.json()["error"]
    form_encoded = api.post(
        "/api/jobs", content="task=t", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert form_encoded.status_code == 422 and "application/json" in form_encoded.json()["error"]


def test_schedule_forms(api: TestClient, app: pgq.App) -> None:
    app.add_schedule("hourly <b>", "0 * * * *", "t")
    page = api.get("/schedules").text
    assert "hourly &lt;b&gt;" in page
    token = csrf_of(api, "/schedules")
    response = api.post(
        "/actions/schedule", data={"name": "hourly <b>", "action": "disable", "csrf": token, "next": "/schedules"}
    )
    assert response.status_code == 303
    assert app.get_schedule("hourly <b>").enabled is False  # type: ignore[union-attr]
    api.post("/actions/schedule", data={"name": "hourly <b>", "action": "trigger", "csrf": token})
    assert [j.task for j in app.list_jobs()] == ["t"]


def test_token_guards_pages_api_and_metrics(app: pgq.App) -> None:
    with client(app, token="s3cret-token") as c:
        api_refused = c.get("/api/jobs")
        assert api_refused.status_code == 401 and "Bearer" in api_refused.json()["error"]
        assert c.get("/metrics").status_code == 401
        assert c.post("/api/jobs", json={"task": "t"}).status_code == 401
        page = c.get("/jobs?status=failed", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fjobs%3Fstatus%3Dfailed"
        assert c.get("/static/app.css").status_code == 200

        assert c.get("/api/jobs", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/api/jobs", headers={"authorization": "Bearer wrong"}).status_code == 401

        token = csrf_of(c, "/login")
        huge = c.post(
            "/login",
            content=b"token=" + b"x" * (1024 * 1024),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert huge.status_code in (401, 403, 422), "a body over the form limit is not read, let alone accepted"
        wrong = c.post("/login", data={"token": "nope", "csrf": token, "next": "/jobs"})
        assert wrong.status_code == 401 and "Wrong token" in wrong.text
        ok = c.post("/login", data={"token": "s3cret-token", "csrf": token, "next": "/jobs"})
        assert ok.status_code == 303 and ok.headers["location"] == "/jobs"
        cookie = ok.headers["set-cookie"]
        assert "pgq_auth=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
        assert "s3cret-token" not in cookie
        assert c.get("/jobs").status_code == 200
        assert c.get("/api/jobs").status_code == 200, "the session cookie works for the API too"
        c.post("/logout", data={"csrf": token})
        c.cookies.delete("pgq_auth")
        assert c.get("/api/jobs").status_code == 401
    with client(app) as open_client:
        assert open_client.get("/api/jobs").status_code == 200, "no token: no authentication"


def test_allowed_hosts_refuse_rebinding(app: pgq.App) -> None:
    with client(app, allowed_hosts=["127.0.0.1", "localhost"]) as c:
        assert c.get("/api/jobs").status_code == 200
        assert c.get("/api/jobs", headers={"host": "localhost:8080"}).status_code == 200
        assert c.get("/api/jobs", headers={"host": "evil.example"}).status_code == 400


def test_exposure_rules_of_pgq_dashboard() -> None:
    check_exposure("127.0.0.1", None, False, False)
    check_exposure("::1", None, False, False)
    check_exposure("0.0.0.0", "a-token-of-24-characters", False, False)
    check_exposure("0.0.0.0", None, True, True)
    for read_only, insecure in ((False, False), (True, False), (False, True)):
        with pytest.raises(ConfigurationError, match="PGQ_DASHBOARD_TOKEN"):
            check_exposure("0.0.0.0", None, read_only, insecure)


def test_cli_refuses_a_public_address_without_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pgq.cli import main

    monkeypatch.delenv("PGQ_DASHBOARD_TOKEN", raising=False)
    monkeypatch.setenv("PGQ_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["dashboard", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "refusing to serve the dashboard on 0.0.0.0" in capsys.readouterr().err


# ---------------------------------------------------------- mounting, metrics


def test_mounted_under_a_prefix(app: pgq.App) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    host = Starlette(routes=[Mount("/ops/pgq", app=create_app(app))])
    job_id = app.enqueue("t", {})
    app.cancel(job_id)
    with TestClient(host, base_url=BASE, follow_redirects=False) as c:
        page = c.get("/ops/pgq/")
        assert page.status_code == 200
        assert 'href="/ops/pgq/jobs"' in page.text and 'src="/ops/pgq/static/live.js"' in page.text
        assert c.get("/ops/pgq/static/app.css").status_code == 200
        assert c.get(f"/ops/pgq/api/jobs/{job_id}").json()["id"] == job_id
        assert c.get("/ops/pgq/api/openapi.json").json()["servers"] == [{"url": "/ops/pgq"}]
        token = csrf_of(c, f"/ops/pgq/jobs/{job_id}")
        done = c.post(
            "/ops/pgq/actions/job", data={"id": job_id, "action": "retry", "csrf": token, "next": f"/jobs/{job_id}"}
        )
        assert done.status_code == 303 and done.headers["location"] == f"/ops/pgq/jobs/{job_id}"


def test_metrics(api: TestClient, app: pgq.App, database_url: str) -> None:
    app.enqueue("t", {}, queue="emails")
    app.enqueue("t", {}, queue="emails", delay=600)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into pgq.metrics"
            " (queue, at, interval_seconds, completed, failed, retried, run_ms_mean, wait_ms_p95, rejected) values"
            " ('emails', now() - interval '20 s', 10, 5, 1, 2, 250, 40, 4),"
            " ('emails', now() - interval '10 s', 10, 3, 0, 0, 500, 80, 3),"
            " ('emails', now() - interval '25 hours', 10, 100, 100, 100, null, null, 100)"
        )
        conn.execute("insert into pgq.queues (name, rejected) values ('emails', 107)")
        add_worker(conn, queues=["emails"], concurrency=10, running=[1, 2, 3])
    text = api.get("/metrics").text
    assert 'pgq_jobs{queue="emails",state="pending"} 1.0' in text
    assert 'pgq_jobs{queue="emails",state="delayed"} 1.0' in text
    assert 'pgq_jobs_completed_24h{queue="emails"} 8.0' in text  # rows older than 24 h are not counted
    assert 'pgq_jobs_failed_24h{queue="emails"} 1.0' in text
    assert 'pgq_jobs_retried_24h{queue="emails"} 2.0' in text
    assert 'pgq_jobs_rejected_24h{queue="emails"} 7.0' in text
    assert 'pgq_jobs_rejected_total{queue="emails"} 107.0' in text
    assert 'pgq_job_run_seconds{queue="emails",stat="mean"} 0.5' in text
    assert 'pgq_job_wait_seconds{queue="emails",stat="p95"} 0.08' in text
    assert "pgq_worker_slots 10.0" in text and "pgq_worker_slots_in_use 3.0" in text and "pgq_workers 1.0" in text
    overview = api.get("/").text
    assert "8 completed, 1 failed in the last hour" in overview and "data-chart-queue='\"emails\"'" in overview


# ----------------------------------------------------------------------- live


async def test_live_hub_reads_once_per_tick_for_all_browsers(app: pgq.App, database_url: str) -> None:
    from pgq.redaction import Redactor
    from pgq.web.live import LiveHub

    job_id = app.enqueue("t", {}, queue="live")
    hub = LiveHub(app, Redactor([]), tick=0.3)

    streams = [hub.stream(frozenset({job_id})) for _ in range(3)]
    try:
        firsts = [await next_snapshot(s) for s in streams]
        assert all(f["counts"]["live"]["pending"] == 1 for f in firsts)
        assert firsts[0]["jobs"][str(job_id)]["status"] == "pending"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("select pgq.enqueue('t', '{}', 'live')")
        update = await next_snapshot(streams[0])
        assert update["counts"]["live"]["pending"] == 2, "the NOTIFY brought the change"
        reads = hub.reads
        await asyncio.sleep(1.0)
        # Three browsers, ~3 ticks: one statement per tick (plus a finished count
        # at most every 2 s), not one per browser.
        assert hub.reads - reads <= 5
        app.cancel(job_id)
        # The job's own state follows at the next tick; the finished counts within
        # finished_every (2 s) of the previous count.
        cancelled = await next_snapshot(streams[1])
        while cancelled["jobs"][str(job_id)]["status"] != "cancelled" or cancelled["totals"]["cancelled"] != 1:
            cancelled = await next_snapshot(streams[1])
    finally:
        for s in streams:
            await s.aclose()
        await hub.aclose()
    assert not hub.subscribers


async def test_a_browser_arriving_while_reads_fail_gets_the_error_not_the_last_figures(
    app: pgq.App, database_url: str
) -> None:
    from pgq.redaction import Redactor
    from pgq.web.live import LiveHub

    hub = LiveHub(app, Redactor([]), tick=0.2)
    first = hub.stream(frozenset())
    later = None
    try:
        assert (await next_snapshot(first))["error"] is None
        with psycopg.connect(database_url, autocommit=True) as conn:
            # A real failure of the hub's read: the table it reads is gone for a moment.
            conn.execute("alter table pgq.workers rename to workers_away")
            try:
                while (await next_snapshot(first))["error"] is None:
                    pass
                later = hub.stream(frozenset())
                arrived = await next_snapshot(later)
                assert arrived["error"] and arrived["database"] is False, arrived
            finally:
                conn.execute("alter table pgq.workers_away rename to workers")
        assert (await next_snapshot(later))["error"] is None, "the figures come back with the table"
    finally:
        await first.aclose()
        if later is not None:
            await later.aclose()
        await hub.aclose()


# ------------------------------------------------------------ worker metrics


@pytest.mark.slow
def test_worker_metrics_port(database_url: str, start_worker: Any, app: pgq.App) -> None:
    import socket
    import time
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start_worker("--concurrency", "4", "--metrics-port", f"127.0.0.1:{port}", app="tests.apps.web:app")
    ids = [app.enqueue("echo", {"n": i}) for i in range(3)]
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            text = ""
        if 'pgq_worker_jobs_finished_total{outcome="completed",queue="default",task="echo"} 3.0' in text:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no metrics for 3 completed jobs {ids}:\n{text}")
    assert 'pgq_worker_jobs_started_total{queue="default",task="echo"} 3.0' in text
    assert 'pgq_worker_job_run_seconds_count{queue="default",task="echo"} 3.0' in text
    assert 'pgq_worker_job_wait_seconds_bucket{le="+Inf",queue="default"} 3.0' in text
    assert "pgq_worker_slots 4.0" in text and "pgq_worker_slots_in_use 0.0" in text


def test_worker_metrics_port_refusals(capsys: pytest.CaptureFixture[str]) -> None:
    from pgq.cli import main

    assert main(["worker", "tests.apps.web:app", "--processes", "2", "--metrics-port", "9"]) == 2
    assert "one process" in capsys.readouterr().err
    assert main(["worker", "tests.apps.web:app", "--metrics-port", "nope"]) == 2
    assert "PORT or HOST:PORT" in capsys.readouterr().err


# --------------------------------------------------- issue 16: rows, errors, limits


def nested(depth: int, leaf: Any) -> str:
    """JSON nested ``depth`` objects deep, as only SQL can store it."""
    return '{"a": ' * depth + json.dumps(leaf) + "}" * depth


@pytest.mark.parametrize("depth", [500, 10_000])
def test_rows_nested_deeply_by_sql_render_on_every_surface(api: TestClient, conn: Any, depth: int) -> None:
    from pgq.display import CUT

    conn.execute(
        "insert into pgq.jobs (queue, task, args) values ('emails', 'deep', %s::jsonb)",
        [nested(depth, {"password": "hunter2"})],
    )
    conn.execute(
        """insert into pgq.job_history (id, queue, task, args, priority, status, attempts, max_attempts, run_at,
                                        created_at, finished_at, result, errors)
           values (nextval(pg_get_serial_sequence('pgq.jobs', 'id')), 'emails', 'deep-done', '{}', 0, 'completed',
                   1, 3, now(), now(), now(), %s::jsonb, %s::jsonb)""",
        [nested(depth, "r"), "[" + nested(depth, 1) + "]"],
    )
    ids = [r["id"] for r in conn.execute("select id from pgq.all_jobs order by id")]
    listed = api.get("/api/jobs")
    assert listed.status_code == 200, listed.text
    assert [j["id"] for j in listed.json()["jobs"]] == ids[::-1]
    for job_id in ids:
        one = api.get(f"/api/jobs/{job_id}")
        assert one.status_code == 200, one.text
        assert CUT in one.text and "hunter2" not in one.text
        page = api.get(f"/jobs/{job_id}")
        assert page.status_code == 200 and CUT in page.text and "hunter2" not in page.text
    for path in ("/jobs", "/", "/queues", "/jobs?queue=emails"):
        response = api.get(path)
        assert response.status_code == 200 and "hunter2" not in response.text, path


def test_the_api_validates_against_its_document(api: TestClient, app: pgq.App) -> None:
    """The check of every response (the autouse fixture) is real: a wrong body fails it."""
    from tests.openapi_check import Seen

    job_id = app.enqueue("t", {"n": 1})
    assert api.get(f"/api/jobs/{job_id}").status_code == 200
    doc = api.get("/api/openapi.json").json()
    assert check_responses(doc, api.seen) == 1  # type: ignore[attr-defined]
    with pytest.raises(Exception, match=r"is not of type|is a required property"):
        check_responses(doc, [Seen("get", f"/api/jobs/{job_id}", 200, {"id": "seven"})])
    with pytest.raises(AssertionError, match="does not declare"):
        check_responses(doc, [Seen("get", f"/api/jobs/{job_id}", 418, {"error": "teapot"})])


def test_openapi_document_is_complete(api: TestClient) -> None:
    doc = api.get("/api/openapi.json").json()
    operations = [op for ops in doc["paths"].values() for op in ops.values()]
    assert len(operations) >= 13
    assert all(op.get("operationId") and op.get("tags") and op.get("summary") for op in operations)
    assert len({op["operationId"] for op in operations}) == len(operations)
    for op in operations:
        assert {"401", "503"} <= set(op["responses"]), op["operationId"]
        error = op["responses"]["503"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorOut"}
    schemas = doc["components"]["schemas"]
    for name in ("JobOut", "QueueInfo", "WorkerInfo", "QueueStats", "Schedule", "Series"):
        assert schemas[name]["properties"] and schemas[name]["required"], name
    enqueue = schemas["EnqueueIn"]["properties"]
    assert enqueue["max_attempts"]["anyOf"][0]["maximum"] == 1000
    assert '"minimum": 0' in json.dumps(enqueue["delay"]) and '"minimum": 1' in json.dumps(enqueue["max_attempts"])
    assert schemas["EnqueueIn"]["additionalProperties"] is False
    assert "HTTPValidationError" not in schemas, "422 answers are {error}, as every other error"


def test_database_lost_after_start_answers_503(
    app: pgq.App, pg_server: Any, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """The server stops under a running dashboard, then comes back (a restart: AdminShutdown)."""
    from tests import pgservers

    if pg_server.name == "external":
        pytest.skip("needs a server the tests can restart")
    monkeypatch.setenv("PGQ_CONNECT_TIMEOUT", "2")
    quick = pgq.App(database_url)
    job_id = quick.enqueue("t", {})
    try:
        with client(quick) as c:
            assert c.get("/api/jobs").status_code == 200
            pgservers.pg_ctl(pg_server, "stop", "-m", "fast")
            try:
                for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/queues", "/api/jobs/stats", "/metrics"):
                    response = c.get(path)
                    assert response.status_code == 503, (path, response.text)
                    assert "database is unreachable" in response.json()["error"]
                page = c.get("/jobs", headers={"accept": "text/html"})
                assert page.status_code == 503 and "Database unavailable" in page.text
                assert 'href="/static/app.css"' in page.text, "a styled page, not a bare 500"
                refused = c.post("/api/jobs", json={"task": "t"})
                assert refused.status_code == 503 and "error" in refused.json()
            finally:
                pgservers.pg_ctl(pg_server, "start")
            # Back: the pool still holds connections the restart closed (AdminShutdown on their next
            # use) and reconnects on its own backoff. Until it has, 503 with a message; never a 500.
            import time

            deadline = time.monotonic() + 30
            while (response := c.get("/api/jobs")).status_code != 200:
                assert response.status_code == 503 and "error" in response.json(), response.text
                assert time.monotonic() < deadline, "the dashboard did not recover"
                time.sleep(0.2)
            for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/queues", "/"):
                assert c.get(path).status_code == 200, path
    finally:
        quick.close()


def test_bodies_larger_than_the_limit_are_refused_unread(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQ_MAX_PAYLOAD_BYTES", "10000")
    small = pgq.App(database_url)
    try:
        with client(small) as c:
            limit = 2 * 10000 + 64 * 1024
            declared = c.post(
                "/api/jobs",
                content=b"{" + b" " * limit + b"}",
                headers={"content-type": "application/json"},
            )
            assert declared.status_code == 413 and f"larger than {limit} bytes" in declared.json()["error"]
            form = c.post("/actions/job", content=b"x" * (limit + 1), headers={"content-type": "text/plain"})
            assert form.status_code == 413
            ok = c.post("/api/jobs", json={"task": "t", "args": {"text": "x" * 9000}})
            assert ok.status_code == 201, ok.text
        # A real server, a body sent in chunks without a length: refused before the end of it.
        import socket
        import threading
        import time

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(small), host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(
                    b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                sent, answer = 0, b""
                sock.settimeout(0.05)
                while sent < 1000 and not answer:
                    try:
                        sock.sendall(b"2710\r\n" + b" " * 10_000 + b"\r\n")  # 10,000 bytes a chunk
                        sent += 1
                        answer = sock.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                sock.settimeout(5)
                answer = answer or sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert sent < 20, f"{sent} chunks of 10,000 bytes went in before the refusal"
        finally:
            server.should_exit = True
            thread.join(10)
    finally:
        small.close()


def test_wrong_tokens_are_throttled_per_client(app: pgq.App, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgq.web import security

    monkeypatch.setattr(security, "FAILURE_DELAY", 0.01)
    token = "correct-horse-battery-staple"
    with client(app, token=token) as c:
        for _ in range(security.MAX_FAILURES):
            assert c.get("/api/jobs", headers={"authorization": "Bearer guess"}).status_code == 401
        refused = c.get("/api/jobs", headers={"authorization": f"Bearer {token}"})
        assert refused.status_code == 429, "even the right token: a guesser must not learn it is right"
        assert int(refused.headers["retry-after"]) >= 1 and "too many wrong tokens" in refused.json()["error"]
        login = csrf_of(c, "/login")
        assert c.post("/login", data={"token": token, "csrf": login}).status_code == 429
    with client(app, token=token) as other:  # another dashboard process: its own count
        assert other.get("/api/jobs", headers={"authorization": f"Bearer {token}"}).status_code == 200
    throttle = security.Throttle(limit=3, window=0.2)
    for _ in range(3):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is not None and throttle.retry_after("10.0.0.2") is None
    import time

    time.sleep(0.25)
    assert throttle.retry_after("10.0.0.1") is None, "failures age out"


def test_short_tokens_are_refused_off_loopback() -> None:
    with pytest.raises(ConfigurationError, match="at least 16"):
        check_exposure("0.0.0.0", "x", False, False)
    with pytest.raises(ConfigurationError, match="at least 16"):
        check_exposure("192.0.2.7", "fifteen-chars!!", False, False)
    check_exposure("0.0.0.0", "sixteen-chars!!!", False, False)
    check_exposure("127.0.0.1", "x", False, False)  # loopback: the operator's own machine


def test_responses_are_not_cached_and_errors_are_styled(api: TestClient, app: pgq.App) -> None:
    for path in ("/api/jobs", "/metrics", "/", "/api/openapi.json", "/api/nothing"):
        assert api.get(path).headers["cache-control"] == "no-store", path
    assert "no-store" not in api.get("/static/app.css").headers.get("cache-control", "")
    missing = api.get("/no/such/page")
    assert (
        missing.status_code == 404 and 'href="/static/app.css"' in missing.text and "<h1>Not found</h1>" in missing.text
    )
    assert missing.headers["content-security-policy"].startswith("default-src 'none'")
    assert api.post("/").status_code == 405 and "Not allowed" in api.post("/").text

    def broken() -> None:
        raise RuntimeError("a bug")

    app.list_workers = broken  # type: ignore[method-assign]
    with CheckedClient(create_app(app), base_url=BASE, raise_server_exceptions=False) as c:
        page = c.get("/workers")
        assert page.status_code == 500 and "Dashboard error" in page.text and 'href="/static/app.css"' in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        assert "a bug" not in page.text, "no internals on the page: the log has them"
        api_error = c.get("/api/workers")
        assert api_error.status_code == 500 and "error" in api_error.json()


def test_the_last_page_is_not_followed_by_an_empty_one(api: TestClient, app: pgq.App) -> None:
    app.enqueue_many([pgq.JobSpec("t", {"n": i}) for i in range(100)])
    first = api.get("/jobs")
    assert "older →" in first.text
    before = re.search(r'href="/jobs\?before_id=(\d+)">older', first.text)
    assert before
    second = api.get(f"/jobs?before_id={before.group(1)}")
    assert second.text.count('data-job-attempts="') == 50 and "older →" not in second.text
    assert 'id="new-jobs"' not in second.text, "an older page has no new-jobs banner"
    page = api.get("/api/jobs", params={"limit": 50}).json()
    assert page["next_before_id"] is not None
    rest = api.get("/api/jobs", params={"limit": 50, "before_id": page["next_before_id"]}).json()
    assert len(rest["jobs"]) == 50 and rest["next_before_id"] is None


def test_a_queue_named_with_a_pipe_is_just_a_name(api: TestClient, conn: Any) -> None:
    # The name rules hold in the database itself now (migration 0007): not even SQL writes "a|b".
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("insert into pgq.jobs (queue, task, args) values ('a|b', 't', '{}')")
    # Live data travels as JSON, whatever the name holds.
    conn.execute("insert into pgq.jobs (queue, task, args) values ('a:b.c-d', 't', '{}')")
    page = api.get("/").text
    assert 'data-count=\'["a:b.c-d", "pending"]\'' in page
    assert "data-queues='[\"a:b.c-d\"]'" in page


def test_run_now_records_the_run_and_links_the_job(api: TestClient, app: pgq.App) -> None:
    app.add_schedule("nightly", "0 3 * * *", "report")
    token = csrf_of(api, "/schedules")
    done = api.post(
        "/actions/schedule", data={"name": "nightly", "action": "trigger", "csrf": token, "next": "/schedules"}
    )
    assert done.status_code == 303
    schedule = app.get_schedule("nightly")
    assert schedule is not None and schedule.last_job_id is not None and schedule.last_run_at is not None
    page = api.get("/schedules").text
    assert f'href="/jobs/{schedule.last_job_id}">show job #{schedule.last_job_id}</a>' in page  # the flash
    assert f'href="/jobs/{schedule.last_job_id}">#{schedule.last_job_id}</a>' in page  # last run
    triggered = api.post("/api/schedules/nightly/action", json={"action": "trigger"}).json()
    assert triggered["job_id"] == triggered["schedule"]["last_job_id"] != schedule.last_job_id


def test_queue_limits_are_shown_and_edited(api: TestClient, app: pgq.App) -> None:
    app.enqueue("t", queue="reports")
    app.set_queue("reports", concurrency=2, rate="10/min")
    page = api.get("/queues").text
    assert "concurrency 2, rate 10/min" in page and 'name="concurrency" value="2"' in page
    token = csrf_of(api, "/queues")
    fields = {"name": "reports", "action": "limits", "csrf": token, "next": "/queues", "concurrency": "5"}
    done = api.post("/actions/queue", data={**fields, "rate": "", "max_pending": "100", "on_full": "drop_oldest"})
    assert done.status_code == 303
    info = {q.name: q for q in app.list_queues()}["reports"]
    assert (info.concurrency, info.rate, info.max_pending, info.on_full) == (5, None, 100, "drop_oldest")
    bad = api.post("/actions/queue", data={**fields, "concurrency": "lots"})
    assert bad.status_code == 303 and "concurrency must be a whole number" in api.get("/queues").text
    set_ = api.post("/api/queues/reports/limits", json={"rate": "5/s", "max_pending": None})
    assert set_.status_code == 200 and "rate 5/s" in set_.json()["message"], set_.text
    info = {q.name: q for q in app.list_queues()}["reports"]
    assert (info.concurrency, info.rate, info.max_pending) == (5, "5/s", None)
    assert api.post("/api/queues/reports/limits", json={"rate": "often"}).status_code == 422
    assert api.post("/api/queues/reports/limits", json={}).status_code == 422
    assert api.post("/api/queues/reports/limits", json={"concurrency": 0}).status_code == 422


def test_job_page_shows_children_graph_and_worker_name(api: TestClient, app: pgq.App, conn: Any) -> None:
    from pgq.workflow import chain, group

    ids = app.enqueue_workflow(
        chain(pgq.JobSpec("fetch"), group([pgq.JobSpec("resize"), pgq.JobSpec("scan")]), pgq.JobSpec("publish"))
    )
    page = api.get(f"/jobs/{ids[0]}").text
    assert "<dt>children</dt>" in page
    assert all(f'href="/jobs/{i}">#{i}</a>' in page for i in ids[1:3])
    assert page.count('<g class="node') == 4 and page.count('<line class="edge"') == 4
    add_worker(conn, name="mailer-1", worker_id="00000000-0000-0000-0000-0000000000aa")
    conn.execute("update pgq.jobs set worker_id = '00000000-0000-0000-0000-0000000000aa' where id = %s", [ids[0]])
    page = api.get(f"/jobs/{ids[0]}").text
    assert 'href="/workers#w-00000000-0000-0000-0000-0000000000aa"' in page and ">mailer-1</a>" in page
    assert 'id="w-00000000-0000-0000-0000-0000000000aa"' in api.get("/workers").text
