"""The worker's two periodic writes, as services of the maintenance shape.

:class:`Heartbeat` says the worker lives (and what it runs), learns which of
its jobs were cancelled, returns jobs whose claim answer was lost, and finds
out when the sweeper declared the worker dead. :class:`ProgressWriter` writes
the progress its handlers reported, all of it in one statement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import PoolTimeout

from pgq.db import repo
from pgq.db.connection import Row, connection_kwargs
from pgq.maintenance.service import Service
from pgq.worker.slots import Utilization

if TYPE_CHECKING:
    from pgq.worker.executor import RunningJob
    from pgq.worker.worker import Worker

log = logging.getLogger("pgq.worker")

#: Seconds between progress writes of one worker (all its jobs in one statement).
PROGRESS_INTERVAL = 0.5


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.heartbeat_interval)
        self.worker = worker
        self.log = log
        self.utilization = Utilization(worker.slots)

    async def run_once(self) -> str | None:
        """One beat; the worker's status, None when it had been declared dead."""
        worker = self.worker
        try:
            async with worker.connection(wait=self.interval) as conn:
                found = await self._beat_on(conn)
        except (PoolTimeout, TimeoutError):
            # After an outage the pool reconnects on its own backoff, which can run seconds
            # past the database's return, while the sweeper's grace after an outage is one
            # heartbeat timeout: a heartbeat does not wait for the pool, it connects itself.
            async with asyncio.timeout(worker.db_deadline):
                conn = await psycopg.AsyncConnection.connect(
                    worker.app.url,
                    autocommit=True,
                    row_factory=dict_row,
                    **connection_kwargs(worker.app.settings, "worker heartbeat"),
                )
                async with conn:
                    found = await self._beat_on(conn)
        if found is None:
            await worker.declared_dead()  # after giving the connection back: it registers on another
        return found

    async def _beat_on(self, conn: psycopg.AsyncConnection[Row]) -> str | None:
        worker = self.worker
        status = "stopping" if worker.stopping else "running"
        held = worker.slots.jobs
        found, cancel_ids = await repo.heartbeat(
            conn, worker.schema, worker.id, status, sorted(held), self.utilization.sample()
        )
        if found is not None:
            for job_id in cancel_ids:
                worker.cancel_local(job_id)
            await self._return_orphans(conn)
        return found

    async def _return_orphans(self, conn: psycopg.AsyncConnection[Row]) -> None:
        """After a failed claim, once it has surely ended: its jobs, running under this
        worker's id but held nowhere here, go back to pending. A scan of jobs (no index
        keeps a worker's jobs, migration 0022), so only then; a claim that failed since
        keeps the worker looking."""
        worker = self.worker
        lost_at = worker.claim_lost_at
        # One interval of slack: the grace is checked again on the database's clock.
        if lost_at is None or time.monotonic() - lost_at < worker.orphan_grace + self.interval:
            return
        owned = worker.owned_ids()
        orphans = await repo.return_orphans(conn, worker.schema, worker.id, sorted(owned), worker.orphan_grace)
        if worker.claim_lost_at == lost_at:
            worker.claim_lost_at = None
        if orphans:
            log.warning("returned %d jobs whose claim answer was lost: %s", len(orphans), orphans)
            worker.producer.wake.set()

    def next_interval(self) -> float:
        return self.interval  # the sweeper's staleness counts in intervals: no jitter


class ProgressWriter(Service):
    name = "progress"

    def __init__(self, worker: Worker, interval: float = PROGRESS_INTERVAL) -> None:
        super().__init__(interval)
        self.worker = worker
        self.log = log

    async def run_once(self) -> int:
        """Write the progress that changed since the last pass; the number of jobs written."""
        updates = [update for running in list(self.worker.slots.jobs.values()) if (update := self._take(running))]
        if updates:
            await self._write(updates)
        return len(updates)

    async def flush(self, running: RunningJob) -> None:
        """Write ``running``'s progress if it changed since the last pass (before its outcome,
        so that the job keeps its handler's last message). A failed write loses the message,
        never the job, so it is logged."""
        update = self._take(running)
        if update is None:
            return
        try:
            await self._write([update], wait=5.0)
        except Exception as exc:
            log.warning("job %s: its last progress was not stored: %s", running.job.id, exc)

    def _take(self, running: RunningJob) -> tuple[Any, ...] | None:
        """The progress row of ``running`` if it changed since it was last taken, marked as written."""
        ctx = running.ctx
        if ctx is None:
            return None
        current = (ctx.progress, ctx.progress_message)
        if current == running.written_progress or running.job.worker_id != self.worker.id:
            return None
        running.written_progress = current
        return (running.job.id, running.job.queue, running.job.attempts, *current)

    async def _write(self, updates: list[tuple[Any, ...]], wait: float | None = None) -> None:
        worker = self.worker
        async with worker.connection(wait=wait) as conn:
            await repo.write_progress(conn, worker.schema, worker.id, updates)
