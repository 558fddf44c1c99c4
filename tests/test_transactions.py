"""Enqueueing inside the caller's transaction: psycopg, SQLAlchemy, sync and async.

A rolled-back transaction leaves no job and wakes nobody; a committed one makes
the job visible and notifies the workers' channel.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import pgq

CHANNEL = "pgq_jobs"


class Listener:
    """A LISTEN session on pgq's channel, to see which notifications arrive."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f"listen {CHANNEL}")

    def received(self, timeout: float = 0.5) -> list[str]:
        return [n.channel for n in self.conn.notifies(timeout=timeout, stop_after=None)]

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def listener(database_url: str) -> Any:
    listening = Listener(database_url)
    yield listening
    listening.close()


def count_jobs(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("select count(*) as n from pgq.jobs").fetchone()["n"])  # type: ignore[index]


def test_psycopg_rollback_leaves_nothing(app: pgq.App, database_url: str, conn: Any, listener: Listener) -> None:
    with psycopg.connect(database_url) as caller:
        caller.execute("create table orders (id int)")
        caller.execute("insert into orders values (1)")
        job_id = app.enqueue("ship", {"order": 1}, connection=caller)
        # Inside the transaction the caller sees its own job, nobody else does.
        assert caller.execute("select count(*) from pgq.jobs where id = %s", [job_id]).fetchone() == (1,)
        assert count_jobs(conn) == 0
        caller.rollback()
    assert count_jobs(conn) == 0
    assert app.get_job(job_id) is None
    assert listener.received() == []


def test_psycopg_commit_makes_job_visible_and_notifies(
    app: pgq.App, database_url: str, conn: Any, listener: Listener
) -> None:
    with psycopg.connect(database_url) as caller:
        ids = [app.enqueue("ship", {"order": i}, connection=caller) for i in range(3)]
        ids += app.enqueue_many([pgq.JobSpec("ship", {"order": 9})], connection=caller)
        assert listener.received(timeout=0.2) == []  # nothing before commit
        caller.commit()
    assert count_jobs(conn) == 4
    # Notifications of one transaction are coalesced: one wake-up, not four.
    assert listener.received() == [CHANNEL]
    assert all(app.get_job(i) is not None for i in ids)


def test_sqlalchemy_connection_and_session(app: pgq.App, database_url: str, conn: Any) -> None:
    engine = sa.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(database_url))
    with engine.connect() as sa_conn:
        app.enqueue("ship", {"order": 1}, connection=sa_conn)
        sa_conn.rollback()
    assert count_jobs(conn) == 0
    with engine.begin() as sa_conn:
        committed = app.enqueue("ship", {"order": 2}, connection=sa_conn, key="o2")
        assert app.enqueue("ship", {"order": 2}, connection=sa_conn, key="o2") == committed
    assert count_jobs(conn) == 1

    with Session(engine) as session:
        app.enqueue("ship", {"order": 3}, connection=session)
        session.rollback()
    assert count_jobs(conn) == 1
    with Session(engine) as session, session.begin():
        ids = app.enqueue_many(
            [pgq.JobSpec("ship", {"order": 4}), pgq.JobSpec("ship", {"order": 5})], connection=session
        )
    assert count_jobs(conn) == 3
    assert [app.get_job(i).args["order"] for i in ids] == [4, 5]  # type: ignore[union-attr]
    engine.dispose()


async def test_async_psycopg_and_sqlalchemy(app: pgq.App, database_url: str, conn: Any) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as caller:
        await app.enqueue_async("ship", {"order": 1}, connection=caller)
        await caller.rollback()
        committed = await app.enqueue_async("ship", {"order": 2}, connection=caller)
        await caller.commit()
    assert count_jobs(conn) == 1 and app.get_job(committed) is not None

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(database_url)

    engine = create_async_engine("postgresql+psycopg://", async_creator=connect)
    async with AsyncSession(engine) as session:
        await app.enqueue_async("ship", {"order": 3}, connection=session)
        await session.rollback()
        await app.enqueue_many_async([pgq.JobSpec("ship", {"order": 4})], connection=session)
        await session.commit()
    await engine.dispose()
    assert count_jobs(conn) == 2


async def test_sync_enqueue_rejects_async_connection(app: pgq.App, database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url) as caller:
        with pytest.raises(TypeError, match="use enqueue_async"):
            app.enqueue("ship", {}, connection=caller)
    with psycopg.connect(database_url) as caller:
        with pytest.raises(TypeError, match="use enqueue instead"):
            await app.enqueue_async("ship", {}, connection=caller)
    with pytest.raises(TypeError, match="must be a psycopg Connection"):
        app.enqueue("ship", {}, connection="postgresql://")


def test_concurrent_transactions_racing_for_a_key(app: pgq.App, database_url: str, conn: Any) -> None:
    """The second transaction waits for the first; if the first rolls back, the second creates the job."""
    with psycopg.connect(database_url) as first, psycopg.connect(database_url, autocommit=True) as second:
        app.enqueue("pay", {"n": 1}, key="pay-1", connection=first)
        result: list[int] = []

        async def other() -> None:
            result.append(await asyncio.to_thread(app.enqueue, "pay", {"n": 2}, key="pay-1", connection=second))

        async def scenario() -> None:
            task = asyncio.create_task(other())
            await asyncio.sleep(0.3)
            assert not result  # blocked on the uncommitted holder of the key
            first.rollback()
            await task

        asyncio.run(scenario())
    assert count_jobs(conn) == 1
    job = app.get_job(result[0])
    assert job is not None and job.args == {"n": 2}
