"""The sweeper's rescue: workers that missed their heartbeats are declared dead, and the
jobs stuck on them (or overrunning their timeout on a live one) go back to pending,
fail for good, or end cancelled as asked.

A worker that stopped or died stays "gone, not released" until no job of it is left
running after every claim it may have had in flight has ended
(``Settings.claim_settle``); only then does the rescue stop scanning ``jobs`` for its
id (no index keeps a worker's jobs: claims are cheaper without one, migration 0022). A
worker that stops holding nothing is released at its stop.

After the sweeper's own database outage it declares nobody dead for a full heartbeat
timeout: the workers could not beat either.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgq.db import channels, store
from pgq.settings import Settings

#: Stuck jobs handled per pass at most.
RESCUE_BATCH = 500


@dataclass
class Rescued:
    dead_workers: list[str] = field(default_factory=list)
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    #: gone workers released: the rescue no longer scans for their jobs
    released: int = 0


class Rescue:
    def __init__(self, schema: str, settings: Settings) -> None:
        self.settings = settings
        self.schema = schema
        self.heartbeat_timeout = settings.heartbeat_timeout
        self.log = logging.getLogger("pgq.sweeper")
        #: monotonic time of the first good pass after an outage (None: no outage seen)
        self._recovered_at: float | None = None
        self._outage = False

    def outage(self) -> None:
        """A pass failed: the database was away (or the pass broke)."""
        self._outage = True

    def answered(self) -> None:
        """The database answers again: after an outage, the grace period starts now."""
        if self._outage:
            self._outage = False
            self._recovered_at = time.monotonic()

    def in_outage_grace(self) -> bool:
        return self._recovered_at is not None and time.monotonic() - self._recovered_at < self.heartbeat_timeout

    async def run_once(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> Rescued:
        rescued = Rescued()
        if not self.in_outage_grace():
            rescued.dead_workers = await self._declare_dead(conn)
        # No index keeps a worker's jobs (migration 0022): the rescue scans jobs for those
        # of the workers gone and not released yet, which is only for a while after one
        # stopped or died.
        gone = await store.sweep_gone_workers.fetch_async(conn, self.schema, {"settle": self.settings.claim_settle})
        rows = await store.sweep_rescue_jobs.fetch_async(
            conn,
            self.schema,
            {
                "gone": [row["id"] for row in gone],
                "heartbeat_timeout": self.heartbeat_timeout,
                "timeout_grace": self.settings.timeout_grace,
                "claim_grace": min(5.0, self.heartbeat_timeout),
                "batch": RESCUE_BATCH,
                "channel": channels.jobs(self.schema),
            },
        )
        settled = [row["id"] for row in gone if row["settled"]]
        if settled:
            # Past every claim they may have had in flight: with none of their jobs left
            # running, nothing can appear under their ids any more.
            released = await store.sweep_release_workers.fetch_async(conn, self.schema, {"ids": settled})
            rescued.released = len(released)
        rescued.retried = sum(1 for row in rows if row["outcome"] == "retried")
        rescued.failed = sum(1 for row in rows if row["outcome"] == "failed")
        rescued.cancelled = sum(1 for row in rows if row["outcome"] == "cancelled")
        if rescued.retried or rescued.failed or rescued.cancelled:
            self.log.warning(
                "rescued %d stuck jobs: %d back to pending, %d failed (out of attempts), %d cancelled (as asked)",
                rescued.retried + rescued.failed + rescued.cancelled,
                rescued.retried,
                rescued.failed,
                rescued.cancelled,
                extra={"event": "jobs_rescued", "retried": rescued.retried, "failed": rescued.failed},
            )
        return rescued

    async def _declare_dead(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> list[str]:
        rows = await store.sweep_mark_dead_workers.fetch_async(
            conn, self.schema, {"heartbeat_timeout": self.heartbeat_timeout}
        )
        for row in rows:
            self.log.warning(
                "worker %s (%s, pid %s on %s) missed its heartbeats for %.0f s: declared dead",
                row["name"],
                row["id"],
                row["pid"],
                row["host"],
                self.heartbeat_timeout,
                extra={"event": "worker_dead", "worker_id": str(row["id"])},
            )
        return [str(row["id"]) for row in rows]
