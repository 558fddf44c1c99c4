"""The sweeper's election: a session advisory lock on the sweeper's own direct connection.

Only the holder sweeps. If the leader dies its session ends and the next worker to try
takes the lock, within one sweep interval. If the leader's connection goes half-open,
the server ends the session after ``idle_session_timeout`` (set on that session to a few
sweep intervals; a healthy leader runs a statement every pass), which frees the lock too.
If the leader dies in the middle of a statement (a long vacuum), the server notices the
closed socket within ``CLIENT_CHECK_MS`` (``client_connection_check_interval``) and ends
the session then, instead of when the statement ends.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgq.db import store
from pgq.db.connection import connection_kwargs
from pgq.settings import Settings

#: How often the leader's server session checks, while it runs a statement, that its
#: client is still there (PostgreSQL 14+; a poll of the socket, nothing sent).
CLIENT_CHECK_MS = 1000

log = logging.getLogger("pgq.sweeper")


def lock_key(schema: str) -> int:
    """A stable 64-bit advisory lock key per schema."""
    digest = hashlib.sha256(f"pgq sweeper {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(eq=False)
class Election:
    """The lock session. Every pass of the sweeper runs on :meth:`connection`: a session
    lock lasts as long as its session, so while this connection lives, a leader stays
    leader, and a dead session surfaces as an error on the next statement, after which
    the sweeper calls :meth:`drop` (the leadership goes with the connection)."""

    # Both kept out of repr: they hold the database password.
    settings: Settings = field(repr=False)
    url: str = field(repr=False)
    schema: str
    #: Seconds between the sweeper's passes; the session's idle_session_timeout is a few of them.
    interval: float
    worker_name: str
    #: True while this worker holds the sweeper lock (as of its last statement).
    leader: bool = field(default=False, init=False)
    _conn: psycopg.AsyncConnection[dict[str, Any]] | None = field(default=None, init=False, repr=False)

    async def connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self.leader = False
        kwargs = connection_kwargs(self.settings, "sweeper", direct=True)
        idle = max(10, round(self.interval * 3))
        kwargs["options"] += f" -c idle_session_timeout={idle * 1000}"
        # A server session goes on with its statement after its client died, and holds the
        # lock until that statement ends: the vacuum runs without a statement timeout, so a
        # killed leader could keep the leadership for minutes. With this check the session
        # ends within a second of its client, inside a vacuum or a lock wait too.
        kwargs["options"] += f" -c client_connection_check_interval={CLIENT_CHECK_MS}"
        self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, row_factory=dict_row, **kwargs)
        return self._conn

    async def elect(self) -> bool:
        """Hold (or try to take) the sweeper lock; True if this worker is the sweeper."""
        conn = await self.connection()
        if not self.leader:
            rows = await store.sweep_try_lock.fetch_async(conn, self.schema, {"key": lock_key(self.schema)})
            self.leader = bool(rows and rows[0]["held"])
            if self.leader:
                log.info(
                    "this worker (%s) is now the sweeper", self.worker_name or "?", extra={"event": "sweeper_elected"}
                )
        return self.leader

    async def drop(self) -> None:
        """Close the session, which frees the lock at once."""
        conn, self._conn = self._conn, None
        self.leader = False
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except (psycopg.Error, OSError):
                pass
