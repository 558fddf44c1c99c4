"""Retention: the rows pgq deletes once they no longer matter.

One flow (see :mod:`pgq.enqueueing`) lists every table pgq prunes and how.
The sweeper drives it on its session each pass, a bounded number of batches
per table; ``app.prune()`` and ``pgq prune`` drive it to the end. Each
statement deletes one batch and returns how many rows it deleted, so that a
batch smaller than ``PRUNE_BATCH`` says the table is done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pgq.db.flows import Flow
from pgq.db.queries import query
from pgq.settings import Settings

#: Rows deleted per retention statement: short locks, small WAL bursts.
PRUNE_BATCH = 1000
#: Statements per table in one sweeper pass at most (the rest waits for the next pass).
PRUNE_BATCHES_PER_PASS = 10
#: Seconds a group goes unserved (with its rate token due and no live job) before its
#: ``queue_groups`` row is deleted: long past any rate period that matters in practice.
GROUP_IDLE = 3600.0


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

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def history_params(settings: Settings) -> dict[str, Any]:
    return {
        "completed": settings.retention_completed or settings.retention,
        "failed": settings.retention_failed or settings.retention,
        "cancelled": settings.retention_cancelled or settings.retention,
        "batch": PRUNE_BATCH,
    }


def _batches(
    sql: str, params: dict[str, Any], max_batches: int | None, on_batch: Callable[[int], None] | None = None
) -> Flow[int]:
    """Run one batch statement until it deletes less than a batch (or ``max_batches`` times)."""
    deleted = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        rows = yield sql, {**params, "batch": PRUNE_BATCH}
        batch = int(rows[0]["deleted"])
        deleted += batch
        batches += 1
        if on_batch is not None:
            on_batch(batch)
        if batch < PRUNE_BATCH:
            break
    return deleted


def prune_history_flow(
    schema: str, settings: Settings, max_batches: int | None = None, on_batch: Callable[[int], None] | None = None
) -> Flow[int]:
    """Delete finished jobs past retention in batches; returns how many."""
    return (yield from _batches(query("sweep_prune_history", schema), history_params(settings), max_batches, on_batch))


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
    pruned.jobs = yield from prune_history_flow(schema, settings, max_batches, on_history_batch)
    pruned.workers = (yield query("sweep_prune_workers", schema), {})[0]["deleted"]
    pruned.groups = yield from _batches(query("sweep_prune_queue_groups", schema), {"idle": GROUP_IDLE}, max_batches)
    pruned.metrics = (yield query("sweep_prune_metrics", schema), {"keep": settings.metrics_retention})[0]["deleted"]
    pruned.keys = yield from _batches(query("sweep_prune_keys", schema), {}, max_batches)
    pruned.waiters = (yield query("sweep_prune_waiters", schema), {})[0]["deleted"]
    pruned.logs = yield from _batches(query("sweep_prune_logs", schema), {}, max_batches)
    return pruned
