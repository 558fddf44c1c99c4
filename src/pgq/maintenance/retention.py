"""Retention: the rows pgq deletes once they no longer matter.

One flow (see :mod:`pgq.enqueueing`) lists every table pgq prunes and how.
The sweeper drives it on its session each pass, a bounded number of batches
per table; ``app.prune()`` and ``pgq prune`` drive it to the end. Each
statement deletes one batch and returns how many rows it deleted, so that a
batch smaller than ``PRUNE_BATCH`` says the table is done. The history is
partitioned by finished_at (migration 0018): its expired partitions are dropped
whole, and only what a drop would keep too long is deleted row by row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal, NamedTuple

import psycopg

from pgq.db import store
from pgq.db.connection import run_async
from pgq.db.flows import Flow, drive_async
from pgq.settings import Settings

#: Rows deleted per retention statement: short locks, small WAL bursts.
PRUNE_BATCH = 1000
#: Statements per table in one sweeper pass at most (the rest waits for the next pass).
PRUNE_BATCHES_PER_PASS = 10
#: Seconds a group goes unserved (with its rate token due and no live job) before its
#: ``queue_groups`` row is deleted: long past any rate period that matters in practice.
GROUP_IDLE = 3600.0

log = logging.getLogger("pgq.sweeper")


@dataclass
class Pruned:
    """Rows deleted, by what they were."""

    #: Finished jobs past their status's retention (``job_history``).
    jobs: int = 0
    #: Worker rows stopped or dead for over a day.
    workers: int = 0
    #: ``queue_groups`` rows of long-idle groups.
    groups: int = 0
    #: ``metrics`` rows older than ``PGQ_METRICS_RETENTION``.
    metrics: int = 0
    #: ``job_keys`` rows that hold nothing any more.
    keys: int = 0
    #: ``job_waiters`` rows of sessions that are gone.
    waiters: int = 0
    #: ``job_logs`` lines of jobs that are gone.
    logs: int = 0
    #: Partitions of ``job_history`` dropped whole (their rows are not in ``jobs``).
    partitions: int = 0
    #: Why a partition could not be made or dropped (pgq's role may not), else None.
    refused: str | None = None

    def as_dict(self) -> dict[str, int]:
        """The counts (``refused`` is not one)."""
        return {name: value for name, value in asdict(self).items() if name != "refused"}


class HistoryPruned(NamedTuple):
    """What the history's retention did."""

    jobs: int
    partitions: int
    refused: str | None


def history_params(settings: Settings) -> store.SweepPruneHistoryIn:
    return {
        "completed": settings.retention_completed or settings.retention,
        "failed": settings.retention_failed or settings.retention,
        "cancelled": settings.retention_cancelled or settings.retention,
        "batch": PRUNE_BATCH,
    }


Status = Literal["completed", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("completed", "failed", "cancelled")
#: PGQ_HISTORY_PARTITION: the period's name for date_trunc, and its length in seconds.
PARTITION_PERIODS = {"hourly": ("hour", 3600.0), "daily": ("day", 86400.0), "weekly": ("week", 7 * 86400.0)}
#: Partitions are made this many periods ahead, and at least a day: a sweeper that
#: stops leaves the workers that long before rows fall to the default partition.
PARTITIONS_AHEAD = 3


def partition_params(settings: Settings) -> store.HistoryMaintain:
    """``maintain_history_partitions``'s arguments: a partition is dropped once the longest
    retention has passed over its end, when every row in it has expired."""
    period, seconds = PARTITION_PERIODS[settings.history_partition]
    retentions = history_params(settings)
    return {
        "period": period,
        "ahead": timedelta(seconds=max(PARTITIONS_AHEAD * seconds, 86400.0)),
        "keep": timedelta(seconds=max(retentions[status] for status in STATUSES)),
    }


def row_pruned_statuses(settings: Settings) -> list[str]:
    """The statuses whose rows are deleted one by one, everywhere: those kept shorter than
    the longest retention (their partition outlives them), or shorter than a partition's
    period (waiting for the partition would keep them far past their retention). The
    rest leave with their partition, at most one period after they expire."""
    retentions = history_params(settings)
    longest = max(retentions[status] for status in STATUSES)
    period = PARTITION_PERIODS[settings.history_partition][1]
    return [status for status in STATUSES if retentions[status] < longest or retentions[status] < period]


def _batches(
    statement: store.Statement,
    max_batches: int | None,
    on_batch: Callable[[int], None] | None = None,
) -> Flow[tuple[int, int]]:
    """Run one batch statement (its ``batch`` is ``PRUNE_BATCH``) until it deletes less than a
    batch (or ``max_batches`` times); returns the rows deleted and the batches run."""
    deleted = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        rows = yield statement
        batch = int(rows[0]["deleted"])
        deleted += batch
        batches += 1
        if on_batch is not None:
            on_batch(batch)
        if batch < PRUNE_BATCH:
            break
    return deleted, batches


def _deleted(flow: Flow[tuple[int, int]]) -> Flow[int]:
    deleted, _ = yield from flow
    return deleted


def prune_history_flow(
    schema: str, settings: Settings, max_batches: int | None = None, on_batch: Callable[[int], None] | None = None
) -> Flow[HistoryPruned]:
    """Keep the history's partitions (make them ahead, drop the expired whole), then delete
    in batches the finished jobs past retention that no partition drop takes.
    ``max_batches`` bounds the row batches of the whole history."""
    upkeep = (yield store.history_maintain(schema, partition_params(settings)))[0]
    params = history_params(settings)
    left = max_batches
    deleted = 0
    statuses = row_pruned_statuses(settings)
    statements: list[store.Statement] = []
    if statuses:
        shortest = min(params[status] for status in STATUSES if status in statuses)
        statements.append(store.sweep_prune_history(schema, {**params, "statuses": statuses, "shortest": shortest}))
    for table in upkeep["row_pruned"]:
        statements.append(store.sweep_prune_history_in(schema, params, table=table))
    for statement in statements:
        if left is not None and left <= 0:
            break
        rows, batches = yield from _batches(statement, left, on_batch)
        deleted += rows
        if left is not None:
            left -= batches
    return HistoryPruned(deleted, int(upkeep["dropped"]), upkeep["refused"])


def retention_flow(
    schema: str,
    settings: Settings,
    max_batches: int | None = None,
    on_history_batch: Callable[[int], None] | None = None,
) -> Flow[Pruned]:
    """Everything retention deletes, table by table; ``max_batches`` per table (None: to the end).

    ``on_history_batch`` hears how many jobs each history batch deleted (``pgq prune``'s
    progress bar). Every statement is idempotent: deleting what is past retention twice
    deletes nothing more, so a driver may retry any of them."""
    pruned = Pruned()
    pruned.jobs, pruned.partitions, pruned.refused = yield from prune_history_flow(
        schema, settings, max_batches, on_history_batch
    )
    pruned.workers = (yield store.sweep_prune_workers(schema, {}))[0]["deleted"]
    pruned.groups = yield from _deleted(
        _batches(store.sweep_prune_queue_groups(schema, {"idle": GROUP_IDLE, "batch": PRUNE_BATCH}), max_batches)
    )
    pruned.metrics = (yield store.sweep_prune_metrics(schema, {"keep": settings.metrics_retention}))[0]["deleted"]
    pruned.keys = yield from _deleted(_batches(store.sweep_prune_keys(schema, {"batch": PRUNE_BATCH}), max_batches))
    pruned.waiters = (yield store.sweep_prune_waiters(schema, {}))[0]["deleted"]
    pruned.logs = yield from _deleted(_batches(store.sweep_prune_logs(schema, {"batch": PRUNE_BATCH}), max_batches))
    return pruned


@dataclass(eq=False)
class Retention:
    """The sweeper's retention pass: :func:`retention_flow` on its session, at most
    ``PRUNE_BATCHES_PER_PASS`` batches per table, so that one pass stays short."""

    schema: str
    # Kept out of repr: the settings hold the database URL, password and all.
    settings: Settings = field(repr=False)
    #: True once the refused partitions were logged: the warning is given once a process.
    _refused: bool = field(default=False, init=False)

    async def run_once(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> Pruned:
        flow = retention_flow(self.schema, self.settings, PRUNE_BATCHES_PER_PASS)
        pruned = await drive_async(flow, lambda sql, params: run_async(conn, sql, params))
        if pruned.refused and not self._refused:
            self._refused = True
            log.warning(
                "the sweeper may not make or drop partitions of %s.job_history (%s); finished jobs go to its "
                "default partition and are deleted one by one: grant pgq's user the schema's tables (own them)",
                self.schema,
                pruned.refused,
                extra={"event": "partitions_refused"},
            )
        return pruned
