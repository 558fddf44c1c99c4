"""The pytest plugin: a migrated database per test, and a pgq.App on it.

Loaded automatically when pgq is installed (the ``pytest11`` entry point
``pgq``); ``pytest -p no:pgq`` turns it off. Its fixtures all start with
``pgq_`` so they never clash with a project's own. Nothing starts until a test
asks for one of them.

Fixtures:

- ``pgq_server`` (session): the :class:`~pgq.testing.DatabaseServer`, with a
  template database migrated once; an embedded PostgreSQL started on first use,
  or the server of ``PGQ_TEST_DATABASE_URL``.
- ``pgq_database_url``: a fresh database cloned from the template, dropped after the test.
- ``pgq_app``: a :class:`pgq.App` on that database. With the ini option
  ``pgq_app = "myapp.tasks:app"`` it is your own App (its tasks and settings),
  pointed at the test's database for the test; otherwise a new ``pgq.App``.
  Override the fixture for anything else (an app factory, extra setup).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pgq.app import App
    from pgq.testing.databases import DatabaseServer

INI_APP = "pgq_app"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        INI_APP,
        "module:attribute of the pgq.App that the pgq_app fixture points at each test's database "
        "(default: a new pgq.App)",
        default="",
    )


def _configured_app(config: pytest.Config) -> App | None:
    path = str(config.getini(INI_APP) or "").strip()
    if not path:
        return None
    from pgq.loader import load_app

    return load_app(path)


@pytest.fixture(scope="session")
def pgq_server(pytestconfig: pytest.Config) -> Iterator[DatabaseServer]:
    """The session's PostgreSQL server, with ``template``: a database migrated once."""
    from pgq.settings import load_settings
    from pgq.testing.databases import DatabaseServer

    configured = _configured_app(pytestconfig)
    schema = configured.schema if configured is not None else load_settings().schema_name
    server = DatabaseServer.start()
    try:
        server.template = server.create_template(schema)
        yield server
    finally:
        server.stop()


@pytest.fixture
def pgq_database_url(pgq_server: DatabaseServer) -> Iterator[str]:
    """A fresh database with pgq's schema, for this test alone."""
    url = pgq_server.create_database(pgq_server.template)
    try:
        yield url
    finally:
        pgq_server.drop_database(url)


@pytest.fixture
def pgq_app(pytestconfig: pytest.Config, pgq_database_url: str) -> Iterator[App]:
    """A pgq.App on the test's database: yours (ini option ``pgq_app``) or a new one."""
    import pgq
    from pgq.testing.databases import use_database

    configured = _configured_app(pytestconfig)
    with use_database(configured or pgq.App(pgq_database_url), pgq_database_url) as app:
        yield app
