"""Hooks on job events: ``app.on("job_failed", fn)``.

Events: ``job_started``, ``job_completed``, ``job_retrying``, ``job_failed``,
``job_cancelled``, ``job_returned`` (given back at shutdown), ``job_snoozed`` (the
handler raised :class:`pgq.Snooze`). A hook gets one
:class:`Event`; it may be a plain or an ``async`` function. A hook that raises
is logged and otherwise ignored: it never changes the job's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgq.job import Job

EVENTS = (
    "job_started",
    "job_completed",
    "job_retrying",
    "job_failed",
    "job_cancelled",
    "job_returned",
    "job_snoozed",
)


@dataclass(frozen=True)
class Event:
    name: str
    """One of :data:`EVENTS`: ``job_started``, ``job_completed``, ``job_failed``, ..."""
    job: Job
    result: Any = None
    """The handler's return value (``job_completed``)."""
    error: dict[str, Any] | None = None
    """The error entry written to the job (type, message, traceback, attempt)."""
    retry_in: float | None = None
    """Seconds until the job runs again (``job_retrying``, ``job_snoozed``)."""
    duration: float | None = None
    """Seconds the attempt ran."""
