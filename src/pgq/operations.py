"""Operating pgq: act on jobs and queues, and see what the queues and workers do.

:class:`OperationControls` is a part of :class:`pgq.App` (as
:class:`~pgq.schedules.ScheduleControls` is): the CLI (``pgq jobs retry``,
``pgq queues pause``, ``pgq stats``, ...) and the web dashboard are thin
layers over these methods. Every action is one statement (or, for
:meth:`~OperationControls.retry_failed`, one per batch) on pgq's own pool,
and never changes a job it refuses.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from pgq import slo
from pgq.app_part import AppPart
from pgq.db import channels, store
from pgq.db.connection import Row
from pgq.errors import ConfigurationError, InvalidState, JobNotFound
from pgq.flow import UNSET, format_rate, parse_count, parse_on_full, parse_rate
from pgq.job import FINISHED_STATUSES, LIVE_STATUSES
from pgq.queue_names import check_queue_name

if TYPE_CHECKING:
    from pgq.settings import Settings

#: Longest window of the finished counts: a year (history is rarely kept longer).
MAX_STATS_WINDOW = 366 * 86400.0
#: Default window of the finished counts of :meth:`OperationControls.stats`: 24 hours.
STATS_WINDOW = 24 * 3600.0
#: Window of the per-minute rates of :meth:`OperationControls.stats`: 5 minutes.
RATE_WINDOW = 5 * 60.0
#: Run and wait times are those of the latest TIMING_SAMPLE jobs completed in the last TIMING_WINDOW seconds.
TIMING_WINDOW = 15 * 60.0
TIMING_SAMPLE = 1000


@dataclass(frozen=True)
class QueueInfo:
    """A queue as :meth:`OperationControls.list_queues` sees it: its switch and its live jobs, now."""

    name: str
    paused: bool
    waiting: int
    """Pending jobs that are due (``run_at <= now()``)."""
    delayed: int
    """Pending jobs whose ``run_at`` is in the future (delayed, or a retry waiting out its backoff)."""
    active: int
    """Running jobs."""
    blocked: int
    workers: int
    """Live workers (``running`` or ``stopping``) that serve the queue: processes, not slots."""
    oldest_waiting_seconds: float | None
    """Seconds the oldest waiting job has been due; None when none waits."""
    updated_at: datetime | None
    """Last change of the queue's row in ``queues`` (pause, resume or limits); None without a row."""
    concurrency: int | None = None
    """The limits below are set by :meth:`OperationControls.set_queue`; None is no limit. This
    one: running jobs of the queue at most, across workers."""
    rate: str | None = None
    """Starts at most, like ``"10/s"``."""
    group_concurrency: int | None = None
    """Running jobs at most per group."""
    group_rate: str | None = None
    """Starts at most per group, like ``"1/s"``."""
    max_pending: int | None = None
    """Pending jobs at most; an enqueue past it meets ``on_full``."""
    on_full: str = "reject"
    """What an enqueue into a full queue does: ``reject`` it, or ``drop_oldest`` pending job."""
    rejected: int = 0
    """Enqueues rejected (or pending jobs dropped) because of ``max_pending`` or ``group_max_pending``."""
    group_max_pending: int | None = None
    """``max_pending`` of each group of the queue (``on_full`` applies to it too)."""
    slo: dict[str, float] = field(default_factory=dict)
    """The queue's own service-level objectives, by key (``wait_p95_ms``, ``utilization_pct``, ...; see
    :mod:`pgq.slo`); the ``PGQ_SLO_*`` settings fill in the rest."""


@dataclass(frozen=True)
class WorkerInfo:
    """A row of ``workers``, with the jobs the worker is running now."""

    id: uuid.UUID
    name: str
    host: str
    pid: int
    #: ``running``, ``stopping``, ``stopped`` or ``dead``.
    status: str
    queues: list[str]
    concurrency: int
    started_at: datetime
    last_heartbeat: datetime
    #: Seconds since the last heartbeat, by the database clock.
    seconds_since_heartbeat: float
    stopped_at: datetime | None
    version: str | None
    #: Ids of the jobs this worker holds as ``running`` in ``jobs``, now.
    running: list[int] = field(default_factory=list)
    #: Task names the worker registered; None for a worker from before revision 0005.
    tasks: list[str] | None = None
    #: Share of its slots the worker's jobs held over the last minute, in %, as its last
    #: heartbeat measured it; None before its first heartbeat.
    utilization_pct: float | None = None


@dataclass(frozen=True)
class QueueStats:
    """One queue's numbers, as :meth:`OperationControls.stats` counts them (see docs/operations.md)."""

    queue: str
    paused: bool
    #: Live counts, now: due pending jobs, delayed pending jobs, running jobs, blocked jobs.
    waiting: int
    delayed: int
    active: int
    blocked: int
    #: Jobs finished over the last ``window_seconds`` (the sweeper's metrics rows, plus history they do not cover).
    completed: int
    failed: int
    cancelled: int
    #: Live workers serving the queue.
    workers: int
    #: Jobs completed (failed for good) per minute over the last 5 minutes.
    completed_per_minute: float
    failed_per_minute: float
    #: Seconds the oldest waiting job has been due; None when none waits.
    oldest_waiting_seconds: float | None
    #: Median and 95th percentile run time (``finished_at - started_at``) and wait (start minus due time),
    #: in ms, of the latest 1,000 jobs completed in the last 15 minutes; None when there were none.
    run_ms_p50: float | None
    run_ms_p95: float | None
    wait_ms_p50: float | None
    wait_ms_p95: float | None
    #: Length of the window of ``completed``, ``failed`` and ``cancelled``, in seconds.
    window_seconds: float
    #: Database time of the figures.
    at: datetime
    #: Enqueues refused and pending jobs dropped because of ``max_pending`` or ``group_max_pending``,
    #: in total since the queue's row was made (see docs/flow-control.md).
    rejected: int = 0
    #: The same over the last ``window_seconds``, from the sweeper's metrics rows (plus what the total
    #: gained since the queue's latest row); None when no row tells (no sweeper has run since the
    #: queue's row was made before the window).
    rejected_in_window: int | None = None
    #: Busy slot-seconds over the slot-seconds of the live workers serving the queue, over the
    #: last minute, in %; None when no live worker serves it.
    utilization_pct: float | None = None
    #: ``failed / (completed + failed)`` and ``completed / (completed + failed + cancelled)`` over
    #: the window, in %; None when nothing finished.
    error_rate_pct: float | None = None
    completion_rate_pct: float | None = None
    #: The service-level objectives that hold for the queue (its own, else ``PGQ_SLO_*``), by key
    #: (``wait_p95_ms``, ``run_p95_ms``, ``utilization_pct``, ``error_rate_pct``,
    #: ``completion_rate_pct``), and the names of those its figures break (see :mod:`pgq.slo`).
    slo: dict[str, float] = field(default_factory=dict)
    slo_breaches: list[str] = field(default_factory=list)


def _from_row(cls: type[Any], row: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in row.items() if k in names})


def job_id_of(value: Any) -> int:
    """A job id from an int or a string of digits; :class:`ConfigurationError` otherwise."""
    if isinstance(value, bool):
        raise ConfigurationError(f"a job id is a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.lstrip("-").isdigit():
            return int(text)
    raise ConfigurationError(f"a job id is a whole number, got {value!r}")


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds < float("inf"):
        raise ConfigurationError(f"{what} must be a positive number of seconds or a timedelta, got {value!r}")
    return float(seconds)


class OperationControls(AppPart):
    """The operator's actions and reads of :class:`pgq.App` (its part ``_operations``)."""

    # ------------------------------------------------------------------ jobs

    def cancel(self, job_id: int) -> str:
        """Cancel a job. A pending (or delayed) job ends ``cancelled`` at once and
        ``"cancelled"`` is returned; a running job's worker is told to stop it
        (``"cancelling"``): an async handler is cancelled, a sync one sees
        ``ctx.cancelled``. Raises :class:`JobNotFound` for an unknown id and
        :class:`InvalidState` for a job that already finished."""
        job_id = job_id_of(job_id)
        outcome = self._outcome(
            job_id,
            lambda: store.job_cancel.run(
                self.app.db, {"id": job_id, "cancel_channel": channels.cancel(self.app.schema)}
            ),
        )
        if outcome.startswith("finished:"):
            raise InvalidState(
                f"job {job_id} already finished ({outcome.split(':', 1)[1]}); "
                "only pending or running jobs can be cancelled"
            )
        return outcome

    def retry(self, job_id: int) -> None:
        """Put a failed or cancelled job back in its queue, with the same id, to run now.

        A job that used all its attempts gets one more. Raises
        :class:`JobNotFound` or :class:`InvalidState` (it is not failed or
        cancelled, or a live job holds its key)."""
        job_id = job_id_of(job_id)
        try:
            if store.job_retry.run(self.app.db, {"id": job_id}):
                return
        except psycopg.errors.UniqueViolation:
            raise InvalidState(
                f"job {job_id} cannot be retried: a live job took its key meanwhile; retry it later"
            ) from None
        job = self.app.get_job(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        if job.status in ("failed", "cancelled"):
            raise InvalidState(
                f"job {job_id} cannot be retried: a live job in queue {job.queue!r} holds its key {job.key!r}"
            )
        raise InvalidState(f"job {job_id} is {job.status}; only failed or cancelled jobs can be retried")

    def retry_failed(self, *, queue: str | None = None, task: str | None = None) -> int:
        """Retry every failed job (of ``queue`` and/or ``task``); returns how many.

        As :meth:`retry` for each: same id, due now, one more attempt if it used
        all of them. Jobs that fail while this runs are not taken again. A failed
        job whose key a live job holds stays failed (of several failed jobs with
        one key, the earliest failure is retried). :meth:`pgq.App.bulk` with
        ``status="failed"``: batches of ``pgq.bulk.BATCH``, each its own transaction."""
        from pgq.bulk import JobFilter, run_bulk

        if queue is not None:
            check_queue_name(queue)
        if task is not None and (not isinstance(task, str) or not task):
            raise ConfigurationError(f"task must be a task name, got {task!r}")
        return run_bulk(self.app, "retry", JobFilter(status="failed", queue=queue, task=task), all=True).count

    def promote(self, job_id: int) -> None:
        """Run a delayed job now: its ``run_at`` becomes now and the workers are woken.

        A pending job that is already due is left as it is. Raises
        :class:`JobNotFound` for an unknown id and :class:`InvalidState` for a
        job that is not pending (running, blocked or finished)."""
        job_id = job_id_of(job_id)
        outcome = self._outcome(
            job_id,
            lambda: store.ops_promote.run(self.app.db, {"id": job_id, "channel": channels.jobs(self.app.schema)}),
        )
        if outcome in ("promoted", "pending"):
            return
        if outcome in FINISHED_STATUSES:
            raise InvalidState(f"job {job_id} already finished ({outcome}); only pending jobs can be promoted")
        raise InvalidState(f"job {job_id} is {outcome}; only pending jobs can be promoted")

    def delete(self, job_id: int) -> None:
        """Delete a finished job (completed, failed or cancelled) from history for good.

        Raises :class:`JobNotFound` for an unknown id and :class:`InvalidState`
        for a live job: cancel it first."""
        job_id = job_id_of(job_id)
        outcome = self._outcome(job_id, lambda: store.ops_delete.run(self.app.db, {"id": job_id}))
        if outcome in LIVE_STATUSES:
            raise InvalidState(f"job {job_id} is {outcome}; only finished jobs can be deleted (cancel it first)")

    def _outcome(self, job_id: int, run: Callable[[], list[Row]]) -> str:
        """The ``outcome`` that ``run`` (a statement on job ``job_id``) reports, or :class:`JobNotFound`.

        A claim or a finish racing the statement, or the job moving between tables under it,
        can leave it with nothing to report (its snapshot predates the change): a fresh
        statement sees the job, so it is run up to three times before the job counts as unknown."""
        for _ in range(3):
            rows = run()
            if rows:
                return str(rows[0]["outcome"])
        raise JobNotFound(f"no job with id {job_id}")

    # ---------------------------------------------------------------- queues

    def pause_queue(self, name: str) -> None:
        """Pause a queue: workers claim none of its jobs until it is resumed. Jobs
        already running go on; enqueueing still works. A queue can be paused
        before it has any job."""
        store.ops_pause_queue.run(self.app.db, {"name": check_queue_name(name)})

    def resume_queue(self, name: str) -> None:
        """Resume a paused queue and wake the workers. Resuming a queue that is
        not paused does nothing."""
        store.ops_resume_queue.run(
            self.app.db, {"name": check_queue_name(name), "channel": channels.jobs(self.app.schema)}
        )

    def list_queues(self) -> list[QueueInfo]:
        """Every queue with a row in ``queues`` (paused or resumed once), a live
        job, retained history or a live worker, by name, with its live counts."""
        rows = store.ops_list_queues.run(self.app.db, {})
        return [
            QueueInfo(
                name=row["name"],
                **_live_figures(row),
                updated_at=row["updated_at"],
                concurrency=row["concurrency"],
                rate=format_rate(row["rate_count"], row["rate_period"]),
                group_concurrency=row["group_concurrency"],
                group_rate=format_rate(row["group_rate_count"], row["group_rate_period"]),
                max_pending=row["max_pending"],
                on_full=row["on_full"],
                rejected=int(row["rejected"]),
                group_max_pending=row["group_max_pending"],
                slo=dict(row["slo"]),
            )
            for row in rows
        ]

    def get_queue(self, name: str) -> QueueInfo:
        """One queue as :meth:`list_queues` shows it: switches, limits, live counts. A queue
        nothing knows of yet (no row, job or worker) comes back empty and without limits."""
        check_queue_name(name)
        for info in OperationControls.list_queues(self):
            if info.name == name:
                return info
        return QueueInfo(name, False, 0, 0, 0, 0, 0, None, None)

    def set_queue(
        self,
        name: str,
        *,
        concurrency: int | None = UNSET,
        rate: str | tuple[int, float | timedelta] | None = UNSET,
        group_concurrency: int | None = UNSET,
        group_rate: str | tuple[int, float | timedelta] | None = UNSET,
        max_pending: int | None = UNSET,
        on_full: str = UNSET,
        group_max_pending: int | None = UNSET,
        slo_wait_p95: float | timedelta | None = UNSET,
        slo_run_p95: float | timedelta | None = UNSET,
        slo_utilization: float | None = UNSET,
        slo_error_rate: float | None = UNSET,
        slo_completion_rate: float | None = UNSET,
    ) -> QueueInfo:
        """Set a queue's limits, enforced inside the claim across every worker (see
        docs/flow-control.md). Only the options given change; ``None`` removes a limit.
        A queue can be set before any of its jobs exist, and workers apply a change at
        once (they are notified), without a restart.

        - ``concurrency``: at most N jobs of the queue run at once.
        - ``rate``: at most N starts per period, spaced evenly (``"10/s"``, ``"100/min"``,
          ``"5/h"``, ``"2/30s"`` or ``(count, seconds)``).
        - ``group_concurrency`` / ``group_rate``: the same per group (``enqueue(group=...)``);
          groups with ready jobs are served round-robin.
        - ``max_pending``: at most N pending jobs in the queue; ``group_max_pending``: at
          most N in each group of it. ``on_full`` (``"reject"`` or ``"drop_oldest"``) says
          what an enqueue beyond either does (see docs/flow-control.md).
        - ``slo_wait_p95`` / ``slo_run_p95`` (seconds or timedelta), ``slo_utilization``,
          ``slo_error_rate``, ``slo_completion_rate`` (percentages): the queue's service-level
          objectives, shown by :meth:`stats`, ``pgq stats`` and the dashboard, in red when a
          figure breaks one (see docs/operations.md#service-level-objectives).

        Returns the queue as :meth:`get_queue` shows it. Bad values raise
        :class:`ConfigurationError` and change nothing."""
        check_queue_name(name)
        # Checked in the order of the signature: the first bad value is the one reported.
        set_concurrency = None if concurrency is UNSET else parse_count(concurrency, "concurrency")
        set_group_concurrency = (
            None if group_concurrency is UNSET else parse_count(group_concurrency, "group_concurrency")
        )
        set_rate = None if rate is UNSET else parse_rate(rate, "rate")
        set_group_rate = None if group_rate is UNSET else parse_rate(group_rate, "group_rate")
        params: store.OpsSetQueue = {
            "name": name,
            "channel": channels.queues(self.app.schema),
            "set_concurrency": concurrency is not UNSET,
            "concurrency": set_concurrency,
            "set_group_concurrency": group_concurrency is not UNSET,
            "group_concurrency": set_group_concurrency,
            "set_rate": rate is not UNSET,
            "rate_count": set_rate[0] if set_rate else None,
            "rate_seconds": set_rate[1] if set_rate else None,
            "set_group_rate": group_rate is not UNSET,
            "group_rate_count": set_group_rate[0] if set_group_rate else None,
            "group_rate_seconds": set_group_rate[1] if set_group_rate else None,
            "set_max_pending": max_pending is not UNSET,
            "max_pending": None if max_pending is UNSET else parse_count(max_pending, "max_pending", minimum=0),
            "set_group_max_pending": group_max_pending is not UNSET,
            "group_max_pending": (
                None if group_max_pending is UNSET else parse_count(group_max_pending, "group_max_pending", minimum=0)
            ),
            "set_on_full": on_full is not UNSET,
            "on_full": None if on_full is UNSET else parse_on_full(on_full),
        }
        to_set, to_remove = slo.changes(
            wait_p95=slo_wait_p95,
            run_p95=slo_run_p95,
            utilization=slo_utilization,
            error_rate=slo_error_rate,
            completion_rate=slo_completion_rate,
        )
        store.ops_set_queue.run(self.app.db, params)
        if to_set or to_remove:
            store.ops_set_queue_slo.run(self.app.db, {"name": name, "set": Jsonb(to_set), "remove": to_remove})
        if params["set_concurrency"] or params["set_group_concurrency"]:
            store.ops_mark_limit_slots.run(self.app.db, {"name": name})
        if params["set_group_rate"]:
            store.ops_group_rates_reset.run(self.app.db, {"name": name})
        return OperationControls.get_queue(self, name)

    def explain(self, job_id: int) -> str:
        """Why isn't this job running? What holds a pending job back, one line each: its
        ``run_at``, a paused queue, a full queue or group concurrency (and the jobs filling
        it), a rate limit's next start, no live worker serving its queue or knowing its task,
        no attempts left; for a blocked job, the parents it waits for. A last line says when
        the job's process died under it (:meth:`Job.crash_note`). The same text as
        ``pgq explain ID`` and the SQL function ``pgq.explain(id)``."""
        job_id = job_id_of(job_id)
        return str(store.ops_explain.run(self.app.db, {"id": job_id})[0]["text"])

    # --------------------------------------------------------------- workers

    def list_workers(self) -> list[WorkerInfo]:
        """Every worker row (stopped and dead ones are kept a day), live ones first."""
        rows = store.ops_list_workers.run(self.app.db, {})
        workers = []
        for row in rows:
            row = dict(row)
            row["seconds_since_heartbeat"] = float(row["seconds_since_heartbeat"])
            row["queues"] = list(row["queues"] or [])
            row["running"] = [int(i) for i in row["running"] or []]
            row["tasks"] = None if row["tasks"] is None else list(row["tasks"])
            workers.append(_from_row(WorkerInfo, row))
        return workers

    # ----------------------------------------------------------------- stats

    def stats(self, *, window: float | timedelta = STATS_WINDOW) -> list[QueueStats]:
        """Per queue, by name: live counts now, what finished over ``window``
        (default 24 hours), completions and failures per minute over the last 5
        minutes, and run and wait times (p50, p95) of recent completed jobs.

        Finished counts come from the sweeper's ``metrics`` rows, plus history
        that no row covers (after the latest row: seconds), so they never scan the
        whole history; see docs/operations.md for exactly what is counted."""
        window_seconds = _seconds(window, "window")
        if window_seconds > MAX_STATS_WINDOW:
            raise ConfigurationError(
                f"window must be at most {MAX_STATS_WINDOW / 86400:.0f} days, got {window_seconds / 86400:.1f}"
            )
        rows = store.ops_stats.run(
            self.app.db,
            {
                "window": window_seconds,
                "rate_window": RATE_WINDOW,
                "timing_window": TIMING_WINDOW,
                "sample": TIMING_SAMPLE,
            },
        )
        return [
            QueueStats(
                queue=row["queue"],
                **_live_figures(row),
                completed=int(row["completed"]),
                failed=int(row["failed"]),
                cancelled=int(row["cancelled"]),
                completed_per_minute=float(row["completed_per_minute"]),
                failed_per_minute=float(row["failed_per_minute"]),
                run_ms_p50=_float(row["run_ms_p50"]),
                run_ms_p95=_float(row["run_ms_p95"]),
                wait_ms_p50=_float(row["wait_ms_p50"]),
                wait_ms_p95=_float(row["wait_ms_p95"]),
                window_seconds=window_seconds,
                at=row["at"],
                rejected=int(row["rejected"]),
                rejected_in_window=None if row["rejected_in_window"] is None else int(row["rejected_in_window"]),
                **_objectives(row, self.app.settings),
            )
            for row in rows
        ]


def _live_figures(row: dict[str, Any]) -> dict[str, Any]:
    """What QueueInfo and QueueStats both say of a queue's live jobs (ops_list_queues and
    ops_stats read them with the same part, queue_names_and_live_counts)."""
    return {
        "paused": bool(row["paused"]),
        "waiting": int(row["waiting"]),
        "delayed": int(row["delayed"]),
        "active": int(row["active"]),
        "blocked": int(row["blocked"]),
        "workers": int(row["workers"]),
        "oldest_waiting_seconds": _float(row["oldest_waiting_seconds"]),
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _objectives(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A stats row's figures of the service-level objectives, their thresholds and breaches."""
    completed, failed, cancelled = int(row["completed"]), int(row["failed"]), int(row["cancelled"])
    figures = {
        "utilization_pct": _float(row["utilization_pct"]),
        "error_rate_pct": slo.share(failed, completed + failed),
        "completion_rate_pct": slo.share(completed, completed + failed + cancelled),
    }
    limits = slo.thresholds(row["slo"], settings)
    measured = {**figures, "wait_ms_p95": _float(row["wait_ms_p95"]), "run_ms_p95": _float(row["run_ms_p95"])}
    return {**figures, "slo": limits, "slo_breaches": slo.breaches(measured, limits)}
