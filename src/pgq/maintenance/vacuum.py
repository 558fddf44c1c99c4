"""The sweeper's vacuum of the live table, once enough dead rows piled up.

Every job leaves two (its claim's old version and its delete), their entries sit at the
head of the claim index in claim order, and every claim steps over them until a vacuum
removes them: a million jobs through the table made claims several times slower.
Autovacuum looks at a table at most once a minute (autovacuum_naptime); at thousands of
jobs a second that is too rare. VACUUM takes no lock that claims or enqueues wait for,
and skips the pages that did not change. It is throttled as autovacuum is (see
``sweep_vacuum_throttled``): a burst of vacuum work stalled the claims of a busy worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgq.db import store

log = logging.getLogger("pgq.sweeper")


@dataclass(eq=False)
class JobsVacuum:
    schema: str
    #: Dead rows that make a vacuum worth it (0: leave the table to autovacuum).
    threshold: int
    #: True once pgq's role was refused the vacuum: it is not tried again in this process.
    _refused: bool = field(default=False, init=False)

    async def run_once(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> int:
        """Vacuum ``jobs`` if its dead rows reached the threshold; returns how many it had (0: no vacuum)."""
        if self.threshold <= 0 or self._refused:
            return 0
        rows = await store.sweep_dead_rows.fetch_async(conn, self.schema, {})
        dead = int(rows[0]["dead"]) if rows and rows[0]["dead"] is not None else 0
        if dead < self.threshold:
            return 0
        try:
            await store.sweep_vacuum_throttled.fetch_async(conn, self.schema, {})
            try:
                await store.sweep_vacuum_jobs.fetch_async(conn, self.schema, {})
            finally:
                await store.sweep_vacuum_done.fetch_async(conn, self.schema, {})
        except psycopg.errors.InsufficientPrivilege as exc:
            self._refused = True
            log.warning(
                "the sweeper may not vacuum %s.jobs (%s); autovacuum alone keeps it: grant the table to pgq's "
                "user, or set PGQ_VACUUM_THRESHOLD=0 to silence this",
                self.schema,
                str(exc).strip(),
            )
            return 0
        log.debug("vacuumed %s.jobs (%d dead rows)", self.schema, dead, extra={"event": "jobs_vacuumed"})
        return dead
