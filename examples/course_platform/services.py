"""The platform's own job service: the five calls its code uses, each mapped onto one pgq call.
The rest of the platform imports this module, never pgq, so the queue stays an implementation detail."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from examples.course_platform.tasks import app, send_lesson_reminder, transcode_video

#: Job kinds the platform knows, and their pgq tasks.
KINDS = {"video": transcode_video, "reminder": send_lesson_reminder}


def submit_job(kind: str, payload: dict[str, Any], *, priority: int | None = None, key: str | None = None) -> int:
    """Run a job as soon as a worker is free: ``app.enqueue``."""
    return app.enqueue(KINDS[kind], payload, priority=priority, key=key)


def schedule_job(
    kind: str, payload: dict[str, Any], *, at: datetime | None = None, delay: timedelta | None = None
) -> int:
    """Run a job later, at a time (aware datetime) or after a delay: ``app.enqueue(run_at= / delay=)``."""
    return app.enqueue(KINDS[kind], payload, run_at=at, delay=delay)


def cancel_job(job_id: int) -> str:
    """``app.cancel``: "cancelled" (it had not started) or "cancelling" (its worker was told)."""
    return app.cancel(job_id)


def retry_job(job_id: int) -> None:
    """``app.retry``: a failed or cancelled job runs again, same id."""
    app.retry(job_id)


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
