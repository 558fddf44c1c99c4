"""Editing a waiting job in place: ``app.update_job`` (``PATCH /api/jobs/{id}``,
``pgq jobs update``, the job's page).

A pending, delayed or blocked job can get new args, priority, run time,
max_attempts, tags or meta; a running or finished one is refused, so a change
never races the handler that is running the job. Each value is checked by the
rules an enqueue applies (``pgq.enqueueing.prepare``), args against the task's
signature when this app registered it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pgq.app_part import AppPart
from pgq.db import store
from pgq.enqueueing import prepare
from pgq.errors import ConfigurationError, InvalidState, JobNotFound
from pgq.flow import UNSET
from pgq.job import Job, JobSpec
from pgq.operations import job_id_of

#: What update_job can change, as its keyword names.
EDITABLE = ("args", "priority", "run_at", "delay", "max_attempts", "tags", "meta")


class JobEdits(AppPart):
    """The edit of a waiting job, a part of :class:`pgq.App` (``_edits``)."""

    def update_job(
        self,
        job_id: int,
        *,
        args: dict[str, Any] = UNSET,
        priority: int = UNSET,
        run_at: datetime = UNSET,
        delay: float | timedelta = UNSET,
        max_attempts: int = UNSET,
        tags: Sequence[str] | None = UNSET,
        meta: dict[str, Any] | None = UNSET,
    ) -> Job:
        """Change a waiting job (pending, delayed or blocked) and return it as it is now.

        Only the options given change: ``args`` (replaced whole, and checked
        against the task's signature when this app registered the task),
        ``priority``, ``run_at`` or ``delay`` (seconds or a timedelta from now),
        ``max_attempts`` (not below the attempts already made), ``tags`` (None or
        ``[]`` removes them) and ``meta`` (None removes it). A new run time or
        priority wakes the workers.

        Raises :class:`InvalidState` for a running or finished job (cancel it and
        enqueue another), :class:`JobNotFound`, and :class:`pgq.InvalidJob` for a
        value an enqueue would refuse."""
        job_id = job_id_of(job_id)
        given: dict[str, Any] = {
            name: value
            for name, value in zip(EDITABLE, (args, priority, run_at, delay, max_attempts, tags, meta), strict=True)
            if value is not UNSET
        }
        if not given:
            raise ConfigurationError(f"nothing to change: give at least one of {', '.join(EDITABLE)}")
        for name, value in given.items():
            if value is None and name not in ("tags", "meta"):
                raise ConfigurationError(f"{name}=None: give a value, or leave {name} out to keep it as it is")
        if "run_at" in given and "delay" in given:
            raise ConfigurationError("give run_at or delay, not both")
        current = self.app.get_job(job_id)
        if current is None:
            raise JobNotFound(f"no job with id {job_id}")
        spec = JobSpec(
            task=current.task,
            args=given.get("args", {}),
            priority=given.get("priority"),
            run_at=given.get("run_at"),
            delay=given.get("delay"),
            max_attempts=given.get("max_attempts"),
            tags=given.get("tags"),
            meta=given.get("meta"),
        )
        task = self.app.tasks.get(current.task) if "args" in given else None
        checked = prepare(spec, task, self.app.settings.max_payload_bytes, False)
        params: store.JobUpdate = {
            "id": job_id,
            "channel": self.app.settings.notify_channel,
            "set_args": "args" in given,
            "set_priority": "priority" in given,
            "set_run_at": "run_at" in given or "delay" in given,
            "set_max_attempts": "max_attempts" in given,
            "set_tags": "tags" in given,
            "set_meta": "meta" in given,
            "args": checked["args"],
            "priority": checked["priority"],
            "run_at": checked["run_at"],
            "delay": checked["delay"],
            "max_attempts": checked["max_attempts"],
            "tags": checked["tags"],
            "meta": checked["meta"],
        }
        for _ in range(3):
            rows = store.job_update.run(self.app.db, params)
            if not rows:
                raise JobNotFound(f"no job with id {job_id}")
            outcome = str(rows[0]["outcome"])
            if outcome == "updated":
                break
            if not outcome.startswith("attempts:"):
                raise InvalidState(
                    f"job {job_id} is {outcome}; only a waiting job (pending, delayed or blocked) can be changed: "
                    "cancel it and enqueue a new one"
                )
            made = int(outcome.split(":", 1)[1])
            if params["set_max_attempts"] and made > params["max_attempts"]:
                raise InvalidState(f"job {job_id} has made {made} attempts already; max_attempts cannot go below that")
            # A claim changed the row after this statement's snapshot: look again.
        else:
            raise InvalidState(f"job {job_id} changed state while it was being updated; try again")
        updated = self.app.get_job(job_id)
        if updated is None:
            raise JobNotFound(f"no job with id {job_id}")
        return updated
