"""The context a handler receives with ``@app.task(pass_context=True)``."""

from __future__ import annotations

import logging
from typing import Any

from pgq.job import Job


class JobContext:
    """What a running handler may know and do about its job.

    ``job`` is the claimed row (id, task, queue, attempts, args);
    ``attempt`` counts from 1; ``cancelled`` turns true when the job is
    cancelled or the worker shuts down, so a sync handler can poll it;
    ``log`` is a logger whose records carry the job id;
    ``parent_statuses`` says how each parent (``job.depends_on``) ended and
    ``parent_results`` maps each completed parent's id to its result.
    """

    def __init__(self, job: Job, logger: logging.Logger | None = None) -> None:
        self.job = job
        self.cancelled = False
        self.progress: float | None = job.progress
        self.progress_message: str | None = job.progress_message
        base = logger or logging.getLogger("pgq.job")
        self.log = logging.LoggerAdapter(base, {"job_id": job.id, "task": job.task})
        #: How each of the job's parents (``job.depends_on``) ended, by parent id:
        #: ``"completed"``, ``"failed"``, ``"cancelled"``, or ``"missing"`` once pruned
        #: from history; empty for a job without parents.
        self.parent_statuses: dict[int, str] = {}
        #: The results of the parents that completed, by parent id.
        self.parent_results: dict[int, Any] = {}

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def args(self) -> dict[str, Any]:
        return self.job.args

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress between 0 and 1; the worker writes it to the job, throttled."""
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"progress must be between 0 and 1, got {fraction!r}")
        self.progress = float(fraction)
        self.progress_message = message
