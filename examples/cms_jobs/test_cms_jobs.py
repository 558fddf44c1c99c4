"""examples/cms_jobs end to end: the FastAPI app (uvicorn) and `pgq worker`, as two real processes
started the way its README says, against the test database; and pgq's dashboard, mounted in the
CMS's admin at /admin/jobs, in headless Chromium."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.example_browser import shot
from tests.processes import WorkerProcess, wait_for

TOKEN_ENV = {"CMS_API_TOKEN": "s3cret"}
AUTH = {"Authorization": "Bearer s3cret"}


def finished(client: httpx.Client, ids: list[int]) -> list[dict[str, Any]] | None:
    jobs = [client.get(f"/jobs/{job_id}").json() for job_id in ids]
    return jobs if all(job["finished_at"] for job in jobs) else None


@pytest.mark.slow
def test_cms_jobs_end_to_end(
    database_url: str, serve: Callable[..., httpx.Client], start_worker: Callable[..., WorkerProcess]
) -> None:
    client = serve("examples.cms_jobs.api:api", env=TOKEN_ENV, headers=AUTH)
    worker = start_worker("--queues", "cms", app="examples.cms_jobs.jobs:app")

    article = {"title": "Hello", "slug": "hello", "author_email": "ed@example.com", "tags": ["news"]}
    created = client.post("/articles", json={**article, "images": ["https://cdn.test/a.png", "https://cdn.test/b.gif"]})
    assert created.status_code == 201, created.text
    ids = created.json()["jobs"]
    assert len(ids) == 4

    # A failed write leaves no job: a duplicate slug, and an unknown tag written after the enqueues.
    assert client.post("/articles", json=article).status_code == 409
    unknown_tag = client.post("/articles", json={**article, "slug": "other", "tags": ["gossip"]})
    assert unknown_tag.status_code == 409 and "no job enqueued" in unknown_tag.json()["detail"]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select count(*) from articles").fetchone() == (1,)
        assert conn.execute("select count(*) from pgq.all_jobs").fetchone() == (4,)

    # The worker runs them; b.gif fails 3 times (retried after ~2 s and ~4 s) and ends failed.
    jobs = {
        job["payload"].get("image_url", job["type"]): job for job in wait_for(lambda: finished(client, ids), 30, "jobs")
    }
    email = jobs["send-email"]
    assert email["status"] == "completed" and email["payload"] == {
        "article_id": created.json()["id"],
        "to": "ed@example.com",
    }
    assert email["priority"] == 10 and email["attempts"] == 1 and email["error"] is None
    assert email["processed_at"] and email["completed_at"] and email["result"] == {"sent_to": "ed@example.com"}
    assert jobs["generate-report"]["status"] == "completed"
    assert jobs["https://cdn.test/a.png"]["status"] == "completed"
    broken = jobs["https://cdn.test/b.gif"]
    assert broken["status"] == "failed" and broken["attempts"] == 3 and broken["max_attempts"] == 3
    assert broken["error"] == "ValueError: cannot decode https://cdn.test/b.gif" and broken["completed_at"] is None
    assert [job["id"] for job in client.get("/jobs", params={"status": "failed"}).json()] == [broken["id"]]

    # The admin endpoint's SQL over the history: today's failures here (yesterday by default).
    with psycopg.connect(database_url) as conn:
        today = conn.execute("select current_date").fetchone()[0]  # type: ignore[index]
    report = client.get("/admin/failures", params={"day": today.isoformat()}).json()
    assert [(f["type"], f["failed"]) for f in report["failures"]] == [("process-image", 1)]
    assert client.get("/admin/failures").json()["failures"] == []  # nothing failed yesterday
    assert "job" in worker.output()


@pytest.mark.slow
def test_cms_jobs_api_manages_jobs_behind_its_token(database_url: str, serve: Callable[..., httpx.Client]) -> None:
    """The job collection's API without a worker: jobs stay waiting, so they can be changed."""
    client = serve("examples.cms_jobs.api:api", env=TOKEN_ENV, headers=AUTH)
    anonymous = httpx.Client(base_url=client.base_url, timeout=10)
    assert anonymous.get("/jobs").status_code == 401
    assert anonymous.post("/jobs", json={"type": "send-email"}).status_code == 401
    wrong = anonymous.get("/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "CMS_API_TOKEN" in wrong.json()["detail"]

    # A closed set of types, each checked against its handler.
    unknown = client.post("/jobs", json={"type": "send-sms", "payload": {}})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == (
        "unknown job type 'send-sms'; the CMS's types are generate-report, process-image, send-email"
    )
    bad = client.post("/jobs", json={"type": "send-email", "payload": {"article_id": "x", "to": "a@b.c"}})
    assert bad.status_code == 422 and "article_id" in bad.json()["detail"]

    created = client.post(
        "/jobs", json={"type": "send-email", "payload": {"article_id": 1, "to": "a@b.c"}, "delay": 3600}
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["status"] == "pending" and job["type"] == "send-email" and job["priority"] == 10
    assert job["created_at"] and job["updated_at"] == job["created_at"] and job["run_at"] > job["created_at"]

    changed = client.patch(f"/jobs/{job['id']}", json={"priority": 50, "payload": {"article_id": 2, "to": "x@y.z"}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["priority"] == 50 and changed.json()["payload"] == {"article_id": 2, "to": "x@y.z"}
    due_now = client.patch(f"/jobs/{job['id']}", json={"delay": 0}).json()
    assert due_now["run_at"] < job["run_at"]  # due now, not in an hour
    assert client.patch(f"/jobs/{job['id']}", json={"payload": {"to": 1}}).status_code == 422
    assert client.patch("/jobs/999999", json={"priority": 1}).status_code == 404

    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    assert client.get(f"/jobs/{job['id']}").status_code == 404
    assert client.delete(f"/jobs/{job['id']}").status_code == 404

    # pgq's dashboard, mounted in the CMS's admin, behind the same token.
    assert anonymous.get("/admin/jobs/api/queues").status_code == 401
    queues = client.get("/admin/jobs/api/queues")
    assert queues.status_code == 200, queues.text


@pytest.mark.slow
def test_cms_admin_dashboard_in_chromium(
    serve: Callable[..., httpx.Client], start_worker: Callable[..., WorkerProcess], tab: Any, tmp_path: Path
) -> None:
    """The README's "open /admin/jobs and log in with the token": the login form, then the CMS's jobs
    on pgq's dashboard, a failed image retried and a delayed report cancelled from it."""
    client = serve("examples.cms_jobs.api:api", env=TOKEN_ENV, headers=AUTH)
    worker = start_worker("--queues", "cms", app="examples.cms_jobs.jobs:app")
    article = {"title": "Hello", "slug": "hello", "author_email": "ed@example.com"}
    ids = client.post("/articles", json={**article, "images": ["https://cdn.test/a.png", "https://cdn.test/b.gif"]})
    done = wait_for(lambda: finished(client, ids.json()["jobs"]), 30, "the article's jobs")
    broken = next(job for job in done if job["payload"].get("image_url") == "https://cdn.test/b.gif")
    assert broken["status"] == "failed"
    worker.signal(signal.SIGTERM)  # from here on, jobs wait: what the buttons do stays to be seen
    assert worker.wait(30) == 0
    report = client.post("/jobs", json={"type": "generate-report", "payload": {"article_id": 1}, "delay": 3600})
    later = report.json()["id"]
    tab.on("dialog", lambda dialog: dialog.accept())  # the dashboard confirms a cancel

    # Not logged in: the dashboard's login form, which refuses a wrong token.
    admin = f"{client.base_url}/admin/jobs"
    tab.goto(f"{admin}/")
    assert tab.url.startswith(f"{admin}/login"), tab.url
    assert tab.get_by_role("heading", name="Log in").is_visible()
    shot(tab, tmp_path, "admin-login")
    tab.fill("input[name=token]", "wrong")
    tab.get_by_role("button", name="Log in").click()
    assert tab.locator(".flash.error").inner_text() == "Wrong token."
    tab.fill("input[name=token]", "s3cret")  # CMS_API_TOKEN
    tab.get_by_role("button", name="Log in").click()
    tab.get_by_role("heading", name="Overview").wait_for()
    assert tab.url.rstrip("/") == admin and tab.locator("a", has_text="cms").first.is_visible()
    shot(tab, tmp_path, "admin-overview")

    # The CMS's jobs, under its own names, in its queue.
    tab.get_by_role("navigation").get_by_role("link", name="Jobs").click()
    tab.get_by_role("heading", name="Jobs").wait_for()
    table = tab.locator("table.jobs").inner_text()
    for name in ("send-email", "generate-report", "process-image"):
        assert name in table
    assert table.count("process-image") == 2 and "failed" in table
    shot(tab, tmp_path, "admin-jobs")

    # The broken image: its error, and Retry (the job waits again: no worker runs now).
    tab.goto(f"{admin}/jobs/{broken['id']}")
    assert "ValueError" in tab.content() and "cannot decode https://cdn.test/b.gif" in tab.content()
    shot(tab, tmp_path, "admin-failed-job")
    tab.get_by_role("button", name="Retry").click()
    wait_for(lambda: client.get(f"/jobs/{broken['id']}").json()["status"] == "pending", 10, "the retried job")
    assert tab.locator("#flash").inner_text() == f"job {broken['id']} is back in its queue"

    # The delayed report: Cancel, then the CMS's API says so.
    tab.goto(f"{admin}/jobs/{later}")
    tab.get_by_role("button", name="Cancel").click()
    wait_for(lambda: client.get(f"/jobs/{later}").json()["status"] == "cancelled", 10, "the cancelled report")
    tab.get_by_role("button", name="Retry").wait_for()  # the page now offers what a cancelled job allows
    shot(tab, tmp_path, "admin-cancelled-job")
    tab.get_by_role("button", name="Log out").click()
    assert tab.url.startswith(f"{admin}/login")
