"""The platform's own job service: the calls its code uses, each mapped onto pgq's public API.
The rest of the platform imports this module, never pgq, so the queue stays an implementation detail."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import pgq
from examples.course_platform.tasks import app, send_lesson_reminder, transcode_video

#: Job kinds the platform knows, and their pgq tasks.
KINDS: dict[str, pgq.Task[..., Any]] = {"video": transcode_video, "reminder": send_lesson_reminder}

#: The platform's queues: what its job counts cover.
QUEUES = ("videos", "reminders")

#: The platform spec's success figures, as pgq's service-level objectives of its queues: < 100 ms queue
#: latency, < 1 s processing, > 80 % worker utilisation, < 0.1 % errors, > 99.9 % completion. pgq measures
#: them (pgq stats, the dashboard at /pgq/, GET /pgq/api/jobs/stats) and shows a breach in red and as
#: the Prometheus gauge pgq_queue_slo_breached.
OBJECTIVES: dict[str, float] = {
    "slo_wait_p95": 0.1,
    "slo_run_p95": 1.0,
    "slo_utilization": 80,
    "slo_error_rate": 0.1,
    "slo_completion_rate": 99.9,
}

#: BullMQ's getJobCounts() keys, in its order; "total" is their sum.
COUNTS = ("waiting", "active", "completed", "failed", "delayed", "paused")


def submit_job(kind: str, payload: dict[str, Any], *, priority: int | None = None, key: str | None = None) -> int:
    """Run a job as soon as a worker is free: ``app.enqueue``."""
    return app.enqueue(KINDS[kind], payload, priority=priority, key=key)


def schedule_job(
    kind: str, payload: dict[str, Any], *, at: datetime | None = None, delay: timedelta | None = None
) -> int:
    """Run a job later, at a time (aware datetime) or after a delay: ``app.enqueue(run_at= / delay=)``."""
    return app.enqueue(KINDS[kind], payload, run_at=at, delay=delay)


def create_test_job() -> int:
    """The panel's "Create test job": a 480p transcode of a made-up video (ids 90000 to 99999), with no
    key, so that every click makes a new job: ``app.enqueue``."""
    return app.enqueue(transcode_video, {"video_id": 90_000 + secrets.randbelow(10_000), "resolution": "480p"})


def cancel_job(job_id: int) -> str:
    """``app.cancel``: "cancelled" (it had not started) or "cancelling" (its worker was told)."""
    return app.cancel(job_id)


def retry_job(job_id: int) -> None:
    """``app.retry``: a failed or cancelled job runs again, same id."""
    app.retry(job_id)


def change_job(job_id: int, *, priority: int | None = None, run_at: datetime | None = None) -> dict[str, Any]:
    """``app.update_job``: a waiting job's priority (higher runs first) and/or run time. Raises
    pgq.JobNotFound, pgq.InvalidState (it is running or finished) or pgq.InvalidJob (a bad value)."""
    changes: dict[str, Any] = {}
    if priority is not None:
        changes["priority"] = priority
    if run_at is not None:
        changes["run_at"] = run_at
    job = app.update_job(job_id, **changes)
    return {"job_id": job.id, "status": job.status, "priority": job.priority, "run_at": job.run_at.isoformat()}


def remove_job(job_id: int) -> str:
    """Remove a job, as BullMQ's ``job.remove()``: a waiting one is cancelled (``app.cancel``) and then
    deleted with a finished one (``app.delete``). A running one is only asked to stop ("cancelling"):
    remove it again once it has. Returns "removed" or "cancelling"."""
    job = app.get_job(job_id)
    if job is None:
        raise pgq.JobNotFound(f"no job with id {job_id}")
    if not job.is_finished and app.cancel(job_id) != "cancelled":
        return "cancelling"
    app.delete(job_id)
    return "removed"


def get_queue_stats() -> dict[str, dict[str, Any]]:
    """``app.stats``, per queue: what waits, runs, finished in 24 h, and how long jobs take."""
    return {
        q.queue: {
            "waiting": q.waiting,
            "delayed": q.delayed,
            "running": q.active,
            "completed_24h": q.completed,
            "failed_24h": q.failed,
            "run_ms_p95": q.run_ms_p95,
        }
        for q in app.stats()
    }


def get_job_counts() -> dict[str, Any]:
    """BullMQ's ``queue.getJobCounts()``, from ``app.stats()``, over the platform's queues.

    As in BullMQ, the due jobs of a paused queue count as ``paused``, not ``waiting``; ``delayed``
    jobs stay delayed. ``completed`` and ``failed`` are the jobs that finished over pgq's stats window
    (24 hours), where BullMQ counts every job its sets still keep. ``total`` is the sum of the six."""
    zero = dict.fromkeys((*COUNTS, "total"), 0)
    per_queue: dict[str, dict[str, int]] = {name: dict(zero) for name in QUEUES}  # a queue stats does not know yet
    window = 24 * 3600.0
    for q in app.stats(window=window):
        if q.queue not in QUEUES:
            continue
        counts = {
            "waiting": 0 if q.paused else q.waiting,
            "active": q.active,
            "completed": q.completed,
            "failed": q.failed,
            "delayed": q.delayed,
            "paused": q.waiting if q.paused else 0,
        }
        per_queue[q.queue] = {**counts, "total": sum(counts.values())}
    totals = {name: sum(counts[name] for counts in per_queue.values()) for name in (*COUNTS, "total")}
    return {**totals, "queues": per_queue, "finished_window_seconds": window}


def set_objectives() -> None:
    """Give the platform's queues the spec's objectives (the API does it when it starts):
    ``app.set_queue(queue, slo_...=)``, as ``pgq queues set videos --slo-wait-p95 0.1 ...`` does."""
    for queue in QUEUES:
        app.set_queue(queue, **OBJECTIVES)
