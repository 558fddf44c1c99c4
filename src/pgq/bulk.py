"""Bulk actions: retry, cancel, delete or re-prioritise every job a filter matches,
not just a page of them (``app.bulk``, ``POST /api/jobs/bulk``, ``pgq jobs cancel
--queue ...``, the dashboard's jobs list).

A filter is a :class:`JobFilter`, the same one the job lists take. An action runs
in batches of :data:`BATCH` jobs, each its own transaction (short locks, and an
interrupted action keeps what it did), and takes only the jobs that existed when
it began. ``dry_run=True`` counts the jobs it would act on, for a confirmation.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, Unpack

import psycopg

from pgq.app_part import AppLike, AppPart
from pgq.db import channels, store
from pgq.db.connection import Row
from pgq.errors import ConfigurationError, InvalidState, PgqError, unknown_options
from pgq.job import FINISHED_STATUSES, STATUSES

#: Jobs per statement.
BATCH = 1000

#: The statuses each action acts on; a job in another one is left as it is.
ACTION_STATUSES: dict[str, tuple[str, ...]] = {
    "retry": ("failed", "cancelled"),
    "cancel": ("pending", "blocked", "running"),
    "delete": FINISHED_STATUSES,
    "priority": ("pending", "blocked"),
}
ACTIONS = tuple(ACTION_STATUSES)

#: What an action did, for messages: "3 jobs cancelled".
DONE = {"retry": "retried", "cancel": "cancelled", "delete": "deleted", "priority": "reprioritised"}

INT32 = 2**31 - 1


class JobFilterOptions(TypedDict, total=False):
    """The conditions of :meth:`pgq.App.list_jobs` and :meth:`pgq.App.bulk`: a job matches
    when all those given hold (one left out, or ``None``, matches any job)."""

    status: str | None
    """One of ``pending``, ``running``, ``blocked``, ``completed``, ``failed``, ``cancelled``."""
    queue: str | None
    task: str | None
    key: str | None
    tag: str | None
    """Jobs with this tag."""
    args: dict[str, Any] | None
    """Jobs whose args contain this JSON object (``{"user_id": 7}``: every job whose
    ``user_id`` is 7, whatever its other args)."""


@dataclass(frozen=True)
class JobFilter:
    """Which jobs: all of the given conditions hold (None: any)."""

    status: str | None = None
    queue: str | None = None
    task: str | None = None
    key: str | None = None
    #: Jobs with this tag.
    tag: str | None = None
    #: Jobs whose args contain this JSON object (``{"user_id": 7}``: every job whose user_id is 7).
    args: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise ConfigurationError(f"status must be one of {', '.join(STATUSES)}; got {self.status!r}")
        for name in ("queue", "task", "key", "tag"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
        if self.args is not None and not isinstance(self.args, dict):
            raise ConfigurationError(f"args must be a dict (a JSON object) the jobs' args contain, got {self.args!r}")

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in ("status", "queue", "task", "key", "tag", "args"))

    def params(self) -> store.BulkJobFilter:
        return {
            "f_status": self.status,
            "f_queue": self.queue,
            "f_task": self.task,
            "f_key": self.key,
            "f_tag": self.tag,
            "f_args": None if self.args is None else json.dumps(self.args),
        }

    def describe(self) -> str:
        """``queue=emails, tag=tenant:42``, or ``every job``."""
        parts = [
            f"{name}={json.dumps(value) if name == 'args' else value}"
            for name in ("status", "queue", "task", "key", "tag", "args")
            if (value := getattr(self, name)) is not None
        ]
        return ", ".join(parts) or "every job"


@dataclass(frozen=True)
class BulkResult:
    """What :meth:`BulkControls.bulk` did (or, with ``dry_run``, would do)."""

    action: str
    #: Jobs acted on: retried, cancelled, deleted or given the new priority. With
    #: ``dry_run``, the jobs the action would act on now.
    count: int
    #: ``cancel``: running jobs whose workers were told to stop them (they end
    #: cancelled when their handlers stop); not counted in ``count``.
    cancelling: int = 0
    dry_run: bool = False

    def message(self, job_filter: JobFilter) -> str:
        jobs = f"{self.count} job{'' if self.count == 1 else 's'}"
        if self.dry_run:
            return f"{self.action} would act on {jobs} ({job_filter.describe()})"
        text = f"{jobs} {DONE[self.action]} ({job_filter.describe()})"
        if self.cancelling:
            text += f"; {self.cancelling} running, their workers were told to stop them"
        return text


def job_filter(call: str, where: JobFilterOptions) -> JobFilter:
    """The conditions given to ``call`` (``list_jobs``, ``bulk``) as a :class:`JobFilter`; one
    it does not know is a TypeError that names ``call`` and the conditions there are."""
    try:
        return JobFilter(**where)
    except TypeError as exc:
        raise unknown_options(call, where, JobFilterOptions) or exc from None


def check_action(action: Any, priority: Any) -> None:
    if action not in ACTION_STATUSES:
        raise ConfigurationError(f"action must be one of {', '.join(ACTIONS)}; got {action!r}")
    if action == "priority":
        if isinstance(priority, bool) or not isinstance(priority, int) or not -INT32 <= priority <= INT32:
            raise ConfigurationError(f"priority must be a whole number (higher runs first), got {priority!r}")
    elif priority is not None:
        raise ConfigurationError(f"priority= goes with the action 'priority', not {action!r}")


def action_statuses(action: str, job_filter: JobFilter) -> list[str]:
    """The statuses ``action`` acts on within ``job_filter``; an empty choice is refused."""
    statuses = ACTION_STATUSES[action]
    if job_filter.status is None:
        return list(statuses)
    if job_filter.status not in statuses:
        raise ConfigurationError(
            f"{action} acts on {', '.join(statuses)} jobs; status={job_filter.status} matches none of them"
        )
    return [job_filter.status]


class BulkControls(AppPart):
    """The bulk action of :class:`pgq.App` (its part ``_bulk``)."""

    def bulk(
        self,
        action: str,
        *,
        priority: int | None = None,
        all: bool = False,
        dry_run: bool = False,
        **where: Unpack[JobFilterOptions],
    ) -> BulkResult:
        """Act on every job the filter matches: ``retry`` (failed or cancelled
        ones), ``cancel`` (pending, delayed, blocked or running ones), ``delete``
        (finished ones) or ``priority`` (set ``priority=`` on waiting ones). Jobs
        in other states are left alone.

        With no filter, ``all=True`` is required: a forgotten filter must not
        cancel every job. ``dry_run=True`` acts on nothing and counts the jobs
        the action would act on now. Runs in batches of :data:`BATCH`, each its
        own transaction; jobs enqueued (or failing again) meanwhile are not taken.
        """
        return run_bulk(self.app, action, job_filter("bulk", where), priority=priority, all=all, dry_run=dry_run)


def run_bulk(
    app: AppLike,
    action: str,
    job_filter: JobFilter,
    *,
    priority: int | None = None,
    all: bool = False,
    dry_run: bool = False,
) -> BulkResult:
    check_action(action, priority)
    statuses = action_statuses(action, job_filter)
    if job_filter.empty and not all:
        raise ConfigurationError(
            f"a bulk {action} with no filter acts on every job: give a filter (status, queue, task, key, tag, "
            "args), or all=True (--all) if every job is meant"
        )
    start = store.bulk_last_id.run(app.db, {})[0]
    filters = job_filter.params()
    scope: store.BulkCount = {**filters, "statuses": statuses, "last": start["last"]}
    if dry_run:
        count = store.bulk_count.run(app.db, scope)[0]["n"]
        return BulkResult(action, int(count), dry_run=True)
    done = flagged = 0
    after_id, after_at = 0, None
    while True:
        batch = _batch_of(app, action, filters, scope, start["cutoff"], after_id, after_at, priority)
        row = _batch(batch, done)
        done += int(row["done"])
        flagged += int(row["flagged"])
        if int(row["scanned"]) < BATCH:
            return BulkResult(action, done, cancelling=flagged)
        after_id, after_at = row["last_id"], row["last_at"]


def _batch_of(
    app: AppLike,
    action: str,
    filters: store.BulkJobFilter,
    scope: store.BulkCount,
    cutoff: datetime,
    after_id: int,
    after_at: datetime | None,
    priority: int | None,
) -> Callable[[], list[Row]]:
    """The statement of the action's batch after (``after_at``, ``after_id``)."""
    batch: store.BulkDelete = {**scope, "after_id": after_id, "batch": BATCH}
    if action == "retry":
        keyset: store.BulkRetry = {
            **filters,
            "statuses": scope["statuses"],
            "cutoff": cutoff,
            "after_at": after_at,
            "after_id": after_id,
            "batch": BATCH,
        }
        return lambda: store.bulk_retry.run(app.db, keyset)
    if action == "cancel":
        return lambda: store.bulk_cancel.run(app.db, {**batch, "cancel_channel": channels.cancel(app.schema)})
    if action == "priority":
        return lambda: store.bulk_priority.run(app.db, {**batch, "priority": priority})
    return lambda: store.bulk_delete.run(app.db, batch)


def _batch(run: Callable[[], list[Row]], done: int) -> Row:
    for attempt in range(3):
        try:
            return run()[0]
        except psycopg.errors.UniqueViolation:
            # A retry: an enqueue took one of the batch's keys after the statement's
            # snapshot, and the batch was undone as a whole; run it again.
            if attempt == 2:
                raise InvalidState(
                    f"retried {done} jobs, then enqueues kept taking the keys of the next ones; run it again"
                ) from None
    raise PgqError("unreachable")  # pragma: no cover
