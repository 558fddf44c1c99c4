"""Test fixtures: real PostgreSQL servers and a fresh database per test.

Every test that takes ``database_url`` (or ``app``) runs once on each server
this machine can start: the embedded PostgreSQL 18 and Debian's PostgreSQL 15
(``PGQ_TEST_SERVERS=pg18`` picks one; ``PGQ_TEST_DATABASE_URL`` uses an
existing server instead). Each test gets its own database, cloned from a
template that was migrated once per server, so tests may commit, listen and
start processes without seeing each other.

It sits at the repository's root, not in tests/, so that the examples' own tests
(examples/*/test_*.py, run by ``pytest examples/NAME``) share these fixtures, and
the servers they start, with the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
from pgq.testing.databases import DatabaseServer
from tests import pgservers
from tests.processes import WorkerProcess


def _server_params() -> list[object]:
    params: list[object] = []
    for name in pgservers.available():
        reason = pgservers.can_start(name)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


@pytest.fixture(scope="session", params=_server_params())
def pg_server(request: pytest.FixtureRequest) -> Iterator[pgservers.Server]:
    """A server, with its databases made as pgq.testing makes them for users: a template
    migrated once (``server.databases.template``), cloned for each test."""
    server = pgservers.start(request.param)
    try:
        server.databases = DatabaseServer(server.url)  # the server itself is stopped below
        server.databases.template = server.databases.create_template()
        yield server
    finally:
        if server.databases is not None:
            server.databases.stop()
        server.stop()


def _databases(server: pgservers.Server) -> DatabaseServer:
    assert server.databases is not None
    return server.databases


@pytest.fixture
def database_url(pg_server: pgservers.Server) -> Iterator[str]:
    """A fresh, migrated database of its own for this test."""
    databases = _databases(pg_server)
    url = databases.create_database(databases.template)
    try:
        yield url
    finally:
        databases.drop_database(url)


@pytest.fixture
def empty_database_url(pg_server: pgservers.Server) -> Iterator[str]:
    """A fresh database without pgq's schema."""
    databases = _databases(pg_server)
    url = databases.create_database("template1")
    try:
        yield url
    finally:
        databases.drop_database(url)


@pytest.fixture
def app(database_url: str) -> Iterator[pgq.App]:
    application = pgq.App(database_url)
    try:
        yield application
    finally:
        application.close()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[dict[str, object]]]:
    """A plain autocommit connection to the test's database, for checking rows."""
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to the test's database, with the `runs` table the test apps' handlers fill."""
    from psycopg.rows import dict_row

    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        from tests.apps.recording import RUNS_TABLE

        conn.execute(RUNS_TABLE)
        yield conn


@pytest.fixture
def start_worker(database_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, app: str | None = None, env: dict[str, str] | None = None) -> WorkerProcess:
        extra = {"app": app} if app else {}
        worker = WorkerProcess(database_url, *args, log=tmp_path / f"worker-{len(started)}.log", env=env, **extra)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


# ------------------------------------------------------------- reliability report

_REPORT: list[dict[str, Any]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        metavar="FILE",
        help="write one JSON line per fault scenario (jobs, lost, duplicated, overlapping, timings) to FILE",
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--reliability-report")
    if not path:
        return
    import json

    # Under pytest-xdist (-n) each worker writes its part and the controller, which
    # finishes last, joins them into the file asked for.
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    if worker is not None:
        Path(f"{path}.{worker}").write_text("".join(json.dumps(e, default=str) + "\n" for e in _REPORT))
        return
    lines = [json.dumps(entry, default=str) + "\n" for entry in _REPORT]
    for part in sorted(Path(path).parent.glob(Path(path).name + ".gw*")):
        lines.append(part.read_text(encoding="utf-8"))
        part.unlink()
    if any(lines):
        Path(path).write_text("".join(lines), encoding="utf-8")


@pytest.fixture
def reliability(request: pytest.FixtureRequest, pg_server: pgservers.Server) -> Callable[..., None]:
    """Record one scenario's figures for the reliability report."""

    def record(**figures: Any) -> None:
        _REPORT.append({"scenario": request.node.originalname, "server": pg_server.name, **figures})

    return record
