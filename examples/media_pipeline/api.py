"""The pipeline's HTTP API, its demo page and a local webhook receiver:
``uvicorn examples.media_pipeline.api:api`` (jobs run in ``pgq worker examples.media_pipeline.tasks:app``).

- ``POST /api/queue/submit``: one job of each kind: ``email``, ``image``, ``image_batch`` (images and
  their callback, as one workflow) or ``webhook``;
- ``GET /api/queue/jobs`` (filters ``queue``, ``state``, ``task``), ``GET /api/queue/jobs/{id}``;
- ``POST /api/queue/jobs/{id}/cancel``, ``POST /api/queue/jobs/{id}/retry``;
- ``GET /api/queue/stats``: per queue, live counts and the last 24 hours;
- ``POST /api/queue/cleanup``: the retention now (``app.prune()``), as the sweeper does it on its own;
- ``POST /webhook-receiver`` records a webhook, ``GET /webhook-receiver`` lists them: the default
  target of the pipeline's webhooks, so that it runs offline;
- ``/queue-demo``: a page that submits each kind of job and shows them move through their states.

Errors are JSON, ``{"detail": "..."}``, saying what was wrong: 404 an unknown job, 409 an action its
state does not allow, 422 a bad value. The API has no authentication: put yours in front of it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

import pgq
from examples.media_pipeline.tasks import (
    TABLES,
    WARMED,
    app,
    configure_queues,
    connect,
    deliver_webhook,
    send_email,
    submit_batch,
    submit_image,
    warm_previews,
)

STATIC = Path(__file__).parent / "static"

#: The pipeline's queues: what its stats cover.
QUEUES = ("emails", "images", "webhooks")

#: The five images of the README's batch: the gif fails for good (the pipeline takes .png and .jpg).
DEMO_BATCH = [f"https://cdn.example.com/photo-{i}.png" for i in range(1, 5)] + ["https://cdn.example.com/anim.gif"]


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    app.migrate()  # pgq's schema (a no-op when up to date); `pgq migrate` in a real deploy
    configure_queues()  # the webhooks' rate limit
    with connect() as conn:
        conn.execute(TABLES)  # the pipeline's own tables and the receiver's
    yield
    app.close()


api = FastAPI(title="Media pipeline", lifespan=lifespan)
api.mount("/static", StaticFiles(directory=STATIC), name="static")


# ------------------------------------------------------------------ views


def job_view(job: pgq.Job) -> dict[str, Any]:
    last_error = job.errors[-1] if job.errors else None
    delayed = job.status == "pending" and job.run_at > datetime.now(UTC)
    return {
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "args": job.args,
        "status": job.status,
        # pgq's status, and "delayed" for a pending job whose run time is ahead (a retry's backoff too).
        "state": "delayed" if delayed else job.status,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "error": f"{last_error['type']}: {last_error['message']}" if last_error else None,
        "result": job.result,
        "depends_on": job.depends_on,
        "run_at": job.run_at,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def _job(job_id: int) -> pgq.Job:
    job = app.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id} (live, or finished within the retention)")
    return job


# ----------------------------------------------------------------- submit

#: The data each kind takes besides a task's own arguments.
FIELDS = {"image": {"url"}, "image_batch": {"urls", "callback_url"}}


class Submission(BaseModel):
    kind: Literal["email", "image", "image_batch", "webhook"] = Field(
        description="email: {user_id, template}; image: {url}; image_batch: {urls, callback_url}; "
        "webhook: {url, event, data}. Left out, the data of a demo job of that kind."
    )
    data: dict[str, Any] = {}
    priority: int | None = Field(default=None, description="higher runs first (not for image_batch)")
    delay: float | None = Field(default=None, ge=0, description="seconds from now (not for image_batch)")


@api.post("/api/queue/submit", status_code=201)
def submit(body: Submission, request: Request) -> dict[str, Any]:
    """Submit one job of a kind (an image batch: one job per image and the callback). Webhooks and
    batch callbacks go to this app's own receiver unless the data names another URL."""
    receiver = str(request.url_for("receive_webhook"))
    options: dict[str, Any] = {"priority": body.priority, "delay": body.delay}
    data: dict[str, Any] = dict(body.data)
    try:
        if body.kind == "email":
            data = {"user_id": 7, "template": "upload-received", **data}
            return {"kind": body.kind, "job_ids": [send_email.options(**options).enqueue(**data)]}
        if body.kind == "webhook":
            data = {"url": receiver, "event": "demo.ping", "data": {"at": datetime.now(UTC).isoformat()}, **data}
            return {"kind": body.kind, "job_ids": [deliver_webhook.options(**options).enqueue(**data)]}
        unknown = sorted(set(data) - FIELDS[body.kind])
        if unknown:
            allowed = ", ".join(sorted(FIELDS[body.kind]))
            raise HTTPException(
                422, f"unknown field {', '.join(map(repr, unknown))} in data; {body.kind} takes {allowed}"
            )
        if body.kind == "image":
            url = data.get("url", "https://cdn.example.com/photo.png")
            if not isinstance(url, str) or not url:
                raise HTTPException(422, f"data.url must be an image URL, got {url!r}")
            with connect() as conn, conn.transaction():
                job_id = submit_image(conn, url, **options)
            warm_previews.enqueue(url=url)  # the fast lane: in this process, nothing written
            return {"kind": body.kind, "job_ids": [job_id]}
        # image_batch
        if body.priority is not None or body.delay is not None:
            raise HTTPException(422, "priority and delay apply to one job; an image_batch takes neither")
        urls = data.get("urls", DEMO_BATCH)
        if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
            raise HTTPException(422, f"data.urls must be a non-empty list of image URLs, got {urls!r}")
        callback_url = data.get("callback_url", receiver)
        with connect() as conn, conn.transaction():
            batch_id = submit_batch(conn, urls, callback_url)
    except (pgq.InvalidJob, pgq.ConfigurationError) as exc:
        raise HTTPException(422, str(exc)) from None
    [callback] = app.list_jobs(task="batch_finished", args={"batch_id": batch_id}, limit=1)
    return {
        "kind": body.kind,
        "batch_id": batch_id,
        "job_ids": [*sorted(callback.depends_on or []), callback.id],
        "callback_url": callback_url,
    }


# ---------------------------------------------------------- list and act

STATES = ("pending", "blocked", "running", "completed", "failed", "cancelled")


@api.get("/api/queue/jobs")
def list_jobs(
    queue: str | None = None,
    state: str | None = None,
    task: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before_id: int | None = None,
) -> dict[str, Any]:
    """Jobs newest first, filtered by queue, state (pgq's status) and task; ``before_id`` pages."""
    if state is not None and state not in STATES:
        raise HTTPException(422, f"unknown state {state!r}; the states are {', '.join(STATES)}")
    if queue is not None and queue not in QUEUES:
        raise HTTPException(422, f"unknown queue {queue!r}; the pipeline's queues are {', '.join(QUEUES)}")
    tasks = sorted(name for name in app.tasks.names() if app.tasks[name].lane is None)  # durable: in the database
    if task is not None and task not in tasks:
        raise HTTPException(422, f"unknown task {task!r}; the pipeline's tasks are {', '.join(tasks)}")
    try:
        jobs = app.list_jobs(queue=queue, status=state, task=task, limit=limit, before_id=before_id)
    except pgq.ConfigurationError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"jobs": [job_view(job) for job in jobs]}


@api.get("/api/queue/jobs/{job_id}")
def get_job(job_id: int) -> dict[str, Any]:
    return job_view(_job(job_id))


@api.post("/api/queue/jobs/{job_id}/cancel")
def cancel(job_id: int) -> dict[str, Any]:
    """A waiting job ends cancelled ("cancelled"); a running one is told to stop ("cancelling")."""
    try:
        return {"job_id": job_id, "outcome": app.cancel(job_id)}
    except pgq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except pgq.InvalidState as exc:
        raise HTTPException(409, str(exc)) from None


@api.post("/api/queue/jobs/{job_id}/retry")
def retry(job_id: int) -> dict[str, Any]:
    """A failed or cancelled job runs again, same id."""
    try:
        app.retry(job_id)
    except pgq.JobNotFound:
        raise HTTPException(404, f"no job {job_id}") from None
    except pgq.InvalidState as exc:
        raise HTTPException(409, str(exc)) from None
    return {"job_id": job_id, "outcome": "retried"}


@api.get("/api/queue/stats")
def stats() -> dict[str, Any]:
    """``app.stats()`` for the pipeline's queues: live counts now, finished over the last 24 hours,
    timings of the last 15 minutes (a queue nothing used yet is all zeros)."""
    found = {q.queue: dataclasses.asdict(q) for q in app.stats() if q.queue in QUEUES}
    empty = {"waiting": 0, "delayed": 0, "active": 0, "blocked": 0, "completed": 0, "failed": 0, "cancelled": 0}
    return {
        "queues": {name: found.get(name, {"queue": name, **empty}) for name in QUEUES},
        # The fast lane of this process (warm_previews): counts since it started, and the previews warmed.
        "fast_lane": {**app.fast_lane.stats(), "warmed": len(WARMED)},
    }


@api.post("/api/queue/cleanup")
def cleanup() -> dict[str, Any]:
    """The retention, now: finished jobs past it are deleted (7 days, 30 for failed ones), with the
    rest of what the sweeper's retention prunes (a count of each). The elected sweeper does the same
    on its own."""
    settings = app.settings
    return {
        "deleted": app.prune(),
        "retention_seconds": {
            "completed": settings.retention_completed or settings.retention,
            "failed": settings.retention_failed or settings.retention,
            "cancelled": settings.retention_cancelled or settings.retention,
        },
    }


# ------------------------------------------------------- webhook receiver


@api.post("/webhook-receiver", name="receive_webhook")
async def receive_webhook(request: Request) -> dict[str, Any]:
    """Record what was posted (a JSON body, or the text of any other) and answer 200."""
    raw = await request.body()
    try:
        body: Any = json.loads(raw)
    except ValueError:
        body = {"text": raw.decode(errors="replace")}
    with connect() as conn:
        row = conn.execute(
            "insert into webhook_receipts (body) values (%s) returning id, received_at", [Jsonb(body)]
        ).fetchone()
    assert row is not None
    return {"id": row[0], "received_at": row[1]}


@api.get("/webhook-receiver")
def list_webhooks(limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
    """What the receiver got, oldest first (the latest ``limit``)."""
    with connect() as conn:
        rows = conn.execute(
            "select * from (select id, received_at, body from webhook_receipts order by id desc limit %s) r"
            " order by id",
            [limit],
        ).fetchall()
    return {"received": [{"id": i, "received_at": at, "body": body} for i, at, body in rows]}


# ------------------------------------------------------------- demo page


@api.get("/queue-demo", include_in_schema=False)
def queue_demo() -> FileResponse:
    return FileResponse(STATIC / "queue-demo.html")
