"""PGQ_READ_URL against a real streaming standby (issue 18): the dashboard's and the API's reads
and `pgq stats` go to the replica, actions and enqueues to the primary, the lag is shown, and a job
the replica does not have yet is read from the primary."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

import pgq
from pgq.migrate import migrate
from tests.processes import pgq_cli
from tests.replication import Pair, caught_up, start_pair
from tests.sse import next_snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    started = start_pair()
    if started is None:
        pytest.skip("needs Debian's PostgreSQL 15 binaries (initdb, pg_basebackup)")
    try:
        migrate(started.primary)
        caught_up(started)
        yield started
    finally:
        started.stop()


def replay(pair: Pair, paused: bool) -> None:
    with psycopg.connect(pair.standby, autocommit=True) as conn:
        conn.execute("select pg_wal_replay_pause()" if paused else "select pg_wal_replay_resume()")


def client(app: pgq.App) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from pgq.web import create_app

    return TestClient(create_app(app), base_url="https://127.0.0.1")


def test_reads_go_to_the_replica_and_actions_to_the_primary(pair: Pair) -> None:
    app = pgq.App(pair.primary, read_url=pair.standby)
    assert app.reader is not app and app.reader.reader is app.reader
    try:
        seen = app.enqueue("t", {"n": 1})
        caught_up(pair)
        assert app.replica_lag() == 0.0
        replay(pair, paused=True)
        try:
            fresh = app.enqueue("t", {"n": 2})  # the primary has it; the paused replica does not
            with client(app) as web:
                listed = [j["id"] for j in web.get("/api/jobs").json()["jobs"]]
                assert listed == [seen], "the list was not read from the replica"
                # Read-your-writes: the job page and GET /api/jobs/{id} fall back to the primary.
                assert web.get(f"/api/jobs/{fresh}").json()["id"] == fresh
                page = web.get(f"/jobs/{fresh}")
                assert page.status_code == 200 and f"#{fresh}" in page.text
                assert web.get(f"/api/jobs/{fresh}/explain").status_code == 200
                # Actions go to the primary, while the replica stands still.
                acted = web.post(f"/api/jobs/{fresh}/action", json={"action": "cancel"})
                assert acted.status_code == 200, acted.text
                assert acted.json()["job"]["status"] == "cancelled"  # read back from the primary
                assert app.get_job(fresh).status == "cancelled"  # type: ignore[union-attr]
                counts = web.get("/api/jobs/stats").json()
                assert counts["replica_lag_seconds"] is not None and counts["replica_lag_seconds"] >= 0
                (default,) = counts["queues"]
                assert default["waiting"] == 1 and default["cancelled"] == 0  # the replica's view
                overview = web.get("/").text
                assert "read from the replica (PGQ_READ_URL)" in overview
            assert app.replica_lag() is not None
        finally:
            replay(pair, paused=False)
        caught_up(pair)
        (default,) = app.reader.stats()
        assert default.cancelled == 1 and app.replica_lag() == 0.0
        assert app.reader.get_job(fresh).status == "cancelled"  # type: ignore[union-attr]
    finally:
        app.close()
        with psycopg.connect(pair.primary, autocommit=True) as conn:
            conn.execute("truncate pgq.jobs, pgq.job_history")


def test_pgq_stats_reads_the_replica_and_says_how_far_behind(pair: Pair) -> None:
    app = pgq.App(pair.primary)
    app.enqueue("t")
    app.close()
    caught_up(pair)
    result = pgq_cli(pair.primary, "stats", PGQ_READ_URL=pair.standby)
    assert result.returncode == 0, result.stderr
    assert "read from the replica (PGQ_READ_URL), 0.0 s behind the primary" in result.stdout
    replay(pair, paused=True)
    try:
        pgq.App(pair.primary).enqueue("t")
        result = pgq_cli(pair.primary, "stats", "--json", PGQ_READ_URL=pair.standby)
        assert result.returncode == 0 and '"waiting": 1' in result.stdout  # the replica's count, not 2
    finally:
        replay(pair, paused=False)
    without = pgq_cli(pair.primary, "stats")
    assert "PGQ_READ_URL" not in without.stdout and "2" in without.stdout


async def test_the_live_ticker_reads_the_replica_and_listens_on_the_primary(pair: Pair) -> None:
    import asyncio

    from pgq.redaction import Redactor
    from pgq.web.live import LiveHub

    app = pgq.App(pair.primary, read_url=pair.standby)
    hub = LiveHub(app, Redactor([]), tick=0.3)

    app.enqueue("t", queue="live")
    caught_up(pair)
    stream = hub.stream(frozenset())
    try:
        first = await next_snapshot(stream, 10)
        assert first["counts"]["live"]["pending"] == 1
        replay(pair, paused=True)
        try:
            app.enqueue("t", queue="live")  # the NOTIFY wakes the ticker; the replica still has one job
            await asyncio.sleep(1.0)
            assert hub._common is not None and hub._common["counts"]["live"]["pending"] == 1
        finally:
            replay(pair, paused=False)
        later = await next_snapshot(stream, 10)
        while later["counts"]["live"]["pending"] != 2:
            later = await next_snapshot(stream, 10)
    finally:
        await stream.aclose()
        await hub.aclose()
        app.close()
        with psycopg.connect(pair.primary, autocommit=True) as conn:
            conn.execute("truncate pgq.jobs, pgq.job_history")
