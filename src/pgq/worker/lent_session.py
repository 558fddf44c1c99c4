"""``ctx.session``: a SQLAlchemy session inside a transactional handler's transaction.

The transaction belongs to pgq: it commits with the job's completion, once.
So SQLAlchemy gets a second psycopg wrapper of the same server connection whose
``commit``, ``rollback`` and ``close`` work on a savepoint instead: each
transaction SQLAlchemy begins is a ``SAVEPOINT``, ``session.commit()``
releases it (the work stays in pgq's transaction, and becomes visible when the
job completes) and opens the next, ``session.rollback()`` rolls back to it
(undoing only the session's work since), and nothing SQLAlchemy does can end
pgq's transaction. Savepoints left open when SQLAlchemy lets go of the
connection end with pgq's commit.
When the handler returns, pgq commits the session (flushes what is pending)
before it completes the job.

One engine per process and kind (sync, async) serves every job: its
``creator`` wraps the connection lent to the running handler, found in a
context variable, and its ``NullPool`` keeps nothing between checkouts.
"""

from __future__ import annotations

import contextvars
from typing import Any

import psycopg

from pgq.db import store
from pgq.errors import ConfigurationError

#: The connection of the transactional handler running in this context.
lent: contextvars.ContextVar[Any] = contextvars.ContextVar("pgq_lent_connection")

# A savepoint is open for as long as SQLAlchemy holds the connection: its commit
# releases it and opens the next, its rollback goes back to it (which keeps it).
# SQLAlchemy ends transactions it did not ask for too (the rollback after its
# first connection's set-up queries), so there must always be one to end.
_SAVEPOINT = store.lent_savepoint.sql()
_RELEASE = store.lent_release.sql()
_UNDO = store.lent_rollback.sql()


class _Lent(psycopg.Connection[Any]):
    """pgq's transaction's connection as SQLAlchemy sees it (see the module's doc)."""

    def commit(self) -> None:
        self.execute(_RELEASE)

    def rollback(self) -> None:
        self.execute(_UNDO)

    def close(self) -> None:
        """The connection is pgq's: SQLAlchemy's checkin leaves it open."""

    def __del__(self, *_: Any) -> None:
        """Not a connection of its own: nothing to warn about when it goes."""


class _LentAsync(psycopg.AsyncConnection[Any]):
    async def commit(self) -> None:
        await self.execute(_RELEASE)

    async def rollback(self) -> None:
        await self.execute(_UNDO)

    async def close(self) -> None:
        """The connection is pgq's: SQLAlchemy's checkin leaves it open."""

    def __del__(self, *_: Any) -> None:
        """Not a connection of its own: nothing to warn about when it goes."""


def _lend() -> _Lent:
    conn = _Lent(lent.get().pgconn)
    conn.execute(_SAVEPOINT)
    return conn


async def _lend_async() -> _LentAsync:
    conn = _LentAsync(lent.get().pgconn)
    await conn.execute(_SAVEPOINT)
    return conn


_engine: Any = None
_async_engine: Any = None


def new_session() -> Any:
    """A ``sqlalchemy.orm.Session`` in the transaction lent to this context."""
    global _engine
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    if _engine is None:
        _engine = create_engine("postgresql+psycopg://", creator=_lend, poolclass=NullPool, pool_reset_on_return=None)
    return Session(bind=_engine)


def new_async_session() -> Any:
    """A ``sqlalchemy.ext.asyncio.AsyncSession`` in the transaction lent to this context."""
    global _async_engine
    try:
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
        from sqlalchemy.pool import NullPool

        if _async_engine is None:
            _async_engine = create_async_engine(
                "postgresql+psycopg://", async_creator=_lend_async, poolclass=NullPool, pool_reset_on_return=None
            )
    except (ImportError, ValueError) as exc:  # greenlet missing: SQLAlchemy says so at engine creation
        raise ConfigurationError(
            f"ctx.session in an async handler needs SQLAlchemy's asyncio support: pip install 'sqlalchemy[asyncio]' "
            f"({exc})"
        ) from None
    return AsyncSession(bind=_async_engine)
