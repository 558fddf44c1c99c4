"""The sweeper: rescue, retention and metrics, by one elected worker at a time.

Every worker runs a sweeper (unless ``--no-sweeper``); each pass first makes
sure it holds the election, a session advisory lock on its own direct
connection. Only the holder sweeps. If the leader dies its session ends and
the next worker to try takes the lock, within one sweep interval. If the
leader's connection goes half-open, the server ends the session after
``idle_session_timeout`` (set on that session to a few sweep intervals; a
healthy leader runs a statement every pass), which frees the lock too.

After its own database outage the sweeper declares nobody dead for a full
heartbeat timeout: the workers could not beat either.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from pgq.db import channels
from pgq.db.connection import connection_kwargs, run_async
from pgq.db.flows import drive_async
from pgq.db.queries import query
from pgq.maintenance.retention import PRUNE_BATCHES_PER_PASS, Pruned, retention_flow
from pgq.maintenance.service import Service, client_deadline

if TYPE_CHECKING:
    from pgq.app import App

#: Stuck jobs handled per pass at most.
RESCUE_BATCH = 500
#: Seconds a metrics row's window ends before now, at least: a job's finished_at is the start
#: of the transaction that finished it, which commits a moment later. Transactions that pgq's
#: role can see are waited for however long they take (pg_stat_activity); this covers the rest.
METRICS_LAG = 2.0


@dataclass
class SweepResult:
    leader: bool = False
    dead_workers: list[str] = field(default_factory=list)
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    #: What retention deleted this pass.
    pruned: Pruned = field(default_factory=Pruned)
    metrics_rows: int = 0
    #: Dead rows of ``jobs`` when the sweeper vacuumed it (0: no vacuum this pass).
    vacuumed_dead_rows: int = 0


def lock_key(schema: str) -> int:
    """A stable 64-bit advisory lock key per schema."""
    digest = hashlib.sha256(f"pgq sweeper {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Sweeper(Service):
    name = "sweeper"

    def __init__(self, app: App, *, worker_name: str = "") -> None:
        settings = app.settings
        super().__init__(interval=settings.sweep_interval)
        self.app = app
        self.schema = app.schema
        self.url = app.direct_url or app.url
        self.worker_name = worker_name
        self.heartbeat_timeout = settings.heartbeat_timeout
        self.metrics_interval = settings.metrics_interval
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self.leader = False
        self._last_metrics = 0.0
        #: monotonic time of the first good pass after an outage (None: no outage seen)
        self._recovered_at: float | None = None
        self._outage = False
        self._vacuum_refused = False
        self._partitions_refused = False
        # A pass is bounded on this side too: a half-open lock session must not
        # hang the sweeper (the server ends that session by idle_session_timeout).
        self.deadline = client_deadline(settings) + PRUNE_BATCHES_PER_PASS * settings.statement_timeout

    # ------------------------------------------------------------ election

    async def _connect(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self.leader = False
        kwargs = connection_kwargs(self.app.settings, "sweeper", direct=True)
        idle = max(10, round(self.interval * 3))
        kwargs["options"] += f" -c idle_session_timeout={idle * 1000}"
        self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, row_factory=dict_row, **kwargs)
        return self._conn

    async def elect(self) -> bool:
        """Hold (or try to take) the sweeper lock; True if this worker is the sweeper.

        A session lock lasts as long as the session: while this connection
        lives, a leader stays leader (a dead session surfaces as an error on the
        next statement, which drops the connection and the leadership with it).
        """
        conn = await self._connect()
        if not self.leader:
            cur = await conn.execute(query("sweep_try_lock", self.schema), {"key": lock_key(self.schema)})
            row = await cur.fetchone()
            self.leader = bool(row and row["held"])
            if self.leader:
                self.log.info(
                    "this worker (%s) is now the sweeper", self.worker_name or "?", extra={"event": "sweeper_elected"}
                )
        return self.leader

    # --------------------------------------------------------------- passes

    async def run_once(self) -> SweepResult:
        result = SweepResult()
        try:
            async with asyncio.timeout(self.deadline):
                await self._pass(result)
        except BaseException:
            await self._drop()
            raise
        return result

    async def _pass(self, result: SweepResult) -> None:
        if not await self.elect():
            return
        if self._outage:
            # The database answers again: the grace period starts with this pass.
            self._outage = False
            self._recovered_at = time.monotonic()
        result.leader = True
        conn = await self._connect()
        await self._rescue(conn, result)
        await self._prune(conn, result)
        await self._vacuum(conn, result)
        if time.monotonic() - self._last_metrics >= self.metrics_interval:
            result.metrics_rows = await self.write_metrics(conn)
            self._last_metrics = time.monotonic()

    async def write_metrics(self, conn: psycopg.AsyncConnection[dict[str, Any]], now: datetime | None = None) -> int:
        """Write one ``metrics`` row per queue for what finished since the previous row of any
        queue (see ``sweep_write_metrics``); returns how many. ``now``: tests place sweeps in time."""
        cur = await conn.execute(query("sweep_write_metrics", self.schema), {"lag": METRICS_LAG, "now": now})
        return len(await cur.fetchall())

    def on_error(self) -> None:
        self._outage = True

    def in_outage_grace(self) -> bool:
        return self._recovered_at is not None and time.monotonic() - self._recovered_at < self.heartbeat_timeout

    async def _rescue(self, conn: psycopg.AsyncConnection[dict[str, Any]], result: SweepResult) -> None:
        settings = self.app.settings
        if not self.in_outage_grace():
            rows = await (
                await conn.execute(
                    query("sweep_mark_dead_workers", self.schema), {"heartbeat_timeout": self.heartbeat_timeout}
                )
            ).fetchall()
            for row in rows:
                result.dead_workers.append(str(row["id"]))
                self.log.warning(
                    "worker %s (%s, pid %s on %s) missed its heartbeats for %.0f s: declared dead",
                    row["name"],
                    row["id"],
                    row["pid"],
                    row["host"],
                    self.heartbeat_timeout,
                    extra={"event": "worker_dead", "worker_id": str(row["id"])},
                )
        rows = await (
            await conn.execute(
                query("sweep_rescue_jobs", self.schema),
                {
                    "heartbeat_timeout": self.heartbeat_timeout,
                    "timeout_grace": settings.timeout_grace,
                    "claim_grace": min(5.0, self.heartbeat_timeout),
                    "batch": RESCUE_BATCH,
                    "channel": channels.jobs(self.schema),
                },
            )
        ).fetchall()
        result.retried = sum(1 for row in rows if row["outcome"] == "retried")
        result.failed = sum(1 for row in rows if row["outcome"] == "failed")
        result.cancelled = sum(1 for row in rows if row["outcome"] == "cancelled")
        if result.retried or result.failed or result.cancelled:
            self.log.warning(
                "rescued %d stuck jobs: %d back to pending, %d failed (out of attempts), %d cancelled (as asked)",
                result.retried + result.failed + result.cancelled,
                result.retried,
                result.failed,
                result.cancelled,
                extra={"event": "jobs_rescued", "retried": result.retried, "failed": result.failed},
            )

    async def _prune(self, conn: psycopg.AsyncConnection[dict[str, Any]], result: SweepResult) -> None:
        flow = retention_flow(self.schema, self.app.settings, PRUNE_BATCHES_PER_PASS)
        result.pruned = await drive_async(flow, lambda sql, p: run_async(conn, sql, p))
        if result.pruned.refused and not self._partitions_refused:
            self._partitions_refused = True
            self.log.warning(
                "the sweeper may not make or drop partitions of %s.job_history (%s); finished jobs go to its "
                "default partition and are deleted one by one: grant pgq's user the schema's tables (own them)",
                self.schema,
                result.pruned.refused,
                extra={"event": "partitions_refused"},
            )

    async def _vacuum(self, conn: psycopg.AsyncConnection[dict[str, Any]], result: SweepResult) -> None:
        """Vacuum the live table once enough dead rows piled up. Every job leaves two
        (its claim's old version and its delete), their entries sit at the head of the
        claim index in claim order, and every claim steps over them until a vacuum
        removes them: a million jobs through the table made claims several times
        slower. Autovacuum looks at a table at most once a minute (autovacuum_naptime);
        at thousands of jobs a second that is too rare. VACUUM takes no lock that
        claims or enqueues wait for, and skips the pages that did not change."""
        threshold = self.app.settings.vacuum_threshold
        if threshold <= 0 or self._vacuum_refused:
            return
        cur = await conn.execute(query("sweep_dead_rows", self.schema))
        row = await cur.fetchone()
        dead = int(row["dead"]) if row and row["dead"] is not None else 0
        if dead < threshold:
            return
        try:
            await conn.execute(query("sweep_vacuum_jobs", self.schema))
        except psycopg.errors.InsufficientPrivilege as exc:
            self._vacuum_refused = True
            self.log.warning(
                "the sweeper may not vacuum %s.jobs (%s); autovacuum alone keeps it: grant the table to pgq's "
                "user, or set PGQ_VACUUM_THRESHOLD=0 to silence this",
                self.schema,
                str(exc).strip(),
            )
            return
        result.vacuumed_dead_rows = dead
        self.log.debug("vacuumed %s.jobs (%d dead rows)", self.schema, dead, extra={"event": "jobs_vacuumed"})

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.leader = False
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except (psycopg.Error, OSError):
                pass

    async def close(self) -> None:
        """Leave the election (closing the session frees the lock at once)."""
        self.stop()
        await self._drop()
