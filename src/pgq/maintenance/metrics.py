"""The sweeper's metrics: one ``metrics`` row per queue every ``PGQ_METRICS_INTERVAL``, for
what finished (or was refused at enqueue) since the previous row of any queue
(``sweep_write_metrics`` says how the windows meet)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg

from pgq.db import store

#: Seconds a metrics row's window ends before now, at least: a job's finished_at is the start
#: of the transaction that finished it, which commits a moment later. Transactions that pgq's
#: role can see are waited for however long they take (pg_stat_activity); this covers the rest.
METRICS_LAG = 2.0


class MetricsWriter:
    def __init__(self, schema: str, interval: float) -> None:
        self.schema = schema
        self.interval = interval
        #: monotonic time of this process's last row (0: none yet, the next pass writes one)
        self.written_at = 0.0

    def due(self) -> bool:
        return time.monotonic() - self.written_at >= self.interval

    async def run_once(self, conn: psycopg.AsyncConnection[dict[str, Any]], now: datetime | None = None) -> int:
        """Write the rows; returns how many. ``now`` (None: the database clock): tests place sweeps in time."""
        written = len(await store.sweep_write_metrics.fetch_async(conn, self.schema, {"lag": METRICS_LAG, "now": now}))
        self.written_at = time.monotonic()
        return written
