"""A connection the worker keeps for one role: claiming, or writing outcomes.

Claims and finishes are the worker's hot statements. Taking a pooled connection
for each cost a checkout, a return and a reset check per statement, and put the
claim behind whatever else held the pool. Each role keeps its own session
instead, as a tight loop would: one connection, opened on first use, bounded in
time on this side (behind a half-open socket the server's statement_timeout
never reaches us), and thrown away after any error that may have left it in an
unknown state. The next use opens a fresh one, so an outage costs the same
retries as the pool gave.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
from psycopg.pq import ExecStatus
from psycopg.rows import RowFactory
from psycopg.types.json import set_json_loads

from pgq.db.connection import connection_kwargs
from pgq.settings import Settings

TUPLES_OK = ExecStatus.TUPLES_OK


class Silence:
    """Shared by one worker's sessions. A statement that ran out of its deadline most
    often met a socket gone silent (a half-open connection, a failover behind a proxy),
    and the worker's other sessions went silent with it: each would wait out a deadline
    of its own in turn (a frozen worker took 31 s to recover, a claim's deadline and then
    the finish's). So one session's deadline makes the others reconnect before their next
    statement. Where the silence was one slow statement, that costs a reconnect."""

    def __init__(self) -> None:
        self.count = 0


class Session:
    def __init__(
        self, url: str, settings: Settings, purpose: str, deadline: float, silence: Silence | None = None
    ) -> None:
        self.url = url
        self.settings = settings
        self.purpose = purpose
        self.deadline = deadline
        self.silence = silence or Silence()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._silences_seen = 0

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and self._silences_seen != self.silence.count:
            await self.close()  # another session's statement timed out since this one connected
            conn = None
        if conn is None or conn.closed:
            self._silences_seen = self.silence.count
            kwargs = connection_kwargs(self.settings, self.purpose)
            if "options" in kwargs:
                # A session time zone of exactly "UTC" lets psycopg build each datetime with
                # the fixed datetime.timezone.utc instead of looking the zone up: three
                # timestamps of a claimed row went from 2.1 to 0.6 us. (Not through a
                # transaction pooler, where a session setting would leak to other clients.)
                kwargs["options"] += " -c timezone=UTC"
            conn = self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **kwargs)
            set_json_loads(_json_loads(conn.info.encoding), conn)
        return conn

    async def fetch(self, sql: str, params: Any, row_factory: RowFactory[Any]) -> list[Any]:
        """The rows of one statement, made by ``row_factory``."""
        try:
            async with asyncio.timeout(self.deadline):
                conn = await self._connection()
                cursor = conn.cursor(row_factory=row_factory)
                await cursor.execute(sql, params)
                # Not cursor.description: it builds a Column object per column at every call.
                result = cursor.pgresult
                return await cursor.fetchall() if result is not None and result.status == TUPLES_OK else []
        except BaseException as exc:
            if isinstance(exc, TimeoutError):
                self.silence.count += 1
            # A statement the server refused leaves an autocommit session as it was;
            # anything else (lost, timed out, cancelled mid-statement) may not have.
            if not isinstance(exc, psycopg.Error) or isinstance(exc, psycopg.OperationalError) or self._broken():
                await self.close()
            raise

    def _broken(self) -> bool:
        return self._conn is not None and (self._conn.broken or self._conn.closed)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                async with asyncio.timeout(1.0):
                    await conn.close()
            except (psycopg.Error, OSError, TimeoutError):
                pass


@functools.cache
def _json_loads(encoding: str) -> Callable[[str | bytes], Any]:
    """psycopg's default hands JSON to ``json.loads`` as bytes, which first guesses
    their encoding: 1.8 us for ``{"i": 12345}``, where orjson reads the UTF-8 bytes
    as they came, after the check below, in 0.43 us. Every claimed job's args pass
    here. One function per encoding: psycopg makes a loader class per function."""
    if encoding == "utf-8":
        return _load
    return functools.partial(_decode_and_load, encoding)


def _load(data: str | bytes) -> Any:
    # orjson reads an integer past 64 bits as a float, silently: args holding one
    # (a run of 19 digits may be one) go to json, which keeps it whole. So does
    # what orjson refuses: numbers past a float's range, nesting past 1,024 levels.
    if not isinstance(data, str) and _LONG_DIGITS.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return _decode_and_load("utf-8", data)


_LONG_DIGITS = re.compile(rb"\d{19}")


def _decode_and_load(encoding: str, data: str | bytes) -> Any:
    try:
        return json.loads(data if isinstance(data, str) else bytes(data).decode(encoding))
    except (RecursionError, ValueError) as exc:
        # A row written by SQL can hold JSON Python cannot read (nested past the
        # recursion limit). Raising here would lose the whole claim's answer, and
        # the claim would fail again on every retry: the job fails instead.
        return Unreadable(f"{type(exc).__name__}: {exc}"[:200])


class Unreadable:
    """JSON from the database that Python could not read: the worker fails its job."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"<unreadable JSON: {self.reason}>"
