"""SQLAlchemy table metadata for pgq's tables, for users' own sessions and queries.

    from pgq.schema import tables
    t = tables()                       # schema "pgq"; tables("jobs_a") for another
    session.execute(select(t.job_history).where(t.job_history.c.status == "failed"))

The migrations, not this module, create the tables; a test checks that the
two agree column by column.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Double,
    Integer,
    Interval,
    MetaData,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import DOMAIN, JSONB, REAL, TIMESTAMP
from sqlalchemy.types import TypeEngine

TZ = TIMESTAMP(timezone=True)


@dataclass(frozen=True)
class Tables:
    metadata: MetaData
    jobs: Table
    job_history: Table
    workers: Table
    metrics: Table
    schedules: Table
    queues: Table
    queue_groups: Table
    job_keys: Table
    job_waiters: Table
    job_logs: Table
    history_partitions: Table


#: Revision 0010 (and 0014: tags, meta): the columns of ``jobs`` whose rules are domains
#: (checked when the value is written), by column: the domain's name and base type.
#: ``job_history`` keeps the base types.
LIVE_DOMAINS: dict[str, tuple[str, TypeEngine[Any]]] = {
    "queue": ("queue_name", Text()),
    "task": ("task_name", Text()),
    "key": ("job_key", Text()),
    "group_key": ("group_name", Text()),
    "args": ("job_args", JSONB()),
    "errors": ("job_errors", JSONB()),
    "status": ("live_status", Text()),
    "progress": ("job_progress", Double()),
    "attempts": ("attempt_count", Integer()),
    "max_attempts": ("attempt_limit", Integer()),
    "on_parent_failure": ("parent_failure", Text()),
    "tags": ("job_tags", ARRAY(Text)),
    "meta": ("job_meta", JSONB()),
}


def _typed(domains: str | None, column: str, base: Any) -> Any:
    """``column``'s type: its domain in schema ``domains`` (the ``jobs`` table), else ``base``."""
    if domains is not None and column in LIVE_DOMAINS:
        name, data_type = LIVE_DOMAINS[column]
        return DOMAIN(name, data_type, schema=domains, create_type=False)
    return base


def _dependency_columns(domains: str | None) -> list[Column[object]]:
    # Revision 0004: the parents a job waits for, and what their failure does to it.
    return [
        Column("depends_on", ARRAY(BigInteger)),
        Column("on_parent_failure", _typed(domains, "on_parent_failure", Text)),
    ]


def _later_columns(domains: str | None) -> list[Column[object]]:
    # Revision 0013: times the job's handler raised pgq.Snooze; 0014: its tags and meta
    # (domains job_tags and job_meta in jobs).
    return [
        Column("snoozes", Integer, nullable=False),
        Column("tags", _typed(domains, "tags", ARRAY(Text))),
        Column("meta", _typed(domains, "meta", JSONB)),
    ]


def _job_columns(domains: str | None) -> list[Column[object]]:
    return [
        Column("id", BigInteger, primary_key=True),
        Column("queue", _typed(domains, "queue", Text), primary_key=True),
        Column("task", _typed(domains, "task", Text), nullable=False),
        Column("args", _typed(domains, "args", JSONB), nullable=False),
        Column("priority", Integer, nullable=False),
        Column("status", _typed(domains, "status", Text), nullable=False),
        Column("attempts", _typed(domains, "attempts", Integer), nullable=False),
        Column("max_attempts", _typed(domains, "max_attempts", Integer), nullable=False),
        Column("run_at", TZ, nullable=False),
        Column("created_at", TZ, nullable=False),
        Column("started_at", TZ),
        Column("worker_id", Uuid),
        Column("key", _typed(domains, "key", Text)),
        Column("group_key", _typed(domains, "group_key", Text)),
        Column("progress", _typed(domains, "progress", Double)),
        Column("progress_message", Text),
        Column("errors", _typed(domains, "errors", JSONB), nullable=False),
        Column("timeout", Interval),
        Column("backoff", Double),
        Column("cancel_requested_at", TZ),
    ]


@functools.cache
def tables(schema: str = "pgq") -> Tables:
    """pgq's tables in ``schema``."""
    metadata = MetaData(schema=schema)
    jobs = Table(
        "jobs",
        metadata,
        *_job_columns(schema),
        *_dependency_columns(schema),
        Column("has_children", Boolean),
        # Revision 0004: this running job holds a slot of its queue's limits (counted by jobs_running_idx).
        Column("limit_slot", Boolean),
        *_later_columns(schema),
    )
    job_history = Table(
        "job_history",
        metadata,
        *_job_columns(None),
        Column("finished_at", TZ, nullable=False),
        Column("result", JSONB),
        *_dependency_columns(None),
        *_later_columns(None),
    )
    workers = Table(
        "workers",
        metadata,
        Column("id", Uuid, primary_key=True),
        Column("name", Text, nullable=False),
        Column("host", Text, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("queues", ARRAY(Text), nullable=False),
        Column("concurrency", Integer, nullable=False),
        Column("status", Text, nullable=False),
        Column("started_at", TZ, nullable=False),
        Column("last_heartbeat", TZ, nullable=False),
        Column("stopped_at", TZ),
        Column("running", ARRAY(BigInteger), nullable=False),
        Column("version", Text),
        # Task names the worker registered (revision 0005); NULL: an older worker, taken to know every task.
        Column("tasks", ARRAY(Text)),
        # Share of its slots busy over the last minute, and busy slots by queue (revision 0017).
        Column("utilization", REAL),
        Column("busy_slots", JSONB, nullable=False),
        # When no job could still be running under its id (revision 0022): null while
        # the sweeper may have to rescue some.
        Column("released_at", TZ),
    )
    metrics = Table(
        "metrics",
        metadata,
        Column("queue", Text, primary_key=True),
        Column("at", TZ, primary_key=True),
        Column("interval_seconds", Double, nullable=False),
        *[Column(name, BigInteger, nullable=False) for name in ("pending", "scheduled", "running", "blocked")],
        Column("workers", Integer, nullable=False),
        *[Column(name, BigInteger, nullable=False) for name in ("completed", "failed", "retried", "cancelled")],
        *[Column(name, Double) for name in ("run_ms_mean", "run_ms_p95", "wait_ms_mean", "wait_ms_p95")],
        # Enqueues refused and pending jobs dropped in the interval (revision 0005), and
        # queues.rejected when the row was written (where the next row's count starts).
        Column("rejected", BigInteger, nullable=False),
        Column("rejected_total", BigInteger),
    )
    schedules = Table(
        "schedules",
        metadata,
        Column("name", Text, primary_key=True),
        Column("cron", Text, nullable=False),
        Column("timezone", Text, nullable=False),
        Column("task", Text, nullable=False),
        Column("args", JSONB, nullable=False),
        Column("queue", Text),
        Column("priority", Integer),
        Column("max_attempts", Integer),
        Column("catch_up", Text, nullable=False),
        Column("enabled", Boolean, nullable=False),
        Column("source", Text, nullable=False),
        Column("next_run_at", TZ),
        Column("last_run_at", TZ),
        Column("last_job_id", BigInteger),
        Column("created_at", TZ, nullable=False),
        Column("updated_at", TZ, nullable=False),
    )
    queues = Table(
        "queues",
        metadata,
        Column("name", Text, primary_key=True),
        Column("paused", Boolean, nullable=False),
        Column("created_at", TZ, nullable=False),
        Column("updated_at", TZ, nullable=False),
        # Limits (revision 0003); NULL means no limit.
        Column("concurrency", Integer),
        Column("rate_count", Integer),
        Column("rate_period", Interval),
        Column("group_concurrency", Integer),
        Column("group_rate_count", Integer),
        Column("group_rate_period", Interval),
        Column("max_pending", Integer),
        Column("on_full", Text, nullable=False),
        # GCRA state of the queue's rate: no start before this time.
        Column("rate_tat", TZ),
        # Enqueues rejected (or pending jobs dropped) by max_pending.
        Column("rejected", BigInteger, nullable=False),
        # The last group a grouped claim served; the next starts after it (revision 0004).
        Column("group_cursor", Text),
        # max_pending of each group of the queue (revision 0005).
        Column("group_max_pending", Integer),
        # Service-level objectives by key (revision 0017; see pgq.slo).
        Column("slo", JSONB, nullable=False),
    )
    queue_groups = Table(
        "queue_groups",
        metadata,
        Column("queue", Text, primary_key=True),
        Column("group_key", Text, primary_key=True),
        Column("rate_tat", TZ),
        Column("last_served_at", TZ),
    )
    # Keys taken by unique_for or debounce (revision 0004).
    job_keys = Table(
        "job_keys",
        metadata,
        Column("queue", Text, primary_key=True),
        Column("key", Text, primary_key=True),
        Column("job_id", BigInteger),
        Column("expires_at", TZ),
    )
    # Sessions waiting for a job's end, by backend pid (revision 0015; unlogged).
    job_waiters = Table(
        "job_waiters",
        metadata,
        Column("job_id", BigInteger, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("since", TZ, nullable=False),
    )
    # Lines handlers logged through ctx.log (revision 0016).
    job_logs = Table(
        "job_logs",
        metadata,
        Column("line", BigInteger, primary_key=True),
        Column("job_id", BigInteger, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("at", TZ, nullable=False),
        Column("level", Text, nullable=False),
        Column("message", Text, nullable=False),
    )
    # The range of each partition of job_history, and its ids once closed (revision 0018).
    history_partitions = Table(
        "history_partitions",
        metadata,
        Column("name", Text, primary_key=True),
        # NULL: the history from before partitions (everything before its end).
        Column("starts", TZ),
        Column("ends", TZ, nullable=False),
        Column("min_id", BigInteger),
        Column("max_id", BigInteger),
    )
    return Tables(
        metadata,
        jobs,
        job_history,
        workers,
        metrics,
        schedules,
        queues,
        queue_groups,
        job_keys,
        job_waiters,
        job_logs,
        history_partitions,
    )
