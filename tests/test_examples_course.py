"""examples/course_platform end to end: its API (with pgq's REST API mounted) under uvicorn and a
worker process; progress read live through the REST API, cron reminders, the service layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.processes import WorkerProcess, wait_for
from tests.test_examples_cms import serve  # noqa: F401  (the serve fixture)

ENV = {"VIDEO_STEP_SECONDS": "0.4", "REMINDER_CRON": "*/2 * * * * *"}


@pytest.mark.slow
def test_course_platform_end_to_end(
    serve: Callable[..., httpx.Client],  # noqa: F811  (the fixture imported above)
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
    assert "Traceback" not in worker.output()


def job_status(client: httpx.Client, job_id: int) -> str:
    return str(client.get(f"/pgq/api/jobs/{job_id}").json()["status"])
