"""pgq's own way to its database, for one app: where it is, the pools, the retry
rule and the schema check.

Every statement that pgq runs on its own connections outside the worker goes
through :class:`Database` (``app.db``): the enqueue family, the operations, the
dashboard's reads, the CLI. A statement runs either on a connection the caller
gives (inside the caller's transaction, its errors untouched) or on pgq's pool,
where a connection lost before anything could have committed is retried once
on a fresh one (:mod:`pgq.db.pooled`). The first statement on the pool checks
that the schema is at this pgq's revision, and migrates it when allowed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg

from pgq.db.connection import CopyIn, Params, Pools, Row, connect, is_missing_schema, not_migrated, run_async, run_sync
from pgq.db.embedded import embedded_url
from pgq.db.flows import Flow, drive, drive_async
from pgq.db.pooled import Commit, PooledRunner
from pgq.db.queries import query
from pgq.db.urls import normalize
from pgq.settings import Settings

T = TypeVar("T")


class Database:
    """The database of one :class:`pgq.App`, reached through pgq's own pools."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.schema_name
        self._url: str | None = None
        self._pools: Pools | None = None
        self._runner: PooledRunner | None = None
        self._checked = False
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- where

    @property
    def url(self) -> str:
        """The libpq URL pgq connects to (starting the embedded server if none is set)."""
        if self._url is None:
            with self._lock:
                if self._url is None:
                    if self.settings.database_url:
                        self._url = normalize(self.settings.database_url)
                    else:
                        self._url = embedded_url(self.settings.data_dir)
        return self._url

    @property
    def direct_url(self) -> str | None:
        """The URL for LISTEN and the sweeper's lock session, past any transaction pooler;
        None when there is none (``PGQ_POOLER=transaction`` without ``PGQ_LISTEN_URL``)."""
        if self.settings.listen_url:
            return normalize(self.settings.listen_url, "PGQ_LISTEN_URL")
        return None if self.settings.pooler == "transaction" else self.url

    @property
    def uses_embedded(self) -> bool:
        return not self.settings.database_url

    @property
    def started(self) -> bool:
        """Whether anything connected (or resolved the URL) yet."""
        return self._pools is not None or self._url is not None

    # --------------------------------------------------------------- schema

    def _check_schema(self, rows: list[Row] | None) -> None:
        """Decide, once, whether the schema is usable: migrate it, or say how to. ``rows``
        are those of ``schema_version``, None when the schema is missing."""
        from pgq.migrate import head_revision, migrate

        auto = self.settings.auto_migrate
        if auto is None:
            auto = self.uses_embedded
        current = rows[0]["version_num"] if rows else None
        if current == head_revision():
            self._checked = True
            return
        if auto:
            migrate(self.url, schema=self.schema)
            self._checked = True
            return
        if current is None:
            raise not_migrated(self.schema)
        raise not_migrated(self.schema, f"it is at revision {current}, this pgq needs {head_revision()}")

    def _ensure_schema(self, conn: psycopg.Connection[Row]) -> None:
        if self._checked:
            return
        try:
            rows = conn.execute(query("schema_version", self.schema)).fetchall()
        except psycopg.Error as exc:
            if not is_missing_schema(exc):
                raise
            rows = None
        self._check_schema(rows)

    async def _ensure_schema_async(self, conn: psycopg.AsyncConnection[Row]) -> None:
        if self._checked:
            return
        try:
            cur = await conn.execute(query("schema_version", self.schema))
            rows = await cur.fetchall()
        except psycopg.Error as exc:
            if not is_missing_schema(exc):
                raise
            rows = None
        self._check_schema(rows)

    def ensure_migrated(self) -> None:
        """Check (or, for the embedded database, create) the schema now, on a connection of
        its own: what a worker does before it starts."""
        if self._checked:
            return
        with connect(self.url, self.settings, "worker") as conn:
            self._ensure_schema(conn)

    def migrate(self) -> None:
        """Bring the schema up to date (what ``pgq migrate`` does)."""
        from pgq.migrate import migrate

        migrate(self.url, schema=self.schema)
        self._checked = True

    # ----------------------------------------------------------------- pool

    @contextlib.contextmanager
    def _schema_errors(self) -> Iterator[None]:
        """A statement that found no pgq schema says how to make it (``pgq migrate``)."""
        try:
            yield
        except Exception as exc:
            if is_missing_schema(exc):
                raise not_migrated(self.schema) from None
            raise

    def _pools_now(self) -> Pools:
        if self._pools is None:
            url = self.url
            with self._lock:
                if self._pools is None:
                    self._pools = Pools(url, self.settings)
        return self._pools

    def _pooled_runner(self) -> PooledRunner:
        if self._runner is None:
            self._runner = PooledRunner(self.url)
        return self._runner

    def pooled(
        self,
        work: Callable[[psycopg.Connection[Row], Commit | None], T],
        *,
        transaction: bool = False,
        idempotent: bool = False,
    ) -> T:
        """``work`` on pgq's own pool, retried once on a fresh connection when a lost
        connection cannot have committed anything (see :mod:`pgq.db.pooled`)."""
        with self._schema_errors():
            return self._pooled_runner().run(
                lambda: self._pools_now().sync_pool(),
                self._ensure_schema,
                work,
                transaction=transaction,
                idempotent=idempotent,
            )

    async def pooled_async(
        self,
        work: Callable[[psycopg.AsyncConnection[Row], Commit | None], Awaitable[T]],
        *,
        transaction: bool = False,
        idempotent: bool = False,
    ) -> T:
        with self._schema_errors():
            return await self._pooled_runner().run_async(
                self._pools_now().async_pool,
                self._ensure_schema_async,
                work,
                transaction=transaction,
                idempotent=idempotent,
            )

    # ----------------------------------------------------------- statements

    def run(self, sql: str | CopyIn, params: Params, connection: Any = None, *, idempotent: bool = False) -> list[Row]:
        """One statement: on the caller's connection (its errors untouched), or on pgq's
        pool with the retry rule; ``idempotent`` statements (reads) are retried after any
        lost connection."""
        if connection is None:
            return self.pooled(lambda conn, _: run_sync(conn, sql, params), idempotent=idempotent)
        with self._schema_errors():
            return run_sync(connection, sql, params)

    async def run_async(
        self, sql: str | CopyIn, params: Params, connection: Any = None, *, idempotent: bool = False
    ) -> list[Row]:
        if connection is None:

            async def work(conn: psycopg.AsyncConnection[Row], _: Commit | None) -> list[Row]:
                return await run_async(conn, sql, params)

            return await self.pooled_async(work, idempotent=idempotent)
        with self._schema_errors():
            return await run_async(connection, sql, params)

    def drive(self, make_flow: Callable[[], Flow[T]], connection: Any, *, transaction: bool = False) -> T:
        """Run a flow on the caller's connection, or on pgq's pool (in one transaction
        when ``transaction``: statements that hold locks from one to the next, or that
        must commit together). A retry runs a fresh flow."""
        if connection is not None:
            return drive(make_flow(), lambda sql, p: self.run(sql, p, connection))
        return self.pooled(
            lambda conn, _: drive(make_flow(), lambda sql, p: run_sync(conn, sql, p)), transaction=transaction
        )

    async def drive_async(self, make_flow: Callable[[], Flow[T]], connection: Any, *, transaction: bool = False) -> T:
        if connection is not None:
            return await drive_async(make_flow(), lambda sql, p: self.run_async(sql, p, connection))

        async def work(conn: psycopg.AsyncConnection[Row], _: Commit | None) -> T:
            return await drive_async(make_flow(), lambda sql, p: run_async(conn, sql, p))

        return await self.pooled_async(work, transaction=transaction)

    # ---------------------------------------------------------------- close

    def close(self) -> None:
        """Close the pools; the next statement opens them again."""
        if self._pools is not None:
            self._pools.close()
            self._pools = None

    async def aclose(self) -> None:
        if self._pools is not None:
            await self._pools.aclose()
            self._pools.close()
            self._pools = None
