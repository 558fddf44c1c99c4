"""The platform's API and its job panel: ``uvicorn examples.course_platform.api:api``.

- ``/``: a page whose job panel reads pgq's REST API (mounted at ``/pgq``) every second;
- ``/pgq/``: pgq's own dashboard, with the REST API under ``/pgq/api``;
- ``/videos/{id}/process``, ``/jobs/{id}/cancel``, ``/jobs/{id}/retry``, ``/stats``: the service layer;
- ``POST /jobs/test``, ``DELETE /jobs/{id}``, ``PATCH /jobs/{id}``: the panel's "Create test job", Remove,
  and the priority and run time of a waiting job;
- ``GET /api/jobs/stats``: BullMQ's getJobCounts (waiting, active, completed, failed, delayed, paused, total).

Errors are JSON, ``{"detail": "..."}``, saying what was wrong: 404 an unknown job, 409 an action its
state does not allow, 422 a bad value.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import pgq
import pgq.web
from examples.course_platform import services
from examples.course_platform.tasks import app as queue

STATIC = Path(__file__).parent / "static"


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    services.set_objectives()  # the spec's success figures, shown by pgq's dashboard under /pgq/
    yield


api = FastAPI(title="Course platform", lifespan=lifespan)
# pgq's dashboard and REST API, reading and acting through the same pgq.App. Without a token it
# answers on 127.0.0.1 only: put your own authentication in front of it (see docs/dashboard.md).
api.mount("/pgq", pgq.web.create_app(queue))
api.mount("/static", StaticFiles(directory=STATIC), name="static")


@api.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "panel.html")


@api.post("/videos/{video_id}/process", status_code=201)
def process_video(video_id: int, resolution: str = "720p", delay_seconds: float | None = None) -> dict[str, int]:
    payload = {"video_id": video_id, "resolution": resolution}
    if delay_seconds:
        return {"job_id": services.schedule_job("video", payload, delay=timedelta(seconds=delay_seconds))}
    return {"job_id": services.submit_job("video", payload, key=f"video:{video_id}:{resolution}")}


@api.post("/jobs/{job_id}/cancel")
def cancel(job_id: int) -> dict[str, Any]:
    try:
        return {"job_id": job_id, "outcome": services.cancel_job(job_id)}
    except pgq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except pgq.InvalidState as exc:
        raise HTTPException(409, str(exc)) from None


@api.post("/jobs/{job_id}/retry")
def retry(job_id: int) -> dict[str, Any]:
    try:
        services.retry_job(job_id)
    except pgq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except pgq.InvalidState as exc:
        raise HTTPException(409, str(exc)) from None
    return {"job_id": job_id, "outcome": "retried"}


@api.get("/stats")
def stats() -> dict[str, dict[str, Any]]:
    return services.get_queue_stats()


@api.post("/jobs/test", status_code=201)
def create_test_job() -> dict[str, int]:
    """The panel's "Create test job" button: a transcode of a made-up video, every click a new job."""
    return {"job_id": services.create_test_job()}


@api.delete("/jobs/{job_id}")
def remove(job_id: int) -> dict[str, Any]:
    """The panel's Remove: a waiting or finished job is gone for good (as BullMQ's job.remove()); a
    running one is 409, after it was asked to stop: remove it again once it has."""
    try:
        outcome = services.remove_job(job_id)
    except pgq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except pgq.InvalidState as exc:
        raise HTTPException(409, str(exc)) from None
    if outcome == "cancelling":
        raise HTTPException(409, f"job {job_id} is running: it was asked to stop; remove it again once it has")
    return {"job_id": job_id, "outcome": outcome}


#: What PATCH /jobs/{id} can change.
EDITABLE = ("priority", "run_at")


@api.patch("/jobs/{job_id}")
def change(
    job_id: int, body: Annotated[dict[str, Any], Body(examples=[{"priority": 10, "run_at": "2030-01-01T08:00:00Z"}])]
) -> dict[str, Any]:
    """The panel's priority and run time controls: change a waiting (pending or delayed) job.

    ``priority``: a whole number, higher runs first. ``run_at``: an ISO 8601 time with a time zone
    (``2030-01-01T08:00:00+01:00`` or ``...Z``); a time in the past makes the job due now."""
    unknown = sorted(set(body) - set(EDITABLE))
    if unknown:
        raise HTTPException(422, f"unknown field {', '.join(map(repr, unknown))}: send priority and/or run_at")
    if not body:
        raise HTTPException(422, "nothing to change: send priority and/or run_at")
    priority = body.get("priority")
    if "priority" in body and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise HTTPException(422, f"priority must be a whole number, got {priority!r}")
    run_at = _time(body["run_at"]) if "run_at" in body else None
    try:
        return services.change_job(job_id, priority=priority, run_at=run_at)
    except pgq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except pgq.InvalidState as exc:
        raise HTTPException(409, str(exc)) from None
    except (pgq.InvalidJob, pgq.ConfigurationError) as exc:
        raise HTTPException(422, str(exc)) from None


def _time(value: Any) -> datetime:
    example = "such as 2030-01-01T08:00:00+01:00 or 2030-01-01T07:00:00Z"
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise HTTPException(422, f"run_at must be an ISO 8601 time with a time zone, {example}; got {value!r}")
    if when.utcoffset() is None:
        raise HTTPException(422, f"run_at {value!r} has no time zone: add one, {example}")
    return when


@api.get("/api/jobs/stats")
def job_counts() -> dict[str, Any]:
    """BullMQ's getJobCounts over the platform's queues, and per queue: the due jobs of a paused queue
    count as ``paused``, not ``waiting``; ``completed`` and ``failed`` cover the last 24 hours."""
    return services.get_job_counts()
