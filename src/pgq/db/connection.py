"""Connections: pgq's own pools, and running a query on a caller's connection.

Every pgq session names itself (``application_name = 'pgq …'``), has a
statement timeout and TCP keepalives, and is cut by the server if it sits idle
in a transaction, so pgq never pins the xmin horizon.
"""

from __future__ import annotations

import asyncio
import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgq import display
from pgq.db.urls import describe, redact
from pgq.errors import DatabaseUnavailable, NotMigrated
from pgq.settings import Settings

Row = dict[str, Any]
Params = Mapping[str, Any]

# Error classes that mean "pgq's tables or functions are not there".
_MISSING_SCHEMA = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.UndefinedFunction,
    psycopg.errors.InvalidSchemaName,
)


def connection_kwargs(settings: Settings, purpose: str, direct: bool = False) -> dict[str, Any]:
    """Connection parameters for a pgq session; ``purpose`` ends up in ``application_name``.

    Through a transaction pooler (``PGQ_POOLER=transaction``, and not ``direct``)
    a session is shared between clients: no session settings at connect (PgBouncer
    refuses the ``options`` parameter) and no server-side prepared statements.
    """
    common: dict[str, Any] = {
        "application_name": f"pgq {purpose}"[:63],
        "connect_timeout": max(1, round(settings.connect_timeout)),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        # Data sent but unacknowledged this long means a dead peer: fail instead
        # of waiting out the kernel's ~15 minute retransmission limit.
        "tcp_user_timeout": 30_000,
    }
    if settings.pooler == "transaction" and not direct:
        return {**common, "prepare_threshold": None}
    options = [
        f"-c statement_timeout={int(settings.statement_timeout * 1000)}",
        # Long enough for any pgq transaction, short enough that a stuck client
        # cannot hold back vacuum of the hot jobs table.
        "-c idle_in_transaction_session_timeout=60000",
        # pgq's statements are short; the planner's JIT thresholds fire on the stats
        # query's estimates and compiling took 1.2 s of a 1.3 s call (0.15 s without).
        "-c jit=off",
    ]
    return {**common, "options": " ".join(options)}


def unavailable(exc: BaseException, url: str) -> DatabaseUnavailable:
    """A :class:`DatabaseUnavailable` naming where pgq tried to connect, never the password."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = reason.replace("connection failed: ", "")
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {describe(url)}: {redact(reason)}. "
        "Check PGQ_DATABASE_URL and that the server is running."
    )


def not_migrated(schema: str, detail: str = "") -> NotMigrated:
    suffix = f" ({detail})" if detail else ""
    return NotMigrated(
        f"the database has no up-to-date pgq schema {schema!r}{suffix}: run `pgq migrate` "
        "(or pgq.migrate(url) from code) first"
    )


def is_missing_schema(exc: BaseException) -> bool:
    if isinstance(exc, _MISSING_SCHEMA):
        return True
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps driver errors
    return isinstance(orig, _MISSING_SCHEMA)


def read_any_json(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Read json and jsonb with :func:`pgq.display.loads`: a row inserted by SQL, nested deeper
    than Python's json reads, must not make every read that returns it fail."""
    set_json_loads(display.loads, conn)


async def _read_any_json_async(conn: psycopg.AsyncConnection[Any]) -> None:
    read_any_json(conn)


def connect(
    url: str, settings: Settings, purpose: str, autocommit: bool = True, direct: bool = False
) -> psycopg.Connection[Row]:
    """One pgq session (not pooled), with errors that say where it tried to connect."""
    try:
        conn = psycopg.connect(
            url, autocommit=autocommit, row_factory=dict_row, **connection_kwargs(settings, purpose, direct)
        )
    except psycopg.OperationalError as exc:
        raise unavailable(exc, url) from None
    read_any_json(conn)
    return conn


async def connect_async(
    url: str, settings: Settings, purpose: str, direct: bool = False
) -> psycopg.AsyncConnection[Row]:
    """One pgq session (not pooled, autocommit), with errors that say where it tried to connect."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, row_factory=dict_row, **connection_kwargs(settings, purpose, direct)
        )
    except psycopg.OperationalError as exc:
        raise unavailable(exc, url) from None
    read_any_json(conn)
    return conn


class Pools:
    """pgq's own connection pools for one URL: one sync pool, one async pool per event loop.

    Pooled connections are in autocommit mode, so a one-statement enqueue is
    one round trip.
    """

    def __init__(self, url: str, settings: Settings, purpose: str = "client") -> None:
        self.url = url
        self.settings = settings
        self.purpose = purpose
        self._sync: ConnectionPool[psycopg.Connection[Row]] | None = None
        self._lock = threading.Lock()
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncConnectionPool[psycopg.AsyncConnection[Row]]
        ] = weakref.WeakKeyDictionary()
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def _kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "row_factory": dict_row,
            **connection_kwargs(self.settings, self.purpose),
        }

    def _pool_options(self, name: str) -> dict[str, Any]:
        return {
            "min_size": self.settings.pool_min_size,
            "max_size": self.settings.pool_max_size,
            "kwargs": self._kwargs(),
            "timeout": self.settings.connect_timeout,
            "open": False,
            "name": name,
        }

    def sync_pool(self) -> ConnectionPool[psycopg.Connection[Row]]:
        if self._sync is not None:
            return self._sync
        with self._lock:  # threads racing here must share one pool
            return self._open_sync_pool()

    def _open_sync_pool(self) -> ConnectionPool[psycopg.Connection[Row]]:
        if self._sync is None:
            # One direct connection first: an unreachable server fails at once
            # with its real reason, instead of after the pool's retries.
            try:
                psycopg.connect(self.url, **self._kwargs()).close()
            except psycopg.OperationalError as exc:
                raise unavailable(exc, self.url) from None
            self._sync = ConnectionPool(self.url, configure=read_any_json, **self._pool_options(f"pgq-{self.purpose}"))
            self._sync.open()
        return self._sync

    async def async_pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Row]]:
        loop = asyncio.get_running_loop()
        pool = self._async.get(loop)
        if pool is not None:
            return pool
        lock = self._async_locks.setdefault(loop, asyncio.Lock())
        async with lock:  # concurrent first calls must share one pool
            return await self._open_async_pool(loop)

    async def _open_async_pool(
        self, loop: asyncio.AbstractEventLoop
    ) -> AsyncConnectionPool[psycopg.AsyncConnection[Row]]:
        pool = self._async.get(loop)
        if pool is None:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, **self._kwargs())
                await conn.close()
            except psycopg.OperationalError as exc:
                raise unavailable(exc, self.url) from None
            pool = AsyncConnectionPool(
                self.url, configure=_read_any_json_async, **self._pool_options(f"pgq-{self.purpose}-async")
            )
            await pool.open()
            self._async[loop] = pool
        return pool

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        # Async pools belong to their loops; closing them from here would need
        # those loops. Their connections close when the pools are collected.
        self._async.clear()

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        pool = self._async.pop(loop, None)
        if pool is not None:
            await pool.close()


_PSYCOPG_PARAM = re.compile(r"%\((\w+)\)[sb]")


def sqlalchemy_text(sql: str) -> str:
    """Turn ``%(name)s`` (and binary ``%(name)b``) parameters into SQLAlchemy's ``:name`` form."""
    return _PSYCOPG_PARAM.sub(r":\1", sql)


@dataclass(frozen=True)
class CopyIn:
    """A step of a flow (:mod:`pgq.enqueueing`) that writes ``data``, the whole stream
    of a ``COPY ... FROM STDIN (FORMAT BINARY)`` (header, rows, trailer), instead of
    running a statement."""

    sql: str
    data: bytes


def can_copy(connection: Any) -> bool:
    """Whether :func:`run_sync`/:func:`run_async` can COPY on this connection: pgq's own
    (None), psycopg's, or SQLAlchemy's over psycopg 3 (another driver gets the inserts)."""
    if connection is None or isinstance(connection, psycopg.Connection | psycopg.AsyncConnection):
        return True
    if not _is_sqlalchemy(connection):
        return False
    try:
        dialect = getattr(connection, "dialect", None)
        if dialect is None:  # a Session or AsyncSession
            session = getattr(connection, "sync_session", connection)
            dialect = session.get_bind().dialect
        return bool(dialect.driver == "psycopg")
    except Exception:
        return False


def _copy_sync(conn: psycopg.Connection[Any], step: CopyIn) -> list[Row]:
    with conn.cursor() as cur, cur.copy(step.sql) as copy:
        copy.write(step.data)
    return []


async def _copy_async(conn: psycopg.AsyncConnection[Any], step: CopyIn) -> list[Row]:
    async with conn.cursor() as cur, cur.copy(step.sql) as copy:
        await copy.write(step.data)
    return []


def run_sync(connection: Any, sql: str | CopyIn, params: Params) -> list[Row]:
    """Run ``sql`` on a caller's connection, inside whatever transaction it has open.

    Accepts a psycopg ``Connection`` or a SQLAlchemy ``Connection``/``Session``. A
    COPY step goes to the psycopg connection underneath SQLAlchemy's, in the same
    transaction (the flows run a statement through SQLAlchemy first, so that its
    transaction has begun).
    """
    if not isinstance(sql, str):
        if isinstance(connection, psycopg.Connection):
            return _copy_sync(connection, sql)
        if _is_sqlalchemy(connection):
            from sqlalchemy.orm import Session

            bound = connection.connection() if isinstance(connection, Session) else connection
            driver = bound.connection.driver_connection
            if not isinstance(driver, psycopg.Connection):
                raise TypeError(f"cannot COPY through {type(driver).__name__}: pgq COPYs through psycopg 3")
            return _copy_sync(driver, sql)
        raise TypeError(f"cannot COPY on {type(connection).__name__}")
    if isinstance(connection, psycopg.Connection):
        with connection.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    execute = getattr(connection, "execute", None)
    if execute is not None and _is_sqlalchemy(connection):
        from sqlalchemy import text

        result = execute(text(sqlalchemy_text(sql)), dict(params))
        return [dict(row) for row in result.mappings()] if result.returns_rows else []
    raise TypeError(
        "connection= must be a psycopg Connection or a SQLAlchemy Connection or Session, "
        f"got {type(connection).__module__}.{type(connection).__name__}"
        + (" (use enqueue_async for async connections)" if _is_async(connection) else "")
    )


async def run_async(connection: Any, sql: str | CopyIn, params: Params) -> list[Row]:
    """The async twin of :func:`run_sync`: psycopg ``AsyncConnection``, SQLAlchemy
    ``AsyncConnection``/``AsyncSession``."""
    if not isinstance(sql, str):
        if isinstance(connection, psycopg.AsyncConnection):
            return await _copy_async(connection, sql)
        if _is_sqlalchemy(connection) and _is_async(connection):
            bound = await connection.connection() if hasattr(connection, "sync_session") else connection
            raw = await bound.get_raw_connection()
            return await _copy_async(raw.driver_connection, sql)
        raise TypeError(f"cannot COPY on {type(connection).__name__}")
    if isinstance(connection, psycopg.AsyncConnection):
        async with connection.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql, params)
            return await cur.fetchall() if cur.description else []
    if _is_sqlalchemy(connection) and _is_async(connection):
        from sqlalchemy import text

        result = await connection.execute(text(sqlalchemy_text(sql)), dict(params))
        return [dict(row) for row in result.mappings()] if result.returns_rows else []
    if isinstance(connection, psycopg.Connection) or _is_sqlalchemy(connection):
        raise TypeError(
            "enqueue_async needs an async connection (psycopg AsyncConnection or SQLAlchemy "
            f"AsyncConnection/AsyncSession), got {type(connection).__name__}; use enqueue instead"
        )
    raise TypeError(
        "connection= must be a psycopg AsyncConnection or a SQLAlchemy AsyncConnection or "
        f"AsyncSession, got {type(connection).__module__}.{type(connection).__name__}"
    )


def _is_sqlalchemy(connection: Any) -> bool:
    return type(connection).__module__.startswith("sqlalchemy.")


def _is_async(connection: Any) -> bool:
    return "asyncio" in type(connection).__module__ or isinstance(connection, psycopg.AsyncConnection)
