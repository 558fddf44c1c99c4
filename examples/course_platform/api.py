"""The platform's API and its job panel: ``uvicorn examples.course_platform.api:api``.

- ``/``: a page whose job panel reads pgq's REST API (mounted at ``/pgq``) every second;
- ``/pgq/``: pgq's own dashboard, with the REST API under ``/pgq/api``;
- ``/videos/{id}/process``, ``/jobs/{id}/cancel``, ``/jobs/{id}/retry``, ``/stats``: the service layer.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

import pgq
import pgq.web
from examples.course_platform import services
from examples.course_platform.tasks import app as queue

STATIC = Path(__file__).parent / "static"

api = FastAPI(title="Course platform")
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
