"""Running pgq's own statements on its pool: one retry when nothing can have been written.

The rule (docs/guarantees.md, "A connection lost under a call"):

- A pooled connection is checked before use, without a round trip: a session the
  server ended while it sat in the pool (``pg_terminate_backend``, a restart) has
  its goodbye waiting in the socket, and is swapped for another before anything
  is sent.
- A statement that fails because the connection went away is retried once, on a
  fresh connection, when the failure cannot have committed anything: the server
  said it was ending the session (SQLSTATE 57P01-57P03, class 08) or is read-only
  (25006), which aborts the statement; or the socket broke inside an explicit
  transaction before its COMMIT was sent; or the call only reads (or is
  idempotent, like pausing a queue).
- Otherwise, and when the retry fails too, the caller gets
  :class:`~pgq.errors.DatabaseUnavailable` with the driver's error chained. A socket
  that broke during an autocommit write or a COMMIT leaves the outcome unknown,
  and the message says so.

Errors that are not about the connection (a constraint, a statement timeout, a
lock timeout) are raised as they are, without a retry.
"""

from __future__ import annotations

import select
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from pgq.db.urls import describe, redact
from pgq.errors import DatabaseUnavailable

T = TypeVar("T")
Row = dict[str, Any]

#: Server errors that end the session or refuse writes: the statement did not commit.
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", "25006"})


class Commit:
    """Tells the runner that a transaction's body is done and its COMMIT is next: a
    broken socket after this point leaves the outcome unknown."""

    __slots__ = ("reached",)

    def __init__(self) -> None:
        self.reached = False


def alive(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle pooled connection can take a statement, decided without a round
    trip. pgq's pooled sessions LISTEN to nothing, so an idle one has nothing to read
    unless the server is saying goodbye (the FATAL of ``pg_terminate_backend`` or of a
    shutdown, then the end of the stream) or the peer is gone: anything to read means
    not alive. (Reading the goodbye is not enough: libpq takes it for a notice and
    keeps the connection OK until a later read meets the end of the stream.)"""
    pgconn = conn.pgconn
    if pgconn.status != pq.ConnStatus.OK:
        return False
    try:
        readable, _, _ = select.select([pgconn.socket], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is about the connection rather than the statement."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state in _SESSION_ENDED or state.startswith("08")


def _not_committed(exc: BaseException, commit: Commit | None) -> bool:
    """Whether a connection failure certainly left nothing committed. ``commit`` is
    None for an autocommit statement (its own commit), else the transaction's marker."""
    state = getattr(exc, "sqlstate", None)
    if state is not None:
        return True  # the server answered with an error: the statement was aborted
    return commit is not None and not commit.reached


def _unavailable(exc: BaseException, url: str, written: bool | None) -> DatabaseUnavailable:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if written is None:
        outcome = (
            "the connection broke while the write was committing: it may or may not have been "
            "written; check (for example with get_job or list_jobs) before repeating it"
        )
    else:
        outcome = "nothing was written; tried twice, on two connections"
    return DatabaseUnavailable(f"PostgreSQL at {describe(url)} is unavailable ({redact(reason)}): {outcome}")


class PooledRunner:
    """Runs work on a pool with the retry rule above; ``prepare`` runs first on each
    connection (pgq's schema check)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _why_no_connection(self, timeout: PoolTimeout) -> BaseException:
        """The driver's reason the pool found no connection (the pool only logs it): one
        direct attempt, whose error is what the caller needs to read."""
        try:
            psycopg.connect(self.url, connect_timeout=2, application_name="pgq probe").close()
        except psycopg.Error as exc:
            return exc
        return timeout

    async def _why_no_connection_async(self, timeout: PoolTimeout) -> BaseException:
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=2, application_name="pgq probe")
            await conn.close()
        except psycopg.Error as exc:
            return exc
        return timeout

    def _retry_or_raise(self, exc: Exception, commit: Commit | None, idempotent: bool, attempt: int) -> None:
        """After ``exc``, a lost connection (not a pool timeout) in attempt 1 or 2: return
        when the work may run again, else raise :class:`DatabaseUnavailable`."""
        if not (idempotent or _not_committed(exc, commit)):
            raise _unavailable(exc, self.url, None) from exc
        if attempt == 2:
            raise _unavailable(exc, self.url, False) from exc

    @staticmethod
    def _checkout(pool: ConnectionPool[psycopg.Connection[Any]]) -> psycopg.Connection[Any]:
        conn = pool.getconn()
        # Sessions the server ended while idle are swapped before anything is sent; the
        # pool opens replacements in the background (bounded: a pool's worth, then use one).
        for _ in range(pool.max_size):
            if alive(conn):
                break
            conn.close()  # closed, so that the pool discards it (its status still says OK)
            pool.putconn(conn)
            conn = pool.getconn()
        return conn

    def run(
        self,
        pool_of: Callable[[], ConnectionPool[psycopg.Connection[Any]]],
        prepare: Callable[[psycopg.Connection[Any]], None],
        work: Callable[[psycopg.Connection[Any], Commit | None], T],
        *,
        transaction: bool = False,
        idempotent: bool = False,
    ) -> T:
        """``work(conn, commit)`` on a pooled connection: in autocommit (``commit`` None),
        or inside one transaction (``commit`` marks its end) when ``transaction``."""
        for attempt in (1, 2):
            commit = Commit() if transaction else None
            pool = None
            conn = None
            try:
                pool = pool_of()
                conn = self._checkout(pool)
                prepare(conn)
                if commit is None:
                    return work(conn, None)
                with conn.transaction():
                    result = work(conn, commit)
                    commit.reached = True
                return result
            except PoolTimeout as exc:  # no connection to be had: no retry either
                reason = self._why_no_connection(exc)
                raise _unavailable(reason, self.url, False) from reason
            except Exception as exc:
                if not _connection_failure(exc):
                    raise
                if conn is not None:
                    conn.close()  # the retry must get another session (a closed one is discarded)
                self._retry_or_raise(exc, commit, idempotent, attempt)
            finally:
                if pool is not None and conn is not None:
                    pool.putconn(conn)
        raise AssertionError("unreachable")

    @staticmethod
    async def _checkout_async(pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]]) -> psycopg.AsyncConnection[Any]:
        conn = await pool.getconn()
        for _ in range(pool.max_size):
            if alive(conn):
                break
            await conn.close()
            await pool.putconn(conn)
            conn = await pool.getconn()
        return conn

    async def run_async(
        self,
        pool_of: Callable[[], Awaitable[AsyncConnectionPool[psycopg.AsyncConnection[Any]]]],
        prepare: Callable[[psycopg.AsyncConnection[Any]], Awaitable[None]],
        work: Callable[[psycopg.AsyncConnection[Any], Commit | None], Awaitable[T]],
        *,
        transaction: bool = False,
        idempotent: bool = False,
    ) -> T:
        """The async twin of :meth:`run`."""
        for attempt in (1, 2):
            commit = Commit() if transaction else None
            pool = None
            conn = None
            try:
                pool = await pool_of()
                conn = await self._checkout_async(pool)
                await prepare(conn)
                if commit is None:
                    return await work(conn, None)
                async with conn.transaction():
                    result = await work(conn, commit)
                    commit.reached = True
                return result
            except PoolTimeout as exc:  # no connection to be had: no retry either
                reason = await self._why_no_connection_async(exc)
                raise _unavailable(reason, self.url, False) from reason
            except Exception as exc:
                if not _connection_failure(exc):
                    raise
                if conn is not None:
                    await conn.close()
                self._retry_or_raise(exc, commit, idempotent, attempt)
            finally:
                if pool is not None and conn is not None:
                    await pool.putconn(conn)
        raise AssertionError("unreachable")
