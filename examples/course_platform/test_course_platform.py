"""examples/course_platform end to end: its API (with pgq's REST API mounted) under uvicorn and a
worker process; progress read live through the REST API, cron reminders, the service layer; the
job panel's routes (create a test job, remove, priority and run time) and its BullMQ job counts,
and the panel itself in headless Chromium."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

import pgq
from tests.example_browser import shot
from tests.processes import WorkerProcess, wait_for

ENV = {"VIDEO_STEP_SECONDS": "0.4", "REMINDER_CRON": "*/2 * * * * *", "PGQ_HEARTBEAT_INTERVAL": "1"}


@pytest.mark.slow
def test_course_platform_end_to_end(
    serve: Callable[..., httpx.Client],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    client = serve("examples.course_platform.api:api", env=ENV)
    worker = start_worker("--queues", "videos,reminders", app="examples.course_platform.tasks:app", env=ENV)

    # The page and its panel script, fed by pgq's REST API under /pgq.
    page = client.get("/")
    assert page.status_code == 200 and 'src="/static/panel.js"' in page.text
    assert "/pgq/api" in client.get("/static/panel.js").text

    job_id = client.post("/videos/7/process").json()["job_id"]
    assert client.post("/videos/7/process").json()["job_id"] == job_id  # its key: one job per video and resolution

    # Progress, live, as the panel reads it: seen strictly between 0 and 1 while it runs.
    def job() -> dict[str, Any]:
        response = client.get(f"/pgq/api/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    seen = wait_for(lambda: (j := job())["status"] == "running" and 0 < (j["progress"] or 0) < 1 and j, 20, "progress")
    assert seen["progress_message"].startswith("encoding 720p: segment")
    listed = client.get("/pgq/api/jobs", params={"queue": "videos"}).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]
    done = wait_for(lambda: (j := job())["status"] == "completed" and j, 20, "the video job")
    assert done["progress"] == 1.0 and done["result"] == {"url": "https://videos.example.com/7/720p.mp4"}
    assert done["progress_message"] == "done"  # the handler's own last word, not "segment 10 of 10"

    # Service layer: schedule, cancel, retry, stats.
    later = client.post("/videos/8/process", params={"delay_seconds": 3600}).json()["job_id"]
    assert job_status(client, later) == "pending"
    assert client.post(f"/jobs/{later}/cancel").json()["outcome"] == "cancelled"
    assert client.post(f"/jobs/{later}/cancel").status_code == 409  # already finished
    assert client.post(f"/jobs/{later}/retry").json()["outcome"] == "retried"
    assert job_status(client, later) in ("pending", "running")
    assert client.post(f"/jobs/{later}/cancel").json()["outcome"] in ("cancelled", "cancelling")

    # The cron schedule (every 2 s here) made reminder jobs, which fanned out to one per student.
    def reminders() -> list[dict[str, Any]]:
        jobs = client.get("/pgq/api/jobs", params={"task": "send_lesson_reminder", "status": "completed"}).json()
        return list(jobs["jobs"])

    assert len(wait_for(lambda: len(reminders()) >= 3 and reminders(), 20, "reminders")) >= 3
    schedules = client.get("/pgq/api/schedules").json()["schedules"]
    assert [(s["name"], s["cron"], s["timezone"]) for s in schedules] == [
        ("send_daily_reminders", "*/2 * * * * *", "Europe/Paris")
    ]
    stats = client.get("/stats").json()
    assert stats["videos"]["completed_24h"] >= 1 and stats["reminders"]["completed_24h"] >= 3

    # The panel's routes on a running job: no change (409), Remove asks it to stop (409), then removes it.
    running = client.post("/jobs/test").json()["job_id"]
    wait_for(lambda: job_status(client, running) == "running", 20, "the test job to start")
    changed = client.patch(f"/jobs/{running}", json={"priority": 5})
    assert changed.status_code == 409 and "only a waiting job" in changed.json()["detail"]
    removing = client.delete(f"/jobs/{running}")
    assert removing.status_code == 409 and "asked to stop" in removing.json()["detail"]
    wait_for(lambda: job_status(client, running) == "cancelled", 20, "the test job to stop")
    assert client.delete(f"/jobs/{running}").json() == {"job_id": running, "outcome": "removed"}
    assert client.get(f"/pgq/api/jobs/{running}").status_code == 404

    # BullMQ's getJobCounts: the finished jobs and the total.
    counts = client.get("/api/jobs/stats").json()
    assert counts["completed"] >= 4 and counts["queues"]["videos"]["completed"] >= 1
    assert counts["total"] == sum(counts[k] for k in ("waiting", "active", "completed", "failed", "delayed", "paused"))

    # The spec's success figures, computed (whether they are met is the load's business): latency and
    # processing p50/p95, utilisation (the worker's heartbeat measures it), error and completion rates,
    # against the spec's thresholds, which the API set when it started.
    def figures() -> dict[str, Any]:
        queues = client.get("/pgq/api/jobs/stats").json()["queues"]
        return {q["queue"]: q for q in queues}

    videos = wait_for(lambda: (f := figures()["videos"])["utilization_pct"] is not None and f, 20, "utilisation")
    assert videos["slo"] == {
        "wait_p95_ms": 100.0,
        "run_p95_ms": 1000.0,
        "utilization_pct": 80.0,
        "error_rate_pct": 0.1,
        "completion_rate_pct": 99.9,
    }
    for name in ("wait_ms_p50", "wait_ms_p95", "run_ms_p50", "run_ms_p95", "error_rate_pct", "completion_rate_pct"):
        assert isinstance(videos[name], float), (name, videos)
    assert 0 <= videos["utilization_pct"] <= 100 and videos["run_ms_p95"] > 1000  # 10 steps of 0.4 s
    assert "run_p95" in videos["slo_breaches"]  # a video takes 4 s here: shown as a breach
    assert "Traceback" not in worker.output()


def job_status(client: httpx.Client, job_id: int) -> str:
    return str(client.get(f"/pgq/api/jobs/{job_id}").json()["status"])


COUNTS = ("waiting", "active", "completed", "failed", "delayed", "paused")


@pytest.mark.slow
def test_course_platform_panel_routes_and_job_counts(
    database_url: str,
    serve: Callable[..., httpx.Client],
) -> None:
    """Without a worker: jobs stay waiting, so they can be changed, counted, paused and removed."""
    client = serve("examples.course_platform.api:api", env=ENV)
    empty = client.get("/api/jobs/stats").json()
    assert {k: empty[k] for k in (*COUNTS, "total")} == dict.fromkeys((*COUNTS, "total"), 0)
    assert set(empty["queues"]) == {"videos", "reminders"} and empty["finished_window_seconds"] == 86400

    # "Create test job": a new job on every click.
    first, second = (client.post("/jobs/test") for _ in range(2))
    assert first.status_code == second.status_code == 201
    job_id, other = first.json()["job_id"], second.json()["job_id"]
    assert job_id != other
    created = client.get(f"/pgq/api/jobs/{job_id}").json()
    assert (created["task"], created["queue"], created["status"]) == ("transcode_video", "videos", "pending")

    # Priority and run time of a waiting job.
    changed = client.patch(f"/jobs/{job_id}", json={"priority": 7})
    assert changed.status_code == 200, changed.text
    assert changed.json()["priority"] == 7 and client.get(f"/pgq/api/jobs/{job_id}").json()["priority"] == 7
    later = client.patch(f"/jobs/{job_id}", json={"run_at": "2030-01-01T08:00:00+01:00", "priority": -3}).json()
    assert datetime.fromisoformat(later["run_at"]) == datetime(2030, 1, 1, 7, 0, tzinfo=ZoneInfo("UTC"))
    assert later["priority"] == -3 and later["status"] == "pending"

    # Bad input: what was wrong, in JSON.
    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        return str(response.json()["detail"])

    assert error(client.patch("/jobs/999999", json={"priority": 1}), 404) == "no job 999999"
    for bad in ("high", 1.5, True, None):
        assert error(client.patch(f"/jobs/{job_id}", json={"priority": bad}), 422) == (
            f"priority must be a whole number, got {bad!r}"
        )
    assert "between" in error(client.patch(f"/jobs/{job_id}", json={"priority": 2**40}), 422)
    for bad in ("tomorrow", "2030-13-01T08:00:00Z", 1893484800, None):
        assert error(client.patch(f"/jobs/{job_id}", json={"run_at": bad}), 422) == (
            "run_at must be an ISO 8601 time with a time zone, such as 2030-01-01T08:00:00+01:00 or "
            f"2030-01-01T07:00:00Z; got {bad!r}"
        )
    assert "has no time zone" in error(client.patch(f"/jobs/{job_id}", json={"run_at": "2030-01-01T08:00"}), 422)
    assert error(client.patch(f"/jobs/{job_id}", json={"delay": 5}), 422) == (
        "unknown field 'delay': send priority and/or run_at"
    )
    assert error(client.patch(f"/jobs/{job_id}", json={}), 422) == "nothing to change: send priority and/or run_at"
    assert client.patch(f"/jobs/{job_id}", json=[1]).status_code == 422
    assert client.patch("/jobs/abc", json={"priority": 1}).status_code == 422
    assert client.get(f"/pgq/api/jobs/{job_id}").json()["priority"] == -3  # nothing changed meanwhile

    # BullMQ's getJobCounts: one job delayed (2030), one waiting.
    counts = client.get("/api/jobs/stats").json()
    assert {k: counts[k] for k in (*COUNTS, "total")} == {
        "waiting": 1, "active": 0, "completed": 0, "failed": 0, "delayed": 1, "paused": 0, "total": 2,
    }  # fmt: skip
    # A paused queue's due jobs count as paused, not waiting; its delayed ones stay delayed.
    with pgq.App(database_url) as app:
        app.pause_queue("videos")
        client.post("/jobs/test")
        paused = client.get("/api/jobs/stats").json()
        assert (paused["waiting"], paused["paused"], paused["delayed"], paused["total"]) == (0, 2, 1, 3)
        assert paused["queues"]["videos"]["paused"] == 2 and paused["queues"]["reminders"]["paused"] == 0
        app.resume_queue("videos")
    resumed = client.get("/api/jobs/stats").json()
    assert (resumed["waiting"], resumed["paused"], resumed["total"]) == (2, 0, 3)

    # Remove: a waiting job is gone for good, then 404; a finished one too.
    assert client.delete(f"/jobs/{job_id}").json() == {"job_id": job_id, "outcome": "removed"}
    assert client.get(f"/pgq/api/jobs/{job_id}").status_code == 404
    assert error(client.delete(f"/jobs/{job_id}"), 404) == f"no job {job_id}"
    assert client.post(f"/jobs/{other}/cancel").json()["outcome"] == "cancelled"
    assert "only a waiting job" in error(client.patch(f"/jobs/{other}", json={"priority": 1}), 409)
    assert client.delete(f"/jobs/{other}").json()["outcome"] == "removed"
    assert client.get("/api/jobs/stats").json()["total"] == 1


@pytest.mark.slow
def test_course_platform_panel_buttons_in_chromium(
    serve: Callable[..., httpx.Client],
    tab: Any,
    tmp_path: Path,
) -> None:
    """The panel's buttons, clicked in headless Chromium (no worker: the jobs wait)."""
    client = serve("examples.course_platform.api:api", env=ENV)
    tab.goto(f"{client.base_url}/")
    tab.get_by_role("button", name="Create test job").click()
    row = tab.locator("#jobs tbody tr").first
    row.wait_for()
    job_id = int(row.get_attribute("data-job-id"))
    # The panel's refresh may show the row before the browser reads the response that sets the message.
    tab.wait_for_function("document.querySelector('#message').textContent.includes('created')")
    assert "created" in tab.locator("#message").inner_text()
    assert row.locator("[data-cell=status]").inner_text() == "pending"
    tab.wait_for_function("document.querySelector('[data-count=waiting]')?.textContent === 'waiting 1'")

    # Priority: typed, then set; the refresh every second keeps what is being typed.
    priority = row.locator("input[name=priority]")
    priority.fill("42")
    tab.wait_for_timeout(1500)
    assert priority.input_value() == "42"
    row.get_by_role("button", name="Set").click()
    wait_for(lambda: client.get(f"/pgq/api/jobs/{job_id}").json()["priority"] == 42, 10, "the new priority")
    # The row commits before the browser reads the response that sets the message: wait for it.
    tab.wait_for_function(f"document.querySelector('#message').textContent === 'job {job_id}: priority 42'")
    assert tab.locator("#message").inner_text() == f"job {job_id}: priority 42"

    # A bad priority: the API's error, shown, and nothing changed.
    priority.fill("1.5")
    row.get_by_role("button", name="Set").click()
    tab.wait_for_function("document.querySelector('#message').className === 'error'")
    assert "priority must be a whole number, got 1.5" in tab.locator("#message").inner_text()
    assert client.get(f"/pgq/api/jobs/{job_id}").json()["priority"] == 42

    # Run time: the browser's local time (Europe/Paris here), sent with its zone.
    row.locator("input[name=run_at]").fill("2030-06-01T09:30")
    row.get_by_role("button", name="Reschedule").click()
    want = datetime(2030, 6, 1, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))
    run_at = lambda: datetime.fromisoformat(client.get(f"/pgq/api/jobs/{job_id}").json()["run_at"])  # noqa: E731
    wait_for(lambda: run_at() == want, 10, "the new run time")
    tab.wait_for_function("document.querySelector('[data-count=delayed]')?.textContent === 'delayed 1'")
    shot(tab, tmp_path, "panel-waiting-job")

    # Cancel, Retry, Remove.
    row.get_by_role("button", name="Cancel").click()
    tab.wait_for_function(
        f"document.querySelector('tr[data-job-id=\"{job_id}\"] [data-cell=status]')?.textContent === 'cancelled'"
    )
    assert row.locator("input").count() == 0  # a finished job has no priority or time to change
    row.get_by_role("button", name="Retry").click()
    tab.wait_for_function(
        f"document.querySelector('tr[data-job-id=\"{job_id}\"] [data-cell=status]')?.textContent === 'pending'"
    )
    row.get_by_role("button", name="Remove").click()
    tab.locator(f"tr[data-job-id='{job_id}']").wait_for(state="detached")
    assert client.get(f"/pgq/api/jobs/{job_id}").status_code == 404
    tab.wait_for_function(f"document.querySelector('#message').textContent === 'job {job_id}: removed'")
    assert tab.locator("#message").inner_text() == f"job {job_id}: removed"
    shot(tab, tmp_path, "panel-after-remove")


@pytest.mark.slow
def test_course_platform_pgq_dashboard_in_chromium(
    serve: Callable[..., httpx.Client],
    start_worker: Callable[..., WorkerProcess],
    tab: Any,
    tmp_path: Path,
) -> None:
    """The README's second page, pgq's dashboard at /pgq/: the platform's queues, the reminders' schedule
    (Run now) and its jobs, and Pause/Resume of `videos`, which the platform's job counts then show."""
    client = serve("examples.course_platform.api:api", env=ENV)
    start_worker("--queues", "videos,reminders", app="examples.course_platform.tasks:app", env=ENV)
    reminders = {"task": "send_lesson_reminder", "status": "completed"}
    wait_for(lambda: len(client.get("/pgq/api/jobs", params=reminders).json()["jobs"]) >= 3, 20, "reminders")
    later = client.post("/videos/8/process", params={"delay_seconds": 3600}).json()["job_id"]
    tab.on("dialog", lambda dialog: dialog.accept())  # the dashboard confirms a pause

    tab.goto(f"{client.base_url}/pgq/")
    tab.get_by_role("heading", name="Overview").wait_for()
    queues = tab.locator("section", has=tab.get_by_role("heading", name="Queues", exact=True)).inner_text()
    assert "videos" in queues and "reminders" in queues
    shot(tab, tmp_path, "pgq-overview")

    # The cron schedule declared in tasks.py; Run now makes one more send_daily_reminders job.
    tab.get_by_role("navigation").get_by_role("link", name="Schedules").click()
    row = tab.locator("table.schedules tr", has_text="send_daily_reminders")
    assert "*/2 * * * * *" in row.inner_text() and "Europe/Paris" in row.inner_text()
    shot(tab, tmp_path, "pgq-schedules")
    daily = lambda: len(client.get("/pgq/api/jobs", params={"task": "send_daily_reminders"}).json()["jobs"])  # noqa: E731
    before = daily()
    row.get_by_role("button", name="Run now").click()
    wait_for(lambda: daily() > before, 10, "the schedule run now")

    # The reminders' jobs, as the README says they are seen: on this dashboard.
    tab.goto(f"{client.base_url}/pgq/jobs?task=send_lesson_reminder")
    table = tab.locator("table.jobs").inner_text()
    assert table.count("send_lesson_reminder") >= 3 and "completed" in table and "reminders" in table
    shot(tab, tmp_path, "pgq-reminder-jobs")

    # Pause videos from the dashboard: the platform's counts see it (a due job counts as paused).
    tab.get_by_role("navigation").get_by_role("link", name="Queues").click()
    tab.locator("table.queues tr", has_text="videos").get_by_role("button", name="Pause").click()
    tab.locator("table.queues tr", has_text="videos").get_by_role("button", name="Resume").wait_for()
    client.post("/jobs/test")
    counts = client.get("/api/jobs/stats").json()["queues"]["videos"]
    assert counts["paused"] == 1 and counts["delayed"] == 1, counts
    shot(tab, tmp_path, "pgq-queues-videos-paused")
    tab.locator("table.queues tr", has_text="videos").get_by_role("button", name="Resume").click()
    tab.locator("table.queues tr", has_text="videos").get_by_role("button", name="Pause").wait_for()
    assert job_status(client, later) == "pending"  # still delayed: nothing else was touched
