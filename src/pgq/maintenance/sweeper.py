"""The sweeper: rescue, retention, vacuum and metrics, by one elected worker at a time.

Every worker runs a sweeper (unless ``--no-sweeper``); each pass first makes sure it holds
the election (:mod:`pgq.maintenance.election`), then runs its parts in turn on the lock's
session, each a bounded pass that returns what it did:

- :class:`~pgq.maintenance.rescue.Rescue`: dead workers' and overrunning jobs;
- :class:`~pgq.maintenance.retention.Retention`: rows past retention, history partitions;
- :class:`~pgq.maintenance.vacuum.JobsVacuum`: the live table's dead rows;
- :class:`~pgq.maintenance.metrics.MetricsWriter`: a ``metrics`` row per queue, when due.

One loop drives them rather than one service each: the election gates them all, and the
lock's one session serves them all (a second session would hold no lock).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pgq.maintenance.election import Election
from pgq.maintenance.metrics import MetricsWriter
from pgq.maintenance.rescue import Rescue
from pgq.maintenance.retention import PRUNE_BATCHES_PER_PASS, Pruned, Retention
from pgq.maintenance.service import Service, client_deadline
from pgq.maintenance.vacuum import JobsVacuum

if TYPE_CHECKING:
    from pgq.app import App


@dataclass
class SweepResult:
    leader: bool = False
    dead_workers: list[str] = field(default_factory=list)
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    #: Gone workers released this pass: no job of theirs is left running.
    released_workers: int = 0
    #: What retention deleted this pass.
    pruned: Pruned = field(default_factory=Pruned)
    metrics_rows: int = 0
    #: Dead rows of ``jobs`` when the sweeper vacuumed it (0: no vacuum this pass).
    vacuumed_dead_rows: int = 0


class Sweeper(Service):
    name = "sweeper"

    def __init__(self, app: App, *, worker_name: str = "") -> None:
        settings = app.settings
        super().__init__(interval=settings.sweep_interval)
        self.schema = app.schema
        self.election = Election(settings, app.direct_url or app.url, self.schema, self.interval, worker_name)
        self.rescue = Rescue(self.schema, settings)
        self.retention = Retention(self.schema, settings)
        self.vacuum = JobsVacuum(self.schema, settings.vacuum_threshold)
        self.metrics = MetricsWriter(self.schema, settings.metrics_interval)
        # A pass is bounded on this side too: a half-open lock session must not
        # hang the sweeper (the server ends that session by idle_session_timeout).
        self.deadline = client_deadline(settings) + PRUNE_BATCHES_PER_PASS * settings.statement_timeout

    async def run_once(self) -> SweepResult:
        result = SweepResult()
        try:
            async with asyncio.timeout(self.deadline):
                await self._pass(result)
        except BaseException:
            await self.election.drop()
            raise
        return result

    async def _pass(self, result: SweepResult) -> None:
        if not await self.election.elect():
            return
        self.rescue.answered()
        result.leader = True
        conn = await self.election.connection()
        rescued = await self.rescue.run_once(conn)
        result.dead_workers = rescued.dead_workers
        result.retried, result.failed, result.cancelled = rescued.retried, rescued.failed, rescued.cancelled
        result.released_workers = rescued.released
        result.pruned = await self.retention.run_once(conn)
        result.vacuumed_dead_rows = await self.vacuum.run_once(conn)
        if self.metrics.due():
            result.metrics_rows = await self.metrics.run_once(conn)

    def on_error(self) -> None:
        self.rescue.outage()

    def in_outage_grace(self) -> bool:
        return self.rescue.in_outage_grace()

    async def close(self) -> None:
        """Leave the election (closing the session frees the lock at once)."""
        self.stop()
        await self.election.drop()
